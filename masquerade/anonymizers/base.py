"""The anonymizer interface: one method, batched over the faces of a frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class FaceRegion:
    """A face cut out of a frame with some context around it.

    `pixels` is an RGB uint8 copy the anonymizer may modify; `box` is the face box and
    `keypoints` the detector's keypoints, both in `pixels` coordinates. `track_id` lets
    keyed modes keep one fake identity per track.
    """

    pixels: np.ndarray
    box: np.ndarray
    track_id: int
    keypoints: np.ndarray | None = None
    score: float = 1.0  # detector confidence (of the track's last detection)

    @property
    def face_size(self) -> float:
        """Shorter side of the face box: what anonymization strength scales with."""
        return float(max(1.0, min(self.box[2] - self.box[0], self.box[3] - self.box[1])))


class Anonymizer(Protocol):
    """Returns, for each region, an image of the same shape with the face anonymized.

    The compositor decides which pixels of the result replace the frame (mask, feather),
    so anonymizers may change the whole region freely.
    """

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]: ...


class SizeGate:
    """Routes faces a generator should not render to a classic anonymizer, and counts them.

    A generator fed a 20 px face produces mush at best and a recognizable face at worst,
    and one fed a doubtful detection pastes a face onto a wall; below `min_px` or
    `min_score` a classic mode is the safe choice.
    """

    def __init__(self, primary: Anonymizer, fallback: Anonymizer, min_px: int,
                 min_score: float = 0.0):
        self.primary = primary
        self.fallback = fallback
        self.min_px = min_px
        self.min_score = min_score
        self.fallback_faces = 0

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]:
        small = [r.face_size < self.min_px or r.score < self.min_score for r in regions]
        big_out = iter(self.primary.anonymize([r for r, s in zip(regions, small, strict=True)
                                               if not s]))
        small_out = iter(self.fallback.anonymize([r for r, s in zip(regions, small, strict=True)
                                                  if s]))
        self.fallback_faces += sum(small)
        return [next(small_out) if s else next(big_out) for s in small]
