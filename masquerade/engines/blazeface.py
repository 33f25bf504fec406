"""MediaPipe BlazeFace, as bundled in mediapipe 0.10.21 (no download at run time)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

import numpy as np

from masquerade.faces import Faces

log = logging.getLogger(__name__)

# Keypoint order of BlazeFace: right eye, left eye, nose tip, mouth centre,
# right ear tragion, left ear tragion (subject's left/right).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")

# Smallest face box BlazeFace finds reliably, as a fraction of the longer image side
# (measured: the astronaut face scaled over a blurred-noise background was found down to
# 0.050 (full range) and 0.145 (short range); these keep a margin).
MIN_RELATIVE_FACE = {"full_range": 0.08, "short_range": 0.2}


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence C++ start-up chatter (TFLite, absl) that bypasses Python's logging.

    Only around graph creation and the first call; Python exceptions still propagate.
    File descriptor 2 is process-wide, so streams starting in parallel take turns.
    """
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class BlazeFace:
    """One pass of BlazeFace over an RGB image; tiling lives in `pipeline.detection`."""

    def __init__(self, model: str = "full_range", min_score: float = 0.5):
        os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ chatter
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from mediapipe.python.solutions import face_detection

        if model not in MIN_RELATIVE_FACE:
            raise ValueError(f"unknown BlazeFace model {model!r}")
        self.model = model
        self.min_score = min_score
        self.min_relative_face = MIN_RELATIVE_FACE[model]
        # The graph's calculators open on their own threads and TFLite announces its
        # delegates then: stay quiet through one warm-up call, which waits for them.
        with quiet_native_stderr():
            self._graph = face_detection.FaceDetection(
                model_selection=1 if model == "full_range" else 0,
                min_detection_confidence=min_score,
            )
            self._graph.process(np.zeros((64, 64, 3), np.uint8))

    def detect(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        result = self._graph.process(np.ascontiguousarray(image))
        if not result.detections:
            return Faces.empty()
        n = len(result.detections)
        boxes = np.empty((n, 4), np.float32)
        scores = np.empty(n, np.float32)
        kps = np.empty((n, len(KEYPOINT_NAMES), 2), np.float32)
        for i, det in enumerate(result.detections):
            bb = det.location_data.relative_bounding_box
            boxes[i] = (bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w,
                        (bb.ymin + bb.height) * h)
            scores[i] = det.score[0]
            kps[i] = [(k.x * w, k.y * h) for k in det.location_data.relative_keypoints]
        # mediapipe's graph applies min_detection_confidence only up to a point (a face
        # scored 0.91 still comes out at 1.0): filter here, so detector.min_score is the
        # user's real precision/recall knob all the way to the tracker.
        keep = scores >= self.min_score
        return Faces(xyxy=boxes[keep], scores=scores[keep], keypoints=kps[keep])

    def close(self) -> None:
        self._graph.close()
