"""Fixtures for the anonymizers: a real face (scikit-image's astronaut) found by BlazeFace."""

import numpy as np
import pytest
from skimage import data

from masquerade.anonymizers.base import FaceRegion


def blazeface(image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(box xyxy, (6, 2) keypoints, score) per face found by mediapipe's BlazeFace."""
    from mediapipe.python.solutions import face_detection

    h, w = image.shape[:2]
    with face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as det:
        result = det.process(np.ascontiguousarray(image))
    out = []
    for d in result.detections or []:
        bb = d.location_data.relative_bounding_box
        box = np.array([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w,
                        (bb.ymin + bb.height) * h])
        kps = np.array([(k.x * w, k.y * h) for k in d.location_data.relative_keypoints])
        out.append((box, kps, d.score[0]))
    return out


@pytest.fixture(scope="module")
def astronaut_region() -> FaceRegion:
    image = data.astronaut()
    box, kps, _ = blazeface(image)[0]
    x0, y0 = np.maximum(box[:2] - 0.6 * (box[2:] - box[:2]), 0).astype(int)
    x1, y1 = np.minimum(box[2:] + 0.6 * (box[2:] - box[:2]), image.shape[1::-1]).astype(int)
    shift = np.array([x0, y0])
    return FaceRegion(image[y0:y1, x0:x1].copy(), np.r_[box[:2] - shift, box[2:] - shift], 7,
                      kps - shift)
