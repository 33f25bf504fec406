"""Measure sealed originals on real clips: size overhead, CPU per frame, restore speed.

For each clip, the first `--frames` frames (packets copied, not re-encoded) are
anonymized with `anonymizer.seal_originals`, then the seal store is verified and the
video restored exactly, once re-encoded (H.264 as configured) and once losslessly.
Figures depend on the machine and on how many faces the clip has; the README quotes
the ones from this script.

    nice python tools/bench/seals.py --frames 150 --out seals-bench.json \
        interview_talking_head.mp4 stage_group_360p.mp4
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import av

from masquerade.config import load_config
from masquerade.datasets import data_root
from masquerade.keys import SecretKey
from masquerade.pipeline.exact_restore import restore_exact
from masquerade.pipeline.runner import run_file
from masquerade.seals.format import seals_path
from masquerade.seals.keyring import MasterKeys
from masquerade.seals.reader import open_store

log = logging.getLogger("seals-bench")


def first_frames(source: Path, target: Path, frames: int) -> Path:
    """The first `frames` video packets of `source`, copied as they are."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        taken = 0
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            if taken >= frames:
                break
            packet.stream = stream
            out.mux(packet)
            taken += 1
    return target


def measure(clip: Path, frames: int, folder: Path, overrides: list[str]) -> dict:
    source = first_frames(clip, folder / f"{clip.stem}.in.mp4", frames)
    config = load_config(overrides=["anonymizer.seal_originals=true", "pipeline.progress=false",
                                    *overrides])
    key = SecretKey.generate()
    out = folder / f"{clip.stem}.anon.mp4"
    run = run_file(str(source), out, config, key=key, stream_id=clip.stem)
    video_bytes, seal_bytes = out.stat().st_size, seals_path(out).stat().st_size
    store = open_store(out)
    start = time.perf_counter()
    store.verify(MasterKeys(key), sorted(store.tracks))
    verify_s = time.perf_counter() - start
    restored = {}
    for name, lossless, suffix in (("reencode", False, ".mp4"), ("lossless", True, ".mkv")):
        start = time.perf_counter()
        result = restore_exact(str(out), folder / f"{clip.stem}.{name}{suffix}", config,
                               MasterKeys(key), lossless=lossless)
        took = time.perf_counter() - start
        restored[name] = {"seconds": round(took, 2),
                          "fps": round(result.stats.frames_out / took, 1),
                          "bytes": result.output.stat().st_size}
    stats = run.stats
    return {
        "clip": clip.name, "frames": stats.frames_out,
        "size": f"{store.width}x{store.height}", "tracks": len(store.tracks),
        "sealed_regions": store.record_count,
        "video_bytes": video_bytes, "seal_bytes": seal_bytes,
        "overhead_percent": round(100 * seal_bytes / video_bytes, 1),
        "seal_bytes_per_region": round(seal_bytes / max(1, store.record_count)),
        "seal_ms_per_frame": stats.sealed["ms_per_frame"] if stats.sealed else None,
        "pipeline_ms_per_frame": round(1000 * stats.wall_seconds / stats.frames_out, 1),
        "verify_ms_per_frame": round(1000 * verify_s / stats.frames_out, 2),
        "restore": restored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", help="file names in $MASQUERADE_DATA/video, or paths")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.clips:
            clip = Path(name) if Path(name).is_file() else data_root() / "video" / name
            result = measure(clip, args.frames, Path(tmp), args.overrides)
            log.info("%s", json.dumps(result))
            results.append(result)
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
