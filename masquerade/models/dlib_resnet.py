"""dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1) in PyTorch.

Layer for layer the net dlib's dnn_face_recognition_ex.cpp declares:

    loss_metric<fc_no_bias<128, avg_pool_everything<
        ares_down<256, ares<256, ares<256, ares_down<256,
        ares<128, ares<128, ares_down<128,
        ares<64, ares<64, ares<64, ares_down<64,
        ares<32, ares<32, ares<32,
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>...>>>

with ares = relu(add_prev(block(x), x)) and ares_down = relu(add_prev(block_s2(x),
avg_pool_2x2_s2(x))). Two dlib semantics matter for parity: stride-2 layers use no padding
(dlib's default, read from the file and checked), and add_prev adds tensors of different
shapes by zero-extending both to the larger one from the top-left corner (channels 32 -> 64,
and 3x3 + 4x4 at level 1). dlib's pooled size, 1 + (n + 2 pad - window) // stride, is
PyTorch's floor mode; dlib averages over the window inside the image only, which is
count_include_pad=False (moot here, as every pooling layer has zero padding).
Weights come from the .dat file at run time; they are never stored in this package.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masquerade.models.dlib_format import DlibFormatError, DlibLayer, DlibNetwork, read_network

log = logging.getLogger(__name__)

CHIP_SIZE = 150
EMBEDDING_DIM = 128
# (channels, downsample) per residual block, input to output.
BLOCKS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),) + ((64, False),) * 3
    + ((128, True),) + ((128, False),) * 2
    + ((256, True),) + ((256, False),) * 2
    + ((256, True),)
)


def default_model_path() -> Path:
    """dlib's model as shipped by the face-recognition-models package."""
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


class Affine(nn.Module):
    """dlib's affine_ layer: batch norm frozen into a per-channel scale and shift."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: sum after zero-extending both tensors to the larger shape."""
    if a.shape[1:] == b.shape[1:]:
        return a + b
    target = [max(sa, sb) for sa, sb in zip(a.shape[1:], b.shape[1:], strict=True)]

    def grow(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, target[2] - w, 0, target[1] - h, 0, target[0] - c))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """ares / ares_down: two 3x3 convs with affine, identity or 2x2 average-pool shortcut."""

    def __init__(self, c_in: int, c_out: int, downsample: bool) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=0 if downsample else 1)
        self.affine1 = Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1)
        self.affine2 = Affine(c_out)
        self.shortcut = nn.AvgPool2d(2, 2, count_include_pad=False) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(add_prev(y, skip))


class DlibFaceResNet(nn.Module):
    """Maps (N, 3, 150, 150) float RGB pixels in [0, 255] to dlib's 128-d face descriptors.

    The input normalisation of dlib's input_rgb_image_sized, (x - mean_rgb) / 256, is part
    of the module so exported graphs take raw pixels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.affine = Affine(32)
        self.pool = nn.MaxPool2d(3, 2, padding=0)
        blocks, c_in = [], 32
        for c_out, down in BLOCKS:
            blocks.append(ResidualBlock(c_in, c_out, down))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, EMBEDDING_DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean_rgb) / 256.0
        x = self.pool(F.relu(self.affine(self.conv(x))))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_dlib(cls, path: str | Path | None = None) -> DlibFaceResNet:
        """Build the net and load weights from dlib's .dat file (default: the shipped one)."""
        network = read_network(path or default_model_path())
        model = cls()
        model.load_dlib(network)
        return model.eval()

    def load_dlib(self, network: DlibNetwork) -> None:
        """Copy weights from a parsed dlib file, checking every layer's type and geometry."""
        layers = iter(network.layers)

        def expect(op: str, **geometry: int) -> DlibLayer:
            layer = next(layers, None)
            if layer is None or layer.op != op:
                got = None if layer is None else layer.kind
                raise DlibFormatError(f"expected a {op} layer, file has {got}")
            for key, value in geometry.items():
                if layer.params[key] != value:
                    raise DlibFormatError(f"{layer.kind}: {key}={layer.params[key]}, want {value}")
            return layer

        def load_conv(conv: nn.Conv2d) -> None:
            layer = expect(
                "con", num_filters=conv.out_channels, nr=conv.kernel_size[0],
                stride_y=conv.stride[0], padding_y=conv.padding[0],  # type: ignore[index]
            )
            weight = layer.params["weight"]
            if weight.shape != tuple(conv.weight.shape):
                raise DlibFormatError(f"conv weight {weight.shape} != {tuple(conv.weight.shape)}")
            conv.weight.data = torch.from_numpy(weight)
            conv.bias.data = torch.from_numpy(layer.params["bias"])  # type: ignore[union-attr]

        def load_affine(affine: Affine) -> None:
            layer = expect("affine", mode=0)
            affine.gamma.data = torch.from_numpy(layer.params["gamma"]).view_as(affine.gamma)
            affine.beta.data = torch.from_numpy(layer.params["beta"]).view_as(affine.beta)

        mean = network.input.params["avg_rgb"]
        self.mean_rgb.copy_(torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        if (network.input.params["nr"], network.input.params["nc"]) != (CHIP_SIZE, CHIP_SIZE):
            raise DlibFormatError("input layer is not 150x150")
        load_conv(self.conv)
        load_affine(self.affine)
        expect("relu")
        expect("max_pool", nr=3, stride_y=2, padding_y=0)
        for block in self.blocks:
            load_conv(block.conv1)
            load_affine(block.affine1)
            expect("relu")
            load_conv(block.conv2)
            load_affine(block.affine2)
            if block.shortcut is not None:
                expect("avg_pool", nr=2, stride_y=2, padding_y=0)
            expect("add_prev")
            expect("relu")
        expect("avg_pool", nr=0)
        fc = expect("fc", num_outputs=EMBEDDING_DIM, has_bias=False)
        self.fc.weight.data = torch.from_numpy(np.ascontiguousarray(fc.params["weight"].T))
        if next(layers, None) is not None:
            raise DlibFormatError("file has more layers than dlib_face_recognition_resnet_v1")


def chips_to_tensor(chips: np.ndarray) -> torch.Tensor:
    """(N, 150, 150, 3) uint8 RGB chips -> (N, 3, 150, 150) float32 tensor."""
    chips = np.asarray(chips)
    if chips.ndim == 3:
        chips = chips[None]
    return torch.from_numpy(np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32))


class FaceEncoder:
    """dlib-compatible 128-d face descriptors from 150x150 RGB chips, via PyTorch.

    `threads` sets torch's process-wide intra-op thread count; on a busy machine 1 per
    worker is far faster than a contended pool (tools/bench/identity_encoder.py).
    """

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None) -> None:
        self.model = DlibFaceResNet.from_dlib(model_path)
        if threads:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def __call__(self, chips: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) float32 descriptors."""
        x = chips_to_tensor(chips)
        out = [self.model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, EMBEDDING_DIM), np.float32)


ONNX_OPSET = 17


def export_onnx(out_path: str | Path, model_path: str | Path | None = None,
                opset: int = ONNX_OPSET) -> Path:
    """Write the encoder as ONNX: input "chips" (batch, 3, 150, 150) float RGB in [0, 255],
    output "embeddings" (batch, 128); batch is dynamic, the opset is recorded in metadata.

    Uses the TorchScript exporter: the graph is static apart from the batch axis, so the
    shape checks in `add_prev` are safely frozen at trace time.
    """
    import warnings

    import onnx

    model = DlibFaceResNet.from_dlib(model_path)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.full((2, 3, CHIP_SIZE, CHIP_SIZE), 128.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, on purpose
        torch.onnx.export(
            model, (example,), str(out_path), input_names=["chips"],
            output_names=["embeddings"], opset_version=opset, dynamo=False,
            dynamic_axes={"chips": {0: "batch"}, "embeddings": {0: "batch"}},
        )
    proto = onnx.load(str(out_path))
    for key, value in {
        "source": "dlib_face_recognition_resnet_model_v1.dat",
        "opset": str(opset),
        "input": "chips: (batch, 3, 150, 150) float32 RGB 0..255, dlib face chip framing",
        "output": "embeddings: (batch, 128) float32 dlib face descriptors",
    }.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out_path))
    log.info("exported ONNX (opset %d) to %s", opset, out_path)
    return out_path
