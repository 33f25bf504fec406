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
    path.write_bytes(bytes(range(200, 240)))
    path.chmod(0o600)
    assert SecretKey.from_file(path).expose() == bytes(range(200, 240))


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
