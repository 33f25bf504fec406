"""Glass-to-glass latency and capacity of live anonymization on loopback.

A real RTSP camera (tools/rtsp_camera.py) stamps each frame's index and logs when it
hands the frame to its encoder; Masquerade pulls it (PyAV or GStreamer backend),
anonymizes, and pushes RTSP to a real receiver (tools/rtsp_receiver.py) that logs when
each index arrives decoded. Latency = arrival - send, per frame; reports p50/p95, the
frames dropped to stay real-time, and with --streams N, N cameras in one process.

    python tools/bench/live_latency.py --backend pyav --seconds 20 --out latency.json
    python tools/bench/live_latency.py --streams 3 --seconds 20   # capacity
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from masquerade.config import load_config
from masquerade.pipeline.live import LiveRunner, LiveStream
from masquerade.pipeline.runner import FramePipeline
from masquerade.streams.live import Backoff, PyAVStreamSink, ReconnectingSource
from masquerade.streams.pyav import PyAVSource

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("live_latency")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def child(args: list[str]) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, preexec_fn=_die_with_parent,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"{args[0]} failed to start")
    return proc, json.loads(line)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["pyav", "gstreamer"], default="pyav")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--config", help="run config YAML (default: configs/fast.yaml)",
                        default=str(ROOT / "configs" / "fast.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("live_latency.json"))
    parser.add_argument("--restart-camera-at", type=float, default=0,
                        help="kill the camera after this many seconds and restart it 1 s "
                             "later, to measure reconnection (0: never)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"masq-live-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config, ["anonymizer.mode=blur", "pipeline.progress=false",
                                       *args.overrides])
    camera_args = ["tools/rtsp_camera.py", "--port", str(free_port()), "--width",
                   str(args.width), "--height", str(args.height), "--send-log",
                   str(work / "sent.jsonl")]
    camera, info = child(camera_args)
    receivers, runners, threads, streams = [], [], [], []
    stop_event = threading.Event()
    try:
        for i in range(args.streams):
            url = f"rtsp://127.0.0.1:{free_port()}/out{i}"
            rx, _ = child(["tools/rtsp_receiver.py", "--url", url, "--out",
                           str(work / f"rx{i}.mkv"), "--arrivals", str(work / f"rx{i}.json")])
            receivers.append(rx)
            if args.backend == "gstreamer":
                from masquerade.streams.gst import GstSource

                def opener(u=info["url"]):
                    return GstSource(u, latency_ms=0)
            else:
                def opener(u=info["url"]):
                    return PyAVSource(u, timeout=(10.0, 5.0), options={"fflags": "nobuffer"})
            source = ReconnectingSource(opener, info["url"], backoff=Backoff(0.2, 1.0),
                                        stop=stop_event)
            stream = LiveStream(name=f"s{i}", source=source,
                                pipeline=FramePipeline.from_config(config),
                                sinks=[PyAVStreamSink(url, config.encoder)])
            stream.health = source.health
            streams.append(stream)
            runner = LiveRunner(stream, stop_event)
            runners.append(runner)
            threads.append(threading.Thread(target=runner.run, daemon=True))
        for t in threads:
            t.start()
        if args.restart_camera_at:
            time.sleep(args.restart_camera_at)
            os.kill(camera.pid, signal.SIGKILL)
            camera.wait()
            time.sleep(1.0)
            camera, _ = child(camera_args)
            time.sleep(max(0.0, args.seconds - args.restart_camera_at - 1.0))
        else:
            time.sleep(args.seconds)
    finally:
        stop_event.set()
        for t in threads:
            t.join(timeout=30)
        for rx in receivers:
            try:
                rx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                stop(rx)
        stop(camera)
    # A restarted camera counts from 0 again: match each arrival to the latest send of
    # its index that precedes it.
    sent: dict[int, list[float]] = {}
    for line in (work / "sent.jsonl").read_text().splitlines():
        row = json.loads(line)
        sent.setdefault(row["index"], []).append(row["t"])

    def latency(index: int, arrived: float) -> float | None:
        before = [t for t in sent.get(index, []) if t <= arrived]
        return arrived - max(before) if before else None

    report = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m_at_end": os.getloadavg()[0]},
        "backend": args.backend, "streams": args.streams,
        "resolution": f"{args.width}x{args.height}", "fps_in": 30, "seconds": args.seconds,
        "config": args.config, "overrides": args.overrides, "per_stream": [],
    }
    for i, stream in enumerate(streams):
        arrivals_path = work / f"rx{i}.json"
        arrivals = json.loads(arrivals_path.read_text()) if arrivals_path.exists() else []
        lat = np.array([x for x in (latency(i, t) for i, t in arrivals) if x is not None]) * 1000
        s = stream.stats
        report["per_stream"].append({
            "frames_in": s.frames_in, "frames_out": s.frames_out,
            "dropped_behind": s.frames_dropped_behind,
            "drop_rate": round(s.frames_dropped_behind / max(s.frames_in, 1), 4),
            "fps_out": round(s.frames_out / max(s.wall_seconds, 1e-9), 2),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
            "frames_measured": len(lat),
            "reconnects": stream.health.reconnects if stream.health else 0,
            "reconnect_seconds": [round(x, 2) for x in stream.health.history]
            if stream.health else [],
            "stage_ms_per_frame": {k: round(v, 2) for k, v in s.stage_ms_per_frame().items()},
        })
    args.out.write_text(json.dumps(report, indent=2))
    for row in report["per_stream"]:
        log.info("p50 %s ms, p95 %s ms, %s fps out, %.1f%% dropped", row["latency_ms_p50"],
                 row["latency_ms_p95"], row["fps_out"], 100 * row["drop_rate"])


if __name__ == "__main__":
    main()
