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


def test_residual_change_is_only_the_identity_edit_and_its_gain():
    from masquerade.anonymizers.deid import residual_change

    rng = np.random.default_rng(1)
    face = rng.integers(40, 200, (2, 32, 32, 3), dtype=np.uint8)
    # the generator reconstructs the face exactly and the fake equals it: nothing changes
    np.testing.assert_allclose(residual_change(face, face, face, 1.5), 0.0, atol=1e-4)
    # a grey offset between fake and reconstruction comes through times the gain
    brighter = (face.astype(int) + 10).astype(np.uint8)
    np.testing.assert_allclose(residual_change(face, brighter, face, 1.5), 15.0, atol=1e-3)
    # the face's own fine detail survives: only its coarse reconstruction error is replaced
    grey = np.repeat(face[..., :1], 3, axis=3)
    smooth = np.full_like(grey, 120)
    kept = grey + residual_change(grey, smooth, smooth, 1.0)
    assert kept.std() > 0.7 * grey.std()  # pixel noise is all fine detail
    np.testing.assert_allclose(kept.mean(), 120.0, atol=3.0)  # the coarse level is G's


def test_additive_paste_adds_the_change_under_the_mask():
    from masquerade.alignment import paste_back

    image = np.full((40, 40, 3), 100, np.uint8)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ones = np.ones((1, 40, 40), np.float32)
    zero = np.zeros((1, 40, 40, 3), np.float32)
    np.testing.assert_array_equal(paste_back(image, zero, identity, masks=ones, add=True), image)
    out = paste_back(image, zero - 30, identity, masks=ones, add=True)
    assert out[20, 20].tolist() == [70, 70, 70]


@needs_weights
def test_residual_composite_keeps_the_faces_detail_and_restore_undoes_it(astronaut_region):
    """The residual fake is as sharp as the face, another person for dlib, and the inverse
    key's residual brings the person back."""
    from dataclasses import replace

    import cv2

    from masquerade.anonymizers import identity_key
    from masquerade.config import AnonymizerConfig
    from masquerade.pipeline.restore import InverseKey

    key = identity_key(AnonymizerConfig())
    outs = {}
    for composite in ("replace", "residual"):
        anonymizer = KeyedDeidAnonymizer(lambda t: b"track-%d" % t, d=1.0, key=key,
                                         identity_feedback=0.5, composite=composite)
        for _ in range(3):
            outs[composite] = anonymizer.anonymize([astronaut_region])[0]
    x0, y0, x1, y1 = astronaut_region.box.astype(int)

    def detail(image: np.ndarray) -> float:
        grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        return float(cv2.Laplacian(grey, cv2.CV_64F).var())

    assert detail(outs["residual"]) > 1.5 * detail(outs["replace"])
    assert detail(outs["residual"]) > 0.6 * detail(astronaut_region.pixels)
    measure = anonymizer.measure
    crops = anonymizer.aligned
    z = measure(crops([astronaut_region])[0])[0]
    fake_region = replace(astronaut_region, pixels=outs["residual"])
    assert np.linalg.norm(measure(crops([fake_region])[0])[0] - z) > 0.6
    restorer = KeyedDeidAnonymizer(lambda t: b"track-%d" % t, d=1.0, key=InverseKey(key),
                                   identity_feedback=0.5, composite="residual")
    for _ in range(3):
        restored = restorer.anonymize([fake_region])[0]
    restored_region = replace(astronaut_region, pixels=restored)
    assert np.linalg.norm(measure(crops([restored_region])[0])[0] - z) < 0.6
