"""Which files a batch anonymizes, and where each result lands.

A SRC argument is a video file, a folder (searched recursively for video extensions), a
glob (`cams/*/2024-*.mp4`, `**` allowed) or a list file (`.txt`, `.lst`, `.list`: one
SRC per line, relative to the list's own folder, `#` comments). Each input gets a
relative path: below the folder or the glob's fixed prefix it came from, or just its
name for a file named on its own. That relative path is both where the output lands
under OUTDIR (so the output tree mirrors the input tree) and the file's key namespace
(its deid stream id), so two batches of the same tree derive the same identities and an
output restores alone.

Two inputs that would write the same output are refused before any work, not resolved
by whichever finishes last.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from masquerade.errors import ConfigError, InputError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".ts", ".m2ts", ".mts", ".webm", ".flv",
    ".mpg", ".mpeg", ".wmv", ".264", ".265", ".h264", ".h265", ".hevc",
})
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
OUTPUT_FORMATS = ("mp4", "mkv", "mov", "ts")
# A list may name other lists; this bounds a list that names itself.
MAX_LIST_DEPTH = 8


@dataclass(frozen=True)
class BatchInput:
    """One file of the batch: where it is, and its path relative to its SRC."""

    source: Path  # absolute
    rel: str  # POSIX, relative: output location under OUTDIR and stream id

    def output_rel(self, fmt: str = "mp4") -> str:
        """`run`'s naming rule (NAME.anonymized.EXT) at the mirrored place."""
        rel = PurePosixPath(self.rel)
        return str(rel.with_name(f"{rel.stem}.anonymized.{fmt}"))

    def stream_id(self, prefix: str = "") -> str:
        """The key namespace of this file: its relative path, after an optional prefix.

        Derived, not random, so a rerun of the same tree gives the same fake identities,
        and recorded in the output's track log and seal store for `restore`.
        """
        return f"{prefix}/{self.rel}" if prefix else self.rel


def expand_sources(sources: list[str], outdir: Path, fmt: str = "mp4") -> list[BatchInput]:
    """Every input the SRC arguments name, in a stable order, without duplicates.

    Files already under OUTDIR are never inputs (an OUTDIR inside an input folder must
    not make a rerun anonymize its own outputs), nor are hidden files (partial outputs).
    """
    outdir = outdir.resolve()
    found: dict[Path, BatchInput] = {}
    for src in sources:
        for item in _expand(src, Path.cwd(), outdir, 0):
            found.setdefault(item.source, item)
    inputs = sorted(found.values(), key=lambda i: i.rel)
    by_output: dict[str, BatchInput] = {}
    for item in inputs:
        other = by_output.setdefault(item.output_rel(fmt), item)
        if other is not item:
            raise ConfigError(f"{other.source} and {item.source} would both be written to "
                              f"{outdir / item.output_rel(fmt)}; give them separately")
    if not inputs:
        raise InputError("no input: the SRC arguments name no video file")
    return inputs


def _expand(src: str, base: Path, outdir: Path, depth: int) -> list[BatchInput]:
    path = Path(src).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.exists() and glob.has_magic(str(path)):
        return _expand_glob(src, path, outdir)
    if path.is_dir():
        items = _expand_folder(path, outdir)
        if not items:
            raise InputError(f"no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) "
                             f"under {src}")
        return items
    if path.is_file():
        if path.suffix.lower() in LIST_EXTENSIONS:
            return _expand_list(src, path, outdir, depth)
        # A file named on its own is an input whatever its extension: the user chose it,
        # and a non-video is then a failed input with its reason, not silently skipped.
        return [BatchInput(path.resolve(), path.name)]
    raise InputError(f"input not found: {src}")


def _expand_folder(folder: Path, outdir: Path, prefix: PurePosixPath | None = None
                   ) -> list[BatchInput]:
    items = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not _inside(root_path / d, outdir))
        for name in sorted(files):
            file = root_path / name
            if (name.startswith(".") or Path(name).suffix.lower() not in VIDEO_EXTENSIONS
                    or _inside(file, outdir)):
                continue
            rel = PurePosixPath(file.relative_to(folder).as_posix())
            items.append(BatchInput(file.resolve(), str(prefix / rel if prefix else rel)))
    return items


def _expand_glob(src: str, pattern: Path, outdir: Path) -> list[BatchInput]:
    # The glob's fixed leading folders are the base of the mirrored tree.
    fixed = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    base = Path(*fixed)
    items = []
    for match in sorted(glob.glob(str(pattern), recursive=True)):
        path = Path(match)
        if path.name.startswith(".") or _inside(path, outdir):
            continue
        rel = PurePosixPath(path.relative_to(base).as_posix())
        if path.is_dir():
            items.extend(_expand_folder(path, outdir, rel))
        elif path.is_file():
            items.append(BatchInput(path.resolve(), str(rel)))
    if not items:
        raise InputError(f"no file matches {src}")
    return items


def _expand_list(src: str, path: Path, outdir: Path, depth: int) -> list[BatchInput]:
    if depth >= MAX_LIST_DEPTH:
        raise ConfigError(f"list file {src}: lists nested more than {MAX_LIST_DEPTH} deep "
                          "(does a list name itself?)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read list file {src}: {exc}") from None
    items = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            items.extend(_expand(entry, path.parent, outdir, depth + 1))
        except InputError as exc:
            raise InputError(f"list file {src}, line {number}: {exc}") from None
    return items


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True
