"""`masquerade serve`: several cameras in one process, each isolated from the others.

Each stream has its own source, pipeline (detector and tracker state), sinks and key
namespace (its name), and runs in its own thread under a supervisor that restarts it
if it ever dies; a failing camera only ever affects its own stream. Models are loaded
before GStreamer starts (see `streams.gst`).
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from masquerade.config import Config, build_dataclass, config_from_dict, merge_dicts
from masquerade.errors import ConfigError
from masquerade.pipeline.live import LiveRunner, LiveStream
from masquerade.pipeline.runner import FramePipeline
from masquerade.streams.live import (
    Backoff,
    PyAVStreamSink,
    ReconnectingSource,
    SegmentedFileSink,
    Sink,
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
    rtsp_server: RtspServerSpec = field(default_factory=RtspServerSpec)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)


def load_serve_config(path: str | Path) -> ServeConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise ConfigError(f"config file {path} is not valid YAML") from None
    spec = build_dataclass(ServeConfig, data)
    if not spec.streams:
        raise ConfigError("config key 'streams' needs at least one stream")
    names = [s.name for s in spec.streams]
    if len(set(names)) != len(names):
        raise ConfigError("config key 'streams': stream names must be unique")
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

    def __init__(self, spec: ServeConfig, stop: threading.Event | None = None):
        self.spec = spec
        self.stop = stop or threading.Event()
        self.streams: dict[str, LiveStream] = {}
        self.threads: list[threading.Thread] = []
        self.server = None
        self.metrics = None
        configs = [stream_config(spec, i) for i in range(len(spec.streams))]
        key = None
        if any(c.anonymizer.mode in ("deid", "camouflage") for c in configs):
            from masquerade.keys import load_key

            key = load_key(spec.key_file)
        # Each stream's name is its key namespace: its tracks' passwords derive from it.
        self._pipelines = {s.name: FramePipeline.from_config(c, key=key, stream_id=s.name)
                           for s, c in zip(spec.streams, configs, strict=True)}

    def _sinks(self, index: int, config: Config) -> list[Sink]:
        stream = self.spec.streams[index]
        sinks: list[Sink] = [PyAVStreamSink(url, config.encoder, fps=stream.fps)
                             for url in stream.outputs]
        if stream.record_dir:
            sinks.append(SegmentedFileSink(stream.record_dir, stream.name, config.encoder,
                                           stream.segment_seconds, fps=stream.fps))
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
                                        backoff=Backoff(), stop=self.stop)
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

    def wait(self) -> None:
        while not self.stop.is_set():
            self.stop.wait(1.0)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        if self.server is not None:
            self.server.close()
        if self.metrics is not None:
            self.metrics.close()
