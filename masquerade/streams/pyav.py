"""PyAV (FFmpeg) source and file sink.

The source demuxes once and yields decoded video frames and untouched audio packets in
file order, so the sink can copy audio byte for byte while re-encoding only the video.
The sink writes to a hidden temporary file beside the target and renames it only on
`close()`, so a failed run never leaves a half-written file under the user's name.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from masquerade.config import EncoderConfig
from masquerade.errors import InputError, OutputError
from masquerade.outputs import check_output_path, make_partial, publish, write_failed
from masquerade.redaction import redact
from masquerade.streams.frames import Frame, OriginalCrop, StreamInfo

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("http://", "https://", "rtsp://", "rtsps://", "rtmp://", "rtmps://", "udp://",
                   "tcp://", "srt://")
# FFmpeg's own read timeout (microseconds) so a dead server ends the run instead of hanging.
NETWORK_OPTIONS = {"rw_timeout": "10000000", "timeout": "10000000"}
MAX_CONSECUTIVE_ERRORS = 200


def is_network_url(url: str) -> bool:
    return url.lower().startswith(NETWORK_SCHEMES)


def is_capture_device(url: str) -> bool:
    """A V4L2 webcam: /dev/videoN or v4l2:///dev/videoN."""
    return url.startswith(("/dev/video", "v4l2://"))


LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "udp://", "srt://", "tcp://")


def is_live_url(url: str) -> bool:
    """Sources that never end by themselves and sinks that stream (no file to finalize)."""
    return url.lower().startswith(LIVE_SCHEMES) or is_capture_device(url)


@dataclass
class AudioPacket:
    """An encoded audio packet passed through untouched, with its source stream index."""

    packet: av.Packet
    stream_index: int


class PyAVSource:
    """Decoded RGB frames (and raw audio packets) from a file or URL."""

    def __init__(self, url: str | os.PathLike[str], options: dict[str, str] | None = None,
                 timeout: float | tuple[float, float] | None = None):
        """`timeout` (open, read) seconds interrupts a stalled network read."""
        self.url = str(url)
        device = is_capture_device(self.url)
        if device:
            self.url = self.url.removeprefix("v4l2://")
        self.label = redact(self.url)  # for messages: camera URLs carry passwords
        if not is_network_url(self.url):
            path = Path(self.url)
            if not path.exists():
                raise InputError(f"input not found: {self.url}")
            if path.is_dir():
                raise InputError(f"input is a directory, not a video: {self.url}")
            if path.stat().st_size == 0:
                raise InputError(f"input is an empty file: {self.url}")
        live = is_network_url(self.url) or device
        self.live = live
        opts = dict(NETWORK_OPTIONS) if is_network_url(self.url) else {}
        if self.url.lower().startswith("rtsp"):
            opts["rtsp_transport"] = "tcp"
        opts.update(options or {})
        try:
            self.container = av.open(self.url, mode="r", format="v4l2" if device else None,
                                     options=opts, timeout=timeout)
        except av.FFmpegError as exc:
            raise InputError(redact(f"cannot open {self.url}: {_ffmpeg_reason(exc)}")) from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{self.label} holds no video stream")
        self.video = self.container.streams.video[0]
        # Frame threading buffers one frame per thread: fine for files, latency for live.
        self.video.thread_type = "SLICE" if live else "AUTO"
        self.audio_streams = list(self.container.streams.audio)
        others = len(self.container.streams) - 1 - len(self.audio_streams)
        if others:
            log.info("%s: %d other stream(s) (extra video, subtitles, data) are not carried "
                     "over", self.label, others)
        self.corrupt_packets = 0
        self.decode_errors = 0

    @property
    def info(self) -> StreamInfo:
        v = self.video
        cc = v.codec_context
        duration = None
        if v.duration is not None and v.time_base is not None:
            duration = float(v.duration * v.time_base)
        elif self.container.duration is not None:
            duration = self.container.duration / av.time_base
        return StreamInfo(
            url=self.url,
            container=self.container.format.name,
            width=cc.width,
            height=cc.height,
            codec=cc.name,
            time_base=v.time_base or Fraction(1, 90000),
            average_rate=v.average_rate or v.guessed_rate,
            frames=v.frames or None,
            duration_s=duration,
            audio=[
                {
                    "index": a.index,
                    "codec": a.codec_context.name,
                    "sample_rate": a.codec_context.sample_rate,
                    "channels": a.codec_context.channels,
                }
                for a in self.audio_streams
            ],
        )

    def __iter__(self) -> Iterator[Frame | AudioPacket]:
        streams = [self.video, *self.audio_streams]
        index = 0
        consecutive_errors = 0
        demuxer = self.container.demux(streams)
        time_base = self.video.time_base or Fraction(1, 90000)
        # Raw .264/.265 carry no timestamps: space frames by the (guessed) frame rate.
        rate = self.video.average_rate or self.video.guessed_rate or Fraction(25)
        ticks_per_frame = 1 / (rate * time_base)
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                # A damaged region: FFmpeg resyncs on the next read, so restart the demuxer.
                self.corrupt_packets += 1
                consecutive_errors += 1
                log.debug("%s", redact(f"demux error in {self.url}: {exc}"))
                if consecutive_errors > MAX_CONSECUTIVE_ERRORS:
                    log.warning("giving up on %s after %d read errors", self.label,
                                consecutive_errors)
                    break
                demuxer = self.container.demux(streams)
                continue
            consecutive_errors = 0
            if packet.stream.type == "audio":
                if packet.dts is not None:
                    yield AudioPacket(packet, packet.stream.index)
                continue
            if packet.is_corrupt:
                self.corrupt_packets += 1
            try:
                decoded = packet.decode()
            except av.FFmpegError as exc:
                self.decode_errors += 1
                consecutive_errors += 1
                log.debug("%s", redact(f"skipping undecodable packet in {self.url}: {exc}"))
                if self.live and consecutive_errors > MAX_CONSECUTIVE_ERRORS:
                    # A camera sending garbage: end this session so the caller reconnects.
                    raise InputError(f"{self.label}: {consecutive_errors} undecodable packets "
                                     "in a row") from None
                continue
            for vf in decoded:
                frame = _to_frame(vf, index, time_base)
                if frame.pts is None:
                    frame.pts = round(index * ticks_per_frame)
                yield frame
                index += 1

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> PyAVSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_frame(vf: av.VideoFrame, index: int, time_base: Fraction) -> Frame:
    return Frame(
        image=vf.to_ndarray(format="rgb24"),
        pts=vf.pts,
        time_base=vf.time_base or time_base,
        index=index,
        rotation=int(vf.rotation or 0),
    )


def _ffmpeg_reason(exc: av.FFmpegError) -> str:
    return (exc.strerror or str(exc)).rstrip(".").lower()


class FrameSidecar(Protocol):
    """A file written beside the video frame by frame, landing with it or not at all
    (the seal store, `masquerade.seals.writer.SealStoreWriter`)."""

    target: Path

    def add(self, frame_index: int, pts: int, time_base: Fraction, size: tuple[int, int],
            crops: list[OriginalCrop]) -> None: ...

    def finish(self) -> None: ...

    def commit(self) -> Path: ...

    def abort(self) -> None: ...


CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts"}


class PyAVFileSink:
    """Re-encodes frames to H.264/H.265 and copies audio packets, atomically.

    The container is opened lazily on the first frame: the display rotation must be set
    before the header is written, and a run that yields no frame must write nothing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoder: EncoderConfig,
        *,
        average_rate: Fraction | None,
        audio_templates: list[av.stream.Stream] = (),  # type: ignore[assignment]
        overwrite: bool = False,
        sidecar: FrameSidecar | None = None,
    ):
        """`sidecar` receives every written frame's `originals` with the pts it was
        written at, and is finished, renamed and dropped together with the video."""
        self.path = Path(path)
        self.sidecar = sidecar
        self.encoder = encoder
        self.average_rate = average_rate or Fraction(30)
        self.audio_templates = list(audio_templates)
        self.frames_written = 0
        check_output_path(self.path, overwrite)
        suffix = self.path.suffix.lower()
        if suffix not in CONTAINERS:
            raise OutputError(
                f"output {self.path}: unsupported extension {suffix or '(none)'} "
                f"(use one of {', '.join(sorted(CONTAINERS))})"
            )
        self.format = CONTAINERS[suffix]
        self.tmp_path = make_partial(self.path)
        self.container: Any = None
        self.video: Any = None
        self.audio_map: dict[int, Any] = {}
        self.pending_audio: list[AudioPacket] = []
        self._last_pts: int | None = None

    def _open(self, frame: Frame) -> None:
        options = {"movflags": "+faststart"} if self.format in ("mp4", "mov") else {}
        try:
            self.container = av.open(str(self.tmp_path), mode="w", format=self.format,
                                     options=options)
        except OSError as exc:
            raise write_failed(self.path, exc) from None
        stream = self.container.add_stream(self.encoder.codec, rate=self.average_rate)
        stream.width = frame.width - frame.width % 2
        stream.height = frame.height - frame.height % 2
        if (stream.width, stream.height) != (frame.width, frame.height):
            log.warning("odd frame size %dx%d: the last row/column is cropped for yuv420p",
                        frame.width, frame.height)
        stream.pix_fmt = self.encoder.pix_fmt
        stream.time_base = frame.time_base
        stream.codec_context.time_base = frame.time_base
        opts = {"preset": self.encoder.preset, "crf": str(self.encoder.crf)}
        if self.encoder.codec == "libx265":
            opts["x265-params"] = "log-level=error"
            stream.codec_tag = "hvc1"  # so Safari/QuickTime play it
        stream.options = opts
        if frame.rotation:
            stream.set_display_rotation(frame.rotation)
        self.video = stream
        for template in self.audio_templates:
            try:
                self.audio_map[template.index] = self.container.add_stream_from_template(template)
            except (av.FFmpegError, ValueError) as exc:
                log.warning("audio stream %d (%s) cannot be stored in %s, dropped: %s",
                            template.index, template.codec_context.name, self.format, exc)
        for item in self.pending_audio:
            self._mux_audio(item)
        self.pending_audio.clear()

    def write(self, frame: Frame) -> None:
        if self.container is None:
            self._open(frame)
        image = frame.image
        if image.shape[0] != self.video.height or image.shape[1] != self.video.width:
            image = image[: self.video.height, : self.video.width]
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        pts = frame.pts
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            # Missing or repeated timestamps: one nominal frame on, valid and monotonic.
            step = max(1, round(1 / (self.average_rate * frame.time_base)))
            pts = 0 if self._last_pts is None else self._last_pts + step
        self._last_pts = pts
        vf.pts = pts
        vf.time_base = frame.time_base
        with self._writing():
            self.container.mux(self.video.encode(vf))
        if self.sidecar is not None:
            self.sidecar.add(self.frames_written, pts, frame.time_base,
                             (frame.width, frame.height), frame.originals)
        self.frames_written += 1

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write to the file (disk full, quota, I/O error) is an `OutputError`."""
        try:
            yield
        except OSError as exc:  # PyAV's errno errors are OSErrors too
            raise write_failed(self.path, exc) from None

    def write_audio(self, item: AudioPacket) -> None:
        if self.container is None:
            self.pending_audio.append(item)
        else:
            self._mux_audio(item)

    def _mux_audio(self, item: AudioPacket) -> None:
        stream = self.audio_map.get(item.stream_index)
        if stream is None:
            return
        item.packet.stream = stream
        with self._writing():
            self.container.mux(item.packet)

    def close(self) -> Path:
        """Flush, finalize and move the file into place; returns the final path."""
        self.finish()
        return self.commit()

    def finish(self) -> None:
        """Flush and finalize the temporary file, still under its hidden name.

        Split from `commit` so a file that must land together with another (a deid
        video and its track log) is complete before either is renamed.
        """
        if self.container is None:
            self.abort()
            raise InputError("no video frame could be decoded from the input")
        with self._writing():
            self.container.mux(self.video.encode(None))
            self.container.close()
        if self.sidecar is not None:
            self.sidecar.finish()

    def commit(self) -> Path:
        """Move the finished file (and its sidecar) onto the target; returns the final path.

        The sidecar lands first and is removed again if the video's rename fails, so a
        video never appears without it, nor it without the video.
        """
        if self.sidecar is None:
            publish(self.tmp_path, self.path)
            return self.path
        self.sidecar.commit()
        try:
            publish(self.tmp_path, self.path)
        except BaseException:
            self.sidecar.target.unlink(missing_ok=True)
            raise
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the target path is left as it was."""
        if self.container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                self.container.close()
        self.tmp_path.unlink(missing_ok=True)
        if self.sidecar is not None:
            self.sidecar.abort()


def probe(url: str | os.PathLike[str]) -> StreamInfo:
    """Stream facts plus the rotation of the first frame (metadata alone can lie)."""
    with PyAVSource(url) as source:
        info = source.info
        for item in source:
            if isinstance(item, Frame):
                info.rotation = item.rotation
                break
    return info
