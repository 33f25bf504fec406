"""SRC arguments to inputs: folders, globs and list files, and where each output lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from masquerade.batch.inputs import expand_sources
from masquerade.errors import ConfigError, InputError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "footage"
    for rel in ("cam1/a.mp4", "cam1/b.MKV", "cam2/deep/c.mov", "notes.txt.bak", "cam2/.hidden.mp4",
                ".git/x.mp4", "readme.md"):
        touch(root / rel)
    return root


def rels(items) -> list[str]:
    return [i.rel for i in items]


def test_folder_is_searched_recursively_for_videos_and_mirrored(tree: Path, tmp_path: Path) -> None:
    items = expand_sources([str(tree)], tmp_path / "out")
    assert rels(items) == ["cam1/a.mp4", "cam1/b.MKV", "cam2/deep/c.mov"]
    assert [i.output_rel("mkv") for i in items] == [
        "cam1/a.anonymized.mkv", "cam1/b.anonymized.mkv", "cam2/deep/c.anonymized.mkv"]
    assert items[0].source == (tree / "cam1/a.mp4").resolve()
    # the stream id is the relative path, so an output restores alone
    assert items[2].stream_id() == "cam2/deep/c.mov"
    assert items[2].stream_id("site-7") == "site-7/cam2/deep/c.mov"


def test_outdir_inside_an_input_folder_is_never_an_input(tree: Path) -> None:
    touch(tree / "anon/cam1/a.anonymized.mp4")
    assert rels(expand_sources([str(tree)], tree / "anon")) == [
        "cam1/a.mp4", "cam1/b.MKV", "cam2/deep/c.mov"]


def test_glob_mirrors_below_its_fixed_prefix(tree: Path, tmp_path: Path) -> None:
    items = expand_sources([str(tree / "cam*" / "**" / "*.m[op]*")], tmp_path / "out")
    assert rels(items) == ["cam1/a.mp4", "cam2/deep/c.mov"]
    with pytest.raises(InputError, match=r"no file matches .*\*\.avi"):
        expand_sources([str(tree / "*.avi")], tmp_path / "out")


def test_list_file_names_files_folders_and_globs_relative_to_itself(tree: Path,
                                                                  tmp_path: Path) -> None:
    listing = tree.parent / "inputs.txt"
    listing.write_text("# cameras\nfootage/cam1/a.mp4\n\nfootage/cam2\n")
    items = expand_sources([str(listing), str(tree / "cam1" / "a.mp4")], tmp_path / "out")
    # the same file named twice is one input; a folder mirrors below itself
    assert rels(items) == ["a.mp4", "deep/c.mov"]
    listing.write_text("footage/cam1/a.mp4\nfootage/missing.mp4\n")
    with pytest.raises(InputError, match=r"inputs.txt, line 2: input not found"):
        expand_sources([str(listing)], tmp_path / "out")


def test_a_file_named_on_its_own_is_an_input_whatever_its_extension(tree: Path,
                                                                    tmp_path: Path) -> None:
    assert rels(expand_sources([str(tree / "readme.md")], tmp_path / "out")) == ["readme.md"]


def test_two_inputs_for_one_output_are_refused_before_any_work(tree: Path,
                                                              tmp_path: Path) -> None:
    touch(tree / "cam1" / "a.avi")  # a.mp4 and a.avi would both be a.anonymized.mp4
    with pytest.raises(ConfigError, match=r"would both be written to .*a\.anonymized\.mp4"):
        expand_sources([str(tree)], tmp_path / "out")


def test_missing_and_empty_sources_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"input not found: nope\.mp4"):
        expand_sources(["nope.mp4"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        expand_sources([str(tmp_path / "empty")], tmp_path / "out")
