"""Classic anonymizers: gaussian blur, pixelate, solid fill.

Strength scales with face size: a fixed kernel that hides a 40 px face leaves a 400 px
face recognizable (a radius-10 box blur over a whole frame still leaves dlib matching
faces at distance 0.49 < 0.6). Large blurs run on a downscaled copy, which is the same
low-pass result at a fraction of the cost.
"""

from __future__ import annotations

import cv2
import numpy as np

from masquerade.anonymizers.base import FaceRegion

# Blur on a copy downscaled so that sigma is about this many pixels there.
_WORKING_SIGMA = 3.0


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of any sigma in roughly constant time."""
    h, w = image.shape[:2]
    scale = max(1.0, sigma / _WORKING_SIGMA)
    if scale <= 1.0:
        return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    small_w, small_h = max(1, round(w / scale)), max(1, round(h / scale))
    small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / scale, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def pixelate(image: np.ndarray, block: float) -> np.ndarray:
    """Mean colour per block of about `block` pixels."""
    h, w = image.shape[:2]
    bw, bh = max(1, round(w / block)), max(1, round(h / block))
    small = cv2.resize(image, (bw, bh), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


class BlurAnonymizer:
    def __init__(self, strength: float = 0.35):
        self.strength = strength

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]:
        return [gaussian_blur(r.pixels, self.strength * r.face_size) for r in regions]


class PixelateAnonymizer:
    def __init__(self, blocks: int = 6):
        self.blocks = blocks

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]:
        return [pixelate(r.pixels, r.face_size / self.blocks) for r in regions]


class SolidAnonymizer:
    def __init__(self, color: tuple[int, int, int] | list[int] = (0, 0, 0)):
        self.color = np.asarray(color, dtype=np.uint8)

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]:
        return [np.broadcast_to(self.color, r.pixels.shape) for r in regions]
