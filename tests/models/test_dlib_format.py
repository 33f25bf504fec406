import numpy as np
import pytest

from masquerade.models.dlib_format import DlibFormatError, DlibReader, read_network
from masquerade.models.dlib_resnet import default_model_path


def test_integers_decode_dlib_control_bytes():
    # 1, 150, -28, 4736 as dlib's pack_int writes them
    r = DlibReader(bytes([0x01, 0x01, 0x01, 0x96, 0x81, 0x1C, 0x02, 0x80, 0x12]))
    assert [r.int(), r.int(), r.int(), r.int()] == [1, 150, -28, 4736]
    assert r.pos == len(r.data)


def test_floats_are_mantissa_times_two_to_the_exponent():
    # 0.6 as float_details: mantissa 0x99999a, exponent -24 (bytes from dlib's model file)
    r = DlibReader(bytes([0x03, 0x9A, 0x99, 0x99, 0x81, 0x18, 0x01, 0x00, 0x02, 0x00, 0x7D]))
    assert r.float() == pytest.approx(0.6, abs=1e-7)
    assert r.float() == np.inf  # mantissa 0, exponent 32000


def test_strings_and_tensors():
    payload = np.arange(6, dtype="<f4").tobytes()
    data = bytes([0x01, 0x04]) + b"con_" + bytes([1, 2, 1, 1, 1, 2, 1, 3, 1, 1]) + payload
    r = DlibReader(data)
    assert r.string() == "con_"
    np.testing.assert_array_equal(r.tensor(), np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1))


def test_truncated_and_malformed_data_raise():
    with pytest.raises(DlibFormatError):
        DlibReader(bytes([0x02, 0x01])).int()
    with pytest.raises(DlibFormatError):
        DlibReader(bytes([0x30])).int()  # reserved bits set


def test_reads_dlibs_face_recognition_model():
    net = read_network(default_model_path())
    assert net.loss.params["dist_thresh"] == pytest.approx(0.6)
    assert net.input.params["avg_rgb"] == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    ops = [layer.op for layer in net.layers]
    assert ops.count("con") == ops.count("affine") == 29
    assert ops.count("add_prev") == 14
    assert ops[:4] == ["con", "affine", "relu", "max_pool"]
    assert ops[-2:] == ["avg_pool", "fc"]
    fc = net.layers[-1].params
    assert fc["weight"].shape == (256, 128) and not fc["has_bias"]


def test_rejects_a_file_that_is_not_a_dlib_network(tmp_path):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x01\x01\x01\x04abcd")
    with pytest.raises(DlibFormatError):
        read_network(bad)
