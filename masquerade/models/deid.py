"""Keyed generative face de-identification: FaceShifter's AAD generator, narrowed for CPU.

After Cao et al. (ICCV 2021), a face is split into an identity vector z (dlib's 128-d
descriptor, from the frozen `DlibFaceResNet`) and multi-level attribute maps (pose,
expression, lighting, background) from a U-Net encoder E_attr. The generator G rebuilds a
face from any identity vector and those maps, so a keyed rotation z -> M(z, p, d) of the
identity alone yields a different person with the same attributes, and M^-1 recovers z.

Architecture (Li et al., "FaceShifter", 2019), with channel widths cut for CPU training:

* E_attr: strided 4x4 convs down to size/32, then transposed convs back up with skip
  concatenation; every decoder level is one attribute map, the last is upsampled to the
  full crop (FaceShifter's multi-level attributes encoder).
* G: the identity vector is lifted to a size/32 map by a transposed conv, then one AAD
  residual block per level. An AAD layer normalises the activation h (instance norm),
  modulates it twice - by the attribute map (3x3 conv gamma/beta) and by the identity
  (fc gamma/beta) - and mixes the two with a learned sigmoid attention mask from h.
* D: a multi-scale PatchGAN (the crop and its 2x downsample), trained with hinge loss.

Crops use `alignment.CropSpec(size, padding)` framing, so the recogniser's 150x150 chip is a
fixed scale about the crop centre (`crop_to_chip`), differentiable and exportable.
Images enter and leave the networks as float RGB in [-1, 1] (`to_unit`, `to_pixels`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masquerade.alignment import DLIB_CHIP, CropSpec

log = logging.getLogger(__name__)

ID_DIM = 128
LEVELS = 5  # strided downsamplings: the coarsest attribute map is size / 2**LEVELS


@dataclass(frozen=True)
class DeidConfig:
    """Sizes of the de-identification networks; stored in checkpoints and ONNX metadata."""

    size: int = 128
    padding: float = 0.25
    enc_channels: tuple[int, ...] = (16, 32, 64, 128, 128)  # encoder, fine to coarse
    dec_channels: tuple[int, ...] = (64, 32, 16, 8)  # decoder up-convs, coarse to fine
    gen_channels: tuple[int, ...] = (128, 128, 64, 32, 16, 16)  # G, one per level
    disc_channels: tuple[int, ...] = (32, 64, 128)
    disc_scales: int = 2
    id_dim: int = ID_DIM

    def __post_init__(self) -> None:
        if self.size % 2**LEVELS:
            raise ValueError(f"crop size must be a multiple of {2**LEVELS}")
        if len(self.enc_channels) != LEVELS or len(self.dec_channels) != LEVELS - 1:
            raise ValueError(f"need {LEVELS} encoder and {LEVELS - 1} decoder widths")
        if len(self.gen_channels) != LEVELS + 1:
            raise ValueError(f"need {LEVELS + 1} generator widths")

    @property
    def crop(self) -> CropSpec:
        return CropSpec(self.size, self.padding)

    @property
    def attr_channels(self) -> tuple[int, ...]:
        """Channels of the attribute maps, coarse (size/32) to full resolution."""
        enc = self.enc_channels
        mids = [d + e for d, e in zip(self.dec_channels, enc[-2::-1], strict=True)]
        return (enc[-1], *mids, mids[-1])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeidConfig:
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                 if k in cls.__dataclass_fields__}
        return cls(**known)


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0, 255] -> [-1, 1]."""
    return pixels / 127.5 - 1.0


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> float RGB in [0, 255]."""
    return (x + 1.0) * 127.5


def crop_to_chip_scale(crop: CropSpec, chip: CropSpec = DLIB_CHIP) -> float:
    """Scale s with chip_ndc = crop_ndc / s in normalised coordinates (align_corners=False).

    Both crops frame the same unit face square, centred, so the map between them is a pure
    scale about the centre: s = (1 + 2 pad_chip) / (1 + 2 pad_crop); sizes drop out.
    """
    return (1 + 2 * chip.padding) / (1 + 2 * crop.padding)


def crop_to_chip(images: torch.Tensor, crop: CropSpec, chip: CropSpec = DLIB_CHIP) -> torch.Tensor:
    """(N, C, S, S) crops framed by `crop` -> (N, C, chip.size, chip.size), bilinear.

    Equal paddings reduce to a resize (F.interpolate); otherwise affine_grid samples the
    scaled square, zero outside the crop.
    """
    s = crop_to_chip_scale(crop, chip)
    size = (chip.size, chip.size)
    if abs(s - 1.0) < 1e-12:
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    theta = images.new_tensor([[s, 0.0, 0.0], [0.0, s, 0.0]]).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, [len(images), images.shape[1], *size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_to_chip_matrix(crop: CropSpec, chip: CropSpec = DLIB_CHIP) -> np.ndarray:
    """The same map as a 2x3 crop-pixel -> chip-pixel matrix (OpenCV convention)."""
    k = chip.size * (1 + 2 * crop.padding) / (crop.size * (1 + 2 * chip.padding))
    t = (chip.size - 1) / 2 - k * (crop.size - 1) / 2
    return np.array([[k, 0.0, t], [0.0, k, t]])


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1)
    )


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.1),
    )


class AttributeEncoder(nn.Module):
    """E_attr: (N, 3, S, S) in [-1, 1] -> attribute maps at S/32, S/16, ..., S/2, S."""

    def __init__(self, cfg: DeidConfig) -> None:
        super().__init__()
        enc, dec = cfg.enc_channels, cfg.dec_channels
        self.downs = nn.ModuleList(_down(a, b) for a, b in zip((3, *enc[:-1]), enc, strict=True))
        ins = [enc[-1], *(d + e for d, e in zip(dec[:-1], enc[-2:0:-1], strict=True))]
        self.ups = nn.ModuleList(_up(a, b) for a, b in zip(ins, dec, strict=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for down in self.downs:
            x = down(x)
            feats.append(x)
        maps = [x]
        for up, skip in zip(self.ups, feats[-2::-1], strict=True):
            x = torch.cat([up(x), skip], dim=1)
            maps.append(x)
        maps.append(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return maps


class AAD(nn.Module):
    """Adaptive attentional denormalisation: mask-weighted mix of attribute- and
    identity-modulated normalised activations."""

    def __init__(self, c_h: int, c_attr: int, id_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(c_h, affine=False)
        self.attr_gamma = nn.Conv2d(c_attr, c_h, 3, 1, 1)
        self.attr_beta = nn.Conv2d(c_attr, c_h, 3, 1, 1)
        self.id_gamma = nn.Linear(id_dim, c_h)
        self.id_beta = nn.Linear(id_dim, c_h)
        self.mask = nn.Conv2d(c_h, 1, 3, 1, 1)

    def forward(self, h: torch.Tensor, attr: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.norm(h)
        a = self.attr_gamma(attr) * h + self.attr_beta(attr)
        i = self.id_gamma(z)[..., None, None] * h + self.id_beta(z)[..., None, None]
        m = torch.sigmoid(self.mask(h))
        return (1 - m) * a + m * i


class AADResBlock(nn.Module):
    """Two AAD-ReLU-conv units with a residual path (AAD-ReLU-conv when widths differ)."""

    def __init__(self, c_in: int, c_out: int, c_attr: int, id_dim: int) -> None:
        super().__init__()
        self.aad1 = AAD(c_in, c_attr, id_dim)
        self.conv1 = nn.Conv2d(c_in, c_in, 3, 1, 1)
        self.aad2 = AAD(c_in, c_attr, id_dim)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.skip: nn.ModuleList | None = None
        if c_in != c_out:
            self.skip = nn.ModuleList([AAD(c_in, c_attr, id_dim), nn.Conv2d(c_in, c_out, 3, 1, 1)])

    def forward(self, h: torch.Tensor, attr: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(self.aad1(h, attr, z)))
        x = self.conv2(F.relu(self.aad2(x, attr, z)))
        if self.skip is not None:
            h = self.skip[1](F.relu(self.skip[0](h, attr, z)))
        return x + h


class AADGenerator(nn.Module):
    """G: identity (N, 128) and attribute maps -> (N, 3, S, S) face in [-1, 1].

    The identity is L2-normalised first: dlib descriptors carry identity in direction, and
    the keyed rotation keeps the norm anyway.
    """

    def __init__(self, cfg: DeidConfig) -> None:
        super().__init__()
        ch, attr = cfg.gen_channels, cfg.attr_channels
        self.lift = nn.ConvTranspose2d(cfg.id_dim, ch[0], cfg.size // 2**LEVELS)
        outs = (*ch[1:], ch[-1])
        self.blocks = nn.ModuleList(
            AADResBlock(a, b, c, cfg.id_dim) for a, b, c in zip(ch, outs, attr, strict=True)
        )
        self.to_rgb = nn.Conv2d(ch[-1], 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, attrs: list[torch.Tensor]) -> torch.Tensor:
        z = F.normalize(z, dim=1)
        h = self.lift(z[..., None, None])
        for i, (block, attr) in enumerate(zip(self.blocks, attrs, strict=True)):
            h = block(h, attr, z)
            if i < len(self.blocks) - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
        return torch.tanh(self.to_rgb(h))


class PatchDiscriminator(nn.Module):
    """PatchGAN at one scale: a map of real/fake scores over overlapping patches."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(channels):
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1))
            if i:
                layers.append(nn.InstanceNorm2d(c, affine=True))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c
        layers.append(nn.Conv2d(c_in, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    """PatchGANs on the image and its successive 2x average-pooled copies."""

    def __init__(self, cfg: DeidConfig) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            PatchDiscriminator(cfg.disc_channels) for _ in range(cfg.disc_scales)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
            out.append(d(x))
        return out


def hinge_d_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Discriminator hinge loss, averaged over scales."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)]
    return torch.stack(terms).mean()


def hinge_g_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Generator hinge loss, averaged over scales."""
    return torch.stack([-f.mean() for f in fake]).mean()


def attribute_loss(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """FaceShifter's L_attr: half the sum over levels of the mean squared map difference."""
    return 0.5 * torch.stack([F.mse_loss(x, y) for x, y in zip(a, b, strict=True)]).sum()


def identity_loss(z_out: torch.Tensor, z_target: torch.Tensor) -> torch.Tensor:
    """L_id = 1 - cos(z_out, z_target), averaged over the batch."""
    return (1 - F.cosine_similarity(z_out, z_target, dim=1)).mean()


class DeidNet(nn.Module):
    """E_attr and G together: `forward(faces, z)` re-renders faces with identities z."""

    def __init__(self, cfg: DeidConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or DeidConfig()
        self.encoder = AttributeEncoder(self.cfg)
        self.generator = AADGenerator(self.cfg)

    def forward(self, faces: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z, self.encoder(faces))

    @classmethod
    def load(cls, path: str | Path, map_location: str = "cpu") -> DeidNet:
        """From a training checkpoint or a weights file: {"config": ..., "model": ...}."""
        state = torch.load(path, map_location=map_location, weights_only=False)
        net = cls(DeidConfig.from_dict(state["config"]))
        weights = {k: v.float() for k, v in state["model"].items()}
        net.load_state_dict(weights)
        return net.eval()

    def save_weights(self, path: str | Path, half: bool = True, **extra: Any) -> Path:
        """Inference weights only (fp16 by default), with the config to rebuild the net."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        weights = {k: (v.half() if half and v.is_floating_point() else v).clone()
                   for k, v in self.state_dict().items()}
        torch.save({"config": self.cfg.to_dict(), "model": weights, **extra}, path)
        return path


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _GeneratorGraph(nn.Module):
    """G with the attribute maps as separate named inputs (ONNX takes no lists)."""

    def __init__(self, generator: AADGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, *attrs: torch.Tensor) -> torch.Tensor:
        return self.generator(z, list(attrs))


class _EncoderGraph(nn.Module):
    def __init__(self, encoder: AttributeEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.encoder(x))


ONNX_OPSET = 17


def attr_names(cfg: DeidConfig) -> list[str]:
    return [f"attr{i}" for i in range(len(cfg.attr_channels))]


def export_onnx(net: DeidNet, out_dir: str | Path, opset: int = ONNX_OPSET,
                half: bool = False) -> tuple[Path, Path]:
    """Write E_attr and G as ONNX graphs with a dynamic batch axis.

    deid_attr.onnx: "faces" (batch, 3, S, S) float32 RGB in [-1, 1] -> attr0..attrK.
    deid_generator.onnx: "identity" (batch, 128), attr0..attrK -> "faces" in [-1, 1].
    `half` stores weights as fp16 (inputs and outputs stay float32) to halve the files.
    """
    import warnings

    import onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = net.cfg
    net = net.eval()
    names = attr_names(cfg)
    faces = torch.zeros(2, 3, cfg.size, cfg.size)
    with torch.no_grad():
        attrs = net.encoder(faces)
    batch = {0: "batch"}
    enc_path, gen_path = out_dir / "deid_attr.onnx", out_dir / "deid_generator.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            _EncoderGraph(net.encoder).eval(), (faces,), str(enc_path), input_names=["faces"],
            output_names=names, opset_version=opset, dynamo=False,
            dynamic_axes={"faces": batch, **dict.fromkeys(names, batch)},
        )
        torch.onnx.export(
            _GeneratorGraph(net.generator).eval(), (torch.randn(2, cfg.id_dim), *attrs),
            str(gen_path),
            input_names=["identity", *names], output_names=["faces"], opset_version=opset,
            dynamo=False, dynamic_axes={"identity": batch, "faces": batch,
                                        **dict.fromkeys(names, batch)},
        )
    meta = {"config_json": json.dumps(cfg.to_dict()), "opset": str(opset),
            "range": "faces in [-1, 1], RGB, CropSpec(size, padding) framing"}
    for path in (enc_path, gen_path):
        proto = onnx.load(str(path))
        if half:
            proto = _weights_to_fp16(proto)
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))
    return enc_path, gen_path


def _weights_to_fp16(proto: Any) -> Any:
    """Store float32 initializers as fp16 followed by a Cast back to float32.

    Halves the file while every op still computes in float32 (ONNX Runtime's CPU kernels
    for fp16 convs are slow or missing), so outputs differ from float32 only by rounding
    of the weights.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        if array.size < 64:
            continue
        name = init.name
        half_name = name + "__fp16"
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(array.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [name], to=TensorProto.FLOAT))
    for node in reversed(casts):
        graph.node.insert(0, node)
    return proto
