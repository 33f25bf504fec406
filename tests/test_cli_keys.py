"""Where the key comes from, as a user meets it: real processes, a real terminal.

A track log records the fingerprint of the key that wrote it, so `restore` itself tells
whether a key source delivered the right key: "this key is not the one used" or a
restored video.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from masquerade.config import AnonymizerConfig
from masquerade.keys import SecretKey
from tests.conftest import PATIENCE, stop_child
from tests.test_cli import error_line, masquerade

ROOT = Path(__file__).resolve().parents[1]
RIGHT, WRONG = "the right passphrase", "some other passphrase"


def deid_video(tmp_path: Path, key_id: str | None) -> Path:
    """A tiny real video and the track log `run --mode deid` would leave beside it."""
    video = tmp_path / "deid.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for _ in range(3):
            image = np.full((120, 160, 3), 128, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    meta = {"stream_id": "default", "privacy_level": 1.0,
            "anonymizer": dataclasses.asdict(AnonymizerConfig(mode="deid"))}
    if key_id is not None:
        meta["key_id"] = key_id
    Path(f"{video}.tracks.json").write_text(json.dumps({"version": 2, "meta": meta,
                                                        "frames": {}}))
    return video


def private_file(path: Path, content: str) -> Path:
    path.write_text(content)
    path.chmod(0o600)
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return deid_video(tmp_path, SecretKey.from_passphrase(RIGHT).key_id())


def restore(video: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    out = video.with_name("restored.mp4")
    if env is None:
        return masquerade("restore", str(video), "-o", str(out), "--overwrite", *args)
    full = {k: v for k, v in os.environ.items()
            if k not in ("MASQUERADE_KEY", "MASQUERADE_PASSWORD")}
    return subprocess.run([sys.executable, "-m", "masquerade", "restore", str(video), "-o",
                           str(out), "--overwrite", *args], env={**full, **env}, cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300)


def test_help_says_which_key_source_to_prefer() -> None:
    for command in ("run", "restore", "serve"):
        proc = masquerade(command, "--help")
        assert proc.returncode == 0
        text = " ".join(proc.stdout.split())
        assert "Prefer --key-file" in text and "--password-file" in text
        assert "MASQUERADE_PASSWORD" in text
        if command == "serve":
            assert "--password TEXT" not in text
        else:
            assert "visible in `ps`, for tests only" in text


def test_a_typo_in_a_hex_key_file_is_refused(tmp_path: Path) -> None:
    video = deid_video(tmp_path, key_id=None)  # any key would restore it: only the format fails
    good = SecretKey.generate().to_hex()
    typo = good[:20] + ("g" if good[20] != "g" else "h") + good[21:]
    key = private_file(tmp_path / "typo.key", typo + "\n")
    proc = restore(video, "--key-file", str(key))
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc).endswith(f"key file {key} is not a key: character 21 is not a hex "
                                     "digit (expected exactly 64 hex digits with an optional "
                                     "newline, or exactly 32 raw bytes)")
    assert good[:20] not in proc.stderr


def test_restore_refuses_a_key_that_did_not_write_the_video(video: Path) -> None:
    proc = restore(video, "--password", WRONG)
    assert proc.returncode == 2, proc.stderr
    assert f"this key is not the one used to write {video}" in error_line(proc)
    assert not video.with_name("restored.mp4").exists()
    # the old behaviour on request: a wrong key renders just another fake
    proc = restore(video, "--password", WRONG, "--allow-wrong-key")
    assert proc.returncode == 0, proc.stderr
    assert video.with_name("restored.mp4").is_file()


def test_logs_without_a_fingerprint_still_restore(tmp_path: Path) -> None:
    video = deid_video(tmp_path, key_id=None)
    proc = restore(video, "--password", WRONG)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("source", ["password-file", "env", "env-and-key"])
def test_password_file_and_environment(tmp_path: Path, video: Path, source: str) -> None:
    if source == "password-file":
        for passphrase, code in ((WRONG, 2), (RIGHT, 0)):
            pw = private_file(tmp_path / "pw", passphrase + "\n")
            assert restore(video, "--password-file", str(pw)).returncode == code
        pw.chmod(0o644)
        proc = restore(video, "--password-file", str(pw))
        assert proc.returncode == 2 and "chmod 600" in error_line(proc)
    elif source == "env":
        assert restore(video, env={"MASQUERADE_PASSWORD": WRONG}).returncode == 2
        assert restore(video, env={"MASQUERADE_PASSWORD": RIGHT}).returncode == 0
    else:
        proc = restore(video, env={"MASQUERADE_PASSWORD": RIGHT,
                                   "MASQUERADE_KEY": SecretKey.generate().to_hex()})
        assert proc.returncode == 2 and "unset one" in error_line(proc)


def in_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run masquerade with a pseudo-terminal as stdin/out/err, typing `answers` at each
    passphrase prompt. In a new session it has no controlling terminal, so getpass uses
    the pty on stdin (never the terminal pytest may have been started from)."""
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASQUERADE_KEY", "MASQUERADE_PASSWORD")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "masquerade", *args], cwd=ROOT, env=env, stdin=slave,
        stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out, answered = b"", 0
    deadline = time.monotonic() + PATIENCE
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every holder of the terminal has exited
                    break
                if not chunk:
                    break
                out += chunk
            if answered < len(answers) and out.count(b"masquerade: passphrase") > answered:
                os.write(master, answers[answered].encode() + b"\n")
                answered += 1
        proc.wait(timeout=PATIENCE)
    finally:
        stop_child(proc)
        os.close(master)
    return proc.returncode, out.decode(errors="replace")


def test_a_terminal_is_asked_for_the_passphrase(video: Path, scenario_clip: Path,
                                                tmp_path: Path) -> None:
    out = str(video.with_name("restored.mp4"))
    code, text = in_terminal(["restore", str(video), "-o", out, "--overwrite"], [WRONG])
    assert code == 2 and "this key is not the one used" in text, text
    assert WRONG not in text  # not echoed
    code, text = in_terminal(["restore", str(video), "-o", out, "--overwrite"], [RIGHT])
    assert code == 0, text
    # a run that writes keyed output asks twice: a typo would lock the video to it
    code, text = in_terminal(["run", str(scenario_clip), "-o", str(tmp_path / "o.mp4"),
                              "--mode", "deid"], [RIGHT, RIGHT + "!"])
    assert code == 2 and "the two passphrases differ" in text, text
    assert not (tmp_path / "o.mp4").exists()


def test_every_key_source_reaches_restore(tmp_path: Path) -> None:
    """Password file, MASQUERADE_PASSWORD and the prompt each deliver a key (a log without
    a fingerprint, which any key restores; before, only --password/--key-file did)."""
    video = deid_video(tmp_path, key_id=None)
    pw = private_file(tmp_path / "pw", RIGHT + "\n")
    proc = restore(video, "--password-file", str(pw))
    assert proc.returncode == 0, proc.stderr
    proc = restore(video, env={"MASQUERADE_PASSWORD": RIGHT})
    assert proc.returncode == 0, proc.stderr
    code, text = in_terminal(["restore", str(video), "-o", str(tmp_path / "r.mp4")], [RIGHT])
    assert code == 0 and "masquerade: passphrase" in text, text


def test_only_one_key_source_at_a_time(tmp_path: Path, video: Path) -> None:
    pw = private_file(tmp_path / "pw", RIGHT)
    proc = restore(video, "--password-file", str(pw), "--password", RIGHT)
    assert proc.returncode == 2
    assert "give only one of a password file and --password" in error_line(proc)
