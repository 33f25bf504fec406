"""Live sources and sinks: reconnect, keep timestamps monotonic, never block.

Cameras drop, stall and restart. `ReconnectingSource` reopens with capped exponential
backoff (forever, or until `give_up_after` seconds pass without a frame) and rebases
timestamps so the output clock keeps running forward across the gap. A local file used
as a camera is paced at its own frame rate, as a camera would deliver it. Sinks that
talk to a server (`PyAVStreamSink`) reconnect the same way and drop frames while the
server is away instead of stalling the pipeline. URLs reach logs and health only through
`redact`: camera URLs carry passwords.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from masquerade.config import X264_PRESETS, EncoderConfig
from masquerade.errors import MasqueradeError
from masquerade.redaction import redact
from masquerade.streams.frames import Frame
from masquerade.streams.pyav import (
    AudioPacket,
    FrameSidecar,
    PyAVFileSink,
    is_capture_device,
    is_network_url,
)

log = logging.getLogger(__name__)

LIVE_TIME_BASE = Fraction(1, 90000)
# A paced file whose next frame is due further ahead than this has a timestamp jump:
# it is sent at once and the clock rebased, rather than holding the stream that long.
MAX_PACE_WAIT = 5.0


class Sink(Protocol):
    def write(self, frame: Frame) -> None: ...

    def close(self) -> None: ...


@dataclass
class Backoff:
    """Capped exponential backoff: initial, initial*factor, ... up to maximum."""

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class SourceHealth:
    """What the metrics and health endpoint report about a live source."""

    connected: bool = False
    reconnects: int = 0
    gap_seconds: float = 0.0
    last_frame_at: float | None = None
    last_error: str | None = None
    corrupt_packets: int = 0
    history: list[float] = field(default_factory=list)  # seconds each reconnect took


class ReconnectingSource:
    """Frames from a live URL; reopens on error, end of stream or stall.

    Output frames carry `pts` in 1/90000 s that only grow: within a session they follow
    the source's own timestamps, and each new session continues from the last frame plus
    the wall-clock length of the outage. With `give_up_after`, once that many seconds
    have passed without a frame (since the start or the last frame) and one last attempt
    at the deadline fails, the iteration ends with `gave_up` set, so a one-shot run can
    fail instead of retrying forever. With `pace`, frames are released no faster than
    their timestamps advance (for a local file standing in for a camera, which would
    otherwise be read as fast as it decodes and mostly dropped as "behind").
    """

    def __init__(self, open_source: Callable[[], Any], url: str, *,
                 backoff: Backoff | None = None, max_reconnects: int | None = None,
                 stop: threading.Event | None = None, give_up_after: float | None = None,
                 pace: bool = False):
        self.open_source = open_source
        self.url = url
        self.label = redact(url)  # what logs and health may show
        self.backoff = backoff or Backoff()
        self.max_reconnects = max_reconnects
        self.stop = stop or threading.Event()
        self.give_up_after = give_up_after or None  # 0 = forever
        self.pace = pace
        self.gave_up = False
        self.health = SourceHealth()
        self._last_ok = time.monotonic()

    def __iter__(self) -> Iterator[Frame]:
        last_pts: int | None = None
        frame_step = int(LIVE_TIME_BASE.denominator / 30)
        outage_started: float | None = None
        index = 0
        self._last_ok = time.monotonic()
        while not self.stop.is_set():
            try:
                source = self.open_source()
            except (MasqueradeError, av.FFmpegError, OSError) as exc:
                outage_started = outage_started or time.monotonic()
                if not self._retry(exc):
                    return
                continue
            self.health.connected = True
            if outage_started is not None:
                took = time.monotonic() - outage_started
                self.health.reconnects += 1
                self.health.gap_seconds += took
                self.health.history.append(took)
                log.warning("%s: reconnected after %.1f s", self.label, took)
            self.backoff.reset()
            first_time: float | None = None
            pace_origin = 0.0
            session_base = 0 if last_pts is None else last_pts + frame_step + round(
                (time.monotonic() - outage_started) / LIVE_TIME_BASE if outage_started else 0)
            session_start = time.monotonic()
            error: BaseException | None = None
            try:
                for item in source:
                    if self.stop.is_set():
                        break
                    if isinstance(item, AudioPacket):
                        continue  # live audio is not carried yet
                    now = time.monotonic()
                    t = item.time if item.time is not None else now - session_start
                    if first_time is None:
                        first_time, pace_origin = t, now
                    elif self.pace:
                        pace_origin = self._pace(pace_origin, t - first_time)
                        if self.stop.is_set():
                            break
                        now = time.monotonic()
                    pts = session_base + round((t - first_time) / LIVE_TIME_BASE)
                    if last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1
                    last_pts = pts
                    self.health.last_frame_at = self._last_ok = now
                    yield Frame(image=item.image, pts=pts, time_base=LIVE_TIME_BASE,
                                index=index, rotation=item.rotation)
                    index += 1
            except (MasqueradeError, av.FFmpegError, OSError) as exc:
                error = exc
            finally:
                self.health.corrupt_packets += getattr(source, "corrupt_packets", 0)
                _close_quietly(source)
                self.health.connected = False
            if self.stop.is_set():
                return
            outage_started = time.monotonic()
            if not self._retry(error or EOFError("stream ended")):
                return

    def _pace(self, origin: float, media_offset: float) -> float:
        """Wait until `media_offset` seconds after `origin`; the (maybe rebased) origin."""
        wait = origin + media_offset - time.monotonic()
        if wait > MAX_PACE_WAIT:  # a timestamp jump: send now, keep pacing from here
            return origin - wait
        if wait > 0:
            self.stop.wait(wait)
        return origin

    def _retry(self, exc: BaseException) -> bool:
        """Record the failure and wait before the next attempt; False when giving up."""
        self.health.last_error = redact(f"{type(exc).__name__}: {exc}")
        delay = self.backoff.next_delay()
        if self.give_up_after is not None:
            remaining = self.give_up_after - (time.monotonic() - self._last_ok)
            if remaining <= 0:
                self.gave_up = True
                self.health.last_error = (f"gave up after {self.give_up_after:g} s without a "
                                          f"frame; last error: {self.health.last_error}")
                log.debug("%s: %s", self.label, self.health.last_error)
                return False
            delay = min(delay, remaining)  # one last attempt right at the deadline
        log.warning("%s: %s; retrying in %.1f s", self.label, self.health.last_error, delay)
        self.stop.wait(delay)
        if self.max_reconnects is not None and self.backoff.attempt > self.max_reconnects:
            return False
        return not self.stop.is_set()


def is_local_file(url: str) -> bool:
    """A file on disk (not a network URL or a capture device): it needs pacing to be live."""
    return not is_network_url(url) and not is_capture_device(url)


def _close_quietly(source: Any) -> None:
    close = getattr(source, "close", None)
    if close is not None:
        try:
            close()
        except (av.FFmpegError, OSError, MasqueradeError) as exc:
            log.debug("closing source: %s", exc)


def live_preset(preset: str) -> str:
    """The configured x264 preset, capped at `veryfast`: slower ones cannot keep up live."""
    order = X264_PRESETS.index
    return preset if order(preset) <= order("veryfast") else "veryfast"


def push_format(url: str) -> str:
    lower = url.lower()
    if lower.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if lower.startswith(("rtmp://", "rtmps://")):
        return "flv"
    if lower.startswith(("srt://", "udp://", "tcp://")):
        return "mpegts"
    raise MasqueradeError(f"cannot push to {redact(url)}: use rtsp://, rtmp://, srt://, udp:// "
                          "or tcp://")


class PyAVStreamSink:
    """Pushes H.264 to a streaming server (RTSP ANNOUNCE/RECORD, RTMP), reconnecting.

    Low-latency encoding (no B-frames, zerolatency tune, a keyframe every second) so a
    viewer joining or a reconnect starts a picture within a second.
    """

    def __init__(self, url: str, encoder: EncoderConfig, fps: float = 30.0,
                 backoff: Backoff | None = None, options: dict[str, str] | None = None):
        self.url = url
        self.format = push_format(url)
        self.encoder = encoder
        self.fps = fps
        self.backoff = backoff or Backoff()
        self.options = dict(options or {})
        if self.format == "rtsp":
            self.options.setdefault("rtsp_transport", "tcp")
        self.container: Any = None
        self.stream: Any = None
        self.retry_at = 0.0
        self.frames_written = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self._last_pts: int | None = None

    def _open(self, frame: Frame) -> None:
        container = av.open(self.url, mode="w", format=self.format, options=self.options,
                            timeout=(5.0, 5.0))
        stream = container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height = frame.width - frame.width % 2, frame.height - frame.height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = frame.time_base
        stream.codec_context.time_base = frame.time_base
        gop = max(1, round(self.fps))
        stream.options = {"preset": live_preset(self.encoder.preset), "tune": "zerolatency",
                          "crf": str(self.encoder.crf), "g": str(gop), "bf": "0"}
        self.container, self.stream = container, stream
        self._last_pts = None

    def write(self, frame: Frame) -> None:
        if self.container is None:
            if time.monotonic() < self.retry_at:
                self.frames_dropped += 1
                return
            try:
                self._open(frame)
            except (av.FFmpegError, OSError) as exc:
                self._failed(exc)
                self.frames_dropped += 1
                return
            if self.frames_written:
                self.reconnects += 1
            self.backoff.reset()
        image = frame.image[: self.stream.height, : self.stream.width]
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        pts = frame.pts if frame.pts is not None else 0
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        vf.pts, vf.time_base = pts, frame.time_base
        try:
            self.container.mux(self.stream.encode(vf))
        except (av.FFmpegError, OSError) as exc:
            self._failed(exc)
            self.frames_dropped += 1
            return
        self.frames_written += 1

    def _failed(self, exc: BaseException) -> None:
        delay = self.backoff.next_delay()
        log.warning("%s", redact(f"output {self.url}: {exc}; retrying in {delay:.1f} s"))
        self.retry_at = time.monotonic() + delay
        self._drop_container()

    def _drop_container(self) -> None:
        if self.container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                self.container.close()
        self.container = self.stream = None

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.mux(self.stream.encode(None))
            except (av.FFmpegError, OSError) as exc:
                log.debug("%s", redact(f"flushing {self.url}: {exc}"))
        self._drop_container()


class SegmentedFileSink:
    """Records to one file per `segment_seconds`, each finalized (and renamed) when full.

    A crash or stop loses at most the segment in progress; finished segments are whole,
    playable files named by their start time.
    """

    def __init__(self, directory: str | Path, name: str, encoder: EncoderConfig,
                 segment_seconds: float = 300.0, fps: float = 30.0, suffix: str = ".mp4",
                 sidecar: Callable[[Path], FrameSidecar] | None = None):
        """`sidecar(path)` makes each segment's own sidecar (its seal store): a segment
        is a whole file, and carries its own seals with it."""
        self.directory = Path(directory)
        self.sidecar = sidecar
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.encoder = encoder
        self.segment_seconds = segment_seconds
        self.fps = fps
        self.suffix = suffix
        self.current: PyAVFileSink | None = None
        self.segment_start_pts: int | None = None
        self.finished: list[Path] = []

    def write(self, frame: Frame) -> None:
        if frame.pts is None:
            raise ValueError("segmented recording needs timestamps")
        if self.current is not None and self.segment_start_pts is not None:
            elapsed = float((frame.pts - self.segment_start_pts) * frame.time_base)
            if elapsed >= self.segment_seconds:
                self._finish()
        if self.current is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            path = self.directory / f"{self.name}-{stamp}{self.suffix}"
            self.current = PyAVFileSink(path, self.encoder,
                                        average_rate=Fraction(self.fps).limit_denominator(1001),
                                        sidecar=None if self.sidecar is None
                                        else self.sidecar(path))
            self.segment_start_pts = frame.pts
        shifted = Frame(image=frame.image, pts=frame.pts - self.segment_start_pts,
                        time_base=frame.time_base, index=frame.index, rotation=frame.rotation,
                        originals=frame.originals)
        self.current.write(shifted)

    def _finish(self) -> None:
        if self.current is not None:
            self.finished.append(self.current.close())
            log.info("recorded %s", self.finished[-1])
        self.current = None
        self.segment_start_pts = None

    def close(self) -> None:
        self._finish()

