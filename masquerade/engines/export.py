"""`masquerade export`: the ONNX files of every network, and TensorRT engines built from them.

The manifest records each file's hash, opset and input shapes, so a deployment can check
it runs exactly what was exported. TensorRT engines go to the engine cache under the key
`load_engine` looks up, so a later run with `engine.backend=tensorrt` builds nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from masquerade.config import EngineConfig
from masquerade.engines.engine import file_sha256, load_engine
from masquerade.errors import MasqueradeError, OutputError

log = logging.getLogger(__name__)


def describe_onnx(path: Path) -> dict[str, Any]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "opset": int(meta["opset"]) if "opset" in meta else None,
        "inputs": {i.name: i.shape for i in session.get_inputs()},
        "outputs": {o.name: o.shape for o in session.get_outputs()},
    }


def export_models(out_dir: str | Path, engine: EngineConfig, *, tensorrt: bool = False,
                  precisions: tuple[str, ...] = ("fp16",), overwrite: bool = False
                  ) -> dict[str, Any]:
    from masquerade.models.registry import networks

    if tensorrt:
        from masquerade.engines.tensorrt import unavailable_reason

        reason = unavailable_reason()
        if reason:  # before writing anything
            raise MasqueradeError(f"--tensorrt: {reason}")
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists() and not overwrite:
        raise OutputError(f"{out_dir} already holds an export; pass --overwrite to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"networks": {}, "tensorrt": []}
    for name, source in networks().items():
        target = out_dir / source.name
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
        manifest["networks"][name] = describe_onnx(target)
        log.info("wrote %s", target)
        for precision in precisions if tensorrt else ():
            config = dataclasses.replace(engine, backend="tensorrt", precision=precision)
            start = time.perf_counter()
            built = load_engine(target, config)
            manifest["tensorrt"].append({
                "network": name, "precision": precision, "max_batch": config.max_batch,
                "plan": str(built.plan_path),  # type: ignore[attr-defined]
                "seconds": round(time.perf_counter() - start, 1)})
            log.info("TensorRT %s engine for %s: %s", precision, name,
                     built.plan_path)  # type: ignore[attr-defined]
    if tensorrt:
        import tensorrt as trt

        manifest["tensorrt_version"] = trt.__version__
    tmp = manifest_path.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(manifest_path)
    return manifest
