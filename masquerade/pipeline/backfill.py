"""Covering a face in the frames before it was first detected (fail closed, backwards).

A detector finds a face late: one entering from the frame edge only once most of it is
inside (BlazeFace needs ~60%; a half face is not a face to it), one that appears between
two detection frames (`detector.every_n_frames`) only at the next one. Until then the
face is raw. Tracking cannot help, since no track exists yet, but time can: frames are
held back for `tracker.backfill_frames` before they are composited, and a track born now
also covers the held frames before its birth.

Where it covers them: a face born at a frame edge came in through that edge, so in the
earlier frames its visible part lies between its birth box and the edge: the birth box
and copies of it moved outward by half and one box size (their padded ellipses overlap)
cover every earlier position of a face moving inwards, whatever its speed; the boxes
grow a little per frame back for sideways drift. A face born inside the frame is covered
at its birth box for the frames a detection gap could have hidden it (`every_n_frames`);
a longer backfill there would mostly paint false positives longer.

Backfilled rows have score 0 and no keypoints: generators (deid, camouflage) give way to
the fallback mode there, because the box is only a region that holds the face, not an
aligned face.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from masquerade.faces import Faces
from masquerade.pipeline.edges import edge_path

GROWTH = 0.04  # relative box growth per frame back, for drift along the edge ...
MAX_GROWTH = 0.3  # ... up to this: 30 frames back a 180 px face's boxes were 400 px


@dataclass
class Held:
    frame: object  # the pipeline's Frame; kept opaque here
    faces: Faces
    backfill: list[Faces]


class Backfill:
    """A FIFO of the last `frames` frames and the faces they will be covered with."""

    def __init__(self, frames: int, interior_frames: int):
        self.frames = max(0, int(frames))
        self.interior_frames = min(self.frames, max(0, int(interior_frames)))
        self._held: deque[Held] = deque()
        self.backfilled_faces = 0  # rows added to earlier frames, for the run summary

    def push(self, frame: object, faces: Faces, born: np.ndarray, size: tuple[int, int]
             ) -> list[tuple[object, Faces]]:
        """Hold `frame`; backfill `faces[born]` into the held frames; return what is due."""
        if born.any() and self._held:
            self._backfill(faces[born], size)
        self._held.append(Held(frame, faces, []))
        due = []
        while len(self._held) > self.frames:
            due.append(self._release(self._held.popleft()))
        return due

    def drain(self) -> list[tuple[object, Faces]]:
        """Everything still held, in order (end of input)."""
        out = [self._release(h) for h in self._held]
        self._held.clear()
        return out

    def _backfill(self, newborn: Faces, size: tuple[int, int]) -> None:
        boxes, owner = edge_path(newborn.xyxy, *size)
        edge = np.bincount(owner, minlength=len(newborn)) > 1
        for back, held in enumerate(reversed(self._held), start=1):
            rows = edge[owner] if back > self.interior_frames else np.ones(len(owner), bool)
            if not rows.any():
                break
            grow = min(GROWTH * back, MAX_GROWTH) * (boxes[rows, 2:] - boxes[rows, :2]) / 2
            held.backfill.append(Faces(
                xyxy=np.concatenate([boxes[rows, :2] - grow, boxes[rows, 2:] + grow], axis=1),
                scores=np.zeros(int(rows.sum()), np.float32),
                track_ids=newborn.track_ids[owner[rows]],
                coasting=np.ones(int(rows.sum()), bool),
            ))
            self.backfilled_faces += len(np.unique(owner[rows]))

    @staticmethod
    def _release(held: Held) -> tuple[object, Faces]:
        if not held.backfill:
            return held.frame, held.faces
        kps = held.faces.keypoints
        if kps is not None:  # NaN keypoints keep the detected faces' ones through the merge
            for part in held.backfill:
                part.keypoints = np.full((len(part), *kps.shape[1:]), np.nan, np.float32)
        return held.frame, Faces.merge([held.faces, *held.backfill])
