"""Export dlib's face recognition net (rebuilt in PyTorch) to ONNX and check it against dlib.

    python tools/export_identity_onnx.py --out out/identity/dlib_resnet.onnx

Weights are read from the shipped .dat at export time; the .onnx is a build output, never
committed. Prints the opset and the max abs difference to dlib on a few chips.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import dlib
import numpy as np

from masquerade.models.dlib_resnet import ONNX_OPSET, default_model_path, export_onnx
from masquerade.models.onnx_encoder import OnnxFaceEncoder

log = logging.getLogger("export_identity_onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/identity/dlib_resnet.onnx"))
    parser.add_argument("--model", type=Path, default=None, help="dlib .dat (default: shipped)")
    parser.add_argument("--opset", type=int, default=ONNX_OPSET)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = export_onnx(args.out, args.model, args.opset)
    chips = np.random.default_rng(0).integers(0, 256, (4, 150, 150, 3), dtype=np.uint8)
    ours = OnnxFaceEncoder(path)(chips)
    ref_model = dlib.face_recognition_model_v1(str(args.model or default_model_path()))
    ref = np.stack([np.array(ref_model.compute_face_descriptor(c)) for c in chips])
    diff = float(np.abs(ours - ref).max())
    log.info(json.dumps({"onnx": str(path), "opset": args.opset, "max_abs_diff_vs_dlib": diff}))


if __name__ == "__main__":
    main()
