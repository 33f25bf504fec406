"""Keyed generative de-identification: each tracked face becomes a consistent fake person.

Per region: align the face to the generator's canonical crop with its BlazeFace keypoints,
take the identity z = E_id(chip) once per track, rotate it with the track's password,
z_new = M(z, p_track, d) (`masquerade.keys`), render G(z_new, E_attr(face)), match its
colours to the original inside the face mask (mean/std per Lab channel) and paste it back
with a feathered elliptical mask. The rotation is invertible with the key, so the original
identity vector can be recovered; the pixels of the original face cannot.

All networks run through ONNX Runtime; torch is only needed to export them.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from masquerade.alignment import CropSpec, estimate_transforms, paste_back
from masquerade.anonymizers.base import FaceRegion
from masquerade.errors import MasqueradeError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights"
CHIP = 150
TRACK_CACHE = 4096


def _session(path: Path, threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def box_transforms(boxes: np.ndarray, crop: CropSpec) -> np.ndarray:
    """Fallback without keypoints: map each face box onto the unit face square."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    lo, hi = crop.to_crop(np.zeros(2)), crop.to_crop(np.ones(2))
    scale = (hi[0] - lo[0]) / np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    out = np.zeros((len(boxes), 2, 3))
    out[:, 0, 0] = out[:, 1, 1] = scale
    out[:, 0, 2] = lo[0] - scale * boxes[:, 0]
    out[:, 1, 2] = lo[1] - scale * boxes[:, 1]
    return out


def face_mask(crop: CropSpec, feather: float = 0.12) -> np.ndarray:
    """(S, S) float32 soft ellipse over the face (forehead to chin) in the crop's framing."""
    pix = (np.arange(crop.size) + 0.5) / crop.size * (1 + 2 * crop.padding) - crop.padding
    u, v = np.meshgrid(pix, pix)  # unit-frame coordinates of pixel centres
    r = np.sqrt(((u - 0.5) / 0.62) ** 2 + ((v - 0.5) / 0.72) ** 2)
    return np.clip((1.0 - r) / feather, 0.0, 1.0).astype(np.float32)


def match_colours(generated: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shift each Lab channel of `generated` to the masked mean/std of `original`.

    (N, S, S, 3) uint8 RGB each, mask (S, S) weights; keeps skin tone and lighting of the
    scene when the generator's colours drift.
    """
    w = mask[None, ..., None].astype(np.float32)
    wsum = w.sum()

    def lab(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(-1, x.shape[2], 3).astype(np.float32) / 255.0
        return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(x.shape)

    g, o = lab(generated), lab(original)
    axes = (1, 2)
    g_mean = (g * w).sum(axes, keepdims=True) / wsum
    o_mean = (o * w).sum(axes, keepdims=True) / wsum
    g_std = np.sqrt(((g - g_mean) ** 2 * w).sum(axes, keepdims=True) / wsum) + 1e-3
    o_std = np.sqrt(((o - o_mean) ** 2 * w).sum(axes, keepdims=True) / wsum)
    out = (g - g_mean) * np.clip(o_std / g_std, 0.5, 2.0) + o_mean
    rgb = cv2.cvtColor(out.reshape(-1, out.shape[2], 3), cv2.COLOR_LAB2RGB).reshape(out.shape)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


class DeidGenerator:
    """E_attr and G as ONNX Runtime sessions: (faces uint8 crops, identities) -> faces."""

    def __init__(self, weights_dir: str | Path = WEIGHTS_DIR, threads: int | None = None) -> None:
        weights_dir = Path(weights_dir)
        self.attr = _session(weights_dir / "deid_attr.onnx", threads)
        self.gen = _session(weights_dir / "deid_generator.onnx", threads)
        meta = self.gen.get_modelmeta().custom_metadata_map
        cfg = json.loads(meta["config_json"])
        self.crop = CropSpec(int(cfg["size"]), float(cfg["padding"]))
        self.attr_names = [o.name for o in self.attr.get_outputs()]

    def __call__(self, crops: np.ndarray, identities: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops, (N, 128) identities -> (N, S, S, 3) uint8."""
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), np.float32) / 127.5 - 1.0
        attrs = self.attr.run(None, {"faces": x})
        feed = {"identity": np.asarray(identities, np.float32), **dict(
            zip(self.attr_names, attrs, strict=True))}
        y = self.gen.run(["faces"], feed)[0]
        return np.clip(np.rint((y.transpose(0, 2, 3, 1) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def cache_dir() -> Path:
    """Where models derived at run time live (MASQUERADE_CACHE, else ~/.cache/masquerade)."""
    return Path(os.environ.get("MASQUERADE_CACHE", Path.home() / ".cache" / "masquerade"))


def default_identity_encoder(threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """E_id through ONNX Runtime, exported once from dlib's weights into the user cache."""
    from masquerade.models.onnx_encoder import OnnxFaceEncoder

    path = cache_dir() / "dlib_resnet.onnx"
    if not path.is_file():
        try:
            from masquerade.models.dlib_resnet import export_onnx
        except ImportError:
            raise MasqueradeError(
                "the identity encoder must be exported once with torch: pip install "
                "'masquerade[torch]', or copy dlib_resnet.onnx into " + str(cache_dir())
            ) from None

        log.info("exporting the identity encoder to %s", path)
        export_onnx(path)
    return OnnxFaceEncoder(path, threads=threads)


class KeyedDeidAnonymizer:
    """The anonymizer interface over the keyed generator: one stable fake identity per track.

    `password(track_id)` gives the track's password p (e.g. `partial(secret.track_password,
    stream_id)`); `d` in [0, 1] is the privacy level of the rotation. `key` supplies f(p)
    and g(d) (default: the shipped reference library).
    """

    def __init__(
        self,
        password: Callable[[int], bytes],
        d: float = 1.0,
        key: object | None = None,
        weights_dir: str | Path = WEIGHTS_DIR,
        identity_encoder: Callable[[np.ndarray], np.ndarray] | None = None,
        threads: int | None = None,
        colour_match: bool = True,
    ) -> None:
        from masquerade.keys.rotation import IdentityKey

        self.password = password
        self.d = d
        self.key = key if key is not None else IdentityKey()
        self.generator = DeidGenerator(weights_dir, threads)
        self.encoder = identity_encoder or default_identity_encoder(threads)
        self.crop = self.generator.crop
        self.mask = face_mask(self.crop)
        self.colour_match = colour_match
        self._identities: OrderedDict[int, np.ndarray] = OrderedDict()

    def _transforms(self, regions: list[FaceRegion]) -> np.ndarray:
        out = np.empty((len(regions), 2, 3))
        for i, r in enumerate(regions):
            kps = None if r.keypoints is None else np.asarray(r.keypoints, np.float64)
            if kps is not None and np.isfinite(kps[:4]).all():
                out[i] = estimate_transforms(kps[None], "mediapipe6", self.crop)[0]
            else:
                out[i] = box_transforms(r.box, self.crop)[0]
        return out

    def identities(self, track_ids: list[int], crops: np.ndarray) -> np.ndarray:
        """z_new = M(E_id(chip), p_track, d), computed once per track and cached."""
        missing = [i for i, t in enumerate(track_ids) if t not in self._identities]
        if missing:
            chips = np.stack([cv2.resize(crops[i], (CHIP, CHIP), interpolation=cv2.INTER_LINEAR)
                              for i in missing])
            z = self.encoder(chips)
            for i, zi in zip(missing, z, strict=True):
                tid = track_ids[i]
                self._identities[tid] = np.asarray(
                    self.key.apply(zi, self.password(tid), self.d), np.float32)  # type: ignore[attr-defined]
                while len(self._identities) > TRACK_CACHE:
                    self._identities.popitem(last=False)
        for t in track_ids:
            self._identities.move_to_end(t)
        return np.stack([self._identities[t] for t in track_ids])

    def anonymize(self, regions: list[FaceRegion]) -> list[np.ndarray]:
        if not regions:
            return []
        transforms = self._transforms(regions)
        size = self.crop.size
        crops = np.stack([
            cv2.warpAffine(r.pixels, m, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            for r, m in zip(regions, transforms, strict=True)
        ])
        z_new = self.identities([r.track_id for r in regions], crops)
        fakes = self.generator(crops, z_new)
        if self.colour_match:
            fakes = match_colours(fakes, crops, self.mask)
        masks = np.broadcast_to(self.mask, (1, size, size))
        return [
            paste_back(r.pixels, fake[None], m[None], masks=masks)
            for r, fake, m in zip(regions, fakes, transforms, strict=True)
        ]
