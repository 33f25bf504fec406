"""Reader for dlib's `serialize` format, enough to load its DNN model files without dlib.

dlib writes a network top-down: each wrapper (add_layer, add_tag_layer, add_skip_layer)
writes its version and then its subnetwork, so the file holds the loss, a run of version
numbers, the input layer, and then each computational layer's details bottom-up. Tags and
skips write nothing after their subnetwork, so the wiring between residual branches lives
in the C++ type, not in the file: `dlib_resnet` supplies it and checks it against the layer
sequence read here.

Encodings (dlib/serialize.h, dlib/dnn/tensor.h): integers are a control byte (low nibble:
byte count, 0x80: negative) followed by little-endian magnitude bytes; scalar floats are an
int64 mantissa and an int16 exponent (value = m * 2**e, exponents 32000..32002 mean +inf,
-inf, NaN); strings are a length then raw bytes; bools are one byte; tensors are version,
(n, k, nr, nc) and then raw little-endian float32s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_FLOAT_SPECIAL = {32000: np.inf, 32001: -np.inf, 32002: np.nan}


class DlibFormatError(ValueError):
    """The bytes are not what dlib's serializer would have written for this network."""


class DlibReader:
    """Cursor over a dlib-serialized byte string."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte {control:#x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        if self.data[self.pos] & 0x70:
            raise DlibFormatError(f"ASCII-encoded float at {self.pos} (pre-2011 dlib) unsupported")
        mantissa, exponent = self.int(), self.int()
        if exponent in _FLOAT_SPECIAL:
            return float(_FLOAT_SPECIAL[exponent])
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        return self._take(self.int()).decode("latin-1")

    def bool(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1", b"\x00", b"\x01"):
            raise DlibFormatError(f"bad bool {byte!r} at {self.pos - 1}")
        return byte in (b"1", b"\x01")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} unsupported (expected 2)")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape).copy()

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"alias_tensor version {version} unsupported (expected 1)")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]

    def peek_string(self) -> str | None:
        """The string at the cursor if one plausibly starts there, without moving."""
        pos = self.pos
        try:
            return self.string()
        except (DlibFormatError, UnicodeDecodeError):
            return None
        finally:
            self.pos = pos


@dataclass
class DlibLayer:
    """One layer's details: `kind` is dlib's serialized name ("con_4", "affine_", ...)."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def op(self) -> str:
        """The layer type without dlib's version suffix: con, affine, relu, fc, ..."""
        return self.kind.rstrip("_0123456789")


def _read_con(r: DlibReader, kind: str) -> dict[str, Any]:
    if kind != "con_4":
        raise DlibFormatError(f"conv layer version {kind!r} unsupported")
    params = r.tensor().reshape(-1)
    p: dict[str, Any] = {
        "num_filters": r.int(), "nr": r.int(), "nc": r.int(),
        "stride_y": r.int(), "stride_x": r.int(), "padding_y": r.int(), "padding_x": r.int(),
    }
    filters, biases = r.alias_tensor(), r.alias_tensor()
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        p[name] = r.float()
    n_filter = int(np.prod(filters))
    p["weight"] = params[:n_filter].reshape(filters)
    p["bias"] = params[n_filter : n_filter + int(np.prod(biases))]
    return p


def _read_affine(r: DlibReader, kind: str) -> dict[str, Any]:
    params = r.tensor().reshape(-1)
    gamma, beta = r.alias_tensor(), r.alias_tensor()
    mode = r.int()  # 0: per channel (CONV_MODE), 1: per element (FC_MODE)
    n = int(np.prod(gamma))
    return {"gamma": params[:n].reshape(gamma), "beta": params[n : n + int(np.prod(beta))]
            .reshape(beta), "mode": mode}


def _read_pool(r: DlibReader, kind: str) -> dict[str, Any]:
    if not kind.endswith("_2"):
        raise DlibFormatError(f"pooling layer version {kind!r} unsupported")
    keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    return {k: r.int() for k in keys}


def _read_fc(r: DlibReader, kind: str) -> dict[str, Any]:
    if kind != "fc_2":
        raise DlibFormatError(f"fc layer version {kind!r} unsupported")
    num_outputs, num_inputs = r.int(), r.int()
    params = r.tensor().reshape(-1)
    weights, biases = r.alias_tensor(), r.alias_tensor()
    bias_mode = r.int()  # 0: FC_HAS_BIAS, 1: FC_NO_BIAS
    for _ in range(4):
        r.float()
    n_w = int(np.prod(weights))
    p: dict[str, Any] = {
        "num_outputs": num_outputs, "num_inputs": num_inputs, "has_bias": bias_mode == 0,
        "weight": params[:n_w].reshape(num_inputs, num_outputs),
    }
    if bias_mode == 0:
        p["bias"] = params[n_w : n_w + int(np.prod(biases))]
    return p


def _read_nothing(r: DlibReader, kind: str) -> dict[str, Any]:
    return {}


_LAYER_READERS = {
    "con": _read_con, "affine": _read_affine, "max_pool": _read_pool, "avg_pool": _read_pool,
    "fc": _read_fc, "relu": _read_nothing, "add_prev": _read_nothing,
}


def read_layer(r: DlibReader) -> DlibLayer:
    kind = r.string()
    layer = DlibLayer(kind)
    reader = _LAYER_READERS.get(layer.op)
    if reader is None:
        raise DlibFormatError(f"layer type {kind!r} unsupported")
    layer.params = reader(r, kind)
    return layer


def read_input_layer(r: DlibReader) -> DlibLayer:
    kind = r.string()
    if kind != "input_rgb_image_sized":
        raise DlibFormatError(f"input layer {kind!r} unsupported")
    avg = (r.float(), r.float(), r.float())
    return DlibLayer(kind, {"avg_rgb": avg, "nr": r.int(), "nc": r.int()})


def read_loss_layer(r: DlibReader) -> DlibLayer:
    kind = r.string()
    if kind != "loss_metric_2":
        raise DlibFormatError(f"loss layer {kind!r} unsupported")
    return DlibLayer(kind, {"margin": r.float(), "dist_thresh": r.float()})


@dataclass
class DlibNetwork:
    """A dlib network as stored: loss, input, computational layers from input to output.

    `wrappers` lists the file's nesting from the top: "layer" for an add_layer, "tag" for an
    add_tag_layer or add_skip_layer (dlib does not record which), innermost last.
    """

    loss: DlibLayer
    input: DlibLayer
    layers: list[DlibLayer]
    wrappers: list[str]


def read_network(path: str | Path) -> DlibNetwork:
    """Parse a loss_metric network file written by dlib >= 19.8 (add_layer versions 2/3)."""
    r = DlibReader(Path(path).read_bytes())
    if r.int() != 1:
        raise DlibFormatError("add_loss_layer version must be 1")
    loss = read_loss_layer(r)
    versions: list[int] = []
    while not (r.peek_string() or "").startswith("input"):
        versions.append(r.int())
        if len(versions) > 100_000:
            raise DlibFormatError("no input layer found")
    if not versions or versions[-1] not in (2, 3):
        raise DlibFormatError("innermost add_layer must have version 2 or 3")
    inner_version = versions.pop()
    if any(v not in (1, 2) for v in versions):
        raise DlibFormatError(f"wrapper versions {sorted(set(versions))} unsupported")
    input_layer = read_input_layer(r)

    layers = [read_layer(r)]
    for _ in range(3):
        r.bool()
    for _ in range(3):  # x_grad, cached_output, grad_final
        r.tensor()
    if inner_version == 3:
        r.int()  # sample expansion factor
    # Above the input, version 2 marks add_layer, version 1 add_tag_layer/add_skip_layer.
    for _ in range(sum(v == 2 for v in versions)):
        layers.append(read_layer(r))
        for _ in range(3):
            r.bool()
        for _ in range(3):  # x_grad, cached_output, params_grad
            r.tensor()
    if r.pos != len(r.data):
        raise DlibFormatError(f"{len(r.data) - r.pos} trailing bytes after the network")
    wrappers = ["layer" if v == 2 else "tag" for v in versions] + ["layer"]
    log.debug("read %d layers from %s", len(layers), path)
    return DlibNetwork(loss, input_layer, layers, wrappers)
