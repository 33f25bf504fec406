"""Shared fixtures: real media made on the spot, with exact ground truth."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from masquerade.synthetic import Scenario, write_clip

os.environ.setdefault("GLOG_minloglevel", "2")

ROOT = Path(__file__).resolve().parents[1]
# Upper bound of every wait on a child process or a stream. Waits poll for their condition
# and return as soon as it holds, so a generous bound costs nothing on an idle machine and
# keeps a loaded one (load 10 on 2 cores) from failing tests that are merely slow.
PATIENCE = 120.0


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return Scenario()


@pytest.fixture(scope="session")
def scenario_clip(tmp_path_factory: pytest.TempPathFactory, scenario: Scenario) -> Path:
    path = tmp_path_factory.mktemp("media") / "scenario.mp4"
    write_clip(path, scenario)
    return path


@pytest.fixture(scope="session")
def lfw() -> Path:
    """Root of the shared LFW112 faces; skips the test when the data is absent."""
    from masquerade.datasets import lfw_root

    root = lfw_root()
    if not (root / "pairs.txt").is_file():
        pytest.skip(f"shared face data not found at {root} (set MASQUERADE_DATA)")
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from masquerade.datasets import data_root

    root = data_root()
    if not (root / "faces").is_dir():
        pytest.skip(f"shared face data not found at {root} (set MASQUERADE_DATA)")
    return root


def decode_video(path: Path) -> list[tuple[int, np.ndarray]]:
    """(pts, RGB image) of every frame, in presentation order."""
    with av.open(str(path)) as container:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def audio_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def write_audio_only(path: Path) -> Path:
    """A real media file with sound and no picture."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=44100, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 44100
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def guarded(command: list[str]) -> list[str]:
    """`command` run so that it gets SIGKILL if the test process dies (no orphans).

    Unlike `preexec_fn=die_with_parent` it is safe in a test that has started threads
    (PyAV, a LiveRunner): see tests/parent_guard.py.
    """
    return [sys.executable, str(ROOT / "tests" / "parent_guard.py"), str(os.getpid()), *command]


def wait_for(condition: Callable[[], object], timeout: float = PATIENCE) -> bool:
    """Poll `condition` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def port_listening(port: int) -> bool:
    """Whether some process listens on TCP `port` (from /proc, without connecting: the
    receivers under test accept one connection only, a probe would take its place)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_listening(port: int, timeout: float = PATIENCE) -> bool:
    return wait_for(lambda: port_listening(port), timeout)


def start_child(args: list[str], first_line_timeout: float = PATIENCE
                ) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(guarded([sys.executable, *args]), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    box: dict = {}
    reader = threading.Thread(target=lambda: box.setdefault("line", proc.stdout.readline()))
    reader.start()
    reader.join(first_line_timeout)
    if not box.get("line"):
        stop_child(proc)
        raise RuntimeError(f"{args[0]} did not start")
    return proc, json.loads(box["line"])


def stop_child(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
