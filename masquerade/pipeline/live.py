"""Real-time runner: bounded latency, fail closed, sinks that may come and go.

A reader thread pulls frames from the (reconnecting) source into a queue of
`queue_size` frames. When processing falls behind, the oldest queued frame is dropped
and counted — latency stays bounded and no frame is ever emitted unprocessed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from masquerade.pipeline.background import BackgroundWriter
from masquerade.pipeline.runner import FramePipeline
from masquerade.pipeline.stats import RunStats
from masquerade.streams.frames import Frame
from masquerade.streams.live import Sink, SourceHealth

log = logging.getLogger(__name__)

_END = object()


@dataclass
class LiveStream:
    """One camera: its source, pipeline, sinks and counters."""

    name: str
    source: Iterable[Frame]
    pipeline: FramePipeline
    sinks: list[Sink]
    queue_size: int = 2
    stats: RunStats = field(default_factory=RunStats)
    health: SourceHealth | None = None
    started_at: float = field(default_factory=time.monotonic)
    sink_errors: int = 0

    def fps_out(self) -> float:
        elapsed = time.monotonic() - self.started_at
        return self.stats.frames_out / elapsed if elapsed > 0 else 0.0


class LiveRunner:
    """Runs a `LiveStream` until `stop` is set or its source ends."""

    def __init__(self, stream: LiveStream, stop: threading.Event | None = None):
        self.stream = stream
        self.stop = stop or threading.Event()
        self.queue: queue.Queue[object] = queue.Queue(maxsize=max(1, stream.queue_size))
        # Ends this runner's reader without touching `stop`, which streams may share.
        self._finished = threading.Event()
        self.stream.pipeline.stats = stream.stats

    def _read(self) -> None:
        stats = self.stream.stats
        try:
            for frame in self.stream.source:
                if self.stop.is_set() or self._finished.is_set():
                    break
                stats.frames_in += 1
                while True:
                    try:
                        self.queue.put_nowait(frame)
                        break
                    except queue.Full:
                        try:
                            self.queue.get_nowait()  # drop the oldest: latency over history
                            stats.frames_dropped_behind += 1
                        except queue.Empty:
                            pass
        except Exception:
            log.exception("%s: source failed", self.stream.name)
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self.queue.put(_END, timeout=0.2)
                return
            except queue.Full:
                if self.stop.is_set() or self._finished.is_set():
                    with contextlib.suppress(queue.Empty):
                        self.queue.get_nowait()

    def _write(self, frame: Frame) -> None:
        stream = self.stream
        with stream.stats.timed("encode"):
            for sink in stream.sinks:
                try:
                    sink.write(frame)
                except Exception as exc:  # one sink must not stop the others
                    stream.sink_errors += 1
                    if stream.sink_errors == 1:
                        log.error("%s: sink %s failed: %s", stream.name, type(sink).__name__,
                                  exc)
        stream.stats.frames_out += 1

    def run(self) -> RunStats:
        stream = self.stream
        stats = stream.stats
        start = time.perf_counter()
        reader = threading.Thread(target=self._read, name=f"{stream.name}-reader", daemon=True)
        reader.start()
        writer: BackgroundWriter[Frame] = BackgroundWriter(self._write, maxsize=2,
                                                           name=f"{stream.name}-writer")
        try:
            while True:
                try:
                    item = self.queue.get(timeout=0.5)
                except queue.Empty:
                    if self.stop.is_set():
                        break
                    continue
                if item is _END:
                    break
                assert isinstance(item, Frame)
                for out, _ in stream.pipeline.push(item):
                    writer.put(out)
            for out, _ in stream.pipeline.drain():
                writer.put(out)
        finally:
            self._finished.set()
            writer.close()
            for sink in stream.sinks:
                try:
                    sink.close()
                except Exception as exc:  # finalize the others regardless
                    log.error("%s: closing %s failed: %s", stream.name, type(sink).__name__, exc)
            reader.join(timeout=10)
            stats.wall_seconds = time.perf_counter() - start
        log.info("%s: %s", stream.name, stats.summary())
        return stats
