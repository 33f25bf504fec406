"""How far the keyed transform M(z, p, d) moves real faces, in dlib's distance, per level d.

    python tools/eval/identity_rotation.py --out out/identity/identity_rotation.json

Faces: LFW people of the TEST split (masquerade.datasets.is_train_person is False), so
none of them is in the reference library. Descriptors: the PyTorch port on chips made with
the fixed ArcFace-to-dlib similarity (cached by tools/eval/lfw_identity.py). Each face gets
its own password, derived like a track's (master -> stream "lfw-eval" -> track i). For each
d in 0.1..1.0 the table gives the Euclidean (dlib) distance between z and M(z): what a
generator must reach for the face to carry the new identity. dlib's same-person threshold
is 0.6. The rotation is about the library mean c, as IdentityKey does (the same transform
about dlib's origin is reported for comparison). Also reported: the distance left to the
target c + |z - c| f(p), the distance between two passwords' outputs for the same face,
the angle actually applied, and the round-trip error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from masquerade.datasets import is_train_person
from masquerade.keys.hkdf import stream_password, track_password
from masquerade.keys.rotation import (
    IdentityKey,
    PrivacyCurve,
    applied_angle,
    rotate,
    unrotate,
)

log = logging.getLogger("identity_rotation")


def angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a_hat = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b_hat = b / np.linalg.norm(b, axis=-1, keepdims=True)
    cos = (a_hat * b_hat).sum(-1)
    return np.arctan2(np.linalg.norm(a_hat - cos[:, None] * b_hat, axis=-1), cos)


def stats(v: np.ndarray) -> dict[str, float]:
    q = np.percentile(v, [5, 50, 95])
    return {"mean": float(v.mean()), "p5": float(q[0]), "median": float(q[1]),
            "p95": float(q[2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("out/identity/cache/lfw_arcface.npz"))
    parser.add_argument("--out", type=Path, default=Path("out/identity/identity_rotation.json"))
    parser.add_argument("--faces", type=int, default=2000)
    parser.add_argument("--max-angle", type=float, default=PrivacyCurve().max_angle_deg,
                        help="g(1) in degrees (PrivacyCurve.max_angle_deg)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = np.load(args.cache)
    names = [Path(p).parent.name for p in data["paths"]]
    test = np.array([not is_train_person(n) for n in names])
    z_all = data["port"][test].astype(np.float64)
    pick = np.random.default_rng(0).permutation(len(z_all))[: args.faces]
    z = z_all[pick]
    master = hashlib.sha256(b"masquerade identity_rotation eval").digest()
    stream = stream_password(master, "lfw-eval")
    key = IdentityKey(curve=PrivacyCurve(args.max_angle))
    targets = np.stack([key.target(track_password(stream, i)) for i in range(len(z))])
    others = np.stack([key.target(track_password(stream, i, epoch=1)) for i in range(len(z))])
    centre = key.centre
    zc = z - centre  # IdentityKey rotates about the centre of face space
    alpha = angle(zc, targets)
    norms = np.linalg.norm(zc, axis=1)
    table = []
    for d in np.round(np.arange(0.1, 1.01, 0.1), 2):
        g = float(key.curve.angle(d))
        z_new = centre + rotate(zc, targets, g)
        z_other = centre + rotate(zc, others, g)
        dist = np.linalg.norm(z_new - z, axis=1)
        row = {
            "d": float(d), "nominal_angle_deg": float(np.degrees(g)),
            "applied_angle_deg": stats(np.degrees(applied_angle(alpha, g))),
            "dist_z_to_Mz": stats(dist),
            "frac_dist_above_0.6": float((dist > 0.6).mean()),
            "dist_Mz_to_target": stats(
                np.linalg.norm(z_new - centre - norms[:, None] * targets, axis=1)),
            "dist_between_two_passwords": stats(np.linalg.norm(z_new - z_other, axis=1)),
            "round_trip_max_abs_err": float(
                np.abs(centre + unrotate(z_new - centre, targets, g) - z).max()),
        }
        table.append(row)
        log.info("d=%.1f g=%5.1f deg  dist(z, M z) median %.3f  >0.6: %.1f%%", d,
                 np.degrees(g), row["dist_z_to_Mz"]["median"], 100 * row["frac_dist_above_0.6"])
    # the same transform about dlib's origin instead of the centre, for the record
    raw_targets = centre + key.library.radius * targets
    raw_alpha = angle(z, raw_targets)
    raw_dist = np.linalg.norm(rotate(z, raw_targets, float(key.curve.angle(1.0))) - z, axis=1)
    report = {
        "faces": len(z), "people_split": "test (sha256(name)[0] >= 128)",
        "frame": "rotation of z - c, c = reference library mean (IdentityKey)",
        "offset_from_centre_norm": stats(norms),
        "descriptor_norm": stats(np.linalg.norm(z, axis=1)),
        "angle_z_to_target_deg": stats(np.degrees(alpha)),
        "about_dlib_origin_instead": {
            "angle_z_to_target_deg": stats(np.degrees(raw_alpha)),
            "d1_dist_z_to_Mz": stats(raw_dist),
            "d1_frac_dist_above_0.6": float((raw_dist > 0.6).mean()),
        },
        "curve": {"max_angle_deg": key.curve.max_angle_deg, "gamma": key.curve.gamma},
        "table": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
