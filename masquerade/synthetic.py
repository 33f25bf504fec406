"""Synthetic clips with exact ground-truth face boxes.

Real faces from a package-shipped photo (scikit-image's astronaut) move over a moving
background: a large face that is briefly occluded, a small face, and a face entering
from the frame edge. Used for the built-in demo, the tests and the benchmarks, so every
fresh machine has real faces with known boxes and no downloads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

# Face box of the astronaut (Eileen Collins) in skimage's 512x512 image, and the head
# patch around it that gets pasted (the face box grown by 35% on every side).
_FACE_IN_PHOTO = np.array([174.0, 68.0, 278.0, 172.0])
_PATCH_GROW = 0.35


@dataclass(frozen=True)
class GroundTruthFace:
    face_id: int
    xyxy: tuple[float, float, float, float]
    occluded: bool
    inside: float  # fraction of the face box inside the frame


@dataclass(frozen=True)
class FaceTrack:
    """One face's path: box size in pixels and a centre for every frame index."""

    face_id: int
    size: float
    start: int
    mirror: bool
    tone: float  # brightness gain, so the three faces differ a little
    path: tuple[tuple[float, float], tuple[float, float]]  # centre at start, velocity px/frame
    occluded_frames: tuple[int, int] | None = None  # [first, last] inclusive

    def center(self, index: int) -> tuple[float, float]:
        (x0, y0), (vx, vy) = self.path
        t = index - self.start
        return x0 + vx * t, y0 + vy * t + 6.0 * np.sin(t / 9.0)


@dataclass(frozen=True)
class Scenario:
    width: int = 640
    height: int = 360
    fps: int = 30
    frames: int = 90
    audio: bool = True
    seed: int = 0
    crowd: int = 0  # > 0: this many faces on a grid, drifting slowly (benchmarks)
    # "demo": three faces (occluded, small, entering from the right); "edges": a face
    # entering through each edge and one leaving through each, at sizes from `face_px`
    layout: str = "demo"
    face_px: float = 56.0  # edges: the smallest face, in pixels
    pan: float = 3.0  # background shift in px a frame; 0: a static camera

    @property
    def faces(self) -> tuple[FaceTrack, ...]:
        w, h = self.width, self.height
        if self.crowd:
            return self._crowd()
        if self.layout == "edges":
            return self._edges()
        if self.layout != "demo":
            raise ValueError(f"unknown layout {self.layout!r}; known: demo, edges")
        s = min(w, h) / 360  # scale the layout with the frame
        n = self.frames
        return (
            FaceTrack(1, 110 * s, 0, False, 1.0, ((0.14 * w, 0.42 * h), (0.55 * w / n, 0.0)),
                      occluded_frames=(n // 2, n // 2 + 4)),
            FaceTrack(2, 28 * s, 0, True, 1.0, ((0.82 * w, 0.18 * h), (0.0, 0.25 * h / n))),
            FaceTrack(3, 70 * s, n // 3, False, 0.85, ((w + 35 * s, 0.75 * h), (-4.0 * s, 0.0))),
        )

    def _edges(self) -> tuple[FaceTrack, ...]:
        """Eight faces: one entering through each edge (staggered), one leaving through
        each edge; sizes from `face_px` to twice that, speeds 2-5 px a frame."""
        w, h, n, s = self.width, self.height, self.frames, self.face_px
        enter = [  # (size, start, centre at start, velocity): the face starts fully outside
            (s, 0, (-0.6 * s, 0.25 * h), (3.0, 0.0)),
            (1.5 * s, n // 4, (w + 0.6 * 1.5 * s, 0.72 * h), (-4.0, 0.0)),
            (1.25 * s, n // 3, (0.62 * w, -0.6 * 1.25 * s), (0.0, 2.0)),
            (2 * s, n // 2, (0.2 * w, h + 0.6 * 2 * s), (0.0, -3.0)),
        ]
        leave = [  # start inside, a face size from the edge, and head out through it
            (1.25 * s, 0, (1.25 * s, 0.6 * h), (-2.0, 0.0)),
            (s, 0, (w - s, 0.12 * h), (2.5, 0.0)),
            (1.5 * s, 4 * n // 9, (0.85 * w, 1.5 * s), (0.0, -2.0)),
            (s, 0, (0.45 * w, h - s), (0.0, 2.5)),
        ]
        return tuple(
            FaceTrack(i + 1, size, start, bool(i % 2), 0.9 + 0.1 * (i % 3) / 2, (c, v))
            for i, (size, start, c, v) in enumerate(enter + leave))

    def _crowd(self) -> tuple[FaceTrack, ...]:
        w, h = self.width, self.height
        cols = int(np.ceil(np.sqrt(self.crowd * w / h)))
        rows = int(np.ceil(self.crowd / cols))
        cell = min(w / cols, h / rows)
        size = min(0.55 * cell, 0.22 * min(w, h))
        return tuple(
            FaceTrack(i + 1, size, 0, bool(i % 2), 0.85 + 0.15 * ((i * 7) % 3) / 2,
                      (((i % cols + 0.5) * w / cols, (i // cols + 0.5) * h / rows),
                       (0.08 * cell / self.frames, 0.0)))
            for i in range(self.crowd))

    def ground_truth(self, index: int) -> list[GroundTruthFace]:
        out = []
        for face in self.faces:
            if index < face.start:
                continue
            cx, cy = face.center(index)
            half = face.size / 2
            box = (cx - half, cy - half, cx + half, cy + half)
            clipped_w = max(0.0, min(box[2], self.width) - max(box[0], 0))
            clipped_h = max(0.0, min(box[3], self.height) - max(box[1], 0))
            inside = clipped_w * clipped_h / face.size**2
            if inside <= 0:
                continue
            occ = face.occluded_frames
            occluded = occ is not None and occ[0] <= index <= occ[1]
            out.append(GroundTruthFace(face.face_id, box, occluded, inside))
        return out

    def render(self, index: int) -> np.ndarray:
        frame = _background(self.width, self.height, index * self.pan / 3.0, self.seed)
        for face in self.faces:
            if index < face.start:
                continue
            cx, cy = face.center(index)
            _paste(frame, _head_patch(face.mirror, face.tone), cx, cy, face.size)
            occ = face.occluded_frames
            if occ is not None and occ[0] <= index <= occ[1]:
                half = face.size * 0.8
                x1, y1 = int(max(cx - half, 0)), int(max(cy - half, 0))
                x2, y2 = int(min(cx + half, self.width)), int(min(cy + half, self.height))
                frame[y1:y2, x1:x2] = (90, 90, 96)
        return frame


def face_pixels(height: int, width: int, box: tuple[float, float, float, float]
                ) -> np.ndarray:
    """(H, W) bool: the ellipse inscribed in a ground-truth face box, inside the frame."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    x1, y1, x2, y2 = box
    cx, cy, a, b = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    return ((xs - cx) / a) ** 2 + ((ys - cy) / b) ** 2 <= 1.0


def painted_share(image: np.ndarray, box: tuple[float, float, float, float],
                  colour: tuple[int, int, int], tolerance: int = 60) -> float:
    """Share of a face's visible pixels painted `colour` (solid mode): 1.0 is covered.

    `tolerance` (max channel difference) absorbs codec noise; 60 for H.264 at crf 18."""
    mask = face_pixels(*image.shape[:2], box)
    if not mask.any():
        return 1.0
    diff = np.abs(image[mask].astype(np.int32) - np.asarray(colour)).max(axis=1)
    return float((diff < tolerance).mean())


def _background(width: int, height: int, index: float, seed: int) -> np.ndarray:
    """A smooth, moving, colourful pattern: texture for the codec, nothing face-like."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    shift = index * 3.0
    r = 110 + 60 * np.sin((xs + shift) / 37.0 + seed)
    g = 120 + 50 * np.sin((ys - shift * 0.5) / 23.0)
    b = 130 + 55 * np.sin((xs + ys + shift) / 51.0)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


@cache
def _head_patch(mirror: bool, tone: float) -> np.ndarray:
    from skimage import data

    photo = data.astronaut()
    x1, y1, x2, y2 = _FACE_IN_PHOTO
    gw, gh = (x2 - x1) * _PATCH_GROW, (y2 - y1) * _PATCH_GROW
    patch = photo[int(y1 - gh):int(y2 + gh), int(x1 - gw):int(x2 + gw)].copy()
    if mirror:
        patch = patch[:, ::-1]
    if tone != 1.0:
        patch = np.clip(patch * tone, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(patch)


def _paste(frame: np.ndarray, patch: np.ndarray, cx: float, cy: float, face_size: float) -> None:
    """Paste the head patch so that its face box is `face_size` wide centred at (cx, cy)."""
    scale = face_size / (_FACE_IN_PHOTO[2] - _FACE_IN_PHOTO[0])
    side = patch.shape[0] * scale
    # Sub-pixel placement through an affine warp of the patch into a frame-sized window.
    x0, y0 = cx - side / 2, cy - side / 2
    m = np.array([[scale, 0, x0], [0, scale, y0]], dtype=np.float64)
    h, w = frame.shape[:2]
    bx1, by1 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    bx2, by2 = min(int(np.ceil(x0 + side)), w), min(int(np.ceil(y0 + side)), h)
    if bx2 <= bx1 or by2 <= by1:
        return
    m[:, 2] -= (bx1, by1)
    size = (bx2 - bx1, by2 - by1)
    warped = cv2.warpAffine(patch, m, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(np.ones(patch.shape[:2], np.float32), m, size, flags=cv2.INTER_LINEAR)
    region = frame[by1:by2, bx1:bx2]
    frame[by1:by2, bx1:bx2] = (region * (1 - alpha[..., None]) + warped * alpha[..., None]).astype(
        np.uint8
    )


def write_clip(path: str | Path, scenario: Scenario | None = None, crf: int = 18) -> Scenario:
    """Encode the scenario to `path` (H.264 + AAC tone); returns the scenario for its truth."""
    scenario = scenario or Scenario()
    path = Path(path)
    time_base = Fraction(1, scenario.fps * 1000)
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=scenario.fps)
        video.width, video.height, video.pix_fmt = scenario.width, scenario.height, "yuv420p"
        video.time_base = time_base
        video.codec_context.time_base = time_base
        video.options = {"crf": str(crf), "preset": "veryfast"}
        audio = None
        if scenario.audio:
            audio = out.add_stream("aac", rate=44100, layout="mono")
        for i in range(scenario.frames):
            vf = av.VideoFrame.from_ndarray(scenario.render(i), format="rgb24")
            vf.pts = i * 1000
            vf.time_base = time_base
            out.mux(video.encode(vf))
        out.mux(video.encode(None))
        if audio is not None:
            _write_tone(out, audio, scenario.frames / scenario.fps)
    return scenario


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                seconds: float) -> None:
    rate, chunk = 44100, 1024
    total = int(rate * seconds)
    t = np.arange(total, dtype=np.float32) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)))
    for start in range(0, total, chunk):
        samples = tone[start:start + chunk]
        af = av.AudioFrame.from_ndarray(samples[None, :].astype(np.float32), format="fltp",
                                        layout="mono")
        af.sample_rate = rate
        af.pts = start
        out.mux(stream.encode(af))
    out.mux(stream.encode(None))


# Frame-index barcode: 16 bits as 8x8 blocks along the bottom-left edge, away from the
# scenario's faces, so a receiver can tell which source frame it got after any number of
# re-encodes, drops and reconnects (and, with send times, measure latency).
_BITS, _BLOCK = 16, 8


def stamp_index(image: np.ndarray, index: int) -> np.ndarray:
    h = image.shape[0]
    bits = (index >> np.arange(_BITS)) & 1
    row = np.repeat(bits * 255, _BLOCK).astype(np.uint8)
    image[h - _BLOCK - 2 : h - 2, : _BITS * _BLOCK] = row[None, :, None]
    image[h - 2 :, : _BITS * _BLOCK] = 128
    return image


def read_index(image: np.ndarray) -> int:
    h = image.shape[0]
    strip = image[h - _BLOCK - 2 + 2 : h - 4, : _BITS * _BLOCK].astype(np.float32).mean(axis=(0, 2))
    blocks = strip.reshape(_BITS, _BLOCK)[:, 2:-2].mean(axis=1)
    return int(((blocks > 127).astype(np.int64) << np.arange(_BITS)).sum())


def read_index_if_legible(image: np.ndarray, min_contrast: float = 64.0) -> int | None:
    """The stamped index, or None when the stamp cannot be trusted.

    Every block of an intact stamp is grey and clearly black or white. A frame whose
    stamp was painted over (a coasting face's grown cover reaching the bottom-left
    corner) or decoded from damaged data reads as some other index, and judging it
    against that index's ground truth would report leaks that are not there.
    """
    h = image.shape[0]
    strip = image[h - _BLOCK - 2 + 2 : h - 4, : _BITS * _BLOCK].astype(np.float32).mean(axis=0)
    blocks = strip.reshape(_BITS, _BLOCK, -1)[:, 2:-2].mean(axis=1)  # (bits, channels)
    level = blocks.mean(axis=1)
    grey = np.ptp(blocks, axis=1) < min_contrast
    clear = np.abs(level - 127.5) >= min_contrast
    if not (grey & clear).all():
        return None
    return int(((level > 127).astype(np.int64) << np.arange(_BITS)).sum())
