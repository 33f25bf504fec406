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
