"""The deid track log, `OUTPUT.tracks.json`: which track each generated face belongs to.

`run --mode deid` writes it beside its output: for each frame (by pts), where each
generated face is, its keypoints and its track id, plus the settings `restore` must
mirror. It holds no identity and no key material; it tells `restore` which track
password applies to which face, which re-detection and re-tracking could not guarantee.
It lives apart from both the runner (which writes it) and restore (which reads it) so
neither has to import the other for it, and reading checks the whole file against
`track_log_schema` first: the log travels with the video and may have been tampered with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from masquerade.anonymizers.base import uses_generator
from masquerade.errors import InputError
from masquerade.faces import Faces
from masquerade.outputs import PendingFile
from masquerade.pipeline.track_log_schema import TrackLogSchemaError, validate

TRACK_LOG_VERSION = 2  # 2: identity_transform, identity_refresh_distance (1: rotation, 0)


def track_log_path(video: str | os.PathLike[str]) -> Path:
    return Path(f"{video}.tracks.json")


class TrackLog:
    """Generated faces per frame (by pts), plus the settings restore must mirror."""

    def __init__(self, meta: dict[str, Any]):
        self.meta = meta  # stream_id, privacy_level, anonymizer, optional key_id
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

    def to_json(self) -> str:
        return json.dumps({"version": TRACK_LOG_VERSION, "meta": self.meta,
                           "frames": {str(k): v for k, v in self.frames.items()}})

    def write(self, path: Path) -> None:
        """Atomically, like the video it belongs to."""
        pending = PendingFile(path, overwrite=True)
        pending.write_text(self.to_json())
        pending.commit()

    @classmethod
    def read(cls, path: Path, frame_size: tuple[int, int] | None = None) -> TrackLog:
        """The log at `path`, validated; `frame_size` (width, height) bounds its boxes.

        Any flaw is an `InputError` naming the file and the field:
        `track log 'v.mp4.tracks.json': meta.privacy_level: 'x' ...`.
        """
        if not path.is_file():
            raise InputError(f"no track log {path}: restore needs the .tracks.json that "
                             "`masquerade run --mode deid` wrote beside the video")
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
            raise InputError(f"track log '{path}' is damaged: {reason}") from None
        try:
            validate(data, frame_size)
        except TrackLogSchemaError as exc:
            raise InputError(f"track log '{path}': {exc}") from None
        log_ = cls(data["meta"])
        if data["version"] < 2:  # before the orthogonal transform and refreshes
            log_.meta["anonymizer"].setdefault("identity_transform", "rotation")
            log_.meta["anonymizer"].setdefault("identity_refresh_distance", 0.0)
        # logs from before the residual composite and occluders: the render pasted whole
        log_.meta["anonymizer"].setdefault("deid_composite", "replace")
        log_.meta["anonymizer"].setdefault("occluders", "none")
        log_.frames = {int(k): v for k, v in data["frames"].items()}
        return log_
