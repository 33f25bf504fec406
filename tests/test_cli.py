"""The CLI as a user meets it: a real process, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from tests.conftest import write_audio_only


def masquerade(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MASQUERADE_KEY"}
    env["GLOG_minloglevel"] = "2"
    return subprocess.run([sys.executable, "-m", "masquerade", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("masquerade: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def audio_only(tmp_path: Path) -> Path:
    return write_audio_only(tmp_path / "audio.mkv")


def test_demo_run_without_input(tmp_path: Path) -> None:
    proc = masquerade("run", "--mode", "pixelate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "masquerade-demo" / "demo_anonymized.mp4"
    assert f"wrote {out.relative_to(tmp_path)}" in proc.stdout
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 90
    assert "90/90 frames written" in proc.stderr


def test_run_writes_summary_json_and_refuses_to_overwrite(scenario_clip: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "o.mkv"
    proc = masquerade("run", str(scenario_clip), "-o", str(out), "--summary-json",
                      str(tmp_path / "s.json"), "--set", "encoder.preset=ultrafast")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_out"] == 90 and summary["tracks"] >= 3
    before = out.read_bytes()
    proc = masquerade("run", str(scenario_clip), "-o", str(out))
    assert proc.returncode == 4
    assert "exists (use --overwrite" in error_line(proc)
    assert out.read_bytes() == before


@pytest.mark.parametrize(("make", "args", "code", "message"), [
    (None, ["missing.mp4"], 3, "input not found: missing.mp4"),
    ("text", ["notvideo.mp4"], 3, "cannot open notvideo.mp4"),
    ("truncated", ["cut.mp4"], 3, "cannot open cut.mp4"),
    ("audio", ["audio.mkv"], 3, "holds no video stream"),
    ("clip", ["clip.mp4", "-o", "no/such/dir/o.mp4"], 4, "output folder no/such/dir does not"),
    ("clip", ["clip.mp4", "-o", "/proc/o.mp4"], 4, "/proc"),
    ("clip", ["clip.mp4", "-o", "o.avi"], 4, "unsupported extension .avi"),
    ("clip", ["clip.mp4", "-o", "clip.mp4", "--overwrite"], 4, "overwrite the input"),
    ("clip", ["clip.mp4", "--set", "detector.min_scor=0.3"], 2,
     "unknown config key 'detector.min_scor'"),
    ("clip", ["clip.mp4", "--set", "detector.min_score=2"], 2,
     "config key 'detector.min_score': 2.0 is outside [0.0, 1.0]"),
    ("clip", ["clip.mp4", "--set", "anonymizer.mask=star"], 2,
     "config key 'anonymizer.mask': 'star' is not one of ['ellipse', 'box']"),
    ("clip", ["clip.mp4", "--config", "nope.yaml"], 2, "config file not found: nope.yaml"),
    ("badyaml", ["clip.mp4", "--config", "bad.yaml"], 2, "bad.yaml is not valid YAML"),
    ("clip", ["clip.mp4", "--mode", "deid"], 2, "no master key: pass a key file or --password"),
    ("clip", ["clip.mp4", "--mode", "deid", "--password", "short"], 2,
     "a passphrase must be at least 8 characters"),
    ("keyfile", ["clip.mp4", "--mode", "deid", "--key-file", "open.key"], 2, "open.key"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(
    tmp_path: Path, scenario_clip: Path, audio_only: Path, make: str | None, args: list[str],
    code: int, message: str,
) -> None:
    if make == "text":
        (tmp_path / "notvideo.mp4").write_text("hello " * 100)
    elif make == "truncated":
        data = scenario_clip.read_bytes()
        (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    elif make == "keyfile":
        (tmp_path / "clip.mp4").write_bytes(scenario_clip.read_bytes())
        (tmp_path / "open.key").write_text("00" * 32)
        (tmp_path / "open.key").chmod(0o644)  # readable by others: must be refused
    elif make in ("clip", "badyaml"):
        (tmp_path / "clip.mp4").write_bytes(scenario_clip.read_bytes())
        (tmp_path / "bad.yaml").write_text("detector: [unclosed\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = masquerade("run", *args, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert message in error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


def test_probe_reports_streams(scenario_clip: Path) -> None:
    proc = masquerade("probe", str(scenario_clip), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["width"], info["height"], info["frames"]) == (640, 360, 90)
    assert info["audio"][0]["codec"] == "aac"


def test_help_explains_every_config_key() -> None:
    proc = masquerade("run", "--help")
    assert proc.returncode == 0
    for key in ("detector.min_face_px", "tracker.max_coast_frames", "anonymizer.blur_strength",
                "encoder.crf", "pipeline.on_error"):
        assert key in proc.stdout


def test_bench_models_reports_every_network_and_backend(monkeypatch):
    from masquerade.benchmark import bench_networks, model_table
    from masquerade.config import EngineConfig

    rows = bench_networks(EngineConfig(), batches=(1, 2), repeats=1)
    assert {r["network"] for r in rows} == {"identity_encoder", "deid_attr", "deid_generator"}
    for r in rows:
        assert r["onnxruntime_ms_per_face"] > 0 and r["onnxruntime_batching_speedup"] > 0
        assert r["torch_ms_per_face"] > 0  # the PyTorch reference, when torch is installed
    table = model_table({"networks": rows, "deid_end_to_end": []})
    assert table.splitlines()[0].startswith("network | batch | onnxruntime_ms_per_face")


def test_camouflage_run_end_to_end(scenario_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "camo.mp4"
    proc = masquerade("run", str(scenario_clip), "-o", str(out), "--mode", "camouflage",
                      "--password", "a camouflage passphrase", "--set",
                      "encoder.preset=ultrafast")
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 90
    proc = masquerade("run", str(scenario_clip), "-o", str(tmp_path / "nokey.mp4"), "--mode",
                      "camouflage")
    assert proc.returncode != 0 and "no master key" in error_line(proc)
    assert not (tmp_path / "nokey.mp4").exists()
