"""How well do the classic anonymizers hide identity from dlib's recognizer?

For random LFW faces (upscaled to 336 px with context), compare dlib's descriptor of the
original with that of the anonymized image, aligning both with the ORIGINAL landmarks
(the attacker's best case). Writes JSON: mean/min distance and the match rate (< 0.6)
per setting, plus a fixed box blur as the reference point most tools use.

    python tools/eval/classic_strength.py --faces 60 --out strength.json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

import cv2
import numpy as np

from masquerade.anonymizers import build_anonymizer
from masquerade.config import AnonymizerConfig
from masquerade.datasets import data_root
from masquerade.engines.dlib_face import SAME_PERSON_DISTANCE, DlibFaceRecognizer
from masquerade.faces import Faces
from masquerade.pipeline.compositing import Compositor

DATA = data_root()

SETTINGS = {
    "box_blur_r10_whole_image": None,
    "blur_0.2": AnonymizerConfig(mode="blur", blur_strength=0.2),
    "blur_0.35": AnonymizerConfig(mode="blur", blur_strength=0.35),
    "pixelate_10": AnonymizerConfig(mode="pixelate", pixel_blocks=10),
    "pixelate_6": AnonymizerConfig(mode="pixelate", pixel_blocks=6),
    "solid": AnonymizerConfig(mode="solid"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("classic_strength.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = sorted((DATA / "faces" / "lfw112").glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no LFW faces under {DATA} (set MASQUERADE_DATA)")
    random.Random(args.seed).shuffle(files)
    recognizer = DlibFaceRecognizer()
    distances: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for path in files[: args.faces]:
        face = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        image = cv2.copyMakeBorder(cv2.resize(face, (336, 336), interpolation=cv2.INTER_CUBIC),
                                   100, 100, 100, 100, cv2.BORDER_REFLECT)
        shape = recognizer.landmarks(image, np.array([140, 150, 396, 416]))
        original = recognizer.descriptor(image, shape)
        for name, config in SETTINGS.items():
            if config is None:
                out = cv2.blur(image, (21, 21))
            else:
                out = Compositor(build_anonymizer(config), config).apply(
                    image.copy(), Faces(xyxy=[[150, 130, 386, 420]]))
            distances[name].append(recognizer.distance(recognizer.descriptor(out, shape),
                                                       original))
    report = {
        "faces": args.faces,
        "face_size_px": 256,
        "threshold": SAME_PERSON_DISTANCE,
        "settings": {
            name: {
                "mean_distance": round(float(np.mean(d)), 3),
                "min_distance": round(float(np.min(d)), 3),
                "match_rate": round(float(np.mean(np.array(d) < SAME_PERSON_DISTANCE)), 4),
            }
            for name, d in distances.items()
        },
    }
    args.out.write_text(json.dumps(report, indent=2))
    for name, row in report["settings"].items():
        logging.info("%-26s mean %.3f  min %.3f  matched %.1f%%", name, row["mean_distance"],
                     row["min_distance"], 100 * row["match_rate"])


if __name__ == "__main__":
    main()
