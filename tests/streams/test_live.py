"""Live building blocks with real media: reconnection, timestamps, RTMP push, segments."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import pytest

from masquerade.config import EncoderConfig
from masquerade.errors import InputError
from masquerade.streams.frames import Frame
from masquerade.streams.live import (
    Backoff,
    PyAVStreamSink,
    ReconnectingSource,
    SegmentedFileSink,
    push_format,
)
from masquerade.streams.pyav import PyAVSource
from tests.conftest import free_port, start_child, stop_child


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=3.0)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next_delay() == 0.5


def test_reconnects_keep_timestamps_monotonic(scenario_clip: Path) -> None:
    """A 'camera' that ends every 90 frames (a real file, reopened) and fails to open
    once: frames keep coming, pts only grow, each outage is counted."""
    attempts = itertools.count()

    def opener() -> PyAVSource:
        if next(attempts) == 1:
            raise InputError("camera rebooting")
        return PyAVSource(scenario_clip)

    source = ReconnectingSource(opener, "test", backoff=Backoff(initial=0.01, maximum=0.02))
    frames = list(itertools.islice(iter(source), 200))
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert source.health.reconnects == 2
    assert len(source.health.history) == 2 and source.health.gap_seconds > 0
    # Within a session the source's own spacing (1/30 s) is kept.
    assert frames[1].pts - frames[0].pts == 3000


def test_max_reconnects_ends_the_stream() -> None:
    def opener() -> PyAVSource:
        raise InputError("unreachable")

    source = ReconnectingSource(opener, "dead", backoff=Backoff(initial=0.01, maximum=0.01),
                                max_reconnects=3)
    assert list(source) == []
    assert source.health.reconnects == 0


def test_push_formats() -> None:
    assert push_format("rtsp://h/x") == "rtsp"
    assert push_format("rtmp://h/app/key") == "flv"
    with pytest.raises(Exception, match="cannot push"):
        push_format("http://h/x")


def test_rtmp_push_reaches_a_real_listener(scenario_clip: Path, tmp_path: Path) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/test"
    receiver, _ = start_child(["tools/rtsp_receiver.py", "--url", url, "--out",
                               str(tmp_path / "rx.mkv"), "--wait", "20"])
    try:
        sink = PyAVStreamSink(url, EncoderConfig(), backoff=Backoff(initial=0.1, maximum=0.2))
        with PyAVSource(scenario_clip) as source:
            for item in source:
                if isinstance(item, Frame):
                    sink.write(item)
        sink.close()
        receiver.wait(timeout=20)
    finally:
        stop_child(receiver)
    with av.open(str(tmp_path / "rx.mkv")) as c:
        received = sum(1 for _ in c.decode(video=0))
    assert sink.frames_written >= 80
    assert received >= sink.frames_written - 5


def test_segments_are_whole_files_cut_by_media_time(scenario_clip: Path, tmp_path: Path) -> None:
    sink = SegmentedFileSink(tmp_path, "cam", EncoderConfig(preset="ultrafast"),
                             segment_seconds=1.0)
    with PyAVSource(scenario_clip) as source:
        for item in source:
            if isinstance(item, Frame):
                sink.write(item)
    sink.close()
    assert len(sink.finished) == 3
    counts = []
    for path in sink.finished:
        with av.open(str(path)) as c:
            counts.append(sum(1 for _ in c.decode(video=0)))
    assert counts == [30, 30, 30]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in sink.finished)
