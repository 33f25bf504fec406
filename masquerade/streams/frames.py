"""What sources yield and sinks take."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from masquerade.redaction import redact


@dataclass
class OriginalCrop:
    """The original pixels of one region the compositor is about to cover.

    Carried on the frame from the pipeline to the file sink, which seals it with the pts
    the frame is actually written at (`masquerade.seals`): the sink is the one place
    that knows that pts, which file (or recording segment) the frame lands in, and
    whether the frame was written at all. `box` is (x1, y1, x2, y2) in frame pixels.
    """

    track_id: int
    box: tuple[int, int, int, int]
    pixels: np.ndarray


@dataclass
class Frame:
    """One decoded video frame as RGB pixels plus the timing needed to re-encode it.

    `pts` is in `time_base` units, exactly as the source had it, so variable frame rate
    survives. `rotation` is the display rotation (degrees, counter-clockwise) the
    container asks players to apply; pixels stay in coded orientation.
    """

    image: np.ndarray
    pts: int | None
    time_base: Fraction
    index: int
    rotation: int = 0
    originals: list[OriginalCrop] = field(default_factory=list)  # when sealing

    @property
    def time(self) -> float | None:
        return None if self.pts is None else float(self.pts * self.time_base)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class StreamInfo:
    """What `masquerade probe` reports and what sinks need to mirror the source."""

    url: str
    container: str
    width: int
    height: int
    codec: str
    time_base: Fraction
    average_rate: Fraction | None
    frames: int | None
    duration_s: float | None
    rotation: int = 0
    audio: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": redact(self.url),
            "container": self.container,
            "width": self.width,
            "height": self.height,
            "codec": self.codec,
            "time_base": str(self.time_base),
            "average_fps": None if self.average_rate is None else float(self.average_rate),
            "frames": self.frames,
            "duration_s": self.duration_s,
            "rotation": self.rotation,
            "audio": self.audio,
        }
