"""Restore faces de-identified with `--mode deid`, given the key (Cao et al. eq. 16-18).

`run --mode deid` writes a track log beside its output (`OUTPUT.tracks.json`, see
`masquerade.pipeline.track_log`) that tells `restore` which track password applies to
which face. The log is validated against the video's frame size before any model loads,
so a damaged or forged log is a one-line input error, not a traceback. Restoring computes
z = M^-1(E_id(fake), p_track, d) once per track and renders G(z, E_attr(face)). With a
wrong key the inverse lands on yet another identity: a different fake. The log records the
key's public fingerprint (`meta.key_id`, absent before it existed), so restore refuses a
wrong key unless told to render with it anyway.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import numpy as np

from masquerade.config import AnonymizerConfig, Config, build_dataclass
from masquerade.faces import Faces
from masquerade.keys import SecretKey
from masquerade.pipeline.compositing import Compositor
from masquerade.pipeline.occluders import build_occluders
from masquerade.pipeline.runner import FramePipeline, RunResult, run_file
from masquerade.pipeline.track_log import TRACK_LOG_VERSION, TrackLog, track_log_path
from masquerade.streams import Frame
from masquerade.streams.pyav import PyAVSource

log = logging.getLogger(__name__)

# Fakes of one track sit ~0.2 apart; a refresh moves them by ~0.75x the face's move.
RESTORE_REFRESH_FRACTION = 0.65

__all__ = ["TRACK_LOG_VERSION", "TrackLog", "restore_file", "track_log_path"]


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

    def push(self, frame: Frame) -> list[tuple[Frame, Faces]]:
        """Frame by frame: the log already holds every face, backfilled ones included."""
        out = self.process(frame)
        return [(out, self.last_faces)]

    def drain(self) -> list[tuple[Frame, Faces]]:
        return []


def restore_file(input_url: str, output: str | os.PathLike[str], config: Config,
                 key: SecretKey, *, overwrite: bool = False, allow_wrong_key: bool = False
                 ) -> RunResult:
    """`allow_wrong_key` renders with a key whose fingerprint is not the recorded one."""
    from masquerade.anonymizers import identity_key
    from masquerade.anonymizers.deid import KeyedDeidAnonymizer
    from masquerade.keys.secret import check_key_id

    track_log = TrackLog.read(track_log_path(input_url), frame_size=_frame_size(input_url))
    meta = track_log.meta
    if not allow_wrong_key:
        check_key_id(key, meta.get("key_id"), input_url)
    # Mask, padding, feather and the identity angle exactly as the de-identifying run had.
    run_config = build_dataclass(AnonymizerConfig, meta["anonymizer"])
    anonymizer = KeyedDeidAnonymizer(
        password=functools.partial(key.track_password, meta["stream_id"]),
        d=float(meta["privacy_level"]), key=InverseKey(identity_key(run_config)),
        engine=config.engine, identity_feedback=config.anonymizer.identity_feedback,
        # a refresh moves the fake by about what it moved the face, shrunk by the generator
        refresh_distance=RESTORE_REFRESH_FRACTION * run_config.identity_refresh_distance,
        # the same composite undoes it: the change towards M^-1 of the fake's identity
        composite=run_config.deid_composite, gain=run_config.identity_gain)
    pipeline = TrackLogPipeline(
        track_log, Compositor(anonymizer, run_config, occluders=build_occluders(run_config)),
        config)
    return run_file(input_url, output, config, overwrite=overwrite, pipeline=pipeline,
                    record_tracks=False)


def _frame_size(input_url: str) -> tuple[int, int] | None:
    """(width, height) of the video's frames, which bound the log's boxes; None if unknown."""
    with PyAVSource(input_url) as source:
        info = source.info
    return (info.width, info.height) if info.width > 0 and info.height > 0 else None
