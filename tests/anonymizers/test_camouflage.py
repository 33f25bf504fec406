"""Camouflage on a real face: the recognizer keeps matching, the pixels clearly change."""

from dataclasses import replace

import numpy as np
import pytest

from masquerade.anonymizers import build_anonymizer
from masquerade.anonymizers.base import FaceRegion
from masquerade.anonymizers.camouflage import (
    FIELD,
    Appearance,
    CamouflageAnonymizer,
    apply_appearance,
    skin_mask,
)
from masquerade.config import AnonymizerConfig
from masquerade.errors import ConfigError
from masquerade.keys import SecretKey
from masquerade.models.recognizer import Recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


def face_change(region: FaceRegion, out: np.ndarray) -> float:
    x0, y0, x1, y1 = region.box.astype(int)
    return float(np.abs(out[y0:y1, x0:x1].astype(int) - region.pixels[y0:y1, x0:x1]).mean())


def test_appearance_is_a_function_of_the_password():
    a, b = Appearance.from_password(b"one"), Appearance.from_password(b"one")
    np.testing.assert_array_equal(a.field(), b.field())
    other = Appearance.from_password(b"two")
    assert np.abs(a.field() - other.field()).max() > 1.0  # crop pixels
    assert np.abs(a.skin - other.skin).max() > 1.0
    # moves stay a fraction of the face: at most ~1/8 of the eye distance-scaled crop
    assert np.abs(a.field()).max() < 0.15 * FIELD.size


def test_strength_zero_changes_nothing(astronaut_region):
    appearance = Appearance.from_password(b"pw")
    m = np.array([[0.3, 0.0, -10.0], [0.0, 0.3, -8.0]])
    out = apply_appearance(astronaut_region.pixels, m, appearance.field(), appearance.skin,
                           skin_mask(), 0.0)
    np.testing.assert_array_equal(out, astronaut_region.pixels)


def test_camouflage_changes_the_face_but_the_recognizer_still_matches(
        astronaut_region, recognizer):
    camo = CamouflageAnonymizer(lambda t: b"track-%d" % t, recognizer, margin=0.8)
    region = astronaut_region
    (out,) = camo.anonymize([region])
    assert out.shape == region.pixels.shape and out.dtype == np.uint8
    assert face_change(region, out) > 6.0  # clearly visible: mean |diff| per channel
    kps = np.asarray(region.keypoints, np.float64)[None]
    d = recognizer.distance(recognizer.embed([out], kps), recognizer.embed([region.pixels], kps))
    assert d[0] <= 0.8 * recognizer.threshold
    track = camo._tracks[region.track_id]
    assert track.strength > 0 and track.distance == pytest.approx(d[0], abs=1e-4)
    # same track, same frame: the same new face (stable); another password: another face
    np.testing.assert_array_equal(camo.anonymize([region])[0], out)
    (other,) = camo.anonymize([replace(region, track_id=region.track_id + 1)])
    assert np.abs(other.astype(int) - out).mean() > 1.0


def test_tighter_margin_picks_a_gentler_camouflage(astronaut_region, recognizer):
    loose = CamouflageAnonymizer(lambda t: b"x", recognizer, margin=1.0)
    tight = CamouflageAnonymizer(lambda t: b"x", recognizer, margin=0.3)
    loose.anonymize([astronaut_region])
    tight.anonymize([astronaut_region])
    a, b = loose._tracks[7], tight._tracks[7]
    assert b.strength < a.strength
    assert b.distance <= 0.3 * 0.6 or tight.weak_tracks == 1  # or the gentlest rung, said so


def test_camouflage_mode_needs_a_key_and_gates_small_faces(astronaut_region):
    config = AnonymizerConfig(mode="camouflage")
    with pytest.raises(ConfigError, match="camouflage needs a key"):
        build_anonymizer(config)
    gate = build_anonymizer(config, SecretKey.generate())
    tiny = replace(astronaut_region, box=np.array([10.0, 10.0, 30.0, 30.0]))
    gate.anonymize([tiny])
    assert gate.fallback_faces == 1


def test_hair_gets_the_target_colour_and_skin_coloured_pixels_keep_theirs():
    import cv2

    from masquerade.anonymizers.camouflage import HAIR_MIX, recolour_hair

    image = np.zeros((40, 40, 3), np.uint8)
    image[:20] = (120, 80, 40)  # brown "hair" on top
    image[20:] = (225, 180, 150)  # skin below
    skin = np.zeros((40, 40), np.float32)
    skin[30:] = 1.0
    everywhere = np.ones((40, 40), np.float32)
    target = np.array([60.0, 130.0, 132.0])  # near-black, OpenCV Lab
    out = recolour_hair(image, everywhere, target, skin_weight=skin)
    lab_in = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(float)
    lab_out = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(float)
    expected = lab_in[:20] + HAIR_MIX * (target - lab_in[:20])
    assert np.abs(lab_out[:20] - expected).max() <= 3  # hair moved towards the target
    assert np.abs(out[20:].astype(int) - image[20:]).max() <= 1  # skin untouched


def test_camouflage_recolours_the_hair_above_the_face(astronaut_region, recognizer):
    with_hair = CamouflageAnonymizer(lambda t: b"pw", recognizer, hair=True)
    without = CamouflageAnonymizer(lambda t: b"pw", recognizer, hair=False)
    (a,) = with_hair.anonymize([astronaut_region])
    (b,) = without.anonymize([astronaut_region])
    x0, y0, x1, _ = astronaut_region.box.astype(int)
    top = slice(0, max(y0 - 5, 1)), slice(x0, x1)  # above the face box: hair
    assert np.abs(a[top].astype(int) - b[top]).mean() > 3.0


def test_a_face_without_landmarks_is_pixelated_not_left_bare(astronaut_region,
                                                             recognizer):
    camo = CamouflageAnonymizer(lambda t: b"pw", recognizer, hair=False)
    bare = replace(astronaut_region, keypoints=None)
    (out,) = camo.anonymize([bare])
    assert camo.no_landmark_faces == 1 and face_change(bare, out) > 10.0
