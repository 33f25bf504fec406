"""Where output files land: one set of rules for the video, its track log and the summary.

No output may replace the input, or an existing file without `--overwrite`, and none may
appear half-written under the user's name: each is written to a hidden temporary file
beside its target and renamed into place only when complete. The temporary file's name
carries the writer's PID (`.NAME.<pid>-<random>.partial<ext>`): a run killed with SIGKILL
cannot clean up after itself, so the next run on the same target removes the partials
whose writer no longer exists, and leaves those of a run still in progress alone.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from masquerade.errors import OutputError

log = logging.getLogger(__name__)


def check_output_path(path: Path, overwrite: bool) -> None:
    """Refuse, before any work, a target that is a folder, exists, or cannot be written."""
    if path.exists() and path.is_dir():
        raise OutputError(f"output {path} is a directory")
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} exists (use --overwrite to replace it)")
    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"output folder {path.parent} is not writable")


def write_failed(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """The one-line error for a write that failed (disk full, quota, I/O error)."""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    return OutputError(f"cannot write {path}: {reason}")


def _partial_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target.stem)}\.(\d+)-[a-z0-9_]+"
                      rf"\.partial{re.escape(target.suffix)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_partials(target: Path) -> list[Path]:
    """Delete the partial files of `target` left by runs that were killed; returns them."""
    pattern = _partial_pattern(target)
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            entry.unlink()
        except OSError as exc:
            log.warning("cannot remove %s, left by a killed run: %s", entry, exc.strerror)
            continue
        log.warning("removed %s, left by an earlier run (pid %d) that was killed", entry, pid)
        removed.append(entry)
    return removed


def make_partial(target: Path) -> Path:
    """A new, empty hidden temporary file beside `target`, named after this process."""
    remove_stale_partials(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.{os.getpid()}-",
                                   suffix=f".partial{target.suffix}", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {target.parent}: {exc.strerror}") from None
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, target: Path) -> None:
    """Give the finished temp file the umask's permissions and move it onto `target`."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private
        os.replace(tmp, target)
    except OSError as exc:
        raise write_failed(target, exc) from None


class PendingFile:
    """A small output (JSON) checked and reserved up front, written whole at the end.

    Creating the temporary file at once is the real test of the path (a `/proc` or
    read-only folder fails there), so a bad path is refused before a long run starts.
    """

    def __init__(self, target: str | os.PathLike[str], overwrite: bool = False):
        self.target = Path(target)
        check_output_path(self.target, overwrite)
        self.tmp = make_partial(self.target)

    def write_text(self, text: str) -> None:
        """Fill the temporary file; a full disk is an `OutputError` and drops it."""
        self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: bytes) -> None:
        try:
            with open(self.tmp, "wb") as f:
                f.write(data)
        except OSError as exc:
            self.abort()
            raise write_failed(self.target, exc) from None

    def commit(self) -> Path:
        try:
            publish(self.tmp, self.target)
        except OutputError:
            self.abort()
            raise
        return self.target

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)
