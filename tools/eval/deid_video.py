"""Keyed de-identification on real video: protection by two recognizers, realism at the
face's native size, identity stability, flicker, restore; native-size picture grids.

Runs `--mode deid` on the talking-head and interview clips with two passwords (A, B),
restores A's output with the right key and with a wrong one, and on every Nth frame where
dlib finds the face in the original measures:
* protection: share of de-identified faces still matching the original, by dlib
  (distance < 0.6) and by the independent MobileFaceNet judge (`mobilefacenet.py`,
  cosine distance <= 0.653; evaluation only, never a loss or a calibration target);
* diversity: share of frames where A's and B's fakes are different people (dlib);
* restore / wrong key: share of restored faces matching the original, by both;
* stability: share of pairs of A's fakes that match each other (dlib);
* realism (`realism.py`), on the original's dlib face box at native size: detail ratio,
  dlib HOG still finding the face, skin delta E, share of off-palette 8x8 blocks;
* flicker: mean absolute frame-to-frame change inside the face box, fake / original.
Each measured clip also gets a native-size grid row (original | A | B | restored | wrong
key) and a six-frame strip of A's track under --grids DIR.

    python tools/eval/deid_video.py [--every 10] [--out docs/deid_video.json]
        [--grids docs/deid_grids] [--set anonymizer.key=value ...] [CLIP ...]
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
import realism
from mobilefacenet import SAME_PERSON_DISTANCE as MFN_SAME
from mobilefacenet import MobileFaceNet, shape_points
from video_measures import decode, face_slices, flicker_ratio, frame_change, rect_xyxy

from masquerade.config import load_config
from masquerade.datasets import REPO_ROOT, data_root
from masquerade.engines.dlib_face import SAME_PERSON_DISTANCE, DlibFaceRecognizer
from masquerade.faces import box_iou
from masquerade.keys import SecretKey
from masquerade.pipeline.restore import restore_file
from masquerade.pipeline.runner import run_file

log = logging.getLogger("deid_video")
EXTRA: list[str] = []  # config overrides from --set
CLIPS = ("talking_head_d*.mp4", "interview_talking_head.mp4")
GRID_MARGIN = 0.45  # context around the face box in the grids (hair, ears), per side


def rate(values: list[bool]) -> float | None:
    return None if not values else round(float(np.mean(values)), 3)


def mean(values: list[float]) -> float | None:
    return None if not values else round(float(np.mean(values)), 3)


def context_box(rect, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The face box grown by GRID_MARGIN per side, clipped to the frame (native pixels)."""
    w, h = rect.right() - rect.left(), rect.bottom() - rect.top()
    x0, y0 = max(0, int(rect.left() - GRID_MARGIN * w)), max(0, int(rect.top() - GRID_MARGIN * h))
    x1 = min(shape[1], int(rect.right() + GRID_MARGIN * w))
    y1 = min(shape[0], int(rect.bottom() + GRID_MARGIN * h))
    return slice(y0, y1), slice(x0, x1)


def write_grids(clip: Path, grids: Path, videos: dict[str, list[np.ndarray]],
                measured: list[tuple[int, object]]) -> None:
    """Native-size pictures: one row at the middle measured frame, a six-frame strip."""
    grids.mkdir(parents=True, exist_ok=True)
    i, rect = measured[len(measured) // 2]
    box = context_box(rect, videos["original"][i].shape)
    row = np.concatenate([videos[k][i][box] for k in
                          ("original", "deid_a", "deid_b", "restored", "wrong")], 1)
    cv2.imwrite(str(grids / f"{clip.stem}_grid.jpg"), row[:, :, ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 93])
    picks = [measured[k] for k in np.linspace(0, len(measured) - 1, 6).round().astype(int)]
    h = min(videos["deid_a"][j][context_box(r, videos["deid_a"][j].shape)].shape[0]
            for j, r in picks)
    tiles = []
    for j, r in picks:
        tile = videos["deid_a"][j][context_box(r, videos["deid_a"][j].shape)]
        tiles.append(cv2.resize(tile, (round(tile.shape[1] * h / tile.shape[0]), h),
                                interpolation=cv2.INTER_AREA) if tile.shape[0] != h else tile)
    cv2.imwrite(str(grids / f"{clip.stem}_strip.jpg"), np.concatenate(tiles, 1)[:, :, ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 93])


def make_videos(clip: Path, work: Path) -> dict[str, list[np.ndarray]]:
    config = load_config(overrides=["anonymizer.mode=deid", "pipeline.progress=false", *EXTRA,
                                    "encoder.preset=veryfast"])
    key_a = SecretKey.from_passphrase("evaluation passphrase")
    key_b = SecretKey.from_passphrase("another evaluation passphrase")
    wrong_key = SecretKey.from_passphrase("some other passphrase")
    deid_a = run_file(str(clip), work / "a.mp4", config, key=key_a, overwrite=True).output
    deid_b = run_file(str(clip), work / "b.mp4", config, key=key_b, overwrite=True).output
    right = restore_file(str(deid_a), work / "right.mp4", config, key_a, overwrite=True).output
    wrong = restore_file(str(deid_a), work / "wrong.mp4", config, wrong_key,
                         overwrite=True, allow_wrong_key=True).output
    return {name: decode(path) for name, path in (
        ("original", clip), ("deid_a", deid_a), ("deid_b", deid_b), ("restored", right),
        ("wrong", wrong))}


def evaluate(clip: Path, work: Path, every: int, rec: DlibFaceRecognizer,
             judge: MobileFaceNet, grids: Path | None) -> dict:
    videos = make_videos(clip, work)
    original = videos["original"]
    n = min(len(v) for v in videos.values())
    dlib_match: dict[str, list[bool]] = {k: [] for k in ("deid_a", "restored", "wrong")}
    mfn_match: dict[str, list[bool]] = {k: [] for k in ("deid_a", "restored", "wrong")}
    a_vs_b, hog_found = [], []
    detail, delta_e, off_palette, off_palette_original = [], [], [], []
    fake_descriptors, flicker_orig, flicker_fake, measured = [], [], [], []
    for i in range(0, n, every):
        shape = rec.landmarks(original[i])
        if shape is None:
            continue
        measured.append((i, shape.rect))
        pts = shape_points(shape)
        z = rec.descriptor(original[i], shape)
        e = judge.embed_frame(original[i], pts)
        descriptors = {k: rec.descriptor(videos[k][i], shape) for k in (*dlib_match, "deid_b")}
        for k in dlib_match:
            dlib_match[k].append(rec.distance(descriptors[k], z) < SAME_PERSON_DISTANCE)
            mfn_match[k].append(judge.distance(judge.embed_frame(videos[k][i], pts), e)
                                <= MFN_SAME)
        a_vs_b.append(rec.distance(descriptors["deid_a"], descriptors["deid_b"])
                      >= SAME_PERSON_DISTANCE)
        fake_descriptors.append(descriptors["deid_a"])
        box = face_slices(shape.rect)
        fake_box, orig_box = videos["deid_a"][i][box], original[i][box]
        detail.append(realism.detail_ratio(fake_box, orig_box))
        delta_e.append(realism.skin_delta_e(fake_box, orig_box))
        off_palette.append(realism.off_palette_share(fake_box, orig_box))
        off_palette_original.append(realism.off_palette_share(orig_box, orig_box))
        hog_found.append(any(box_iou(rect_xyxy(r), rect_xyxy(shape.rect))[0, 0] > 0.3
                             for r in rec.faces(videos["deid_a"][i])))
        flicker_orig.append(frame_change(original, i, box))
        flicker_fake.append(frame_change(videos["deid_a"], i, box))
    pairs = [rec.distance(a, b) < SAME_PERSON_DISTANCE
             for a, b in itertools.combinations(fake_descriptors, 2)]
    if grids is not None and measured:
        write_grids(clip, grids, videos, measured)
    return {
        "faces_measured": len(measured),
        "face_px": round(float(np.median([r.width() for _, r in measured])), 1)
        if measured else None,
        "protection": {"dlib_still_matched": rate(dlib_match["deid_a"]),
                       "mobilefacenet_still_matched": rate(mfn_match["deid_a"]),
                       "dlib_a_vs_b_different": rate(a_vs_b)},
        "restore": {"dlib_matched": rate(dlib_match["restored"]),
                    "mobilefacenet_matched": rate(mfn_match["restored"]),
                    "wrong_key_dlib_matched": rate(dlib_match["wrong"]),
                    "wrong_key_mobilefacenet_matched": rate(mfn_match["wrong"])},
        "realism": {"detail_ratio": mean(detail), "hog_found": rate(hog_found),
                    "skin_delta_e": mean(delta_e),
                    "off_palette_blocks": mean(off_palette),
                    "off_palette_blocks_original": mean(off_palette_original)},
        "temporal": {"fake_identity_pairs_matching": rate(pairs),
                     "flicker_ratio": flicker_ratio(flicker_fake, flicker_orig)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "deid_video.json")
    parser.add_argument("--grids", type=Path, default=REPO_ROOT / "docs" / "deid_grids",
                        help="folder for the native-size grids ('' for none)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="run config override, e.g. anonymizer.temporal_smoothing=0")
    args = parser.parse_args()
    EXTRA.extend(args.overrides)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    video = data_root() / "video"
    clips = args.clips or sorted(p for pattern in CLIPS for p in video.glob(pattern))
    rec, judge = DlibFaceRecognizer(), MobileFaceNet()
    report: dict[str, object] = {"settings": EXTRA, "every": args.every}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            report[clip.name] = evaluate(clip, Path(tmp), args.every, rec, judge,
                                         args.grids if str(args.grids) else None)
            log.info("%s: %s", clip.name, json.dumps(report[clip.name]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
