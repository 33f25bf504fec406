"""Config: YAML presets load, every bad key or value is named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from masquerade.config import Config, describe_keys, load_config
from masquerade.errors import ConfigError

CONFIG_DIR = Path(__file__).parents[1] / "configs"
SERVE_CONFIGS = {"cameras.yaml"}
CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.yaml")
                 if p.name not in SERVE_CONFIGS and not p.name.startswith("train_"))


def test_defaults_are_valid() -> None:
    assert load_config() == Config()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_presets_load(path: Path) -> None:
    load_config(path)


def test_default_preset_documents_every_key() -> None:
    text = (Path(__file__).parents[1] / "configs" / "default.yaml").read_text()
    assert load_config(Path(__file__).parents[1] / "configs" / "default.yaml") == Config()
    for key, _, _ in describe_keys():
        assert f"{key.split('.')[-1]}:" in text, key


def test_overrides_apply_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("anonymizer:\n  mode: pixelate\n  pixel_blocks: 8\n")
    config = load_config(path, ["anonymizer.pixel_blocks=10", "tracker.max_coast_frames=30"])
    assert config.anonymizer.mode == "pixelate"
    assert config.anonymizer.pixel_blocks == 10
    assert config.tracker.max_coast_frames == 30


@pytest.mark.parametrize(("overrides", "message"), [
    (["nope.x=1"], "unknown config key 'nope'"),
    (["detector.tiles=3"], "unknown config key 'detector.tiles'"),
    (["detector.min_face_px=2.5"], "'detector.min_face_px': expected an integer"),
    (["detector.min_face_px=abc"], "'detector.min_face_px': expected a number"),
    (["pipeline.progress=maybe"], "'pipeline.progress': expected true/false"),
    (["anonymizer.color=[1,2]"], "'anonymizer.color'"),
    (["encoder.preset=turbo"], "'encoder.preset'"),
    (["encoder.crf=99"], "'encoder.crf': 99 is outside [0, 51]"),
    (["detector=3"], "'detector': expected a mapping"),
    (["novalue"], "must look like section.key=value"),
])
def test_bad_values_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert message in str(info.value)


def test_cameras_preset_loads_and_merges_stream_overrides() -> None:
    from masquerade.pipeline.serve import load_serve_config, stream_config

    spec = load_serve_config(CONFIG_DIR / "cameras.yaml")
    config = stream_config(spec, 0)
    assert config.anonymizer.mode == "pixelate"  # the stream's own override
    assert config.detector.min_face_px == 32  # from `defaults`
    assert config.tracker == Config().tracker  # untouched sections keep built-in defaults


@pytest.mark.parametrize(("text", "message"), [
    ("streams: []", "'streams' needs at least one stream"),
    ("streams: [{name: a}]", "config key 'streams[0].source' is required"),
    ("streams: [{name: a, source: x, backend: vlc}]", "'streams[0].backend'"),
    ("streams: [{name: a, source: x}, {name: a, source: y}]", "names must be unique"),
    ("streams: [{name: a, source: x, config: {detector: {min_score: 7}}}]",
     "streams[0] (a): config key 'detector.min_score'"),
    ("metrics: {port: http}\nstreams: [{name: a, source: x}]", "'metrics.port'"),
])
def test_bad_serve_configs_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    from masquerade.pipeline.serve import load_serve_config

    path = tmp_path / "cameras.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_serve_config(path)
    assert message in str(info.value)


# Nested aliases: a few hundred bytes that expand to 10**5 strings under a valid key.
ALIAS_BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
detector:
  min_score: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
"""


@pytest.mark.parametrize("text", [ALIAS_BOMB, "detector:\n  min_score: &s 0.3\n",
                                  "detector: &d {min_score: 0.3}\ntracker: *d\n"])
def test_yaml_anchors_and_aliases_are_refused(tmp_path: Path, text: str) -> None:
    from masquerade.pipeline.serve import load_serve_config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    for load in (load_config, load_serve_config):
        with pytest.raises(ConfigError) as info:
            load(path)
        message = str(info.value)
        assert "anchors and aliases are not allowed" in message and str(path) in message
        assert len(message) < 300 and "\n" not in message


def test_overrides_refuse_aliases_too() -> None:
    with pytest.raises(ConfigError, match="anchors and aliases are not allowed"):
        load_config(overrides=["detector.min_score=&x 0.3"])


@pytest.mark.parametrize("value", [
    "[" + ", ".join(["1"] * 20000) + "]",  # a long list
    "x" * 20000,  # a long string
    "{" + ", ".join(f"k{i}: [{i}, {i}]" for i in range(5000)) + "}",  # a big mapping
])
def test_values_echoed_in_errors_are_capped(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"detector:\n  min_score: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith("config key 'detector.min_score'")
    assert len(message) <= 300 and "..." in message


def test_long_unknown_keys_are_capped() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"detector.{'k' * 5000}=1"])
    assert len(str(info.value)) < 500 and "..." in str(info.value)
