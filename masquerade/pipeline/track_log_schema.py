"""The track log's schema, as code: every field typed, bounded and finite.

The log travels beside the video it describes, so it may be edited, truncated or forged
before `restore` reads it. Without a schema a bad value surfaces as a traceback deep
inside restore (a privacy level of "x", a track id numpy cannot hold) or, worse, as a
restore that silently brings nothing back (a box at 1e30 px). `validate` checks the whole
file up front and names the first bad field by its path, e.g.
`frames[512].xyxy[0][2]: 1e+30 is outside the frame (640x360, margin 320 px)`.

Layout, version 2 (version 1 has the same fields; it predates `identity_transform` and
`identity_refresh_distance`, which then default to the rotation and 0):

    {"version": 2,
     "meta": {"stream_id": str, "privacy_level": 0..1,
              "key_id": "9f86d081b2c3d4e5",  # optional: the key's public fingerprint, hex
              "anonymizer": {...AnonymizerConfig fields...}},
     "frames": {"<pts>": {"xyxy": [[x1, y1, x2, y2], ...],
                          "track_ids": [int, ...],
                          "keypoints": [[[x, y] * 6], ...] or null}}}
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from masquerade.config import AnonymizerConfig, build_dataclass
from masquerade.errors import ConfigError

KNOWN_VERSIONS = (1, 2)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
KEYPOINTS_PER_FACE = 6  # BlazeFace's mediapipe6 layout; detectors without keypoints write null
MAX_FACES_PER_FRAME = 4096
MAX_STREAM_ID_CHARS = 1024
MAX_FINGERPRINT_CHARS = 128
# A coasting track's box grows and may run past the picture's edge; anything further out
# than half the frame beyond it was not written by `run`.
FRAME_MARGIN = 0.5
# Without the video's size, coordinates are still bounded: no video is this large.
MAX_COORDINATE = 1e6
_PTS_KEY = re.compile(r"-?(0|[1-9][0-9]{0,18})")
_HEX = re.compile(r"[0-9a-fA-F]+")
_SHOWN_CHARS = 60  # of a quoted value
_MESSAGE_CHARS = 300  # of a problem reported by the config loader


class TrackLogSchemaError(ValueError):
    """One field of the log breaks the schema; `where` is its path in the file."""

    def __init__(self, where: str, problem: str):
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


def validate(data: Any, frame_size: tuple[int, int] | None = None) -> None:
    """Raise `TrackLogSchemaError` at the first field that breaks the schema.

    `frame_size` (width, height) of the video the log belongs to bounds every box and
    keypoint to the picture plus `FRAME_MARGIN`; without it only `MAX_COORDINATE` applies.
    """
    root = _object(data, "<root>", required=("version", "meta", "frames"))
    version = root["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version not in KNOWN_VERSIONS:
        raise TrackLogSchemaError(
            "version", f"{_show(version)} is not a known track log version "
            f"(known: {', '.join(map(str, KNOWN_VERSIONS))})")
    _meta(root["meta"])
    bounds = _Bounds(frame_size)
    frames = root["frames"]
    if not isinstance(frames, Mapping):
        raise TrackLogSchemaError("frames", f"expected an object keyed by pts, got {_kind(frames)}")
    for key, row in frames.items():
        if not isinstance(key, str) or not _PTS_KEY.fullmatch(key) or not (
                INT64_MIN <= int(key) <= INT64_MAX):
            raise TrackLogSchemaError("frames", f"key {_show(key)} is not a pts (a 64-bit integer)")
        _frame(row, f"frames[{key}]", bounds)


def _meta(value: Any) -> None:
    meta = _object(value, "meta", required=("stream_id", "privacy_level", "anonymizer"),
                   optional=("key_id",))
    _text(meta["stream_id"], "meta.stream_id", MAX_STREAM_ID_CHARS)
    _number(meta["privacy_level"], "meta.privacy_level", 0.0, 1.0)
    if "key_id" in meta:
        _fingerprint(meta["key_id"], "meta.key_id")
    _anonymizer(meta["anonymizer"], "meta.anonymizer")


def _anonymizer(value: Any, where: str) -> None:
    """The de-identifying run's anonymizer settings, checked like a config section.

    Keys and non-finite numbers are checked here (the config loader neither quotes
    arbitrary key names nor rejects NaN); types, choices and ranges by the config loader.
    """
    fields = tuple(f.name for f in dataclasses.fields(AnonymizerConfig))
    section = _object(value, where, required=(), optional=fields)
    for name, item in section.items():
        _finite_numbers(item, f"{where}.{name}")
    if "color" in section:
        color = _list(section["color"], f"{where}.color", 3, 3)
        for i, channel in enumerate(color):
            _integer(channel, f"{where}.color[{i}]", 0, 255)
    try:
        build_dataclass(AnonymizerConfig, dict(section), where)
    except ConfigError as exc:
        # "config key 'meta.anonymizer.mask': 'x' is not one of [...]" -> path: problem
        message = str(exc)
        match = re.fullmatch(r"config key '([^']*)':? (.*)", message, flags=re.S)
        if match is None:
            raise TrackLogSchemaError(where, _clip(message)) from None
        raise TrackLogSchemaError(match[1], _clip(match[2])) from None


def _frame(value: Any, where: str, bounds: _Bounds) -> None:
    row = _object(value, where, required=("xyxy", "track_ids", "keypoints"))
    boxes = _list(row["xyxy"], f"{where}.xyxy", 1, MAX_FACES_PER_FRAME)
    for i, box in enumerate(boxes):
        bounds.box(box, f"{where}.xyxy[{i}]")
    n = len(boxes)
    ids = _list(row["track_ids"], f"{where}.track_ids", 0, MAX_FACES_PER_FRAME)
    _same_length(ids, n, f"{where}.track_ids")
    seen: set[int] = set()
    for i, track_id in enumerate(ids):
        _integer(track_id, f"{where}.track_ids[{i}]", 0, INT64_MAX)
        if track_id in seen:
            raise TrackLogSchemaError(f"{where}.track_ids[{i}]",
                                      f"track {track_id} appears twice in one frame")
        seen.add(track_id)
    if row["keypoints"] is None:
        return
    faces = _list(row["keypoints"], f"{where}.keypoints", 0, MAX_FACES_PER_FRAME)
    _same_length(faces, n, f"{where}.keypoints")
    for i, points in enumerate(faces):
        points = _list(points, f"{where}.keypoints[{i}]", KEYPOINTS_PER_FACE,
                       KEYPOINTS_PER_FACE, what="keypoints")
        for j, point in enumerate(points):
            point = _list(point, f"{where}.keypoints[{i}][{j}]", 2, 2, what="coordinates")
            bounds.x(point[0], f"{where}.keypoints[{i}][{j}][0]")
            bounds.y(point[1], f"{where}.keypoints[{i}][{j}][1]")


class _Bounds:
    """Where a coordinate may lie: the frame plus a margin, or `MAX_COORDINATE`."""

    def __init__(self, frame_size: tuple[int, int] | None):
        self.size = frame_size

    def _axis(self, value: Any, where: str, axis: int) -> float:
        if self.size is None:
            return _number(value, where, -MAX_COORDINATE, MAX_COORDINATE)
        number = _number(value, where, -math.inf, math.inf)
        side = self.size[axis]
        margin = FRAME_MARGIN * side
        if not -margin <= number <= side + margin:
            width, height = self.size
            raise TrackLogSchemaError(where, f"{_show(value)} is outside the frame "
                                      f"({width}x{height}, margin {margin:g} px)")
        return number

    def x(self, value: Any, where: str) -> float:
        return self._axis(value, where, 0)

    def y(self, value: Any, where: str) -> float:
        return self._axis(value, where, 1)

    def box(self, value: Any, where: str) -> None:
        box = _list(value, where, 4, 4, what="numbers (x1, y1, x2, y2)")
        x1, y1 = self.x(box[0], f"{where}[0]"), self.y(box[1], f"{where}[1]")
        x2, y2 = self.x(box[2], f"{where}[2]"), self.y(box[3], f"{where}[3]")
        if x2 < x1 or y2 < y1:
            raise TrackLogSchemaError(where, f"{_show(box)} is not a box (x2 < x1 or y2 < y1)")
        if self.size is not None:
            width, height = self.size
            if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
                raise TrackLogSchemaError(
                    where, f"{_show(box)} lies wholly outside the {width}x{height} frame")


def _object(value: Any, where: str, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TrackLogSchemaError(where, f"expected an object, got {_kind(value)}")
    known = (*required, *optional)
    for key in value:
        if key not in known:
            path = f"{where}.{key}" if isinstance(key, str) and key.isidentifier() else (
                f"{where}[{_show(key)}]")
            raise TrackLogSchemaError(path.removeprefix("<root>."),
                                      f"unknown field (known: {', '.join(known)})")
    for key in required:
        if key not in value:
            raise TrackLogSchemaError(f"{where}.{key}".removeprefix("<root>."), "is missing")
    return value


def _list(value: Any, where: str, min_len: int, max_len: int, what: str = "entries"
          ) -> list[Any]:
    if not isinstance(value, list):
        raise TrackLogSchemaError(where, f"expected a list, got {_kind(value)}")
    if not min_len <= len(value) <= max_len:
        wanted = str(min_len) if min_len == max_len else f"{min_len} to {max_len}"
        raise TrackLogSchemaError(where, f"expected {wanted} {what}, got {len(value)}")
    return value


def _same_length(value: list[Any], n: int, where: str) -> None:
    if len(value) != n:
        raise TrackLogSchemaError(where, f"has {len(value)} entries for {n} faces in xyxy")


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TrackLogSchemaError(where, f"expected a number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise TrackLogSchemaError(where, f"{_show(value)} is not a finite number")
    if not lo <= value <= hi:
        raise TrackLogSchemaError(where, f"{_show(value)} is outside [{lo:g}, {hi:g}]")
    return float(value)


def _integer(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TrackLogSchemaError(where, f"expected an integer, got {_show(value)}")
    if not lo <= value <= hi:
        raise TrackLogSchemaError(where, f"{_show(value)} is outside [{lo}, {hi}]")
    return value


def _text(value: Any, where: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise TrackLogSchemaError(where, f"expected text, got {_show(value)}")
    if len(value) > max_chars:
        raise TrackLogSchemaError(where, f"{len(value)} characters, at most {max_chars}")
    return value


def _fingerprint(value: Any, where: str) -> None:
    text = _text(value, where, MAX_FINGERPRINT_CHARS)
    if not _HEX.fullmatch(text):
        raise TrackLogSchemaError(where, f"{_show(value)} is not a hex string")


def _finite_numbers(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise TrackLogSchemaError(where, f"{_show(value)} is not a finite number")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _finite_numbers(item, f"{where}[{i}]")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _finite_numbers(item, f"{where}.{key}")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false",
             type(None): "null", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A value as the message quotes it: one line, cut short (a tampered field can be huge)."""
    return _clip(repr(value), _SHOWN_CHARS)


def _clip(text: str, limit: int = _MESSAGE_CHARS) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "..."
