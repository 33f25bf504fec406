"""Where each network's ONNX file comes from.

The de-identification networks ship with the package (trained by tools/train); the
identity encoder is exported once from dlib's own weights (needs torch) into the cache,
since dlib's model file, not an ONNX copy of it, is what its licence lets us depend on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from masquerade.engines.engine import cache_root
from masquerade.errors import MasqueradeError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def identity_encoder_path() -> Path:
    return cache_root() / "dlib_resnet.onnx"


def identity_encoder_onnx() -> Path:
    """dlib's ResNet as ONNX, exported on first use."""
    path = identity_encoder_path()
    if not path.is_file():
        try:
            from masquerade.models.dlib_resnet import export_onnx
        except ImportError:
            raise MasqueradeError(
                "the identity encoder must be exported once with torch: pip install "
                "'masquerade[torch]', or copy dlib_resnet.onnx into " + str(cache_root())
            ) from None
        log.info("exporting the identity encoder to %s", path)
        tmp = path.with_name(f".{path.name}.tmp")
        export_onnx(tmp)
        tmp.replace(path)
    return path


def networks(weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Path]:
    """Every network the pipeline may run, by name."""
    weights_dir = Path(weights_dir)
    return {
        "identity_encoder": identity_encoder_onnx(),
        "deid_attr": weights_dir / "deid_attr.onnx",
        "deid_generator": weights_dir / "deid_generator.onnx",
    }


def torch_reference(name: str, weights_dir: str | Path = WEIGHTS_DIR):
    """The PyTorch module an ONNX network was exported from (inputs in the ONNX order):
    the reference every engine is checked against. Needs torch."""
    if name == "identity_encoder":
        from masquerade.models.dlib_resnet import DlibFaceResNet

        return DlibFaceResNet.from_dlib().eval()
    from masquerade.models.deid import DeidNet, _EncoderGraph, _GeneratorGraph

    (pt,) = sorted(Path(weights_dir).glob("deid_*.pt"))
    net = DeidNet.load(pt)
    if name == "deid_attr":
        return _EncoderGraph(net.encoder).eval()
    if name == "deid_generator":
        return _GeneratorGraph(net.generator).eval()
    raise KeyError(name)
