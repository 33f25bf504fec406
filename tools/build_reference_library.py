"""Build masquerade/keys/reference_identities.npy: mean dlib descriptors of LFW train people.

    python tools/build_reference_library.py [--cache out/identity/cache/lfw_arcface.npz]

Split by person, never by image: a person is in TRAIN when the first byte of
SHA-256(name) is below 128 (`datasets.is_train_person`), so evaluation faces (TEST people) never
contribute to any password's synthetic identity. Of the TRAIN people with at least
MIN_IMAGES images, the first MAX_PEOPLE by sorted name are kept; each row is the mean of
that person's descriptors (port of dlib's encoder on 150x150 chips made with the fixed
ArcFace-to-dlib similarity), stored as float16. Reuses the embeddings cached by
tools/eval/lfw_identity.py when present, else embeds the train images itself.

Also writes identity_axes.npz beside it: the library's top principal axes and variances, the
frame of the orthogonal identity transform (`keys.orthogonal`). `--axes-only` rebuilds just
that file from the shipped library (no LFW needed).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from masquerade.alignment import ARCFACE_112, estimate_transforms, warp_faces
from masquerade.datasets import REPO_ROOT, is_train_person, lfw_root, load_rgb

log = logging.getLogger("build_reference_library")
MIN_IMAGES = 2
MAX_PEOPLE = 512
OUT = REPO_ROOT / "masquerade" / "keys" / "reference_identities.npy"


def write_axes(library_file: Path) -> Path:
    from masquerade.keys.orthogonal import AXES_FILE, principal_axes

    axes, variances = principal_axes(np.load(library_file).astype(np.float64))
    out = library_file.parent / AXES_FILE
    np.savez(out, axes=axes, variances=variances)
    log.info("wrote %s: %d axes, %.1f%% of the library's variance", out, axes.shape[1],
             100 * variances.sum() / np.load(library_file).astype(np.float64).var(0, ddof=1).sum())
    return out


def embed(paths: list[Path]) -> np.ndarray:
    from masquerade.models.dlib_resnet import FaceEncoder

    encoder = FaceEncoder()
    m = estimate_transforms(ARCFACE_112[None], "arcface5")
    out = []
    for start in range(0, len(paths), 256):
        chips = np.concatenate([warp_faces(load_rgb(p), m, 150) for p in paths[start:start + 256]])
        out.append(encoder(chips))
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("out/identity/cache/lfw_arcface.npz"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--axes-only", action="store_true",
                        help="only rebuild identity_axes.npz from the library at --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.axes_only:
        write_axes(args.out)
        return
    root = lfw_root()
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    counts = {n: len(list((root / n).glob("*.jpg"))) for n in people}
    chosen = [n for n in people if is_train_person(n) and counts[n] >= MIN_IMAGES][:MAX_PEOPLE]
    paths = [p for n in chosen for p in sorted((root / n).glob("*.jpg"))]
    if args.cache.is_file():
        data = np.load(args.cache)
        row = {name: i for i, name in enumerate(data["paths"])}
        emb = data["port"][[row[str(p.relative_to(root))] for p in paths]]
        log.info("using cached embeddings from %s", args.cache)
    else:
        emb = embed(paths)
    owner = np.array([p.parent.name for p in paths])
    library = np.stack([emb[owner == n].mean(0) for n in chosen]).astype(np.float16)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, library)
    stats = {
        "people_total": len(people), "train_people": sum(map(is_train_person, people)),
        "library_people": len(chosen), "images": len(paths), "shape": list(library.shape),
        "dtype": str(library.dtype), "bytes": args.out.stat().st_size,
    }
    log.info(json.dumps(stats))
    write_axes(args.out)


if __name__ == "__main__":
    main()
