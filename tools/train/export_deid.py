"""Export a trained de-identification checkpoint for deployment.

    python tools/train/export_deid.py [--checkpoint cache/deid/run/best.pt]
                                      [--out masquerade/models/weights]

Writes deid_{size}.pt (E_attr + G weights in fp16 with their config, loadable by
`DeidNet.load`) and deid_attr.onnx / deid_generator.onnx (fp16 weights cast to float32
in-graph, dynamic batch) that `anonymizers.deid.DeidGenerator` runs, and reports the
ONNX-vs-PyTorch max abs difference on a random batch.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from masquerade.datasets import REPO_ROOT
from masquerade.models.deid import DeidNet, export_onnx

log = logging.getLogger("export_deid")


def onnx_parity(net: DeidNet, enc_path: Path, gen_path: Path, n: int = 3) -> float:
    """Max abs difference in [-1, 1] units between ONNX Runtime and PyTorch outputs."""
    torch.manual_seed(0)
    size = net.cfg.size
    x = torch.rand(n, 3, size, size) * 2 - 1
    z = torch.randn(n, net.cfg.id_dim)
    enc = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    gen = ort.InferenceSession(str(gen_path), providers=["CPUExecutionProvider"])
    attrs = enc.run(None, {"faces": x.numpy()})
    names = [o.name for o in enc.get_outputs()]
    out = gen.run(None, {"identity": z.numpy(), **dict(zip(names, attrs, strict=True))})[0]
    with torch.no_grad():
        ref = net(x, z).numpy()
    return float(np.abs(out - ref).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "cache/deid/run/best.pt")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "masquerade/models/weights")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    net = DeidNet.load(args.checkpoint)
    # fp16 weights are what ships: export the graphs from the rounded weights, so the
    # .pt and the .onnx files describe the same network
    net.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                         for k, v in net.state_dict().items()})
    pt = net.save_weights(args.out / f"deid_{net.cfg.size}.pt", step=state.get("step"))
    enc_path, gen_path = export_onnx(net, args.out, half=True)
    diff = onnx_parity(net, enc_path, gen_path)
    sizes = {p.name: p.stat().st_size for p in (pt, enc_path, gen_path)}
    log.info(json.dumps({"step": state.get("step"), "onnx_max_abs_diff": diff, "bytes": sizes}))


if __name__ == "__main__":
    main()
