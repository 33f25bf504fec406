"""Restore faces de-identified with `--mode deid`, given the key (Cao et al. eq. 16-18).

`run --mode deid` writes a track log beside its output (`OUTPUT.tracks.json`): for each
frame, where each generated face is, its keypoints and its track id. It holds no identity
and no key material; it tells `restore` which track password applies to which face,
which re-detection and re-tracking could not guarantee. Restoring computes
z = M^-1(E_id(fake), p_track, d) once per track and renders G(z, E_attr(face)). With a
wrong key the inverse lands on yet another identity: a different fake, never an error.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from masquerade.anonymizers.base import uses_generator
from masquerade.config import AnonymizerConfig, Config, build_dataclass
from masquerade.errors import InputError
from masquerade.faces import Faces
from masquerade.keys import SecretKey
from masquerade.pipeline.compositing import Compositor
from masquerade.pipeline.runner import FramePipeline, RunResult, run_file
from masquerade.streams import Frame

log = logging.getLogger(__name__)

TRACK_LOG_VERSION = 2  # 2: identity_transform, identity_refresh_distance (1: rotation, 0)
# Fakes of one track sit ~0.2 apart; a refresh moves them by ~0.75x the face's move.
RESTORE_REFRESH_FRACTION = 0.65


def track_log_path(video: str | os.PathLike[str]) -> Path:
    return Path(f"{video}.tracks.json")


class TrackLog:
    """Generated faces per frame (by pts), plus the settings restore must mirror."""

    def __init__(self, meta: dict[str, Any]):
        self.meta = meta
        self.frames: dict[int, dict[str, list]] = {}

    def record(self, pts: int | None, faces: Faces, min_px: int, min_score: float = 0.0
               ) -> None:
        if pts is None or not len(faces):
            return
        size = np.maximum(1.0, np.minimum(faces.wh[:, 0], faces.wh[:, 1]))  # as FaceRegion
        generated = uses_generator(size, faces.scores, min_px, min_score)
        if not generated.any():
            return
        kept = faces[np.flatnonzero(generated)]
        self.frames[int(pts)] = {
            "xyxy": np.round(kept.xyxy, 2).tolist(),
            "track_ids": kept.track_ids.tolist(),
            "keypoints": None if kept.keypoints is None else np.round(kept.keypoints, 2).tolist(),
        }

    def faces_at(self, pts: int | None) -> Faces:
        row = self.frames.get(int(pts)) if pts is not None else None
        if row is None:
            return Faces.empty()
        return Faces(xyxy=row["xyxy"], track_ids=row["track_ids"], keypoints=row["keypoints"])

    def write(self, path: Path) -> None:
        """Atomically, like the video it belongs to."""
        data = {"version": TRACK_LOG_VERSION, "meta": self.meta,
                "frames": {str(k): v for k, v in self.frames.items()}}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> TrackLog:
        if not path.is_file():
            raise InputError(f"no track log {path}: restore needs the .tracks.json that "
                             "`masquerade run --mode deid` wrote beside the video")
        try:
            data = json.loads(path.read_text())
            log_ = cls(data["meta"])
            if data.get("version", 1) < 2:  # before the orthogonal transform and refreshes
                log_.meta["anonymizer"].setdefault("identity_transform", "rotation")
                log_.meta["anonymizer"].setdefault("identity_refresh_distance", 0.0)
            log_.frames = {int(k): v for k, v in data["frames"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(f"track log {path} is damaged") from None
        return log_


class InverseKey:
    """Presents M^-1 as `apply`, so the keyed generator renders the recovered identity."""

    def __init__(self, key: Any):
        self.key = key

    def apply(self, z: np.ndarray, password: bytes, d: float) -> np.ndarray:
        return self.key.invert(z, password, d)


class TrackLogPipeline(FramePipeline):
    """Replays the faces of a track log instead of detecting and tracking them."""

    def __init__(self, track_log: TrackLog, compositor: Compositor, config: Config):
        super().__init__(detector=None, tracker=None, compositor=compositor,  # type: ignore[arg-type]
                         config=config)
        self.track_log = track_log

    def process(self, frame: Frame) -> Frame:
        # No fail-closed cover here: a restore that cannot render should stop, not hide.
        faces = self.track_log.faces_at(frame.pts)
        self.compositor.apply(frame.image, faces)
        self.last_faces = faces
        self.stats.faces += len(faces)
        return frame


def restore_file(input_url: str, output: str | os.PathLike[str], config: Config,
                 key: SecretKey, *, overwrite: bool = False) -> RunResult:
    from masquerade.anonymizers import identity_key
    from masquerade.anonymizers.deid import KeyedDeidAnonymizer

    track_log = TrackLog.read(track_log_path(input_url))
    meta = track_log.meta
    # Mask, padding, feather and the identity angle exactly as the de-identifying run had.
    run_config = build_dataclass(AnonymizerConfig, meta["anonymizer"])
    anonymizer = KeyedDeidAnonymizer(
        password=functools.partial(key.track_password, meta["stream_id"]),
        d=float(meta["privacy_level"]), key=InverseKey(identity_key(run_config)),
        engine=config.engine, identity_feedback=config.anonymizer.identity_feedback,
        # a refresh moves the fake by about what it moved the face, shrunk by the generator
        refresh_distance=RESTORE_REFRESH_FRACTION * run_config.identity_refresh_distance)
    pipeline = TrackLogPipeline(track_log, Compositor(anonymizer, run_config), config)
    return run_file(input_url, output, config, overwrite=overwrite, pipeline=pipeline,
                    record_tracks=False)
