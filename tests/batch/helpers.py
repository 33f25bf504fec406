"""Running `masquerade batch` as a user does: a real process and a real local Ray runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import guarded

# Small, fast encodes: the tests are about the batch, not the picture.
FAST = ("--set", "encoder.preset=ultrafast")


def batch_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASQUERADE_KEY", "MASQUERADE_PASSWORD", "RAY_ADDRESS")}
    env["GLOG_minloglevel"] = "2"
    env.update(extra)
    return env


def masquerade_batch(*args: str, env: dict[str, str] | None = None, verbose: bool = False,
                     timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`masquerade [-v] batch ARGS...`; -v also forwards the workers' own log lines."""
    # stdin not a terminal: a keyed mode without a key must fail, not prompt
    command = [sys.executable, "-m", "masquerade", *(["-v"] if verbose else []), "batch", *args]
    return subprocess.run(guarded(command),
                          env=env or batch_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("masquerade: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def records(outdir: Path) -> list[dict]:
    """Every record of the manifest, header left out, in order."""
    lines = (outdir / "masquerade-batch.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "input" in r]


def last(outdir: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for record in records(outdir):
        out[record["input"]] = record
    return out


def hidden_files(folder: Path) -> list[Path]:
    """Temporary (partial) outputs left anywhere under `folder`."""
    return [p for p in folder.rglob(".*") if p.is_file()]
