"""A real RTSP (or RTMP) receiver on loopback: accepts one pushed stream (RTSP
ANNOUNCE/RECORD, or an RTMP publish) and records it, packets copied, to a file;
optionally logs each frame's arrival time.

    python tools/rtsp_receiver.py --url rtsp://127.0.0.1:8556/out --out received.mkv
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

import av


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for a sender")
    parser.add_argument("--idle", type=float, default=10,
                        help="seconds a connected sender may stay silent (its own source "
                        "reconnecting) before the recording ends")
    parser.add_argument("--arrivals", type=Path, help="write frame-index arrival times (JSON)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.url.startswith("rtmp"):
        options = {"listen": "1"}
    else:
        options = {"rtsp_flags": "listen", "listen_timeout": str(int(args.wait)),
                   "rtsp_transport": "tcp"}
    print(json.dumps({"listening": args.url}), flush=True)
    packets = 0
    arrivals: list[tuple[int, float]] = []
    with av.open(args.url, options=options, timeout=(args.wait + 5, args.idle)) as src, \
            av.open(str(args.out), "w", format="matroska") as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        decode = args.arrivals is not None
        try:
            for packet in src.demux(video):
                if packet.dts is None:
                    continue
                if decode:
                    from masquerade.synthetic import read_index

                    for frame in packet.decode():
                        arrivals.append((read_index(frame.to_ndarray(format="rgb24")),
                                         time.time()))
                packet.stream = stream
                out.mux(packet)
                packets += 1
        except av.FFmpegError as exc:  # sender went away: keep what arrived
            print(json.dumps({"ended": str(exc)}), flush=True)
        except KeyboardInterrupt:  # SIGTERM/SIGINT: finalize the file
            pass
    if args.arrivals:
        args.arrivals.write_text(json.dumps(arrivals))
    print(json.dumps({"packets": packets}), flush=True)


if __name__ == "__main__":
    main()
