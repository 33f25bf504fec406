"""The master secret: loaded from a private file, MASQUERADE_KEY, or a stretched passphrase.

`SecretKey` never shows its bytes in repr/str, refuses pickling, and compares in constant
time, so a key that ends up in a log line or a traceback stays secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from masquerade.errors import ConfigError
from masquerade.keys.hkdf import stream_password, track_password

log = logging.getLogger(__name__)

KEY_BYTES = 32
ENV_VAR = "MASQUERADE_KEY"
# Passphrases are stretched with scrypt under this fixed salt: the key must be reproducible
# from the passphrase alone on any machine, so there is no per-user salt to store. The
# context string separates it from any other use of the same passphrase; scrypt's cost
# (N=2**15, r=8: 32 MiB, ~0.1 s) is what slows guessing.
PASSPHRASE_SALT = b"masquerade/v1/passphrase-scrypt"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class KeyMaterialError(ConfigError):
    """The master key is missing, malformed, or stored insecurely."""


class SecretKey:
    """A master secret of at least 32 bytes."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) < KEY_BYTES:
            raise KeyMaterialError(f"a master key must be at least {KEY_BYTES} bytes")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return f"SecretKey(<hidden, {len(self._key)} bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretKey) and hmac.compare_digest(self._key, other._key)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("SecretKey cannot be pickled")

    def expose(self) -> bytes:
        """The raw bytes, for key derivation only."""
        return self._key

    @classmethod
    def generate(cls) -> SecretKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str) -> SecretKey:
        """Hex (64+ digits), as written by `to_hex` and expected in MASQUERADE_KEY."""
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise KeyMaterialError("key text must be hex (at least 64 hex digits)") from None

    def to_hex(self) -> str:
        return self._key.hex()

    @classmethod
    def from_file(cls, path: str | Path) -> SecretKey:
        """Read a hex or raw key file; refuse it if group or others may read or write it."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
        except OSError as e:
            raise KeyMaterialError(f"cannot read key file {path}: {e.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyMaterialError(
                f"key file {path} is accessible by group/others (mode {stat.S_IMODE(mode):o});"
                f" run: chmod 600 {path}"
            )
        raw = path.read_bytes()
        try:
            return cls.from_text(raw.decode("ascii"))
        except (UnicodeDecodeError, KeyMaterialError):
            return cls(raw)

    @classmethod
    def from_env(cls, var: str = ENV_VAR) -> SecretKey | None:
        text = os.environ.get(var)
        return None if text is None else cls.from_text(text)

    @classmethod
    def from_passphrase(cls, passphrase: str) -> SecretKey:
        if len(passphrase) < 8:
            raise KeyMaterialError("a passphrase must be at least 8 characters")
        key = hashlib.scrypt(
            passphrase.encode("utf-8"), salt=PASSPHRASE_SALT, n=SCRYPT_N, r=SCRYPT_R,
            p=SCRYPT_P, maxmem=2 * 128 * SCRYPT_R * SCRYPT_N, dklen=KEY_BYTES,
        )
        return cls(key)

    def save(self, path: str | Path) -> None:
        """Write as hex, readable by the owner only (created 0600, never widened)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.to_hex() + "\n")

    def stream_key(self, stream_id: str) -> bytes:
        return stream_password(self._key, stream_id)

    def track_password(self, stream_id: str, track_id: int, epoch: int | None = None) -> bytes:
        return track_password(self.stream_key(stream_id), track_id, epoch)


def load_key(path: str | Path | None = None, passphrase: str | None = None) -> SecretKey:
    """The master key: a passphrase if given, else the key file, else MASQUERADE_KEY."""
    if passphrase is not None:
        log.info("master key from passphrase (scrypt)")
        return SecretKey.from_passphrase(passphrase)
    if path is not None:
        log.info("master key from file %s", path)
        return SecretKey.from_file(path)
    key = SecretKey.from_env()
    if key is None:
        raise KeyMaterialError(f"no master key: pass a key file or --password, or set {ENV_VAR}")
    log.info("master key from %s", ENV_VAR)
    return key
