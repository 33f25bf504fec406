"""Measure keyed de-identification on LFW TEST-split faces; write JSON and a sample grid.

    python tools/eval/deid_metrics.py [--n 50] [--transform orthogonal|rotation]
        [--max-angle 90] [--weights DIR] [--composite replace|residual [--gain 1.5]]

`--composite residual` measures the anonymizer's residual composite on the crops
(`deid.residual_change`; restore applies it with the inverse key) instead of G's render.

Probes: the first image of the first `n` TEST people (sorted by name; never seen in
training) who have at least two images; their other images (up to 4) form the gallery.
Every number uses dlib's recognizer (distance < 0.6 = same person) on the full-resolution
150x150 chip of the original, and the pipeline's own keyed transform (`anonymizers.identity_key`).
For each privacy level d, with two random passwords A and B per face:
* protection: share of G(M(z, A, d), E_attr(x)) still matching the original (lower is
  better), by dlib and by the independent MobileFaceNet judge (`mobilefacenet.py`, cosine
  distance <= 0.653; evaluation only), and gallery protection: share of de-identified
  probes matching any other image of the same person (the original probes' share is the
  baseline);
* diversity: share of faces whose A and B versions are different people (> 0.6);
* recovery: restore from the de-identified crop alone (z = M^-1(E_id(y), A, d), then
  G(z, E_attr(y))): share matching the original, PSNR/SSIM vs the original crop; with a
  wrong password C the restore must not match;
* utility: BlazeFace (short range) detection rate on the de-identified crops, mean
  keypoint displacement in crop pixels, PSNR/SSIM de-identified vs original.
Plus the reconstruction G(z, E_attr(x)) and the share of rotation targets that are
themselves within 0.6 of the original (where a perfect generator would land).
Grid: original | d=1 password A | password B | restored (right key) | restored (wrong key).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np
from mobilefacenet import SAME_PERSON_DISTANCE as MFN_THRESHOLD
from mobilefacenet import MobileFaceNet
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from masquerade.alignment import (
    ARCFACE_112,
    DLIB_CHIP,
    CropSpec,
    estimate_transforms,
    invert,
    warp_faces,
)
from masquerade.anonymizers import identity_key
from masquerade.anonymizers.deid import (
    CHIP,
    WEIGHTS_DIR,
    DeidGenerator,
    face_mask,
    match_colours,
    residual_change,
)
from masquerade.config import AnonymizerConfig
from masquerade.datasets import REPO_ROOT, is_train_person, lfw_root, load_rgb
from masquerade.engines.blazeface import BlazeFace
from masquerade.models.dlib_resnet import FaceEncoder

log = logging.getLogger("deid_metrics")
THRESHOLD = 0.6
DETECT_SIZE = 192  # BlazeFace short range runs at 128; upsample the 96 px crops first


def test_people(n: int) -> list[list[Path]]:
    root = lfw_root()
    people = []
    for p in sorted(q.name for q in root.iterdir() if q.is_dir() and not is_train_person(q.name)):
        images = sorted((root / p).glob("*.jpg"))
        if len(images) >= 2:
            people.append(images[:5])
        if len(people) == n:
            break
    return people


def probe_crops(images: list[np.ndarray], crop: CropSpec) -> np.ndarray:
    """LFW112 (ArcFace-aligned) images in the generator's crop framing, uint8 (N, S, S, 3)."""
    m = estimate_transforms(ARCFACE_112[None], "arcface5", crop)[0]
    return np.stack([cv2.warpAffine(im, m, (crop.size,) * 2, flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE) for im in images])


def original_chips(images: list[np.ndarray]) -> np.ndarray:
    """Full-resolution 150 px dlib chips of LFW112 images: what "the original" is judged on."""
    m = estimate_transforms(ARCFACE_112[None], "arcface5", DLIB_CHIP)[0]
    return np.concatenate([warp_faces(im, m, DLIB_CHIP.size) for im in images])


def upsampled_chips(faces: np.ndarray) -> np.ndarray:
    """Generator crops -> E_id chips, as the pipeline makes them."""
    return np.stack([cv2.resize(f, (CHIP, CHIP), interpolation=cv2.INTER_LINEAR) for f in faces])


def arcface_faces(faces: np.ndarray, crop: CropSpec) -> np.ndarray:
    """Generator crops -> ArcFace-112 alignment, what the MobileFaceNet judge takes."""
    m = invert(estimate_transforms(ARCFACE_112[None], "arcface5", crop)[0])
    return np.stack([cv2.warpAffine(f, m, (112, 112), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE) for f in faces])


class Renderer:
    """The anonymizer's two composites on single crops: `replace` pastes G's render,
    `residual` adds its identity change to the face (`deid.residual_change`)."""

    def __init__(self, gen: DeidGenerator, composite: str, gain: float) -> None:
        self.gen, self.composite, self.gain = gen, composite, gain
        self.mask = face_mask(gen.crop)

    def __call__(self, x: np.ndarray, z_target: np.ndarray, z_own: np.ndarray) -> np.ndarray:
        if self.composite == "replace":
            return self.gen(x, z_target)  # as the committed numbers were measured
        fake, rec = (match_colours(y, x, self.mask)
                     for y in self.gen.render(x, [z_target, z_own]))
        change = residual_change(x, fake, rec, self.gain)
        return np.clip(np.rint(x + self.mask[None, ..., None] * change), 0, 255).astype(np.uint8)


def mean_psnr_ssim(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    psnr = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    ssim = [structural_similarity(x, y, channel_axis=2, data_range=255)
            for x, y in zip(a, b, strict=True)]
    return float(np.mean(psnr)), float(np.mean(ssim))


def detect(detector: BlazeFace, faces: np.ndarray) -> list[np.ndarray | None]:
    """Keypoints (6, 2) in crop pixels of the best detection per crop, or None."""
    scale = faces.shape[1] / DETECT_SIZE
    out = []
    for f in faces:
        found = detector.detect(cv2.resize(f, (DETECT_SIZE,) * 2, interpolation=cv2.INTER_CUBIC))
        if len(found) == 0:
            out.append(None)
        else:
            out.append(found.keypoints[int(np.argmax(found.scores))] * scale)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--transform", choices=["orthogonal", "rotation"], default="orthogonal",
                        help="keyed identity transform (anonymizer.identity_transform)")
    parser.add_argument("--max-angle", type=float, default=90.0,
                        help="identity turn at d=1, degrees (anonymizer.max_identity_angle)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "deid_metrics.json")
    parser.add_argument("--grid", type=Path, default=REPO_ROOT / "docs" / "deid_samples.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--composite", choices=["replace", "residual"], default="replace",
                        help="anonymizer.deid_composite (replace: the committed numbers)")
    parser.add_argument("--gain", type=float, default=1.5, help="anonymizer.identity_gain")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    gen = DeidGenerator(args.weights, threads=2)
    crop = gen.crop
    encoder = FaceEncoder(threads=2)
    key = identity_key(AnonymizerConfig(identity_transform=args.transform,
                                        max_identity_angle=args.max_angle))
    detector = BlazeFace("short_range", min_score=0.5)
    people = test_people(args.n)
    up = upsampled_chips
    probes = [load_rgb(p[0]) for p in people]
    x = probe_crops(probes, crop)
    z_orig = encoder(original_chips(probes))  # the original person, full resolution
    galleries = [encoder(original_chips([load_rgb(q) for q in p[1:]])) for p in people]
    z = encoder(up(x))  # what the pipeline conditions on
    judge = MobileFaceNet()  # the independent recognizer: evaluation only
    m_orig = judge.embed(arcface_faces(x, crop))
    render = Renderer(gen, args.composite, args.gain)
    rng = np.random.default_rng(args.seed)
    pw = {name: [rng.bytes(16) for _ in people] for name in "ABC"}

    def dist(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        return np.linalg.norm(a - (z_orig if b is None else b), axis=1)

    def gallery_rate(e: np.ndarray) -> float:
        hits = [np.linalg.norm(g - ei, axis=1).min() < THRESHOLD
                for ei, g in zip(e, galleries, strict=True)]
        return float(np.mean(hits))

    kp_orig = detect(detector, x)
    rec = gen(x, z)
    psnr, ssim = mean_psnr_ssim(x, rec)
    result: dict[str, object] = {
        "faces": len(people), "gallery_images": int(sum(len(g) for g in galleries)),
        "crop": [crop.size, crop.padding], "identity_transform": args.transform,
        "composite": args.composite, "identity_gain": args.gain,
        "max_identity_angle": args.max_angle,
        "baseline_resize_distance": float(dist(z).mean()),
        "original_gallery_match_rate": gallery_rate(z_orig),
        "original_detection_rate": float(np.mean([k is not None for k in kp_orig])),
        "reconstruction": {"psnr": psnr, "ssim": ssim,
                           "same_person_rate": float((dist(encoder(up(rec))) < THRESHOLD).mean())},
    }
    grid_rows = None
    for d in (0.5, 1.0):
        z_a = key.apply(z, pw["A"], d).astype(np.float32)
        z_b = key.apply(z, pw["B"], d).astype(np.float32)
        y_a, y_b = render(x, z_a, z), render(x, z_b, z)
        e_a, e_b = encoder(up(y_a)), encoder(up(y_b))
        z_rec = key.invert(e_a, pw["A"], d)
        restored = render(y_a, z_rec.astype(np.float32), e_a)
        wrong = render(y_a, key.invert(e_a, pw["C"], d).astype(np.float32), e_a)
        e_r, e_w = encoder(up(restored)), encoder(up(wrong))

        def judged(faces: np.ndarray) -> float:
            """Share matched to the original by MobileFaceNet (cosine distance)."""
            e = judge.embed(arcface_faces(faces, crop))
            return float(((1.0 - (e * m_orig).sum(1)) <= MFN_THRESHOLD).mean())

        kp_fake = detect(detector, y_a)
        shifts = [np.linalg.norm(a - b, axis=1).mean()
                  for a, b in zip(kp_orig, kp_fake, strict=True) if a is not None and b is not None]
        p_deid, s_deid = mean_psnr_ssim(x, y_a)
        p_rest, s_rest = mean_psnr_ssim(x, restored)
        result[f"d={d}"] = {
            "protection": {
                "same_person_rate": float((dist(e_a) < THRESHOLD).mean()),
                "mobilefacenet_same_person_rate": judged(y_a),
                "mean_distance": float(dist(e_a).mean()),
                "gallery_match_rate": gallery_rate(e_a),
                "target_same_person_rate": float((dist(z_a) < THRESHOLD).mean()),
                "cos_to_target": float(((e_a * z_a).sum(1) / np.linalg.norm(e_a, axis=1)
                                        / np.linalg.norm(z_a, axis=1)).mean()),
            },
            "diversity_different_rate": float((dist(e_a, e_b) >= THRESHOLD).mean()),
            "recovery": {
                "same_person_rate": float((dist(e_r) < THRESHOLD).mean()),
                # how M^-1 scales the generator's miss: |M^-1(E_id(y)) - z| / |E_id(y) - z_new|
                "generator_miss": float(dist(e_a, z_a).mean()),
                "inverse_error_ratio": float(dist(z_rec, z).mean() / dist(e_a, z_a).mean()),
                "psnr": p_rest, "ssim": s_rest,
                "wrong_key_same_person_rate": float((dist(e_w) < THRESHOLD).mean()),
                "mobilefacenet_same_person_rate": judged(restored),
                "mobilefacenet_wrong_key_same_person_rate": judged(wrong),
            },
            "utility": {
                "detection_rate": float(np.mean([k is not None for k in kp_fake])),
                "keypoint_displacement_px": float(np.mean(shifts)) if shifts else None,
                "psnr": p_deid, "ssim": s_deid,
            },
        }
        if d == 1.0:
            grid_rows = [np.concatenate([x[i], y_a[i], y_b[i], restored[i], wrong[i]], 1)
                         for i in range(min(8, len(people)))]
    detector.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info(json.dumps(result, indent=2))
    cv2.imwrite(str(args.grid), np.concatenate(grid_rows, 0)[:, :, ::-1])
    log.info("wrote %s and %s", args.out, args.grid)


if __name__ == "__main__":
    main()
