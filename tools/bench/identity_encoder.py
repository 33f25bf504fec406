"""Milliseconds per face for dlib's face encoder, the PyTorch port, and ONNX Runtime.

    python tools/bench/identity_encoder.py --out out/identity/bench_identity_encoder.json

Batch 1 and 16 on 150x150 chips, all threads the machine has (torch/ORT defaults, dlib
as built); median and best of several timed runs after a warm-up, with the load average
recorded (other jobs on a shared machine inflate the medians).
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

import dlib
import numpy as np
import torch

from masquerade.models.dlib_resnet import FaceEncoder, default_model_path, export_onnx
from masquerade.models.onnx_encoder import OnnxFaceEncoder

log = logging.getLogger("bench_identity_encoder")


def ms_per_face(
    fn: Callable[[np.ndarray], object], chips: np.ndarray, repeats: int
) -> dict[str, float]:
    """Median and best of `repeats` timed calls; on a shared machine the best is the
    closer estimate of the engine's own cost."""
    fn(chips)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(chips)
        times.append(time.perf_counter() - t0)
    per_face = 1000 / len(chips)
    return {"median": statistics.median(times) * per_face, "best": min(times) * per_face}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path,
                        default=Path("out/identity/bench_identity_encoder.json"))
    parser.add_argument("--onnx", type=Path, default=Path("out/identity/dlib_resnet.onnx"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and ONNX Runtime threads (0: their defaults)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.onnx.is_file():
        export_onnx(args.onnx)
    ref = dlib.face_recognition_model_v1(str(default_model_path()))
    port = FaceEncoder(threads=args.threads or None)
    ort_enc = OnnxFaceEncoder(args.onnx, threads=args.threads or None)
    engines: dict[str, Callable[[np.ndarray], object]] = {
        "dlib": lambda c: ref.compute_face_descriptor(list(c)) if len(c) > 1
        else ref.compute_face_descriptor(c[0]),
        "pytorch": lambda c: port(c, batch_size=len(c)),
        "onnxruntime": lambda c: ort_enc(c, batch_size=len(c)),
    }
    chips = np.random.default_rng(0).integers(0, 256, (16, 150, 150, 3), dtype=np.uint8)
    load_before = os.getloadavg()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, fn in engines.items():
        results[name] = {}
        for batch in (1, 16):
            repeats = args.repeats if batch == 16 else 4 * args.repeats
            results[name][f"batch_{batch}_ms_per_face"] = ms_per_face(fn, chips[:batch], repeats)
        log.info("%s: %s", name, results[name])
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "ort_threads": args.threads or "default",
                    "torch": torch.__version__, "dlib": dlib.__version__,
                    "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]]},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
