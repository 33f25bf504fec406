"""ONNX Runtime, the default engine for every network Masquerade runs.

One place decides providers and threads: CUDA when ONNX Runtime was built with it and a
GPU is present, else the CPU (on two cores shared with decode, detection and encoding,
one intra-op thread per session often does better than a contended pool).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)


def providers(device: str = "auto") -> list[str]:
    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        log.warning("CUDA requested but ONNX Runtime has no CUDA provider; using the CPU")
    return ["CPUExecutionProvider"]


def create_session(path: str | Path, threads: int | None = None,
                   device: str = "auto") -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=providers(device))


class OnnxRuntimeEngine:
    """`Engine` over an ONNX Runtime session."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "auto") -> None:
        self.session = create_session(path, threads, device)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.providers = self.session.get_providers()

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.outputs, {k: np.ascontiguousarray(v, np.float32)
                                               for k, v in feed.items()})
