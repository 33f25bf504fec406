"""Realism proxies for a generated face against the original face region (same frame).

A metric can pass while a viewer sees a melted face, so these look at what a viewer sees
in the face box at its native size:
* detail ratio: variance of the Laplacian of the grey face box, fake / original. A 96 px
  render stretched over a 300 px face scores far below 1 (smooth); >= 0.6 is the target.
* skin delta E: CIE76 distance between the mean Lab colours of the central face region
  (cheeks, nose, forehead: the box's middle 60% x 50%), fake vs original.
* off-palette blocks: the original face box's colours are clustered into a palette
  (k-means, 16 Lab centres); each 8x8 block of the fake's face box whose mean colour lies
  farther than 20 delta E from every palette colour counts as "far outside the original's
  palette" (dark blotches, blue smears, saturated patches). The share of such blocks is
  reported; the original scored against its own palette gives the floor (~0).
"""

from __future__ import annotations

import cv2
import numpy as np

PALETTE_SIZE = 16
BLOCK = 8
OFF_PALETTE_DELTA_E = 20.0


def lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 CIE Lab (L in 0..100)."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def detail_ratio(fake: np.ndarray, original: np.ndarray) -> float:
    """Var(Laplacian) of the grey face boxes, fake / original."""
    def sharpness(x: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())
    return sharpness(fake) / max(sharpness(original), 1e-6)


def central(box: np.ndarray) -> np.ndarray:
    h, w = box.shape[:2]
    return box[int(0.25 * h):int(0.75 * h), int(0.2 * w):int(0.8 * w)]


def skin_delta_e(fake: np.ndarray, original: np.ndarray) -> float:
    a = lab(central(fake)).reshape(-1, 3).mean(0)
    b = lab(central(original)).reshape(-1, 3).mean(0)
    return float(np.linalg.norm(a - b))


def palette(original: np.ndarray, k: int = PALETTE_SIZE) -> np.ndarray:
    pixels = lab(original).reshape(-1, 3)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(pixels, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    return centres


def off_palette_share(fake: np.ndarray, original: np.ndarray) -> float:
    """Share of the fake's 8x8 blocks whose mean Lab is > 20 delta E from every colour of
    the original face box's 16-colour palette."""
    centres = palette(original)
    h, w = (s - s % BLOCK for s in fake.shape[:2])
    if h == 0 or w == 0:
        return 0.0
    blocks = lab(fake[:h, :w]).reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3).mean((1, 3))
    dist = np.linalg.norm(blocks.reshape(-1, 1, 3) - centres[None], axis=2).min(1)
    return float((dist > OFF_PALETTE_DELTA_E).mean())

