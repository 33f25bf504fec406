"""PyAV source and sink on real files: containers, timing, rotation, audio, damage."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from masquerade.config import EncoderConfig
from masquerade.errors import InputError, OutputError
from masquerade.streams import AudioPacket, Frame, PyAVFileSink, PyAVSource, probe
from tests.conftest import audio_payloads, decode_video


def write_video(path: Path, pts: list[int], time_base: Fraction, codec: str = "libx264",
                rotation: int = 0, fmt: str | None = None, size: tuple[int, int] = (160, 96)
                ) -> None:
    w, h = size
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if fmt not in ("h264", "hevc"):
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for i, p in enumerate(pts):
            img = np.full((h, w, 3), (i * 7) % 255, np.uint8)
            img[:, : (i * 5) % w] = 255
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts, vf.time_base = p, time_base
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))


def copy_through(src: Path, dst: Path, **sink_kwargs) -> PyAVSource:
    with PyAVSource(src) as source:
        sink = PyAVFileSink(dst, EncoderConfig(preset="ultrafast"),
                            average_rate=source.info.average_rate,
                            audio_templates=source.audio_streams, **sink_kwargs)
        for item in source:
            if isinstance(item, AudioPacket):
                sink.write_audio(item)
            else:
                sink.write(item)
        sink.close()
    return source


def test_variable_frame_rate_timestamps_survive(tmp_path: Path) -> None:
    tb = Fraction(1, 90000)
    pts = [0, 3000, 6000, 12000, 15000, 24000, 27000, 45000, 48000]
    write_video(tmp_path / "vfr.mp4", pts, tb)
    copy_through(tmp_path / "vfr.mp4", tmp_path / "out.mkv")
    with av.open(str(tmp_path / "out.mkv")) as c:
        got = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert got == pytest.approx([float(p * tb) for p in pts], abs=1e-3)


def test_rotation_metadata_is_kept(tmp_path: Path) -> None:
    write_video(tmp_path / "rot.mp4", list(range(0, 5000, 1000)), Fraction(1, 30000),
                rotation=90)
    assert probe(tmp_path / "rot.mp4").rotation == 90
    copy_through(tmp_path / "rot.mp4", tmp_path / "out.mp4")
    assert probe(tmp_path / "out.mp4").rotation == 90


@pytest.mark.parametrize(("name", "codec", "fmt"), [
    ("clip.mkv", "libx264", None),
    ("clip.mov", "libx264", None),
    ("clip.avi", "mpeg4", None),
    ("clip.264", "libx264", "h264"),
    ("clip.265", "libx265", "hevc"),
])
def test_reads_common_containers(tmp_path: Path, name: str, codec: str, fmt: str | None) -> None:
    write_video(tmp_path / name, list(range(0, 12000, 1000)), Fraction(1, 30000), codec=codec,
                fmt=fmt)
    copy_through(tmp_path / name, tmp_path / "out.mp4")
    assert len(decode_video(tmp_path / "out.mp4")) == 12


def test_h265_output(scenario_clip: Path, tmp_path: Path) -> None:
    with PyAVSource(scenario_clip) as source:
        sink = PyAVFileSink(tmp_path / "o.mkv", EncoderConfig(codec="libx265", preset="ultrafast"),
                            average_rate=source.info.average_rate)
        for item in source:
            if isinstance(item, Frame) and item.index < 10:
                sink.write(item)
        sink.close()
    info = probe(tmp_path / "o.mkv")
    assert (info.codec, info.width, info.height) == ("hevc", 640, 360)


def test_audio_is_copied_byte_for_byte(scenario_clip: Path, tmp_path: Path) -> None:
    copy_through(scenario_clip, tmp_path / "out.mkv")
    assert audio_payloads(tmp_path / "out.mkv") == audio_payloads(scenario_clip)


def test_existing_output_is_never_replaced_without_overwrite(scenario_clip: Path,
                                                             tmp_path: Path) -> None:
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists"):
        copy_through(scenario_clip, target)
    assert target.read_bytes() == b"precious"
    copy_through(scenario_clip, target, overwrite=True)
    assert len(decode_video(target)) == 90


def test_failed_run_leaves_no_file(scenario_clip: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with PyAVSource(scenario_clip) as source:
        sink = PyAVFileSink(target, EncoderConfig(), average_rate=source.info.average_rate)
        for item in source:
            if isinstance(item, Frame):
                sink.write(item)
                if item.index == 5:
                    break
        sink.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("content", "message"), [
    (None, "input not found"),
    (b"", "empty file"),
    (b"this is not a video at all" * 10, "cannot open"),
])
def test_bad_inputs_raise_one_clear_error(tmp_path: Path, content: bytes | None,
                                          message: str) -> None:
    path = tmp_path / "in.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        PyAVSource(path)


def test_truncated_mp4_is_an_input_error(scenario_clip: Path, tmp_path: Path) -> None:
    data = scenario_clip.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])  # the moov index at the end is gone
    with pytest.raises(InputError, match="cannot open"):
        PyAVSource(path)


def test_damaged_packets_mid_stream_are_skipped_and_counted(tmp_path: Path) -> None:
    clean = tmp_path / "clean.ts"
    write_video(clean, list(range(0, 90 * 3000, 3000)), Fraction(1, 90000), fmt="mpegts",
                size=(320, 192))
    data = bytearray(clean.read_bytes())
    rng = np.random.default_rng(1)
    middle = len(data) // 2
    data[middle:middle + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.ts"
    damaged.write_bytes(bytes(data))
    source = copy_through(damaged, tmp_path / "out.mp4")
    frames = decode_video(tmp_path / "out.mp4")
    assert 60 <= len(frames) < 90
    assert source.corrupt_packets + source.decode_errors >= 1


def test_http_and_hls_inputs(scenario_clip: Path, tmp_path: Path) -> None:
    hls_dir = tmp_path / "hls"
    hls_dir.mkdir()
    with av.open(str(scenario_clip)) as src, av.open(
        str(hls_dir / "index.m3u8"), "w", format="hls", options={"hls_time": "1"}
    ) as out:
        v = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = v
                out.mux(packet)
    # Python's http.server has no Range requests, so serve a stream format (MPEG-TS), not
    # an mp4 whose index sits at the end.
    copy_through(scenario_clip, tmp_path / "clip.ts")
    with serve_directory(tmp_path) as base:
        for url in (f"{base}/clip.ts", f"{base}/hls/index.m3u8"):
            with PyAVSource(url) as source:
                frames = [i for i in source if isinstance(i, Frame)]
            assert len(frames) == 90, url


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 for the test's duration."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_odd_frame_sizes_are_encodable(tmp_path: Path) -> None:
    write_video(tmp_path / "odd.mkv", list(range(0, 5000, 1000)), Fraction(1, 30000),
                codec="ffv1", size=(161, 97))
    copy_through(tmp_path / "odd.mkv", tmp_path / "out.mp4")
    frames = decode_video(tmp_path / "out.mp4")
    assert len(frames) == 5 and frames[0][1].shape == (96, 160, 3)


def test_mp4_output_has_its_index_first_for_streaming(scenario_clip: Path, tmp_path: Path) -> None:
    copy_through(scenario_clip, tmp_path / "out.mp4")
    head = (tmp_path / "out.mp4").read_bytes()[:4096]
    assert head.find(b"moov") != -1 and head.find(b"moov") < max(head.find(b"mdat"), 4096)


def test_raw_streams_without_timestamps_get_the_nominal_frame_rate(tmp_path: Path) -> None:
    write_video(tmp_path / "raw.264", list(range(0, 60000, 1000)), Fraction(1, 30000),
                fmt="h264")
    copy_through(tmp_path / "raw.264", tmp_path / "out.mp4")
    info = probe(tmp_path / "out.mp4")
    assert info.frames == 60
    assert info.duration_s == pytest.approx(60 / 25, abs=0.05)  # FFmpeg's raw-H.264 rate
