"""Keeping the original pixels of every covered region, for exact recovery under a warrant.

The compositor hands each region's original crop to a `Sealer` before anonymizing it
(the anonymizer may modify its copy in place). `CropCollector` keeps the crops of the
frame being processed; the pipeline attaches them to the frame (`Frame.originals`) and
the file sink encrypts and stores them with the pts the frame is written at
(`masquerade.seals`). Sealing is not done here because only the sink knows that pts,
which file or recording segment the frame lands in, and whether it is written at all (a
dropped frame's crops must not be sealed).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from masquerade.streams.frames import OriginalCrop


class Sealer(Protocol):
    def seal(self, track_id: int, box: tuple[int, int, int, int], pixels: np.ndarray) -> None:
        """Keep `pixels`, the original of the region `box` (x1, y1, x2, y2, frame pixels)
        of track `track_id`, before the region is covered. `pixels` is the caller's
        copy: the sealer must not modify it."""


class CropCollector:
    """A `Sealer` that gathers one frame's crops for the pipeline to attach to the frame."""

    def __init__(self) -> None:
        self._crops: list[OriginalCrop] = []

    def seal(self, track_id: int, box: tuple[int, int, int, int], pixels: np.ndarray) -> None:
        # A copy of its own: the anonymizer may paint over the region's pixels in place.
        self._crops.append(OriginalCrop(int(track_id), tuple(int(v) for v in box),  # type: ignore[arg-type]
                                        pixels.copy()))

    def take(self) -> list[OriginalCrop]:
        """The crops gathered since the last call (and forget them)."""
        crops, self._crops = self._crops, []
        return crops
