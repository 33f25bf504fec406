import cv2
import dlib
import face_recognition_models
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masquerade.alignment import (
    ARCFACE_112,
    DLIB5_UNIT,
    DLIB_CHIP,
    LAYOUTS,
    CropSpec,
    dlib_chips,
    estimate_transforms,
    feather_mask,
    invert,
    paste_back,
    transform_points,
    umeyama,
    warp_faces,
)
from masquerade.datasets import load_rgb


def random_similarity(rng, n):
    angle = rng.uniform(-np.pi, np.pi, n)
    scale = rng.uniform(0.3, 3.0, n)
    a = scale * np.cos(angle)
    b = scale * np.sin(angle)
    t = rng.uniform(-200, 200, (n, 2))
    return np.stack([np.stack([a, -b, t[:, 0]], 1), np.stack([b, a, t[:, 1]], 1)], 1)


def test_umeyama_recovers_an_exact_similarity_for_a_batch():
    rng = np.random.default_rng(0)
    truth = random_similarity(rng, 8)
    src = rng.uniform(0, 100, (8, 5, 2))
    dst = transform_points(truth, src)
    fit = np.stack([umeyama(s, d) for s, d in zip(src, dst, strict=True)])
    np.testing.assert_allclose(fit, truth, atol=1e-9)


def test_umeyama_ignores_zero_weight_points():
    rng = np.random.default_rng(1)
    truth = random_similarity(rng, 1)[0]
    src = rng.uniform(0, 100, (6, 2))
    dst = transform_points(truth, src)
    dst[5] += 500.0  # an outlier that carries no weight
    np.testing.assert_allclose(umeyama(src, dst, np.array([1, 1, 1, 1, 1, 0.0])), truth, atol=1e-9)
    assert not np.allclose(umeyama(src, dst), truth, atol=1e-3)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_points_round_trip_through_transform_and_inverse(seed):
    rng = np.random.default_rng(seed)
    m = random_similarity(rng, 3)
    pts = rng.uniform(-1000, 1000, (3, 7, 2))
    back = transform_points(invert(m), transform_points(m, pts))
    np.testing.assert_allclose(back, pts, atol=1e-7)


@pytest.mark.parametrize("layout", ["dlib5", "arcface5", "mediapipe6"])
@pytest.mark.parametrize("size", [128, 150, 256])
def test_keypoints_land_on_the_template(layout, size):
    spec, crop = LAYOUTS[layout], CropSpec(size, 0.25)
    rng = np.random.default_rng(2)
    truth = random_similarity(rng, 4)
    template = crop.to_crop(spec.unit)
    keypoints = transform_points(invert(truth), template)
    m = estimate_transforms(keypoints, layout, crop)
    fitted = spec.weights > 0
    landed = transform_points(m, np.where(np.isfinite(keypoints), keypoints, 0))
    want = np.broadcast_to(template[fitted], landed[:, fitted].shape)
    np.testing.assert_allclose(landed[:, fitted], want, atol=1e-8)


def test_warp_is_subpixel_exact():
    """A blob centred at a non-integer image point lands where the transform sends it."""
    yy, xx = np.mgrid[0:200, 0:240].astype(np.float64)
    centre = np.array([101.37, 87.61])
    image = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * 6.0**2))
    m = random_similarity(np.random.default_rng(3), 1)[0]
    m[:, :2] /= np.linalg.norm(m[0, :2])  # unit scale keeps the blob well sampled
    m[:, 2] += 64 - transform_points(m, centre)  # and puts it near the crop centre
    crop = warp_faces(image.astype(np.float32), m[None], 128)[0]
    cy, cx = np.mgrid[0:128, 0:128]
    found = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    np.testing.assert_allclose(found, transform_points(m, centre), atol=0.02)


def test_image_round_trip_through_crop_and_paste_back():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    image = np.stack([np.sin(xx / 9) * 60 + 120, np.cos(yy / 7) * 60 + 120, (xx + yy) / 3], -1)
    image = image.astype(np.float32)
    m = random_similarity(rng, 1)[0]
    m[:, :2] *= 1.6 / np.linalg.norm(m[0, :2])  # upsampling into the crop loses nothing
    m[:, 2] += 75 - transform_points(m, np.array([160.0, 120.0]))
    crop = warp_faces(image, m[None], 150)
    canvas = np.zeros_like(image)
    pasted = paste_back(canvas, crop, m[None], feather=0.0)
    inside = transform_points(invert(m), np.array([[40.0, 40], [110, 110]]))
    x0, y0 = np.ceil(inside.min(0)).astype(int)
    x1, y1 = np.floor(inside.max(0)).astype(int)
    err = np.abs(pasted[y0:y1, x0:x1] - image[y0:y1, x0:x1])
    assert err.mean() < 0.5 and err.max() < 6
    assert np.all(pasted[:5, :5] == 0)  # far outside the face nothing changes


def test_paste_back_feathers_the_seam():
    image = np.zeros((200, 200, 3), np.uint8)
    m = np.array([[1.0, 0, -25], [0, 1.0, -25]])  # crop = image[25:175, 25:175]
    crops = np.full((1, 150, 150, 3), 200, np.uint8)
    out = paste_back(image, crops, m[None], feather=0.2).astype(float)
    assert out[100, 100, 0] == 200
    edge_profile = out[100, 25:60, 0]
    assert 0 < edge_profile[0] < edge_profile[15] < edge_profile[-1]
    assert out[100, 10, 0] == 0


def test_feather_mask_is_symmetric_and_ramps():
    mask = feather_mask(64, 0.25)
    np.testing.assert_allclose(mask, mask[::-1, ::-1])
    np.testing.assert_allclose(mask, mask.T)
    assert mask[32, 32] == 1 and 0 < mask[0, 32] < mask[8, 32] < 1


def test_arcface_template_maps_to_dlib_eye_centres():
    chip = DLIB_CHIP.to_crop(LAYOUTS["arcface5"].unit[:2])
    eyes = DLIB_CHIP.to_crop(np.stack([DLIB5_UNIT[2:4].mean(0), DLIB5_UNIT[0:2].mean(0)]))
    np.testing.assert_allclose(chip, eyes, atol=1e-9)
    m = estimate_transforms(ARCFACE_112[None], "arcface5")
    scale = np.linalg.norm(eyes[1] - eyes[0]) / np.linalg.norm(ARCFACE_112[1] - ARCFACE_112[0])
    np.testing.assert_allclose(np.linalg.det(m[0, :, :2]), scale**2, rtol=0.05)


@pytest.mark.data
def test_chips_match_dlib_get_face_chip(lfw):
    """Our dlib5 chip frames the face as dlib.get_face_chip(size=150, padding=0.25) does."""
    model = face_recognition_models.pose_predictor_five_point_model_location()
    predictor = dlib.shape_predictor(model)
    paths = sorted(lfw.glob("*/*.jpg"))[:8]
    errors = []
    for path in paths:
        image = cv2.resize(load_rgb(path), (168, 168), interpolation=cv2.INTER_CUBIC)
        shape = predictor(image, dlib.rectangle(30, 37, 138, 157))
        points = np.array([[p.x, p.y] for p in shape.parts()], float)
        ours = dlib_chips(image, points[None])[0].astype(float)
        theirs = dlib.get_face_chip(image, shape, 150, 0.25).astype(float)
        errors.append(np.abs(ours - theirs)[5:-5, 5:-5].mean())
    assert np.mean(errors) < 1.5  # uint8 rounding vs dlib's truncation accounts for ~0.5


@pytest.mark.data
def test_mediapipe_keypoints_align_like_the_arcface_template(lfw):
    """Chips from BlazeFace's keypoints frame LFW faces as the known ArcFace alignment does."""
    mp = pytest.importorskip("mediapipe")
    paths = sorted(lfw.glob("*/*.jpg"))[::500][:10]
    reference = estimate_transforms(ARCFACE_112[None], "arcface5")[0]
    probe = DLIB_CHIP.to_crop(LAYOUTS["arcface5"].unit)  # eyes, nose, mouth corners
    errors = []
    with mp.solutions.face_detection.FaceDetection(model_selection=0) as detector:
        for path in paths:
            image = cv2.copyMakeBorder(cv2.resize(load_rgb(path), None, fx=2, fy=2),
                                       100, 100, 100, 100, cv2.BORDER_CONSTANT)
            found = detector.process(np.ascontiguousarray(image)).detections
            h, w = image.shape[:2]
            kps = np.array([[k.x * w, k.y * h] for k in found[0].location_data.relative_keypoints])
            m = estimate_transforms(kps[None], "mediapipe6")[0]
            # the same chip pixels, seen in the 112 crop, via each transform
            ours = (transform_points(invert(m), probe) - 100 + 0.5) / 2 - 0.5
            errors.append(np.abs(ours - transform_points(invert(reference), probe)).max())
    # detector noise is ~2-3 px; a wrong layout (say, eyes swapped) is off by ~35 px
    assert np.median(errors) < 4.0  # pixels of the 112 crop, eye distance ~35
