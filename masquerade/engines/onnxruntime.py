"""ONNX Runtime sessions, the default engine for every network Masquerade runs.

One place decides providers and threads: CUDA when ONNX Runtime was built with it and a
GPU is present, else the CPU with a bounded thread count (two cores shared with decode,
detection and encoding do better with one intra-op thread per session).
"""

from __future__ import annotations

import logging
from pathlib import Path

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
