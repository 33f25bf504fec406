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
