"""Export dlib's face recognition net (rebuilt in PyTorch) to ONNX and check it against dlib.

    python tools/export_identity_onnx.py --out out/identity/dlib_resnet.onnx --faces 256

Weights are read from the shipped .dat at export time; the .onnx is a build output, never
committed. The check runs ONNX Runtime, the PyTorch port and dlib on `--faces` real LFW
chips (fixed ArcFace-to-dlib framing; random chips when the shared data is absent) and
writes the max abs differences and the opset to <out>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import dlib
import numpy as np

from masquerade.alignment import ARCFACE_112, estimate_transforms, warp_faces
from masquerade.datasets import lfw_root, load_rgb
from masquerade.models.dlib_resnet import (
    ONNX_OPSET,
    FaceEncoder,
    default_model_path,
    export_onnx,
)
from masquerade.models.onnx_encoder import OnnxFaceEncoder

log = logging.getLogger("export_identity_onnx")


def check_chips(n: int) -> tuple[np.ndarray, str]:
    paths = sorted(lfw_root().glob("*/*.jpg"))
    if len(paths) < n:
        chips = np.random.default_rng(0).integers(0, 256, (n, 150, 150, 3), dtype=np.uint8)
        return chips, "random"
    m = estimate_transforms(ARCFACE_112[None], "arcface5")
    pick = np.linspace(0, len(paths) - 1, n).astype(int)
    return np.concatenate([warp_faces(load_rgb(paths[i]), m, 150) for i in pick]), "lfw112"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/identity/dlib_resnet.onnx"))
    parser.add_argument("--model", type=Path, default=None, help="dlib .dat (default: shipped)")
    parser.add_argument("--opset", type=int, default=ONNX_OPSET)
    parser.add_argument("--faces", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = export_onnx(args.out, args.model, args.opset)
    chips, source = check_chips(args.faces)
    ref_model = dlib.face_recognition_model_v1(str(args.model or default_model_path()))
    ref = np.array(ref_model.compute_face_descriptor(list(chips)))
    onnx_out = OnnxFaceEncoder(path)(chips, batch_size=16)
    torch_out = FaceEncoder(args.model)(chips, batch_size=16)
    report = {
        "onnx": str(path), "opset": args.opset, "faces": len(chips), "chips": source,
        "onnxruntime_max_abs_diff_vs_dlib": float(np.abs(onnx_out - ref).max()),
        "pytorch_max_abs_diff_vs_dlib": float(np.abs(torch_out - ref).max()),
        "onnxruntime_max_abs_diff_vs_pytorch": float(np.abs(onnx_out - torch_out).max()),
    }
    path.with_suffix(".json").write_text(json.dumps(report, indent=2))
    log.info(json.dumps(report))


if __name__ == "__main__":
    main()
