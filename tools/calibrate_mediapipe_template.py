"""Measure where mediapipe's 6 face keypoints fall in the unit face frame (alignment.py).

    python tools/calibrate_mediapipe_template.py --faces 600

Runs BlazeFace (short range) on LFW112 crops (upscaled 2x and padded so the face is
detector-sized) and maps its keypoints into the unit frame through the fixed ArcFace
similarity (alignment.ARCFACE_TO_UNIT). The per-point median is what
alignment.LAYOUTS["mediapipe6"] holds; the spread says how much each point can be trusted.
"""

from __future__ import annotations

import argparse
import json
import logging

import cv2
import mediapipe as mp
import numpy as np

from masquerade.alignment import ARCFACE_TO_UNIT, transform_points
from masquerade.datasets import lfw_root, load_rgb

log = logging.getLogger("calibrate_mediapipe_template")
SCALE, PAD = 2, 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=600)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = sorted(lfw_root().glob("*/*.jpg"))
    paths = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))[: args.faces]]
    points = []
    with mp.solutions.face_detection.FaceDetection(model_selection=0) as detector:
        for path in paths:
            image = cv2.resize(load_rgb(path), None, fx=SCALE, fy=SCALE)
            image = cv2.copyMakeBorder(image, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT)
            found = detector.process(np.ascontiguousarray(image)).detections
            if not found:
                continue
            h, w = image.shape[:2]
            kps = np.array([[k.x * w, k.y * h] for k in
                            found[0].location_data.relative_keypoints])
            # pixel centres back in the 112 crop, then into the unit frame
            kps = (kps - PAD + 0.5) / SCALE - 0.5
            points.append(transform_points(ARCFACE_TO_UNIT, kps))
    pts = np.array(points)
    report = {"faces": len(pts), "median": np.median(pts, 0).round(4).tolist(),
              "std": pts.std(0).round(4).tolist()}
    log.info(json.dumps(report))


if __name__ == "__main__":
    main()
