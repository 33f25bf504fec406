"""Anonymization strength, proven by dlib's recognizer rather than by eye."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
from skimage import data

from masquerade.anonymizers import build_anonymizer
from masquerade.config import AnonymizerConfig, DetectorConfig
from masquerade.engines.dlib_face import SAME_PERSON_DISTANCE, DlibFaceRecognizer
from masquerade.pipeline.compositing import Compositor
from masquerade.pipeline.detection import build_detector


@pytest.fixture(scope="module")
def recognizer() -> DlibFaceRecognizer:
    return DlibFaceRecognizer()


@pytest.fixture(scope="module")
def astronaut(recognizer: DlibFaceRecognizer):
    image = data.astronaut()
    shape = recognizer.landmarks(image)
    assert shape is not None
    return image, shape, recognizer.descriptor(image, shape)


def anonymize(image: np.ndarray, mode: str) -> np.ndarray:
    config = AnonymizerConfig(mode=mode)
    faces = build_detector(DetectorConfig()).detect(image)
    assert len(faces) == 1
    return Compositor(build_anonymizer(config), config).apply(image.copy(), faces)


@pytest.mark.parametrize("mode", ["blur", "pixelate", "solid"])
def test_anonymized_face_no_longer_matches(recognizer, astronaut, mode: str) -> None:
    image, shape, original = astronaut
    out = anonymize(image, mode)
    # The attacker's best case: the original landmarks, so alignment is perfect.
    assert recognizer.distance(recognizer.descriptor(out, shape), original) > SAME_PERSON_DISTANCE
    # Nothing outside the padded face region changed.
    assert np.array_equal(out[400:], image[400:])


def test_weak_blur_would_fail_this_check(recognizer, astronaut) -> None:
    """The check above can fail: a fixed 9x9 box blur leaves this 104 px face matched
    (distance 0.49), as a radius-10 blur does for larger faces."""
    image, shape, original = astronaut
    weak = cv2.blur(image, (9, 9))
    assert recognizer.distance(recognizer.descriptor(weak, shape), original) < SAME_PERSON_DISTANCE


@pytest.mark.data
@pytest.mark.parametrize("mode", ["blur", "pixelate"])
def test_lfw_faces_are_not_matched_after_anonymization(recognizer, data_dir, mode: str) -> None:
    files = sorted((data_dir / "faces" / "lfw112").glob("*/*.jpg"))
    random.Random(0).shuffle(files)
    config = AnonymizerConfig(mode=mode)
    compositor = Compositor(build_anonymizer(config), config)
    from masquerade.faces import Faces

    matches = 0
    for path in files[:40]:
        face = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        image = cv2.copyMakeBorder(cv2.resize(face, (336, 336), interpolation=cv2.INTER_CUBIC),
                                   100, 100, 100, 100, cv2.BORDER_REFLECT)
        shape = recognizer.landmarks(image, np.array([140, 150, 396, 416]))
        original = recognizer.descriptor(image, shape)
        out = compositor.apply(image.copy(), Faces(xyxy=[[150, 130, 386, 420]]))
        matches += recognizer.distance(recognizer.descriptor(out, shape), original) < 0.6
    # Measured 0/100 for blur and 2/100 for pixelate (tools/eval/classic_strength.py).
    assert matches <= 2


def test_size_gate_routes_small_and_doubtful_faces_to_the_fallback() -> None:
    from masquerade.anonymizers import SizeGate, SolidAnonymizer
    from masquerade.anonymizers.base import FaceRegion

    def region(size: int, score: float) -> FaceRegion:
        return FaceRegion(np.zeros((size, size, 3), np.uint8), np.array([0, 0, size, size]), 1,
                          score=score)

    gate = SizeGate(SolidAnonymizer((255, 255, 255)), SolidAnonymizer((9, 9, 9)), min_px=40,
                    min_score=0.75)
    out = gate.anonymize([region(100, 0.9), region(20, 0.9), region(100, 0.6)])
    assert [int(o[0, 0, 0]) for o in out] == [255, 9, 9]
    assert gate.fallback_faces == 2


def test_temporal_blend_mixes_a_tracks_previous_output() -> None:
    from masquerade.anonymizers import TemporalBlend
    from masquerade.anonymizers.base import FaceRegion

    class Alternating:
        calls = 0

        def anonymize(self, regions):
            self.calls += 1
            value = 200 if self.calls % 2 else 0
            return [np.full_like(r.pixels, value) for r in regions]

    def region(track: int) -> FaceRegion:
        return FaceRegion(np.zeros((60, 60, 3), np.uint8), np.array([10, 10, 50, 50]), track)

    blend = TemporalBlend(Alternating(), alpha=0.5)
    first = blend.anonymize([region(1)])[0]
    second = blend.anonymize([region(1)])[0]
    assert first[30, 30, 0] == 200
    assert second[30, 30, 0] == 100  # half of the previous 200, inside the face box
    assert second[5, 5, 0] == 0  # outside the box: untouched
    other = blend.anonymize([region(2)])[0]
    assert other[30, 30, 0] == 200  # a new track starts from its own output


def test_track_cache_forgets_the_least_recently_seen_track():
    from masquerade.anonymizers.base import TrackCache

    cache: TrackCache[str] = TrackCache(limit=2)
    cache[1], cache[2] = "a", "b"
    cache.move_to_end(1)  # track 1 seen again
    cache[3] = "c"
    assert list(cache) == [1, 3]
