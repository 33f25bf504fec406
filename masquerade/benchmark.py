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
from pathlib import Path
from typing import Any

from masquerade import __version__
from masquerade.config import Config, config_to_dict
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
