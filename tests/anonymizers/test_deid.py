import numpy as np
import pytest

from masquerade.alignment import CropSpec
from masquerade.anonymizers.deid import (
    WEIGHTS_DIR,
    KeyedDeidAnonymizer,
    box_transforms,
    face_mask,
    match_colours,
)
from masquerade.keys.reference import ReferenceLibrary
from masquerade.keys.rotation import IdentityKey
from tests.anonymizers.conftest import blazeface

needs_weights = pytest.mark.skipif(
    not (WEIGHTS_DIR / "deid_generator.onnx").is_file(), reason="no committed deid weights"
)


def test_face_mask_is_one_at_the_centre_and_zero_in_the_corners():
    mask = face_mask(CropSpec(96, 0.25))
    assert mask[48, 48] == 1.0 and mask[0, 0] == 0.0 and mask[95, 95] == 0.0


def test_box_fallback_maps_the_box_onto_the_unit_square():
    crop = CropSpec(96, 0.25)
    m = box_transforms(np.array([10.0, 20.0, 60.0, 70.0]), crop)[0]
    corners = np.array([[10.0, 20.0, 1.0], [60.0, 70.0, 1.0]]) @ m.T
    np.testing.assert_allclose(corners, crop.to_crop(np.array([[0.0, 0.0], [1.0, 1.0]])))


def test_colour_matching_moves_masked_statistics_to_the_original():
    rng = np.random.default_rng(0)
    original = rng.integers(60, 200, (1, 32, 32, 3), dtype=np.uint8)
    generated = np.clip(original.astype(int) // 2 + 100, 0, 255).astype(np.uint8)
    mask = np.ones((32, 32), np.float32)
    matched = match_colours(generated, original, mask)
    before = np.abs(generated.mean((1, 2)) - original.mean((1, 2))).max()
    after = np.abs(matched.mean((1, 2)) - original.mean((1, 2))).max()
    assert after < before / 4


@needs_weights
def test_committed_weights_produce_a_detectable_changed_face(astronaut_region):
    from masquerade.models.dlib_resnet import FaceEncoder

    rng = np.random.default_rng(0)
    key = IdentityKey(ReferenceLibrary(rng.normal(size=(16, 128)) * 0.1 + 0.3))
    anonymizer = KeyedDeidAnonymizer(lambda t: b"track-%d" % t, d=1.0, key=key,
                                     identity_encoder=FaceEncoder(threads=2), threads=2)
    region = astronaut_region
    (out,) = anonymizer.anonymize([region])
    assert out.shape == region.pixels.shape and out.dtype == np.uint8
    x0, y0, x1, y1 = region.box.astype(int)
    change = np.abs(out[y0:y1, x0:x1].astype(int) - region.pixels[y0:y1, x0:x1]).mean()
    assert change > 3.0
    found = blazeface(out)
    assert found and found[0][2] > 0.5
    (again,) = anonymizer.anonymize([region])  # same track: same cached identity
    np.testing.assert_array_equal(again, out)


def test_render_every_reuses_each_tracks_face_between_renders(astronaut_region):
    from dataclasses import replace

    calls = []
    anonymizer = KeyedDeidAnonymizer(lambda t: b"track-%d" % t, d=1.0, render_every=3)
    real_generator = anonymizer.generator

    def counting(crops, z):
        calls.append(len(crops))
        return real_generator(crops, z)

    anonymizer.generator = counting
    other = replace(astronaut_region, track_id=8)
    shifted = replace(astronaut_region, pixels=np.roll(astronaut_region.pixels, 3, axis=1),
                      box=astronaut_region.box + np.array([3, 0, 3, 0]),
                      keypoints=astronaut_region.keypoints + np.array([3, 0]))
    first = anonymizer.anonymize([astronaut_region])[0]
    anonymizer.anonymize([shifted, other])  # track 7 reused, track 8 is new
    anonymizer.anonymize([astronaut_region, other])
    anonymizer.anonymize([astronaut_region, other])  # track 7's third frame: rendered again
    assert calls == [1, 1, 1]
    assert anonymizer.rendered_faces == 3 and anonymizer.reused_faces == 4
    # the reused face is re-aligned: it moves with the head
    moved = anonymizer.anonymize([shifted])[0]
    x0, y0, x1, y1 = astronaut_region.box.astype(int)
    assert np.abs(moved[y0:y1, x0 + 3:x1 + 3].astype(int) - first[y0:y1, x0:x1]).mean() < 4


@needs_weights
def test_identity_feedback_pulls_the_fake_onto_the_tracks_new_identity(astronaut_region):
    misses = {}
    for gain in (0.0, 0.5):
        anonymizer = KeyedDeidAnonymizer(lambda t: b"track-%d" % t, d=1.0,
                                         identity_feedback=gain)
        for _ in range(4):
            anonymizer.anonymize([astronaut_region])
        track = astronaut_region.track_id
        fake = anonymizer._fakes[track][0]
        z_new = anonymizer._tracks[track].z_new
        misses[gain] = float(np.linalg.norm(anonymizer.measure(fake[None])[0] - z_new))
    assert misses[0.5] < 0.9 * misses[0.0]  # measured: 0.33 -> 0.26 in 4 renders


@needs_weights
def test_a_track_that_becomes_someone_else_gets_a_new_identity(astronaut_region):
    """A tracker ID switch: track 7 was the astronaut, then another face takes its place."""
    from dataclasses import replace

    from masquerade.anonymizers.deid import IDENTITY_CHECK_EVERY

    anonymizer = KeyedDeidAnonymizer(lambda t: b"track-%d" % t, d=1.0, refresh_distance=0.5)
    maker = KeyedDeidAnonymizer(lambda t: b"someone else", d=1.0)
    other = replace(astronaut_region, pixels=maker.anonymize([astronaut_region])[0])
    z_a, z_b = anonymizer.measure(anonymizer.aligned([astronaut_region, other])[0])
    assert np.linalg.norm(z_a - z_b) > 0.6  # dlib: two different people

    fakes = []
    for _ in range(3 * IDENTITY_CHECK_EVERY):  # the same face: no refresh
        fakes.append(anonymizer.anonymize([astronaut_region])[0])
    first = anonymizer._tracks[7].z_new.copy()
    assert anonymizer.refreshed_tracks == 0
    for _ in range(3 * IDENTITY_CHECK_EVERY):
        fakes.append(anonymizer.anonymize([other])[0])
    assert anonymizer.refreshed_tracks == 1
    np.testing.assert_allclose(anonymizer._tracks[7].z_new,
                               anonymizer.key.apply(z_b, b"track-7", 1.0), atol=1e-4)
    assert np.linalg.norm(anonymizer._tracks[7].z_new - first) > 0.5

    # restore runs the same rule on the fakes: it re-inverts where the fake changed
    from masquerade.pipeline.restore import RESTORE_REFRESH_FRACTION, InverseKey

    restorer = KeyedDeidAnonymizer(lambda t: b"track-%d" % t, d=1.0,
                                   key=InverseKey(anonymizer.key),
                                   refresh_distance=RESTORE_REFRESH_FRACTION * 0.5)
    for fake in fakes:
        restorer.anonymize([replace(astronaut_region, pixels=fake)])
    assert restorer.refreshed_tracks == 1
    z_restored = restorer._tracks[7].z_new
    assert np.linalg.norm(z_restored - z_b) < np.linalg.norm(z_restored - z_a)


@needs_weights
def test_feedback_renders_limits_the_identity_measurements(astronaut_region):
    for limit, expected in ((0, 1 + 5), (2, 1 + 2)):  # the track's z, then one per steer
        anonymizer = KeyedDeidAnonymizer(lambda t: b"track-%d" % t, d=1.0,
                                         identity_feedback=0.5, feedback_renders=limit)
        encoder, calls = anonymizer.encoder, []
        anonymizer.encoder = lambda chips, encoder=encoder, calls=calls: (
            calls.append(len(chips)), encoder(chips))[1]
        for _ in range(5):
            anonymizer.anonymize([astronaut_region])
        assert len(calls) == expected
