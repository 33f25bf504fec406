"""The default keyed identity transform: every face turns by the same angle, in a direction
only the password knows.

    M(z, p, d) = z + B (R_p(g(d)) - I) B+ (z - c),   R_p(t) = cos(t) I + sin(t) J_p

c is the reference library's mean (the centre of face space), B = U S and B+ = S^-1 U^T map
between descriptors and the library's top-k principal axes U, scaled by S = sqrt(lambda)^w
(w = WHITENING: halfway between the raw and the whitened metric, so that a turn does not
push a face far along an axis real faces barely use), and J_p is a password-chosen complex
structure on those k axes (J = Q J0 Q^T, Q orthogonal from HKDF/SHAKE-256, J0 = k/2 planes):
all k/2 planes turn by g(d) at once, so every face moves by the same angle, wherever it
sits. The part of z - c outside the k axes is kept.

Why not Cao et al.'s in-plane rotation towards f(p) (`rotation.IdentityKey`, still
selectable): it is a rotation in the plane of z and f(p), so it must stop short of f(p) to
stay invertible, and at the angles that protect (120 degrees) most faces end near f(p),
where M^-1 is up to 10x as sensitive as M. The generator lands ~0.35 (dlib distance) from
the identity it is asked for; M^-1 magnified that to ~0.7 and only 18% of faces came back
(50 LFW test faces, d = 1). This transform is linear and orthogonal in its frame, so
M^-1 = M with -g(d), exact, defined for every z, and errors come back at their own size
(up to sqrt of the axes' scale ratio): the same stage-2 generator restores 94% with 0%
still matched at 90 degrees (docs/identity.md has the sweep with the shipped one).
180 degrees would send every face to c - (z - c) whatever the password (R = -I), so keys
stop mattering near there; 90 degrees (default) sends each face to a direction orthogonal
to its own that differs per password.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from masquerade.keys.hkdf import hkdf
from masquerade.keys.reference import ReferenceLibrary
from masquerade.keys.rotation import PrivacyCurve

AXES_FILE = "identity_axes.npz"
DIMS = 64  # principal axes turned (98.3% of the library's variance); even
WHITENING = 0.25  # S = lambda^WHITENING: 0 = raw metric (isometry), 0.5 = fully whitened
_INFO = b"masquerade/v1/orthogonal"


def principal_axes(embeddings: np.ndarray, dims: int = DIMS) -> tuple[np.ndarray, np.ndarray]:
    """(128, dims) principal axes and their variances, each axis's largest entry positive
    (eigenvector signs are otherwise up to the LAPACK build)."""
    x = np.asarray(embeddings, np.float64)
    lam, u = np.linalg.eigh(np.cov((x - x.mean(0)).T))
    order = np.argsort(lam)[::-1][:dims]
    lam, u = lam[order], u[:, order]
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(dims)])
    return u * signs, lam


@lru_cache(maxsize=1)
def load_axes(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The shipped axes (built from the shipped library by tools/build_reference_library.py):
    a file, so every machine turns faces in exactly the same frame."""
    if path is None:
        with resources.as_file(resources.files("masquerade.keys") / AXES_FILE) as p:
            data = np.load(p)
    else:
        data = np.load(Path(path))
    return data["axes"].astype(np.float64), data["variances"].astype(np.float64)


def _normals(seed: bytes, count: int) -> np.ndarray:
    """Standard normals from a seed by SHAKE-256 and Box-Muller: stable across numpy versions,
    unlike numpy's generators."""
    u = np.frombuffer(hashlib.shake_256(seed).digest(4 * count + 4), "<u4")[: count + count % 2]
    u = (u.astype(np.float64) + 0.5) / 2.0**32
    r = np.sqrt(-2.0 * np.log(u[0::2]))
    return np.concatenate([r * np.cos(2 * np.pi * u[1::2]), r * np.sin(2 * np.pi * u[1::2])])[
        :count
    ]


@lru_cache(maxsize=4096)
def complex_structure(password: bytes, dims: int = DIMS) -> np.ndarray:
    """J_p: (dims, dims) orthogonal and antisymmetric (J^2 = -I), from the password alone."""
    if dims % 2:
        raise ValueError("dims must be even")
    g = _normals(hkdf(password, _INFO, 32), dims * dims).reshape(dims, dims)
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))  # the unique QR with a positive diagonal
    j0 = np.zeros((dims, dims))
    idx = np.arange(0, dims, 2)
    j0[idx, idx + 1], j0[idx + 1, idx] = -1.0, 1.0
    j = q @ j0 @ q.T
    j.setflags(write=False)
    return j


class OrthogonalIdentityKey:
    """M(z, p, d) and M^-1 with the interface of `rotation.IdentityKey` (apply, invert,
    centre), per face or per batch with one password per face."""

    def __init__(
        self,
        library: ReferenceLibrary | None = None,
        curve: PrivacyCurve | None = None,
        axes: tuple[np.ndarray, np.ndarray] | None = None,
        whitening: float = WHITENING,
    ) -> None:
        self.library = library or ReferenceLibrary.load()
        self.curve = curve or PrivacyCurve(max_angle_deg=90.0)
        u, lam = axes if axes is not None else load_axes()
        self.axes = np.asarray(u, np.float64)
        self.scale = np.asarray(lam, np.float64) ** whitening

    @property
    def centre(self) -> np.ndarray:
        return self.library.mean

    def _turn(self, z: np.ndarray, password: bytes | Sequence[bytes], angle: np.ndarray
              ) -> np.ndarray:
        z = np.asarray(z, np.float64)
        single = z.ndim == 1
        zs = np.atleast_2d(z)
        passwords = [password] * len(zs) if isinstance(password, bytes | bytearray) else password
        if len(passwords) != len(zs):
            raise ValueError("one password per descriptor")
        w = ((zs - self.centre) @ self.axes) / self.scale  # B+ (z - c)
        jw = np.stack([complex_structure(bytes(p), len(self.scale)) @ wi
                       for p, wi in zip(passwords, w, strict=True)])
        turned = np.cos(angle) * w + np.sin(angle) * jw
        out = zs + ((turned - w) * self.scale) @ self.axes.T
        return out[0] if single else out

    def apply(self, z: np.ndarray, password: bytes | Sequence[bytes], d: float) -> np.ndarray:
        """M(z, p, d) for descriptors z (128,) or (N, 128)."""
        return self._turn(z, password, self.curve.angle(d))

    def invert(self, z_new: np.ndarray, password: bytes | Sequence[bytes], d: float
               ) -> np.ndarray:
        """M^-1(z_new, p, d): the same turn backwards."""
        return self._turn(z_new, password, -self.curve.angle(d))
