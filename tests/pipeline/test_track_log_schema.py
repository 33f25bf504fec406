"""A tampered track log is a one-line input error naming the field, never a traceback.

Each case edits one field of a valid log beside a real video and runs `restore_file`, the
way `masquerade restore` does: before the schema some of these crashed deep inside
restore (a privacy level of "x", a track id numpy cannot hold), others restored nothing
without a word (a box at 1e30 px), and unknown versions were accepted.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from masquerade.config import AnonymizerConfig, load_config
from masquerade.errors import InputError
from masquerade.keys import SecretKey
from masquerade.pipeline.restore import restore_file
from tests.test_cli import error_line, masquerade

WIDTH, HEIGHT = 320, 240
FRAME = "frames[0]"


def write_clip(path: Path, frames: int = 3) -> Path:
    """A real, tiny H.264 mp4 of WIDTHxHEIGHT: the video a log belongs to."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for _ in range(frames):
            image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def valid_log() -> dict[str, Any]:
    """What `run --mode deid` writes: one generated face on the frame at pts 0."""
    keypoints = [[40.0, 50.0], [80.0, 50.0], [60.0, 70.0], [60.0, 90.0], [20.0, 55.0],
                 [100.0, 55.0]]
    return {
        "version": 2,
        "meta": {"stream_id": "default", "privacy_level": 1.0,
                 "key_id": "0123456789abcdef",
                 "anonymizer": dataclasses.asdict(AnonymizerConfig(mode="deid"))},
        "frames": {"0": {"xyxy": [[10.0, 20.0, 110.0, 130.0]], "track_ids": [1],
                         "keypoints": [keypoints]}},
    }


def setter(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(log: dict[str, Any]) -> None:
        target = log
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def deleter(*path: Any) -> Callable[[dict[str, Any]], None]:
    def edit(log: dict[str, Any]) -> None:
        target = log
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


ROW = ("frames", "0")
TAMPERINGS = {
    "privacy_level_text": (setter("meta", "privacy_level", value="x"),
                           "meta.privacy_level: expected a number, got 'x'"),
    "privacy_level_infinity": (setter("meta", "privacy_level", value=float("inf")),
                               "meta.privacy_level: inf is not a finite number"),
    "privacy_level_nan": (setter("meta", "privacy_level", value=float("nan")),
                          "meta.privacy_level: nan is not a finite number"),
    "privacy_level_above_one": (setter("meta", "privacy_level", value=7.0),
                                "meta.privacy_level: 7.0 is outside [0, 1]"),
    "track_id_2_to_the_70": (setter(*ROW, "track_ids", 0, value=2**70),
                             f"{FRAME}.track_ids[0]: {2**70} is outside [0, {2**63 - 1}]"),
    "track_id_negative": (setter(*ROW, "track_ids", 0, value=-3),
                          f"{FRAME}.track_ids[0]: -3 is outside"),
    "track_id_fraction": (setter(*ROW, "track_ids", 0, value=1.5),
                          f"{FRAME}.track_ids[0]: expected an integer, got 1.5"),
    "track_id_twice": (lambda log: log["frames"]["0"].update(
        xyxy=[[10, 20, 110, 130], [150, 20, 250, 130]], track_ids=[1, 1], keypoints=None),
                       f"{FRAME}.track_ids[1]: track 1 appears twice in one frame"),
    "box_string": (setter(*ROW, "xyxy", 0, 2, value="110"),
                   f"{FRAME}.xyxy[0][2]: expected a number, got '110'"),
    "box_1e30": (setter(*ROW, "xyxy", 0, 2, value=1e30),
                 f"{FRAME}.xyxy[0][2]: 1e+30 is outside the frame (320x240, margin 160 px)"),
    "box_minus_1e30": (setter(*ROW, "xyxy", 0, 0, value=-1e30),
                       f"{FRAME}.xyxy[0][0]: -1e+30 is outside the frame"),
    "box_infinity": (setter(*ROW, "xyxy", 0, 3, value=float("inf")),
                     f"{FRAME}.xyxy[0][3]: inf is not a finite number"),
    "box_negative_off_screen": (setter(*ROW, "xyxy", 0, value=[-100, -100, -50, -50]),
                                f"{FRAME}.xyxy[0]: [-100, -100, -50, -50] lies wholly "
                                "outside the 320x240 frame"),
    "box_inside_out": (setter(*ROW, "xyxy", 0, value=[110, 130, 10, 20]),
                       f"{FRAME}.xyxy[0]: [110, 130, 10, 20] is not a box"),
    "box_three_numbers": (setter(*ROW, "xyxy", 0, value=[10, 20, 110]),
                          f"{FRAME}.xyxy[0]: expected 4 numbers (x1, y1, x2, y2), got 3"),
    "boxes_not_a_list": (setter(*ROW, "xyxy", value={"x1": 10}),
                         f"{FRAME}.xyxy: expected a list, got an object"),
    "keypoints_xyz": (lambda log: log["frames"]["0"].update(keypoints=[[[1, 2, 3]] * 6]),
                      f"{FRAME}.keypoints[0][0]: expected 2 coordinates, got 3"),
    "keypoints_five": (lambda log: log["frames"]["0"].update(keypoints=[[[40, 50]] * 5]),
                       f"{FRAME}.keypoints[0]: expected 6 keypoints, got 5"),
    "keypoints_flat": (lambda log: log["frames"]["0"].update(keypoints=[40, 50] * 6),
                       f"{FRAME}.keypoints: has 12 entries for 1 faces in xyxy"),
    "keypoint_1e30": (setter(*ROW, "keypoints", 0, 3, 1, value=1e30),
                      f"{FRAME}.keypoints[0][3][1]: 1e+30 is outside the frame"),
    "more_track_ids_than_boxes": (setter(*ROW, "track_ids", value=[1, 2]),
                                  f"{FRAME}.track_ids: has 2 entries for 1 faces in xyxy"),
    "more_keypoints_than_boxes": (
        lambda log: log["frames"]["0"]["keypoints"].append(log["frames"]["0"]["keypoints"][0]),
        f"{FRAME}.keypoints: has 2 entries for 1 faces in xyxy"),
    "pts_not_an_integer": (lambda log: log["frames"].update({"later": log["frames"]["0"]}),
                           "frames: key 'later' is not a pts"),
    "unknown_transform": (setter("meta", "anonymizer", "identity_transform", value="shear"),
                          "meta.anonymizer.identity_transform: 'shear' is not one of "
                          "['orthogonal', 'rotation']"),
    "identity_angle_nan": (setter("meta", "anonymizer", "max_identity_angle",
                                  value=float("nan")),
                           "meta.anonymizer.max_identity_angle: nan is not a finite number"),
    "stream_id_number": (setter("meta", "stream_id", value=5),
                         "meta.stream_id: expected text, got 5"),
    "key_id_not_hex": (setter("meta", "key_id", value="not-hex"),
                       "meta.key_id: 'not-hex' is not a hex string"),
    "key_id_too_long": (setter("meta", "key_id", value="ab" * 100),
                        "meta.key_id: 200 characters, at most 128"),
    "meta_missing": (deleter("meta"), "meta: is missing"),
    "unknown_field": (setter("comment", value="hi"), "comment: unknown field"),
}
VERSIONS = [999, 3, 0, -1, 2.0, "2", True, None]


def write_log(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    video = write_clip(tmp_path / "deid.mp4")
    log = copy.deepcopy(valid_log())
    if edit is not None:
        edit(log)
    Path(f"{video}.tracks.json").write_text(json.dumps(log))
    return video


def expect_refused(video: Path, message: str) -> None:
    config = load_config(overrides=["pipeline.progress=false"])
    out = video.with_name("restored.mp4")
    with pytest.raises(InputError) as caught:
        restore_file(str(video), out, config, SecretKey(bytes(32)))
    assert str(caught.value).startswith(f"track log '{video}.tracks.json': {message}")
    assert "\n" not in str(caught.value)
    assert not out.exists()


@pytest.mark.parametrize("case", TAMPERINGS)
def test_tampered_track_log_is_refused_naming_the_field(tmp_path: Path, case: str) -> None:
    edit, message = TAMPERINGS[case]
    expect_refused(write_log(tmp_path, edit), message)


@pytest.mark.parametrize("version", [*VERSIONS, "missing"], ids=repr)
def test_unknown_track_log_versions_are_refused(tmp_path: Path, version: Any) -> None:
    if version == "missing":
        edit, message = deleter("version"), "version: is missing"
    else:
        edit = setter("version", value=version)
        message = f"version: {version!r} is not a known track log version (known: 1, 2)"
    expect_refused(write_log(tmp_path, edit), message)


@pytest.mark.parametrize("case", ["privacy_level_text", "box_1e30"])
def test_cli_restore_of_a_tampered_log_exits_3_with_one_line(tmp_path: Path, case: str
                                                             ) -> None:
    edit, message = TAMPERINGS[case]
    video = write_log(tmp_path, edit)
    key = tmp_path / "master.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    proc = masquerade("restore", str(video), "-o", str(tmp_path / "restored.mp4"),
                      "--key-file", str(key))
    assert proc.returncode == 3, proc.stderr
    assert error_line(proc) == f"masquerade: error: track log '{video}.tracks.json': {message}"
    assert not (tmp_path / "restored.mp4").exists()


@pytest.mark.parametrize("edit", [
    None,
    deleter("meta", "key_id"),  # written before keys had a fingerprint
    setter(*ROW, "keypoints", value=None),  # a detector without keypoints
    setter(*ROW, "xyxy", 0, value=[-40.5, -30, 60, 70]),  # coasting past the edge
    setter("frames", value={}),  # no face was large enough for the generator
], ids=["as_written", "no_key_id", "no_keypoints", "box_past_the_edge", "no_faces"])
def test_valid_logs_pass(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None
                         ) -> None:
    from masquerade.pipeline.track_log import TrackLog

    video = write_log(tmp_path, edit)
    log = TrackLog.read(Path(f"{video}.tracks.json"), frame_size=(WIDTH, HEIGHT))
    assert log.meta["stream_id"] == "default"


def test_version_1_logs_restore_with_the_rotation(tmp_path: Path) -> None:
    from masquerade.pipeline.track_log import TrackLog

    def as_version_1(log: dict[str, Any]) -> None:
        log["version"] = 1
        log["meta"]["anonymizer"] = {"max_identity_angle": 120.0}

    video = write_log(tmp_path, as_version_1)
    log = TrackLog.read(Path(f"{video}.tracks.json"), frame_size=(WIDTH, HEIGHT))
    assert log.meta["anonymizer"]["identity_transform"] == "rotation"
    assert log.meta["anonymizer"]["identity_refresh_distance"] == 0.0
