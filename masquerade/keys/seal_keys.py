"""Keys that open sealed originals: one per (sealed file, track), and the exported form.

A warrant names one person, so the unit of disclosure is a track: every track of every
sealed file has its own AES-256 key, derived from the master key by HKDF under a label of
its own (never the deid/camouflage track passwords, `hkdf.track_password`). The
derivation takes the file's random seal id as well as the stream id and track id, so the
same master key sealing many files (or many segments of one camera) gives every file
different keys: a crop, or an exported key, from one file opens nothing in another.

An exported track key (`masquerade keys export-track`) is a small JSON file naming the
seal id, stream id and track it belongs to. Its format differs from the 64-hex master key
file on purpose: each loader refuses the other kind with a line that says which it is.
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

from masquerade.keys.hkdf import encode_info, hkdf
from masquerade.keys.secret import KeyMaterialError, SecretKey, _read_private

TRACK_KEY_FORMAT = "masquerade-track-key"
TRACK_KEY_VERSION = 1
SEAL_ID_BYTES = 16
CHECK_BYTES = 8


def seal_track_key(master: bytes, stream_id: str, seal_id: bytes, track_id: int) -> bytes:
    """The 32-byte key of one track of one sealed file."""
    return hkdf(master, encode_info("masquerade/v1/seal-track", stream_id, seal_id.hex(),
                                    int(track_id)))


def seal_index_key(master: bytes, stream_id: str, seal_id: bytes) -> bytes:
    """MAC key over a sealed file's header and index: only the master key holder can
    vouch that no whole track was removed from the store."""
    return hkdf(master, encode_info("masquerade/v1/seal-index", stream_id, seal_id.hex()))


class TrackKey:
    """The key of one track of one sealed file; never shown in repr, never pickled."""

    __slots__ = ("_aead", "_key", "_summary", "check", "seal_id", "stream_id", "track_id")

    def __init__(self, key: bytes, seal_id: bytes, stream_id: str, track_id: int):
        if len(key) != 32 or len(seal_id) != SEAL_ID_BYTES:
            raise KeyMaterialError("a track key is 32 bytes bound to a 16-byte seal id")
        self._key = bytes(key)
        self.seal_id = bytes(seal_id)
        self.stream_id = stream_id
        self.track_id = int(track_id)
        # Separate sub-keys: the AEAD key, the key of the per-track summary MAC, and a
        # public check value that tells a wrong key from a tampered crop.
        self._aead = hkdf(self._key, encode_info("masquerade/v1/seal-track/aead"))
        self._summary = hkdf(self._key, encode_info("masquerade/v1/seal-track/summary"))
        self.check = hkdf(self._key, encode_info("masquerade/v1/seal-track/check"),
                          CHECK_BYTES).hex()

    @classmethod
    def derive(cls, master: SecretKey, stream_id: str, seal_id: bytes, track_id: int
               ) -> TrackKey:
        return cls(seal_track_key(master.expose(), stream_id, seal_id, track_id), seal_id,
                   stream_id, track_id)

    def __repr__(self) -> str:
        return f"TrackKey(track {self.track_id}, <hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("TrackKey cannot be pickled")

    def aead_key(self) -> bytes:
        return self._aead

    def summary_tag(self, message: bytes) -> str:
        return hmac.new(self._summary, message, "sha256").hexdigest()

    def save(self, path: str | Path) -> None:
        """Write the exported form, readable by the owner only (created 0600, never over
        an existing file)."""
        text = json.dumps({"format": TRACK_KEY_FORMAT, "version": TRACK_KEY_VERSION,
                           "seal_id": self.seal_id.hex(), "stream_id": self.stream_id,
                           "track_id": self.track_id, "key": self._key.hex()})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")

    @classmethod
    def from_file(cls, path: str | Path) -> TrackKey:
        path = Path(path)
        raw = _read_private(path, "track key file")
        if is_track_key_file(raw):
            try:
                data = json.loads(raw)
                if data.get("version") != TRACK_KEY_VERSION:
                    raise KeyMaterialError(f"track key file {path}: unknown version "
                                           f"{data.get('version')!r}")
                return cls(bytes.fromhex(data["key"]), bytes.fromhex(data["seal_id"]),
                           str(data["stream_id"]), int(data["track_id"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise KeyMaterialError(f"track key file {path} is damaged") from None
        try:
            SecretKey.from_file(path)
        except KeyMaterialError:
            raise KeyMaterialError(f"{path} is not a track key (expected the file "
                                   "`masquerade keys export-track` writes)") from None
        raise KeyMaterialError(f"{path} is a master key, not a track key: give it with "
                               "--key-file")


def is_track_key_file(raw: bytes) -> bool:
    """Whether a file's bytes are an exported track key (so a master-key loader can say so)."""
    return raw.lstrip().startswith(b"{") and TRACK_KEY_FORMAT.encode() in raw[:200]
