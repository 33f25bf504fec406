"""Benchmark the file pipeline on a generated 720p clip for each shipped preset.

Writes one JSON with the machine, per-stage ms/frame, fps and the ratio to the
decode+encode floor, so figures are comparable only with the machine they came from.

    python tools/bench/pipeline.py --out bench-results.json [--frames 150]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from masquerade.benchmark import run_benchmark
from masquerade.config import load_config

ROOT = Path(__file__).resolve().parents[2]
PRESETS = {"default": None, "fast": ROOT / "configs" / "fast.yaml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--input", help="video to use instead of the generated clip")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = {}
    for name, path in PRESETS.items():
        for mode in ("blur", "pixelate"):
            config = load_config(path, [f"anonymizer.mode={mode}"])
            report = run_benchmark(args.input, config, frames=args.frames)
            results[f"{name}/{mode}"] = report
            logging.info("%s/%s: %.1f fps, %.2fx the codec floor", name, mode,
                         report["pipeline"]["fps"], report["overhead_ratio"])
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
