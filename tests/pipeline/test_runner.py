"""End to end on the ground-truth clip: nothing leaks, ids hold, timing and audio survive."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from masquerade.config import load_config
from masquerade.errors import InputError
from masquerade.faces import box_iou
from masquerade.pipeline.runner import FramePipeline, run_file
from masquerade.synthetic import Scenario, painted_share
from tests.conftest import audio_payloads, decode_video, write_audio_only

MAGENTA = (255, 0, 255)
# A face counts as on screen, and must be covered, once any of its box is inside: the
# backfill covers a face entering from an edge before the detector can find it.
MIN_INSIDE = 0.0


def covered_fraction(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Share of the face's ellipse painted with the solid colour (codec noise tolerated)."""
    return painted_share(image, box, MAGENTA)


@pytest.fixture(scope="module")
def solid_run(scenario_clip: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out") / "solid.mp4"
    config = load_config(overrides=["anonymizer.mode=solid", "anonymizer.color=[255,0,255]",
                                    "pipeline.progress=false"])
    pipeline = FramePipeline.from_config(config)
    ids: list[dict[int, int]] = []
    scenario = Scenario()
    push, drain = pipeline.push, pipeline.drain

    def recorded(due):  # remember which track covered which ground-truth face
        for frame, faces in due:
            frame_ids = {}
            for gt in scenario.ground_truth(frame.index):
                if len(faces) and not gt.occluded:
                    iou = box_iou(np.array([gt.xyxy]), faces.xyxy)[0]
                    if iou.max() > 0.3:
                        frame_ids[gt.face_id] = int(faces.track_ids[iou.argmax()])
            ids.append(frame_ids)
        return due

    pipeline.push = lambda frame: recorded(push(frame))
    pipeline.drain = lambda: recorded(drain())
    result = run_file(str(scenario_clip), out, config, pipeline=pipeline)
    return result, ids


def leaks(output: Path, scenario: Scenario) -> list[tuple[int, int, float]]:
    """(frame, face, covered fraction) for every on-screen face not fully painted."""
    return leaks_in_frames(enumerate(image for _, image in decode_video(output)), scenario)


def leaks_in_frames(frames, scenario: Scenario, min_inside: float = MIN_INSIDE
                    ) -> list[tuple[int, int, float]]:
    """Like `leaks`, for (scenario frame index, image) pairs from anywhere."""
    found = []
    for index, image in frames:
        for gt in scenario.ground_truth(index):
            if gt.occluded or gt.inside <= min_inside:
                continue
            frac = covered_fraction(image, gt.xyxy)
            if frac < 0.98:
                found.append((index, gt.face_id, round(frac, 3)))
    return found


def test_every_face_is_covered_in_every_frame(solid_run, scenario: Scenario) -> None:
    assert leaks(solid_run[0].output, scenario) == []


def test_detecting_every_third_frame_keeps_tracked_faces_covered(
    scenario_clip: Path, scenario: Scenario, tmp_path: Path
) -> None:
    overrides = ["anonymizer.mode=solid", "anonymizer.color=[255,0,255]",
                 "pipeline.progress=false", "detector.every_n_frames=3"]
    # Tracked faces stay covered between detections, and the frames held back for the
    # backfill cover a face that appears between two detection frames from its first one.
    result = run_file(str(scenario_clip), tmp_path / "o.mp4", load_config(overrides=overrides))
    assert leaks(result.output, scenario) == []
    assert result.stats.backfilled_faces > 0
    # Without the backfill that face is bare until the next detection: face 3 becomes
    # detectable at frame 41, the next detection frame is 42.
    config = load_config(overrides=[*overrides, "tracker.backfill_frames=0"])
    result = run_file(str(scenario_clip), tmp_path / "o0.mp4", config)
    assert (41, 3, 0.0) in leaks(result.output, scenario)


def test_track_ids_are_stable_through_occlusion(solid_run, scenario: Scenario) -> None:
    _, ids = solid_run
    for face in scenario.faces:
        seen = {frame[face.face_id] for frame in ids if face.face_id in frame}
        assert len(seen) == 1, f"face {face.face_id} had track ids {seen}"
    occluded = scenario.faces[0].occluded_frames
    assert occluded is not None
    assert result_covered_while_occluded(solid_run, scenario, occluded)


def result_covered_while_occluded(solid_run, scenario, occluded) -> bool:
    """The occluded face's track coasts: its predicted box is still painted."""
    result, _ = solid_run
    frames = decode_video(result.output)
    first, last = occluded
    for index in range(first, last + 1):
        (gt,) = [g for g in scenario.ground_truth(index) if g.face_id == 1]
        if covered_fraction(frames[index][1], gt.xyxy) < 0.9:
            return False
    return True


def test_frames_timestamps_and_audio_survive(solid_run, scenario_clip: Path) -> None:
    result, _ = solid_run
    src, out = decode_video(scenario_clip), decode_video(result.output)
    assert len(out) == len(src) == result.stats.frames_out
    assert [p for p, _ in out] == [p for p, _ in src]
    with av.open(str(scenario_clip)) as a, av.open(str(result.output)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert float(va.duration * va.time_base) == pytest.approx(
            float(vb.duration * vb.time_base), abs=1e-3)
    assert audio_payloads(result.output) == audio_payloads(scenario_clip)
    assert audio_payloads(scenario_clip)


def test_summary_counts_faces_and_tracks(solid_run) -> None:
    stats = solid_run[0].stats
    assert stats.tracks == 3
    assert stats.frames_in == stats.frames_out == 90
    assert stats.coasted_faces >= 5  # the occlusion
    assert stats.faces > 200


def test_failing_detector_covers_whole_frames(scenario_clip: Path, tmp_path: Path) -> None:
    class Broken:
        min_relative_face = 0.06

        def detect(self, image):
            raise RuntimeError("model crashed")

    config = load_config(overrides=["pipeline.progress=false"])
    pipeline = FramePipeline.from_config(config)
    pipeline.detector = Broken()
    result = run_file(str(scenario_clip), tmp_path / "o.mp4", config, pipeline=pipeline)
    assert result.stats.frames_covered == 90
    assert result.stats.stage_errors == {"detect": 90}
    image = decode_video(result.output)[0][1]
    # Pixelated to 8 blocks across: at most ~8x5 distinct colour cells, no face detail.
    assert np.abs(np.diff(image.astype(int), axis=1)).mean() < 3


def test_drop_policy_drops_failed_frames(scenario_clip: Path, tmp_path: Path) -> None:
    config = load_config(overrides=["pipeline.progress=false", "pipeline.on_error=drop_frame"])
    pipeline = FramePipeline.from_config(config)
    real = pipeline.compositor.anonymizer

    class FailsEveryTenthFrame:
        calls = 0

        def anonymize(self, regions):
            self.calls += 1
            if self.calls % 10 == 0:
                raise RuntimeError("generator out of memory")
            return real.anonymize(regions)

    pipeline.compositor.anonymizer = FailsEveryTenthFrame()
    result = run_file(str(scenario_clip), tmp_path / "o.mp4", config, pipeline=pipeline)
    assert result.stats.frames_dropped == 9
    assert result.stats.frames_out == 90 - result.stats.frames_dropped
    assert len(decode_video(result.output)) == result.stats.frames_out


def test_no_frames_means_no_output(tmp_path: Path) -> None:
    src = write_audio_only(tmp_path / "audio_only.mkv")
    with pytest.raises(InputError, match="no video stream"):
        run_file(str(src), tmp_path / "o.mp4", load_config())
    assert not (tmp_path / "o.mp4").exists()


def test_detection_cadence_follows_processed_frames_not_source_indices(scenario: Scenario) -> None:
    """A live runner that drops every odd frame must still detect on every other frame
    it processes, not never (if cadence followed source indices 1, 3, 5 ...)."""
    from fractions import Fraction

    from masquerade.streams.frames import Frame

    config = load_config(overrides=["detector.every_n_frames=2"])
    pipeline = FramePipeline.from_config(config)
    real = pipeline.detector
    calls = []

    class Counting:
        min_relative_face = real.min_relative_face

        def detect(self, image):
            calls.append(1)
            return real.detect(image)

    pipeline.detector = Counting()
    for index in range(1, 40, 2):  # only odd source frames survive the queue
        pipeline.process(Frame(scenario.render(index), index * 1000, Fraction(1, 30000), index))
    assert len(calls) == 10


def test_video_and_track_log_land_together_or_not_at_all(scenario_clip: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The track log is renamed first; a video whose rename then fails takes it back."""
    from masquerade.errors import OutputError
    from masquerade.streams.pyav import PyAVFileSink

    config = load_config(overrides=["pipeline.progress=false", "anonymizer.mode=solid",
                                    "encoder.preset=ultrafast"])
    result = run_file(str(scenario_clip), tmp_path / "ok.mp4", config, record_tracks=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.mp4", "ok.mp4.tracks.json"]

    def rename_fails(self: PyAVFileSink) -> Path:
        raise OutputError(f"cannot write {self.path}: Input/output error")

    monkeypatch.setattr(PyAVFileSink, "commit", rename_fails)
    with pytest.raises(OutputError, match="Input/output error"):
        run_file(str(scenario_clip), tmp_path / "bad.mp4", config, record_tracks=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.mp4", "ok.mp4.tracks.json"]
    assert result.output == tmp_path / "ok.mp4"
