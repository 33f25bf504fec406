"""Typed run configuration, loaded from YAML and `--set key=value` overrides.

Every key is a dataclass field; `load_config` rejects unknown keys and bad values with a
`ConfigError` naming the dotted key, so a typo never silently falls back to a default.
Field metadata carries the allowed range (`lo`, `hi`) and a help line for `--help`.

YAML anchors and aliases are refused (`load_yaml`): nested aliases let a few hundred
bytes expand to gigabytes, and no setting needs them. A value echoed in an error is cut
to `MAX_SHOWN` characters, so no input can make an error line huge.
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from masquerade.errors import ConfigError

MAX_SHOWN = 200
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple = 3, 8, 8, 8
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = MAX_SHOWN


def show(value: Any) -> str:
    """`repr(value)` for an error message, at most MAX_SHOWN characters (built lazily,
    so a huge value is never rendered whole)."""
    text = _REPR.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _cut(text: str) -> str:
    """Text (a key name, an override) for an error message, at most MAX_SHOWN chars."""
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors (&a) and aliases (*a)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            raise ConfigError(f"YAML anchors and aliases are not allowed in configs (line "
                              f"{mark.line + 1}, column {mark.column + 1})")
        return super().compose_node(parent, index)


def load_yaml(path: Path) -> Any:
    """A config file's YAML: plain data, no anchors/aliases; errors name the file."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None


def _f(default: Any, help: str, lo: float | None = None, hi: float | None = None) -> Any:
    meta = {"help": help, "lo": lo, "hi": hi}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DetectorConfig:
    backend: Literal["mediapipe", "dlib_hog"] = _f("mediapipe", "face detector implementation")
    model: Literal["full_range", "short_range"] = _f(
        "full_range", "mediapipe BlazeFace model: full_range (to ~5 m) or short_range (to ~2 m)"
    )
    min_score: float = _f(0.5, "detections below this confidence are ignored", 0.0, 1.0)
    min_face_px: int = _f(
        20, "smallest face (pixels, at source resolution) that tiling must still find", 4, 4096
    )
    tiling: Literal["auto", "off"] = _f(
        "auto", "auto: add overlapping tiles so faces down to min_face_px are found"
    )
    tile_overlap: float = _f(0.25, "overlap between neighbouring tiles, as a fraction", 0.0, 0.75)
    nms_iou: float = _f(0.4, "IoU above which detections from different tiles merge", 0.05, 1.0)
    full_scan_every: int = _f(
        1, "search the whole frame every N detection frames; in between, only tiles where "
        "the picture changed since the last full scan or a track is (static cameras: "
        "several times faster); keep it <= tracker.backfill_frames so the backfill covers "
        "what a skipped tile found late", 1, 1000,
    )
    every_n_frames: int = _f(
        1, "run the detector every N frames and track in between; faster; a face that "
        "appears between detections is covered by the backfill (tracker.backfill_frames), "
        "without it bare for up to N-1 frames", 1, 100
    )


@dataclass
class TrackerConfig:
    iou_threshold: float = _f(0.2, "minimum IoU to match a detection to a track", 0.0, 1.0)
    high_score: float = _f(
        0.6, "ByteTrack first-stage score; lower detections match only existing tracks", 0.0, 1.0
    )
    max_coast_frames: int = _f(
        15, "frames a track keeps being covered at its predicted box after its last detection",
        0, 10000,
    )
    coast_growth: float = _f(
        0.04, "relative box growth per coasting frame, to absorb prediction error", 0.0, 1.0
    )
    start_score: float = _f(
        0.0, "detections below this score extend existing tracks but start none: raise it "
        "(with detector.min_score) to trade recall for fewer covered non-faces; 0 = every "
        "detection starts a track (fail closed)", 0.0, 1.0,
    )
    backfill_frames: int = _f(
        30, "frames held back before output (latency = this / fps), so that a face found "
        "late is covered in the frames before it too: one entering from a frame edge is "
        "covered from its first visible pixels, one appearing between detections from its "
        "first frame; 0 = no latency, and such faces stay raw until detected", 0, 600,
    )


@dataclass
class AnonymizerConfig:
    mode: Literal["blur", "pixelate", "solid", "deid", "camouflage"] = _f(
        "blur", "how a face is anonymized; deid: a keyed fake identity per track; camouflage: "
        "looks different to people, still matched by `recognizer` (both need a key)"
    )
    mask: Literal["ellipse", "box"] = _f("ellipse", "shape of the anonymized region")
    padding: float = _f(0.25, "region growth on every side, as a fraction of face size", 0.0, 2.0)
    feather: float = _f(
        0.08, "soft edge width, as a fraction of region size (0 = hard edge)", 0.0, 0.5
    )
    blur_strength: float = _f(
        0.35, "gaussian sigma as a fraction of face size (0.35 defeats dlib's recognizer)",
        0.05, 2.0,
    )
    pixel_blocks: int = _f(6, "pixelate: blocks across the face's shorter side", 2, 64)
    color: list[int] = _f([0, 0, 0], "solid: fill colour as [R, G, B]")  # noqa: RUF009
    privacy_level: float = _f(
        1.0, "deid: how far identity moves from the original (0 = not at all, 1 = most)",
        0.0, 1.0,
    )
    identity_transform: Literal["orthogonal", "rotation"] = _f(
        "orthogonal", "deid: keyed identity transform; orthogonal: every face turns by the same "
        "angle in a key-chosen direction (restores 100% of 50 LFW test faces); rotation: Cao "
        "et al.'s turn towards a key-chosen identity (restores 26% at 120 degrees)"
    )
    max_identity_angle: float = _f(
        90.0, "deid: turn of the identity vector at privacy_level 1, in degrees (orthogonal: "
        "90 leaves 0% of LFW test faces matched; rotation needs 120 for 8%)", 10.0, 170.0,
    )
    min_generator_face_px: int = _f(
        40, "deid, camouflage: faces smaller than this (shorter box side) use fallback_mode",
        8, 1024
    )
    min_generator_score: float = _f(
        0.75, "deid, camouflage: detections less certain than this use fallback_mode (no fake face "
        "pasted onto a false positive)", 0.0, 1.0,
    )
    temporal_smoothing: float = _f(
        0.4, "deid: weight of a track's previous generated face in the current one "
        "(0 = none; more is steadier but trails fast motion)", 0.0, 0.9,
    )
    generator_every_n_frames: int = _f(
        1, "deid: render each track's fake face every N frames and re-align it in between "
        "(N-fold less generator work; expression lags up to N-1 frames)", 1, 30
    )
    identity_feedback: float = _f(
        0.5, "deid: per-track correction of the generator's identity input from the measured "
        "fakes (0 = off): fakes closer to the keyed identity, which restore inverts", 0.0, 1.0,
    )
    identity_feedback_renders: int = _f(
        0, "deid: measure only a track's first N rendered fakes for identity_feedback and keep "
        "the correction (0 = every render; each costs one E_id pass)", 0, 10000,
    )
    deid_composite: Literal["replace", "residual"] = _f(
        "replace", "deid: replace pastes the generator's 96 px face (soft); residual "
        "(experimental) adds its identity change to the face at native resolution: sharp "
        "skin, teeth and colour, but the face's own fine detail keeps it recognizable to "
        "other recognizers (MobileFaceNet still matched 0-96% per clip; docs/deid_quality.md)",
    )
    identity_gain: float = _f(
        1.5, "deid, residual: strength of the added identity change (1 = as rendered; more "
        "moves identity further, with harsher shading)", 0.5, 3.0,
    )
    occluders: Literal["hands", "none"] = _f(
        "hands", "deid, camouflage: keep hands (MediaPipe Hands) in front of the generated "
        "face instead of painting over them (none: skip the hand model, faster)",
    )
    identity_refresh_distance: float = _f(
        0.7, "deid: a track whose face moves this far (dlib distance) from the one its fake "
        "identity came from, twice in a row 10 renders apart, is someone else (a tracker ID "
        "switch) and gets a new fake identity (0 = never)", 0.0, 2.0,
    )
    camouflage_strength: float = _f(
        1.0, "camouflage: most appearance change allowed (face shape and skin tone), 0..1; "
        "each track gets the strongest level its recognizer still matches", 0.0, 1.0
    )
    camouflage_hair: bool = _f(True, "camouflage: give the hair a key-chosen natural colour")
    camouflage_margin: float = _f(
        0.5, "camouflage: a track's camouflaged face must stay within this fraction of the "
        "recognizer's threshold of the original (room for frame-to-frame variation)", 0.1, 1.0
    )
    fallback_mode: Literal["blur", "pixelate", "solid"] = _f(
        "pixelate", "deid: classic mode for faces too small for the generator"
    )
    seal_originals: bool = _f(
        False, "also keep every covered region's original pixels, encrypted per track under "
        "the master key, in OUTPUT.seals, for `restore --exact` (needs a key in every mode)"
    )


@dataclass
class EncoderConfig:
    codec: Literal["libx264", "libx265"] = _f("libx264", "video encoder")
    preset: str = _f("medium", "x264/x265 preset (ultrafast ... veryslow)")
    crf: int = _f(20, "constant rate factor: lower is better quality, bigger file", 0, 51)
    pix_fmt: Literal["yuv420p"] = _f("yuv420p", "pixel format (yuv420p plays in browsers)")


@dataclass
class PipelineConfig:
    on_error: Literal["cover_frame", "drop_frame"] = _f(
        "cover_frame", "when a stage fails on a frame: cover the whole frame or drop it"
    )
    progress: bool = _f(True, "show a progress bar on long jobs")


@dataclass
class RecognizerConfig:
    onnx: str = _f("", "camouflage: face-embedding ONNX model whose matches must survive "
                   "(\"\" = dlib's ResNet, the default)")
    input_size: int = _f(112, "onnx: input side in pixels (square, NCHW float32)", 32, 1024)
    framing: Literal["arcface", "dlib"] = _f(
        "arcface", "onnx: face alignment the model expects: insightface's 112 px template "
        "or dlib's face chip"
    )
    channels: Literal["rgb", "bgr"] = _f("rgb", "onnx: channel order of the input")
    mean: float = _f(127.5, "onnx: input = (pixel - mean) / std")
    std: float = _f(127.5, "onnx: input = (pixel - mean) / std", 1e-6, None)
    metric: Literal["cosine", "euclidean"] = _f(
        "cosine", "onnx: distance between embeddings (cosine = 1 - cos)"
    )
    threshold: float = _f(0.4, "onnx: distance below which two faces are the same person",
                          0.0, None)


@dataclass
class EngineConfig:
    backend: Literal["onnxruntime", "tensorrt"] = _f(
        "onnxruntime", "what runs the networks (identity encoder, attribute encoder, "
        "generator): ONNX Runtime (CPU, or CUDA when its GPU build is installed) or "
        "TensorRT on an NVIDIA GPU (needs tensorrt and pycuda)"
    )
    device: Literal["auto", "cpu", "cuda"] = _f(
        "auto", "onnxruntime: CUDA when present, or force one"
    )
    precision: Literal["fp32", "fp16"] = _f("fp16", "tensorrt: engine precision")
    threads: int = _f(0, "onnxruntime: intra-op threads per network (0 = ONNX Runtime's choice)",
                      0, 256)
    max_batch: int = _f(16, "tensorrt: largest batch of faces the engines are built for", 1, 1024)
    cache_dir: str = _f("", "tensorrt: where built engines are kept (default: "
                        "$MASQUERADE_CACHE/tensorrt or ~/.cache/masquerade/tensorrt)")


@dataclass
class Config:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    anonymizer: AnonymizerConfig = field(default_factory=AnonymizerConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)


X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
    "veryslow", "placebo",
)


def _check_value(key: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"config key '{key}': {show(value)} is not one of {list(choices)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {show(value)}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{key}': expected a number, got {show(value)}")
        if hint is int and not float(value).is_integer():
            raise ConfigError(f"config key '{key}': expected an integer, got {show(value)}")
        value = hint(value)
        lo, hi = meta.get("lo"), meta.get("hi")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"config key '{key}': {value} is outside [{lo}, {hi}]")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected text, got {show(value)}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {show(value)}")
        if dataclasses.is_dataclass(item):
            return [_build(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return [_check_value(f"{key}[{i}]", v, item, {}) for i, v in enumerate(value)]
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {show(value)}")
        return value
    if isinstance(hint, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(key, value, inner, meta)
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def build_dataclass(cls: type, data: Any, prefix: str = "") -> Any:
    """Any config dataclass from a mapping, validated like the run config."""
    return _build(cls, data, prefix)


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(
            f"config key '{_cut(prefix or '<root>')}': expected a mapping, got {show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = _cut(f"{prefix}.{key}" if prefix else str(key))
            raise ConfigError(
                f"unknown config key '{where}' (known: {', '.join(sorted(fields))})"
            )
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        where = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise ConfigError(f"config key '{where}' is required")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = _check_value(key, value, hint, fields[name].metadata)
    return cls(**kwargs)


def _validate(config: Config) -> Config:
    color = config.anonymizer.color
    if len(color) != 3 or any(not 0 <= c <= 255 for c in color):
        raise ConfigError(
            f"config key 'anonymizer.color': expected [R, G, B] in 0..255, got {show(color)}"
        )
    if config.encoder.preset not in X264_PRESETS:
        raise ConfigError(
            f"config key 'encoder.preset': {show(config.encoder.preset)} is not one of "
            f"{list(X264_PRESETS)}"
        )
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def merge_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge; `update` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`a.b=value` -> {'a': {'b': value}}, with value parsed as YAML (numbers, lists, bools)."""
    if "=" not in text:
        raise ConfigError(f"override {show(text)} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {show(text)} has no key")
    try:
        value = yaml.load(raw, Loader=_NoAliasLoader) if raw.strip() else ""
    except ConfigError as exc:
        raise ConfigError(f"override {show(key)}: {exc}") from None
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Defaults, then the YAML file, then each `key=value` override, all validated."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = load_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        data = loaded
    for text in overrides:
        data = merge_dicts(data, parse_override(text))
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> Config:
    """A validated run config from nested sections (missing keys keep their defaults)."""
    return _validate(_build(Config, data, ""))


def describe_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, help) for every leaf key, for `--help` and docs."""
    rows = []
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(describe_keys(hints[f.name], key))
        else:
            rows.append((key, getattr(default, f.name), f.metadata.get("help", "")))
    return rows
