"""The engine layer: ONNX Runtime against the PyTorch reference on real faces, the
TensorRT cache key, export, and TensorRT itself where a GPU and TensorRT exist."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
from skimage import data

from masquerade.alignment import DLIB_CHIP, estimate_transforms
from masquerade.cli import main
from masquerade.config import EngineConfig
from masquerade.engines.engine import load_engine
from masquerade.engines.tensorrt import engine_key, unavailable_reason
from masquerade.errors import MasqueradeError
from masquerade.models.registry import WEIGHTS_DIR, networks, torch_reference

torch = pytest.importorskip("torch")
TRT_MISSING = unavailable_reason()
needs_tensorrt = pytest.mark.skipif(TRT_MISSING is not None, reason=f"TensorRT: {TRT_MISSING}")


def astronaut_keypoints() -> np.ndarray:
    from masquerade.engines.blazeface import BlazeFace

    detector = BlazeFace("short_range")
    try:
        faces = detector.detect(data.astronaut())
    finally:
        detector.close()
    return faces.keypoints[0].astype(np.float64)


@pytest.fixture(scope="module")
def real_inputs() -> dict[str, dict[str, np.ndarray]]:
    """Feeds for each network built from the astronaut's face (plus a mirrored copy)."""
    image = data.astronaut()
    kps = astronaut_keypoints()
    images = [image, np.ascontiguousarray(image[:, ::-1])]
    kps_all = [kps, np.c_[image.shape[1] - kps[:, 0], kps[:, 1]][[1, 0, 2, 3, 5, 4]]]

    def warp(spec):
        return np.stack([cv2.warpAffine(im, estimate_transforms(k[None], "mediapipe6", spec)[0],
                                        (spec.size, spec.size), flags=cv2.INTER_LINEAR)
                         for im, k in zip(images, kps_all, strict=True)])

    paths = networks()
    chips = warp(DLIB_CHIP).transpose(0, 3, 1, 2).astype(np.float32)
    from masquerade.anonymizers.deid import DeidGenerator

    crops = warp(DeidGenerator().crop).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
    attr = load_engine(paths["deid_attr"])
    attrs = dict(zip(attr.outputs, attr.run({"faces": crops}), strict=True))
    identity = load_engine(paths["identity_encoder"]).run({"chips": chips})[0]
    return {"identity_encoder": {"chips": chips}, "deid_attr": {"faces": crops},
            "deid_generator": {"identity": identity[::-1].copy(), **attrs}}


@pytest.mark.parametrize(("name", "atol"), [("identity_encoder", 1e-4), ("deid_attr", 1e-3),
                                            ("deid_generator", 2e-3)])
def test_onnxruntime_matches_the_pytorch_reference_on_real_faces(name, atol, real_inputs):
    engine = load_engine(networks()[name])
    assert engine.backend == "onnxruntime"
    feed = real_inputs[name]
    got = engine.run(feed)
    with torch.inference_mode():
        ref = torch_reference(name)(*(torch.from_numpy(feed[n]) for n in engine.inputs))
    ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    assert len(got) == len(ref) == len(engine.outputs)
    for g, r in zip(got, ref, strict=True):
        assert g.shape == tuple(r.shape)
        scale = max(1.0, float(np.abs(r.numpy()).max()))  # attribute maps are unbounded
        assert np.abs(g - r.numpy()).max() < atol * scale


def test_identity_embeddings_agree_and_batching_changes_nothing(real_inputs):
    engine = load_engine(networks()["identity_encoder"])
    chips = real_inputs["identity_encoder"]["chips"]
    together = engine.run({"chips": chips})[0]
    one_by_one = np.concatenate([engine.run({"chips": chips[i:i + 1]})[0] for i in range(2)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    with torch.inference_mode():
        ref = torch_reference("identity_encoder")(torch.from_numpy(chips)).numpy()
    assert np.linalg.norm(together - ref, axis=1).max() < 1e-4  # same person by any margin


def test_engine_reports_names_and_metadata():
    gen = load_engine(WEIGHTS_DIR / "deid_generator.onnx")
    assert gen.inputs[0] == "identity" and gen.outputs == ["faces"]
    assert json.loads(gen.metadata["config_json"])["size"] == 96


def test_engines_are_shared_per_file_and_settings():
    path = WEIGHTS_DIR / "deid_attr.onnx"
    assert load_engine(path) is load_engine(path)
    assert load_engine(path, EngineConfig(threads=1)) is not load_engine(path)
    assert load_engine(path, shared=False) is not load_engine(path)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(MasqueradeError, match="model file not found"):
        load_engine(tmp_path / "nope.onnx")


@pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT is available here")
def test_tensorrt_without_a_gpu_says_why_in_one_line():
    with pytest.raises(MasqueradeError) as info:
        load_engine(WEIGHTS_DIR / "deid_attr.onnx", EngineConfig(backend="tensorrt"))
    assert "engine.backend=tensorrt" in str(info.value) and "\n" not in str(info.value)


def test_engine_cache_key_covers_model_version_gpu_precision_and_batch(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"graph one")
    base = ("10.0.1", "NVIDIA H100", "fp16", 16)
    key = engine_key(model, *base)
    assert key == engine_key(model, *base)
    for i, other in enumerate(("10.1.0", "NVIDIA H200", "fp32", 32)):
        changed = list(base)
        changed[i] = other
        assert engine_key(model, *changed) != key
    model.write_bytes(b"graph two")
    assert engine_key(model, *base) != key


def test_export_writes_onnx_files_and_a_manifest(tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["networks"]) == {"identity_encoder", "deid_attr", "deid_generator"}
    for entry in manifest["networks"].values():
        assert (out / entry["file"]).is_file() and entry["opset"] == 17
        assert next(iter(entry["inputs"].values()))[0] == "batch"  # dynamic batch axis
    assert main(["export", "-o", str(out)]) != 0  # never replaces an export silently
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT is available here")
def test_export_tensorrt_without_tensorrt_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", "-o", str(out), "--tensorrt"]) != 0
    assert not out.exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith("masquerade: error: --tensorrt:") and "\n" not in err


@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize(("precision", "atol", "max_identity_shift"),
                         [("fp32", 1e-2, 0.02), ("fp16", 6e-2, 0.06)])
def test_tensorrt_matches_onnxruntime(tmp_path, real_inputs, precision, atol, max_identity_shift):
    config = EngineConfig(backend="tensorrt", precision=precision, max_batch=4,
                          cache_dir=str(tmp_path))
    for name, path in networks().items():
        trt_engine = load_engine(path, config)
        ort_engine = load_engine(path)
        feed = real_inputs[name]
        for got, ref in zip(trt_engine.run(feed), ort_engine.run(feed), strict=True):
            if name == "identity_encoder":  # what matters: the same person, by far
                assert np.linalg.norm(got - ref, axis=1).max() < max_identity_shift
            else:
                assert np.abs(got - ref).max() < atol


@pytest.mark.gpu
@needs_tensorrt
def test_tensorrt_engines_are_cached_and_rebuilt_when_the_key_changes(tmp_path, real_inputs):
    path = networks()["deid_attr"]
    config = EngineConfig(backend="tensorrt", precision="fp32", max_batch=4,
                          cache_dir=str(tmp_path))
    first = load_engine(path, config, shared=False)
    mtime = first.plan_path.stat().st_mtime_ns
    again = load_engine(path, config, shared=False)  # a new engine, from the cached plan
    assert again.plan_path == first.plan_path and again.plan_path.stat().st_mtime_ns == mtime
    fp16 = load_engine(path, dataclasses.replace(config, precision="fp16"))
    assert fp16.plan_path != first.plan_path
    # batches above the profile are split, not refused
    faces = np.repeat(real_inputs["deid_attr"]["faces"], 5, axis=0)  # 10 > max_batch 4
    big = again.run({"faces": faces})
    assert big[0].shape[0] == 10
