"""Pack the prepared training faces small enough to travel to a GPU machine, and unpack them.

    python tools/train/pack_faces.py pack [--size 96] [--cache cache/deid] [--out .pack]
    python tools/train/pack_faces.py unpack .pack [--size 96] [--cache /tmp/deid-cache]

A lent GPU machine gets ten minutes at a time and a copy of the working tree of at most
64 MiB, with no dlib, no shared data and no network. `pack` turns the cache of
tools/train/prepare_faces.py (N x S x S x 3 uint8 crops, ~380 MB at 96 px) into JPEG
bytes (quality 92: training targets, not evaluation images) plus the dlib descriptors and
names, and stores E_id (dlib's ResNet, converted to PyTorch) as fp16 weights, so a burst
needs neither dlib nor face-recognition-models. `unpack` writes the cache files back.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

import cv2
import numpy as np

from masquerade.datasets import REPO_ROOT

log = logging.getLogger("pack_faces")
QUALITY = 92
E_ID_FILE = "e_id.pt"


def pack(cache: Path, out: Path, size: int) -> None:
    import torch

    from masquerade.models.dlib_resnet import DlibFaceResNet

    faces = np.load(cache / f"faces_{size}.npy", mmap_mode="r")
    blobs = []
    for face in faces:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(face[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        if not ok:
            raise SystemExit("JPEG encoding failed")
        blobs.append(buf.ravel())
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    meta = np.load(cache / f"meta_{size}.npz")
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"faces_{size}.npz", jpeg=np.concatenate(blobs), offsets=offsets,
             embeddings=np.load(cache / f"embeddings_{size}.npy"),
             **{k: meta[k] for k in meta.files})
    e_id = DlibFaceResNet.from_dlib()
    torch.save({k: v.half() for k, v in e_id.state_dict().items()}, out / E_ID_FILE)
    log.info("packed %d faces into %s (%.1f MB) and E_id (%.1f MB)", len(faces), out,
             (out / f"faces_{size}.npz").stat().st_size / 1e6,
             (out / E_ID_FILE).stat().st_size / 1e6)


def unpack(packed: Path, cache: Path, size: int) -> None:
    data = np.load(packed / f"faces_{size}.npz")
    jpeg, offsets = data["jpeg"], data["offsets"]
    faces = np.stack([
        cv2.imdecode(jpeg[a:b], cv2.IMREAD_COLOR)[:, :, ::-1]
        for a, b in itertools.pairwise(offsets)])
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / f"faces_{size}.npy", faces)
    np.save(cache / f"embeddings_{size}.npy", data["embeddings"])
    meta_keys = [k for k in data.files if k not in ("jpeg", "offsets", "embeddings")]
    np.savez(cache / f"meta_{size}.npz", **{k: data[k] for k in meta_keys})
    log.info("unpacked %d faces into %s", len(faces), cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("packed", nargs="?", type=Path, default=REPO_ROOT / ".pack")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.action == "pack":
        pack(args.cache or REPO_ROOT / "cache" / "deid", args.packed, args.size)
    else:
        unpack(args.packed, args.cache or Path("/tmp/deid-cache"), args.size)


if __name__ == "__main__":
    main()
