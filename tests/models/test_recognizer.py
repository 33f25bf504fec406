"""The pluggable recognizer: any face-embedding ONNX model, described by config."""

import numpy as np
import pytest
from skimage import data

from masquerade.config import RecognizerConfig
from masquerade.errors import ConfigError
from masquerade.models.recognizer import Recognizer, arcface_transforms
from masquerade.models.registry import identity_encoder_onnx
from tests.engines.test_engine import astronaut_keypoints


def test_a_user_onnx_model_described_by_config_matches_the_builtin():
    image = data.astronaut()
    kps = astronaut_keypoints()[None]
    builtin = Recognizer()
    # dlib's own network, plugged in the way a user plugs in theirs
    custom = Recognizer(RecognizerConfig(onnx=str(identity_encoder_onnx()), input_size=150,
                                         framing="dlib", mean=0.0, std=1.0,
                                         metric="euclidean", threshold=0.6))
    a, b = builtin.embed([image], kps), custom.embed([image], kps)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert custom.threshold == 0.6 and custom.name == "dlib_resnet.onnx"
    assert custom.distance(a, b)[0] < 1e-4


def test_cosine_metric_and_bgr_order():
    rec = Recognizer(RecognizerConfig(onnx=str(identity_encoder_onnx()), input_size=150,
                                      framing="dlib", channels="bgr", mean=0.0, std=1.0))
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(rec.distance(a, np.array([[2.0, 0.0]])), [0.0, 1 - 2**-0.5],
                               atol=1e-9)
    faces = np.zeros((1, 150, 150, 3), np.uint8)
    faces[..., 0] = 200  # red: seen as blue by a BGR model, so embeddings differ from RGB
    assert not np.allclose(rec.embed_aligned(faces), Recognizer().embed_aligned(faces))


def test_arcface_framing_puts_the_eyes_on_the_template():
    kps = astronaut_keypoints()
    m = arcface_transforms(kps[None], "mediapipe6", 112)[0]
    eyes = kps[:2] @ m[:, :2].T + m[:, 2]
    # insightface's eye centres sit at about (38, 52) and (74, 52) in the 112 px crop
    np.testing.assert_allclose(eyes, [[38.3, 51.6], [73.5, 51.5]], atol=5.0)


def test_missing_model_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"recognizer\.onnx"):
        Recognizer(RecognizerConfig(onnx=str(tmp_path / "none.onnx")))
