import logging
import os
import pickle

import pytest

from masquerade.keys.secret import (
    PASSPHRASE_SALT,
    KeyMaterialError,
    SecretKey,
    load_key,
)

PINNED_KEY_ID = "688f8533a6983923"  # SecretKey(bytes(range(32))).key_id()


def test_repr_str_and_logs_never_show_the_key(caplog):
    key = SecretKey(bytes(range(32)))
    hexed = key.to_hex()
    assert hexed not in repr(key) and hexed not in str(key) and hexed not in f"{key}"
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("key is %s %r", key, key)
    assert hexed not in caplog.text and "hidden" in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_short_keys_are_refused():
    with pytest.raises(KeyMaterialError):
        SecretKey(b"short")


def test_file_round_trip_and_permissions(tmp_path):
    key = SecretKey.generate()
    path = tmp_path / "master.key"
    key.save(path)
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert SecretKey.from_file(path) == key
    os.chmod(path, 0o640)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        SecretKey.from_file(path)
    os.chmod(path, 0o604)
    with pytest.raises(KeyMaterialError):
        SecretKey.from_file(path)


def test_raw_binary_key_file(tmp_path):
    path = tmp_path / "raw.key"
    path.write_bytes(bytes(range(200, 232)))
    path.chmod(0o600)
    assert SecretKey.from_file(path).expose() == bytes(range(200, 232))


def _key_file(tmp_path, content: bytes):
    path = tmp_path / "k.key"
    path.write_bytes(content)
    path.chmod(0o600)
    return path


HEX = bytes(range(32)).hex()


@pytest.mark.parametrize("content", [HEX, HEX + "\n", HEX.upper() + "\r\n"])
def test_hex_key_file_with_optional_newline(tmp_path, content):
    key = SecretKey.from_file(_key_file(tmp_path, content.encode()))
    assert key.expose() == bytes(range(32))


@pytest.mark.parametrize(("content", "why"), [
    (HEX[:17] + "g" + HEX[18:] + "\n", "character 18 is not a hex digit"),  # a typo
    (HEX[:17] + " " + HEX[18:], "character 18 is not a hex digit"),
    (HEX[:-1] + "\n", "it holds 63 hex digits"),  # a digit lost
    (HEX + "0\n", "it holds 65 hex digits"),  # a digit too many
    (HEX + "\n\n", "it holds 66 bytes"),
    (" " + HEX, "it holds 65 bytes"),
    (HEX[:32], "it holds 32 hex digits"),  # a 128-bit hex key is not 32 raw bytes
    (bytes(range(200, 240)).decode("latin-1"), "it holds 40 bytes"),  # raw, but not 32
    ("", "it holds 0 bytes"),
])
def test_malformed_key_files_are_refused_in_one_line(tmp_path, content, why):
    path = _key_file(tmp_path, content.encode("latin-1"))
    with pytest.raises(KeyMaterialError) as info:
        SecretKey.from_file(path)
    message = str(info.value)
    assert message.startswith(f"key file {path} is not a key: {why}")
    assert "\n" not in message and HEX[:16] not in message  # the key itself is never shown


def test_key_id_is_a_public_fingerprint():
    key = SecretKey(bytes(range(32)))
    assert key.key_id() == SecretKey(bytes(range(32))).key_id()
    assert key.key_id() != SecretKey(bytes(32)).key_id()
    assert len(key.key_id()) == 16 and key.key_id() not in key.to_hex()
    # not a plain hash of the key or of the passphrase
    import hashlib

    assert key.key_id() not in hashlib.sha256(key.expose()).hexdigest()
    # pinned: it is stored in track logs, restore compares against it
    assert key.key_id() == PINNED_KEY_ID


def test_wrong_key_is_told_apart_from_the_right_one_and_old_logs_pass():
    from masquerade.keys.secret import WrongKeyError, check_key_id

    right, wrong = SecretKey(bytes(range(32))), SecretKey(bytes(32))
    check_key_id(right, right.key_id(), "v.mp4")
    check_key_id(wrong, None, "v.mp4")  # written before fingerprints existed
    with pytest.raises(WrongKeyError, match=r"this key is not the one used to write v\.mp4"):
        check_key_id(wrong, right.key_id(), "v.mp4")


def test_password_file_env_and_exactly_one_source(tmp_path, monkeypatch):
    monkeypatch.delenv("MASQUERADE_KEY", raising=False)
    monkeypatch.delenv("MASQUERADE_PASSWORD", raising=False)
    expected = SecretKey.from_passphrase("correct horse battery")
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery\n")
    pw.chmod(0o600)
    assert load_key(password_file=pw) == expected
    monkeypatch.setenv("MASQUERADE_PASSWORD", "correct horse battery")
    assert load_key() == expected
    monkeypatch.setenv("MASQUERADE_KEY", expected.to_hex())
    with pytest.raises(KeyMaterialError, match="both MASQUERADE_KEY and MASQUERADE_PASSWORD"):
        load_key()
    monkeypatch.delenv("MASQUERADE_KEY")
    monkeypatch.delenv("MASQUERADE_PASSWORD")
    assert load_key(prompt=lambda: "correct horse battery") == expected
    with pytest.raises(KeyMaterialError, match="no master key"):
        load_key()
    with pytest.raises(KeyMaterialError, match="give only one of a password file and --password"):
        load_key(password_file=pw, passphrase="correct horse battery")
    pw.chmod(0o644)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        load_key(password_file=pw)
    pw.chmod(0o600)
    pw.write_text("two\nlines\n")
    with pytest.raises(KeyMaterialError, match="more than one line"):
        load_key(password_file=pw)


def test_env_and_priority(tmp_path, monkeypatch):
    key = SecretKey.generate()
    monkeypatch.setenv("MASQUERADE_KEY", key.to_hex())
    assert load_key() == key
    monkeypatch.setenv("MASQUERADE_KEY", "not hex")
    with pytest.raises(KeyMaterialError):
        load_key()
    monkeypatch.delenv("MASQUERADE_KEY")
    with pytest.raises(KeyMaterialError):
        load_key()


def test_passphrase_is_stretched_deterministically():
    a = SecretKey.from_passphrase("correct horse battery")
    assert a == load_key(passphrase="correct horse battery")
    assert a != SecretKey.from_passphrase("correct horse battery!")
    assert a.expose() != b"correct horse battery".ljust(32, b"\0")
    assert b"passphrase" in PASSPHRASE_SALT
    # pinned: a change here would silently orphan every key made from a passphrase
    assert a.to_hex() == "b678a5bcfe066de9b2492de1585fa71a7ce1404e6c1cc73d8fb6aa161007392b"
    with pytest.raises(KeyMaterialError):
        SecretKey.from_passphrase("short")


def test_track_passwords_depend_on_every_input():
    key = SecretKey(bytes(range(32)))
    base = key.track_password("cam", 1, None)
    assert base == key.track_password("cam", 1, None)
    others = [key.track_password("cam", 2), key.track_password("cam2", 1),
              key.track_password("cam", 1, 7), SecretKey(bytes(32)).track_password("cam", 1)]
    assert all(o != base for o in others)
    # pinned: the derivation is a compatibility contract with every stored keyed identity
    assert key.track_password("cam-1", 7, 3).hex() == (
        "df1d3b5564285c4d5f84775cbf2ba2b0ee034ccf7678844f0fb0c6fea7ded692"
    )
