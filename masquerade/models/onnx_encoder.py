"""dlib-compatible face descriptors through the engine layer, for deployments without torch.

The graph comes from `dlib_resnet.export_onnx` (tools/export_identity_onnx.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masquerade.config import EngineConfig
from masquerade.engines.engine import load_engine


class OnnxFaceEncoder:
    """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) float32 descriptors on any engine."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None,
                 engine: EngineConfig | None = None) -> None:
        if engine is None:
            engine = EngineConfig(threads=threads or 0)
        self.engine = load_engine(onnx_path, engine)
        self.metadata: dict[str, str] = self.engine.metadata

    def __call__(self, chips: np.ndarray, batch_size: int = 32) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        x = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
        out = [
            self.engine.run({"chips": x[i : i + batch_size]})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)
