"""The keyed identity transform M(z, p, d) and its inverse.

M rotates a face descriptor towards the password's reference identity f(p), inside the
plane they span, keeping its length:

    M(z, p, d) = |z| (cos(t) z_hat + sin(t) u),   u = unit part of f(p) orthogonal to z_hat

Frame. dlib descriptors are not centred: on LFW they have length ~1.43 and lie within
~37 degrees of each other, so about dlib's origin f(p) is only ~31 degrees from every face,
every g(d) above ~30 degrees is clamped (below) and d stops meaning anything. `IdentityKey`
therefore rotates z - c, the offset from the reference library's mean c (the centre of
face space), where a face and f(p) are ~90 degrees apart (5-95%: 72-107) and a rotation by
t moves a face by |z - c| 2 sin(t / 2), |z - c| ~ 0.57. `rotate` / `unrotate` work in
whatever frame they are given.

Invertibility. Rotating by the nominal angle g(d) is 2-to-1 once g(d) exceeds
a = angle(z, f(p)) (the team measured about half of faces at 90 degrees): z overshoots
f(p) and one cannot tell from which side it came. The applied angle is a soft minimum of
g and k a (k = NEAR_FRACTION = 0.9, n = SOFTNESS = 4):

    t = (g^-n + (k a)^-n)^(-1/n)           (t = 0 when g = 0 or a = 0)

dt/da = k (t / (k a))^(n+1) <= k < 1, so b = a - t (the new angle to f(p)) is strictly
increasing with slope in [1 - k, 1]: a bijection of [0, pi] for each (p, d), never reaching
f(p), with the inverse at most 1 / (1 - k) = 10 times as sensitive as M. Far from f(p)
(a >> g) the applied angle is the nominal g(d); it never exceeds 0.9 a. d always matters:
a wrong d, or a wrong password (another f(p), another plane), inverts to a different z.

Inverse. z lies in the plane of z_new and f(p), on the far side of z_new from f(p), at the
angle a solving a - t(a) = b. h(a) = a - t(a) - b is increasing and convex (t is a power
mean with negative exponent, hence concave), so Newton's method started at the upper
bound min(b / (1 - k), b + g) >= a descends monotonically onto the root without
overshooting. Angles come from atan2 of the parallel and orthogonal parts, never arccos,
so they stay accurate near 0 and pi. Degenerate cases: z parallel to f(p) (a = 0) is a
fixed point; z antiparallel (a = pi) has no unique plane, so u is a fixed axis orthogonal
to f(p), and the inverse, rotating away from f(p) in whatever plane z_new gives, lands back
on -f(p), which is z. Near that pole the plane is ill-conditioned: at sin(a) = s the
round trip is exact to ~1e-16 / s (1e-10 at s = 1e-6); real faces sit at a = 72-107
degrees from f(p).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from masquerade.keys.reference import ReferenceLibrary

_TINY = 1e-12
NEAR_FRACTION = 0.9  # k: the most of angle(z, f(p)) a rotation may cover
SOFTNESS = 4.0  # n: higher follows min(g, k a) more closely, lower is smoother
_NEWTON_STEPS = 40


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
    np.put_along_axis(e, np.argmin(np.abs(f_hat), axis=-1)[..., None], 1.0, axis=-1)
    _, u, _ = _split(e, f_hat)
    return u


def _soft_min(a: np.ndarray, g: np.ndarray, k: float, n: float) -> tuple[np.ndarray, np.ndarray]:
    """t = (g^-n + (k a)^-n)^(-1/n) and dt/da, evaluated without overflow."""
    a, g = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(g, np.float64))
    ka = k * a
    lo, hi = np.minimum(ka, g), np.maximum(ka, g)
    shrink = (1.0 + (lo / np.maximum(hi, _TINY)) ** n) ** (-1.0 / n)
    t = np.where(lo > 0, lo * shrink, 0.0)
    ratio = np.where(ka > 0, t / np.maximum(ka, _TINY), 1.0)  # t / (k a), in [0, 1]
    return t, np.where(g > 0, k * ratio ** (n + 1), 0.0)


def applied_angle(
    a: np.ndarray, g: np.ndarray, k: float = NEAR_FRACTION, n: float = SOFTNESS
) -> np.ndarray:
    """The rotation actually applied to a face at angle a from f(p), for nominal angle g."""
    return _soft_min(a, g, k, n)[0]


def _solve_a(
    b: np.ndarray, g: np.ndarray, k: float = NEAR_FRACTION, n: float = SOFTNESS
) -> np.ndarray:
    """Invert b = a - applied_angle(a, g) for a >= 0 (b, g broadcast together)."""
    b, g = np.broadcast_arrays(np.asarray(b, np.float64), np.asarray(g, np.float64))
    a = np.minimum(b / (1.0 - k), b + g)  # upper bound of the root: Newton descends from here
    for _ in range(_NEWTON_STEPS):
        t, slope = _soft_min(a, g, k, n)
        step = (a - t - b) / (1.0 - slope)
        a = np.maximum(a - step, b)
        if np.all(np.abs(step) <= 1e-15 * np.maximum(a, 1.0)):
            break
    return a


def rotate(z: np.ndarray, target: np.ndarray, g: float | np.ndarray) -> np.ndarray:
    """M: rotate vectors z (..., D) towards targets (..., D) by nominal angle g."""
    z = np.asarray(z, dtype=np.float64)
    f_hat = np.asarray(target, dtype=np.float64)
    f_hat = f_hat / np.linalg.norm(f_hat, axis=-1, keepdims=True)
    r = np.linalg.norm(z, axis=-1, keepdims=True)
    z_hat = z / np.maximum(r, _TINY)
    # the plane through f and z: f = cos(a) z_hat + sin(a) u
    cos_a, u, sin_a = _split(f_hat, z_hat)
    a = np.arctan2(sin_a, cos_a)
    antipodal = (sin_a < 1e-9) & (cos_a < 0)
    u = np.where(antipodal, _fallback_axis(np.broadcast_to(f_hat, z.shape)), u)
    t = applied_angle(a, np.asarray(g, dtype=np.float64)[..., None])
    return r * (np.cos(t) * z_hat + np.sin(t) * u)


def unrotate(z_new: np.ndarray, target: np.ndarray, g: float | np.ndarray) -> np.ndarray:
    """M^-1: recover z from rotate(z, target, g) given the same target and nominal angle."""
    z_new = np.asarray(z_new, dtype=np.float64)
    f_hat = np.asarray(target, dtype=np.float64)
    f_hat = f_hat / np.linalg.norm(f_hat, axis=-1, keepdims=True)
    r = np.linalg.norm(z_new, axis=-1, keepdims=True)
    # z_new_hat = cos(b) f + sin(b) v; z = cos(a) f + sin(a) v with a - t(a) = b
    cos_b, v, sin_b = _split(z_new / np.maximum(r, _TINY), f_hat)
    b = np.arctan2(sin_b, cos_b)
    a = _solve_a(b, np.asarray(g, dtype=np.float64)[..., None])
    return r * (np.cos(a) * f_hat + np.sin(a) * v)


class IdentityKey:
    """M(z, p, d) and M^-1 on dlib descriptors, about the centre of face space.

    f(p) comes from a reference library; the rotation acts on z - c with c the library
    mean, so |z - c| (how typical a face is) is kept and only who it is changes.
    """

    def __init__(
        self, library: ReferenceLibrary | None = None, curve: PrivacyCurve | None = None
    ) -> None:
        self.library = library or ReferenceLibrary.load()
        self.curve = curve or PrivacyCurve()

    @property
    def centre(self) -> np.ndarray:
        return self.library.mean

    def target(self, password: bytes | Sequence[bytes]) -> np.ndarray:
        """f(p): unit direction, from the centre, of the password's reference identity;
        (N, 128) for a sequence of N passwords (one per face, e.g. per track)."""
        if isinstance(password, bytes | bytearray):
            return self.library.target(bytes(password))
        return np.stack([self.library.target(bytes(p)) for p in password])

    def apply(self, z: np.ndarray, password: bytes | Sequence[bytes], d: float) -> np.ndarray:
        """M(z, p, d) for descriptors z (128,) or (N, 128)."""
        c = self.centre
        return c + rotate(np.asarray(z, np.float64) - c, self.target(password), self.curve.angle(d))

    def invert(self, z_new: np.ndarray, password: bytes | Sequence[bytes], d: float) -> np.ndarray:
        """M^-1(z_new, p, d): the original descriptor, given the same password(s) and d."""
        c = self.centre
        return c + unrotate(
            np.asarray(z_new, np.float64) - c, self.target(password), self.curve.angle(d)
        )
