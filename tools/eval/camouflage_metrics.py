"""Measure camouflage: does the operator's recognizer still match, how different does it look.

    python tools/eval/camouflage_metrics.py [--folds 2] [--video] [--out FILE.json]

LFW (pairs.txt, the first `folds` folds of 300 same + 300 different pairs; images upscaled
2x, BlazeFace keypoints): the first image of every pair is camouflaged with its own random
password, as a new track would be. The recognizer measures it with keypoints found again
on the camouflaged image (as a deployment would).
* preserved recognizer (dlib, threshold 0.6): share of camouflaged faces matching their
  original (target >= 95%), and verification accuracy on the pairs with the first image
  camouflaged vs both original (target: within 3 points);
* how different it looks, in spaces the camouflage never optimised: pixel PSNR / SSIM on
  the face; face shape: mediapipe face-mesh landmarks (468), similarity-aligned, mean
  displacement as a fraction of the eye distance (for scale, the `reference_*` entries:
  two LFW photos of one person, and of two different people); skin colour: CIE76 delta E
  of the mean face colour;
* a recognizer NOT used in the calibration: uniform-LBP histograms on an 8x8 grid of the
  aligned face with chi-square distance, threshold fitted on the original pairs; its
  accuracy and match rate on the camouflaged faces.
--video also runs `masquerade run --mode camouflage` on the talking-head clips and, on every
10th frame, measures dlib's match to the original frame (dlib's own detector and 5-point
landmarks on each), identity stability within the clip, and flicker.
Grid: original | camouflaged, with the dlib distance, for 8 faces.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np
from skimage.feature import local_binary_pattern
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from masquerade.alignment import umeyama
from masquerade.anonymizers.base import FaceRegion
from masquerade.anonymizers.camouflage import CamouflageAnonymizer
from masquerade.datasets import REPO_ROOT, data_root, lfw_image_path, lfw_root, load_rgb
from masquerade.engines.blazeface import BlazeFace
from masquerade.models.recognizer import Recognizer, arcface_transforms

log = logging.getLogger("camouflage_metrics")
UPSCALE = 224
LBP_GRID = 8


def read_pairs(folds: int) -> list[tuple[str, int, str, int, bool]]:
    lines = (lfw_root() / "pairs.txt").read_text().splitlines()
    n = int(lines[0].split()[1])
    out = []
    for line in lines[1:1 + folds * 2 * n]:
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), parts[0], int(parts[2]), True))
        else:
            out.append((parts[0], int(parts[1]), parts[2], int(parts[3]), False))
    return out


class Mesh:
    """mediapipe face mesh: 468 landmarks in pixels, or None."""

    def __init__(self) -> None:
        from mediapipe.python.solutions import face_mesh

        self.graph = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        result = self.graph.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        return np.array([(p.x * w, p.y * h) for p in result.multi_face_landmarks[0].landmark])


def shape_change(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Mean landmark displacement after the best similarity, / eye distance."""
    if a is None or b is None:
        return None
    m = umeyama(b, a)
    moved = b @ m[:, :2].T + m[:, 2]
    eyes = np.linalg.norm(a[33] - a[263])
    return float(np.linalg.norm(moved - a, axis=1).mean() / eyes)


def lbp_histogram(face: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    codes = local_binary_pattern(gray, 8, 1, method="uniform").astype(int)
    cell = gray.shape[0] // LBP_GRID
    hists = [np.bincount(codes[y:y + cell, x:x + cell].ravel(), minlength=10)
             for y in range(0, cell * LBP_GRID, cell) for x in range(0, cell * LBP_GRID, cell)]
    h = np.concatenate(hists).astype(np.float64)
    return h / h.sum()


def chi2(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a - b) ** 2 / (a + b + 1e-12)).sum())


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    order = np.sort(distances)
    cands = (order[1:] + order[:-1]) / 2
    acc = [((distances < t) == same).mean() for t in cands]
    i = int(np.argmax(acc))
    return float(cands[i]), float(acc[i])


def face_lab_mean(image: np.ndarray, kps: np.ndarray) -> np.ndarray:
    m = arcface_transforms(kps[None], "mediapipe6", 112)[0]
    face = cv2.warpAffine(image, m, (112, 112))[30:100, 28:84]  # cheeks, nose, mouth
    lab = cv2.cvtColor(face.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return lab.reshape(-1, 3).mean(0)


def evaluate_lfw(folds: int, grid_path: Path, margin: float) -> dict:
    detector = BlazeFace("short_range")
    rec = Recognizer()
    mesh = Mesh()
    camo = CamouflageAnonymizer(lambda t: b"eval-password-%d" % t, rec, margin=margin)
    rng = np.random.default_rng(0)
    rows, grid = [], []
    for k, (n1, i1, n2, i2, same) in enumerate(read_pairs(folds)):
        a = cv2.resize(load_rgb(lfw_image_path(n1, i1)), (UPSCALE,) * 2,
                       interpolation=cv2.INTER_CUBIC)
        b = cv2.resize(load_rgb(lfw_image_path(n2, i2)), (UPSCALE,) * 2,
                       interpolation=cv2.INTER_CUBIC)
        fa, fb = detector.detect(a), detector.detect(b)
        if len(fa) == 0 or len(fb) == 0:
            continue
        ka, kb = fa.keypoints[0].astype(np.float64), fb.keypoints[0].astype(np.float64)
        box = fa.xyxy[0]
        (c,) = camo.anonymize([FaceRegion(a.copy(), box, int(rng.integers(1 << 30)), ka)])
        fc = detector.detect(c)
        if len(fc) == 0:
            rows.append({"same": same, "camouflage_detected": False})
            continue
        kc = fc.keypoints[0].astype(np.float64)
        za, zb, zc = rec.embed([a, b, c], np.stack([ka, kb, kc]))
        faces = [cv2.warpAffine(im, arcface_transforms(kp[None], "mediapipe6", 112)[0],
                                (112, 112)) for im, kp in ((a, ka), (b, kb), (c, kc))]
        la, lb, lc = (lbp_histogram(f) for f in faces)
        x0, y0, x1, y1 = np.clip(box, 0, UPSCALE).astype(int)
        rows.append({
            "same": same, "camouflage_detected": True,
            "dlib_camo_vs_original": float(rec.distance(zc, za)[0]),
            "dlib_pair_original": float(rec.distance(za, zb)[0]),
            "dlib_pair_camouflaged": float(rec.distance(zc, zb)[0]),
            "lbp_camo_vs_original": chi2(lc, la), "lbp_pair_original": chi2(la, lb),
            "lbp_pair_camouflaged": chi2(lc, lb),
            "psnr": peak_signal_noise_ratio(a[y0:y1, x0:x1], c[y0:y1, x0:x1], data_range=255),
            "ssim": structural_similarity(a[y0:y1, x0:x1], c[y0:y1, x0:x1], channel_axis=2,
                                          data_range=255),
            "shape_change": shape_change(mesh(a), mesh(c)),
            "shape_change_other_photo": shape_change(mesh(a), mesh(b)),
            "delta_e": float(np.linalg.norm(face_lab_mean(a, ka) - face_lab_mean(c, kc))),
        })
        if len(grid) < 8 and same:
            d = rows[-1]["dlib_camo_vs_original"]
            tile = np.concatenate([a, c], 1).copy()
            cv2.putText(tile, f"dlib {d:.2f}", (UPSCALE + 6, 18), cv2.FONT_HERSHEY_SIMPLEX,
                        0.55, (255, 255, 0), 2)
            grid.append(tile)
        if k % 200 == 0:
            log.info("%d pairs", k)
    detector.close()
    cv2.imwrite(str(grid_path), np.concatenate(grid, 0)[:, :, ::-1])
    ok = [r for r in rows if r["camouflage_detected"]]
    same = np.array([r["same"] for r in ok])

    def col(name: str) -> np.ndarray:
        return np.array([r[name] for r in ok], dtype=float)

    def mean(name: str, subset: list[dict] | None = None) -> float:
        vals = [r[name] for r in (subset or ok) if r[name] is not None]
        return round(float(np.mean(vals)), 4)

    lbp_t, lbp_acc = best_threshold(col("lbp_pair_original"), same)
    dlib_t = 0.6
    strengths = [t.strength for t in camo._tracks.values()]
    return {
        "margin": margin, "pairs": len(rows), "pairs_measured": len(ok),
        "camouflaged_face_detected_rate": round(len(ok) / max(len(rows), 1), 4),
        "preserved_recognizer": {
            "name": "dlib_resnet", "threshold": dlib_t,
            "camouflaged_matches_original": round(float((col("dlib_camo_vs_original")
                                                         < dlib_t).mean()), 4),
            "mean_distance_to_original": mean("dlib_camo_vs_original"),
            "verification_accuracy_original": round(float(
                ((col("dlib_pair_original") < dlib_t) == same).mean()), 4),
            "verification_accuracy_camouflaged": round(float(
                ((col("dlib_pair_camouflaged") < dlib_t) == same).mean()), 4),
        },
        "appearance_change": {
            "face_psnr": mean("psnr"), "face_ssim": mean("ssim"),
            "mesh_shape_change": mean("shape_change"),
            "reference_mesh_shape_change_two_photos_same_person":
                mean("shape_change_other_photo", [r for r in ok if r["same"]]),
            "reference_mesh_shape_change_two_different_people":
                mean("shape_change_other_photo", [r for r in ok if not r["same"]]),
            "skin_delta_e": mean("delta_e"),
            "strength_mean": round(float(np.mean(strengths)), 3),
            "weak_tracks": camo.weak_tracks,
        },
        "independent_recognizer_lbp": {
            "threshold_fitted_on_original_pairs": round(lbp_t, 4),
            "verification_accuracy_original": round(lbp_acc, 4),
            "verification_accuracy_camouflaged": round(float(
                ((col("lbp_pair_camouflaged") < lbp_t) == same).mean()), 4),
            "camouflaged_matches_original": round(float((col("lbp_camo_vs_original")
                                                         < lbp_t).mean()), 4),
        },
    }


def evaluate_video(clip: Path, work: Path, every: int, margin: float) -> dict:
    from video_measures import decode, face_slices, flicker_ratio, frame_change

    from masquerade.config import load_config
    from masquerade.engines.dlib_face import SAME_PERSON_DISTANCE, DlibFaceRecognizer
    from masquerade.keys import SecretKey
    from masquerade.pipeline.runner import run_file

    config = load_config(overrides=["anonymizer.mode=camouflage", "pipeline.progress=false",
                                    "encoder.preset=veryfast",
                                    f"anonymizer.camouflage_margin={margin}"])
    key = SecretKey.from_passphrase("evaluation passphrase")
    out = run_file(str(clip), work / "camo.mp4", config, key=key, overwrite=True).output
    original, camo = decode(clip), decode(out)
    rec = DlibFaceRecognizer()
    dists, descriptors, flicker_o, flicker_c = [], [], [], []
    for i in range(0, min(len(original), len(camo)), every):
        so, sc = rec.landmarks(original[i]), rec.landmarks(camo[i])
        if so is None or sc is None:
            continue
        zc = rec.descriptor(camo[i], sc)
        dists.append(rec.distance(zc, rec.descriptor(original[i], so)))
        descriptors.append(zc)
        box = face_slices(so.rect)
        flicker_o.append(frame_change(original, i, box))
        flicker_c.append(frame_change(camo, i, box))
    pairs = [rec.distance(a, b) for a, b in itertools.combinations(descriptors, 2)]
    return {
        "faces_measured": len(dists),
        "camouflaged_matches_original": round(float(np.mean(np.array(dists)
                                                            < SAME_PERSON_DISTANCE)), 3),
        "mean_distance": round(float(np.mean(dists)), 3),
        "pairs_within_clip_matching": round(float(np.mean(np.array(pairs)
                                                          < SAME_PERSON_DISTANCE)), 3),
        "flicker_ratio": flicker_ratio(flicker_c, flicker_o),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--video", action="store_true")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--margin", type=float, default=0.5,
                        help="anonymizer.camouflage_margin to evaluate")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "camouflage_metrics.json")
    parser.add_argument("--grid", type=Path, default=REPO_ROOT / "docs" / "camouflage_samples.jpg")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report: dict = {"lfw": evaluate_lfw(args.folds, args.grid, args.margin)} if args.folds else {}
    log.info(json.dumps(report, indent=2))
    if args.video:
        report["video"] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for clip in sorted((data_root() / "video").glob("talking_head_d*.mp4")):
                report["video"][clip.name] = evaluate_video(clip, Path(tmp), args.every,
                                                            args.margin)
                log.info("%s: %s", clip.name, report["video"][clip.name])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
