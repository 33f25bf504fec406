"""Multi-face tracking: Kalman motion model + ByteTrack-style two-stage IoU association.

The tracker exists for fail-closed coverage as much as for identity: a track that loses
its detection keeps emitting its predicted box (grown a little each frame to absorb the
prediction error) for `max_coast_frames`, so a face the detector misses for a few frames
is still anonymized, and per-track state (keys, fake identities) survives the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from masquerade.config import TrackerConfig
from masquerade.faces import Faces, box_iou
from masquerade.pipeline.edges import CUT_MARGIN_PX, EDGE_MARGIN, outward

# Motion noise as fractions of box height, as in SORT/ByteTrack.
_STD_POSITION = 1.0 / 20
_STD_VELOCITY = 1.0 / 160

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def _xyxy_to_cxcywh(b: np.ndarray) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]])


def _cxcywh_to_xyxy(s: np.ndarray) -> np.ndarray:
    cx, cy, w, h = s[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


EXIT_COAST_FACTOR = 4  # a track leaving through an edge coasts up to 4x max_coast_frames
COAST_SCORE_DECAY = 0.9  # per missed frame: 0.95 -> 0.77 after 2, 0.69 after 3


@dataclass
class Track:
    track_id: int
    mean: np.ndarray
    covariance: np.ndarray
    last_box: np.ndarray
    keypoints: np.ndarray | None
    score: float
    hits: int = 1
    misses: int = 0
    age: int = 0

    @classmethod
    def start(cls, track_id: int, box: np.ndarray, keypoints: np.ndarray | None,
              score: float) -> Track:
        z = _xyxy_to_cxcywh(box)
        mean = np.concatenate([z, np.zeros(4)])
        h = max(z[3], 1.0)
        std = np.array([2 * _STD_POSITION * h] * 4 + [10 * _STD_VELOCITY * h] * 4)
        return cls(track_id, mean, np.diag(std**2), box.copy(), keypoints, score)

    def predict(self) -> None:
        h = max(self.mean[3], 1.0)
        q = np.diag(np.array([_STD_POSITION * h] * 4 + [_STD_VELOCITY * h] * 4) ** 2)
        self.mean = _F @ self.mean
        self.mean[2:4] = np.maximum(self.mean[2:4], 1.0)
        self.covariance = _F @ self.covariance @ _F.T + q
        self.age += 1

    def update(self, box: np.ndarray, keypoints: np.ndarray | None, score: float) -> None:
        h = max(self.mean[3], 1.0)
        r = np.diag(np.full(4, (_STD_POSITION * h) ** 2))
        s = _H @ self.covariance @ _H.T + r
        gain = self.covariance @ _H.T @ np.linalg.inv(s)
        self.mean = self.mean + gain @ (_xyxy_to_cxcywh(box) - _H @ self.mean)
        self.covariance = (np.eye(8) - gain @ _H) @ self.covariance
        self.last_box = box.copy()
        self.keypoints = keypoints
        # The best evidence so far that this is a face: one weak detection in a confirmed
        # track must not switch a generated fake face to the fallback mode for a frame.
        self.score = max(self.score, score)
        self.hits += 1
        self.misses = 0

    @property
    def predicted_box(self) -> np.ndarray:
        return _cxcywh_to_xyxy(self.mean)


class Tracker:
    """Assigns stable ids to faces and keeps covering faces the detector just lost."""

    def __init__(self, config: TrackerConfig, min_score: float = 0.0):
        self.config = config
        self.min_score = min_score
        self.tracks: list[Track] = []
        self._next_id = 1
        self.total_tracks = 0
        self.born: list[int] = []  # ids of the tracks the last update started
        self.frame_size: tuple[int, int] | None = None  # (width, height), from update()

    def _associate(self, tracks: list[Track], boxes: np.ndarray) -> list[tuple[int, int]]:
        if not tracks or not len(boxes):
            return []
        iou = box_iou(np.stack([t.predicted_box for t in tracks]), boxes)
        rows, cols = linear_sum_assignment(-iou)
        return [(r, c) for r, c in zip(rows, cols, strict=True)
                if iou[r, c] >= self.config.iou_threshold]

    def update(self, detections: Faces, size: tuple[int, int] | None = None) -> Faces:
        """Advance one frame with this frame's detections; returns every face to cover.

        `size` (width, height) of the frame lets tracks leaving it coast until they are out.
        """
        for track in self.tracks:
            track.predict()
        self.born = []
        if size is not None:
            self.frame_size = size
        high = detections.scores >= self.config.high_score
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        pending = list(range(len(self.tracks)))
        for stage_mask in (high, ~high):
            det_idx = np.flatnonzero(stage_mask)
            pairs = self._associate([self.tracks[i] for i in pending], detections.xyxy[det_idx])
            for r, c in pairs:
                ti, di = pending[r], int(det_idx[c])
                kp = None if detections.keypoints is None else detections.keypoints[di]
                self.tracks[ti].update(detections.xyxy[di], kp, float(detections.scores[di]))
                matched_tracks.add(ti)
                matched_dets.add(di)
            pending = [i for i in pending if i not in matched_tracks]
        for i in pending:
            self.tracks[i].misses += 1
        # Every unmatched detection from tracker.start_score up starts a track (default:
        # all of them, low scores included: fail closed).
        for di in range(len(detections)):
            if di in matched_dets or detections.scores[di] < self.config.start_score:
                continue
            kp = None if detections.keypoints is None else detections.keypoints[di]
            self.tracks.append(Track.start(self._next_id, detections.xyxy[di], kp,
                                           float(detections.scores[di])))
            self.born.append(self._next_id)
            self._next_id += 1
            self.total_tracks += 1
        self.tracks = [t for t in self.tracks if self._alive(t, self.frame_size)]
        return self._emit()

    def _alive(self, track: Track, size: tuple[int, int] | None) -> bool:
        """Tracks coast `max_coast_frames`; one lost at a frame edge coasts on (up to
        EXIT_COAST_FACTOR times as long) while its box is still in the frame: a face
        leaving the frame stops being detected when about half of it is out, and the rest
        of it leaves slowly (track it out)."""
        limit = self.config.max_coast_frames
        if track.misses <= limit:
            return True
        if size is None or track.misses > EXIT_COAST_FACTOR * limit:
            return False
        width, height = size
        if not self._leaving(track, size):
            return False
        # out once the prediction is a box size past the edge (it may run ahead)
        box = track.predicted_box
        w, h = box[2] - box[0], box[3] - box[1]
        return bool(box[2] > -w and box[3] > -h and box[0] < width + w and box[1] < height + h)

    @staticmethod
    def _leaving(track: Track, size: tuple[int, int]) -> bool:
        """Last seen cut by a frame edge and moving out through it."""
        direction = outward(track.last_box[None], *size, EDGE_MARGIN, CUT_MARGIN_PX)[0]
        return bool(direction.any() and float(direction @ track.mean[4:6]) > 0)

    def _exit_box(self, track: Track) -> np.ndarray | None:
        """The box that covers a face leaving through a frame edge: the hull of its last
        detected box and its prediction, which spans everything of it still inside
        whether it slows down or not; None when the track is not leaving."""
        if self.frame_size is None or not self._leaving(track, self.frame_size):
            return None
        box = track.predicted_box
        return np.concatenate([np.minimum(box[:2], track.last_box[:2]),
                               np.maximum(box[2:], track.last_box[2:])])

    def predict(self) -> Faces:
        """Advance one frame without running the detector (detect every N frames)."""
        self.born = []
        for track in self.tracks:
            track.predict()
        return self._emit(fresh=False)

    def _emit(self, fresh: bool = True) -> Faces:
        if not self.tracks:
            return Faces.empty()
        boxes, coasting, kps = [], [], []
        for t in self.tracks:
            if fresh and t.misses == 0:
                boxes.append(t.last_box)
                coasting.append(False)
            else:
                exit_box = self._exit_box(t)
                box = t.predicted_box if exit_box is None else exit_box
                # capped: a track coasting out of the frame must not balloon
                grow = self.config.coast_growth * min(max(t.misses, 1),
                                                      max(self.config.max_coast_frames, 1))
                wh = box[2:] - box[:2]
                boxes.append(np.concatenate([box[:2] - wh * grow / 2, box[2:] + wh * grow / 2]))
                coasting.append(True)
            kps.append(t.keypoints)
        keypoints = None
        if all(k is not None for k in kps) and len({k.shape for k in kps}) == 1:
            keypoints = np.stack(kps)
            if not fresh or any(coasting):
                # Shift stale keypoints with their box so they stay on the face.
                for i, t in enumerate(self.tracks):
                    if coasting[i]:
                        shift = (boxes[i][:2] + boxes[i][2:]) / 2 - (
                            t.last_box[:2] + t.last_box[2:]) / 2
                        keypoints[i] = keypoints[i] + shift
        return Faces(
            xyxy=np.stack(boxes),
            # a coasting box grows less sure to hold a visible face with every missed
            # frame: after a few, generators give way to the fallback mode (a fake face
            # is not painted over whatever occludes the face); it is still covered
            scores=np.array([t.score * COAST_SCORE_DECAY**t.misses
                             for t in self.tracks]),
            keypoints=keypoints,
            track_ids=np.array([t.track_id for t in self.tracks]),
            coasting=np.array(coasting),
        )
