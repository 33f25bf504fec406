"""Tracker: stable ids, coasting on predictions (fail closed), two faces crossing."""

from __future__ import annotations

import numpy as np
import pytest

from masquerade.config import TrackerConfig
from masquerade.faces import Faces
from masquerade.pipeline.tracking import Tracker


def box(cx: float, cy: float, s: float = 40) -> list[float]:
    return [cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]


def test_ids_persist_and_coasting_box_follows_motion() -> None:
    tracker = Tracker(TrackerConfig(max_coast_frames=5))
    for t in range(10):
        out = tracker.update(Faces(xyxy=[box(100 + 6 * t, 100)], scores=[0.9]))
        assert out.track_ids.tolist() == [1]
        assert not out.coasting.any()
    # Detector misses 3 frames: the track is still emitted, moving on, marked coasting.
    for t in range(10, 13):
        out = tracker.update(Faces.empty())
        assert out.track_ids.tolist() == [1] and out.coasting.all()
        cx = out.centers[0, 0]
        assert abs(cx - (100 + 6 * t)) < 6
    out = tracker.update(Faces(xyxy=[box(100 + 6 * 13, 100)], scores=[0.9]))
    assert out.track_ids.tolist() == [1] and not out.coasting.any()


def test_coasting_ends_after_max_frames() -> None:
    tracker = Tracker(TrackerConfig(max_coast_frames=3))
    tracker.update(Faces(xyxy=[box(50, 50)], scores=[0.9]))
    lengths = [len(tracker.update(Faces.empty())) for _ in range(5)]
    assert lengths == [1, 1, 1, 0, 0]


def test_coasting_box_grows_to_absorb_prediction_error() -> None:
    tracker = Tracker(TrackerConfig(coast_growth=0.1))
    tracker.update(Faces(xyxy=[box(50, 50)], scores=[0.9]))
    sizes = [tracker.update(Faces.empty()).wh[0, 0] for _ in range(3)]
    assert sizes[0] < sizes[1] < sizes[2]
    assert sizes[0] > 40


def test_two_faces_keep_their_ids_when_passing() -> None:
    tracker = Tracker(TrackerConfig())
    for t in range(20):
        a, b = box(100 + 8 * t, 100), box(300 - 8 * t, 200)
        out = tracker.update(Faces(xyxy=[b, a] if t % 2 else [a, b], scores=[0.9, 0.9]))
        by_y = dict(zip(out.centers[:, 1].round().tolist(), out.track_ids.tolist(), strict=True))
        assert by_y == {100.0: 1, 200.0: 2}


def test_low_score_detection_still_becomes_a_covered_track() -> None:
    tracker = Tracker(TrackerConfig(high_score=0.8))
    out = tracker.update(Faces(xyxy=[box(50, 50)], scores=[0.55]))
    assert len(out) == 1


def test_predict_only_frames_keep_faces_covered() -> None:
    tracker = Tracker(TrackerConfig())
    for t in range(5):
        tracker.update(Faces(xyxy=[box(100 + 5 * t, 100)], scores=[0.9]))
    out = tracker.predict()
    assert len(out) == 1 and out.coasting.all()
    assert np.allclose(out.centers[0], [125, 100], atol=3)


def test_track_score_is_the_best_detection_so_far() -> None:
    """Generators gate on the score: a weak frame in a confirmed track keeps its fake face."""
    tracker = Tracker(TrackerConfig())
    tracker.update(Faces(xyxy=[box(50, 50)], scores=[0.9]))
    out = tracker.update(Faces(xyxy=[box(52, 50)], scores=[0.6]))
    assert out.scores.tolist() == [pytest.approx(0.9)]


def test_coasting_score_decays_so_generators_give_way_to_the_fallback() -> None:
    """Still covered while coasting, but after a few missed frames no longer sure enough
    (min_generator_score 0.75) for a fake face to be painted over what hides the face."""
    tracker = Tracker(TrackerConfig(max_coast_frames=10))
    tracker.update(Faces(xyxy=[box(50, 50)], scores=[0.95]))
    scores = [float(tracker.update(Faces.empty()).scores[0]) for _ in range(3)]
    assert scores[0] > 0.75 and scores[1] > 0.75 and scores[2] < 0.75
    assert float(tracker.update(Faces(xyxy=[box(50, 50)], scores=[0.8])).scores[0]) == (
        pytest.approx(0.95))  # seen again: the track's best detection counts again


def test_a_face_leaving_through_an_edge_is_tracked_out() -> None:
    """Lost half out of the frame, the track keeps covering the face's last box, which
    spans all of it still inside, past max_coast_frames until the prediction is out."""
    tracker = Tracker(TrackerConfig(max_coast_frames=3))
    size = (640, 360)
    for t in range(10):  # moving right 4 px a frame, last seen at x 602..642
        tracker.update(Faces(xyxy=[box(582 + 4 * t, 200)], scores=[0.9]), size)
    last = tracker.tracks[0].last_box.copy()
    emitted = []
    while len(out := tracker.update(Faces.empty(), size)):
        emitted.append(out.xyxy[0])
        assert len(emitted) < 100
    assert len(emitted) > 3  # longer than an ordinary coast
    for b in emitted:  # the last box (grown), not a prediction running ahead of the face
        assert b[0] <= last[0] and b[2] >= last[2]
    # Lost in the middle of the frame, the ordinary rule holds.
    tracker = Tracker(TrackerConfig(max_coast_frames=3))
    tracker.update(Faces(xyxy=[box(300, 200)], scores=[0.9]), size)
    assert [len(tracker.update(Faces.empty(), size)) for _ in range(5)] == [1, 1, 1, 0, 0]


def test_start_score_keeps_weak_detections_from_starting_tracks() -> None:
    """The precision knob: a weak detection alone starts nothing, but it still extends a
    track that a strong one started."""
    weak = Faces(xyxy=[box(100, 100)], scores=[0.55])
    assert len(Tracker(TrackerConfig()).update(weak)) == 1  # default: fail closed
    tracker = Tracker(TrackerConfig(start_score=0.7))
    assert len(tracker.update(weak)) == 0
    tracker.update(Faces(xyxy=[box(300, 100)], scores=[0.9]))
    out = tracker.update(Faces(xyxy=[box(302, 100)], scores=[0.55]))
    assert out.track_ids.tolist() == [1] and not out.coasting.any()
