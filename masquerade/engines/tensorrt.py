"""TensorRT engines built from the same ONNX files, run with pycuda buffers and a stream.

Engines are cached on disk; the file name holds a key over everything that makes an
engine invalid (the ONNX file's hash, TensorRT's version, the GPU's name, the precision
and the batch profile), so a change to any of them builds a new one instead of loading
a stale one. Uses TensorRT's name-based tensor API (8.5 and later).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from masquerade.errors import MasqueradeError

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 1 << 30


def unavailable_reason() -> str | None:
    """Why TensorRT cannot run here (one line), or None when it can."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install tensorrt)"
    try:
        import pycuda.driver as cuda
    except ImportError:
        return "pycuda is not installed (pip install pycuda)"
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device"
    except Exception as e:  # pycuda raises its own LogicError/RuntimeError types
        return f"CUDA is not usable: {e}"
    return None


def engine_key(onnx_path: Path, trt_version: str, gpu_name: str, precision: str,
               max_batch: int) -> str:
    from masquerade.engines.engine import file_sha256

    parts = [file_sha256(onnx_path), trt_version, gpu_name, precision, str(max_batch)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def build_engine(onnx_path: Path, precision: str, max_batch: int) -> bytes:
    """Serialized engine with one optimization profile: batch 1..max_batch on axis 0."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MasqueradeError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        if not getattr(builder, "platform_has_fast_fp16", True):  # deprecated in 10.x
            log.warning("this GPU has no fast fp16; building %s in fp16 anyway", onnx_path.name)
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        rest = shape[1:]
        if any(s < 0 for s in rest):
            raise MasqueradeError(f"{onnx_path.name}: only the batch axis may be dynamic "
                                  f"({tensor.name} is {shape})")
        opt = min(max_batch, 4)
        profile.set_shape(tensor.name, [1, *rest], [opt, *rest], [max_batch, *rest])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise MasqueradeError(f"TensorRT failed to build an engine for {onnx_path.name}")
    return bytes(plan)


class TensorRTEngine:
    """`Engine` over a cached TensorRT plan; device buffers sized for `max_batch`."""

    backend = "tensorrt"

    def __init__(self, onnx_path: str | Path, precision: str = "fp16", max_batch: int = 16,
                 cache_dir: str | Path = ".", device_index: int = 0) -> None:
        import pycuda.driver as cuda
        import tensorrt as trt

        onnx_path = Path(onnx_path)
        cuda.init()
        device = cuda.Device(device_index)
        self._cuda = cuda
        self._context = device.retain_primary_context()
        self._lock = threading.Lock()
        self.max_batch = max_batch
        self.metadata = self._onnx_metadata(onnx_path)
        self._context.push()
        try:
            key = engine_key(onnx_path, trt.__version__, device.name(), precision, max_batch)
            self.plan_path = Path(cache_dir) / f"{onnx_path.stem}-{precision}-{key}.plan"
            if not self.plan_path.is_file():
                log.info("building TensorRT %s engine for %s (batch 1..%d) on %s",
                         precision, onnx_path.name, max_batch, device.name())
                plan = build_engine(onnx_path, precision, max_batch)
                self.plan_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.plan_path.with_name(f".{self.plan_path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(plan)
                os.replace(tmp, self.plan_path)
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self.engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
            if self.engine is None:
                raise MasqueradeError(f"TensorRT cannot load {self.plan_path}")
            self.exec = self.engine.create_execution_context()
            self.stream = cuda.Stream()
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
            self.inputs = [n for n in names if is_input[n]]
            self.outputs = [n for n in names if not is_input[n]]
            self._dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
            self._buffers = {}
            for n in names:
                shape = [max_batch if s < 0 else s for s in self.engine.get_tensor_shape(n)]
                self._buffers[n] = cuda.mem_alloc(int(np.prod(shape)) * self._dtype[n].itemsize)
                self.exec.set_tensor_address(n, int(self._buffers[n]))
        finally:
            self._context.pop()

    @staticmethod
    def _onnx_metadata(path: Path) -> dict[str, str]:
        """The ONNX file's metadata (configs ride there), read with ONNX Runtime on the CPU."""
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        batch = len(next(iter(feed.values())))
        if batch > self.max_batch:  # larger than the profile: split
            parts = [self.run({k: v[i:i + self.max_batch] for k, v in feed.items()})
                     for i in range(0, batch, self.max_batch)]
            return [np.concatenate(p) for p in zip(*parts, strict=True)]
        cuda = self._cuda
        with self._lock:
            self._context.push()
            try:
                for name in self.inputs:
                    host = np.ascontiguousarray(feed[name], self._dtype[name])
                    self.exec.set_input_shape(name, host.shape)
                    cuda.memcpy_htod_async(self._buffers[name], host, self.stream)
                results = []
                for name in self.outputs:
                    out = np.empty(tuple(self.exec.get_tensor_shape(name)), self._dtype[name])
                    results.append(out)
                if not self.exec.execute_async_v3(self.stream.handle):
                    raise MasqueradeError("TensorRT execution failed")
                for name, out in zip(self.outputs, results, strict=True):
                    cuda.memcpy_dtoh_async(out, self._buffers[name], self.stream)
                self.stream.synchronize()
            finally:
                self._context.pop()
        return [r.astype(np.float32, copy=False) for r in results]
