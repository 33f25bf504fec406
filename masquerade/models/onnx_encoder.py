"""dlib-compatible face descriptors through ONNX Runtime, for deployments without torch.

The graph comes from `dlib_resnet.export_onnx` (tools/export_identity_onnx.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masquerade.engines.onnxruntime import create_session


class OnnxFaceEncoder:
    """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) float32 descriptors via ONNX Runtime."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None) -> None:
        self.session = create_session(onnx_path, threads)
        self.metadata: dict[str, str] = self.session.get_modelmeta().custom_metadata_map

    def __call__(self, chips: np.ndarray, batch_size: int = 32) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        x = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
        out = [
            self.session.run(["embeddings"], {"chips": x[i : i + batch_size]})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)
