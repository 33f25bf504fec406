"""Align the training faces into the de-identification crop and cache them as .npy.

    python tools/train/prepare_faces.py --size 96 [--out cache/deid]

UTKFace crops are only loosely aligned, so each gets dlib's HOG face detector and 5-point
landmark predictor; LFW112 faces are already on ArcFace's template, so one fixed similarity
maps them. Only LFW people in the TRAIN split (`datasets.is_train_person`) are read. Writes
faces_{size}.npy (N, S, S, 3) uint8, embeddings_{size}.npy (N, 128) float32 dlib descriptors
of the crops as the trainer sees them (crop -> 150 chip by `crop_to_chip`), and
meta_{size}.npz (source file, person: "" for UTKFace). The cache lives outside git.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from masquerade.alignment import ARCFACE_112, CropSpec, estimate_transforms
from masquerade.datasets import REPO_ROOT, data_root, is_train_person, lfw_root, load_rgb

log = logging.getLogger("prepare_faces")
DEFAULT_OUT = REPO_ROOT / "cache" / "deid"


def warp(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """Canonical crop; edges replicated so crops past the source image carry no black frame."""
    return cv2.warpAffine(image, transform, (size, size), flags=cv2.INTER_AREA
                          if transform[0, 0] < 0.5 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def align_utkface(paths: list[Path], crop: CropSpec) -> tuple[np.ndarray, list[str]]:
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    model = face_recognition_models.pose_predictor_five_point_model_location()
    predictor = dlib.shape_predictor(model)
    crops, kept = [], []
    t0 = time.monotonic()
    for i, path in enumerate(paths):
        image = load_rgb(path)
        rects = detector(image, 0) or detector(image, 1)
        if rects:
            rect = max(rects, key=lambda r: r.area())
            shape = predictor(image, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], float)
            m = estimate_transforms(points[None], "dlib5", crop)[0]
            crops.append(warp(image, m, crop.size))
            kept.append(str(path.relative_to(data_root())))
        if (i + 1) % 1000 == 0:
            log.info("utkface %d/%d, %d aligned, %.0f s", i + 1, len(paths), len(kept),
                     time.monotonic() - t0)
    return np.stack(crops), kept


def align_lfw_train(crop: CropSpec) -> tuple[np.ndarray, list[str], list[str]]:
    root = lfw_root()
    people = sorted(p.name for p in root.iterdir() if p.is_dir() and is_train_person(p.name))
    m = estimate_transforms(ARCFACE_112[None], "arcface5", crop)[0]
    crops, files, owners = [], [], []
    for person in people:
        for path in sorted((root / person).glob("*.jpg")):
            crops.append(warp(load_rgb(path), m, crop.size))
            files.append(str(path.relative_to(data_root())))
            owners.append(person)
    return np.stack(crops), files, owners


def embed(crops: np.ndarray, crop: CropSpec, batch: int = 64) -> np.ndarray:
    import torch

    from masquerade.models.deid import crop_to_chip
    from masquerade.models.dlib_resnet import DlibFaceResNet

    model = DlibFaceResNet.from_dlib()
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(crops[i:i + batch]).permute(0, 3, 1, 2).float()
            out.append(model(crop_to_chip(x, crop)).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--padding", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    crop = CropSpec(args.size, args.padding)
    lfw, lfw_files, owners = align_lfw_train(crop)
    log.info("LFW train split: %d faces of %d people", len(lfw), len(set(owners)))
    utk_paths = sorted((data_root() / "faces" / "utkface").glob("*.jpg"))
    utk, utk_files = align_utkface(utk_paths, crop)
    log.info("UTKFace: %d of %d faces aligned", len(utk), len(utk_paths))
    faces = np.concatenate([lfw, utk])
    emb = embed(faces, crop)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / f"faces_{args.size}.npy", faces)
    np.save(args.out / f"embeddings_{args.size}.npy", emb.astype(np.float32))
    np.savez(args.out / f"meta_{args.size}.npz", files=np.array(lfw_files + utk_files),
             person=np.array(owners + [""] * len(utk_files)), padding=args.padding)
    log.info("wrote %d faces to %s", len(faces), args.out)


if __name__ == "__main__":
    main()
