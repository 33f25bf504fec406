"""`masquerade batch` as a user meets it before any work: help and one-line errors.

None of these start Ray: every mistake here is caught before the runtime would start.
The runs themselves are in tests/batch/test_ray_batch.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from masquerade.synthetic import Scenario, write_clip
from tests.batch.helpers import error_line, masquerade_batch
from tests.conftest import free_port


def test_help_explains_inputs_resume_faults_cluster_and_keys() -> None:
    proc = masquerade_batch("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for needle in ("a folder (searched recursively", "a glob", "list file",
                   "mirror the input tree", "masquerade-batch.jsonl", "--retry-failed",
                   "--workers N", "--address HOST:PORT", "RAY_ADDRESS", "local Ray runtime",
                   "--max-attempts", "every node", "runtime environment",
                   "restore` works on any output alone", "--key-file", "--gpus-per-file"):
        assert needle in text, needle


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    write_clip(path, Scenario(width=160, height=90, frames=5, audio=False))
    return path


def test_errors_are_one_line_with_their_exit_codes(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "out"
    cases = [
        (["missing.mp4", "-o", str(out)], 3, "input not found: missing.mp4"),
        ([str(tmp_path / "*.avi"), "-o", str(out)], 3, "no file matches"),
        ([str(clip), "-o", str(clip)], 4, "is a file"),
        ([str(clip), "-o", str(out), "--mode", "deid"], 2, "no master key"),
        ([str(clip), "-o", str(out), "--set", "detector.min_score=2"], 2,
         "'detector.min_score': 2.0 is outside"),
        # a cluster that does not answer fails in seconds, not after Ray's minutes of retries
        ([str(clip), "-o", str(out), "--address", f"127.0.0.1:{free_port()}"], 1,
         "cannot reach the Ray cluster at 127.0.0.1:"),
    ]
    for args, code, message in cases:
        proc = masquerade_batch(*args)
        assert proc.returncode == code, (args, proc.stderr)
        assert message in error_line(proc), (args, proc.stderr)
    key = tmp_path / "open.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o644)
    proc = masquerade_batch(str(clip), "-o", str(out), "--mode", "deid", "--key-file", str(key))
    assert proc.returncode == 2 and "chmod 600" in error_line(proc)
    (tmp_path / "clip.mov").write_bytes(clip.read_bytes())
    proc = masquerade_batch(str(tmp_path), "-o", str(out))
    assert proc.returncode == 2 and "would both be written to" in error_line(proc)
    assert not out.exists() or not any(out.rglob("*.mp4"))


def test_bad_numbers_are_usage_errors(clip: Path, tmp_path: Path) -> None:
    for args in (["--workers", "0"], ["--cpus-per-file", "-1"], ["--max-attempts", "x"]):
        proc = masquerade_batch(str(clip), "-o", str(tmp_path / "out"), *args)
        assert proc.returncode == 2 and "usage:" in proc.stderr, args
