"""The job manifest: what a rerun skips, keeps and redoes, and that it survives a crash."""

from __future__ import annotations

from pathlib import Path

from masquerade.batch.manifest import (
    DONE,
    FAILED,
    MANIFEST_NAME,
    Manifest,
    config_sha256,
    decide,
    file_sha256,
)
from masquerade.config import load_config


def test_config_hash_ignores_the_progress_bar_but_not_settings_or_the_key() -> None:
    def h(*overrides: str, key_id: str | None = None) -> str:
        return config_sha256(load_config(None, list(overrides)), fmt="mp4", stream_prefix="",
                             key_id=key_id, strict=False)

    assert h() == h("pipeline.progress=false")
    assert h() != h("anonymizer.mode=pixelate")
    assert h(key_id="00" * 8) != h(key_id="11" * 8)


def test_decide_skips_identical_keeps_failures_and_redoes_changes(tmp_path: Path) -> None:
    out = tmp_path / "a.anonymized.mp4"
    out.write_bytes(b"video")
    done = {"status": DONE, "input_sha256": "i", "config_sha256": "c",
            "output_sha256": file_sha256(out)}
    assert decide(None, "i", "c", out, False).action == "run"
    assert decide(done, "i", "c", out, False).action == "skip"
    changed = decide(done, "j", "c", out, False)
    # the batch's own earlier output may be replaced when its input changed
    assert (changed.action, changed.reason, changed.replace_output) == (
        "run", "the input changed", True)
    assert decide(done, "i", "d", out, False).reason == "the config changed"
    out.write_bytes(b"edited by someone")  # not ours any more: never replaced silently
    edited = decide(done, "i", "c", out, False)
    assert (edited.action, edited.replace_output) == ("run", False)
    failed = {"status": FAILED, "input_sha256": "i", "config_sha256": "c", "error": "bad"}
    assert decide(failed, "i", "c", out, False).action == "keep-failed"
    assert decide(failed, "i", "c", out, True).action == "run"
    assert decide(failed, "j", "c", out, False).action == "run"


def test_manifest_appends_and_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path)
    manifest.append({"input": "a.mp4", "status": FAILED, "error": "x"})
    manifest.append({"input": "a.mp4", "status": DONE, "output_sha256": "o"})
    with open(tmp_path / MANIFEST_NAME, "a") as f:
        f.write('{"input": "b.mp4", "sta')  # a driver killed mid-write
    again = Manifest(tmp_path)
    assert again.last["a.mp4"]["status"] == DONE
    assert "b.mp4" not in again.last
