"""The seal store's byte layout, version 1 (`VIDEO.seals`, beside the video).

    header   MAGIC (8) | u32 n | n bytes of JSON (canonical: sorted keys, no spaces)
    record   b"R" | u32 n | RECORD fields (fixed, 60 bytes) | AES-256-GCM ciphertext + tag
    ...      (in the order the frames were written)
    index    b"E" | u32 n | n bytes of JSON
    end      END (8) | u64 offset of the index's b"E"

Each record holds one covered face region of one frame: the padded crop the compositor
replaced, as the source decoded it (RGB, PNG-compressed: lossless) and encrypted under
the track's key (`keys.seal_keys`). Its associated data is `record_aad`: the format
version, the file's seal id and time base, and every plaintext field (track, its record
number within the track, frame index, pts, box), so a crop moved to another frame, track,
position or file fails authentication. The index counts records per track and carries,
per track, an HMAC under that track's key over its count, first/last frame and a hash of
its records' tags (a holder of one track's key can tell a cut or thinned track), and one
HMAC under the master-derived index key over the header and the whole index (the master
key holder can tell a removed track). The end marker and the offset make a cut file
evident before any record is read.
"""

from __future__ import annotations

import hmac
import json
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from masquerade.errors import InputError

VERSION = 1
MAGIC = b"MQSEALS\x01"
END = b"MQSEND\x00\x01"
FORMAT_NAME = "masquerade-seals"
RECORD_TAG, INDEX_TAG = b"R", b"E"
FRAME = struct.Struct(">cI")  # tag, length of what follows
# track id, record number within its track, frame index, pts, box x1 y1 x2 y2, nonce
RECORD = struct.Struct(">qQQqiiii12s")
TAIL = struct.Struct(">8sQ")
AAD_PREFIX = b"masquerade/seal/v1"
NONCE_BYTES = 12
GCM_TAG_BYTES = 16
# A record can never be larger than a 16k frame as raw RGB plus the PNG overhead.
MAX_RECORD_BYTES = 1 << 30
MAX_JSON_BYTES = 1 << 28


def seals_path(video: str | os.PathLike[str]) -> Path:
    return Path(f"{video}.seals")


class SealError(InputError):
    """The seal store is missing, damaged, cut short or tampered with (exit 3)."""


@dataclass(frozen=True)
class RecordHead:
    """A record's plaintext fields and where its ciphertext lies in the file."""

    track_id: int
    seq: int
    frame_index: int
    pts: int
    box: tuple[int, int, int, int]
    nonce: bytes
    offset: int  # of the ciphertext
    length: int  # of the ciphertext, tag included


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def record_aad(seal_id: bytes, time_base: Fraction, track_id: int, seq: int,
               frame_index: int, pts: int, box: tuple[int, int, int, int]) -> bytes:
    """What each record's tag authenticates besides the crop itself."""
    return (AAD_PREFIX + struct.pack(">H", VERSION) + seal_id
            + struct.pack(">qq", time_base.numerator, time_base.denominator)
            + struct.pack(">qQQqiiii", track_id, seq, frame_index, pts, *box))


def track_summary(seal_id: bytes, track_id: int, records: int, first_frame: int,
                  last_frame: int, tags_digest: bytes) -> bytes:
    """The message of a track's summary HMAC (see the module doc)."""
    return (AAD_PREFIX + b"/track" + seal_id
            + struct.pack(">qQQQ", track_id, records, first_frame, last_frame) + tags_digest)


def describe_frame(frame_index: int, pts: int, time_base: Fraction) -> str:
    """How errors name a frame: its number, pts and time."""
    return f"frame {frame_index} (pts {pts}, {float(pts * time_base):.3f} s)"


def index_tag(index_key: bytes, header: bytes, index: dict[str, Any]) -> str:
    """HMAC over the header and the index (without its own tag)."""
    body = {k: v for k, v in index.items() if k != "tag"}
    return hmac.new(index_key, header + canonical_json(body), "sha256").hexdigest()
