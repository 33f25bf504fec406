"""`serve` and live `run` against sources that misbehave, on 127.0.0.1 only.

A camera whose URL carries a password and never answers (a port nobody listens on):
the password must not reach /healthz, /metrics, the log or the error line, and a
bounded `give_up_after` must end the process with one line. A local file used as a
camera must be paced at its frame rate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from masquerade.pipeline.serve import ServeConfig, StreamSpec, Supervisor
from masquerade.streams.gst import gstreamer_available
from tests.conftest import PATIENCE, free_port, stop_child, wait_for

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "S3cretPw"


def start_masquerade(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASQUERADE_KEY", "MASQUERADE_PASSWORD")}
    # No preexec_fn: Python code between fork and exec can deadlock a threaded process.
    return subprocess.Popen([sys.executable, "-m", "masquerade", *args], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("masquerade: error:")]


def test_camera_password_stays_out_of_health_metrics_and_logs(tmp_path: Path) -> None:
    metrics_port = free_port()
    streams = [{"name": "door", "stall_seconds": 1,
                "source": f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/stream"}]
    if gstreamer_available():  # GStreamer's own error strings repeat the URL too
        streams.append({"name": "gate", "backend": "gstreamer", "stall_seconds": 1,
                        "source": f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/s"})
    spec = {"metrics": {"port": metrics_port},
            "defaults": {"anonymizer": {"mode": "solid"}}, "streams": streams}
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(spec))
    serve = start_masquerade("serve", "--config", str(tmp_path / "cameras.yaml"))
    base = f"http://127.0.0.1:{metrics_port}"
    try:
        def failed() -> bool:
            status, body = get(f"{base}/healthz")
            return status == 503 and all(json.loads(body)[s["name"]]["last_error"]
                                         for s in streams)
        assert wait_for(failed, PATIENCE), "the dead camera was never reported"
        _, health = get(f"{base}/healthz")
        _, metrics = get(f"{base}/metrics")
        serve.send_signal(signal.SIGTERM)
        _, stderr = serve.communicate(timeout=PATIENCE)
    finally:
        stop_child(serve)
    for stream in streams:
        assert "rtsp://***@127.0.0.1" in json.loads(health)[stream["name"]]["last_error"]
    assert "retrying in" in stderr and "rtsp://***@127.0.0.1" in stderr
    for text in (health, metrics, stderr):
        assert PASSWORD not in text and "admin" not in text


def test_run_of_a_dead_url_gives_up_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    source = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/stream"
    started = time.monotonic()
    run = start_masquerade("run", source, "-o", str(out), "--mode", "solid",
                           "--give-up-after", "2")
    try:
        _, stderr = run.communicate(timeout=PATIENCE)
    finally:
        stop_child(run)
    assert run.returncode == 3, stderr
    (line,) = error_lines(stderr)
    assert "gave up after 2 s without a frame" in line and "rtsp://***@127.0.0.1" in line
    assert PASSWORD not in stderr
    assert time.monotonic() - started < PATIENCE
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_serve_exits_with_one_line_when_every_stream_gave_up(tmp_path: Path) -> None:
    spec = {"metrics": {"enabled": False},
            "defaults": {"anonymizer": {"mode": "solid"}},
            "streams": [{"name": "a", "source": f"rtsp://127.0.0.1:{free_port()}/x",
                         "stall_seconds": 1, "give_up_after": 1},
                        {"name": "b", "source": f"rtsp://127.0.0.1:{free_port()}/x",
                         "stall_seconds": 1}]}
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(spec))
    # stream b has no give_up_after of its own: the command line sets it
    serve = start_masquerade("serve", "--config", str(tmp_path / "cameras.yaml"),
                             "--give-up-after", "1.5")
    try:
        _, stderr = serve.communicate(timeout=PATIENCE)
    finally:
        stop_child(serve)
    assert serve.returncode == 3, stderr
    (line,) = error_lines(stderr)
    assert "every stream gave up (" in line and "without a frame" in line


def test_a_file_camera_is_paced_at_its_frame_rate(scenario_clip: Path) -> None:
    """The 3 s, 30 fps clip as a serve camera, past its end (it loops): frames arrive at
    about 30 per second, not as fast as they decode (then nearly all dropped as behind)."""
    spec = ServeConfig(
        streams=[StreamSpec(name="file", source=str(scenario_clip), queue_size=2)],
        defaults={"anonymizer": {"mode": "solid"}, "detector": {"tiling": "off"},
                  "pipeline": {"progress": False}},
    )
    spec.metrics.enabled = False
    supervisor = Supervisor(spec, threading.Event())
    supervisor.start()
    try:
        stream = supervisor.streams["file"]
        assert wait_for(lambda: stream.stats.frames_in >= 1, PATIENCE)
        first = time.monotonic()
        wanted = 100  # the clip has 90
        assert wait_for(lambda: stream.stats.frames_in >= wanted, PATIENCE)
        elapsed = time.monotonic() - first
    finally:
        supervisor.close()
    stats = stream.stats
    assert elapsed >= 0.9 * (wanted - 1) / 30, elapsed
    assert stats.frames_dropped_behind <= 0.5 * stats.frames_in, (
        stats.frames_dropped_behind, stats.frames_in)
