"""Writes a seal store (`format`) beside a video, frame by frame, as the video is written.

The store is streamed to a reserved temporary file (`outputs.PendingFile`): an hour of
sealed crops does not fit in memory. It is finished with the video and renamed with it
(`commit`, by the sink that owns it), or dropped with it (`abort`): a sealed video without
its seals, or seals of a video that was never published, would be worse than neither.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import cv2
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from masquerade import __version__
from masquerade.keys.seal_keys import SEAL_ID_BYTES, TrackKey, seal_index_key
from masquerade.keys.secret import SecretKey
from masquerade.outputs import PendingFile, write_failed
from masquerade.seals.format import (
    END,
    FORMAT_NAME,
    FRAME,
    INDEX_TAG,
    MAGIC,
    NONCE_BYTES,
    RECORD,
    RECORD_TAG,
    TAIL,
    VERSION,
    canonical_json,
    index_tag,
    record_aad,
    track_summary,
)
from masquerade.streams.frames import OriginalCrop

log = logging.getLogger(__name__)

# zlib level of the PNG crops: 1 is ~3x faster than the default 3 for ~5% more bytes.
PNG_LEVEL = 1


@dataclass
class _TrackState:
    key: TrackKey
    aead: AESGCM
    records: int = 0
    frames: int = 0
    first_frame: int = -1
    last_frame: int = -1
    first_pts: int = 0
    last_pts: int = 0
    tags: hashlib._Hash = field(default_factory=hashlib.sha256)  # type: ignore[name-defined]


@dataclass
class SealCost:
    """What sealing cost: bytes stored and seconds spent (reported in the summary)."""

    crops: int = 0
    raw_bytes: int = 0
    sealed_bytes: int = 0
    seconds: float = 0.0


class SealStoreWriter:
    """Seals the original crops of one output file under per-track keys."""

    def __init__(self, target: str | os.PathLike[str], key: SecretKey, stream_id: str,
                 overwrite: bool = False):
        self.pending = PendingFile(target, overwrite)
        self.target = self.pending.target
        self.key_id = key.key_id()
        self._master = key
        self.stream_id = stream_id
        self.seal_id = secrets.token_bytes(SEAL_ID_BYTES)  # binds keys and crops to this file
        self._index_key = seal_index_key(key.expose(), stream_id, self.seal_id)
        self._file: BinaryIO | None = None
        self._header = b""
        self._time_base: Fraction | None = None
        self._tracks: dict[int, _TrackState] = {}
        self.frames = 0
        self.start_pts = 0  # of the first frame: restore learns the container's time offset
        self.records = 0
        self.cost = SealCost()

    def _open(self, time_base: Fraction, width: int, height: int) -> None:
        header = {"format": FORMAT_NAME, "version": VERSION, "seal_id": self.seal_id.hex(),
                  "stream_id": self.stream_id, "key_id": self.key_id,
                  "time_base": f"{time_base.numerator}/{time_base.denominator}",
                  "width": width, "height": height, "crop_codec": "png",
                  "crop_pixels": "rgb24", "cipher": "AES-256-GCM",
                  "kdf": "HKDF-SHA256", "writer": f"masquerade {__version__}"}
        self._header = canonical_json(header)
        self._time_base = time_base
        try:
            self._file = open(self.pending.tmp, "wb")  # noqa: SIM115 (closed in finish/abort)
        except OSError as exc:
            raise write_failed(self.target, exc) from None
        self._write(MAGIC + len(self._header).to_bytes(4, "big") + self._header)

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        try:
            self._file.write(data)
        except OSError as exc:
            self.abort()
            raise write_failed(self.target, exc) from None

    def _track(self, track_id: int) -> _TrackState:
        state = self._tracks.get(track_id)
        if state is None:
            key = TrackKey.derive(self._master, self.stream_id, self.seal_id, track_id)
            state = self._tracks[track_id] = _TrackState(key, AESGCM(key.aead_key()))
        return state

    def add(self, frame_index: int, pts: int, time_base: Fraction, size: tuple[int, int],
            crops: list[OriginalCrop]) -> None:
        """Seal the crops of the frame written as `frame_index` at `pts` (every written
        frame is added, with or without crops, so the store knows the video's length)."""
        start = time.perf_counter()
        if self._file is None:
            self._open(time_base, *size)
            self.start_pts = pts
        elif time_base != self._time_base:
            raise ValueError("a seal store holds one time base")
        for crop in crops:
            ok, png = cv2.imencode(".png", crop.pixels, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
            if not ok:
                raise ValueError(f"cannot PNG-encode the crop of track {crop.track_id}")
            state = self._track(crop.track_id)
            nonce = secrets.token_bytes(NONCE_BYTES)
            aad = record_aad(self.seal_id, time_base, crop.track_id, state.records,
                             frame_index, pts, crop.box)
            sealed = state.aead.encrypt(nonce, png.tobytes(), aad)
            head = RECORD.pack(crop.track_id, state.records, frame_index, pts, *crop.box, nonce)
            self._write(FRAME.pack(RECORD_TAG, len(head) + len(sealed)) + head + sealed)
            if state.records == 0:
                state.first_frame, state.first_pts = frame_index, pts
            if frame_index != state.last_frame:
                state.frames += 1
            state.last_frame, state.last_pts = frame_index, pts
            state.records += 1
            state.tags.update(sealed[-16:])
            self.records += 1
            self.cost.crops += 1
            self.cost.raw_bytes += crop.pixels.nbytes
            self.cost.sealed_bytes += len(sealed) + len(head) + FRAME.size
        self.frames += 1
        self.cost.seconds += time.perf_counter() - start

    def finish(self) -> None:
        """Write the index and the end marker; the file stays under its temporary name."""
        if self._file is None:  # no frame was written: the video is not published either
            return
        tracks = {}
        for track_id, s in sorted(self._tracks.items()):
            summary = track_summary(self.seal_id, track_id, s.records, s.first_frame,
                                    s.last_frame, s.tags.digest())
            tracks[str(track_id)] = {
                "records": s.records, "frames": s.frames, "first_frame": s.first_frame,
                "last_frame": s.last_frame,
                "first_pts": s.first_pts, "last_pts": s.last_pts, "check": s.key.check,
                "tag": s.key.summary_tag(summary)}
        index = {"records": self.records, "frames": self.frames, "start_pts": self.start_pts,
                 "tracks": tracks}
        index["tag"] = index_tag(self._index_key, self._header, index)
        body = canonical_json(index)
        assert self._file is not None
        try:
            offset = self._file.tell()
        except OSError as exc:
            raise write_failed(self.target, exc) from None
        self._write(FRAME.pack(INDEX_TAG, len(body)) + body + TAIL.pack(END, offset))
        try:
            self._file.close()
        except OSError as exc:
            self.abort()
            raise write_failed(self.target, exc) from None
        self._file = None
        log.info("sealed %d crops of %d tracks in %s (%.0f%% of their raw size)", self.records,
                 len(self._tracks), self.target.name,
                 100 * self.cost.sealed_bytes / max(1, self.cost.raw_bytes))

    def commit(self) -> Path:
        return self.pending.commit()

    def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self.pending.abort()



def seal_store_factory(key: SecretKey, stream_id: str, overwrite: bool = False
                       ) -> Callable[[Path], SealStoreWriter]:
    """Makes the seal store of each video a sink starts (a live recording's segments):
    every file gets its own seal id, hence its own track keys."""
    from masquerade.seals.format import seals_path

    return lambda video: SealStoreWriter(seals_path(video), key, stream_id, overwrite)
