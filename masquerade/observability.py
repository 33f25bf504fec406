"""Prometheus metrics and a health endpoint for live runs.

Metrics are read from each stream's `RunStats` and source health at scrape time (a
custom collector), so the hot path keeps plain integer counters and nothing is counted
twice.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from masquerade.pipeline.live import LiveStream
from masquerade.pipeline.stats import LATENCY_BUCKETS
from masquerade.redaction import redact

log = logging.getLogger(__name__)

# A stream with no frame for this long is reported unhealthy.
STALE_SECONDS = 10.0


class StreamCollector:
    def __init__(self, streams: Callable[[], Mapping[str, LiveStream]]):
        self.streams = streams

    def collect(self) -> Iterator[Any]:
        # Label values pass through `redact` like every other operator-visible string.
        streams = {redact(name): stream for name, stream in self.streams().items()}
        counters = {
            "frames_in": ("Frames received from the source", lambda s: s.stats.frames_in),
            "frames_out": ("Frames sent to the sinks", lambda s: s.stats.frames_out),
            "faces": ("Faces anonymized (detected or predicted)", lambda s: s.stats.faces),
            "coasted_faces": ("Faces covered from track prediction",
                              lambda s: s.stats.coasted_faces),
            "reconnects": ("Source reconnections",
                           lambda s: s.health.reconnects if s.health else 0),
            "sink_errors": ("Sink write failures", lambda s: s.sink_errors),
        }
        for name, (doc, get) in counters.items():
            family = CounterMetricFamily(f"masquerade_{name}", doc, labels=["stream"])
            for stream_name, stream in streams.items():
                family.add_metric([stream_name], get(stream))
            yield family
        dropped = CounterMetricFamily("masquerade_frames_dropped",
                                      "Frames not emitted, by reason", labels=["stream", "reason"])
        for stream_name, s in streams.items():
            dropped.add_metric([stream_name, "behind"], s.stats.frames_dropped_behind)
            dropped.add_metric([stream_name, "stage_error"], s.stats.frames_dropped)
        yield dropped
        covered = CounterMetricFamily("masquerade_frames_covered",
                                      "Frames covered whole after a stage error",
                                      labels=["stream"])
        tracks = GaugeMetricFamily("masquerade_tracks", "Face tracks started", labels=["stream"])
        fps = GaugeMetricFamily("masquerade_fps_out", "Frames out per second since start",
                                labels=["stream"])
        connected = GaugeMetricFamily("masquerade_source_connected",
                                      "1 while the source delivers", labels=["stream"])
        for stream_name, s in streams.items():
            covered.add_metric([stream_name], s.stats.frames_covered)
            tracks.add_metric([stream_name], s.stats.tracks)
            fps.add_metric([stream_name], s.fps_out())
            connected.add_metric([stream_name], 1.0 if s.health and s.health.connected else 0.0)
        yield from (covered, tracks, fps, connected)
        hist = HistogramMetricFamily("masquerade_stage_seconds", "Per-frame stage latency",
                                     labels=["stream", "stage"])
        for stream_name, s in streams.items():
            for stage, counts in list(s.stats.stage_counts.items()):
                cumulative, buckets = 0, []
                for bound, count in zip(LATENCY_BUCKETS, counts, strict=False):
                    cumulative += count
                    buckets.append((repr(bound), cumulative))
                buckets.append(("+Inf", cumulative + counts[-1]))
                hist.add_metric([stream_name, stage], buckets,
                                s.stats.stage_seconds.get(stage, 0.0))
        yield hist


def health(streams: Mapping[str, LiveStream]) -> tuple[bool, dict[str, Any]]:
    now = time.monotonic()
    report: dict[str, Any] = {}
    ok = True
    for name, s in streams.items():
        last = s.health.last_frame_at if s.health else None
        age = None if last is None else round(now - last, 2)
        healthy = age is not None and age < STALE_SECONDS
        ok = ok and healthy
        last_error = s.health.last_error if s.health else None
        report[redact(name)] = {
            "healthy": healthy,
            "connected": bool(s.health and s.health.connected),
            "last_frame_age_s": age,
            "frames_out": s.stats.frames_out,
            "reconnects": s.health.reconnects if s.health else 0,
            "last_error": None if last_error is None else redact(last_error),
        }
    return ok, report


class _BoundedHTTPServer(ThreadingHTTPServer):
    """One thread per request, but at most `max_handlers` at once.

    The endpoint listens beside live video: a scraper that hangs, or a flood of idle
    connections, must neither pile up threads nor take the process down. A connection
    beyond the bound is closed at once; a handler whose client is silent for the
    handler's `timeout` gives up; a client that goes away is a debug line, not a
    traceback on stderr.
    """

    daemon_threads = True
    block_on_close = False  # close() must not wait for a stuck client

    def __init__(self, address: tuple[str, int], handler: type, max_handlers: int):
        self._slots = threading.BoundedSemaphore(max_handlers)
        self.refused = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            log.debug("metrics: %s: all handlers busy, connection closed", client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("metrics: client %s went away: %s", client_address[0], exc)
        else:
            log.error("metrics: request from %s failed", client_address[0], exc_info=True)


class MetricsServer:
    """`/metrics` (Prometheus text) and `/healthz` (JSON; 503 when a stream is stale).

    Exactly those two paths (a query string is ignored); anything else is 404.
    """

    MAX_HANDLERS = 16
    REQUEST_TIMEOUT = 10.0  # seconds a client may stay silent mid-request

    def __init__(self, streams: Callable[[], Mapping[str, LiveStream]], host: str = "127.0.0.1",
                 port: int = 9108, *, max_handlers: int = MAX_HANDLERS,
                 request_timeout: float = REQUEST_TIMEOUT):
        self.registry = CollectorRegistry()
        self.registry.register(StreamCollector(streams))
        registry, get_streams = self.registry, streams

        class Handler(BaseHTTPRequestHandler):
            timeout = request_timeout

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/metrics":
                    body, status = generate_latest(registry), 200
                    ctype = "text/plain; version=0.0.4"
                elif path == "/healthz":
                    ok, report = health(get_streams())
                    body, status = json.dumps(report).encode(), 200 if ok else 503
                    ctype = "application/json"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("metrics: %s: %s", self.client_address[0], format % args)

        self.httpd = _BoundedHTTPServer((host, port), Handler, max_handlers)
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics",
                                        daemon=True)
        self._thread.start()
        log.info("metrics at %s/metrics, health at %s/healthz", self.url, self.url)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
