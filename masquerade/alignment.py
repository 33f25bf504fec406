"""Face alignment: similarity transforms from detector keypoints to canonical crops, and back.

Every layout of keypoints (dlib's 5-point predictor, ArcFace's 5 points, mediapipe's 6) is
placed in one normalised face frame, dlib's: the unit square in which dlib's
get_face_chip_details puts its 5-point template. A crop of side `size` with `padding` maps
a unit point u to (u + padding) / (1 + 2 padding) * size - 0.5, so size=150, padding=0.25
is dlib's face chip for its recognition net (checked against dlib.get_face_chip), and
other sizes (128, 256 for generators) frame the face the same way. Transforms are 2x3
matrices from image to crop pixels, pixel centres at integer coordinates (OpenCV's and
dlib's convention), so they are sub-pixel exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

# dlib's 5-point template in the unit face frame (get_face_chip_details,
# dlib/image_transforms/interpolation.h), in the order of its 5-point predictor's parts:
# image-right eye outer and inner corner, image-left eye outer and inner corner, nose base.
DLIB5_UNIT = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])
# ArcFace's 112x112 template (insightface): image-left eye, image-right eye, nose tip,
# image-left mouth corner, image-right mouth corner.
ARCFACE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
])


def transform_points(transforms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply (N, 2, 3) or (2, 3) affine maps to (N, K, 2) or (K, 2) points."""
    transforms = np.asarray(transforms, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    if transforms.ndim == 2:
        return points @ transforms[:, :2].T + transforms[:, 2]
    return points @ np.swapaxes(transforms[..., :2], -1, -2) + transforms[..., None, :, 2]


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift; no reflection) src -> dst.

    Umeyama (1991) restricted to 2-D, where it has a closed form in complex numbers:
    a = sum w conj(s) d / sum w |s|^2 over centred points, t = mean(d) - a mean(s).
    `src` is (N, K, 2) or (K, 2), `dst` (K, 2) or (N, K, 2); returns (N, 2, 3) or (2, 3).
    """
    src = np.asarray(src, dtype=np.float64)
    single = src.ndim == 2
    src = src[None] if single else src
    dst = np.broadcast_to(np.asarray(dst, dtype=np.float64), src.shape)
    w = np.ones(src.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    w = np.where(w > 0, w, 0.0)
    s = np.where(w[:, None] > 0, src, 0.0)
    d = np.where(w[:, None] > 0, dst, 0.0)
    s_c = s[..., 0] + 1j * s[..., 1]
    d_c = d[..., 0] + 1j * d[..., 1]
    wsum = w.sum()
    s_mean = (w * s_c).sum(-1) / wsum
    d_mean = (w * d_c).sum(-1) / wsum
    s0, d0 = s_c - s_mean[:, None], d_c - d_mean[:, None]
    denom = (w * np.abs(s0) ** 2).sum(-1)
    a = (w * np.conj(s0) * d0).sum(-1) / np.where(denom > 0, denom, np.nan)
    t = d_mean - a * s_mean
    out = np.stack([
        np.stack([a.real, -a.imag, t.real], -1),
        np.stack([a.imag, a.real, t.imag], -1),
    ], axis=1)
    return out[0] if single else out


def invert(transforms: np.ndarray) -> np.ndarray:
    """Inverse of (N, 2, 3) or (2, 3) affine maps (crop -> image for pasting back)."""
    transforms = np.asarray(transforms, dtype=np.float64)
    a, b, c, d = (transforms[..., i, j] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    det = a * d - b * c  # closed form: np.linalg.inv costs ~1 ms per call on a busy BLAS
    a_inv = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], -2) / det[..., None, None]
    t = -(a_inv @ transforms[..., 2:])
    return np.concatenate([a_inv, t], axis=-1)


def _eye_centres_unit() -> np.ndarray:
    """Image-left and image-right eye centres in the unit frame: means of dlib's corners."""
    return np.stack([DLIB5_UNIT[2:4].mean(0), DLIB5_UNIT[0:2].mean(0)])


def similarity_from_eyes(src_eyes: np.ndarray, dst_eyes: np.ndarray) -> np.ndarray:
    """The unique similarity taking two points onto two points, as a 2x3 matrix."""
    return umeyama(np.asarray(src_eyes, float)[None], np.asarray(dst_eyes, float))[0]


# ArcFace's template carried into the unit frame by the similarity that puts its eye
# centres on dlib's eye centres: a fixed map from ArcFace-aligned crops to dlib chips.
ARCFACE_TO_UNIT = similarity_from_eyes(ARCFACE_112[:2], _eye_centres_unit())


ARCFACE5_UNIT = transform_points(ARCFACE_TO_UNIT, ARCFACE_112)


@dataclass(frozen=True)
class KeypointLayout:
    """A detector's keypoints in the unit face frame; weight 0 marks points not fitted."""

    name: str
    unit: np.ndarray
    weights: np.ndarray


LAYOUTS: dict[str, KeypointLayout] = {
    "dlib5": KeypointLayout("dlib5", DLIB5_UNIT, np.ones(5)),
    "arcface5": KeypointLayout("arcface5", ARCFACE5_UNIT, np.ones(5)),
    # mediapipe BlazeFace: right eye, left eye (subject's; image-left/right on a frontal
    # face), nose tip, mouth centre, right and left ear tragion. Positions are medians over
    # 600 LFW faces (tools/calibrate_mediapipe_template.py). Tragions sit off the face plane
    # and swing with yaw (std 0.17 vs 0.03 for the eyes), so they are not fitted.
    "mediapipe6": KeypointLayout(
        "mediapipe6",
        np.array([
            [0.2219, 0.2403], [0.7626, 0.2493], [0.4806, 0.5561],
            [0.4828, 0.8284], [-0.0719, 0.3625], [1.0749, 0.3790],
        ]),
        np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0]),
    ),
}


@dataclass(frozen=True)
class CropSpec:
    """A square canonical crop: side in pixels and padding around the unit face frame."""

    size: int = 150
    padding: float = 0.25

    def to_crop(self, unit: np.ndarray) -> np.ndarray:
        """Unit-frame points -> crop pixel coordinates.

        The padded unit square spans the crop's pixel edges [0, size], so pixel centres
        sit at u - 0.5; measured against dlib.get_face_chip this is dlib's framing.
        """
        return (np.asarray(unit) + self.padding) / (1 + 2 * self.padding) * self.size - 0.5

    def unit_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(u, v): unit-frame coordinates of every pixel centre, each (size, size)."""
        pix = (np.arange(self.size) + 0.5) / self.size * (1 + 2 * self.padding) - self.padding
        return np.meshgrid(pix, pix)


DLIB_CHIP = CropSpec(150, 0.25)


def estimate_transforms(
    keypoints: np.ndarray, layout: str = "mediapipe6", crop: CropSpec = DLIB_CHIP
) -> np.ndarray:
    """(N, K, 2) keypoints in `layout` -> (N, 2, 3) image-to-crop similarity transforms.

    Like dlib, the least-squares fit goes from the template to the image and is inverted,
    so chips match dlib's get_face_chip even when the points do not fit exactly.
    """
    spec = LAYOUTS[layout]
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, len(spec.unit), 2)
    target = np.where(spec.weights[:, None] > 0, crop.to_crop(spec.unit), 0.0)
    template = np.broadcast_to(target, keypoints.shape)
    return invert(umeyama(template, np.where(np.isfinite(keypoints), keypoints, 0.0), spec.weights))


def warp_faces(
    image: np.ndarray, transforms: np.ndarray, size: int, border_value: float = 0.0
) -> np.ndarray:
    """Cut N canonical crops out of one image: (H, W, C) -> (N, size, size, C), bilinear.

    Outside the image is filled with `border_value` (dlib fills black).
    """
    transforms = np.asarray(transforms, dtype=np.float64).reshape(-1, 2, 3)
    out = np.empty((len(transforms), size, size, *image.shape[2:]), dtype=image.dtype)
    for i, m in enumerate(transforms):
        out[i] = cv2.warpAffine(
            image, m, (size, size), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=border_value,
        ).reshape(out.shape[1:])
    return out


def feather_mask(size: int, feather: float = 0.1) -> np.ndarray:
    """(size, size) float32 weights: 1 inside, linear ramp to 0 over `feather` of the side."""
    if feather <= 0:
        return np.ones((size, size), np.float32)
    idx = np.arange(size, dtype=np.float32)
    edge = np.minimum(idx + 0.5, size - 0.5 - idx)  # distance of a pixel centre to the border
    ramp = np.clip(edge / (feather * size), 0.0, 1.0)
    return np.minimum(ramp[:, None], ramp[None, :])


def paste_back(
    image: np.ndarray,
    crops: np.ndarray,
    transforms: np.ndarray,
    feather: float = 0.1,
    masks: np.ndarray | None = None,
    add: bool = False,
) -> np.ndarray:
    """Blend (N, S, S, C) crops back into a copy of `image` through the inverse transforms.

    Each crop is warped only into the bounding box it covers; `masks` (N, S, S) in [0, 1]
    default to a square feathered mask, so seams fade over `feather` of the crop side.
    With `add`, the crops are signed changes added under the mask (image + alpha * crop)
    instead of pictures blended over it: a low-resolution edit applied to a sharp image.
    """
    out = image.astype(np.float32, copy=True)
    crops = np.asarray(crops)
    n, size = len(crops), crops.shape[1]
    transforms = np.asarray(transforms, dtype=np.float64).reshape(n, 2, 3)
    inverse = invert(transforms)
    if masks is None:
        masks = np.broadcast_to(feather_mask(size, feather), (n, size, size))
    h, w = image.shape[:2]
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], float) - 0.5
    for crop, mask, inv in zip(crops, masks, inverse, strict=True):
        pts = transform_points(inv, corners)
        x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + 2, [w, h])
        if x1 <= x0 or y1 <= y0:
            continue
        shifted = inv.copy()
        shifted[:, 2] -= (x0, y0)
        roi = (int(x1 - x0), int(y1 - y0))
        flags = cv2.INTER_LINEAR
        patch = cv2.warpAffine(crop.astype(np.float32), shifted, roi, flags=flags)
        alpha = cv2.warpAffine(mask.astype(np.float32), shifted, roi, flags=flags)
        patch = patch.reshape(alpha.shape + image.shape[2:])
        alpha = alpha.reshape(alpha.shape + (1,) * (image.ndim - 2))
        region = out[y0:y1, x0:x1]
        region += alpha * (patch if add else patch - region)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    return out.astype(image.dtype)


def dlib_chips(image: np.ndarray, keypoints: np.ndarray, layout: str = "dlib5") -> np.ndarray:
    """150x150 chips framed as dlib's get_face_chip(size=150, padding=0.25) frames them."""
    return warp_faces(image, estimate_transforms(keypoints, layout, DLIB_CHIP), DLIB_CHIP.size)
