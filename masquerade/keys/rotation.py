"""The keyed identity transform M(z, p, d) and its inverse.

M rotates a face descriptor z towards the password's reference identity f(p) inside the
plane they span, keeping |z|:

    M(z, p, d) = |z| (cos(t) z_hat + sin(t) u),   u = unit part of f(p) orthogonal to z_hat

The team measured that rotating by the nominal angle g(d) is 2-to-1 once g(d) exceeds
a = angle(z, f(p)): z overshoots f(p), and from the result one cannot tell which side
it came from. So the angle actually applied is softly clamped below a:

    t = g (1 - exp(-k a / g))        (t = 0 when g = 0; k = NEAR_FRACTION = 0.9)

t < min(g, k a) for every a > 0, and the new angle to f(p), b = a - t, has db/da =
1 - k exp(-k a / g) >= 1 - k > 0: strictly increasing, a bijection of [0, pi] onto its image
for each (p, d), with the inverse at most 1/(1 - k) = 10 times as sensitive as the forward
map. Far from f(p) (a >> g) the rotation is the nominal g(d); near f(p) it is k a at most,
so no face reaches or passes f(p). d always matters: a wrong d (or a wrong password, i.e.
another f(p) and another plane) inverts to a different z.

Inverse: z lies in the plane of z_new and f(p), on the far side of z_new from f(p), at
angle a from f(p) where a solves b = a - g (1 - exp(-k a / g)). With x = k a / g and
y = b / g: x = k (y + 1) + W0(-k exp(-k (y + 1))) (Lambert W, principal branch; k < 1 keeps
its argument away from the branch point at -1/e), polished by two Newton steps. Angles
come from atan2 of the parallel and orthogonal parts, never arccos, so they stay accurate
near 0 and pi. Degenerate cases: z parallel to f(p) (a = 0) is a fixed point; z
antiparallel (a = pi) has no unique plane, so u is taken along a fixed axis orthogonal to
f(p), and the inverse, which rotates away from f(p) in whatever plane z_new gives, lands
back on -f(p), which is z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import lambertw

from masquerade.keys.reference import ReferenceLibrary

_TINY = 1e-12
NEAR_FRACTION = 0.9  # k: the most of angle(z, f(p)) a rotation may cover


@dataclass(frozen=True)
class PrivacyCurve:
    """g(d): privacy level d in [0, 1] -> nominal rotation angle, g(d) = max_angle * d**gamma."""

    max_angle_deg: float = 90.0
    gamma: float = 1.0

    def angle(self, d: float | np.ndarray) -> np.ndarray:
        d = np.asarray(d, dtype=np.float64)
        if np.any((d < 0) | (d > 1)):
            raise ValueError("privacy level d must be in [0, 1]")
        return np.deg2rad(self.max_angle_deg) * d**self.gamma


def _split(v: np.ndarray, axis_unit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parallel component, orthogonal unit direction and orthogonal length of v w.r.t. axis."""
    par = (v * axis_unit).sum(-1, keepdims=True)
    orth = v - par * axis_unit
    norm = np.linalg.norm(orth, axis=-1, keepdims=True)
    return par, orth / np.maximum(norm, _TINY), norm


def _fallback_axis(f_hat: np.ndarray) -> np.ndarray:
    """A fixed unit vector orthogonal to f (used only when z is antiparallel to f)."""
    e = np.zeros_like(f_hat)
    e[..., np.argmin(np.abs(f_hat), axis=-1)] = 1.0
    _, u, _ = _split(e, f_hat)
    return u


def applied_angle(a: np.ndarray, g: np.ndarray, k: float = NEAR_FRACTION) -> np.ndarray:
    """t = g (1 - exp(-k a / g)): the rotation applied at angle a from f(p), nominal g."""
    a, g = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(g, np.float64))
    safe = np.where(g > 0, g, 1.0)
    with np.errstate(over="ignore"):  # subnormal g: a / g -> inf, t -> g, as it should
        return np.where(g > 0, -safe * np.expm1(-k * a / safe), 0.0)


def _solve_a(b: np.ndarray, g: np.ndarray, k: float = NEAR_FRACTION) -> np.ndarray:
    """Invert b = a - applied_angle(a, g) for a >= 0 (b, g broadcast together)."""
    b, g = np.broadcast_arrays(np.asarray(b, np.float64), np.asarray(g, np.float64))
    a = b + g  # far from f exp(-k a / g) underflows against 1, so t = g exactly
    near = (g > 0) & (b < (40.0 / k) * g)
    if np.any(near):
        gn, y = g[near], b[near] / g[near]
        x = k * (y + 1.0) + lambertw(-k * np.exp(-k * (y + 1.0)), 0).real
        for _ in range(2):  # Newton on h(x) = x / k + expm1(-x) - y, h' = 1/k - exp(-x) > 0
            x = np.maximum(x - (x / k + np.expm1(-x) - y) / (1.0 / k - np.exp(-x)), 0.0)
        a = a.copy()
        a[near] = x * gn / k
    return a


def rotate(z: np.ndarray, target: np.ndarray, g: float | np.ndarray) -> np.ndarray:
    """M: rotate descriptors z (..., D) towards unit targets (..., D) by nominal angle g."""
    z = np.asarray(z, dtype=np.float64)
    f_hat = np.asarray(target, dtype=np.float64)
    f_hat = f_hat / np.linalg.norm(f_hat, axis=-1, keepdims=True)
    r = np.linalg.norm(z, axis=-1, keepdims=True)
    z_hat = z / np.maximum(r, _TINY)
    # the plane through f and z: f = cos(a) z_hat + sin(a) u
    cos_a, u, sin_a = _split(f_hat, z_hat)
    a = np.arctan2(sin_a, cos_a)
    antipodal = (sin_a < 1e-9) & (cos_a < 0)
    u = np.where(antipodal, _fallback_axis(f_hat), u)
    t = applied_angle(a, np.asarray(g, dtype=np.float64)[..., None])
    return r * (np.cos(t) * z_hat + np.sin(t) * u)


def unrotate(z_new: np.ndarray, target: np.ndarray, g: float | np.ndarray) -> np.ndarray:
    """M^-1: recover z from M(z) given the same target and nominal angle."""
    z_new = np.asarray(z_new, dtype=np.float64)
    f_hat = np.asarray(target, dtype=np.float64)
    f_hat = f_hat / np.linalg.norm(f_hat, axis=-1, keepdims=True)
    r = np.linalg.norm(z_new, axis=-1, keepdims=True)
    # z_new_hat = cos(b) f + sin(b) v; z = cos(a) f + sin(a) v with a = solve(b)
    cos_b, v, sin_b = _split(z_new / np.maximum(r, _TINY), f_hat)
    b = np.arctan2(sin_b, cos_b)
    a = _solve_a(b, np.asarray(g, dtype=np.float64)[..., None])
    return r * (np.cos(a) * f_hat + np.sin(a) * v)


class IdentityKey:
    """M(z, p, d) and M^-1 for passwords p, with f(p) from a reference library."""

    def __init__(
        self, library: ReferenceLibrary | None = None, curve: PrivacyCurve | None = None
    ) -> None:
        self.library = library or ReferenceLibrary.load()
        self.curve = curve or PrivacyCurve()

    def target(self, password: bytes) -> np.ndarray:
        return self.library.target(password)

    def apply(self, z: np.ndarray, password: bytes, d: float) -> np.ndarray:
        return rotate(z, self.target(password), self.curve.angle(d))

    def invert(self, z_new: np.ndarray, password: bytes, d: float) -> np.ndarray:
        return unrotate(z_new, self.target(password), self.curve.angle(d))
