"""`masquerade serve`: several cameras in one process, each isolated from the others.

Each stream has its own source, pipeline (detector and tracker state), sinks and key
namespace (its name), and runs in its own thread under a supervisor that restarts it
if it ever dies; a failing camera only ever affects its own stream. A stream with
`give_up_after` stops once its source has delivered nothing for that long; when every
stream has stopped so, `serve` ends with an error (a process supervisor can alert or
restart). A local file standing in for a camera is paced at its frame rate. Models are
loaded before GStreamer starts (see `streams.gst`).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from masquerade.config import Config, build_dataclass, config_from_dict, load_yaml, merge_dicts
from masquerade.errors import ConfigError, InputError
from masquerade.pipeline.live import LiveRunner, LiveStream
from masquerade.pipeline.runner import FramePipeline
from masquerade.streams.live import (
    Backoff,
    PyAVStreamSink,
    ReconnectingSource,
    SegmentedFileSink,
    Sink,
    is_local_file,
)
from masquerade.streams.pyav import PyAVSource

log = logging.getLogger(__name__)


@dataclass
class StreamSpec:
    name: str
    source: str
    backend: Literal["pyav", "gstreamer"] = "pyav"
    transport: Literal["tcp", "udp"] = "tcp"
    listen: bool = False  # RTSP: wait for a publisher's ANNOUNCE instead of pulling
    stall_seconds: float = 5.0
    give_up_after: float | None = None  # seconds without a frame, then stop (None: never)
    outputs: list[str] = field(default_factory=list)
    serve: bool = False
    record_dir: str | None = None
    segment_seconds: float = 300.0
    queue_size: int = 2
    fps: float = 30.0
    config: dict = field(default_factory=dict)


@dataclass
class RtspServerSpec:
    host: str = "127.0.0.1"
    port: int = 8554


@dataclass
class MetricsSpec:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9108


@dataclass
class ServeConfig:
    streams: list[StreamSpec]
    defaults: dict = field(default_factory=dict)
    key_file: str | None = None  # master key for keyed modes (else MASQUERADE_KEY)
    password_file: str | None = None  # or a passphrase file (else MASQUERADE_PASSWORD)
    rtsp_server: RtspServerSpec = field(default_factory=RtspServerSpec)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)


def load_serve_config(path: str | Path) -> ServeConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    spec = build_dataclass(ServeConfig, load_yaml(path) or {})
    if not spec.streams:
        raise ConfigError("config key 'streams' needs at least one stream")
    names = [s.name for s in spec.streams]
    if len(set(names)) != len(names):
        raise ConfigError("config key 'streams': stream names must be unique")
    for i, stream in enumerate(spec.streams):
        if stream.give_up_after is not None and stream.give_up_after < 0:
            raise ConfigError(f"config key 'streams[{i}].give_up_after': "
                              f"{stream.give_up_after} is negative")
    for i in range(len(spec.streams)):
        stream_config(spec, i)  # validate every stream's merged run config up front
    return spec


def stream_config(spec: ServeConfig, index: int) -> Config:
    """Run config of one stream: built-in defaults < `defaults` < the stream's `config`."""
    merged = merge_dicts(copy.deepcopy(spec.defaults), spec.streams[index].config)
    try:
        return config_from_dict(merged)
    except ConfigError as exc:
        raise ConfigError(f"streams[{index}] ({spec.streams[index].name}): {exc}") from None


def open_source(stream: StreamSpec):
    if stream.backend == "gstreamer":
        from masquerade.streams.gst import GstSource

        return GstSource(stream.source, open_timeout=stream.stall_seconds * 2)
    options: dict[str, str] = {}
    if stream.source.lower().startswith("rtsp"):
        options["rtsp_transport"] = stream.transport
        if stream.listen:
            options.update({"rtsp_flags": "listen", "listen_timeout": "-1"})
    return PyAVSource(stream.source, options=options,
                      timeout=(None if stream.listen else stream.stall_seconds * 2,
                               stream.stall_seconds))


class Supervisor:
    """Builds, starts, restarts and stops every stream of a `ServeConfig`."""

    def __init__(self, spec: ServeConfig, stop: threading.Event | None = None,
                 prompt: Callable[[], str] | None = None):
        """`prompt` asks for a passphrase when a keyed stream finds no other key."""
        self.spec = spec
        self.stop = stop or threading.Event()
        self.streams: dict[str, LiveStream] = {}
        self.threads: list[threading.Thread] = []
        self.gave_up: list[str] = []
        self.server = None
        self.metrics = None
        configs = [stream_config(spec, i) for i in range(len(spec.streams))]
        key = None
        if any(c.anonymizer.mode in ("deid", "camouflage") or c.anonymizer.seal_originals
               for c in configs):
            from masquerade.keys import load_key

            key = load_key(spec.key_file, password_file=spec.password_file, prompt=prompt)
        self.key = key
        # Each stream's name is its key namespace: its tracks' passwords derive from it.
        self._pipelines = {s.name: FramePipeline.from_config(c, key=key, stream_id=s.name)
                           for s, c in zip(spec.streams, configs, strict=True)}

    def _sinks(self, index: int, config: Config) -> list[Sink]:
        stream = self.spec.streams[index]
        sinks: list[Sink] = [PyAVStreamSink(url, config.encoder, fps=stream.fps)
                             for url in stream.outputs]
        sidecar = None
        if config.anonymizer.seal_originals:
            from masquerade.seals.writer import seal_store_factory

            # every segment carries its own seals (own seal id, own track keys)
            sidecar = seal_store_factory(self.key, stream.name)
            if not stream.record_dir:
                log.warning("%s: anonymizer.seal_originals keeps originals only beside "
                            "recordings (record_dir); this stream records nothing", stream.name)
        if stream.record_dir:
            sinks.append(SegmentedFileSink(stream.record_dir, stream.name, config.encoder,
                                           stream.segment_seconds, fps=stream.fps,
                                           sidecar=sidecar))
        if stream.serve:
            sinks.append(self.server.sink(stream.name, stream.fps))
        return sinks

    def start(self) -> None:
        if any(s.serve for s in self.spec.streams):
            from masquerade.streams.gst import RtspServer

            self.server = RtspServer(self.spec.rtsp_server.host, self.spec.rtsp_server.port)
        if self.spec.metrics.enabled:
            from masquerade.observability import MetricsServer

            self.metrics = MetricsServer(lambda: self.streams, self.spec.metrics.host,
                                         self.spec.metrics.port)
        for index, stream_spec in enumerate(self.spec.streams):
            config = stream_config(self.spec, index)
            source = ReconnectingSource(lambda s=stream_spec: open_source(s), stream_spec.source,
                                        backoff=Backoff(), stop=self.stop,
                                        give_up_after=stream_spec.give_up_after,
                                        pace=is_local_file(stream_spec.source))
            live = LiveStream(name=stream_spec.name, source=source,
                              pipeline=self._pipelines[stream_spec.name],
                              sinks=self._sinks(index, config), queue_size=stream_spec.queue_size)
            live.health = source.health
            self.streams[stream_spec.name] = live
            thread = threading.Thread(target=self._supervise, args=(live,),
                                      name=f"stream-{stream_spec.name}", daemon=True)
            self.threads.append(thread)
            thread.start()
            if self.server is not None and stream_spec.serve:
                log.info("%s: serving %s", stream_spec.name, self.server.url(stream_spec.name))

    def _supervise(self, live: LiveStream) -> None:
        backoff = Backoff(initial=1.0, maximum=30.0)
        while not self.stop.is_set():
            try:
                LiveRunner(live, self.stop).run()
            except Exception:
                log.exception("%s: stream crashed; restarting", live.name)
                self.stop.wait(backoff.next_delay())
            if getattr(live.source, "gave_up", False):
                self.gave_up.append(live.name)
                log.error("%s: stopped: %s", live.name, live.health.last_error)
                return

    def wait(self) -> None:
        """Until `stop` is set or no stream is left running."""
        while not self.stop.is_set() and any(t.is_alive() for t in self.threads):
            self.stop.wait(0.5)

    def raise_if_all_gave_up(self) -> None:
        """An `InputError` (one line, non-zero exit) when every stream gave up."""
        if self.streams and len(self.gave_up) == len(self.streams):
            first = self.streams[self.gave_up[0]].health
            raise InputError(f"every stream gave up ({', '.join(self.gave_up)}); "
                             f"{self.gave_up[0]}: {first.last_error if first else ''}")

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        if self.server is not None:
            self.server.close()
        if self.metrics is not None:
            self.metrics.close()
