"""The independent judge: MobileFaceNet from ../shared/models (evaluation only).

It shares neither architecture nor training data with dlib's ResNet, which the deid
generator is trained against, so a fake that fools dlib but keeps the person's identity
for other recognizers shows up here. It is never a loss and never a calibration target
(../shared/models/README.md): nothing in masquerade/ imports it, only the eval tools.

Input: 112x112 RGB aligned to ArcFace's 5-point template, (x - 127.5) / 128, a fixed batch
of 2; output a 192-d embedding compared by cosine distance, same person at <= 0.653 (1%
false accepts on LFW). Faces are aligned here from dlib's 5-point shape (eye corners and
nose base), fitted onto where those points sit in ArcFace's template.

    pip install -e '.[eval]'   # ai-edge-litert
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from masquerade.alignment import ARCFACE_TO_UNIT, DLIB5_UNIT, invert, transform_points, umeyama
from masquerade.datasets import data_root

SAME_PERSON_DISTANCE = 0.653
SIZE = 112
# dlib's five points in ArcFace-112 pixel coordinates (the same fixed similarity that maps
# ArcFace-aligned LFW into dlib chips, run backwards)
DLIB5_IN_ARCFACE = transform_points(invert(ARCFACE_TO_UNIT), DLIB5_UNIT)


def model_path() -> Path:
    env = os.environ.get("MASQUERADE_MODELS")
    root = Path(env) if env else data_root().parent / "models"
    return root / "mobilefacenet" / "MobileFaceNet.tflite"


def arcface_transform(dlib5: np.ndarray) -> np.ndarray:
    """(5, 2) dlib 5-point landmarks in image pixels -> 2x3 image -> ArcFace-112 map."""
    return invert(umeyama(DLIB5_IN_ARCFACE, np.asarray(dlib5, np.float64)))


def align(image: np.ndarray, dlib5: np.ndarray) -> np.ndarray:
    """RGB image and its face's dlib 5 points -> (112, 112, 3) ArcFace-aligned RGB."""
    return cv2.warpAffine(image, arcface_transform(dlib5), (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def shape_points(shape) -> np.ndarray:
    """A dlib full_object_detection -> (K, 2) float array."""
    return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


class MobileFaceNet:
    """`embed((N, 112, 112, 3) uint8 RGB aligned faces) -> (N, 192)` unit vectors."""

    def __init__(self, path: Path | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        path = path or model_path()
        if not path.is_file():
            raise FileNotFoundError(f"MobileFaceNet not found at {path} (MASQUERADE_MODELS)")
        self._net = Interpreter(model_path=str(path), num_threads=2)
        self._net.allocate_tensors()
        self._in = self._net.get_input_details()[0]["index"]
        self._out = self._net.get_output_details()[0]["index"]

    def embed(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces, np.float32).reshape(-1, SIZE, SIZE, 3)
        out = []
        for i in range(0, len(faces), 2):
            pair = faces[i:i + 2]
            if len(pair) == 1:
                pair = np.concatenate([pair, pair])
            self._net.set_tensor(self._in, (pair - 127.5) / 128.0)
            self._net.invoke()
            out.append(self._net.get_tensor(self._out)[: len(faces[i:i + 2])].copy())
        e = np.concatenate(out) if out else np.zeros((0, 192), np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)

    def embed_frame(self, image: np.ndarray, dlib5: np.ndarray) -> np.ndarray:
        return self.embed(align(image, dlib5)[None])[0]

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(1.0 - np.dot(a, b))
