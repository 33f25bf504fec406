"""Live building blocks with real media: reconnection, timestamps, RTMP push, segments."""

from __future__ import annotations

import itertools
import time
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
from tests.conftest import PATIENCE, free_port, start_child, stop_child, wait_listening


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
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/test"
    receiver, _ = start_child(["tools/rtsp_receiver.py", "--url", url, "--out",
                               str(tmp_path / "rx.mkv"), "--wait", str(PATIENCE)])
    try:
        # Push only once it listens: frames sent before are dropped (and retried), not lost
        # in transit, but too many of them would fail the count below on a slow machine.
        assert wait_listening(port), "the receiver never listened"
        sink = PyAVStreamSink(url, EncoderConfig(), backoff=Backoff(initial=0.1, maximum=0.2))
        with PyAVSource(scenario_clip) as source:
            for item in source:
                if isinstance(item, Frame):
                    sink.write(item)
        sink.close()
        receiver.wait(timeout=PATIENCE)
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


def test_give_up_after_ends_a_source_that_never_connects() -> None:
    def opener() -> PyAVSource:
        raise InputError("cannot open rtsp://admin:S3cretPw@127.0.0.1:9/x: connection refused")

    source = ReconnectingSource(opener, "rtsp://admin:S3cretPw@127.0.0.1:9/x",
                                backoff=Backoff(initial=0.05, maximum=0.1), give_up_after=0.5)
    started = time.monotonic()
    assert list(source) == []
    assert source.gave_up and 0.5 <= time.monotonic() - started < PATIENCE
    assert source.health.last_error.startswith("gave up after 0.5 s without a frame")
    assert "S3cretPw" not in source.health.last_error + source.label


def test_give_up_counts_from_the_last_frame(scenario_clip: Path) -> None:
    """A source that delivered and then died gives up `give_up_after` after its last frame."""
    opened = itertools.count()

    def opener() -> PyAVSource:
        if next(opened):
            raise InputError("camera gone")
        return PyAVSource(scenario_clip)

    source = ReconnectingSource(opener, "cam", backoff=Backoff(initial=0.05, maximum=0.1),
                                give_up_after=0.5)
    assert len(list(source)) == 90 and source.gave_up


def test_pace_releases_file_frames_at_their_frame_rate(scenario_clip: Path) -> None:
    source = ReconnectingSource(lambda: PyAVSource(scenario_clip), str(scenario_clip),
                                pace=True)
    frames = iter(source)
    next(frames)
    started = time.monotonic()
    for _ in range(30):
        next(frames)
    assert time.monotonic() - started >= 0.9  # 30 frames at 30 fps: a second, not a burst
