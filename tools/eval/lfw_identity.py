"""LFW verification with the PyTorch port of dlib's face encoder vs dlib itself.

    python tools/eval/lfw_identity.py --out out/identity/lfw_identity.json

The LFW112 crops are ArcFace-aligned, 112x112. Two ways to make dlib's 150x150 chip:
  predictor: dlib's frontal detector and 5-point predictor on a 2x upscaled copy, points
             mapped back to the 112 image, chip warped from it (dlib's own pipeline);
  arcface:   one fixed similarity from ArcFace's template to dlib's chip frame
             (alignment.ARCFACE_TO_UNIT, eye centres onto eye centres).
For each method, embeds every LFW image with the port (cached for the reference library
and the rotation tables) and every image in pairs.txt with dlib, then reports port/dlib
parity over all those faces and 10-fold accuracy at dlib's threshold 0.6 and at the best
threshold (chosen on the nine other folds, and the per-fold oracle).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import cv2
import dlib
import face_recognition_models
import numpy as np

from masquerade.alignment import ARCFACE_112, estimate_transforms, warp_faces
from masquerade.datasets import LfwPair, lfw_image_path, lfw_root, load_rgb, read_lfw_pairs
from masquerade.models.dlib_resnet import FaceEncoder, default_model_path

log = logging.getLogger("lfw_identity")
UPSCALE = 2


class PredictorAligner:
    """dlib's detector + 5-point predictor on an upscaled LFW112 crop -> dlib5 keypoints."""

    def __init__(self) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(
            face_recognition_models.pose_predictor_five_point_model_location()
        )
        self.misses = 0
        # fallback box: where the face sits in every ArcFace-aligned crop
        lo = ARCFACE_112.min(0) - np.array([18, 30])
        hi = ARCFACE_112.max(0) + np.array([18, 14])
        self.fallback = dlib.rectangle(*(int(v * UPSCALE) for v in (*lo, *hi)))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        big = cv2.resize(image, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
        found = self.detector(big, 0)
        if found:
            rect = max(found, key=lambda r: r.area())
        else:
            self.misses += 1
            rect = self.fallback
        shape = self.predictor(big, rect)
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        return (pts + 0.5) / UPSCALE - 0.5  # pixel centres back in the 112 image


def chips_for(paths: list[Path], method: str, aligner: PredictorAligner | None) -> np.ndarray:
    fixed = estimate_transforms(ARCFACE_112[None], "arcface5")
    out = np.empty((len(paths), 150, 150, 3), np.uint8)
    for i, path in enumerate(paths):
        image = load_rgb(path)
        if method == "arcface":
            m = fixed
        else:
            assert aligner is not None
            m = estimate_transforms(aligner(image)[None], "dlib5")
        out[i] = warp_faces(image, m, 150)[0]
    return out


def embed_all(paths: list[Path], need_dlib: np.ndarray, method: str, chunk: int = 256
              ) -> tuple[np.ndarray, np.ndarray, dict]:
    encoder = FaceEncoder()
    ref = dlib.face_recognition_model_v1(str(default_model_path()))
    aligner = PredictorAligner() if method == "predictor" else None
    port = np.zeros((len(paths), 128), np.float32)
    theirs = np.full((len(paths), 128), np.nan, np.float32)
    t_port = t_dlib = 0.0
    for start in range(0, len(paths), chunk):
        idx = np.arange(start, min(start + chunk, len(paths)))
        chips = chips_for([paths[i] for i in idx], method, aligner)
        t0 = time.perf_counter()
        port[idx] = encoder(chips)
        t1 = time.perf_counter()
        sel = idx[need_dlib[idx]]
        if len(sel):
            theirs[sel] = np.array(ref.compute_face_descriptor(list(chips[sel - start])))
        t_port += t1 - t0
        t_dlib += time.perf_counter() - t1
        log.info("%s: %d/%d faces", method, idx[-1] + 1, len(paths))
    info = {"port_seconds": t_port, "dlib_seconds": t_dlib,
            "detector_misses": aligner.misses if aligner else 0}
    return port, theirs, info


def fold_accuracy(dist: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    """10-fold accuracy at 0.6, at a threshold chosen on the other folds, and the oracle."""
    candidates = np.unique(np.concatenate([dist, [0.6]]))

    def acc(mask: np.ndarray, thr: np.ndarray) -> np.ndarray:
        return ((dist[mask, None] < thr[None]) == same[mask, None]).mean(0)

    fixed, crossval, oracle, thresholds = [], [], [], []
    for f in np.unique(folds):
        test = folds == f
        fixed.append(float(acc(test, np.array([0.6]))[0]))
        train_acc = acc(~test, candidates)
        best = candidates[np.flatnonzero(train_acc == train_acc.max())]
        thr = float(np.median(best))
        thresholds.append(thr)
        crossval.append(float(acc(test, np.array([thr]))[0]))
        oracle.append(float(acc(test, candidates).max()))

    def summary(v: list[float]) -> dict:
        return {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v}

    return {"threshold_0.6": summary(fixed), "best_threshold_crossval": summary(crossval),
            "best_threshold_oracle_per_fold": summary(oracle), "crossval_thresholds": thresholds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/identity/lfw_identity.json"))
    parser.add_argument("--cache", type=Path, default=Path("out/identity/cache"))
    parser.add_argument("--methods", default="arcface,predictor")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    root = lfw_root()
    pairs: list[LfwPair] = read_lfw_pairs()
    paths = sorted(root.glob("*/*.jpg"))
    index = {p: i for i, p in enumerate(paths)}
    pair_idx = np.array([[index[lfw_image_path(*p.a, root)], index[lfw_image_path(*p.b, root)]]
                         for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    need_dlib = np.zeros(len(paths), bool)
    need_dlib[pair_idx.ravel()] = True
    args.cache.mkdir(parents=True, exist_ok=True)
    report: dict = {"images": len(paths), "pairs": len(pairs), "methods": {}}
    for method in args.methods.split(","):
        cache = args.cache / f"lfw_{method}.npz"
        if cache.is_file():
            data = np.load(cache, allow_pickle=False)
            port, theirs, info = data["port"], data["dlib"], json.loads(str(data["info"]))
        else:
            port, theirs, info = embed_all(paths, need_dlib, method)
            names = np.array([str(p.relative_to(root)) for p in paths])
            np.savez(cache, port=port, dlib=theirs, paths=names, info=json.dumps(info))
        both = ~np.isnan(theirs).any(1)
        diff = np.abs(port[both] - theirs[both])
        result = {
            "parity": {"faces": int(both.sum()), "max_abs_diff": float(diff.max()),
                       "mean_abs_diff": float(diff.mean())},
            "timing": info,
        }
        for name, emb in (("port", port), ("dlib", theirs)):
            dist = np.linalg.norm(emb[pair_idx[:, 0]] - emb[pair_idx[:, 1]], axis=1)
            result[name] = fold_accuracy(dist, same, folds)
        report["methods"][method] = result
        log.info("%s: parity %.2e over %d faces; acc@0.6 port %.4f dlib %.4f", method,
                 diff.max(), both.sum(), result["port"]["threshold_0.6"]["mean"],
                 result["dlib"]["threshold_0.6"]["mean"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
