"""`masquerade bench`: per-stage cost of the pipeline against the codec-only floor.

The floor (decode + re-encode with the same encoder settings, no face work) is what any
tool that rewrites the video must pay; the ratio of the pipeline's time to it shows the
overhead that is ours.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from masquerade import __version__
from masquerade.config import Config, EngineConfig, config_to_dict
from masquerade.engines.engine import Engine, load_engine
from masquerade.pipeline.runner import run_file
from masquerade.streams import AudioPacket, PyAVFileSink, PyAVSource
from masquerade.synthetic import Scenario, write_clip

log = logging.getLogger(__name__)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "masquerade": __version__}


def codec_floor(input_path: str, output: Path, config: Config) -> dict[str, float]:
    """Decode and re-encode every frame with no face work: the cost of touching video."""
    start = time.perf_counter()
    frames = 0
    with PyAVSource(input_path) as source:
        sink = PyAVFileSink(output, config.encoder, average_rate=source.info.average_rate,
                            audio_templates=source.audio_streams, overwrite=True)
        for item in source:
            if isinstance(item, AudioPacket):
                sink.write_audio(item)
            else:
                sink.write(item)
                frames += 1
        sink.close()
    wall = time.perf_counter() - start
    return {"frames": frames, "wall_seconds": round(wall, 3), "fps": round(frames / wall, 2)}


def run_benchmark(input_path: str | None, config: Config, frames: int = 150,
                  size: tuple[int, int] = (1280, 720)) -> dict[str, Any]:
    config = dataclasses.replace(
        config, pipeline=dataclasses.replace(config.pipeline, progress=False))
    with tempfile.TemporaryDirectory(prefix="masquerade-bench-") as tmp:
        tmp_dir = Path(tmp)
        if input_path is None:
            scenario = Scenario(width=size[0], height=size[1], frames=frames)
            input_path = str(tmp_dir / f"bench_{size[0]}x{size[1]}.mp4")
            write_clip(input_path, scenario)
            log.info("generated %dx%d clip with %d frames", scenario.width, scenario.height,
                     frames)
        floor = codec_floor(input_path, tmp_dir / "floor.mp4", config)
        result = run_file(input_path, tmp_dir / "pipeline.mp4", config, overwrite=True)
    stats = result.stats
    return {
        "input": input_path,
        "machine": machine(),
        "config": config_to_dict(config),
        "pipeline": {
            "frames": stats.frames_in,
            "faces": stats.faces,
            "wall_seconds": round(stats.wall_seconds, 3),
            "fps": round(stats.fps, 2),
            "stage_ms_per_frame": {k: round(v, 2) for k, v in stats.stage_ms_per_frame().items()},
        },
        "codec_floor": floor,
        "overhead_ratio": round(stats.wall_seconds / max(floor["wall_seconds"], 1e-9), 2),
    }


def _best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls allocate and (TensorRT) select kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best


def _random_feed(engine: Engine, shapes: dict[str, list], batch: int,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    feed = {}
    for name in engine.inputs:
        dims = [batch, *(int(d) for d in shapes[name][1:])]
        if name == "chips":  # dlib chips are 0..255 pixels
            feed[name] = rng.uniform(0, 255, dims).astype(np.float32)
        else:
            feed[name] = rng.standard_normal(dims).astype(np.float32)
    return feed


def _engine_backends(config: EngineConfig) -> list[EngineConfig]:
    from masquerade.engines.tensorrt import unavailable_reason

    backends = [dataclasses.replace(config, backend="onnxruntime")]
    reason = unavailable_reason()
    if reason is None:
        backends += [dataclasses.replace(config, backend="tensorrt", precision=p)
                     for p in ("fp32", "fp16")]
    else:
        log.info("TensorRT not benchmarked: %s", reason)
    return backends


def bench_networks(config: EngineConfig, batches: tuple[int, ...] = (1, 4, 16),
                   repeats: int = 7) -> list[dict[str, Any]]:
    """ms per face of every network on every available backend, batch by batch; for each
    batch also N single-face calls on the same engine (what batching saves) and PyTorch
    (the reference) when torch is installed."""
    from masquerade.engines.export import describe_onnx
    from masquerade.models.registry import networks, torch_reference

    try:
        import torch
    except ImportError:
        torch = None  # type: ignore[assignment]
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for name, path in networks().items():
        shapes = describe_onnx(path)["inputs"]
        engines = {}
        for backend in _engine_backends(config):
            label = backend.backend + ("" if backend.backend == "onnxruntime"
                                       else f"-{backend.precision}")
            engines[label] = load_engine(path, backend)
        reference = torch_reference(name) if torch is not None else None
        for batch in batches:
            feed = _random_feed(next(iter(engines.values())), shapes, batch, rng)
            row: dict[str, Any] = {"network": name, "batch": batch}
            for label, engine in engines.items():
                ms = _best_ms(lambda e=engine, f=feed: e.run(f), repeats)
                singles = _best_ms(lambda e=engine, f=feed, b=batch: [
                    e.run({k: v[i:i + 1] for k, v in f.items()}) for i in range(b)], repeats)
                row[f"{label}_ms_per_face"] = round(ms / batch, 3)
                row[f"{label}_batching_speedup"] = round(singles / ms, 2)
            if reference is not None:
                args = [torch.from_numpy(feed[n]) for n in shapes]

                def call(args=args, module=reference) -> None:
                    with torch.inference_mode():
                        module(*args)

                row["torch_ms_per_face"] = round(_best_ms(call, repeats) / batch, 3)
                row["onnxruntime_speedup_over_torch"] = round(
                    row["torch_ms_per_face"] / row["onnxruntime_ms_per_face"], 2)
            rows.append(row)
            log.info("%s", row)
    return rows


def bench_deid_fps(config: Config, face_counts: tuple[int, ...] = (1, 4, 16), frames: int = 60,
                   size: tuple[int, int] = (1280, 720)) -> list[dict[str, Any]]:
    """End-to-end `deid` mode on generated clips with N faces each."""
    from masquerade.keys import SecretKey

    config = dataclasses.replace(
        config, pipeline=dataclasses.replace(config.pipeline, progress=False),
        anonymizer=dataclasses.replace(config.anonymizer, mode="deid"))
    key = SecretKey.generate()
    rows = []
    with tempfile.TemporaryDirectory(prefix="masquerade-bench-") as tmp:
        for n in face_counts:
            clip = Path(tmp) / f"crowd{n}.mp4"
            write_clip(clip, Scenario(width=size[0], height=size[1], frames=frames, crowd=n,
                                      audio=False))
            stats = run_file(str(clip), Path(tmp) / f"deid{n}.mp4", config, key=key,
                             overwrite=True, record_tracks=False).stats
            rows.append({
                "faces": n, "size": f"{size[0]}x{size[1]}", "frames": stats.frames_in,
                "face_regions": stats.faces, "fps": round(stats.fps, 2),
                "stage_ms_per_frame": {k: round(v, 2)
                                       for k, v in stats.stage_ms_per_frame().items()}})
            log.info("%s", rows[-1])
    return rows


def run_model_benchmark(config: Config, repeats: int = 7, frames: int = 60,
                        size: tuple[int, int] = (1280, 720)) -> dict[str, Any]:
    return {
        "machine": machine(),
        "engine": config_to_dict(config)["engine"],
        "networks": bench_networks(config.engine, repeats=repeats),
        "deid_end_to_end": bench_deid_fps(config, frames=frames, size=size),
    }


def model_table(report: dict[str, Any]) -> str:
    """The report as two plain-text tables."""
    rows = report["networks"]
    cols = [k for k in rows[0] if k.endswith("_ms_per_face") or k.endswith("speedup")
            or k.endswith("_over_torch")]
    lines = [" | ".join(["network", "batch", *cols])]
    lines += [" | ".join([r["network"], str(r["batch"]), *(str(r.get(c, "")) for c in cols)])
              for r in rows]
    lines += ["", "deid end to end: faces | fps | stage ms per frame"]
    lines += [f"{r['faces']} | {r['fps']} | {r['stage_ms_per_frame']}"
              for r in report["deid_end_to_end"]]
    return "\n".join(lines)
