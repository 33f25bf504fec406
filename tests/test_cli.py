"""The CLI as a user meets it: a real process, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import av
import pytest

from masquerade.synthetic import Scenario, write_clip
from tests.conftest import PATIENCE, free_port, guarded, wait_for, write_audio_only
from tests.small_disk import masquerade_on_small_disk


def masquerade(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASQUERADE_KEY", "MASQUERADE_PASSWORD")}
    env["GLOG_minloglevel"] = "2"
    # stdin not a terminal: keyed modes without a key must fail, not prompt for a passphrase
    return subprocess.run([sys.executable, "-m", "masquerade", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


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
    # --summary-json follows the video's rules, checked before the run starts
    ("clip", ["clip.mp4", "-o", "o.mp4", "--summary-json", "clip.mp4"], 4,
     "--summary-json clip.mp4 would overwrite the input"),
    ("badyaml", ["clip.mp4", "-o", "o.mp4", "--summary-json", "bad.yaml"], 4,
     "output bad.yaml exists (use --overwrite"),
    ("clip", ["clip.mp4", "-o", "o.mp4", "--summary-json", "clip.mp4", "--overwrite"], 4,
     "--summary-json clip.mp4 would overwrite the input"),
    ("clip", ["clip.mp4", "-o", "o.mp4", "--summary-json", "o.mp4"], 4,
     "--summary-json o.mp4 would overwrite the output"),
    ("clip", ["clip.mp4", "-o", "o.mp4", "--summary-json", "/proc/x.json"], 4, "/proc"),
    ("clip", ["clip.mp4", "-o", "o.mp4", "--summary-json", "no/such/dir/s.json"], 4,
     "output folder no/such/dir does not exist"),
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


DEID = ["--mode", "deid", "--password", "a deid passphrase", "--set", "encoder.preset=ultrafast"]


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*partial*"))


class Background:
    """`masquerade ARGS` as a background process; its stderr is collected as it comes."""

    def __init__(self, *args: str):
        env = {k: v for k, v in os.environ.items() if k != "MASQUERADE_KEY"}
        env["GLOG_minloglevel"] = "2"
        self.args = args
        self.proc = subprocess.Popen(guarded([sys.executable, "-m", "masquerade", *args]),
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def stderr(self) -> str:
        return "".join(self.lines)

    def finish(self) -> subprocess.CompletedProcess[str]:
        self.proc.wait(timeout=PATIENCE)
        self._reader.join(timeout=PATIENCE)
        return subprocess.CompletedProcess(self.args, self.proc.returncode,
                                           self.proc.stdout.read(), self.stderr())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_sigterm_aborts_a_file_run_like_ctrl_c(scenario_clip: Path, tmp_path: Path) -> None:
    """`kill`, systemd and `docker stop` send SIGTERM: the temporary file must go too."""
    run = Background("run", str(scenario_clip), "-o", str(tmp_path / "out.mp4"))
    try:
        assert wait_for(lambda: partials(tmp_path) or run.proc.poll() is not None)
        assert partials(tmp_path), "the run ended before it could be stopped"
        run.proc.send_signal(signal.SIGTERM)
        proc = run.finish()
    finally:
        run.kill()
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("masquerade:")] == [
        "masquerade: terminated (SIGTERM); no output was written"]
    assert list(tmp_path.iterdir()) == []


def test_partial_file_of_a_killed_run_is_removed_by_the_next_run(scenario_clip: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    run = Background("run", str(scenario_clip), "-o", str(out))
    try:
        assert wait_for(lambda: partials(tmp_path) or run.proc.poll() is not None)
        run.proc.kill()  # SIGKILL: no handler runs, the temporary file stays behind
        run.proc.wait()
    finally:
        run.kill()
    left = partials(tmp_path)
    assert len(left) == 1 and not out.exists()
    # a run still writing (this test's own PID) keeps its partial file
    busy = tmp_path / f".out.{os.getpid()}-busy.partial.mp4"
    busy.write_bytes(b"in progress")
    proc = masquerade("run", str(scenario_clip), "-o", str(out), "--set",
                      "encoder.preset=ultrafast")
    assert proc.returncode == 0, proc.stderr
    assert f"removed {left[0]}, left by an earlier run" in proc.stderr
    assert partials(tmp_path) == [busy]
    assert out.is_file()


def test_live_run_that_never_received_a_frame_fails(tmp_path: Path) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/x"  # nothing listens there
    out = tmp_path / "f.mp4"
    run = Background("run", url, "-o", str(out), "--set", "encoder.preset=ultrafast")
    try:
        assert wait_for(lambda: "retrying in" in run.stderr() or run.proc.poll() is not None)
        assert "retrying in" in run.stderr(), run.stderr()
        run.proc.send_signal(signal.SIGTERM)
        proc = run.finish()
    finally:
        run.kill()
    assert proc.returncode == 3, proc.stderr
    assert f"no frame was received from {url}" in error_line(proc)
    assert "wrote" not in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_a_one_line_output_error(scenario_clip: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    proc = masquerade_on_small_disk(disk, 64 * 1024, tmp_path / "left", "run",
                                    str(scenario_clip), "-o", str(disk / "out.mp4"))
    assert proc.returncode == 4, proc.stderr
    assert f"cannot write {disk / 'out.mp4'}: No space left on device" in error_line(proc)
    assert list((tmp_path / "left").iterdir()) == []  # neither a video nor a partial


@pytest.fixture
def cut_clip(scenario_clip: Path, tmp_path: Path) -> Path:
    """The clip with its index (moov) at the front, cut at half its size: it opens and
    decodes up to the cut, like a copy that was interrupted."""
    front = tmp_path / "front.mp4"
    with av.open(str(scenario_clip)) as src, av.open(
            str(front), "w", options={"movflags": "+faststart"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = front.read_bytes()
    front.unlink()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_truncated_input_warns_in_the_summary_and_fails_with_strict(cut_clip: Path,
                                                                   tmp_path: Path) -> None:
    summary = tmp_path / "s.json"
    proc = masquerade("run", str(cut_clip), "-o", str(tmp_path / "o.mp4"), "--summary-json",
                      str(summary), "--set", "encoder.preset=ultrafast")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(summary.read_text())
    decoded = data["frames_in"]
    assert data["frames_expected"] == 90 and 0 < decoded < 90
    message = (f"input ended early: {decoded} of the 90 frames its header announces were "
               "decoded (truncated or damaged file?)")
    assert data["warnings"] == [message]
    assert f"WARNING masquerade.pipeline.runner: {cut_clip}: {message}" in proc.stderr
    strict = masquerade("run", str(cut_clip), "-o", str(tmp_path / "strict.mp4"), "--strict")
    assert strict.returncode == 3, strict.stderr
    assert message in error_line(strict)
    assert not (tmp_path / "strict.mp4").exists() and partials(tmp_path) == []


def test_existing_track_log_is_not_replaced_without_overwrite(scenario_clip: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "deid.mp4"
    track_log = tmp_path / "deid.mp4.tracks.json"
    track_log.write_text("the log of an earlier video")
    proc = masquerade("run", str(scenario_clip), "-o", str(out), *DEID)
    assert proc.returncode == 4, proc.stderr
    assert f"output {track_log} exists (use --overwrite" in error_line(proc)
    assert track_log.read_text() == "the log of an earlier video"
    assert sorted(tmp_path.iterdir()) == [track_log]


def test_full_disk_while_writing_the_track_log_leaves_neither_file(tmp_path: Path) -> None:
    """A deid video without its track log could never be restored: both or nothing."""
    clip = tmp_path / "clip.mp4"
    write_clip(clip, Scenario(frames=30, audio=False))
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    proc = masquerade("run", str(clip), "-o", str(roomy / "deid.mp4"), *DEID)
    assert proc.returncode == 0, proc.stderr
    video = (roomy / "deid.mp4").stat().st_size
    track_log = (roomy / "deid.mp4.tracks.json").stat().st_size
    page = os.sysconf("SC_PAGE_SIZE")
    room = (track_log // 2) // page * page
    assert room >= page
    # A disk with room for the video and half the track log (the same run on the same
    # machine writes the same video): the video fits, its track log does not.
    disk = tmp_path / "disk"
    proc = masquerade_on_small_disk(disk, -(-video // page) * page + room, tmp_path / "left",
                                    "run", str(clip), "-o", str(disk / "deid.mp4"), *DEID)
    assert proc.returncode == 4, proc.stderr
    assert (f"cannot write {disk / 'deid.mp4.tracks.json'}: No space left on device"
            in error_line(proc))
    assert list((tmp_path / "left").iterdir()) == []
