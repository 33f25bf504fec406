"""Do hands stay in front of generated faces? Measured on ../shared/data/video/hand_occlusion.avi.

    python tools/eval/occlusion.py [--out docs/occlusion.json] [--png docs/occlusion.jpg]

Runs `--mode deid` with `anonymizer.occluders` = none and = hands. The hand pixels of a
frame are those of MediaPipe Hands' landmark capsules on the original frame (drawn as
`pipeline.occluders.hand_mask` draws them, so this measures how much of the detected hand
the compositor keeps, not the detector's own recall) that lie inside the region the
generator painted (the pixels the `none` run changed by more than 8 levels). Reported:
the share of those pixels left within 8 levels of the original, per setting, and how much
of the face box each setting still changed (the face must stay anonymized).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np
from video_measures import decode

from masquerade.config import load_config
from masquerade.datasets import REPO_ROOT, data_root
from masquerade.keys import SecretKey
from masquerade.pipeline.occluders import HandOccluders, hand_mask
from masquerade.pipeline.runner import run_file

log = logging.getLogger("occlusion")
CHANGED = 8  # levels (max over RGB) that count as a changed pixel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=data_root() / "video" / "hand_occlusion.avi")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "occlusion.json")
    parser.add_argument("--png", type=Path, default=REPO_ROOT / "docs" / "occlusion.jpg")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    key = SecretKey.from_passphrase("evaluation passphrase")
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in ("none", "hands"):
            config = load_config(overrides=["anonymizer.mode=deid", "pipeline.progress=false",
                                            f"anonymizer.occluders={setting}"])
            path = run_file(str(args.clip), Path(tmp) / f"{setting}.mp4", config, key=key,
                            overwrite=True).output
            outputs[setting] = decode(path)
    original = decode(args.clip)
    hands = HandOccluders()
    kept: dict[str, list[float]] = {"none": [], "hands": []}
    painted_share = {"none": [], "hands": []}
    for i, frame in enumerate(original):
        painted = np.abs(outputs["none"][i].astype(int) - frame).max(2) > CHANGED
        pts = hands.landmarks(frame)
        if not len(pts) or not painted.any():
            continue
        hand = (hand_mask(pts, frame.shape[:2]) > 0.5) & painted
        if hand.sum() < 50:
            continue
        for setting, frames in outputs.items():
            same = np.abs(frames[i].astype(int) - frame).max(2) <= CHANGED
            kept[setting].append(float(same[hand].mean()))
            changed = ~same & painted & ~hand
            painted_share[setting].append(float(changed.sum() / max((painted & ~hand).sum(), 1)))
        if i == len(original) // 2:
            cv2.imwrite(str(args.png), np.concatenate(
                [frame, outputs["none"][i], outputs["hands"][i]], 1)[:, :, ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 93])
    hands.close()
    report = {
        "frames_measured": len(kept["hands"]),
        "hand_pixels_kept": {k: round(float(np.mean(v)), 3) for k, v in kept.items()},
        "face_pixels_still_changed": {k: round(float(np.mean(v)), 3)
                                      for k, v in painted_share.items()},
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info(json.dumps(report))


if __name__ == "__main__":
    main()
