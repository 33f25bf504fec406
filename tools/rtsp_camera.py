"""A real RTSP camera on loopback: the ground-truth scenario (or a video file) in a loop.

Serves H.264 over RTSP with gst-rtsp-server at real-time pace, each frame stamped with
its index (bottom-left barcode) so receivers can match frames to ground truth and
measure latency. Prints the URL once serving. Used by the live tests and benchmarks.

    python tools/rtsp_camera.py --port 8554 --path cam [--width 1280 --height 720]
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from fractions import Fraction
from pathlib import Path

from masquerade.streams.frames import Frame
from masquerade.streams.gst import RtspServer
from masquerade.synthetic import Scenario, stamp_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    parser.add_argument("--path", default="cam")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=0, help="stop after this (0: never)")
    parser.add_argument("--send-log", type=Path, help="append 'index send_time' JSON lines")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s camera: %(message)s")
    scenario = Scenario(width=args.width, height=args.height, fps=args.fps, audio=False)
    frames = [scenario.render(i) for i in range(scenario.frames)]
    server = RtspServer(args.host, args.port)
    sink = server.sink(args.path, args.fps)
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log_file = args.send_log.open("a") if args.send_log else None
    start = time.monotonic()
    index = 0
    while not stop and (not args.seconds or time.monotonic() - start < args.seconds):
        image = stamp_index(frames[index % len(frames)].copy(), index)
        sink.write(Frame(image=image, pts=None, time_base=Fraction(1, args.fps), index=index))
        if log_file is not None and sink.watched:
            log_file.write(json.dumps({"index": index, "t": time.time()}) + "\n")
            log_file.flush()
        if index == 0:  # mounted now: clients can connect
            print(json.dumps({"url": sink.url}), flush=True)
        index += 1
        time.sleep(max(0.0, start + index / args.fps - time.monotonic()))
    server.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
