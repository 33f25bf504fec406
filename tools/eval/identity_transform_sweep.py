"""Compare keyed identity transforms with the real generator: protection against recovery.

    python tools/eval/identity_transform_sweep.py [--n 50] [--out docs/identity_transforms.json]

For each transform setting (Cao et al.'s rotation; the orthogonal transform with several
axis counts, whitening powers and angles), on the first image of `n` LFW TEST people
(as tools/eval/deid_metrics.py), d = 1, random passwords A, B, C per face: how far M moves
the identity, how far the generator lands from what it was asked for (miss), how far
M^-1 of the fake's identity lands from the original (what restore starts from), and dlib's
verdicts: de-identified face still matched, A and B different people, restored with the
right key matched, restored with a wrong key matched. Distances are dlib's (0.6 = same
person), against the full-resolution chip of the original for the verdicts.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from deid_metrics import original_chips, probe_crops, test_people, upsampled_chips

from masquerade.anonymizers.deid import WEIGHTS_DIR, DeidGenerator
from masquerade.datasets import REPO_ROOT, load_rgb
from masquerade.keys.orthogonal import OrthogonalIdentityKey, load_axes
from masquerade.keys.rotation import IdentityKey, PrivacyCurve
from masquerade.models.dlib_resnet import FaceEncoder

log = logging.getLogger("identity_transform_sweep")
THRESHOLD = 0.6


def settings() -> list[tuple[str, object]]:
    axes, variances = load_axes()

    def orthogonal(dims: int, whitening: float, angle: float) -> tuple[str, object]:
        key = OrthogonalIdentityKey(curve=PrivacyCurve(angle),
                                    axes=(axes[:, :dims], variances[:dims]), whitening=whitening)
        return f"orthogonal k={dims} w={whitening} {angle:g} deg", key

    return [
        ("rotation 90 deg", IdentityKey(curve=PrivacyCurve(90.0))),
        ("rotation 120 deg", IdentityKey(curve=PrivacyCurve(120.0))),
        orthogonal(64, 0.25, 90.0),  # the default
        orthogonal(64, 0.0, 90.0),
        orthogonal(64, 0.5, 90.0),
        orthogonal(48, 0.25, 90.0),
        orthogonal(32, 0.25, 90.0),
        orthogonal(64, 0.25, 45.0),
        orthogonal(64, 0.25, 60.0),
        orthogonal(64, 0.25, 75.0),
        orthogonal(64, 0.25, 120.0),
        orthogonal(64, 0.25, 180.0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "identity_transforms.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    gen = DeidGenerator(args.weights, threads=2)
    encoder = FaceEncoder(threads=2)
    people = test_people(args.n)
    probes = [load_rgb(p[0]) for p in people]
    x = probe_crops(probes, gen.crop)
    z_orig = encoder(original_chips(probes))

    def embed(faces: np.ndarray) -> np.ndarray:
        return encoder(upsampled_chips(faces)).astype(np.float64)

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(a - b, axis=1)

    z = embed(x)
    rng = np.random.default_rng(args.seed)
    pw = {name: [rng.bytes(16) for _ in people] for name in "ABC"}
    rows = []
    for name, key in settings():
        z_a, z_b = key.apply(z, pw["A"], 1.0), key.apply(z, pw["B"], 1.0)  # type: ignore[attr-defined]
        y_a = gen(x, z_a.astype(np.float32))
        e_a, e_b = embed(y_a), embed(gen(x, z_b.astype(np.float32)))
        z_rec = key.invert(e_a, pw["A"], 1.0)  # type: ignore[attr-defined]
        z_wrong = key.invert(e_a, pw["C"], 1.0)  # type: ignore[attr-defined]
        e_r = embed(gen(y_a, z_rec.astype(np.float32)))
        e_w = embed(gen(y_a, z_wrong.astype(np.float32)))
        row = {
            "transform": name,
            "identity_moved": float(dist(z_a, z).mean()),
            "generator_miss": float(dist(e_a, z_a).mean()),
            "inverse_error": float(dist(z_rec, z).mean()),
            "still_matched": float((dist(e_a, z_orig) < THRESHOLD).mean()),
            "a_b_different": float((dist(e_a, e_b) >= THRESHOLD).mean()),
            "restored_matched": float((dist(e_r, z_orig) < THRESHOLD).mean()),
            "wrong_key_matched": float((dist(e_w, z_orig) < THRESHOLD).mean()),
        }
        rows.append(row)
        log.info("%-32s %s", name, "  ".join(f"{k} {v:.2f}" for k, v in row.items()
                                             if k != "transform"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"faces": len(people), "d": 1.0, "rows": rows}, indent=2)
                        + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
