"""ms per face of the de-identification networks: PyTorch vs ONNX Runtime, batch 1/4/16.

Also the batching gain (one batch of N faces vs N calls of one face) measured in the
same run, and the machine and its load, since figures only compare on one machine.

    python tools/bench/deid_models.py [--weights masquerade/models/weights] --out deid_bench.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from masquerade.anonymizers.deid import WEIGHTS_DIR, DeidGenerator
from masquerade.models.deid import DeidNet

log = logging.getLogger("bench_deid_models")


def best_and_median(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("deid_bench.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    onnx = DeidGenerator(args.weights, threads=args.threads)
    (pt_path,) = sorted(args.weights.glob("deid_*.pt"))
    net = DeidNet.load(pt_path)
    size = onnx.crop.size
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 4, 16):
        crops = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        z = rng.normal(size=(batch, 128)).astype(np.float32)
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
        zt = torch.from_numpy(z)

        def torch_call(x=x, zt=zt) -> None:
            with torch.inference_mode():
                net(x, zt)

        ort_best, ort_med = best_and_median(lambda c=crops, zz=z: onnx(c, zz), args.repeats)
        pt_best, pt_med = best_and_median(torch_call, args.repeats)
        one_best, _ = best_and_median(
            lambda c=crops, zz=z: [onnx(c[i:i + 1], zz[i:i + 1]) for i in range(len(c))],
            args.repeats)
        rows.append({
            "batch": batch,
            "onnxruntime_ms_per_face": round(1000 * ort_best / batch, 2),
            "onnxruntime_ms_per_face_median": round(1000 * ort_med / batch, 2),
            "torch_ms_per_face": round(1000 * pt_best / batch, 2),
            "torch_ms_per_face_median": round(1000 * pt_med / batch, 2),
            "onnxruntime_speedup_over_torch": round(pt_best / ort_best, 2),
            "batching_speedup_over_single_calls": round(one_best / ort_best, 2),
        })
        log.info("%s", rows[-1])
    report = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "load_avg_1m": os.getloadavg()[0]},
              "threads": args.threads, "crop": size, "rows": rows}
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
