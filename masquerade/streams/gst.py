"""GStreamer backend: a built-in RTSP server sink and a uridecodebin source.

Needs Debian's GStreamer 1.22 with gst-rtsp-server and PyGObject (see README); the rest
of Masquerade works without it, so everything here is imported lazily. Known clash: once
GStreamer is initialised, dlib's HOG face detector aborts in the same process, so the
`dlib_hog` detector and GStreamer must not share a process (mediapipe and PyAV are fine).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from masquerade.errors import InputError, MasqueradeError
from masquerade.redaction import redact
from masquerade.streams.frames import Frame

log = logging.getLogger(__name__)

_GST: dict[str, Any] = {}
_GST_LOCK = threading.Lock()


def gstreamer() -> tuple[Any, Any, Any]:
    """(Gst, GstRtspServer, GLib), initialised once; a clear error when not installed."""
    with _GST_LOCK:
        if not _GST:
            # mediapipe imports matplotlib, whose bundled-FreeType extension segfaults when
            # it loads after GStreamer has pulled in the system FreeType: load it first.
            with contextlib.suppress(ImportError):
                import matplotlib.ft2font  # noqa: F401
            try:
                import gi

                gi.require_version("Gst", "1.0")
                gi.require_version("GstRtspServer", "1.0")
                from gi.repository import GLib, Gst, GstRtspServer
            except (ImportError, ValueError) as exc:
                raise MasqueradeError(
                    "the GStreamer backend needs PyGObject and gst-rtsp-server "
                    f"(see README, 'GStreamer'): {exc}"
                ) from None
            Gst.init(None)
            _GST.update(Gst=Gst, GstRtspServer=GstRtspServer, GLib=GLib)
        return _GST["Gst"], _GST["GstRtspServer"], _GST["GLib"]


@functools.cache
def gstreamer_available() -> bool:
    """Whether the backend can start, checked in a child process.

    Initialising GStreamer loads system libraries that clash with some wheels' bundled
    ones (dlib's face detector aborts afterwards in the same process), so merely asking
    must not initialise it here.
    """
    probe = ("import gi; gi.require_version('Gst', '1.0'); "
             "gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None)")
    try:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class RtspServer:
    """gst-rtsp-server serving frames pushed from Python to any number of viewers.

    One shared media per mount: every viewer sees the same encoded stream, and frames
    pushed while nobody watches are dropped at no encoding cost.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8554):
        Gst, GstRtspServer, GLib = gstreamer()
        self._gst = Gst
        self.context = GLib.MainContext.new()
        self.loop = GLib.MainLoop.new(self.context, False)
        self.server = GstRtspServer.RTSPServer.new()
        self.server.set_address(host)
        self.server.set_service(str(port))
        self.host = host
        self._mounts: dict[str, _Mount] = {}
        self._source_id = self.server.attach(self.context)
        if not self._source_id:
            raise MasqueradeError(f"cannot listen for RTSP on {host}:{port} (port in use?)")
        self.port = self.server.get_bound_port()
        self._thread = threading.Thread(target=self.loop.run, name="rtsp-server", daemon=True)
        self._thread.start()

    def sink(self, path: str, fps: float = 30.0) -> RtspMountSink:
        """A sink that mounts `path` at its first frame, when the frame size is known."""
        return RtspMountSink(self, "/" + path.lstrip("/"), fps)

    def mount(self, path: str, width: int, height: int, fps: float, bitrate_kbps: int = 2500
              ) -> _Mount:
        _, GstRtspServer, _ = gstreamer()
        if not path.startswith("/"):
            path = "/" + path
        fps_frac = Fraction(fps).limit_denominator(1001)
        launch = (
            "( appsrc name=src is-live=true do-timestamp=true format=time "
            f"caps=video/x-raw,format=RGB,width={width},height={height},"
            f"framerate={fps_frac.numerator}/{fps_frac.denominator} "
            "! queue leaky=downstream max-size-buffers=2 ! videoconvert "
            "! video/x-raw,format=I420 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} "
            f"key-int-max={max(1, round(fps))} "
            "! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        factory = GstRtspServer.RTSPMediaFactory.new()
        factory.set_launch(launch)
        factory.set_shared(True)
        mount = _Mount(self._gst)
        factory.connect("media-configure", mount.on_configure)
        self.server.get_mount_points().add_factory(path, factory)
        self._mounts[path] = mount
        return mount

    def url(self, path: str) -> str:
        return f"rtsp://{self.host}:{self.port}/{path.lstrip('/')}"

    def close(self) -> None:
        for mount in self._mounts.values():
            if mount.appsrc is not None:
                mount.appsrc.emit("end-of-stream")
        self.loop.quit()
        self._thread.join(timeout=5)
        if self._source_id:
            source = self.context.find_source_by_id(self._source_id)
            if source is not None:
                source.destroy()
            self._source_id = 0


class _Mount:
    """The appsrc of the shared media, present only while someone is watching."""

    def __init__(self, gst: Any):
        self._gst = gst
        self.appsrc: Any = None
        self.viewers_configured = 0

    def on_configure(self, factory: Any, media: Any) -> None:
        self.appsrc = media.get_element().get_child_by_name("src")
        self.viewers_configured += 1
        media.connect("unprepared", self._on_unprepared)

    def _on_unprepared(self, media: Any) -> None:
        self.appsrc = None


class RtspMountSink:
    """Sink interface (`write(frame)`, `close()`) over one RTSP server mount."""

    def __init__(self, server: RtspServer, path: str, fps: float):
        self.server = server
        self.path = path
        self.fps = fps
        self._mount: _Mount | None = None
        self.frames_written = 0
        self.url = server.url(path)

    @property
    def watched(self) -> bool:
        return self._mount is not None and self._mount.appsrc is not None

    def write(self, frame: Frame) -> None:
        if self._mount is None:
            self._mount = self.server.mount(self.path, frame.width, frame.height, self.fps)
        appsrc = self._mount.appsrc
        if appsrc is None:
            return
        Gst = self._mount._gst
        buffer = Gst.Buffer.new_wrapped(np.ascontiguousarray(frame.image).tobytes())
        appsrc.emit("push-buffer", buffer)
        self.frames_written += 1

    def close(self) -> None:
        if self.watched:
            self._mount.appsrc.emit("end-of-stream")


class GstSource:
    """Frames from any URI GStreamer can decode (rtsp, http, file) through an appsink."""

    def __init__(self, uri: str, latency_ms: int = 100, open_timeout: float = 10.0):
        Gst, _, _ = gstreamer()
        self._gst = Gst
        self.uri = uri
        tail = ("videoconvert ! video/x-raw,format=RGB "
                "! appsink name=sink sync=false max-buffers=4 drop=true")
        if uri.startswith(("/dev/video", "v4l2://")):
            device = uri.removeprefix("v4l2://")
            self.pipeline = Gst.parse_launch(f'v4l2src device="{device}" ! decodebin ! {tail}')
        else:
            if "://" not in uri:
                uri = Path(uri).resolve().as_uri()
            self.pipeline = Gst.parse_launch(f'uridecodebin uri="{uri}" name=dec ! {tail}')
            dec = self.pipeline.get_by_name("dec")
            dec.connect("source-setup", self._on_source_setup, latency_ms)
        self.sink = self.pipeline.get_by_name("sink")
        self.open_timeout = open_timeout
        self.corrupt_packets = 0
        self.decode_errors = 0
        self.audio_streams: list[Any] = []
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self.close()
            raise InputError(redact(f"GStreamer cannot open {uri}"))

    @staticmethod
    def _on_source_setup(_dec: Any, source: Any, latency_ms: int) -> None:
        if source.find_property("latency") is not None:
            source.set_property("latency", latency_ms)
        if source.find_property("protocols") is not None:
            source.set_property("protocols", "tcp")

    def _check_bus(self) -> None:
        Gst = self._gst
        msg = self.pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS)
        if msg is None:
            return
        if msg.type == Gst.MessageType.ERROR:
            err, _ = msg.parse_error()
            raise InputError(redact(f"GStreamer: {self.uri}: {err.message}"))
        raise StopIteration

    def __iter__(self) -> Iterator[Frame]:
        Gst = self._gst
        index = 0
        time_base = Fraction(1, Gst.SECOND)
        deadline = time.monotonic() + self.open_timeout
        while True:
            sample = self.sink.emit("try-pull-sample", Gst.SECOND // 5)
            if sample is None:
                try:
                    self._check_bus()
                except StopIteration:
                    return
                if self.sink.get_property("eos"):
                    return
                if time.monotonic() > deadline:
                    raise InputError(redact(f"GStreamer: no frame from {self.uri} in "
                                            f"{self.open_timeout:.0f} s"))
                continue
            caps = sample.get_caps().get_structure(0)
            w, h = caps.get_value("width"), caps.get_value("height")
            buffer = sample.get_buffer()
            ok, info = buffer.map(Gst.MapFlags.READ)
            if not ok:
                self.decode_errors += 1
                continue
            try:
                stride = len(info.data) // h
                rows = np.frombuffer(info.data, np.uint8).reshape(h, stride)
                image = rows[:, : w * 3].reshape(h, w, 3).copy()
            finally:
                buffer.unmap(info)
            pts = None if buffer.pts == Gst.CLOCK_TIME_NONE else int(buffer.pts)
            yield Frame(image=image, pts=pts, time_base=time_base, index=index)
            index += 1
            deadline = time.monotonic() + self.open_timeout

    def close(self) -> None:
        self.pipeline.set_state(self._gst.State.NULL)

    def __enter__(self) -> GstSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
