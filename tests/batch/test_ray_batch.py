"""`masquerade batch` end to end on a real local Ray runtime (started by the command).

Each test is one or two real runs on tiny synthetic clips; they wait for conditions
(a partial file appearing, a process ending), never for fixed times.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest

from masquerade.keys import SecretKey
from masquerade.synthetic import Scenario, write_clip
from tests.batch.helpers import (
    FAST,
    batch_env,
    error_line,
    hidden_files,
    last,
    masquerade_batch,
    records,
)
from tests.conftest import PATIENCE, guarded, wait_for

pytestmark = pytest.mark.slow


def frames_of(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def clip(path: Path, seed: int = 0, frames: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_clip(path, Scenario(width=320, height=180, frames=frames, audio=False, seed=seed))
    return path


def test_bad_input_is_recorded_and_the_batch_goes_on(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "a.mp4")
    clip(src / "cams" / "b.mp4", seed=1)
    (src / "broken.mp4").write_text("this is not a video\n")
    proc = masquerade_batch(str(src), "-o", str(out), "--workers", "2", *FAST)
    assert proc.returncode == 3, proc.stderr  # an input error, and only input errors
    assert "1 of 3 input(s) failed" in error_line(proc)
    assert frames_of(out / "a.anonymized.mp4") == 20
    assert frames_of(out / "cams" / "b.anonymized.mp4") == 20
    assert not (out / "broken.anonymized.mp4").exists() and not hidden_files(out)
    # the final table lists the failure with its one-line error
    table = proc.stdout[proc.stdout.index("INPUT"):]
    assert re.search(r"broken\.mp4\s+3\s+cannot open .*broken\.mp4", table), proc.stdout
    state = last(out)
    assert state["broken.mp4"]["status"] == "failed"
    assert state["broken.mp4"]["error"].startswith("cannot open ")
    assert "\n" not in state["broken.mp4"]["error"]
    for rel in ("a.mp4", "cams/b.mp4"):
        assert state[rel]["status"] == "done"
        assert state[rel]["frames"] == 20 and state[rel]["fps"] == 30.0
        assert len(state[rel]["input_sha256"]) == len(state[rel]["output_sha256"]) == 64

    # Unchanged, the failure stays failed (no Ray needed: nothing to run) ...
    again = masquerade_batch(str(src), "-o", str(out), *FAST)
    assert again.returncode == 3 and "--retry-failed retries it" in again.stdout
    # ... and once fixed, --retry-failed runs only it.
    clip(src / "broken.mp4", seed=2)
    fixed = masquerade_batch(str(src), "-o", str(out), "--retry-failed", *FAST)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 done, 2 skipped" in fixed.stdout
    assert last(out)["broken.mp4"]["status"] == "done"


def test_rerun_skips_identical_files_and_redoes_only_what_changed(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    for i, name in enumerate(("a.mp4", "b.mp4", "c.mp4")):
        clip(src / name, seed=i)
    listing = tmp_path / "list.txt"
    listing.write_text("in/a.mp4\nin/b.mp4\nin/c.mp4\n")
    first = masquerade_batch(str(listing), "-o", str(out), *FAST)
    assert first.returncode == 0, first.stderr
    assert "3 done, 0 skipped" in first.stdout
    outputs = {n: (out / f"{n}.anonymized.mp4").read_bytes() for n in "abc"}

    second = masquerade_batch(str(listing), "-o", str(out), *FAST)
    assert second.returncode == 0, second.stderr
    assert "0 done, 3 skipped (identical)" in second.stdout
    assert all(last(out)[f"{n}.mp4"]["status"] == "skipped" for n in "abc")
    assert all(last(out)[f"{n}.mp4"]["reason"] == "identical" for n in "abc")

    clip(src / "b.mp4", seed=7)  # new content under the same name
    third = masquerade_batch(str(listing), "-o", str(out), *FAST)
    assert third.returncode == 0, third.stderr
    assert "1 done, 2 skipped" in third.stdout
    state = last(out)
    assert state["b.mp4"]["status"] == "done" and state["a.mp4"]["status"] == "skipped"
    assert (out / "b.anonymized.mp4").read_bytes() != outputs["b"]
    assert (out / "a.anonymized.mp4").read_bytes() == outputs["a"]

    # A config change redoes everything; an output not written by this batch is kept.
    (out / "c.anonymized.mp4").write_bytes(b"someone else's file")
    fourth = masquerade_batch(str(listing), "-o", str(out), "--mode", "solid", *FAST)
    assert fourth.returncode == 4, fourth.stderr
    assert re.search(r"c\.mp4\s+4\s+output .*c\.anonymized\.mp4 exists", fourth.stdout)
    assert (out / "c.anonymized.mp4").read_bytes() == b"someone else's file"
    assert last(out)["a.mp4"]["status"] == "done"


def test_a_worker_killed_mid_file_has_its_file_retried_without_partial_output(
        tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "long.mp4", frames=240)
    proc = subprocess.Popen(
        guarded([sys.executable, "-m", "masquerade", "batch", str(src), "-o", str(out),
                 "--workers", "1", "--no-progress", *FAST]),
        env=batch_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    try:
        # The worker's temporary output carries its PID: `.long.anonymized.<pid>-....`
        pattern = re.compile(r"\.long\.anonymized\.(\d+)-\w+\.partial\.mp4")

        def partial() -> re.Match | None:
            for p in out.glob(".*"):
                m = pattern.fullmatch(p.name)
                if m and p.stat().st_size > 0:
                    return m
            return None

        assert wait_for(partial), "the worker never started writing"
        victim = int(partial().group(1))
        assert victim != proc.pid
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=PATIENCE * 3)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "1 attempt(s) lost with a worker" in stdout
    assert frames_of(out / "long.anonymized.mp4") == 240
    assert not hidden_files(out)
    history = [r for r in records(out) if r["input"] == "long.mp4"]
    assert [(r["status"], r["attempt"]) for r in history] == [("retry", 1), ("done", 2)]
    assert f"worker pid {victim}" in history[0]["error"]
    assert history[1]["worker"]["pid"] != victim


@pytest.mark.parametrize("source", ["key-file", "env"])
def test_keyed_outputs_restore_alone_and_the_key_stays_out_of_args_and_logs(
        tmp_path: Path, source: str) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    clip(src / "cam1" / "a.mp4", frames=10)
    key = SecretKey.generate()
    key_file = tmp_path / "master.key"
    key.save(key_file)
    if source == "key-file":
        proc = masquerade_batch(str(src), "-o", str(out), "--mode", "deid", "--key-file",
                                str(key_file), *FAST, verbose=True)
    else:  # reaches the workers through the job's Ray runtime environment
        proc = masquerade_batch(str(src), "-o", str(out), "--mode", "deid", *FAST, verbose=True,
                                env=batch_env(MASQUERADE_KEY=key.to_hex()))
    assert proc.returncode == 0, proc.stderr
    video = out / "cam1" / "a.anonymized.mp4"
    manifest = (out / "masquerade-batch.jsonl").read_text()
    assert last(out)["cam1/a.mp4"]["stream_id"] == "cam1/a.mp4"
    track_log = Path(f"{video}.tracks.json").read_text()
    assert '"stream_id": "cam1/a.mp4"' in track_log
    for text in (proc.stdout, proc.stderr, manifest, track_log):
        assert key.to_hex() not in text
    # `restore` needs nothing but the output and the key: the stream id is recorded
    restored = subprocess.run(
        guarded([sys.executable, "-m", "masquerade", "restore", str(video), "-o",
                 str(tmp_path / "restored.mp4"), "--key-file", str(key_file)]),
        env=batch_env(), capture_output=True, text=True, timeout=PATIENCE * 3,
        stdin=subprocess.DEVNULL)
    assert restored.returncode == 0, restored.stderr
    assert frames_of(tmp_path / "restored.mp4") == 10
