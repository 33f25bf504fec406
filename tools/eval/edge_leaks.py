"""Raw faces on the synthetic ground-truth scenarios, for every preset (issue 14's leaks).

Renders `Scenario` frames (no codec), runs the real pipeline of each preset in solid
mode and reports every frame where less than 98% of a face's visible pixels are painted:
the demo clip (occlusion, a 28 px face, a face entering from the right) and the edge
layout (four faces entering through the four edges, four leaving) at the preset's own
minimum face size and at 56 px, with the backfill on (the preset's value) and off.

    python tools/eval/edge_leaks.py --out docs/detection/synthetic_leaks.json
"""

from __future__ import annotations

import argparse
import json
import logging
from fractions import Fraction
from pathlib import Path

from masquerade.config import load_config
from masquerade.pipeline.runner import FramePipeline
from masquerade.streams import Frame
from masquerade.synthetic import Scenario, face_pixels, painted_share

log = logging.getLogger("edge_leaks")
MAGENTA = (255, 0, 255)
PRESETS = {"default": None, "fast": "configs/fast.yaml", "live": "configs/live.yaml",
           "archive": "configs/archive.yaml"}


def leaks(preset: str | None, scenario: Scenario, overrides: list[str]) -> list[list[float]]:
    """[frame, face, share of its ellipse inside the frame, share painted] per raw face."""
    config = load_config(preset, ["anonymizer.mode=solid", "anonymizer.color=[255,0,255]",
                                  *overrides])
    pipeline = FramePipeline.from_config(config)
    out = []
    for i in range(scenario.frames):
        out += pipeline.push(Frame(scenario.render(i), i, Fraction(1, scenario.fps), i))
    out += pipeline.drain()
    found = []
    for frame, _ in out:
        for gt in scenario.ground_truth(frame.index):
            if gt.occluded or not face_pixels(scenario.height, scenario.width, gt.xyxy).any():
                continue
            share = painted_share(frame.image, gt.xyxy, MAGENTA, 10)
            if share < 0.98:
                found.append([frame.index, gt.face_id, round(gt.inside, 3), round(share, 3)])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/detection/synthetic_leaks.json"))
    parser.add_argument("--presets", nargs="*", default=list(PRESETS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for name in args.presets:
        path = PRESETS[name]
        min_face = load_config(path).detector.min_face_px
        scenarios = {"demo": Scenario(audio=False),
                     f"edges@{min_face}px": Scenario(audio=False, layout="edges",
                                                    face_px=min_face),
                     "edges@56px": Scenario(audio=False, layout="edges", face_px=56)}
        for label, scenario in scenarios.items():
            for backfill in (None, 0):
                overrides = [] if backfill is None else [f"tracker.backfill_frames={backfill}"]
                found = leaks(path, scenario, overrides)
                faces = {r[1] for r in found}
                rows.append({"preset": name, "scenario": label,
                             "backfill": "preset" if backfill is None else backfill,
                             "raw_face_frames": len(found), "faces_affected": sorted(faces),
                             "leaks": found})
                log.info("%-8s %-12s backfill=%-6s raw face-frames %3d (faces %s)", name,
                         label, rows[-1]["backfill"], len(found), sorted(faces))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
