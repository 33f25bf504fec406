"""Leak audit on real clips: does an independent detector + recognizer still find people?

For every Nth frame of each original clip, dlib's HOG detector (a different detector from
the pipeline's BlazeFace) finds faces and dlib's recognizer describes them. In the same
frame of the anonymized output, a face dlib still detects is a candidate leak, and it is
a leak proper when its descriptor matches an original face of that frame (< 0.6).

    python tools/eval/clip_leaks.py ORIGINAL ANONYMIZED [ORIGINAL ANONYMIZED ...] \
        --every 5 --out leaks.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import av
import numpy as np

from masquerade.engines.dlib_face import SAME_PERSON_DISTANCE, DlibFaceRecognizer

log = logging.getLogger("clip_leaks")


def frames(path: str, every: int):
    with av.open(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                yield i, f.to_ndarray(format="rgb24")


def audit(recognizer: DlibFaceRecognizer, original: str, anonymized: str, every: int) -> dict:
    originals_found = detected_after = matched_after = checked = 0
    worst = None
    for (i, a), (_, b) in zip(frames(original, every), frames(anonymized, every), strict=False):
        checked += 1
        rects_a = recognizer.faces(a)
        descriptors = [recognizer.descriptor(a, recognizer.landmarks(a, r)) for r in rects_a]
        originals_found += len(descriptors)
        for rect in recognizer.faces(b):
            detected_after += 1
            d = recognizer.descriptor(b, recognizer.landmarks(b, rect))
            if descriptors:
                best = min(recognizer.distance(d, o) for o in descriptors)
                worst = best if worst is None else min(worst, best)
                if best < SAME_PERSON_DISTANCE:
                    matched_after += 1
                    log.warning("%s frame %d: face still matches (distance %.3f)",
                                anonymized, i, best)
    return {"frames_checked": checked, "faces_in_original": originals_found,
            "faces_detected_after": detected_after, "faces_matched_after": matched_after,
            "closest_distance_after": None if worst is None else round(worst, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="ORIGINAL ANONYMIZED pairs")
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("clip_leaks.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(args.pairs) % 2:
        raise SystemExit("give ORIGINAL ANONYMIZED pairs")
    recognizer = DlibFaceRecognizer()
    report = {}
    for original, anonymized in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        report[Path(original).name] = row = audit(recognizer, original, anonymized, args.every)
        log.info("%s: %s", Path(original).name, row)
    totals = {k: int(np.sum([r[k] for r in report.values()])) for k in
              ("frames_checked", "faces_in_original", "faces_detected_after",
               "faces_matched_after")}
    report["total"] = totals
    args.out.write_text(json.dumps(report, indent=2))
    log.info("total: %s", totals)


if __name__ == "__main__":
    main()
