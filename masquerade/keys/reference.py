"""Password -> reference identity f(p): a unit 128-d target that is no real person.

As in Cao et al. (ICCV 2021), a password picks k >= 10 distinct identities from a library
of training identities and combines them. The library (reference_identities.npy) holds
mean dlib descriptors of LFW people from the train split (see reference_identities.md).
f(p) is the unit direction of a positive mix of the chosen identities' offsets from the
library mean c (the centre of face space, about which `rotation.IdentityKey` turns faces);
`descriptor(p)` = c + (median offset length) f(p) is the matching plausible dlib descriptor
of this no-one.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from masquerade.keys.hkdf import hkdf

LIBRARY_FILE = "reference_identities.npy"
DEFAULT_K = 16
MIN_K = 10


class ReferenceLibrary:
    """(M, 128) identity embeddings from which passwords draw their synthetic identities."""

    def __init__(self, embeddings: np.ndarray, k: int = DEFAULT_K) -> None:
        self.embeddings = np.asarray(embeddings, dtype=np.float64)
        if not MIN_K <= k <= len(self.embeddings):
            raise ValueError(f"k must be between {MIN_K} and the library size")
        self.k = k
        self.mean = self.embeddings.mean(0)
        offsets = self.embeddings - self.mean
        self.radius = float(np.median(np.linalg.norm(offsets, axis=1)))

    @classmethod
    @cache
    def load(cls, path: str | Path | None = None) -> ReferenceLibrary:
        """The library shipped with the package, or one at `path`."""
        if path is None:
            with resources.as_file(resources.files("masquerade.keys") / LIBRARY_FILE) as p:
                return cls(np.load(p))
        return cls(np.load(path))

    def choose(self, password: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Indices of k distinct identities and their weights in [0.5, 1.5), from p."""
        stream = np.frombuffer(hkdf(password, b"masquerade/v1/reference", 255 * 32), ">u4")
        m = len(self.embeddings)
        limit = (2**32 // m) * m  # rejection sampling keeps the choice uniform
        picks: list[int] = []
        for value in stream[stream < limit] % m:
            if value not in picks:
                picks.append(int(value))
                if len(picks) == self.k:
                    break
        if len(picks) < self.k:  # would need ~2000 rejections in a row
            raise RuntimeError("password stream exhausted")
        weights = 0.5 + stream[-self.k :] / 2.0**32
        return np.array(picks), weights

    def target(self, password: bytes) -> np.ndarray:
        """f(p): the unit 128-d reference identity for a password, as seen from the mean."""
        idx, w = self.choose(password)
        mix = (w[:, None] * (self.embeddings[idx] - self.mean)).sum(0)
        return mix / np.linalg.norm(mix)

    def descriptor(self, password: bytes) -> np.ndarray:
        """The synthetic identity as a dlib descriptor: mean + typical offset along f(p)."""
        return self.mean + self.radius * self.target(password)
