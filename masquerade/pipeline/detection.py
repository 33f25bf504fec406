"""Face detection stage: a small `Detector` interface plus tiling for small faces.

BlazeFace sees a ~192 px letterboxed copy of its input, so in a 1080p frame it misses
faces under ~100 px. `TiledDetector` runs it on a pyramid of overlapping tiles sized so
that a face of `min_face_px` fills enough of a tile, then merges the results with NMS.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from masquerade.config import DetectorConfig
from masquerade.faces import Faces, nms


class Detector(Protocol):
    """Finds faces in one RGB image; boxes and keypoints are in that image's pixels."""

    min_relative_face: float

    def detect(self, image: np.ndarray) -> Faces: ...


def tile_grid(
    width: int, height: int, tile: int, overlap: float
) -> list[tuple[int, int, int, int]]:
    """Overlapping square tiles (x1, y1, x2, y2) covering the frame, edges flush."""
    tile_w, tile_h = min(tile, width), min(tile, height)
    stride = max(1, int(tile * (1 - overlap)))

    def starts(size: int, t: int) -> list[int]:
        if size <= t:
            return [0]
        n = math.ceil((size - t) / stride) + 1
        return sorted({round(i * (size - t) / (n - 1)) for i in range(n)})

    return [(x, y, x + tile_w, y + tile_h) for y in starts(height, tile_h)
            for x in starts(width, tile_w)]


def pyramid_tiles(width: int, height: int, min_face_px: int, min_relative_face: float,
                  overlap: float) -> list[tuple[int, int, int, int]]:
    """Tiles at each scale from the one finding `min_face_px` faces up to the full frame.

    A face whole inside some tile is found at the level where it is big enough; the
    overlap makes faces up to `overlap * tile` whole in at least one tile, and the next
    level (twice the tile) starts finding faces from `2 * min_relative_face * tile`.
    """
    longest = max(width, height)
    tiles = [(0, 0, width, height)]
    size = math.ceil(min_face_px / min_relative_face)
    while size < longest:
        tiles.extend(tile_grid(width, height, size, overlap))
        size *= 2
    return list(dict.fromkeys(tiles))


class TiledDetector:
    """Runs a single-pass detector over a tile pyramid and merges overlapping results."""

    def __init__(self, base: Detector, min_face_px: int, overlap: float, nms_iou: float,
                 tiling: bool = True):
        self.base = base
        self.min_face_px = min_face_px
        self.overlap = overlap
        self.nms_iou = nms_iou
        self.tiling = tiling
        self.min_relative_face = base.min_relative_face
        self._tiles: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
        self.skipped_tiles = 0  # in the last detect(), for the run's counters

    def tiles_for(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        key = (width, height)
        if key not in self._tiles:
            self._tiles[key] = (
                pyramid_tiles(width, height, self.min_face_px, self.min_relative_face,
                              self.overlap)
                if self.tiling else [(0, 0, width, height)]
            )
        return self._tiles[key]

    def detect(self, image: np.ndarray, interest: np.ndarray | None = None) -> Faces:
        """`interest`, a coarse bool grid over the image (`FocusGate`), skips the tiles
        where nothing moved and no track is; the whole-frame pass always runs."""
        h, w = image.shape[:2]
        parts = []
        self.skipped_tiles = 0
        for x1, y1, x2, y2 in self.tiles_for(w, h):
            if interest is not None and (x2 - x1, y2 - y1) != (w, h):
                gh, gw = interest.shape
                cells = interest[y1 * gh // h:-(-y2 * gh // h), x1 * gw // w:-(-x2 * gw // w)]
                if not cells.any():
                    self.skipped_tiles += 1
                    continue
            found = self.base.detect(image[y1:y2, x1:x2])
            if not len(found):
                continue
            offset = np.array([x1, y1], np.float32)
            found.xyxy += np.tile(offset, 2)
            if found.keypoints is not None:
                found.keypoints += offset
            found = _drop_cut_faces(found, (x1, y1, x2, y2), (w, h))
            parts.append(found)
        return nms(Faces.merge(parts), self.nms_iou)


def _drop_cut_faces(faces: Faces, tile: tuple[int, int, int, int], frame: tuple[int, int]) -> Faces:
    """Drop detections touching an inner tile edge: the face is cut, a neighbour sees it whole.

    Kept when the edge is also the frame edge (a face leaving the frame is still a face).
    """
    x1, y1, x2, y2 = tile
    w, h = frame
    margin = 2.0
    b = faces.xyxy
    cut = np.zeros(len(faces), dtype=bool)
    if x1 > 0:
        cut |= b[:, 0] <= x1 + margin
    if y1 > 0:
        cut |= b[:, 1] <= y1 + margin
    if x2 < w:
        cut |= b[:, 2] >= x2 - margin
    if y2 < h:
        cut |= b[:, 3] >= y2 - margin
    return faces[~cut]


class DlibHOG:
    """dlib's HOG + linear SVM frontal face detector: no keypoints, ~80 px minimum face."""

    min_relative_face = 0.0  # scale handled by upsampling instead of tiles

    def __init__(self, upsample: int = 1, min_score: float = 0.0):
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.min_score = min_score

    def detect(self, image: np.ndarray) -> Faces:
        rects, scores, _ = self._detector.run(np.ascontiguousarray(image), self.upsample,
                                              self.min_score)
        if not rects:
            return Faces.empty()
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
        return Faces(xyxy=boxes, scores=np.clip(np.asarray(scores) / 2 + 0.5, 0, 1))


MOTION_CELL = 16  # pixels per cell of the change grid
MOTION_THRESHOLD = 6.0  # mean grey-level change of a cell that counts (noise is ~1-2)
TRACK_MARGIN = 0.5  # a track's box grown by this on every side is searched


class FocusGate:
    """Where the tiles must look this frame: what changed since the last full scan, and
    where the tracks are; every `full_scan_every`-th call says "everywhere" (None).

    Static cameras are the common case, and most of a static frame holds no face that a
    full scan has not already seen: a face cannot appear where nothing changes, a face
    that stands still is tracked, and the tiles under its track keep being searched. The
    reference for "changed" is the last full scan's frame, not the previous frame, so a
    face creeping 1 px a frame still shows up. Whatever a gated frame could still miss
    (a face whose track was lost where nothing moves) the next full scan finds, and the
    backfill covers the frames in between when full_scan_every <= tracker.backfill_frames.
    """

    def __init__(self, full_scan_every: int, cell: int = MOTION_CELL,
                 threshold: float = MOTION_THRESHOLD):
        self.full_scan_every = max(1, int(full_scan_every))
        self.cell = cell
        self.threshold = threshold
        self._reference: np.ndarray | None = None
        self._since_full = 0
        self.full_scans = 0
        self.gated_scans = 0

    def _grid(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        size = (max(1, -(-w // self.cell)), max(1, -(-h // self.cell)))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.int16)

    def interest(self, image: np.ndarray, track_boxes: np.ndarray) -> np.ndarray | None:
        grid = self._grid(image)
        if (self._reference is None or self._reference.shape != grid.shape
                or self._since_full + 1 >= self.full_scan_every):
            self._reference = grid
            self._since_full = 0
            self.full_scans += 1
            return None
        self._since_full += 1
        self.gated_scans += 1
        mask = np.abs(grid - self._reference) > self.threshold
        gh, gw = grid.shape
        h, w = image.shape[:2]
        for x1, y1, x2, y2 in np.asarray(track_boxes, np.float64).reshape(-1, 4):
            bw, bh = (x2 - x1) * TRACK_MARGIN, (y2 - y1) * TRACK_MARGIN
            c1 = int(np.clip((x1 - bw) * gw / w, 0, gw))
            c2 = int(np.clip(np.ceil((x2 + bw) * gw / w), 0, gw))
            r1 = int(np.clip((y1 - bh) * gh / h, 0, gh))
            r2 = int(np.clip(np.ceil((y2 + bh) * gh / h), 0, gh))
            mask[r1:r2, c1:c2] = True
        return mask


def detect_upright(detector: Detector, image: np.ndarray, rotation: int,
                   interest: np.ndarray | None = None) -> Faces:
    """Detect in the orientation a viewer sees, return boxes in the coded frame's pixels.

    Phone videos are often stored sideways with a display rotation; BlazeFace does not
    find faces lying on their side, so it must see the frame as displayed. But the
    metadata can be wrong (a clip re-encoded upright that kept its rotation flag left 16
    of 104 face-frames raw), so a rotated frame is also searched as coded, and the two
    are merged: twice the detection cost, on rotated clips only.
    `rotation` is counter-clockwise degrees (FFmpeg's display matrix convention).
    """
    k = (round(rotation / 90)) % 4
    if k == 0:
        if interest is not None and isinstance(detector, TiledDetector):
            return detector.detect(image, interest)
        return detector.detect(image)
    coded = detector.detect(image)
    displayed = _detect_rotated(detector, image, k)
    if not len(displayed) or not len(coded):
        return displayed if len(displayed) else coded
    return nms(Faces.merge([displayed, coded]), ROTATION_MERGE_IOU)


ROTATION_MERGE_IOU = 0.3  # one face found in both orientations: boxes differ in shape


def _detect_rotated(detector: Detector, image: np.ndarray, k: int) -> Faces:
    h, w = image.shape[:2]
    faces = detector.detect(np.ascontiguousarray(np.rot90(image, k)))
    if not len(faces):
        return faces

    def to_coded(points: np.ndarray) -> np.ndarray:
        x, y = points[..., 0], points[..., 1]
        if k == 1:
            return np.stack([w - y, x], axis=-1)
        if k == 2:
            return np.stack([w - x, h - y], axis=-1)
        return np.stack([y, h - x], axis=-1)

    corners = to_coded(faces.xyxy.reshape(-1, 2, 2))
    faces.xyxy = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    if faces.keypoints is not None:
        faces.keypoints = to_coded(faces.keypoints)
    return faces


def build_detector(config: DetectorConfig) -> Detector:
    if config.backend == "dlib_hog":
        upsample = max(0, math.ceil(math.log2(max(1.0, 80 / config.min_face_px))))
        return DlibHOG(upsample=upsample)
    from masquerade.engines.blazeface import BlazeFace

    base = BlazeFace(config.model, config.min_score)
    return TiledDetector(base, config.min_face_px, config.tile_overlap, config.nms_iou,
                         tiling=config.tiling == "auto")
