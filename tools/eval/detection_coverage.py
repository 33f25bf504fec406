"""Face-detection coverage of Masquerade's presets against deface and slow reference detectors.

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python tools/eval/detection_coverage.py
    python tools/eval/detection_coverage.py --report-only      # tables from coverage.json

Why (issue 14): a face the cover misses is a privacy failure, and a cover that paints
half the street hides what the video was for. With no ground-truth boxes for the shared
clips, this measures what Masquerade *paints* against what two independent, slower
detectors call a face, side by side with deface (CenterFace) on the same frames:

* References (`reference_faces.py`): dlib's CNN face detector and deface's CenterFace
  (threshold 0.2), merged into one face list (a dlib and a CenterFace box of the same face,
  IoU >= 0.3 or >= 70% of the smaller box inside the other, count once, as the larger box).
  Generated clips (`masquerade.synthetic`, `--generated`) use their exact boxes instead.
* Masquerade's painted region: the real `FramePipeline` (`--config` preset, detection,
  tracker with its coasting boxes, compositor padding, ellipse and feather) runs on every
  frame from the start of the clip in `solid` mode with colour [255, 0, 255]; a pixel is
  painted where the output moved at least halfway from the input towards that colour
  (alpha >= 0.5). Frames stay in memory, so there is no codec noise in the mask. Blur and
  solid share detection, tracking and geometry; only the fill differs.
* deface's painted region: deface's own `CenterFace` and `anonymize_frame` (default blur,
  ellipse, mask scale 1.3, threshold 0.2, network input at the frame's size) on the same
  decoded frames; deface keeps no state between frames, so this is what its CLI paints on
  that frame. The CLI itself is run only for speed.
* Metrics: recall = share of reference faces whose box is >= 90% (and >= 50%) painted, per
  reference (union, dlib alone, CenterFace alone) and size bucket (sqrt of box area);
  the live preset also on faces >= 48 px (its `min_face_px`). Outside share = painted area
  outside every reference box grown by 25% per side / painted area (the issue's target is
  <= 10%); painted blobs touching no reference box are counted.
* Speed: wall-clock frames / second of `masquerade run --mode blur` (default and live
  presets) and of the `deface` CLI on the first `--speed-frames` frames of each clip
  (re-encoded copies in a temp dir), one after another, with the load average recorded.

Outputs: docs/detection/coverage.json (every number, settings, machine), coverage.md
(tables) and side-by-side JPGs (original | Masquerade default | deface, references drawn)
of the worst clips. Needs deface in its own venv (`--deface-python`, `--deface-bin`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import reference_faces as refs

from masquerade.config import load_config
from masquerade.datasets import REPO_ROOT
from masquerade.faces import box_iou

log = logging.getLogger("detection_coverage")

OUT_DIR = REPO_ROOT / "docs" / "detection"
MAGENTA = (255, 0, 255)
PRESETS = {"masquerade_default": None, "masquerade_live": REPO_ROOT / "configs" / "live.yaml"}
SYSTEMS = ("masquerade_default", "masquerade_live", "deface")
MIN_FACE = {"masquerade_default": 20, "masquerade_live": 48}  # their min_face_px
BUCKETS = (("<32", 0, 32), ("32-48", 32, 48), ("48-96", 48, 96), (">=96", 96, math.inf))
GROW = 0.25  # reference boxes grown per side before counting paint as "outside"
MATCH_IOU, MATCH_INSIDE = 0.3, 0.7
# "confident" reference: dlib confidence or CenterFace score at least this (the default
# references keep every dlib detection and CenterFace down to deface's 0.2, which on the
# shared clips includes heraldry, dark out-of-focus blobs and the like).
CONFIDENT = 0.5
FULL, HALF = 0.9, 0.5
DEFACE_BIN = Path("/tmp/deface-venv/bin/deface")
MASQUERADE_BIN = REPO_ROOT / ".venv" / "bin" / "masquerade"


# --- references ---------------------------------------------------------------------

def _area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def merge_references(dlib: list[list[float]], centerface: list[list[float]]) -> list[dict]:
    """One entry per face: the larger box of a matched pair, and which reference found it."""
    faces = [{"box": list(b[:4]), "dlib": b[4], "centerface": None} for b in dlib]
    for c in sorted(centerface, key=lambda b: -b[4]):
        best, best_iou = None, -1.0
        for i, f in enumerate(faces):
            if f["centerface"] is not None or f["dlib"] is None:
                continue
            iou = float(box_iou(np.array([f["box"]]), np.array([c[:4]]))[0, 0])
            ix = max(0.0, min(f["box"][2], c[2]) - max(f["box"][0], c[0]))
            iy = max(0.0, min(f["box"][3], c[3]) - max(f["box"][1], c[1]))
            inside = ix * iy / max(min(_area(f["box"]), _area(c)), 1e-6)
            if (iou >= MATCH_IOU or inside >= MATCH_INSIDE) and iou > best_iou:
                best, best_iou = i, iou
        if best is None:
            faces.append({"box": list(c[:4]), "dlib": None, "centerface": c[4]})
        else:
            faces[best]["centerface"] = c[4]
            if _area(c) > _area(faces[best]["box"]):
                faces[best]["box"] = list(c[:4])
    return faces


def face_size(box) -> float:
    return math.sqrt(_area(box))


def box_slices(box, shape) -> tuple[slice, slice] | None:
    h, w = shape[:2]
    x1, y1 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
    x2, y2 = min(math.ceil(box[2]), w), min(math.ceil(box[3]), h)
    if x2 <= x1 or y2 <= y1:
        return None
    return slice(y1, y2), slice(x1, x2)


def coverage(mask: np.ndarray, box) -> float | None:
    s = box_slices(box, mask.shape)
    return None if s is None else float(mask[s].mean())


def grown(box, grow: float = GROW) -> list[float]:
    w, h = box[2] - box[0], box[3] - box[1]
    return [box[0] - grow * w, box[1] - grow * h, box[2] + grow * w, box[3] + grow * h]


def boxes_mask(boxes, shape, grow: float = 0.0) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    for b in boxes:
        s = box_slices(grown(b, grow) if grow else b, shape)
        if s is not None:
            mask[s] = True
    return mask


# --- what each system paints ----------------------------------------------------------

def painted_mask(original: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Pixels moved at least halfway towards MAGENTA (alpha >= 0.5 of the solid fill)."""
    o = original.astype(np.int16)
    moved = np.abs(output.astype(np.int16) - o).sum(axis=2)
    room = np.abs(np.array(MAGENTA, np.int16) - o).sum(axis=2)
    return moved * 2 >= np.maximum(room, 1)


def masquerade_masks(path: Path, indices: list[int]) -> tuple[dict, dict]:
    """Run each preset's FramePipeline from frame 0 until every sampled frame is out.

    Pipelines with `push` (frames held back `tracker.backfill_frames` so faces found late
    also cover the frames before) are fed until the sampled frames come out, so each has
    its full backfill; older ones without it use `process`, one frame in, one out."""
    from masquerade.pipeline.runner import FramePipeline
    from masquerade.streams import Frame, PyAVSource

    overrides = ["anonymizer.mode=solid", f"anonymizer.color=[{', '.join(map(str, MAGENTA))}]",
                 "pipeline.progress=false"]
    pipes = {name: FramePipeline.from_config(load_config(cfg, overrides))
             for name, cfg in PRESETS.items()}
    wanted = set(indices)
    originals: dict[int, np.ndarray] = {}
    out: dict[str, dict[int, dict]] = {name: {} for name in pipes}
    seconds = dict.fromkeys(pipes, 0.0)
    frames_run = 0

    def record(name: str, frame, faces) -> None:
        if frame.index in wanted:
            out[name][frame.index] = {
                "mask": painted_mask(originals[frame.index], frame.image),
                "boxes": np.round(faces.xyxy, 1).tolist(),
                "coasting": ([] if faces.coasting is None
                             else [bool(c) for c in faces.coasting]),
            }

    def done() -> bool:
        return all(len(v) == len(wanted) for v in out.values())

    with PyAVSource(str(path)) as source:
        for item in source:
            if not isinstance(item, Frame):
                continue
            if done():
                break
            frames_run += 1
            if item.index in wanted:
                originals[item.index] = item.image.copy()
            for name, pipe in pipes.items():
                frame = dataclasses.replace(item, image=item.image.copy())
                t = time.perf_counter()
                if hasattr(pipe, "push"):
                    due = pipe.push(frame)
                else:
                    result = pipe.process(frame)
                    due = [(result if result is not None else frame, pipe.last_faces)]
                seconds[name] += time.perf_counter() - t
                for f, faces in due:
                    record(name, f, faces)
        for name, pipe in pipes.items():
            if hasattr(pipe, "drain") and len(out[name]) < len(wanted):
                for f, faces in pipe.drain():  # the clip ended within the backfill
                    record(name, f, faces)
            for index in wanted - set(out[name]):  # dropped (on_error): nothing shown
                out[name][index] = {"mask": np.ones(originals[index].shape[:2], bool),
                                    "boxes": [], "coasting": [], "dropped": True}
    info = {name: {"frames_run": frames_run, "seconds": round(seconds[name], 2),
                   "ms_per_frame": round(1000 * seconds[name] / max(frames_run, 1), 1),
                   "backfill_frames": getattr(pipes[name].config.tracker, "backfill_frames",
                                              None),
                   "frames_covered_whole": pipes[name].stats.frames_covered,
                   "stage_errors": dict(pipes[name].stats.stage_errors)}
            for name in pipes}
    return out, info


def code_state() -> dict:
    """HEAD and a hash of the working tree's masquerade/ and configs/ (others may be
    editing the checkout while this runs: compare the start and end states)."""
    import hashlib

    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()
    digest = hashlib.sha256()
    files = sorted([*(REPO_ROOT / "masquerade").rglob("*.py"),
                    *(REPO_ROOT / "configs").glob("*.yaml")])
    for f in files:
        digest.update(str(f.relative_to(REPO_ROOT)).encode())
        digest.update(f.read_bytes())
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--",
                            "masquerade", "configs"], capture_output=True, text=True,
                           check=False).stdout.split("\n")
    return {"head": head, "tree_sha256": digest.hexdigest()[:16],
            "uncommitted": sorted(line[3:] for line in dirty if line.strip())}


# --- metrics ----------------------------------------------------------------------------

def frame_metrics(ref_sets: dict[str, list[dict]], union_boxes: list, masks: dict[str, np.ndarray]
                  ) -> tuple[list[dict], dict[str, dict]]:
    """Per reference face: size and painted share per system; per system: area numbers."""
    rows = []
    for ref_name, faces in ref_sets.items():
        for f in faces:
            row = {"ref": ref_name, "size": round(face_size(f["box"]), 1),
                   "box": [round(v, 1) for v in f["box"]],
                   "found_by": [k for k in ("dlib", "centerface", "truth") if f.get(k) is not None],
                   "dlib_conf": f.get("dlib"), "cf_score": f.get("centerface")}
            for system, mask in masks.items():
                c = coverage(mask, f["box"])
                row[system] = None if c is None else round(c, 3)
            rows.append(row)
    shape = next(iter(masks.values())).shape
    allowed = boxes_mask(union_boxes, shape, GROW)
    raw = boxes_mask(union_boxes, shape)
    areas = {}
    for system, mask in masks.items():
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        hit = set(np.unique(labels[raw & mask]).tolist())
        areas[system] = {"painted_px": int(mask.sum()), "outside_px": int((mask & ~allowed).sum()),
                         "blobs": n - 1, "blobs_without_reference": len(set(range(1, n)) - hit)}
    return rows, areas


def _confident(r: dict) -> bool:
    return r.get("truth") is not None or "truth" in r.get("found_by", ()) or max(
        r.get("dlib_conf") or 0.0, r.get("cf_score") or 0.0) >= CONFIDENT


def recall(rows: list[dict], system: str, ref: str = "union", threshold: float = FULL,
           min_size: float = 0.0, max_size: float = math.inf) -> dict:
    """`ref` "union_confident": union faces with a reference score >= CONFIDENT."""
    base = "union" if ref == "union_confident" else ref
    sel = [r for r in rows if r["ref"] == base and r.get(system) is not None
           and min_size <= r["size"] < max_size
           and (ref != "union_confident" or _confident(r))]
    hit = sum(r[system] >= threshold for r in sel)
    return {"faces": len(sel), "covered": hit,
            "recall": round(hit / len(sel), 4) if sel else None}


def summarize(rows: list[dict], areas: list[dict], ref_names: list[str]) -> dict:
    out: dict = {}
    for system in SYSTEMS:
        s: dict = {}
        for ref in ref_names:
            s[f"recall90_{ref}"] = recall(rows, system, ref, FULL)
            s[f"recall50_{ref}"] = recall(rows, system, ref, HALF)
        s["recall90_union_confident"] = recall(rows, system, "union_confident", FULL)
        s["recall50_union_confident"] = recall(rows, system, "union_confident", HALF)
        s["recall90_union_by_size"] = {name: recall(rows, system, "union", FULL, lo, hi)
                                       for name, lo, hi in BUCKETS}
        if system in MIN_FACE:
            s["recall90_union_at_min_size"] = recall(rows, system, "union", FULL,
                                                     MIN_FACE[system])
            s["recall90_union_confident_at_min_size"] = recall(
                rows, system, "union_confident", FULL, MIN_FACE[system])
            s["min_face_px"] = MIN_FACE[system]
        painted = sum(a[system]["painted_px"] for a in areas)
        outside = sum(a[system]["outside_px"] for a in areas)
        s["painted_px"], s["outside_px"] = painted, outside
        s["outside_share"] = round(outside / painted, 4) if painted else None
        s["blobs"] = sum(a[system]["blobs"] for a in areas)
        s["blobs_without_reference"] = sum(a[system]["blobs_without_reference"] for a in areas)
        out[system] = s
    return out


# --- clips ------------------------------------------------------------------------------

def make_generated(folder: Path, frames: int) -> list[tuple[Path, object]]:
    """1080p synthetic clips with exact boxes: the demo layout and the edges layout from
    32 px (the live preset's target minimum)."""
    from masquerade.synthetic import Scenario, write_clip

    out = []
    for name, scenario in (
        ("generated_edges_1080p", Scenario(width=1920, height=1080, fps=30, frames=frames,
                                           audio=False, layout="edges", face_px=32.0)),
    ):
        path = folder / f"{name}.mp4"
        write_clip(path, scenario)
        out.append((path, scenario))
    return out


def truth_faces(scenario, index: int, shape) -> list[dict]:
    h, w = shape[:2]
    faces = []
    for g in scenario.ground_truth(index):
        if g.occluded or g.inside < 0.5:
            continue
        x1, y1, x2, y2 = g.xyxy
        faces.append({"box": [max(x1, 0.0), max(y1, 0.0), min(x2, w), min(y2, h)],
                      "truth": 1.0})
    return faces


def evaluate_clip(path: Path, indices: list[int], cache: refs.ReferenceCache, args,
                  scenario=None, pictures: dict | None = None) -> dict:
    log.info("%s: samples %s", path.name, indices)
    frames = refs.read_frames(path, indices)
    indices = sorted(frames)
    t0 = time.perf_counter()
    cf = refs.centerface_and_deface(frames, args.deface_python, backend="onnxrt")
    masq, masq_info = masquerade_masks(path, indices)
    dlib = {}
    if scenario is None:
        dlib, _ = refs.dlib_references(cache, path.name, frames,
                                       wait_s=args.wait_for_references)
    rows, areas, per_frame = [], [], []
    for index in indices:
        cf_boxes = cf["frames"][index]["boxes"]
        masks = {"masquerade_default": masq["masquerade_default"][index]["mask"],
                 "masquerade_live": masq["masquerade_live"][index]["mask"],
                 "deface": cf["frames"][index]["mask"]}
        if scenario is None:
            dlib_boxes = dlib[index]["boxes"]
            union = merge_references(dlib_boxes, cf_boxes)
            ref_sets = {"union": union,
                        "dlib": [{"box": b[:4], "dlib": b[4]} for b in dlib_boxes],
                        "centerface": [{"box": b[:4], "centerface": b[4]} for b in cf_boxes]}
        else:
            union = truth_faces(scenario, index, frames[index].shape)
            ref_sets = {"union": union}
        frame_rows, frame_areas = frame_metrics(ref_sets, [f["box"] for f in union], masks)
        for r in frame_rows:
            r["frame"] = index
        rows += frame_rows
        areas.append(frame_areas)
        per_frame.append({
            "frame": index, "areas": frame_areas,
            "dlib": dlib[index]["boxes"] if dlib else None,
            "dlib_seconds": dlib[index]["seconds"] if dlib else None,
            "centerface": [[round(v, 2) for v in b] for b in cf_boxes],
            **{f"{name}_boxes": masq[name][index]["boxes"] for name in PRESETS},
            **{f"{name}_coasting": masq[name][index]["coasting"] for name in PRESETS},
        })
        if pictures is not None:
            pictures[(path.name, index)] = (frames[index], masks, union)
    ref_names = ["union"] if scenario is not None else ["union", "dlib", "centerface"]
    result = {
        "clip": path.name, "generated": scenario is not None,
        "size": list(next(iter(frames.values())).shape[:2]), "frames_sampled": indices,
        "summary": summarize(rows, areas, ref_names), "faces": rows, "per_frame": per_frame,
        "masquerade_in_process": masq_info, "centerface_backend": cf["backend"],
        "deface_version": cf["deface_version"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    u = result["summary"]
    log.info("%s: union faces %s | recall90 default %s live %s deface %s | outside %s %s %s",
             path.name, u["deface"]["recall90_union"]["faces"],
             *(u[s]["recall90_union"]["recall"] for s in SYSTEMS),
             *(u[s]["outside_share"] for s in SYSTEMS))
    return result


# --- speed ------------------------------------------------------------------------------

def trim(src: Path, dst: Path, frames: int) -> int:
    """First `frames` frames re-encoded (x264 crf 16): both tools read the same file."""
    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s = inp.streams.video[0]
        rate = s.average_rate or Fraction(25)
        o = out.add_stream("libx264", rate=rate)
        o.width, o.height, o.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv420p"
        o.options = {"crf": "16", "preset": "veryfast"}
        for f in inp.decode(s):
            if n >= frames:
                break
            vf = av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")
            vf.pts = n
            vf.time_base = Fraction(1) / rate
            out.mux(o.encode(vf))
            n += 1
        out.mux(o.encode(None))
    return n


def timed(cmd: list[str], env: dict) -> dict:
    load = os.getloadavg()
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t
    if done.returncode:
        log.error("%s failed (%d): %s", cmd[0], done.returncode, done.stderr[-1500:])
    return {"wall_s": round(wall, 2), "rc": done.returncode,
            "load_before": [round(v, 2) for v in load],
            "load_after": [round(v, 2) for v in os.getloadavg()]}


def run_tools(short: Path, stem: str, args, tmp: Path, env: dict) -> dict:
    entry: dict = {}
    for name, cfg in PRESETS.items():
        out = tmp / f"{stem}.{name}.mp4"
        summary = tmp / f"{stem}.{name}.json"
        summary.unlink(missing_ok=True)
        cmd = [str(args.masquerade_bin), "run", str(short), "-o", str(out),
               "--mode", "blur", "--overwrite", "--summary-json", str(summary),
               "--set", "pipeline.progress=false"]
        if cfg is not None:
            cmd += ["--config", str(cfg)]
        r = timed(cmd, env)
        if summary.is_file():
            r["pipeline_fps"] = json.loads(summary.read_text()).get("fps")
        entry[name] = r
    for backend in args.deface_backends:
        out = tmp / f"{stem}.deface.{backend}.mp4"
        entry[f"deface_{backend}"] = timed(
            [str(args.deface_bin), str(short), "-o", str(out), "--backend", backend], env)
    return entry


def speed(clips: list[Path], args, tmp: Path) -> dict:
    """Whole CLI runs; `startup` = the same commands on a 1-frame clip (imports, model
    loading; the faster of two runs), subtracted for
    `steady_fps` = (frames - 1) / (wall - startup)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    smallest = min(clips, key=lambda p: p.stat().st_size)
    one = tmp / "startup.speed.mp4"
    trim(smallest, one, 1)
    first, second = (run_tools(one, "startup", args, tmp, env) for _ in range(2))
    startup = {k: min(first[k], second[k], key=lambda r: r["wall_s"]) for k in first}
    results: dict = {"_startup": {"clip": smallest.name, **startup}}
    for path in clips:
        short = tmp / f"{path.stem}.speed.mp4"
        n = trim(path, short, args.speed_frames)
        entry: dict = {"frames": n, **run_tools(short, path.stem, args, tmp, env)}
        for key, r in entry.items():
            if isinstance(r, dict):
                ok = r["wall_s"] > 0 and not r["rc"]
                r["fps"] = round(n / r["wall_s"], 2) if ok else None
                extra = r["wall_s"] - startup[key]["wall_s"]
                r["steady_fps"] = round((n - 1) / extra, 2) if ok and extra > 0 else None
        log.info("speed %s (%d frames): %s", path.name, n,
                 {k: v["fps"] for k, v in entry.items() if isinstance(v, dict)})
        results[path.name] = entry
    return results


# --- pictures ---------------------------------------------------------------------------

def _panel(frame: np.ndarray, mask: np.ndarray | None, union: list[dict], system: str | None,
           title: str) -> np.ndarray:
    img = frame.copy()
    if mask is not None:
        overlay = img.copy()
        overlay[mask] = MAGENTA
        img = cv2.addWeighted(overlay, 0.6, img, 0.4, 0)
    thick = max(1, round(max(img.shape[:2]) / 640))
    for f in union:
        s = box_slices(f["box"], mask.shape if mask is not None else img.shape)
        if s is None:
            continue
        if mask is None:  # original: green = dlib and CenterFace, yellow = dlib, cyan = CF
            color = ((0, 255, 0) if f.get("dlib") is not None and f.get("centerface") is not None
                     else (255, 255, 0) if f.get("dlib") is not None else (0, 255, 255))
        else:
            c = float(mask[s].mean())
            color = (0, 255, 0) if c >= FULL else (255, 160, 0) if c >= HALF else (255, 0, 0)
        x1, y1, x2, y2 = (round(v) for v in f["box"])
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick)
    band = max(18, img.shape[0] // 30)
    cv2.rectangle(img, (0, 0), (img.shape[1], band + 6), (0, 0, 0), -1)
    cv2.putText(img, title, (6, band), cv2.FONT_HERSHEY_SIMPLEX, band / 30, (255, 255, 255),
                max(1, thick), cv2.LINE_AA)
    return img


def side_by_side(path: Path, frame: np.ndarray, masks: dict, union: list[dict]) -> None:
    panels = [
        _panel(frame, None, union, None, "original + references"),
        _panel(frame, masks["masquerade_default"], union, "masquerade_default",
               "Masquerade default"),
        _panel(frame, masks["deface"], union, "deface", "deface default"),
    ]
    sep = np.full((frame.shape[0], 4, 3), 255, np.uint8)
    image = np.concatenate([panels[0], sep, panels[1], sep, panels[2]], axis=1)
    cv2.imwrite(str(path), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    log.info("wrote %s", path)


def pick_pictures(results: list[dict], pictures: dict, out_dir: Path, count: int,
                  extra: list[str]) -> list[str]:
    """The `count` real clips with the lowest default recall (then largest outside share);
    of each, the sampled frame with the most missed faces (then most outside paint);
    then each `extra` CLIP:FRAME that was sampled."""
    real = [r for r in results if not r["generated"]
            and r["summary"]["masquerade_default"]["recall90_union"]["faces"]]

    def clip_key(r):
        s = r["summary"]["masquerade_default"]
        return (s["recall90_union"]["recall"], -(s["outside_share"] or 0))

    written = []
    for r in sorted(real, key=clip_key)[:count]:
        def frame_key(pf, r=r):
            missed = sum(1 for f in r["faces"] if f["frame"] == pf["frame"]
                         and f["ref"] == "union" and (f["masquerade_default"] or 0) < FULL)
            return (-missed, -pf["areas"]["masquerade_default"]["outside_px"])

        worst = min(r["per_frame"], key=frame_key)
        frame, masks, union = pictures[(r["clip"], worst["frame"])]
        name = f"{Path(r['clip']).stem}_f{worst['frame']:04d}.jpg"
        side_by_side(out_dir / name, frame, masks, union)
        written.append(name)
    for item in extra:
        clip, _, index = item.rpartition(":")
        name = f"{Path(clip).stem}_f{int(index):04d}.jpg"
        if (clip, int(index)) not in pictures:
            log.warning("--picture %s: not a sampled frame", item)
        elif name not in written:
            side_by_side(out_dir / name, *pictures[(clip, int(index))])
            written.append(name)
    return written


# --- report -----------------------------------------------------------------------------

def backfill_scores(report: dict) -> None:
    """Rows written before they carried reference scores get them from `per_frame`."""
    for c in report["clips"]:
        frames = {p["frame"]: p for p in c["per_frame"]}
        for r in c["faces"]:
            if "dlib_conf" in r:
                continue
            p = frames[r["frame"]]
            pools = {"union": [(f["box"], f["dlib"], f["centerface"])
                               for f in merge_references(p["dlib"], p["centerface"])],
                     "dlib": [(b[:4], b[4], None) for b in p["dlib"]],
                     "centerface": [(b[:4], None, b[4]) for b in p["centerface"]]}
            best = min(pools[r["ref"]], key=lambda m, r=r: max(
                abs(a - b) for a, b in zip(m[0], r["box"], strict=True)))
            r["dlib_conf"], r["cf_score"] = best[1], best[2]


def resummarize(report: dict) -> None:
    for c in [*report["clips"], *report["generated_clips"]]:
        names = ["union"] if c["generated"] else ["union", "dlib", "centerface"]
        c["summary"] = summarize(c["faces"], [p["areas"] for p in c["per_frame"]], names)
    results = [*report["clips"], *report["generated_clips"]]
    report["overall"], report["generated"] = pooled(results, False), pooled(results, True)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _rc(d: dict) -> str:
    return "-" if not d["faces"] else f"{_pct(d['recall'])} ({d['covered']}/{d['faces']})"


def pooled(results: list[dict], generated: bool) -> dict:
    sel = [r for r in results if r["generated"] == generated]
    if not sel:
        return {}
    rows = [dict(f, clip=r["clip"]) for r in sel for f in r["faces"]]
    areas = [pf["areas"] for r in sel for pf in r["per_frame"]]
    names = ["union"] if generated else ["union", "dlib", "centerface"]
    return summarize(rows, areas, names)


def speed_totals(speed_results: dict, keys: list[str]) -> dict:
    """Frames / total wall s over all timed clips, and the same without startup."""
    out: dict = {}
    start = speed_results.get("_startup", {})
    clips = [e for k, e in speed_results.items() if not k.startswith("_")]
    for key in keys:
        ok = [e for e in clips if e.get(key, {}).get("fps")]
        frames = sum(e["frames"] for e in ok)
        wall = sum(e[key]["wall_s"] for e in ok)
        out[key] = round(frames / wall, 2) if wall else None
        extra = wall - len(ok) * start.get(key, {}).get("wall_s", 0.0)
        out[f"{key}_steady"] = (round((frames - len(ok)) / extra, 2)
                                if ok and extra > 0 else None)
    return out


def write_markdown(report: dict, path: Path, notes: str) -> None:
    r = report
    lines = ["# Detection coverage: Masquerade presets vs deface (issue 14)", "",
             f"Generated by `tools/eval/detection_coverage.py` on {r['date']}; every number "
             "is in `coverage.json`. Machine: " + r["machine"]["cpu"]
             + f", {r['machine']['cores']} cores, load average at start "
             f"{r['machine']['load_start']}, at end {r['machine']['load_end']} "
             "(shared machine; runs under `nice -n 15`).", "",
             "How: " + r["method"], ""]
    code = r.get("code")
    if code:
        same = code["start"]["tree_sha256"] == code["end"]["tree_sha256"]
        lines += [f"Code measured: HEAD {code['start']['head'][:10]} plus "
                  f"{len(code['start']['uncommitted'])} uncommitted files in masquerade/ and "
                  f"configs/ (tree hash {code['start']['tree_sha256']}"
                  + (", unchanged to the end of the run)." if same else
                     f"; **it changed during the run**, to {code['end']['tree_sha256']}: "
                     "later clips and the speed runs may have used newer code)."), ""]
    systems = ("masquerade_default", "masquerade_live", "deface")
    lines += ["## Recall (reference = dlib CNN ∪ CenterFace; face counted when >= 90% of its "
              "box is painted)", "",
              "| clip | faces | default | live | live, faces >= 48 px | deface |",
              "|---|---|---|---|---|---|"]
    for c in r["clips"]:
        s = c["summary"]
        lines.append(f"| {c['clip']} | {s['deface']['recall90_union']['faces']} | "
                     + " | ".join([_rc(s["masquerade_default"]["recall90_union"]),
                                   _rc(s["masquerade_live"]["recall90_union"]),
                                   _rc(s["masquerade_live"]["recall90_union_at_min_size"]),
                                   _rc(s["deface"]["recall90_union"])]) + " |")
    for label, key in (("**all real clips**", "overall"), ("**generated**", "generated")):
        s = r.get(key) or {}
        if s:
            lines.append(f"| {label} | {s['deface']['recall90_union']['faces']} | "
                         + " | ".join([_rc(s["masquerade_default"]["recall90_union"]),
                                       _rc(s["masquerade_live"]["recall90_union"]),
                                       _rc(s["masquerade_live"]["recall90_union_at_min_size"]),
                                       _rc(s["deface"]["recall90_union"])]) + " |")
    lines += ["", f"Same, against confident reference faces only (dlib confidence or CenterFace "
              f"score >= {CONFIDENT}; drops low-score CenterFace boxes on heraldry, dark "
              "blur and the like):", "",
              "| clip | faces | default | live | live, faces >= 48 px | deface |",
              "|---|---|---|---|---|---|"]
    for c in [*r["clips"], {"clip": "**all real clips**", "summary": r["overall"]}]:
        s = c["summary"]
        lines.append(f"| {c['clip']} | {s['deface']['recall90_union_confident']['faces']} | "
                     + " | ".join([
                         _rc(s["masquerade_default"]["recall90_union_confident"]),
                         _rc(s["masquerade_live"]["recall90_union_confident"]),
                         _rc(s["masquerade_live"]["recall90_union_confident_at_min_size"]),
                         _rc(s["deface"]["recall90_union_confident"])]) + " |")
    o = r["overall"]
    lines += ["", "All real clips pooled, by reference and threshold:", "",
              "| reference | painted share | default | live | deface |", "|---|---|---|---|---|"]
    for ref in ("union", "union_confident", "dlib", "centerface"):
        for th in ("90", "50"):
            lines.append(f"| {ref} | >= {th}% | "
                         + " | ".join(_rc(o[s][f"recall{th}_{ref}"]) for s in systems) + " |")
    lines += ["", "By face size (sqrt of the reference box area; union, >= 90%):", "",
              "| size | default | live | deface |", "|---|---|---|---|"]
    for name, _, _ in BUCKETS:
        lines.append(f"| {name} px | "
                     + " | ".join(_rc(o[s]["recall90_union_by_size"][name]) for s in systems)
                     + " |")
    lines += ["", "## Precision: painted area outside every reference box (grown 25% per "
              "side), share of painted area (target <= 10%)", "",
              "| clip | default | live | deface | blobs with no reference face "
              "(default / live / deface) |", "|---|---|---|---|---|"]
    for c in [*r["clips"], {"clip": "**all real clips**", "summary": r["overall"]}]:
        s = c["summary"]
        lines.append(f"| {c['clip']} | " + " | ".join(_pct(s[x]["outside_share"]) for x in systems)
                     + " | " + " / ".join(f"{s[x]['blobs_without_reference']} of {s[x]['blobs']}"
                                          for x in systems) + " |")
    sp = r.get("speed") or {}
    if sp:
        keys = ["masquerade_default", "masquerade_live",
                *[f"deface_{b}" for b in r["settings"]["deface_backends"]]]
        start = sp.get("_startup", {})
        lines += ["", "## Speed: frames / wall-clock second of the whole CLI run "
                  f"(first {r['settings']['speed_frames']} frames, blur)", "",
                  "Each cell: frames / wall s of the whole command (the issue's measure), and "
                  "in brackets without start-up, (frames - 1) / (wall - wall of the same "
                  "command on a 1-frame clip). Start-up (1-frame clip "
                  f"{start.get('clip', '-')}): "
                  + ", ".join(f"{k} {start[k]['wall_s']} s" for k in keys if k in start)
                  + ". Timed one after another, niced, on the shared machine; load averages "
                  "are in coverage.json.", "",
                  "| clip | frames | " + " | ".join(keys) + " | default / deface_"
                  + r["settings"]["deface_backends"][0] + " |",
                  "|---|---|" + "---|" * len(keys) + "---|"]
        first = f"deface_{r['settings']['deface_backends'][0]}"

        def cell(d: dict) -> str:
            return f"{d.get('fps', '-')} ({d.get('steady_fps', '-')})"

        def ratio(a, b) -> str:
            return f"{a / b:.2f}x" if a and b else "-"

        for clip, e in sp.items():
            if clip.startswith("_"):
                continue
            m, d = e["masquerade_default"], e.get(first, {})
            lines.append(f"| {clip} | {e['frames']} | "
                         + " | ".join(cell(e.get(k, {})) for k in keys)
                         + f" | {ratio(m.get('fps'), d.get('fps'))}"
                         + f" ({ratio(m.get('steady_fps'), d.get('steady_fps'))}) |")
        tot = r["speed_overall"]
        lines.append("| **all (frames / total s)** | | "
                     + " | ".join(f"{tot.get(k, '-')} ({tot.get(k + '_steady', '-')})"
                                  for k in keys)
                     + f" | {ratio(tot.get('masquerade_default'), tot.get(first))}"
                     + " (" + ratio(tot.get("masquerade_default_steady"),
                                    tot.get(first + "_steady")) + ") |")
    lines += ["", "## Settings", "", "```", json.dumps(r["settings"], indent=1), "```", ""]
    if r.get("pictures"):
        lines += ["## Pictures", "", "Original | Masquerade default | deface, native size. "
                  "Left: reference faces, green = dlib and CenterFace, yellow = dlib only, "
                  "cyan = CenterFace only. Middle and right: magenta = painted; box colour = "
                  "that system's cover of the face (green >= 90%, orange >= 50%, red < 50%).",
                  ""]
        lines += [f"- [{p}]({p})" for p in r["pictures"]]
        lines.append("")
    if notes:
        lines += ["## Observations", "", notes.strip(), ""]
    path.write_text("\n".join(lines))
    log.info("wrote %s", path)


def machine_info() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"uname": " ".join(platform.uname()), "cpu": cpu, "cores": os.cpu_count(),
            "python": sys.version.split()[0], "niceness": os.nice(0),
            "load_start": [round(v, 2) for v in os.getloadavg()]}


METHOD = (
    "frames sampled every Nth frame of each clip's first `max_frame` frames; reference faces "
    "from dlib's CNN detector (face_recognition_models, upsample `dlib_upsample`) and deface's "
    "CenterFace (threshold 0.2), merged; Masquerade's painted mask from its real FramePipeline "
    "run from frame 0 in solid magenta (alpha >= 0.5), tracker coasting, padding, ellipse and "
    "feather included; deface's from its own anonymize_frame on its CenterFace boxes "
    "(default blur ellipse, mask scale 1.3). Note that the CenterFace reference is the very "
    "detector deface uses, so deface's recall against it is ~100% by construction: the dlib "
    "and union columns are the informative ones for deface.")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Run with OMP_NUM_THREADS=1 nice -n 15 on a shared machine.")
    refs.add_sampling_args(parser)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--deface-python", type=Path, default=refs.DEFACE_PYTHON)
    parser.add_argument("--deface-bin", type=Path, default=DEFACE_BIN)
    parser.add_argument("--masquerade-bin", type=Path, default=MASQUERADE_BIN)
    parser.add_argument("--deface-backends", nargs="+", default=["onnxrt", "opencv"],
                        help="deface --backend values to time (first = the speed baseline)")
    parser.add_argument("--speed-frames", type=int, default=150)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--speed-clips", nargs="*", default=None,
                        help="clip names to time (default: all evaluated clips)")
    parser.add_argument("--generated", type=int, default=0, metavar="FRAMES",
                        help="also evaluate a generated 1080p clip of this many frames")
    parser.add_argument("--wait-for-references", type=float, default=0.0, metavar="S",
                        help="wait up to S s per clip for a concurrent reference_faces.py "
                             "run to cache dlib boxes instead of computing them here")
    parser.add_argument("--pictures", type=int, default=2, help="worst clips to picture")
    parser.add_argument("--picture", action="append", default=[], metavar="CLIP:FRAME",
                        help="also picture this sampled frame")
    parser.add_argument("--notes", type=Path, default=None,
                        help="markdown kept in coverage.json and shown in coverage.md as "
                             "Observations (--report-only keeps the stored one without it)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite coverage.md from coverage.json, run nothing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out_dir / "coverage.json", args.out_dir / "coverage.md"
    notes = args.notes.read_text() if args.notes else ""
    if args.report_only:
        report = json.loads(json_path.read_text())
        backfill_scores(report)
        resummarize(report)
        report["notes"] = notes or report.get("notes", "")
        notes = report["notes"]
        json_path.write_text(json.dumps(report, indent=1))
        write_markdown(report, md_path, notes)
        return
    started = time.perf_counter()
    machine = machine_info()
    code_start = code_state()
    cache = refs.ReferenceCache(args.cache, args.dlib_upsample)
    results, pictures = [], {}
    clips = refs.selected_clips(args)
    with tempfile.TemporaryDirectory(prefix="coverage-") as tmp_name:
        tmp = Path(tmp_name)
        for path in clips:
            _, indices = refs.clip_samples(path, args)
            results.append(evaluate_clip(path, indices, cache, args, pictures=pictures))
        generated = make_generated(tmp, args.generated) if args.generated else []
        for path, scenario in generated:
            indices = refs.sample_indices(scenario.frames, args.frames_per_clip, args.max_frame)
            results.append(evaluate_clip(path, indices, cache, args, scenario=scenario))
        picture_names = pick_pictures(results, pictures, args.out_dir, args.pictures,
                                      args.picture)
        speed_results = {}
        if not args.skip_speed:
            chosen = [p for p in [*clips, *(g[0] for g in generated)]
                      if args.speed_clips is None or p.name in args.speed_clips]
            speed_results = speed(chosen, args, tmp)
    machine["load_end"] = [round(v, 2) for v in os.getloadavg()]
    keys = ["masquerade_default", "masquerade_live",
            *[f"deface_{b}" for b in args.deface_backends]]
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings.update({"dlib_min_face_px_approx": refs.DLIB_WINDOW_PX / 2**args.dlib_upsample,
                     "centerface_threshold": refs.CENTERFACE_THRESHOLD,
                     "deface_mask_scale": refs.DEFACE_MASK_SCALE, "reference_grow": GROW,
                     "match_iou": MATCH_IOU, "match_inside": MATCH_INSIDE,
                     "painted_alpha": 0.5, "presets": {k: str(v) for k, v in PRESETS.items()},
                     "omp_num_threads": os.environ.get("OMP_NUM_THREADS")})
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine, "method": METHOD,
        "settings": settings, "clips": [r for r in results if not r["generated"]],
        "generated_clips": [r for r in results if r["generated"]],
        "overall": pooled(results, False), "generated": pooled(results, True),
        "speed": speed_results, "speed_overall": speed_totals(speed_results, keys),
        "pictures": picture_names, "total_seconds": round(time.perf_counter() - started, 1),
        "notes": notes,
        "code": {"start": code_start, "end": code_state()},
    }
    json_path.write_text(json.dumps(report, indent=1))
    log.info("wrote %s", json_path)
    write_markdown(report, md_path, notes)
    o = report["overall"]
    for system in SYSTEMS:
        log.info("%-20s recall90 union %s dlib %s centerface %s | outside share %s",
                 system, _rc(o[system]["recall90_union"]), _rc(o[system]["recall90_dlib"]),
                 _rc(o[system]["recall90_centerface"]), _pct(o[system]["outside_share"]))
    log.info("speed (frames / total wall s): %s", report["speed_overall"])


if __name__ == "__main__":
    main()
