"""Reads and verifies a seal store (`format`), and opens the crops a key may open.

Everything is checked before anything is disclosed: the file's framing first (a cut or
damaged store fails on opening, with no key), then, for the tracks asked for, every
record's tag, its place in its track and the track's summary, and with the master key
the index's own MAC. `restore --exact` verifies the whole selection before it decodes a
frame, so a store that fails anywhere yields no output at all. Each failure names the
frame (index, pts and time) and the track it concerns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from cryptography.exceptions import InvalidTag

from masquerade.seals.format import (
    END,
    FORMAT_NAME,
    FRAME,
    GCM_TAG_BYTES,
    INDEX_TAG,
    MAGIC,
    MAX_JSON_BYTES,
    MAX_RECORD_BYTES,
    RECORD,
    RECORD_TAG,
    TAIL,
    VERSION,
    RecordHead,
    SealError,
    describe_frame,
    index_tag,
    record_aad,
    seals_path,
    track_summary,
)
from masquerade.seals.keyring import SealKeys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackInfo:
    """What `masquerade tracks` lists: public, needs no key."""

    track_id: int
    records: int
    frames: int
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float


class SealStore:
    """An opened seal store: header, index and every record's plaintext fields."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.name = f"seals '{self.path}'"
        if not self.path.is_file():
            raise SealError(f"no seal store {self.path}: `restore --exact` needs the .seals "
                            "file that a run with anonymizer.seal_originals wrote beside the "
                            "video")
        try:
            with open(self.path, "rb") as f:
                self._parse(f)
        except OSError as exc:
            raise SealError(f"cannot read {self.name}: {exc.strerror}") from None

    # -- framing -------------------------------------------------------------------------

    def _fail(self, what: str) -> SealError:
        return SealError(f"{self.name} {what}")

    def _parse(self, f: BinaryIO) -> None:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            raise self._fail("is not a masquerade seal store (or of an unknown version)")
        n = int.from_bytes(f.read(4), "big")
        if not 0 < n <= MAX_JSON_BYTES or len(MAGIC) + 4 + n > size:
            raise self._fail("is damaged: bad header length")
        self.header_bytes = f.read(n)
        self.header = self._json(self.header_bytes, "header")
        self._read_header()
        records_start = f.tell()
        if size < records_start + TAIL.size:
            raise self._fail("is cut short: no end marker (truncated file)")
        f.seek(size - TAIL.size)
        end, index_offset = TAIL.unpack(f.read(TAIL.size))
        if end != END or not records_start <= index_offset < size - TAIL.size:
            raise self._fail("is cut short: no end marker (truncated file)")
        f.seek(index_offset)
        tag, n = FRAME.unpack(f.read(FRAME.size))
        if tag != INDEX_TAG or index_offset + FRAME.size + n != size - TAIL.size:
            raise self._fail("is damaged: its index is not where its end marker says")
        self.index_raw = f.read(n)
        self.index = self._json(self.index_raw, "index")
        self._read_index()
        self.records = self._read_records(f, records_start, index_offset)

    def _json(self, raw: bytes, what: str) -> dict[str, Any]:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            raise self._fail(f"is damaged: its {what} is not valid JSON") from None
        if not isinstance(value, dict):
            raise self._fail(f"is damaged: its {what} is not an object")
        return value

    def _read_header(self) -> None:
        h = self.header
        try:
            if h["format"] != FORMAT_NAME or h["version"] != VERSION:
                raise self._fail(f"has unknown format {h['format']!r} version {h['version']!r}")
            self.seal_id = bytes.fromhex(h["seal_id"])
            self.stream_id = str(h["stream_id"])
            self.key_id = str(h["key_id"])
            num, den = (int(v) for v in str(h["time_base"]).split("/"))
            self.time_base = Fraction(num, den)
            self.width, self.height = int(h["width"]), int(h["height"])
        except (KeyError, ValueError, TypeError, ZeroDivisionError):
            raise self._fail("is damaged: its header lacks or garbles a field") from None

    def _read_index(self) -> None:
        try:
            self.frames = int(self.index["frames"])
            self.start_pts = int(self.index["start_pts"])
            self.record_count = int(self.index["records"])
            self.tracks = {int(k): v for k, v in self.index["tracks"].items()}
            for entry in self.tracks.values():
                for field in ("records", "frames", "first_frame", "last_frame", "first_pts",
                              "last_pts"):
                    int(entry[field])
                str(entry["check"]), str(entry["tag"])
        except (KeyError, ValueError, TypeError, AttributeError):
            raise self._fail("is damaged: its index lacks or garbles a field") from None

    def _read_records(self, f: BinaryIO, start: int, end: int) -> list[RecordHead]:
        heads = []
        f.seek(start)
        pos = start
        while pos < end:
            raw = f.read(FRAME.size)
            if len(raw) < FRAME.size:
                break
            tag, n = FRAME.unpack(raw)
            if tag != RECORD_TAG or not RECORD.size + GCM_TAG_BYTES <= n <= MAX_RECORD_BYTES \
                    or pos + FRAME.size + n > end:
                where = f"after {self.frame_name(heads[-1])}" if heads else "at its first record"
                raise self._fail(f"is damaged {where}: a record's framing is broken")
            fields = RECORD.unpack(f.read(RECORD.size))
            track_id, seq, frame_index, pts, x1, y1, x2, y2, nonce = fields
            offset = pos + FRAME.size + RECORD.size
            heads.append(RecordHead(track_id, seq, frame_index, pts, (x1, y1, x2, y2), nonce,
                                    offset, n - RECORD.size))
            pos = offset + n - RECORD.size
            f.seek(pos)
        if pos != end:
            raise self._fail("is damaged: its records do not end where its index begins")
        if len(heads) != self.record_count:
            raise self._fail(f"holds {len(heads)} records where its index counts "
                             f"{self.record_count} (records removed or added)")
        return heads

    # -- public facts --------------------------------------------------------------------

    def frame_name(self, head: RecordHead) -> str:
        where = describe_frame(head.frame_index, head.pts, self.time_base)
        return f"track {head.track_id} at {where}"

    def track_infos(self) -> list[TrackInfo]:
        return [TrackInfo(t, int(e["records"]), int(e["frames"]), int(e["first_frame"]),
                          int(e["last_frame"]),
                          float(int(e["first_pts"]) * self.time_base),
                          float(int(e["last_pts"]) * self.time_base))
                for t, e in sorted(self.tracks.items())]

    # -- verification and opening --------------------------------------------------------

    def check_tracks(self, keys: SealKeys, tracks: list[int]) -> None:
        """Every asked-for track exists and the key given for it is the one that sealed it."""
        for track_id in tracks:
            if track_id not in self.tracks:
                known = ", ".join(str(t) for t in sorted(self.tracks)) or "none"
                raise SealError(f"{self.name} holds no track {track_id} (sealed tracks: "
                                f"{known})")
            keys.check(self, track_id, self.tracks[track_id]["check"])

    def verify(self, keys: SealKeys, tracks: list[int]) -> None:
        """Authenticate every record of `tracks` and each track's summary, and with the
        master key the index; raises `SealError` naming the first frame and track that
        fail. Nothing is decoded or kept."""
        self.check_tracks(keys, tracks)
        index_key = keys.index_key(self)
        if index_key is not None and not hmac.compare_digest(
                index_tag(index_key, self.header_bytes, self.index), str(self.index["tag"])):
            raise self._fail("does not verify: its index was altered (tracks removed, counts "
                             "or times changed)")
        wanted = set(tracks)
        # track: (next record number, first frame, last frame, hash of the tags so far)
        state: dict[int, tuple[int, int, int, Any]] = {}
        with open(self.path, "rb") as f:
            for head in self.records:
                if head.track_id not in wanted:
                    continue
                seq, first, last_frame, digest = state.get(
                    head.track_id, (0, head.frame_index, -1, hashlib.sha256()))
                # (one track may cover two regions of a frame: a backfilled one as well)
                if head.seq != seq or head.frame_index < last_frame:
                    raise SealError(f"{self.name}: {self.frame_name(head)} is out of place "
                                    f"(record {head.seq} of the track where {seq} was "
                                    "expected: crops removed, swapped or reordered)")
                if head.frame_index >= self.frames:
                    raise SealError(f"{self.name}: {self.frame_name(head)} lies past the "
                                    f"{self.frames} frames of the video")
                sealed = self._read(f, head)
                self._decrypt(keys, head, sealed)
                digest.update(sealed[-GCM_TAG_BYTES:])
                state[head.track_id] = (seq + 1, first, head.frame_index, digest)
        for track_id in tracks:
            entry = self.tracks[track_id]
            seq, first, last_frame, digest = state.get(track_id, (0, -1, -1, hashlib.sha256()))
            summary = track_summary(self.seal_id, track_id, seq, first, last_frame,
                                    digest.digest())
            if (seq != int(entry["records"]) or first != int(entry["first_frame"])
                    or not hmac.compare_digest(keys.track(self, track_id).summary_tag(summary),
                                               str(entry["tag"]))):
                raise SealError(f"{self.name}: track {track_id} does not verify as a whole: "
                                f"{seq} records found, its index says {entry['records']} "
                                "(records removed, or the store cut and re-indexed)")

    def _read(self, f: BinaryIO, head: RecordHead) -> bytes:
        f.seek(head.offset)
        sealed = f.read(head.length)
        if len(sealed) != head.length:
            raise SealError(f"{self.name}: {self.frame_name(head)} is cut short")
        return sealed

    def _decrypt(self, keys: SealKeys, head: RecordHead, sealed: bytes) -> bytes:
        aad = record_aad(self.seal_id, self.time_base, head.track_id, head.seq,
                         head.frame_index, head.pts, head.box)
        try:
            return keys.aead(self, head.track_id).decrypt(head.nonce, sealed, aad)
        except InvalidTag:
            raise SealError(f"{self.name}: {self.frame_name(head)} does not verify: the "
                            "sealed crop was altered, or moved from another frame, track or "
                            "file") from None

    def open(self, f: BinaryIO, keys: SealKeys, head: RecordHead) -> np.ndarray:
        """The original RGB crop of one record (authenticated, PNG-decoded)."""
        png = self._decrypt(keys, head, self._read(f, head))
        crop = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        x1, y1, x2, y2 = head.box
        if crop is None or crop.shape != (y2 - y1, x2 - x1, 3):
            raise SealError(f"{self.name}: {self.frame_name(head)}: the crop does not decode "
                            "to its box")
        return crop

    def by_frame(self, tracks: list[int]) -> dict[int, list[RecordHead]]:
        """The records of `tracks`, by the index of the frame they belong to."""
        wanted = set(tracks)
        frames: dict[int, list[RecordHead]] = {}
        for head in self.records:
            if head.track_id in wanted:
                frames.setdefault(head.frame_index, []).append(head)
        return frames


class CropOpener:
    """Opens one record after another from an open store file (for the restore loop)."""

    def __init__(self, store: SealStore, keys: SealKeys):
        self.store = store
        self.keys = keys
        self._file: BinaryIO = open(store.path, "rb")  # noqa: SIM115 (closed by close())

    def open(self, head: RecordHead) -> np.ndarray:
        return self.store.open(self._file, self.keys, head)

    def close(self) -> None:
        self._file.close()


def open_store(video: str | os.PathLike[str]) -> SealStore:
    return SealStore(seals_path(video))
