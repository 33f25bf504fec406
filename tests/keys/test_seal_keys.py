"""Per-track seal keys: separate from every other derived key, and the exported key file."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest

from masquerade.keys.seal_keys import TrackKey, seal_index_key, seal_track_key
from masquerade.keys.secret import KeyMaterialError, SecretKey

MASTER = SecretKey(bytes(range(32)))
SEAL_ID = bytes(16)


def test_seal_keys_are_separate_from_deid_passwords_and_each_other() -> None:
    m = MASTER.expose()
    keys = {
        seal_track_key(m, "cam", SEAL_ID, 3),
        seal_track_key(m, "cam", SEAL_ID, 4),
        seal_track_key(m, "cam2", SEAL_ID, 3),
        seal_track_key(m, "cam", bytes([1]) + SEAL_ID[1:], 3),
        seal_index_key(m, "cam", SEAL_ID),
        MASTER.track_password("cam", 3),
        MASTER.stream_key("cam"),
    }
    assert len(keys) == 7


def test_exported_key_round_trips_private_and_hidden(tmp_path: Path) -> None:
    key = TrackKey.derive(MASTER, "cam", SEAL_ID, 3)
    path = tmp_path / "t3.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = TrackKey.from_file(path)
    assert (back.track_id, back.stream_id, back.seal_id) == (3, "cam", SEAL_ID)
    assert back.aead_key() == key.aead_key() and back.check == key.check
    assert key.aead_key().hex() not in repr(key) and "hidden" in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(FileExistsError):
        key.save(path)  # never over an existing key file


def test_master_and_track_key_files_refuse_each_other(tmp_path: Path) -> None:
    track = tmp_path / "t.key"
    TrackKey.derive(MASTER, "cam", SEAL_ID, 3).save(track)
    with pytest.raises(KeyMaterialError, match=r"is a track key .* not a master key: give it "
                                               "with --track-key"):
        SecretKey.from_file(track)
    master = tmp_path / "master.key"
    MASTER.save(master)
    with pytest.raises(KeyMaterialError, match="is a master key, not a track key: give it with "
                                               "--key-file"):
        TrackKey.from_file(master)


def test_damaged_or_foreign_track_key_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"format": "masquerade-track-key", "version": 1, "key": "zz"}')
    os.close(fd)
    with pytest.raises(KeyMaterialError, match="is damaged"):
        TrackKey.from_file(path)
    path.write_text("hello")
    with pytest.raises(KeyMaterialError, match="is not a track key"):
        TrackKey.from_file(path)
    path.chmod(0o644)
    with pytest.raises(KeyMaterialError, match="accessible by group/others"):
        TrackKey.from_file(path)
