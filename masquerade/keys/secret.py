"""The master secret: loaded from a private file, MASQUERADE_KEY, or a stretched passphrase.

`SecretKey` never shows its bytes in repr/str, refuses pickling, and compares in constant
time, so a key that ends up in a log line or a traceback stays secret.

A key file is exactly 32 raw bytes or exactly 64 hex digits (plus an optional newline):
anything else is refused, so a typo in a hex key can never silently become another key.
A passphrase comes, in order of preference, from a private file, MASQUERADE_PASSWORD or
a terminal prompt; on the command line (`--password`) every user of the machine can read
it in `ps`, which is only acceptable for tests.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from masquerade.errors import ConfigError
from masquerade.keys.hkdf import key_id, stream_password, track_password

log = logging.getLogger(__name__)

KEY_BYTES = 32
ENV_VAR = "MASQUERADE_KEY"
PASSWORD_ENV_VAR = "MASQUERADE_PASSWORD"
_HEX_KEY = re.compile(rb"[0-9a-fA-F]{%d}" % (2 * KEY_BYTES))
# Passphrases are stretched with scrypt under this fixed salt: the key must be reproducible
# from the passphrase alone on any machine, so there is no per-user salt to store. The
# context string separates it from any other use of the same passphrase; scrypt's cost
# (N=2**15, r=8: 32 MiB, ~0.1 s) is what slows guessing.
PASSPHRASE_SALT = b"masquerade/v1/passphrase-scrypt"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class KeyMaterialError(ConfigError):
    """The master key is missing, malformed, or stored insecurely."""


class WrongKeyError(KeyMaterialError):
    """The key is not the one the keyed output was written with."""


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

    def key_id(self) -> str:
        """Public fingerprint (16 hex digits) recorded with keyed output; see `hkdf.key_id`."""
        return key_id(self._key).hex()

    @classmethod
    def from_file(cls, path: str | Path) -> SecretKey:
        """Exactly 32 raw bytes, or exactly 64 hex digits and an optional newline.

        Refused if group or others may read or write it, and refused if it is anything
        else: a damaged hex key must fail, not quietly turn into a different raw key.
        """
        path = Path(path)
        raw = _read_private(path, "key file")
        if raw.lstrip().startswith(b"{") and b"masquerade-track-key" in raw[:200]:
            # `seal_keys.TrackKey`'s export: one person's key, which cannot act as a master
            raise KeyMaterialError(f"key file {path} is a track key (from `masquerade keys "
                                   "export-track`), not a master key: give it with --track-key")
        # 32 random bytes are printable text with odds ~1e-13: such a file is a short or
        # damaged hex key, not a raw one.
        if len(raw) == KEY_BYTES and not all(32 <= c < 127 or c in b"\t\r\n" for c in raw):
            return cls(raw)
        text = raw.removesuffix(b"\n").removesuffix(b"\r")
        if _HEX_KEY.fullmatch(text):
            return cls(bytes.fromhex(text.decode("ascii")))
        hex_digits = b"0123456789abcdefABCDEF"
        if len(text) == 2 * KEY_BYTES:
            bad = next(i for i, c in enumerate(text) if c not in hex_digits)
            problem = f"character {bad + 1} is not a hex digit"
        elif text and all(c in hex_digits for c in text):
            problem = f"it holds {len(text)} hex digits"
        else:
            problem = f"it holds {len(raw)} bytes"
        raise KeyMaterialError(
            f"key file {path} is not a key: {problem} (expected exactly 64 hex digits with an "
            f"optional newline, or exactly {KEY_BYTES} raw bytes)"
        )

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


def _read_private(path: Path, what: str) -> bytes:
    """The bytes of a secret file that only its owner may read or write."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyMaterialError(
                f"{what} {path} is accessible by group/others (mode {stat.S_IMODE(mode):o});"
                f" run: chmod 600 {path}"
            )
        return path.read_bytes()
    except OSError as e:
        raise KeyMaterialError(f"cannot read {what} {path}: {e.strerror}") from None


def read_password_file(path: str | Path) -> str:
    """The passphrase in a private file: its text without one trailing newline."""
    raw = _read_private(Path(path), "password file")
    try:
        text = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        raise KeyMaterialError(f"password file {path} is not UTF-8 text") from None
    if "\n" in text:
        raise KeyMaterialError(f"password file {path} holds more than one line")
    return text


def passphrase_prompt(confirm: bool = False) -> Callable[[], str] | None:
    """A getpass prompt when stdin is a terminal (else None: nobody could answer it).

    `confirm` asks twice, for runs that write keyed output: a mistyped passphrase there
    would lock the result to the typo.
    """
    if not sys.stdin.isatty():
        return None

    def ask() -> str:
        import getpass

        first = getpass.getpass("masquerade: passphrase: ")
        if confirm and getpass.getpass("masquerade: passphrase again: ") != first:
            raise KeyMaterialError("the two passphrases differ")
        return first

    return ask


def load_key(path: str | Path | None = None, passphrase: str | None = None, *,
             password_file: str | Path | None = None,
             prompt: Callable[[], str] | None = None) -> SecretKey:
    """The master key from exactly one source.

    At most one of a key file, a password file and a passphrase may be given; without
    one, MASQUERADE_KEY (hex) or MASQUERADE_PASSWORD (a passphrase; not both), and
    without those `prompt` (see `passphrase_prompt`).
    """
    given = [name for name, value in (("a key file", path), ("a password file", password_file),
                                      ("--password", passphrase)) if value is not None]
    if len(given) > 1:
        raise KeyMaterialError(f"give only one of {' and '.join(given)}")
    if path is not None:
        log.info("master key from file %s", path)
        return SecretKey.from_file(path)
    if password_file is not None:
        log.info("master key from password file %s (scrypt)", password_file)
        return SecretKey.from_passphrase(read_password_file(password_file))
    if passphrase is not None:
        log.info("master key from passphrase (scrypt)")
        return SecretKey.from_passphrase(passphrase)
    env_key, env_password = os.environ.get(ENV_VAR), os.environ.get(PASSWORD_ENV_VAR)
    if env_key is not None and env_password is not None:
        raise KeyMaterialError(f"both {ENV_VAR} and {PASSWORD_ENV_VAR} are set; unset one")
    if env_key is not None:
        log.info("master key from %s", ENV_VAR)
        return SecretKey.from_text(env_key)
    if env_password is not None:
        log.info("master key from %s (scrypt)", PASSWORD_ENV_VAR)
        return SecretKey.from_passphrase(env_password)
    if prompt is not None:
        return SecretKey.from_passphrase(prompt())
    raise KeyMaterialError(
        f"no master key: pass a key file or --password-file, or set {ENV_VAR} or "
        f"{PASSWORD_ENV_VAR}"
    )


def check_key_id(key: SecretKey, recorded: str | None, what: str) -> None:
    """Refuse a key whose fingerprint differs from the one `what` was written with.

    Output from versions that recorded no fingerprint (`recorded` None) is accepted.
    """
    if recorded is not None and recorded != key.key_id():
        raise WrongKeyError(f"this key is not the one used to write {what} "
                            "(--allow-wrong-key renders with it anyway)")
