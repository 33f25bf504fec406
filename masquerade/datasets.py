"""Where the shared face data lives, and readers for the LFW layout used in evaluation.

Data is never stored in the repository: MASQUERADE_DATA points at it, defaulting to
`../shared/data` beside the repository root (a relative MASQUERADE_DATA is taken relative
to the repository root too, so tools and tests find it from any working directory).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    path = Path(os.environ.get("MASQUERADE_DATA", "../shared/data")).expanduser()
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def lfw_root() -> Path:
    """LFW faces aligned to ArcFace's 112x112 template: PERSON/PERSON_NNNN.jpg, pairs.txt."""
    return data_root() / "faces" / "lfw112"


def lfw_image_path(name: str, index: int, root: Path | None = None) -> Path:
    return (root or lfw_root()) / name / f"{name}_{index:04d}.jpg"


def load_rgb(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(path)
    return np.ascontiguousarray(image[:, :, ::-1])


@dataclass(frozen=True)
class LfwPair:
    fold: int
    a: tuple[str, int]
    b: tuple[str, int]
    same: bool


def read_lfw_pairs(path: Path | None = None) -> list[LfwPair]:
    """The standard protocol file: a `folds n` header, then n same and n different pairs
    per fold ("name i j" or "name1 i name2 j")."""
    lines = (path or lfw_root() / "pairs.txt").read_text().split("\n")
    folds, per_fold = (int(v) for v in lines[0].split())
    pairs: list[LfwPair] = []
    rows = [line.split() for line in lines[1:] if line.strip()]
    if len(rows) != folds * 2 * per_fold:
        raise ValueError(f"pairs.txt has {len(rows)} pairs, header says {folds * 2 * per_fold}")
    for i, row in enumerate(rows):
        fold = i // (2 * per_fold)
        if len(row) == 3:
            pairs.append(LfwPair(fold, (row[0], int(row[1])), (row[0], int(row[2])), True))
        else:
            pairs.append(LfwPair(fold, (row[0], int(row[1])), (row[2], int(row[3])), False))
    return pairs


def is_train_person(name: str) -> bool:
    """The identity split by person: TRAIN when SHA-256(name)'s first byte is below 128.

    TRAIN people may feed the reference identity library; evaluations use TEST people.
    """
    return hashlib.sha256(name.encode("utf-8")).digest()[0] < 128
