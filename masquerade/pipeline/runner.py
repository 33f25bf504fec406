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

import numpy as np
from tqdm import tqdm

from masquerade.anonymizers import build_anonymizer
from masquerade.config import Config
from masquerade.errors import ConfigError, InputError, MasqueradeError
from masquerade.faces import Faces
from masquerade.keys import SecretKey
from masquerade.outputs import PendingFile
from masquerade.pipeline.backfill import Backfill
from masquerade.pipeline.background import BackgroundWriter, prefetch
from masquerade.pipeline.compositing import Compositor, cover_frame
from masquerade.pipeline.detection import (
    Detector,
    FocusGate,
    build_detector,
    detect_upright,
)
from masquerade.pipeline.edges import complete_cut_faces
from masquerade.pipeline.occluders import build_occluders
from masquerade.pipeline.sealing import CropCollector
from masquerade.pipeline.stats import RunStats
from masquerade.pipeline.tracking import Tracker
from masquerade.seals.format import seals_path
from masquerade.seals.writer import SealStoreWriter
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
        # Set when the compositor seals originals: each frame leaves with its crops.
        sealer = getattr(compositor, "sealer", None)
        self.sealer = sealer if isinstance(sealer, CropCollector) else None
        self.last_faces = Faces.empty()
        self._since_detection = 1 << 30  # detect on the first frame
        self._failed_frame: Frame | None = None
        every = config.detector.full_scan_every
        self.focus = FocusGate(every) if every > 1 and detector is not None else None
        self.backfill = Backfill(config.tracker.backfill_frames,
                                 config.detector.every_n_frames)

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
        sealer = CropCollector() if config.anonymizer.seal_originals else None
        return cls(
            detector=build_detector(config.detector),
            tracker=Tracker(config.tracker, config.detector.min_score),
            compositor=Compositor(anonymizer, config.anonymizer,
                                  occluders=build_occluders(config.anonymizer), sealer=sealer),
            config=config,
            stats=stats,
        )

    def process(self, frame: Frame) -> Frame | None:
        """Anonymize `frame` in place now, without backfill; None: the policy dropped it."""
        located = self._locate(frame)
        if located is None:
            return self._failed_frame
        covered = self._cover(frame, located[0])
        return None if covered is None else covered[0]

    def push(self, frame: Frame) -> list[tuple[Frame, Faces]]:
        """Find the faces in `frame`, hold it back `tracker.backfill_frames` frames, and
        return the frames now due, anonymized, each with the faces it was covered with.

        A track born now also covers the held frames before it (`pipeline.backfill`):
        a face entering from an edge, or appearing between detections, was raw there."""
        located = self._locate(frame)
        if located is None:
            if self._failed_frame is None:  # dropped: the held frames stay in order
                return []
            located = (Faces.empty(), np.zeros(0, bool))  # covered whole already
        faces, born = located
        due = self.backfill.push(frame, faces, born, (frame.width, frame.height))
        return self._cover_all(due)

    def drain(self) -> list[tuple[Frame, Faces]]:
        """The frames still held back, anonymized (end of input)."""
        return self._cover_all(self.backfill.drain())

    def _cover_all(self, due: list[tuple[Frame, Faces]]) -> list[tuple[Frame, Faces]]:
        out = []
        for frame, faces in due:
            covered = self._cover(frame, faces)
            if covered is not None:
                out.append(covered)
        self.stats.backfilled_faces = self.backfill.backfilled_faces
        return out

    def _locate(self, frame: Frame) -> tuple[Faces, np.ndarray] | None:
        """(faces to cover, which of them are tracks born in this frame), or None after a
        failure, when `_failed_frame` holds the covered frame (or None if dropped)."""
        stats = self.stats
        stage = "detect"
        try:
            # Count processed frames, not source indices: a live runner that drops frames
            # must never skip detection because the detection frames were the dropped ones.
            if self._since_detection + 1 >= self.config.detector.every_n_frames:
                self._since_detection = 0
                with stats.timed("detect"):
                    interest = None
                    if self.focus is not None:
                        tracks = [t.predicted_box for t in self.tracker.tracks]
                        interest = self.focus.interest(frame.image, np.array(tracks))
                    detections = complete_cut_faces(
                        detect_upright(self.detector, frame.image, frame.rotation, interest),
                        frame.width, frame.height)
                stage = "track"
                with stats.timed("track"):
                    faces = self.tracker.update(detections, (frame.width, frame.height))
            else:
                self._since_detection += 1
                stage = "track"
                with stats.timed("track"):
                    faces = self.tracker.predict()
            born = np.isin(faces.track_ids, self.tracker.born)
        except Exception as exc:
            self._failed_frame = self._fail_closed(frame, stage, exc)
            return None
        return faces, born

    def _cover(self, frame: Frame, faces: Faces) -> tuple[Frame, Faces] | None:
        stats = self.stats
        try:
            self.compositor.apply(frame.image, faces)  # times anonymize and composite
        except Exception as exc:
            failed = self._fail_closed(frame, "anonymize", exc)
            return None if failed is None else (failed, faces)
        finally:
            if self.sealer is not None:
                # Crops sealed before a failure are still originals of covered pixels (a
                # covered frame keeps them); a dropped frame takes them nowhere.
                frame.originals = self.sealer.take()
        self.last_faces = faces
        stats.fallback_faces = getattr(self.compositor.anonymizer, "fallback_faces", 0)
        stats.identity_refreshes = getattr(self.compositor.anonymizer, "refreshed_tracks", 0)
        stats.faces += len(faces)
        stats.coasted_faces += int(faces.coasting.sum())
        stats.tracks = self.tracker.total_tracks
        return frame, faces

    def finish(self) -> None:
        """Called after the last frame, before the outputs land; raising aborts the run
        (a restore that could not place everything it promised must publish nothing)."""

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
    `anonymizer.seal_originals` writes OUTPUT.seals (`masquerade.seals`) under `key`;
    it lands with the video too.
    """
    stats = RunStats()
    start = time.perf_counter()
    if record_tracks is None:
        record_tracks = config.anonymizer.mode == "deid"
    seal = config.anonymizer.seal_originals
    if seal and key is None:
        raise ConfigError(SEAL_NEEDS_KEY)
    with PyAVSource(input_url) as source:
        info = source.info
        stats.frames_expected = info.frames
        # The outputs are checked before any model loads: a bad path fails in milliseconds.
        sink = PyAVFileSink(output, config.encoder, average_rate=info.average_rate,
                            audio_templates=source.audio_streams, overwrite=overwrite)
        if seal:
            sink.sidecar = _seal_store(sink, key, stream_id, overwrite)
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

            def emit(due: list[tuple[Frame, Faces]]) -> None:
                """Frames the pipeline let go (held back for the backfill until now)."""
                for out, faces in due:
                    if track_log is not None:
                        track_log.record(out.pts, faces,
                                         config.anonymizer.min_generator_face_px,
                                         config.anonymizer.min_generator_score)
                    writer.put(out)
                    stats.frames_out += 1
                bar.update(len(due))

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
                emit(pipeline.push(item))
            emit(pipeline.drain())
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
            pipeline.finish()
            with stats.timed("encode"):
                sink.finish()
            if isinstance(sink.sidecar, SealStoreWriter):
                cost = sink.sidecar.cost
                stats.sealed = {"crops": cost.crops, "bytes": cost.sealed_bytes,
                                "ms_per_frame": round(1000 * cost.seconds
                                                      / max(1, stats.frames_out), 3)}
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


SEAL_NEEDS_KEY = ("anonymizer.seal_originals needs a master key: --key-file, --password-file, "
                  "MASQUERADE_KEY or MASQUERADE_PASSWORD")


def _seal_store(sink: PyAVFileSink, key: SecretKey | None, stream_id: str, overwrite: bool
                ) -> SealStoreWriter:
    """The seal store beside `sink`'s video; a path it cannot take drops the video's too."""
    assert key is not None
    try:
        return SealStoreWriter(seals_path(sink.path), key, stream_id, overwrite)
    except BaseException:
        sink.abort()
        raise


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
