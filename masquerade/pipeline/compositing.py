"""Cut face regions out of a frame and blend anonymized results back in.

The mask is fully opaque over the whole padded face ellipse (or box) and the feather
ramps *outward* from it, so softening the edge never lets face pixels through.
Regions are composited smallest first: where faces overlap, the larger face's stronger
anonymization is what remains on top.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

import cv2
import numpy as np

from masquerade.anonymizers import Anonymizer, FaceRegion, pixelate
from masquerade.config import AnonymizerConfig
from masquerade.faces import Faces
from masquerade.pipeline.occluders import MAX_FACE_SHARE
from masquerade.pipeline.sealing import Sealer
from masquerade.pipeline.stats import RunStats

log = logging.getLogger(__name__)

# Context around the feathered region given to the anonymizer, as a fraction of its size,
# so blurs near the region edge average real neighbours instead of a reflected border.
_CONTEXT = 0.25
# Camouflage re-colours the hair and leaves everything else as it was, so its region
# grows to take the hair in (a larger region changes nothing outside the hair and face).
CAMOUFLAGE_PADDING = 0.6


def region_mask(height: int, width: int, inner: np.ndarray, shape: str, feather_px: float
                ) -> np.ndarray:
    """Alpha in [0, 1]: 1 inside `inner` (x1, y1, x2, y2 in region pixels), ramping to 0
    over `feather_px` outside it."""
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
    x1, y1, x2, y2 = (float(v) for v in inner)
    if shape == "ellipse":
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        a, b = max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
        r = np.sqrt(((xs - cx) / a) ** 2 + ((ys - cy) / b) ** 2)
        # Distance outside the ellipse, approximately in pixels along the ray.
        outside = (r - 1.0) * np.minimum(a, b)
    else:
        dx = np.maximum(np.maximum(x1 - xs, xs - x2), 0)
        dy = np.maximum(np.maximum(y1 - ys, ys - y2), 0)
        outside = np.sqrt(dx**2 + dy**2)
    if feather_px <= 0:
        return (outside <= 0).astype(np.float32)
    return np.clip(1.0 - outside / feather_px, 0.0, 1.0).astype(np.float32)


def blend_extent(inner: np.ndarray, feather: np.ndarray, shape: str) -> np.ndarray:
    """(N, 4) int boxes (x1, y1, x2, y2, end exclusive) holding every pixel whose
    `region_mask` alpha is above 0, with a pixel to spare: the only pixels compositing
    can change (the context around them is read, never written). What sealing keeps."""
    x1, y1, x2, y2 = (inner[:, k].astype(np.float64) for k in range(4))
    f = np.maximum(np.asarray(feather, np.float64), 0.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    if shape == "ellipse":
        a, b = np.maximum((x2 - x1) / 2, 0.5), np.maximum((y2 - y1) / 2, 0.5)
        grow = 1.0 + f / np.minimum(a, b)  # alpha > 0 where r < 1 + feather / min(a, b)
        half_w, half_h = a * grow, b * grow
    else:
        half_w, half_h = (x2 - x1) / 2 + f, (y2 - y1) / 2 + f
    # pixel x is in when its centre x + 0.5 lies within cx +- half_w
    return np.stack([np.floor(cx - half_w - 0.5) - 1, np.floor(cy - half_h - 0.5) - 1,
                     np.ceil(cx + half_w - 0.5) + 2, np.ceil(cy + half_h - 0.5) + 2],
                    axis=1).astype(np.int64)


class Occluders(Protocol):
    def mask(self, image: np.ndarray) -> np.ndarray | None:
        """(H, W) float32 in [0, 1] where something lies in front of the faces, or None."""


class Compositor:
    """`occluders` (deid, camouflage): the original pixels are put back where they say an
    occluder lies, so a hand stays in front of the fake (`pipeline.occluders`).

    `sealer` receives, for every region, the rectangle holding every pixel this
    compositor may change there (the padded face and its feather, `blend_extent`; the
    context around it is only read), as the frame held it before any region was covered:
    putting these crops back undoes the compositor bit for bit.
    """

    def __init__(self, anonymizer: Anonymizer, config: AnonymizerConfig,
                 stats: RunStats | None = None, occluders: Occluders | None = None,
                 sealer: Sealer | None = None):
        self.anonymizer = anonymizer
        self.config = config
        self.occluders = occluders
        self.sealer = sealer
        self.occluded_faces = 0  # faces with an occluder kept in front
        self.padding = (max(config.padding, CAMOUFLAGE_PADDING) if config.mode == "camouflage"
                        else config.padding)
        self.stats = stats  # times "anonymize" and "composite" separately when set

    def _timed(self, stage: str) -> contextlib.AbstractContextManager[None]:
        return self.stats.timed(stage) if self.stats is not None else contextlib.nullcontext()

    def apply(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        """Anonymize every face in `image` (modified in place and returned)."""
        if not len(faces):
            return image
        h, w = image.shape[:2]
        inner = faces.padded(self.padding)
        size = np.minimum(inner[:, 2] - inner[:, 0], inner[:, 3] - inner[:, 1])
        feather = self.config.feather * size
        outer = inner + np.stack([-feather, -feather, feather, feather], axis=1)
        margin = (outer[:, 2:] - outer[:, :2]) * _CONTEXT
        crop = np.concatenate([outer[:, :2] - margin, outer[:, 2:] + margin], axis=1)
        crop = np.round(crop).astype(np.int64)
        crop[:, [0, 2]] = np.clip(crop[:, [0, 2]], 0, w)
        crop[:, [1, 3]] = np.clip(crop[:, [1, 3]], 0, h)
        keep = (crop[:, 2] > crop[:, 0]) & (crop[:, 3] > crop[:, 1])
        order = [i for i in np.argsort(size) if keep[i]]
        if self.sealer is not None:
            extent = blend_extent(inner, feather, self.config.mask)
            extent[:, :2] = np.maximum(extent[:, :2], crop[:, :2])  # writes stay in the crop
            extent[:, 2:] = np.minimum(extent[:, 2:], crop[:, 2:])
        regions = []
        for i in order:
            x1, y1, x2, y2 = crop[i]
            off = np.array([x1, y1, x1, y1], np.float32)
            kps = None if faces.keypoints is None else faces.keypoints[i] - off[:2]
            if self.sealer is not None:  # like the regions, before any blending
                sx1, sy1, sx2, sy2 = (int(v) for v in extent[i])
                if sx2 > sx1 and sy2 > sy1:  # else no pixel of it is in the frame
                    self.sealer.seal(int(faces.track_ids[i]), (sx1, sy1, sx2, sy2),
                                     image[sy1:sy2, sx1:sx2])
            regions.append(FaceRegion(
                pixels=image[y1:y2, x1:x2].copy(),
                box=faces.xyxy[i] - off,
                track_id=int(faces.track_ids[i]),
                keypoints=kps,
                score=float(faces.scores[i]),
            ))
        with self._timed("anonymize"):
            patches = self.anonymizer.anonymize(regions)
            keep = None if self.occluders is None else self.occluders.mask(image)
        with self._timed("composite"):
            self._blend(image, order, regions, patches, crop, inner, feather)
            if keep is not None:
                self._keep_occluders(image, order, regions, crop, keep)
        return image

    def _keep_occluders(self, image: np.ndarray, order: list[int], regions: list[FaceRegion],
                        crop: np.ndarray, keep: np.ndarray) -> None:
        """Put each region's original pixels back under the occluder mask, unless the mask
        would keep most of the face box (then it is not trusted: fail closed)."""
        for i, region in zip(order, regions, strict=True):
            x1, y1, x2, y2 = crop[i]
            k = keep[y1:y2, x1:x2]
            bx1, by1, bx2, by2 = np.clip(np.round(region.box).astype(int), 0, None)
            face = k[by1:by2, bx1:bx2]
            if not face.size or not face.any():
                continue
            if float(face.mean()) > MAX_FACE_SHARE:
                log.debug("occluder mask covers %.0f%% of a face: not kept", 100 * face.mean())
                continue
            self.occluded_faces += 1
            current = np.ascontiguousarray(image[y1:y2, x1:x2])
            image[y1:y2, x1:x2] = cv2.blendLinear(region.pixels, current, k, 1.0 - k)

    def _blend(self, image: np.ndarray, order: list[int], regions: list[FaceRegion],
               patches: list[np.ndarray], crop: np.ndarray, inner: np.ndarray,
               feather: np.ndarray) -> None:
        for i, region, patch in zip(order, regions, patches, strict=True):
            x1, y1, x2, y2 = crop[i]
            rh, rw = region.pixels.shape[:2]
            off = np.array([x1, y1, x1, y1], np.float32)
            alpha = region_mask(rh, rw, inner[i] - off, self.config.mask, feather[i])
            # Blend over the frame as it is now, not the region's copy: the copy predates
            # the faces composited before this one and would paint them back.
            current = image[y1:y2, x1:x2]
            patch = np.ascontiguousarray(patch, dtype=np.uint8)
            image[y1:y2, x1:x2] = cv2.blendLinear(patch, np.ascontiguousarray(current), alpha,
                                                  1.0 - alpha)


def cover_frame(image: np.ndarray, blocks: int = 8) -> np.ndarray:
    """Fail-closed fallback when faces could not be processed: nothing recognizable left."""
    block = max(image.shape[:2]) / blocks
    image[:] = pixelate(image, block)
    return image
