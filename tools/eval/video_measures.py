"""Measures shared by the video evaluations (run from this folder's scripts)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def face_slices(rect) -> tuple[slice, slice]:
    """A dlib rectangle as numpy slices, clipped at the top-left image edge."""
    return slice(max(rect.top(), 0), rect.bottom()), slice(max(rect.left(), 0), rect.right())


def rect_xyxy(rect) -> np.ndarray:
    """A dlib rectangle as a (1, 4) xyxy array, for `masquerade.faces.box_iou`."""
    return np.array([[rect.left(), rect.top(), rect.right(), rect.bottom()]], np.float64)


def frame_change(frames: list[np.ndarray], i: int, box: tuple[slice, slice]) -> float | None:
    """Mean absolute change inside `box` from frame i to i + 1 (a flicker sample)."""
    if i + 1 >= len(frames):
        return None
    return float(np.abs(frames[i + 1][box].astype(float) - frames[i][box]).mean())


def flicker_ratio(changed: list[float | None], source: list[float | None]) -> float | None:
    """Processed frame-to-frame change over the source's (1.0 = as steady as the source)."""
    a = [c for c in changed if c is not None]
    b = [c for c in source if c is not None]
    if not a or not b:
        return None
    return round(float(np.mean(a) / max(np.mean(b), 1e-6)), 2)
