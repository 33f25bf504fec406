"""The anonymizer interface: one method, batched over the faces of a frame."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

V = TypeVar("V")


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


class TrackCache(OrderedDict[int, V]):
    """Per-track state of a keyed anonymizer: storing or touching a track makes it the
    most recent, and beyond `limit` tracks the least recently seen are forgotten (a
    long live stream would otherwise grow without bound)."""

    def __init__(self, limit: int = 4096) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, track_id: int, value: V) -> None:
        super().__setitem__(track_id, value)
        self.move_to_end(track_id)
        while len(self) > self.limit:
            self.popitem(last=False)


class Anonymizer(Protocol):
    """Returns, for each region, an image of the same shape with the face anonymized.

    The compositor decides which pixels of the result replace the frame (mask, feather),
    so anonymizers may change the whole region freely.
    """

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]: ...


def uses_generator(face_size: float | np.ndarray, score: float | np.ndarray, min_px: int,
                   min_score: float) -> bool | np.ndarray:
    """Whether a face (or an array of faces) is big and certain enough to be generated.

    Shared by `SizeGate` and the track log, so restore re-renders exactly those faces.
    """
    return (np.asarray(face_size) >= min_px) & (np.asarray(score) >= min_score)


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

    @property
    def refreshed_tracks(self) -> int:
        return getattr(self.primary, "refreshed_tracks", 0)

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]:
        small = [not uses_generator(r.face_size, r.score, self.min_px, self.min_score)
                 for r in regions]
        big_out = iter(self.primary.anonymize([r for r, s in zip(regions, small, strict=True)
                                               if not s]))
        small_out = iter(self.fallback.anonymize([r for r, s in zip(regions, small, strict=True)
                                                  if s]))
        self.fallback_faces += sum(small)
        return [next(small_out) if s else next(big_out) for s in small]


class TemporalBlend:
    """Steadies generated faces: each track's output is blended with its previous one.

    A generator run frame by frame re-renders skin and eyes slightly differently each
    time, which reads as flicker. The previous output, scaled to the new face box, is
    mixed in with weight `1 - alpha`; alpha = 1 turns this off.
    """

    def __init__(self, inner: Anonymizer, alpha: float = 0.6, max_tracks: int = 1024):
        self.inner = inner
        self.alpha = alpha
        self.max_tracks = max_tracks
        self._last: dict[int, np.ndarray] = {}  # each track's last output face

    @property
    def fallback_faces(self) -> int:
        return getattr(self.inner, "fallback_faces", 0)

    @property
    def refreshed_tracks(self) -> int:
        return getattr(self.inner, "refreshed_tracks", 0)

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]:
        import cv2

        outputs = self.inner.anonymize(regions)
        if self.alpha >= 1.0:
            return outputs
        steadied = []
        for region, out in zip(regions, outputs, strict=True):
            out = np.asarray(out)
            x1, y1, x2, y2 = np.round(region.box).astype(int)
            x1, y1 = max(x1, 0), max(y1, 0)
            x2, y2 = min(x2, out.shape[1]), min(y2, out.shape[0])
            if x2 <= x1 or y2 <= y1:
                steadied.append(out)
                continue
            previous = self._last.get(region.track_id)
            if previous is not None:
                warped = cv2.resize(previous, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
                out = out.copy()
                out[y1:y2, x1:x2] = cv2.addWeighted(out[y1:y2, x1:x2], self.alpha, warped,
                                                    1.0 - self.alpha, 0.0)
            self._last[region.track_id] = out[y1:y2, x1:x2].copy()
            if len(self._last) > self.max_tracks:
                self._last.pop(next(iter(self._last)))
            steadied.append(out)
        return steadied
