from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from masquerade.alignment import DLIB5_UNIT, DLIB_CHIP, CropSpec, invert, umeyama, warp_faces
from masquerade.models.deid import (
    DeidConfig,
    DeidNet,
    MultiScaleDiscriminator,
    attribute_loss,
    crop_to_chip,
    crop_to_chip_matrix,
    export_onnx,
    hinge_d_loss,
    hinge_g_loss,
    identity_loss,
)

SMALL = DeidConfig(size=64, enc_channels=(8, 8, 16, 16, 16), dec_channels=(8, 8, 8, 4),
                   gen_channels=(16, 16, 8, 8, 8, 8), disc_channels=(8, 16))


def smooth_image(size: int, seed: int = 0) -> np.ndarray:
    """Low-frequency test pattern, so bilinear resampling error stays far below 1 level."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def test_shapes_follow_the_config():
    cfg = DeidConfig(size=64)
    net = DeidNet(cfg)
    x = torch.zeros(2, 3, 64, 64)
    attrs = net.encoder(x)
    assert [a.shape[1] for a in attrs] == list(cfg.attr_channels)
    assert [a.shape[-1] for a in attrs] == [2, 4, 8, 16, 32, 64]
    y = net(x, torch.randn(2, 128))
    assert y.shape == x.shape
    assert float(y.detach().abs().max()) <= 1.0
    scores = MultiScaleDiscriminator(cfg)(y)
    assert len(scores) == cfg.disc_scales and scores[1].shape[-1] < scores[0].shape[-1]


def test_config_rejects_sizes_the_encoder_cannot_halve():
    with pytest.raises(ValueError):
        DeidConfig(size=100)


@pytest.mark.parametrize("crop", [CropSpec(96, 0.25), CropSpec(128, 0.25), CropSpec(96, 0.4)])
def test_crop_to_chip_matches_alignment_transforms(crop):
    # the crop -> chip map implied by alignment's framing of the same unit-frame points
    m = umeyama(crop.to_crop(DLIB5_UNIT), DLIB_CHIP.to_crop(DLIB5_UNIT))
    np.testing.assert_allclose(crop_to_chip_matrix(crop), m, atol=1e-9)
    image = smooth_image(crop.size)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    out = crop_to_chip(x, crop)[0].permute(1, 2, 0).numpy()
    # interior: away from the crop border, where border rules differ
    lo, hi = np.clip(np.rint(m[0] @ [[2, crop.size - 3], [0, 0], [1, 1]]), 0, 150).astype(int)
    # exact bilinear sampling through the inverse of alignment's transform
    inv = invert(m)
    yy, xx = np.mgrid[lo:hi, lo:hi].astype(float)
    src_x, src_y = inv[0, 0] * xx + inv[0, 2], inv[1, 1] * yy + inv[1, 2]
    ref = np.stack([map_coordinates(image[..., c].astype(float), [src_y, src_x], order=1)
                    for c in range(3)], -1)
    np.testing.assert_allclose(out[lo:hi, lo:hi], ref, atol=1e-6)
    # and alignment's own OpenCV warp (5-bit fixed-point weights: within a level)
    warped = warp_faces(image, m, 150)[0]
    np.testing.assert_allclose(out[lo:hi, lo:hi], warped[lo:hi, lo:hi], atol=1.0)


def test_losses_are_zero_at_their_optimum():
    z = torch.randn(3, 128)
    assert float(identity_loss(z, 2 * z)) == pytest.approx(0.0, abs=1e-6)
    maps = [torch.randn(2, 4, 8, 8), torch.randn(2, 2, 16, 16)]
    assert float(attribute_loss(maps, maps)) == 0.0
    big = [torch.full((1, 1, 4, 4), 2.0)]
    assert float(hinge_d_loss(big, [-t for t in big])) == 0.0
    assert float(hinge_g_loss(big)) == -2.0


def test_a_few_training_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    net = DeidNet(SMALL)
    x = torch.from_numpy(np.stack([smooth_image(64, s) for s in (1, 2)])).permute(0, 3, 1, 2)
    x = x / 127.5 - 1
    z = torch.randn(2, 128)
    opt = torch.optim.Adam(net.parameters(), 3e-3)

    def loss() -> torch.Tensor:
        attrs = net.encoder(x)
        y = net.generator(z, attrs)
        return (y - x).abs().mean() + attribute_loss(net.encoder(y), [a.detach() for a in attrs])

    losses = []
    for _ in range(3):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert losses[-1] < losses[0]


def test_generator_obeys_the_identity_input():
    net = DeidNet(SMALL).eval()
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        a, b = net(x, torch.randn(1, 128)), net(x, torch.randn(1, 128))
    assert float((a - b).abs().max()) > 1e-4


def test_weights_round_trip(tmp_path):
    net = DeidNet(SMALL).eval()
    path = net.save_weights(tmp_path / "w.pt")
    back = DeidNet.load(path)
    x, z = torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, 128)
    with torch.no_grad():
        np.testing.assert_allclose(back(x, z).numpy(), net(x, z).numpy(), atol=2e-2)


@pytest.mark.parametrize("half", [False, True])
def test_onnx_export_matches_pytorch(tmp_path, half):
    import onnxruntime as ort

    torch.manual_seed(1)
    net = DeidNet(SMALL).eval()
    enc_path, gen_path = export_onnx(net, tmp_path, half=half)
    enc = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    gen = ort.InferenceSession(str(gen_path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 64, 64) * 2 - 1  # batch 3: not the export batch
    z = torch.randn(3, 128)
    attrs = enc.run(None, {"faces": x.numpy()})
    feed = {"identity": z.numpy(), **{f"attr{i}": a for i, a in enumerate(attrs)}}
    out = gen.run(None, feed)[0]
    with torch.no_grad():
        ref = net(x, z).numpy()
    assert np.abs(out - ref).max() < (2e-2 if half else 1e-4)


WEIGHTS = Path(__file__).resolve().parents[2] / "masquerade" / "models" / "weights"


@pytest.mark.skipif(not (WEIGHTS / "deid_generator.onnx").is_file(), reason="no committed weights")
def test_committed_pt_and_onnx_weights_agree():
    from masquerade.anonymizers.deid import DeidGenerator

    (pt,) = WEIGHTS.glob("deid_*.pt")
    net = DeidNet.load(pt)
    gen = DeidGenerator(WEIGHTS)
    assert gen.crop == net.cfg.crop
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, net.cfg.size, net.cfg.size, 3), dtype=np.uint8)
    z = rng.normal(size=(2, 128)).astype(np.float32)
    out = gen(crops, z).astype(int)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        ref = net(x, torch.from_numpy(z)).permute(0, 2, 3, 1).numpy()
    ref = np.clip(np.rint((ref + 1) * 127.5), 0, 255)
    assert np.abs(out - ref).max() <= 1
