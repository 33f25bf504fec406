"""The job manifest: OUTDIR/masquerade-batch.jsonl, one JSON record per line, appended.

It is what makes `masquerade batch` resumable: for each input (by its relative path) the
last record says what happened to it — status, the input's content hash, the hash of
the config it was run with, the output's hash, frames, fps, and the one-line error of a
failure. A rerun skips an input whose content, config and output are all still what the
manifest recorded, and redoes the rest.

Append-only and flushed to disk record by record: a driver killed at any moment leaves
at most a torn last line, which the next run ignores (with a warning), never a manifest
that lies about a file. Records hold hashes, paths and numbers only: no key, no
passphrase, nothing derived from them except the key's public fingerprint (inside the
config hash).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from masquerade import __version__
from masquerade.config import Config
from masquerade.errors import OutputError

log = logging.getLogger(__name__)

MANIFEST_NAME = "masquerade-batch.jsonl"
FORMAT = "masquerade-batch-manifest"
VERSION = 1
# Statuses. Finished: DONE (written by this run) and SKIPPED (identical to a DONE of an
# earlier run). RETRY: an attempt lost with its worker; the file was queued again.
DONE, SKIPPED, FAILED, RETRY = "done", "skipped", "failed", "retry"
FINISHED = (DONE, SKIPPED)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_sha256(config: Config, *, fmt: str, stream_prefix: str, key_id: str | None,
                  strict: bool) -> str:
    """The hash of everything besides the input that decides the output's content.

    The progress bar is left out (it changes nothing written); the key enters only as
    its public fingerprint, so a different key redoes keyed outputs without the key
    itself ever reaching the manifest. The version is in: a new release may write
    different pixels.
    """
    settings = dataclasses.asdict(config)
    settings["pipeline"].pop("progress", None)
    text = json.dumps({"config": settings, "format": fmt, "stream_prefix": stream_prefix,
                       "key_id": key_id, "strict": strict, "masquerade": __version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Manifest:
    """The manifest of one OUTDIR: its last record per input, and appending new ones."""

    def __init__(self, outdir: Path) -> None:
        self.path = outdir / MANIFEST_NAME
        self.last: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()
        else:
            self._append({"format": FORMAT, "version": VERSION})

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise OutputError(f"cannot read the batch manifest {self.path}: {exc}") from None
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                # A driver killed mid-write leaves a torn line; what it described is
                # simply redone.
                log.warning("%s line %d is not a whole record (an interrupted write?); "
                            "ignored", self.path, number)
                continue
            if not isinstance(record, dict):
                continue
            if "format" in record:
                if record.get("format") != FORMAT or record.get("version") != VERSION:
                    raise OutputError(f"{self.path} is not a version {VERSION} batch manifest")
                continue
            if isinstance(record.get("input"), str):
                self.last[record["input"]] = record

    def append(self, record: dict[str, Any]) -> None:
        """Record an event of one input; it is on disk when this returns."""
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
        self._append(record)
        self.last[record["input"]] = record

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write the batch manifest {self.path}: "
                              f"{exc.strerror}") from None

    def attempts(self, rel: str) -> int:
        """Attempts of `rel` lost to dead workers since its last finished record."""
        record = self.last.get(rel)
        return int(record.get("attempt", 0)) if record and record["status"] == RETRY else 0


@dataclasses.dataclass
class Decision:
    """What a rerun does with one input, and why."""

    action: str  # "run", "skip" or "keep-failed"
    reason: str
    replace_output: bool = False  # the existing output is this batch's own earlier result


def decide(previous: dict[str, Any] | None, input_sha: str, config_sha: str, output: Path,
           retry_failed: bool) -> Decision:
    """Skip what is done and identical, keep a failure unless asked to retry, redo the rest.

    "Identical" means the same input content, the same config hash, and the output on
    disk still hashing to what this batch wrote. An output this batch wrote (its hash is
    the recorded one) may be replaced when its input or config changed: it is the
    batch's own product. Anything else at the output path needs --overwrite.
    """
    if previous is None:
        return Decision("run", "new")
    same_input = previous.get("input_sha256") == input_sha
    same_config = previous.get("config_sha256") == config_sha
    status = previous.get("status")
    recorded = previous.get("output_sha256")
    ours = False
    if recorded and output.is_file():
        try:
            ours = file_sha256(output) == recorded
        except OSError:
            ours = False
    if status in FINISHED:
        if same_input and same_config and ours:
            return Decision("skip", "identical")
        why = ("the input changed" if not same_input else
               "the config changed" if not same_config else
               "the output is missing or was changed")
        return Decision("run", why, replace_output=ours)
    if status == FAILED and same_input and same_config and not retry_failed:
        return Decision("keep-failed", "an earlier run; --retry-failed retries it")
    return Decision("run", "failed before" if status == FAILED else "unfinished",
                    replace_output=ours)
