"""Measure the keyed de-identification model on LFW TEST-split faces; write a sample grid.

    python tools/eval/deid_metrics.py [--weights masquerade/models/weights] [--n 50]

For the first image of the first `n` TEST people (sorted by name; never seen in training):
* de-identification: G(M(z, f(p), d), E_attr(x)) with a per-face random password, d in
  {0.5, 1.0}; the fraction of outputs whose dlib distance to the original face is below
  0.6 (dlib's same-person threshold; lower is better) and the mean cos(E_id(out), target);
* reconstruction: G(z, E_attr(x)) against the crop x: PSNR, SSIM, dlib distance;
* swap: G(z of the next test face, E_attr(x)), a real and distant identity; the
  target_* entries say where a perfect generator would land.
Distances use the original's full-resolution 150x150 chip; `baseline_resize_distance` is
what the 96 px crop costs alone (original crop upsampled to 150 vs the full-res chip).
Reference identities f(p): the shipped library if present, else LFW train-person means
from the training cache. Grid: original | reconstruction | d=0.5 | d=1.0 for 8 faces.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from masquerade.alignment import ARCFACE_112, DLIB_CHIP, estimate_transforms, warp_faces
from masquerade.anonymizers.deid import CHIP, WEIGHTS_DIR, DeidGenerator
from masquerade.datasets import REPO_ROOT, is_train_person, lfw_root, load_rgb
from masquerade.keys.reference import ReferenceLibrary
from masquerade.keys.rotation import PrivacyCurve, rotate
from masquerade.models.dlib_resnet import FaceEncoder

log = logging.getLogger("deid_metrics")
THRESHOLD = 0.6


def library(cache: Path, size: int) -> ReferenceLibrary:
    try:
        return ReferenceLibrary.load()
    except FileNotFoundError:
        meta = np.load(cache / f"meta_{size}.npz")
        z = np.load(cache / f"embeddings_{size}.npy").astype(np.float64)
        names, inverse, counts = np.unique(meta["person"], return_inverse=True,
                                           return_counts=True)
        keep = [i for i, n in enumerate(names) if n and counts[i] >= 2]
        return ReferenceLibrary(np.stack([z[inverse == i].mean(0) for i in keep]))


def test_faces(n: int) -> list[Path]:
    root = lfw_root()
    people = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_train_person(p.name))
    return [sorted((root / p).glob("*.jpg"))[0] for p in people[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / "cache" / "deid")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "deid_metrics.json")
    parser.add_argument("--grid", type=Path, default=REPO_ROOT / "docs" / "deid_samples.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    gen = DeidGenerator(args.weights, threads=2)
    crop = gen.crop
    encoder = FaceEncoder(threads=2)
    lib = library(args.cache, crop.size)
    images = [load_rgb(p) for p in test_faces(args.n)]
    m_crop = estimate_transforms(ARCFACE_112[None], "arcface5", crop)[0]
    m_chip = estimate_transforms(ARCFACE_112[None], "arcface5", DLIB_CHIP)[0]
    x = np.stack([cv2.warpAffine(im, m_crop, (crop.size,) * 2, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE) for im in images])
    chips = np.concatenate([warp_faces(im, m_chip, DLIB_CHIP.size) for im in images])

    def up(faces: np.ndarray) -> np.ndarray:  # crop -> E_id chip, as in training
        return np.stack([cv2.resize(f, (CHIP, CHIP), interpolation=cv2.INTER_LINEAR)
                         for f in faces])

    z_orig = encoder(chips)  # the original person, full resolution
    z = encoder(up(x))  # what the generator is conditioned on
    rng = np.random.default_rng(args.seed)
    targets = np.stack([lib.target(rng.bytes(16)) for _ in images])

    def dist(a: np.ndarray) -> np.ndarray:
        return np.linalg.norm(a - z_orig, axis=1)

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    rec = gen(x, z)
    z_rec = encoder(up(rec))
    psnr = [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(x, rec, strict=True)]
    ssim = [structural_similarity(a, b, channel_axis=2, data_range=255)
            for a, b in zip(x, rec, strict=True)]
    result: dict[str, object] = {
        "faces": len(images), "crop": [crop.size, crop.padding],
        "baseline_resize_distance": float(dist(z).mean()),
        "reconstruction": {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)),
                           "dlib_distance": float(dist(z_rec).mean()),
                           "cos_to_own": float(cos(z_rec, z).mean()),
                           "same_person_rate": float((dist(z_rec) < THRESHOLD).mean())},
    }
    outputs = {}
    for d in (0.5, 1.0):
        z_new = rotate(z.astype(np.float64), targets, PrivacyCurve().angle(d)).astype(np.float32)
        out = gen(x, z_new)
        z_out = encoder(up(out))
        outputs[d] = out
        result[f"d={d}"] = {
            "same_person_rate": float((dist(z_out) < THRESHOLD).mean()),
            "dlib_distance": float(dist(z_out).mean()),
            "cos_to_target": float(cos(z_out, z_new).mean()),
            "l_id": float(1 - cos(z_out, z_new).mean()),
            "target_distance": float(dist(z_new).mean()),
            "target_same_person_rate": float((dist(z_new) < THRESHOLD).mean()),
        }
    # identity swap: another TEST person's descriptor (a real, distant identity)
    z_swap = np.roll(z, 1, axis=0)
    z_out = encoder(up(gen(x, z_swap)))
    result["swap"] = {
        "same_person_rate": float((dist(z_out) < THRESHOLD).mean()),
        "dlib_distance": float(dist(z_out).mean()),
        "cos_to_target": float(cos(z_out, z_swap).mean()),
        "l_id": float(1 - cos(z_out, z_swap).mean()),
        "target_distance": float(dist(z_swap).mean()),
        "target_same_person_rate": float((dist(z_swap) < THRESHOLD).mean()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info(json.dumps(result, indent=2))
    k = min(8, len(images))
    rows = [np.concatenate([x[i], rec[i], outputs[0.5][i], outputs[1.0][i]], 1) for i in range(k)]
    grid = np.concatenate(rows, 0)
    cv2.imwrite(str(args.grid), grid[:, :, ::-1])
    log.info("wrote %s and %s", args.out, args.grid)


if __name__ == "__main__":
    main()
