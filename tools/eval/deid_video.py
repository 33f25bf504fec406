"""Keyed de-identification on real video: protection, identity stability, flicker, restore.

Runs `--mode deid` on talking-head clips and, on every Nth frame where dlib finds the
face in the original, measures with dlib's recognizer:
* protection: fraction of de-identified faces still matching the original (< 0.6);
* stability: fraction of pairs of de-identified faces of the clip's main track that
  match each other (the fake identity should hold for the whole track);
* restore / wrong key: fraction of restored faces matching the original;
* flicker: mean absolute frame-to-frame change inside the face box, de-identified
  divided by original (1.0 = as steady as the source).

    python tools/eval/deid_video.py --out deid_video.json [--every 10] [CLIP ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
from video_measures import decode, face_slices, flicker_ratio, frame_change

from masquerade.config import load_config
from masquerade.datasets import data_root
from masquerade.engines.dlib_face import SAME_PERSON_DISTANCE, DlibFaceRecognizer
from masquerade.keys import SecretKey
from masquerade.pipeline.restore import restore_file
from masquerade.pipeline.runner import run_file

log = logging.getLogger("deid_video")
EXTRA: list[str] = []  # config overrides from --set


def evaluate(clip: Path, work: Path, every: int, rec: DlibFaceRecognizer) -> dict:
    config = load_config(overrides=["anonymizer.mode=deid", "pipeline.progress=false", *EXTRA,
                                    "encoder.preset=veryfast"])
    key = SecretKey.from_passphrase("evaluation passphrase")
    deid = run_file(str(clip), work / "deid.mp4", config, key=key, overwrite=True).output
    right = restore_file(str(deid), work / "right.mp4", config, key, overwrite=True).output
    wrong = restore_file(str(deid), work / "wrong.mp4", config,
                         SecretKey.from_passphrase("some other passphrase"),
                         overwrite=True).output
    original, fake, restored, wrong_frames = (decode(p) for p in (clip, deid, right, wrong))
    rows = {"deid": [], "restored": [], "wrong": []}
    fake_descriptors = []
    flicker_orig, flicker_fake = [], []
    for i in range(0, min(len(original), len(fake)), every):
        shape = rec.landmarks(original[i])
        if shape is None:
            continue
        z = rec.descriptor(original[i], shape)
        for name, frames in (("deid", fake), ("restored", restored), ("wrong", wrong_frames)):
            if i < len(frames):
                rows[name].append(rec.distance(rec.descriptor(frames[i], shape), z))
        fake_descriptors.append(rec.descriptor(fake[i], shape))
        box = face_slices(shape.rect)
        flicker_orig.append(frame_change(original, i, box))
        flicker_fake.append(frame_change(fake, i, box))
    pairs = [rec.distance(a, b) for a, b in itertools.combinations(fake_descriptors, 2)]

    def matched(d: list[float]) -> float | None:
        return None if not d else round(float(np.mean(np.array(d) < SAME_PERSON_DISTANCE)), 3)

    return {
        "faces_measured": len(rows["deid"]),
        "deid_still_matches_original": matched(rows["deid"]),
        "deid_mean_distance": round(float(np.mean(rows["deid"])), 3) if rows["deid"] else None,
        "fake_identity_pairs_matching": matched(pairs),
        "restored_matches_original": matched(rows["restored"]),
        "wrong_key_matches_original": matched(rows["wrong"]),
        "flicker_ratio": flicker_ratio(flicker_fake, flicker_orig),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("deid_video.json"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="run config override, e.g. anonymizer.temporal_smoothing=0")
    args = parser.parse_args()
    EXTRA.extend(args.overrides)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    clips = args.clips or sorted((data_root() / "video").glob("talking_head_d1*.mp4"))
    rec = DlibFaceRecognizer()
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            report[clip.name] = evaluate(clip, Path(tmp), args.every, rec)
            log.info("%s: %s", clip.name, report[clip.name])
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
