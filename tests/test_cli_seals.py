"""Sealed originals as an operator meets them: `run --seal`, `tracks`, `keys export-track`,
`restore --exact`, in real processes, with exit codes and one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from masquerade.keys import SecretKey
from masquerade.seals.format import seals_path
from masquerade.synthetic import Scenario, write_clip
from tests.test_cli import error_line, masquerade


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(video written with --seal, its master key file)."""
    folder = tmp_path_factory.mktemp("cli_seals")
    clip = folder / "in.mp4"
    write_clip(clip, Scenario(width=320, height=180, frames=15, audio=False))
    key = folder / "master.key"
    SecretKey.generate().save(key)
    out = folder / "anon.mp4"
    proc = masquerade("run", str(clip), "-o", str(out), "--seal", "--key-file", str(key),
                      "--set", "encoder.preset=ultrafast")
    assert proc.returncode == 0, proc.stderr
    assert seals_path(out).is_file()
    assert "sealed" in proc.stderr and key.read_text().strip() not in proc.stderr
    return out, key


def test_seal_without_a_key_is_refused(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    write_clip(clip, Scenario(width=160, height=96, frames=3, audio=False))
    proc = masquerade("run", str(clip), "-o", str(tmp_path / "o.mp4"), "--seal")
    assert proc.returncode == 2
    assert "no master key" in error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_list_export_and_restore_one_person(sealed: tuple[Path, Path], tmp_path: Path) -> None:
    video, key = sealed
    proc = masquerade("tracks", str(video), "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    tracks = [t["track"] for t in listing["tracks"]]
    assert len(tracks) >= 2 and all("thumbnail" not in t for t in listing["tracks"])
    mine, other = tracks[0], tracks[1]

    thumbs = tmp_path / "thumbs"
    thumbs.mkdir()
    proc = masquerade("tracks", str(video), "--key-file", str(key), "--thumbnails", str(thumbs))
    assert proc.returncode == 0, proc.stderr
    assert (thumbs / f"track-{mine}.png").is_file() and f"track-{mine}.png" in proc.stdout

    track_key = tmp_path / "mine.key"
    proc = masquerade("keys", "export-track", str(video), "--track", str(mine), "-o",
                      str(track_key), "--key-file", str(key))
    assert proc.returncode == 0, proc.stderr
    assert oct(os.stat(track_key).st_mode & 0o777) == "0o600"

    out = tmp_path / "restored.mkv"
    proc = masquerade("restore", str(video), "-o", str(out), "--exact", "--lossless",
                      "--track-key", str(track_key))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()

    proc = masquerade("restore", str(video), "-o", str(tmp_path / "x.mkv"), "--exact",
                      "--track", str(other), "--track-key", str(track_key))
    assert proc.returncode == 2
    assert f"no key for track {other}: the track key(s) given open track {mine}" in \
        error_line(proc)
    # a track key is not a master key, and the other way round
    proc = masquerade("restore", str(video), "-o", str(tmp_path / "x.mkv"), "--exact",
                      "--key-file", str(track_key))
    assert proc.returncode == 2 and "is a track key" in error_line(proc)
    proc = masquerade("restore", str(video), "-o", str(tmp_path / "x.mkv"), "--exact",
                      "--track-key", str(key))
    assert proc.returncode == 2 and "is a master key, not a track key" in error_line(proc)
    assert not (tmp_path / "x.mkv").exists()


def test_tampered_store_is_one_line_naming_frame_and_track(sealed: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    video, key = sealed
    copy = tmp_path / "v.mp4"
    copy.write_bytes(video.read_bytes())
    data = bytearray(seals_path(video).read_bytes())
    data[len(data) // 2] ^= 0x01  # somewhere inside a record
    seals_path(copy).write_bytes(bytes(data))
    proc = masquerade("restore", str(copy), "-o", str(tmp_path / "r.mkv"), "--exact",
                      "--key-file", str(key))
    assert proc.returncode == 3
    line = error_line(proc)
    assert "track" in line and "frame" in line, line
    assert not (tmp_path / "r.mkv").exists()
    proc = masquerade("restore", str(copy), "-o", str(tmp_path / "r.mkv"), "--track", "1")
    assert proc.returncode == 2 and "--track needs --exact" in error_line(proc)
