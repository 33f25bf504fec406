"""One interface for every network Masquerade runs, whatever executes it.

A network is an ONNX file; an `Engine` runs it by input and output name on numpy arrays
with a leading batch axis. `load_engine` picks the backend from `EngineConfig`:
ONNX Runtime (CPU, or its CUDA provider) by default, TensorRT on NVIDIA GPUs. PyTorch is
kept for training and as the reference the backends are checked against, not here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from masquerade.config import EngineConfig
from masquerade.errors import MasqueradeError

log = logging.getLogger(__name__)


class Engine(Protocol):
    backend: str
    inputs: list[str]
    outputs: list[str]
    metadata: dict[str, str]

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """All outputs, in `outputs` order, for float32 inputs with a batch axis."""
        ...


def cache_root() -> Path:
    """Where files derived at run time live (MASQUERADE_CACHE, else ~/.cache/masquerade)."""
    return Path(os.environ.get("MASQUERADE_CACHE", Path.home() / ".cache" / "masquerade"))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_shared: dict[tuple, Engine] = {}
_shared_lock = threading.Lock()


def load_engine(onnx_path: str | Path, config: EngineConfig | None = None,
                shared: bool = True) -> Engine:
    """An engine for one ONNX file, on the configured backend.

    Engines are stateless between calls and safe to call from several threads, so by
    default one per (file, settings) serves the whole process: `serve` with ten cameras
    holds each network once, not ten times.
    """
    config = config or EngineConfig()
    onnx_path = Path(onnx_path).resolve()
    if not onnx_path.is_file():
        raise MasqueradeError(f"model file not found: {onnx_path}")
    if not shared:
        return _load(onnx_path, config)
    stat = onnx_path.stat()
    key = (str(onnx_path), stat.st_size, stat.st_mtime_ns, dataclasses.astuple(config))
    with _shared_lock:
        engine = _shared.get(key)
        if engine is None:
            engine = _shared[key] = _load(onnx_path, config)
    return engine


def _load(onnx_path: Path, config: EngineConfig) -> Engine:
    if config.backend == "tensorrt":
        from masquerade.engines.tensorrt import TensorRTEngine, unavailable_reason

        reason = unavailable_reason()
        if reason:
            raise MasqueradeError(f"engine.backend=tensorrt: {reason}")
        cache = Path(config.cache_dir) if config.cache_dir else cache_root() / "tensorrt"
        return TensorRTEngine(onnx_path, precision=config.precision,
                              max_batch=config.max_batch, cache_dir=cache)
    from masquerade.engines.onnxruntime import OnnxRuntimeEngine

    return OnnxRuntimeEngine(onnx_path, threads=config.threads or None, device=config.device)
