"""Camouflage: a face that looks like someone else to people but still matches, for the
operator's face recognizer, the person it is (after Li et al., identity-preserving
surveillance face camouflage).

People judge identity largely from face shape (eye spacing, nose and mouth width, jaw and
chin) and colouring; the recognizer's embedding tolerates moderate changes of those. Each
track's password picks an appearance (a smooth displacement field over the face's
features in the canonical face frame, and a skin-tone shift); the track then gets the
strongest version of it that keeps the recognizer's distance to the original under
`margin` x its threshold, measured once on the track's first frame. The hair gets a
key-chosen natural colour too (inside mediapipe's person mask): it lies mostly outside
the recognizer's face chip, so it changes the look a lot for people and the match little.
Working in the canonical frame makes the new face follow the head and stay the same from
frame to frame.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from masquerade.alignment import CropSpec, estimate_transforms, invert
from masquerade.anonymizers.base import FaceRegion, TrackCache
from masquerade.anonymizers.classic import PixelateAnonymizer
from masquerade.models.recognizer import Recognizer

log = logging.getLogger(__name__)

FIELD = CropSpec(64, 0.25)  # the displacement field's grid: smooth, so coarse is enough
SIGMA = 0.13  # feature influence radius, unit face frame (eye distance ~0.54)
LADDER = (1.0, 0.8, 0.6, 0.45, 0.3, 0.15)

# (control point in the unit face frame, mirrored partner index or -1) and each feature's
# largest move; features move symmetrically so the face stays plausible.
_FEATURES: tuple[tuple[str, tuple[tuple[float, float], ...], tuple[float, float]], ...] = (
    # name, points (left first; a second point is its mirror), max move (dx, dy)
    ("eye spacing", ((0.22, 0.24), (0.76, 0.25)), (0.056, 0.0)),
    ("eye height", ((0.22, 0.24), (0.76, 0.25)), (0.0, 0.045)),
    ("brows", ((0.22, 0.10), (0.76, 0.11)), (0.026, 0.064)),
    ("nose width", ((0.38, 0.60), (0.58, 0.60)), (0.056, 0.0)),
    ("nose length", ((0.48, 0.56),), (0.0, 0.064)),
    ("mouth width", ((0.32, 0.83), (0.64, 0.83)), (0.075, 0.0)),
    ("mouth height", ((0.48, 0.83),), (0.0, 0.053)),
    ("cheeks", ((0.06, 0.55), (0.91, 0.55)), (0.075, 0.0)),
    ("jaw", ((0.08, 0.86), (0.89, 0.86)), (0.09, 0.026)),
    ("chin", ((0.48, 1.06),), (0.0, 0.09)),
)
_SKIN_MAX = np.array([22.0, 8.0, 12.0])  # Lab shift (OpenCV 8-bit units) at strength 1
# Natural hair colours, OpenCV 8-bit Lab: black, dark brown, brown, auburn, dark blond,
# blond, grey. Hair lies mostly outside the recognizer's face chip, so a new hair colour
# costs the match almost nothing while people notice it at once.
_HAIR_PALETTE = np.array([
    [38, 129, 130], [64, 133, 138], [89, 136, 143], [89, 146, 150], [128, 134, 148],
    [166, 132, 153], [153, 128, 130],
], dtype=np.float64)
HAIR_MIX = 0.85  # how far the hair's colour moves to the target


@dataclass(frozen=True)
class Appearance:
    """What one password changes: control points, their moves and a skin-tone shift."""

    points: np.ndarray  # (K, 2) unit face frame
    moves: np.ndarray  # (K, 2) unit face frame, at strength 1
    skin: np.ndarray  # (3,) Lab shift at strength 1
    hair: np.ndarray  # (3,) target mean Lab of the hair

    @classmethod
    def from_password(cls, password: bytes) -> Appearance:
        digest = hashlib.sha256(b"masquerade camouflage v1\0" + password).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        points, moves = [], []
        for _name, pts, (mx, my) in _FEATURES:
            # each feature moves by 50-100% of its range, in a random direction
            t = rng.uniform(0.5, 1.0, 2) * rng.choice([-1.0, 1.0], 2)
            dx, dy = t[0] * mx, t[1] * my
            if len(pts) == 2:  # mirrored pair: apart/together, both up or down
                points += [pts[0], pts[1]]
                moves += [(-dx, dy), (dx, dy)]
            else:
                points.append(pts[0])
                moves.append((dx, dy))
        skin = rng.uniform(0.5, 1.0, 3) * rng.choice([-1.0, 1.0], 3) * _SKIN_MAX
        hair = _HAIR_PALETTE[rng.integers(len(_HAIR_PALETTE))] + rng.normal(0, 3, 3)
        return cls(np.array(points), np.array(moves), skin, hair)

    def field(self, crop: CropSpec = FIELD) -> np.ndarray:
        """(S, S, 2) forward displacement in crop pixels, at strength 1."""
        u = np.stack(crop.unit_grid(), -1)
        d2 = ((u[:, :, None, :] - self.points[None, None]) ** 2).sum(-1)
        weights = np.exp(-d2 / (2 * SIGMA**2))
        unit_moves = weights @ self.moves  # (S, S, 2)
        return (unit_moves * crop.size / (1 + 2 * crop.padding)).astype(np.float32)


def skin_mask(crop: CropSpec = FIELD, feather: float = 0.35) -> np.ndarray:
    """(S, S) soft ellipse over brow-to-chin skin, in the crop's framing."""
    u, v = crop.unit_grid()
    r = np.sqrt(((u - 0.49) / 0.55) ** 2 + ((v - 0.58) / 0.62) ** 2)
    return np.clip((1.0 - r) / feather, 0.0, 1.0).astype(np.float32)


def hair_region(crop: CropSpec = FIELD) -> np.ndarray:
    """(S, S) weight of where hair can be, in the crop's framing: above the brows and
    around the temples, outside the skin ellipse."""
    u, v = crop.unit_grid()
    above = np.clip((-0.02 - v) / 0.15, 0.0, 1.0)  # from above the brows upwards
    # beside the face down to the jaw: long hair (ears are skin-coloured and excluded later)
    beside = np.clip((np.abs(u - 0.5) - 0.55) / 0.1, 0.0, 1.0) * np.clip((0.9 - v) / 0.1, 0, 1)
    band = np.maximum(above, beside)
    return (band * (1.0 - skin_mask(crop, feather=0.2))).astype(np.float32)


def recolour_hair(pixels: np.ndarray, weight: np.ndarray, target: np.ndarray,
                  skin_weight: np.ndarray | None = None) -> np.ndarray:
    """Move the weighted region's mean Lab colour to `target`, keeping its texture.

    Pixels coloured like the face's skin (mean over `skin_weight`) are left alone, so a
    bare forehead or scalp inside the hair band keeps its colour."""
    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).astype(np.float32)
    if skin_weight is not None and skin_weight.sum() > 16.0:
        sw = skin_weight[..., None]
        skin = (lab * sw).reshape(-1, 3).sum(0) / float(sw.sum())
        d = np.sqrt((0.5 * (lab[..., 0] - skin[0])) ** 2 + (lab[..., 1] - skin[1]) ** 2
                    + (lab[..., 2] - skin[2]) ** 2)
        weight = weight * np.clip((d - 10.0) / 12.0, 0.0, 1.0)
    w = weight[..., None].astype(np.float32)
    total = float(w.sum())
    if total < 16.0:  # no hair in view
        return pixels
    mean = (lab * w).reshape(-1, 3).sum(0) / total
    shifted = lab + (target.astype(np.float32) - mean)
    # texture: keep the lightness variation, a little compressed towards dark hair
    shifted[..., 0] = target[0] + (lab[..., 0] - mean[0]) * 0.8
    out = lab + (HAIR_MIX * w) * (shifted - lab)
    return cv2.cvtColor(np.clip(np.rint(out), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


class PersonSegmenter:
    """mediapipe's selfie segmentation (bundled with 0.10.21): person probability per pixel."""

    def __init__(self) -> None:
        from mediapipe.python.solutions import selfie_segmentation

        from masquerade.engines.blazeface import quiet_native_stderr

        with quiet_native_stderr():
            self._graph = selfie_segmentation.SelfieSegmentation(model_selection=0)
            self._graph.process(np.zeros((64, 64, 3), np.uint8))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self._graph.process(np.ascontiguousarray(image)).segmentation_mask

    def close(self) -> None:
        self._graph.close()


def apply_appearance(pixels: np.ndarray, transform: np.ndarray, field: np.ndarray,
                     skin: np.ndarray, mask: np.ndarray, strength: float,
                     hair: np.ndarray | None = None, hair_weight: np.ndarray | None = None
                     ) -> np.ndarray:
    """Re-shape and re-tone the face in `pixels` (RGB uint8) whose image -> canonical crop
    map is `transform` (2x3, onto the grid of `field` and `mask`); `hair_weight` (image
    sized) says where to give the hair the colour `hair`."""
    h, w = pixels.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # sample the crop grid at M(p)
    alpha = cv2.warpAffine(mask, transform, (w, h), flags=flags,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if hair is not None and hair_weight is not None:
        pixels = recolour_hair(pixels, hair_weight, hair, skin_weight=alpha)
    if strength <= 0:
        return pixels.copy()
    d_crop = cv2.warpAffine(field, transform, (w, h), flags=flags,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # crop-pixel displacements back into image pixels: the inverse of M's linear part
    a_inv = invert(transform)[:, :2]
    d_img = d_crop.reshape(-1, 2) @ (strength * a_inv.T).astype(np.float32)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = xs - d_img[:, 0].reshape(h, w)  # backward map of a smooth forward field
    map_y = ys - d_img[:, 1].reshape(h, w)
    out = cv2.remap(pixels, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab += alpha[..., None] * (strength * skin).astype(np.float32)
    return cv2.cvtColor(np.clip(np.rint(lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


@dataclass
class _Track:
    appearance: Appearance
    field: np.ndarray
    strength: float
    distance: float  # recognizer distance camouflaged vs original on the first frame


class CamouflageAnonymizer:
    """The anonymizer interface for camouflage: one fixed new look per track."""

    def __init__(self, password: Callable[[int], bytes], recognizer: Recognizer | None = None,
                 max_strength: float = 1.0, margin: float = 0.5, hair: bool = True) -> None:
        self.password = password
        self.recognizer = recognizer or Recognizer()
        self.max_strength = max_strength
        self.margin = margin
        self.mask = skin_mask()
        self.hair_region = hair_region()
        self.segmenter = PersonSegmenter() if hair else None
        self._tracks: TrackCache[_Track] = TrackCache()
        self.weak_tracks = 0  # tracks where even the gentlest change broke the match
        self.no_landmarks = PixelateAnonymizer(6)
        self.no_landmark_faces = 0

    def _transform(self, region: FaceRegion) -> np.ndarray | None:
        kps = region.keypoints
        if kps is None or not np.isfinite(np.asarray(kps)[:4]).all():
            return None
        return estimate_transforms(np.asarray(kps, np.float64)[None], "mediapipe6", FIELD)[0]

    def _hair_weight(self, region: FaceRegion, transform: np.ndarray) -> np.ndarray | None:
        """Where the hair is: the hair band of the face frame, times mediapipe's person mask
        (so background above and beside the head keeps its colour)."""
        if self.segmenter is None:
            return None
        h, w = region.pixels.shape[:2]
        band = cv2.warpAffine(self.hair_region, transform, (w, h),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
        return band * self.segmenter(region.pixels)

    def _calibrate(self, region: FaceRegion, transform: np.ndarray,
                   hair_weight: np.ndarray | None) -> _Track:
        """The strongest rung of the ladder the recognizer still matches to the original."""
        appearance = Appearance.from_password(self.password(region.track_id))
        field = appearance.field()
        kps = np.asarray(region.keypoints, np.float64)[None]
        rec = self.recognizer
        original = rec.embed([region.pixels], kps)
        limit = self.margin * rec.threshold
        strengths = [self.max_strength * s for s in LADDER]
        candidates = [apply_appearance(region.pixels, transform, field, appearance.skin,
                                       self.mask, s, appearance.hair, hair_weight)
                      for s in strengths]
        # keypoints stay put: the recognizer sees the camouflaged face aligned as the
        # original was, as it would through the same detector
        dists = rec.distance(rec.embed(candidates, np.repeat(kps, len(candidates), 0)),
                             original)
        ok = np.flatnonzero(dists <= limit)
        if len(ok):
            i = int(ok[0])
        else:
            i = len(strengths) - 1
            self.weak_tracks += 1
            log.warning("track %d: even the gentlest camouflage moves %s by %.3f (limit %.3f)",
                        region.track_id, rec.name, dists[i], limit)
        log.debug("track %d: camouflage strength %.2f, %s distance %.3f", region.track_id,
                  strengths[i], rec.name, dists[i])
        return _Track(appearance, field, strengths[i], float(dists[i]))

    def track(self, region: FaceRegion, transform: np.ndarray,
              hair_weight: np.ndarray | None = None) -> _Track:
        t = self._tracks.get(region.track_id)
        if t is None:
            t = self._tracks[region.track_id] = self._calibrate(region, transform, hair_weight)
        self._tracks.move_to_end(region.track_id)
        return t

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]:
        out = []
        for r in regions:
            m = self._transform(r)
            if m is None:  # no landmarks to place a new look on: fail closed
                out.extend(self.no_landmarks.anonymize([r]))
                self.no_landmark_faces += 1
                continue
            hair_weight = self._hair_weight(r, m)
            t = self.track(r, m, hair_weight)
            out.append(apply_appearance(r.pixels, m, t.field, t.appearance.skin, self.mask,
                                        t.strength, t.appearance.hair, hair_weight))
        return out
