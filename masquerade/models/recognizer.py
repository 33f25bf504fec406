"""Face recognizers as the camouflage mode sees them: aligned faces in, embeddings out,
plus the distance and threshold that decide "same person".

dlib's ResNet (through the engine layer) is the default; any face-embedding ONNX model
can take its place, described by `RecognizerConfig` (input size, alignment template,
channel order, normalisation, metric, threshold).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from masquerade.alignment import (
    ARCFACE_TO_UNIT,
    DLIB_CHIP,
    LAYOUTS,
    invert,
    transform_points,
    umeyama,
)
from masquerade.config import EngineConfig, RecognizerConfig
from masquerade.engines.engine import load_engine
from masquerade.errors import ConfigError

DLIB_THRESHOLD = 0.6


def arcface_transforms(keypoints: np.ndarray, layout: str, size: int) -> np.ndarray:
    """(N, K, 2) keypoints -> (N, 2, 3) maps onto insightface's 112 px template, scaled."""
    spec = LAYOUTS[layout]
    unit_to_arcface = invert(ARCFACE_TO_UNIT)
    target = transform_points(unit_to_arcface, spec.unit) * (size / 112.0)
    target = np.where(spec.weights[:, None] > 0, target, 0.0)
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, len(spec.unit), 2)
    template = np.broadcast_to(target, keypoints.shape)
    return invert(umeyama(template, np.where(np.isfinite(keypoints), keypoints, 0.0),
                          spec.weights))


class Recognizer:
    """Embeds faces given by image + keypoints; `distance` and `threshold` judge a match."""

    def __init__(self, config: RecognizerConfig | None = None,
                 engine: EngineConfig | None = None) -> None:
        config = config or RecognizerConfig()
        self.config = config
        if config.onnx:
            path = Path(config.onnx).expanduser()
            if not path.is_file():
                raise ConfigError(f"config key 'recognizer.onnx': no such file: {path}")
            self.engine = load_engine(path, engine)
            self.size = config.input_size
            self.framing = config.framing
            self.threshold = config.threshold
            self.metric = config.metric
            self.mean, self.std, self.bgr = config.mean, config.std, config.channels == "bgr"
        else:
            from masquerade.models.registry import identity_encoder_onnx

            self.engine = load_engine(identity_encoder_onnx(), engine)
            self.size, self.framing = DLIB_CHIP.size, "dlib"
            self.threshold, self.metric = DLIB_THRESHOLD, "euclidean"
            self.mean, self.std, self.bgr = 0.0, 1.0, False
        if len(self.engine.inputs) != 1:
            raise ConfigError("config key 'recognizer.onnx': the model must take one input "
                              f"(it takes {self.engine.inputs})")

    @property
    def name(self) -> str:
        return Path(self.config.onnx).name if self.config.onnx else "dlib_resnet"

    def transforms(self, keypoints: np.ndarray, layout: str = "mediapipe6") -> np.ndarray:
        if self.framing == "dlib":
            from masquerade.alignment import CropSpec, estimate_transforms

            return estimate_transforms(keypoints, layout, CropSpec(self.size, DLIB_CHIP.padding))
        return arcface_transforms(keypoints, layout, self.size)

    def embed_aligned(self, faces: np.ndarray) -> np.ndarray:
        """(N, size, size, 3) uint8 RGB faces already in the model's framing -> (N, D)."""
        x = np.asarray(faces, np.float32)
        if self.bgr:
            x = x[..., ::-1]
        x = (x.transpose(0, 3, 1, 2) - self.mean) / self.std
        return self.engine.run({self.engine.inputs[0]: np.ascontiguousarray(x)})[0]

    def embed(self, images: list[np.ndarray], keypoints: np.ndarray,
              layout: str = "mediapipe6") -> np.ndarray:
        """One embedding per (image, keypoints) pair."""
        ms = self.transforms(keypoints, layout)
        faces = np.stack([cv2.warpAffine(im, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REPLICATE)
                          for im, m in zip(images, ms, strict=True)])
        return self.embed_aligned(faces)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        if self.metric == "euclidean":
            return np.linalg.norm(a - b, axis=1)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        return 1.0 - cos
