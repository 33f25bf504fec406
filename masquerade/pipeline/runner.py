"""The pipeline: detect -> track -> anonymize/composite on each frame, and the file runner.

`FramePipeline` holds the per-frame logic and its fail-closed policy; `run_file` wires a
source and a sink around it with progress and a summary. Components are passed in, so
tests, `bench` and the live runner build them however they need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from masquerade.anonymizers import build_anonymizer
from masquerade.config import Config
from masquerade.errors import InputError, MasqueradeError
from masquerade.faces import Faces
from masquerade.keys import SecretKey
from masquerade.outputs import PendingFile
from masquerade.pipeline.background import BackgroundWriter, prefetch
from masquerade.pipeline.compositing import Compositor, cover_frame
from masquerade.pipeline.detection import Detector, build_detector, detect_upright
from masquerade.pipeline.occluders import build_occluders
from masquerade.pipeline.stats import RunStats
from masquerade.pipeline.tracking import Tracker
from masquerade.streams import AudioPacket, Frame, PyAVFileSink, PyAVSource

log = logging.getLogger(__name__)


class FramePipeline:
    """Anonymizes frames one by one; never returns a frame with an unprocessed face.

    When detection, tracking or anonymization raises, the frame is covered whole or
    dropped (`pipeline.on_error`) and the error is counted, so a failing model degrades
    the picture, never privacy.
    """

    def __init__(self, detector: Detector, tracker: Tracker, compositor: Compositor,
                 config: Config, stats: RunStats | None = None):
        self.detector = detector
        self.tracker = tracker
        self.compositor = compositor
        self.config = config
        self._stats = stats or RunStats()
        self.compositor.stats = self._stats
        self.last_faces = Faces.empty()
        self._since_detection = 1 << 30  # detect on the first frame

    @property
    def stats(self) -> RunStats:
        return self._stats

    @stats.setter
    def stats(self, stats: RunStats) -> None:
        self._stats = stats
        self.compositor.stats = stats

    @classmethod
    def from_config(cls, config: Config, stats: RunStats | None = None,
                    key: SecretKey | None = None, stream_id: str = "default") -> FramePipeline:
        """`key` and `stream_id` feed keyed modes: each track's password derives from both."""
        anonymizer = build_anonymizer(config.anonymizer, key, stream_id, config.engine,
                                      config.recognizer)
        return cls(
            detector=build_detector(config.detector),
            tracker=Tracker(config.tracker, config.detector.min_score),
            compositor=Compositor(anonymizer, config.anonymizer,
                                  occluders=build_occluders(config.anonymizer)),
            config=config,
            stats=stats,
        )

    def process(self, frame: Frame) -> Frame | None:
        """Anonymize `frame` in place; None means the policy dropped it."""
        stats = self.stats
        stage = "detect"
        try:
            # Count processed frames, not source indices: a live runner that drops frames
            # must never skip detection because the detection frames were the dropped ones.
            if self._since_detection + 1 >= self.config.detector.every_n_frames:
                self._since_detection = 0
                with stats.timed("detect"):
                    detections = detect_upright(self.detector, frame.image, frame.rotation)
                stage = "track"
                with stats.timed("track"):
                    faces = self.tracker.update(detections)
            else:
                self._since_detection += 1
                stage = "track"
                with stats.timed("track"):
                    faces = self.tracker.predict()
            stage = "anonymize"
            self.compositor.apply(frame.image, faces)  # times anonymize and composite
        except Exception as exc:
            return self._fail_closed(frame, stage, exc)
        self.last_faces = faces
        stats.fallback_faces = getattr(self.compositor.anonymizer, "fallback_faces", 0)
        stats.identity_refreshes = getattr(self.compositor.anonymizer, "refreshed_tracks", 0)
        stats.faces += len(faces)
        stats.coasted_faces += int(faces.coasting.sum())
        stats.tracks = self.tracker.total_tracks
        return frame

    def _fail_closed(self, frame: Frame, stage: str, exc: Exception) -> Frame | None:
        self.stats.stage_errors[stage] += 1
        if self.stats.stage_errors[stage] == 1:
            log.error("%s failed on frame %d (%s: %s); policy %s applies to such frames",
                      stage, frame.index, type(exc).__name__, exc, self.config.pipeline.on_error)
            log.debug("traceback", exc_info=exc)
        if self.config.pipeline.on_error == "drop_frame":
            self.stats.frames_dropped += 1
            return None
        cover_frame(frame.image)
        self.stats.frames_covered += 1
        return frame


@dataclass
class RunResult:
    output: Path
    stats: RunStats


def run_file(input_url: str, output: str | os.PathLike[str], config: Config, *,
             overwrite: bool = False, pipeline: FramePipeline | None = None,
             key: SecretKey | None = None, stream_id: str = "default",
             record_tracks: bool | None = None, strict: bool = False,
             stop: threading.Event | None = None) -> RunResult:
    """Anonymize a file or URL into a new file; the output appears only on success.

    `record_tracks` writes OUTPUT.tracks.json for `restore`; by default in keyed modes.
    The video and its track log land together or not at all: a deid video without its
    log could never be restored. `strict` turns an input that ends before the frame
    count its header announces (a cut file) into an `InputError` instead of a warning.
    `stop`, once set (by a signal whose KeyboardInterrupt a library swallowed), aborts
    the run at the next frame as that KeyboardInterrupt would have.
    """
    stats = RunStats()
    start = time.perf_counter()
    if record_tracks is None:
        record_tracks = config.anonymizer.mode == "deid"
    with PyAVSource(input_url) as source:
        info = source.info
        stats.frames_expected = info.frames
        # The outputs are checked before any model loads: a bad path fails in milliseconds.
        sink = PyAVFileSink(output, config.encoder, average_rate=info.average_rate,
                            audio_templates=source.audio_streams, overwrite=overwrite)
        track_file: PendingFile | None = None
        writer: BackgroundWriter[Frame | AudioPacket] | None = None
        items = None
        bar = None
        try:
            track_log = None
            if record_tracks:
                # Keyed modes leave a track log beside the output so `restore` knows which
                # track (hence which password) each generated face belongs to.
                from masquerade.pipeline.track_log import TrackLog, track_log_path

                track_file = PendingFile(track_log_path(output), overwrite)
                track_log = TrackLog({"stream_id": stream_id,
                                      "privacy_level": config.anonymizer.privacy_level,
                                      "anonymizer": dataclasses.asdict(config.anonymizer)})
                if key is not None:  # lets restore tell a wrong key from the right one
                    track_log.meta["key_id"] = key.key_id()
            pipeline = pipeline or FramePipeline.from_config(config, stats, key, stream_id)
            pipeline.stats = stats
            bar = tqdm(total=info.frames, unit="frame", desc="anonymizing", file=sys.stderr,
                       disable=not config.pipeline.progress, dynamic_ncols=True, leave=False)

            def write(item: Frame | AudioPacket) -> None:
                if isinstance(item, AudioPacket):
                    sink.write_audio(item)
                else:
                    with stats.timed("encode"):
                        sink.write(item)

            # Audio goes through the writer too, so packets reach the muxer in file order.
            writer = BackgroundWriter(write, name="encoder")
            items = prefetch(source, name="decoder")
            while True:
                _check_stop(stop)
                with stats.timed("decode"):
                    item = next(items, None)
                if item is None:
                    break
                if isinstance(item, AudioPacket):
                    writer.put(item)
                    continue
                stats.frames_in += 1
                out = pipeline.process(item)
                if out is not None:
                    if track_log is not None:
                        track_log.record(out.pts, pipeline.last_faces,
                                         config.anonymizer.min_generator_face_px,
                                         config.anonymizer.min_generator_score)
                    writer.put(out)
                    stats.frames_out += 1
                bar.update(1)
            writer.close()
            stats.corrupt_packets = source.corrupt_packets
            stats.decode_errors = source.decode_errors
            if stats.frames_in == 0:
                raise InputError(f"{input_url}: no decodable video frames")
            _check_complete(input_url, stats, strict)
            if stats.frames_out == 0:
                raise MasqueradeError(
                    f"all {stats.frames_in} frames were dropped after stage errors "
                    "(pipeline.on_error=drop_frame); no output written")
            with stats.timed("encode"):
                sink.finish()
            if track_file is not None and track_log is not None:
                track_file.write_text(track_log.to_json())
            _check_stop(stop)
            path = _commit_together(sink, track_file)
        except BaseException:
            if writer is not None:
                with contextlib.suppress(BaseException):
                    writer.close()
            sink.abort()
            if track_file is not None:
                track_file.abort()
            raise
        finally:
            if items is not None:
                items.close()  # stops the decoder thread before the source closes
            if bar is not None:
                bar.close()
    stats.wall_seconds = time.perf_counter() - start
    return RunResult(path, stats)


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise KeyboardInterrupt


def _check_complete(input_url: str, stats: RunStats, strict: bool) -> None:
    """Warn (or, strict, fail) when fewer frames decode than the input's header announces.

    A file cut short (a copy interrupted, a camera that lost power) with its index at
    the front still opens and decodes up to the cut; without this it would pass as a
    complete, shorter video.
    """
    expected = stats.frames_expected
    if not expected or stats.frames_in >= expected:
        return
    message = (f"input ended early: {stats.frames_in} of the {expected} frames its header "
               "announces were decoded (truncated or damaged file?)")
    if strict:
        raise InputError(f"{input_url}: {message}; no output written (--strict)")
    stats.warnings.append(message)
    log.warning("%s: %s", input_url, message)


def _commit_together(sink: PyAVFileSink, track_file: PendingFile | None) -> Path:
    """Rename the track log, then the video: a video never appears without its log.

    If the video's rename fails, the log just renamed is removed again, so a failed run
    leaves neither.
    """
    if track_file is None:
        return sink.commit()
    landed = False
    try:
        track_file.commit()
        landed = True
        return sink.commit()
    except BaseException:
        if landed:
            track_file.target.unlink(missing_ok=True)
        raise
