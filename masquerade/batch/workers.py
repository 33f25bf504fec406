"""The batch worker: a Ray actor that holds the networks and anonymizes one file per call.

Loading the detector and the deid/camouflage networks costs far more than a short clip
takes to process, so each actor loads them once, at start. The engine layer keeps one
engine per network file and settings per process (`engines.engine.load_engine`), so the
`FramePipeline` built for each file reuses the actor's networks and costs milliseconds;
it is still built per file because its tracker, per-track identity caches and MediaPipe
hand tracking hold state that must never leak from one file (one person) into the next,
and because keyed modes bake the file's stream id into the track passwords.

The master key never travels as an argument: the actor is told where to find it (a key
or password file path, which every node must be able to read, or the name of an
environment variable the job's runtime environment sets) and the public fingerprint
the driver saw, and refuses to work with a key that does not match it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Literal

from masquerade.batch.manifest import DONE, FAILED, file_sha256
from masquerade.config import Config
from masquerade.errors import MasqueradeError
from masquerade.keys.secret import (
    KeyMaterialError,
    SecretKey,
    read_password_file,
)
from masquerade.pipeline.runner import FramePipeline
from masquerade.redaction import redact

log = logging.getLogger(__name__)

WARM_UP_STREAM = "masquerade/batch/warm-up"


@dataclass(frozen=True)
class KeySource:
    """Where a worker reads the master key: a path or a variable name, never the key."""

    kind: Literal["file", "password-file", "env"]
    where: str  # an absolute path, or an environment variable's name
    key_id: str  # the public fingerprint the driver loaded

    def load(self) -> SecretKey:
        if self.kind == "file":
            key = SecretKey.from_file(self.where)
        elif self.kind == "password-file":
            key = SecretKey.from_passphrase(read_password_file(self.where))
        else:
            text = os.environ.get(self.where)
            if text is None:
                raise KeyMaterialError(
                    f"{self.where} is not set on worker node {socket.gethostname()} (the "
                    "job's runtime environment should carry it)")
            key = SecretKey.from_text(text)
        if key.key_id() != self.key_id:
            raise KeyMaterialError(
                f"the key that worker node {socket.gethostname()} reads from {self.where} is "
                f"not the driver's (fingerprint {key.key_id()}, expected {self.key_id})")
        return key


@dataclass(frozen=True)
class FileTask:
    """One input for one attempt: paths and names only."""

    rel: str
    source: str
    output: str
    stream_id: str
    overwrite: bool
    strict: bool
    attempt: int


class _CountingPipeline(FramePipeline):
    """A `FramePipeline` that reports each frame it hands to the encoder.

    `run_file` has its own progress bar, which is off in workers; this is how the actor
    knows how far its file is, for the driver's one bar over the whole job.
    """

    counter: Any = None

    def push(self, frame):  # type: ignore[no-untyped-def]
        out = super().push(frame)
        if out and self.counter is not None:
            self.counter(len(out))
        return out

    def drain(self):  # type: ignore[no-untyped-def]
        out = super().drain()
        if out and self.counter is not None:
            self.counter(len(out))
        return out


class BatchWorker:
    """The actor's class (wrapped with `ray.remote` by the driver).

    Construction never raises for a user error: a missing key on this node or a model
    that cannot load is kept and reported by `info`, so the driver can print it as one
    line instead of an actor-death traceback.
    """

    def __init__(self, config: Config, key_source: KeySource | None) -> None:
        logging.basicConfig(level=logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        os.environ.setdefault("GLOG_minloglevel", "2")
        # run_file's own bar would print from every worker; the driver shows one bar.
        self.config = dataclasses.replace(
            config, pipeline=dataclasses.replace(config.pipeline, progress=False))
        self.key: SecretKey | None = None
        self.error: tuple[str, int] | None = None
        self.current: str | None = None
        self.frames = 0
        start = time.perf_counter()
        try:
            self.key = key_source.load() if key_source is not None else None
            # Loads every network into the process-wide engine cache, once.
            FramePipeline.from_config(self.config, key=self.key, stream_id=WARM_UP_STREAM)
        except MasqueradeError as exc:
            self.error = (redact(exc), exc.exit_code)
        self.load_seconds = time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        """Who this actor is (for logs and the manifest) and whether it can work."""
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "load_seconds": round(self.load_seconds, 3), "error": self.error}

    def progress(self) -> tuple[str | None, int]:
        """(the input in progress, frames written of it): polled while `run` works."""
        return self.current, self.frames

    def run(self, task: FileTask) -> dict[str, Any]:
        """Anonymize one file; a failure is returned with its one-line error, not raised:
        one bad input must not look like a dead worker."""
        from masquerade.pipeline.runner import run_file

        self.current, self.frames = task.rel, 0
        start = time.perf_counter()
        result: dict[str, Any] = {"input": task.rel, "attempt": task.attempt,
                                  "worker": {"pid": os.getpid(), "host": socket.gethostname()}}
        try:
            if self.error is not None:
                raise MasqueradeError(self.error[0])
            built = time.perf_counter()
            pipeline = _CountingPipeline.from_config(self.config, key=self.key,
                                                     stream_id=task.stream_id)
            pipeline.counter = self._count
            result["pipeline_build_seconds"] = round(time.perf_counter() - built, 4)
            written = run_file(task.source, task.output, self.config,
                               overwrite=task.overwrite, pipeline=pipeline, key=self.key,
                               stream_id=task.stream_id, strict=task.strict)
            stats = written.stats
            seconds = time.perf_counter() - start
            result.update(status=DONE, frames=stats.frames_out, frames_in=stats.frames_in,
                          seconds=round(seconds, 3),
                          frames_per_second=round(stats.frames_out / max(seconds, 1e-9), 2),
                          output_sha256=file_sha256(written.output),
                          warnings=list(stats.warnings), summary=stats.summary())
        except MasqueradeError as exc:
            result.update(status=FAILED, error=_one_line(redact(exc)), exit_code=exc.exit_code,
                          seconds=round(time.perf_counter() - start, 3))
        except Exception as exc:  # a bug: still this file's failure, not the batch's
            log.exception("%s failed", task.rel)
            result.update(status=FAILED, error=_one_line(redact(f"{type(exc).__name__}: {exc}")),
                          exit_code=1, seconds=round(time.perf_counter() - start, 3))
        finally:
            self.current = None
        return result

    def _count(self, n: int) -> None:
        self.frames += n


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
