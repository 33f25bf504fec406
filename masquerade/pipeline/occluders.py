"""Things in front of a face that must stay in front of its fake: hands.

A generated face is painted over the whole face ellipse, so a hand raised to the face (to
the eyes with a make-up brush, to the mouth with a cigarette) disappears under the fake
or is shaded with it, which a viewer reads as a rendering error at once. HFORD keeps
occluders in front; here MediaPipe Hands (bundled with mediapipe, no download) finds each
hand's 21 landmarks and the compositor puts the original pixels back where a hand lies.

Fail closed: a face pixel wrongly taken for a hand stays as it was, so the mask is drawn
narrow: each finger bone a capsule of about a quarter of the finger's width less than
the real finger, the palm the polygon of wrist and knuckles, and the mask ramps to 0
over its outer edge. Gaps between spread fingers are not in it (a convex hull of the
landmarks would uncover an eye seen between two fingers). And a hand may only keep a
part of a face: where the mask would keep more than `MAX_FACE_SHARE` of a face box, the
detection is taken for a mistake and that face is anonymized whole.
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from masquerade.config import AnonymizerConfig

log = logging.getLogger(__name__)

# MediaPipe Hands landmark indices: wrist 0, thumb 1-4, index 5-8, middle 9-12,
# ring 13-16, little 17-20.
BONES = [(0, 1), (1, 2), (2, 3), (3, 4), (5, 6), (6, 7), (7, 8), (9, 10), (10, 11),
         (11, 12), (13, 14), (14, 15), (15, 16), (17, 18), (18, 19), (19, 20)]
PALM = [0, 1, 5, 9, 13, 17]
FINGER_RADIUS = 0.09  # capsule radius, fraction of the palm's width (knuckle 5 to 17)
MAX_FACE_SHARE = 0.6  # a "hand" keeping more of a face box than this is not trusted


def hand_mask(landmarks: np.ndarray, shape: tuple[int, int], feather: float = 0.5
              ) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 1 on the hands drawn from (K, 21, 2) pixel landmarks.

    The mask is drawn at full strength and then eroded by `feather` x the capsule
    radius with a linear ramp, so its soft edge lies inside the hand.
    """
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    radius_px = []
    for pts in np.asarray(landmarks, np.float64).reshape(-1, 21, 2):
        palm_width = float(np.linalg.norm(pts[5] - pts[17]))
        r = max(1, round(FINGER_RADIUS * palm_width))
        radius_px.append(r)
        cv2.fillConvexPoly(mask, np.round(pts[PALM]).astype(np.int32), 255)
        for a, b in BONES:
            cv2.line(mask, tuple(np.round(pts[a]).astype(int)), tuple(np.round(pts[b]).astype(int)),
                     255, thickness=2 * r, lineType=cv2.LINE_8)
    if not radius_px:
        return np.zeros((h, w), np.float32)
    ramp = max(1.0, feather * min(radius_px))
    inside = cv2.distanceTransform((mask > 0).astype(np.uint8), cv2.DIST_L2, 3)
    return np.clip(inside / ramp, 0.0, 1.0).astype(np.float32)


class HandOccluders:
    """`mask(image) -> (H, W) float32 | None`: where hands lie in front of faces.

    Runs MediaPipe Hands in video mode (it tracks between frames, cheaper than detecting
    every time); only called for frames with faces.
    """

    def __init__(self, max_hands: int = 4, min_score: float = 0.5) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        from mediapipe.python.solutions import hands

        self._hands = hands.Hands(static_image_mode=False, max_num_hands=max_hands,
                                  model_complexity=0, min_detection_confidence=min_score,
                                  min_tracking_confidence=min_score)

    def landmarks(self, image: np.ndarray) -> np.ndarray:
        """(K, 21, 2) pixel landmarks of the hands in an RGB frame."""
        h, w = image.shape[:2]
        result = self._hands.process(np.ascontiguousarray(image))
        found = result.multi_hand_landmarks or []
        return np.array([[(p.x * w, p.y * h) for p in hand.landmark] for hand in found],
                        np.float64).reshape(-1, 21, 2)

    def mask(self, image: np.ndarray) -> np.ndarray | None:
        pts = self.landmarks(image)
        return hand_mask(pts, image.shape[:2]) if len(pts) else None

    def close(self) -> None:
        self._hands.close()


def build_occluders(config: AnonymizerConfig) -> HandOccluders | None:
    """Hands for the generative modes; classic modes cover the region whole (a blurred
    hand over a blurred face looks like what it is)."""
    if config.occluders == "hands" and config.mode in ("deid", "camouflage"):
        return HandOccluders()
    return None
