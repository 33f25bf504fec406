import dlib
import numpy as np
import pytest
import torch

from masquerade.alignment import ARCFACE_112, dlib_chips, estimate_transforms, warp_faces
from masquerade.datasets import load_rgb
from masquerade.models.dlib_resnet import FaceEncoder, add_prev, default_model_path


@pytest.fixture(scope="module")
def encoder():
    return FaceEncoder()


@pytest.fixture(scope="module")
def dlib_model():
    return dlib.face_recognition_model_v1(str(default_model_path()))


def dlib_descriptors(model, chips):
    return np.stack([
        np.array(model.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips
    ])


def test_add_prev_zero_extends_from_the_top_left():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 1, 4, 4), 10.0)
    out = add_prev(a, b)
    assert out.shape == (1, 2, 4, 4)
    assert out[0, 0, 0, 0] == 11 and out[0, 0, 3, 3] == 10
    assert out[0, 1, 0, 0] == 1 and out[0, 1, 3, 3] == 0


def test_matches_dlib_on_synthetic_chips(encoder, dlib_model):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    flat = np.full((1, 150, 150, 3), 128, np.uint8)
    chips = np.concatenate([noise, flat])
    np.testing.assert_allclose(encoder(chips), dlib_descriptors(dlib_model, chips), atol=1e-4)


def test_batches_give_the_same_embeddings_as_single_faces(encoder):
    chips = np.random.default_rng(1).integers(0, 256, (5, 150, 150, 3), dtype=np.uint8)
    np.testing.assert_allclose(encoder(chips, batch_size=2), encoder(chips, batch_size=5),
                               atol=1e-5)


@pytest.mark.data
def test_matches_dlib_on_twenty_real_faces(lfw, encoder, dlib_model):
    paths = sorted(lfw.glob("*/*.jpg"))[::385][:20]
    chips = np.concatenate([
        warp_faces(load_rgb(p), estimate_transforms(ARCFACE_112[None], "arcface5"), 150)
        for p in paths
    ])
    ours, theirs = encoder(chips), dlib_descriptors(dlib_model, chips)
    assert np.abs(ours - theirs).max() < 1e-4
    # and they are face descriptors: the same face is closer to itself than to others
    dist = np.linalg.norm(ours[:, None] - theirs[None], axis=-1)
    assert np.all(np.argmin(dist, axis=1) == np.arange(len(chips)))


def test_chips_from_dlib_layout_feed_the_encoder(encoder):
    image = np.random.default_rng(2).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    points = np.array([[[200.0, 120], [170, 124], [100, 120], [130, 124], [150, 180]]])
    chips = dlib_chips(image, points)
    assert chips.shape == (1, 150, 150, 3)
    assert encoder(chips).shape == (1, 128)
