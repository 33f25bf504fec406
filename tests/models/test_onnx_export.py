import dlib
import numpy as np
import onnx
import pytest

from masquerade.models.dlib_resnet import ONNX_OPSET, default_model_path, export_onnx
from masquerade.models.onnx_encoder import OnnxFaceEncoder


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    return export_onnx(tmp_path_factory.mktemp("onnx") / "dlib_resnet.onnx")


def test_export_records_opset_and_dynamic_batch(onnx_path):
    proto = onnx.load(str(onnx_path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == ONNX_OPSET
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    assert {p.key: p.value for p in proto.metadata_props}["opset"] == str(ONNX_OPSET)


def test_onnx_runtime_matches_dlib_at_several_batch_sizes(onnx_path):
    encoder = OnnxFaceEncoder(onnx_path)
    chips = np.random.default_rng(3).integers(0, 256, (5, 150, 150, 3), dtype=np.uint8)
    model = dlib.face_recognition_model_v1(str(default_model_path()))
    ref = np.stack([np.array(model.compute_face_descriptor(c)) for c in chips])
    for batch_size in (1, 3, 5):
        np.testing.assert_allclose(encoder(chips, batch_size=batch_size), ref, atol=1e-4)
