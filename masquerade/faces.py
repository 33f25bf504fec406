"""`Faces`: the one data type that flows between pipeline stages.

Modelled on supervision's `Detections`: parallel arrays, one row per face, so every stage
(detector, tracker, anonymizer, compositor) works on whole frames at once without
per-face Python objects on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


@dataclass
class Faces:
    """Faces in one frame.

    `xyxy` are pixel boxes (x1, y1, x2, y2). `keypoints` is (N, K, 2) in pixels or None
    when the detector gives none. `track_ids` is -1 before tracking. `coasting` marks rows
    that come from a track's prediction rather than a detection in this frame: they are
    anonymized all the same (fail closed).
    """

    xyxy: np.ndarray = field(default_factory=_empty_boxes)
    scores: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    coasting: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        if self.scores is None:
            self.scores = np.ones(n, dtype=np.float32)
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, dtype=np.int64)
        if self.coasting is None:
            self.coasting = np.zeros(n, dtype=bool)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(n)
        self.coasting = np.asarray(self.coasting, dtype=bool).reshape(n)
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
            if self.keypoints.ndim != 3 or len(self.keypoints) != n:
                raise ValueError(f"keypoints must be (N, K, 2) with N={n}")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray) -> Faces:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Faces(
            xyxy=self.xyxy[index],
            scores=self.scores[index],
            keypoints=None if self.keypoints is None else self.keypoints[index],
            track_ids=self.track_ids[index],
            coasting=self.coasting[index],
        )

    def __iter__(self) -> Iterator[Faces]:
        for i in range(len(self)):
            yield self[i]

    @classmethod
    def empty(cls) -> Faces:
        return cls()

    @classmethod
    def merge(cls, parts: list[Faces]) -> Faces:
        """Concatenate; keypoints survive only if every part has the same layout."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        kps = [p.keypoints for p in parts]
        keypoints = None
        if all(k is not None for k in kps) and len({k.shape[1:] for k in kps}) == 1:
            keypoints = np.concatenate(kps)
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            keypoints=keypoints,
            track_ids=np.concatenate([p.track_ids for p in parts]),
            coasting=np.concatenate([p.coasting for p in parts]),
        )

    @property
    def wh(self) -> np.ndarray:
        return self.xyxy[:, 2:] - self.xyxy[:, :2]

    @property
    def centers(self) -> np.ndarray:
        return (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2

    def padded(self, padding: float) -> np.ndarray:
        """Boxes grown by `padding` times their size on every side."""
        grow = self.wh * padding
        return np.concatenate([self.xyxy[:, :2] - grow, self.xyxy[:, 2:] + grow], axis=1)


def _intersections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersection areas of (N, 4) and (M, 4) xyxy boxes, and both box areas."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    return inter, np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes, as an (N, M) matrix."""
    inter, area_a, area_b = _intersections(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def box_containment(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over the smaller box's area, as an (N, M) matrix."""
    inter, area_a, area_b = _intersections(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-9), 0.0).astype(np.float32)


def nms(faces: Faces, iou_threshold: float, containment: float = 0.8) -> Faces:
    """Greedy non-maximum suppression, used to merge overlapping detector tiles.

    Also suppresses a box mostly inside a better one: tiles of different scales often
    return the same face once tight and once loose, with an IoU below the threshold.
    """
    if len(faces) <= 1:
        return faces
    order = np.argsort(-faces.scores)
    iou = np.maximum(box_iou(faces.xyxy, faces.xyxy),
                     (box_containment(faces.xyxy, faces.xyxy) > containment).astype(np.float32))
    keep: list[int] = []
    suppressed = np.zeros(len(faces), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_threshold
    return faces[np.array(keep)]
