"""HKDF-SHA256 (RFC 5869) and the key hierarchy it builds: master -> stream -> track.

Each level is HKDF(IKM = parent key, salt = SALT, info = label + length-prefixed fields), so
a stream key unlocks that stream's tracks and nothing else, and a track key only its track.
Fields are length-prefixed so no two different (stream, track, epoch) tuples share an info.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

HASH_LEN = hashlib.sha256().digest_size
SALT = b"masquerade/v1/hkdf"


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 2.2: PRK = HMAC-Hash(salt, IKM); an empty salt means HashLen zero bytes."""
    return hmac.new(salt or bytes(HASH_LEN), ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 2.3: T(i) = HMAC-Hash(PRK, T(i-1) | info | i), output the first L bytes."""
    if not 0 < length <= 255 * HASH_LEN:
        raise ValueError(f"HKDF-SHA256 output length must be 1..{255 * HASH_LEN}")
    blocks, block = [], b""
    for counter in range(1, -(-length // HASH_LEN) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        blocks.append(block)
    return b"".join(blocks)[:length]


def hkdf(ikm: bytes, info: bytes, length: int = 32, salt: bytes = SALT) -> bytes:
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def encode_info(label: str, *fields: str | int | None) -> bytes:
    """Unambiguous info string: label, then each field tagged by type and length."""
    out = [label.encode()]
    for value in fields:
        if value is None:
            out.append(b"N")
        elif isinstance(value, int):
            out.append(b"I" + struct.pack(">q", value))
        else:
            raw = value.encode("utf-8")
            out.append(b"S" + struct.pack(">I", len(raw)) + raw)
    return b"\x00".join(out)


def stream_password(master: bytes, stream_id: str) -> bytes:
    """32-byte key for one stream (a camera, a file), from the master secret."""
    return hkdf(master, encode_info("masquerade/v1/stream", stream_id))


def track_password(
    stream_key: bytes, track_id: int, epoch: int | None = None
) -> bytes:
    """32-byte password for one face track in a stream, optionally per time epoch
    (e.g. floor(t / epoch_seconds)) so identities also change over time."""
    return hkdf(stream_key, encode_info("masquerade/v1/track", track_id, epoch))


KEY_ID_BYTES = 8


def key_id(master: bytes) -> bytes:
    """A public 8-byte fingerprint of a master key, stored beside keyed output.

    HKDF under its own label, so it reveals nothing about the stream and track passwords
    (and, for a passphrase, costs a guesser the full scrypt work per guess, like the
    video itself); it only lets `restore` tell a wrong key from the right one.
    """
    return hkdf(master, encode_info("masquerade/v1/key-id"), KEY_ID_BYTES)
