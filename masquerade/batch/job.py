"""The driver of `masquerade batch`: plan, dispatch to the actor pool, retry, report.

Ray places the actors and tells the driver when one dies (its pending call raises
`RayActorError`); everything here is bookkeeping on top: which input goes to which idle
actor, what the manifest records, one progress bar, and the final table. An input whose
worker died is queued again (at most `max_attempts` attempts) on a fresh actor, which
Ray places wherever resources remain, after the dead worker's partial files are removed.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import glob
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from masquerade.batch.inputs import BatchInput, expand_sources
from masquerade.batch.manifest import (
    DONE,
    FAILED,
    RETRY,
    SKIPPED,
    Manifest,
    config_sha256,
    decide,
    file_sha256,
)
from masquerade.batch.workers import BatchWorker, FileTask, KeySource
from masquerade.config import Config
from masquerade.errors import MasqueradeError, OutputError
from masquerade.keys.secret import SecretKey

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
# A local runtime only passes small results between processes: a small object store
# keeps Ray from reserving a third of the machine's shared memory.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
ACTOR_START_WARNING_SECONDS = 60.0


@dataclass
class BatchOptions:
    """Everything a batch needs besides the key bytes (which stay in the CLI's hands)."""

    sources: list[str]
    outdir: Path
    config: Config
    fmt: str = "mp4"
    overwrite: bool = False
    retry_failed: bool = False
    strict: bool = False
    workers: int | None = None
    cpus_per_file: float | None = None
    gpus_per_file: float | None = None
    max_attempts: int = 3
    address: str | None = None
    stream_prefix: str = ""
    progress: bool = True
    verbose: bool = False
    key: SecretKey | None = None
    key_source: KeySource | None = None
    # Set in the job's runtime environment for every worker (a key from MASQUERADE_KEY,
    # MASQUERADE_PASSWORD or a prompt): never logged, never a task argument.
    worker_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Planned:
    item: BatchInput
    output: Path
    task: FileTask
    input_sha: str
    frames: int  # expected, from the header (0 when unknown)
    fps: float | None


@dataclass
class BatchReport:
    inputs: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, int]] = field(default_factory=list)  # (input, error, code)
    retries: int = 0
    frames: int = 0
    seconds: float = 0.0
    workers: int = 0
    manifest: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and len(self.done) + len(self.skipped) == self.inputs


def default_cpus_per_file(config: Config) -> float:
    """The CPUs one file's pipeline reserves: `engine.threads` when set, else 1.

    Each file runs decode, networks and encode in threads of one process; 1 CPU per
    file fills a machine with one worker per core, which measured best on small clips.
    """
    return float(config.engine.threads) if config.engine.threads > 0 else 1.0


def default_gpus_per_file(config: Config) -> float:
    """A whole GPU per worker when its networks run on CUDA (TensorRT or ORT's CUDA)."""
    return 1.0 if config.engine.backend == "tensorrt" or config.engine.device == "cuda" else 0.0


def run_batch(opts: BatchOptions) -> BatchReport:
    """Run (or resume) the batch; returns what happened to every input."""
    started = time.perf_counter()
    outdir = opts.outdir
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"output folder {outdir} is a file")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {outdir}: {exc.strerror}") from None
    inputs = expand_sources(opts.sources, outdir, opts.fmt)
    manifest = Manifest(outdir)
    report = BatchReport(inputs=len(inputs), manifest=manifest.path)
    config_sha = config_sha256(opts.config, fmt=opts.fmt, stream_prefix=opts.stream_prefix,
                               key_id=opts.key.key_id() if opts.key else None,
                               strict=opts.strict)
    planned = _plan(opts, inputs, manifest, config_sha, report)
    if planned:
        _dispatch(opts, planned, manifest, config_sha, report)
    report.seconds = time.perf_counter() - started
    return report


def _plan(opts: BatchOptions, inputs: list[BatchInput], manifest: Manifest, config_sha: str,
          report: BatchReport) -> list[Planned]:
    """Hash every input, decide skip/keep-failed/run, and probe what will run."""
    planned = []
    for item in inputs:
        output = opts.outdir / item.output_rel(opts.fmt)
        stream_id = item.stream_id(opts.stream_prefix)
        base = {"input": item.rel, "source": str(item.source), "output": item.output_rel(opts.fmt),
                "stream_id": stream_id, "config_sha256": config_sha}
        try:
            input_sha = file_sha256(item.source)
        except OSError as exc:
            error = f"cannot read {item.source}: {exc.strerror}"
            manifest.append({**base, "status": FAILED, "error": error, "exit_code": 3})
            report.failed.append((item.rel, error, 3))
            continue
        base["input_sha256"] = input_sha
        previous = manifest.last.get(item.rel)
        decision = decide(previous, input_sha, config_sha, output, opts.retry_failed)
        if decision.action == "skip":
            assert previous is not None
            kept = {k: previous.get(k) for k in ("output_sha256", "frames", "fps")}
            manifest.append({**base, **kept, "status": SKIPPED, "reason": decision.reason})
            report.skipped.append(item.rel)
            continue
        if decision.action == "keep-failed":
            assert previous is not None
            error = str(previous.get("error") or "failed")
            report.failed.append((item.rel, f"{error} [{decision.reason}]",
                                  int(previous.get("exit_code") or 1)))
            continue
        if output.resolve() == item.source:
            error = f"output {output} would overwrite the input"
            manifest.append({**base, "status": FAILED, "error": error, "exit_code": 4})
            report.failed.append((item.rel, error, 4))
            continue
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error = f"cannot create output folder {output.parent}: {exc.strerror}"
            manifest.append({**base, "status": FAILED, "error": error, "exit_code": 4})
            report.failed.append((item.rel, error, 4))
            continue
        frames, fps = _probe(item.source)
        log.debug("%s: run (%s)", item.rel, decision.reason)
        attempt = manifest.attempts(item.rel) + 1 if decision.reason == "unfinished" else 1
        task = FileTask(rel=item.rel, source=str(item.source), output=str(output),
                        stream_id=stream_id, overwrite=opts.overwrite or decision.replace_output,
                        strict=opts.strict, attempt=min(attempt, opts.max_attempts))
        planned.append(Planned(item, output, task, input_sha, frames, fps))
    return planned


def _probe(path: Path) -> tuple[int, float | None]:
    """Frames and frame rate from the header, for the progress bar and the manifest.

    A file that cannot be opened here is left to its worker, whose error is the one
    recorded.
    """
    from masquerade.streams import PyAVSource

    try:
        with PyAVSource(str(path)) as source:
            info = source.info
            rate = float(info.average_rate) if info.average_rate else None
            return int(info.frames or 0), rate
    except Exception:  # the worker reports this file's real error
        return 0, None


def start_ray(opts: BatchOptions) -> bool:
    """Connect to the cluster at --address / RAY_ADDRESS, or start a local runtime.

    Returns whether a runtime was started here. The dashboard is never started: a batch
    must not depend on it (a cluster may run its own). Worker output stays in Ray's log
    files unless --verbose, so the terminal shows one progress bar.
    """
    import ray

    if not opts.verbose:
        # Ray's notice that its token authentication is on (as it should be) is not
        # something a batch user must act on.
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    address = opts.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING,
                              "log_to_driver": opts.verbose,
                              "namespace": "masquerade-batch"}
    if opts.worker_env:
        kwargs["runtime_env"] = {"env_vars": dict(opts.worker_env)}
    try:
        if address:
            _check_reachable(address)
            ray.init(address=address, **kwargs)
            log.info("connected to the Ray cluster at %s", address)
            return False
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise MasqueradeError(f"cannot start or reach {where}: "
                              f"{' '.join(str(exc).split())}") from None
    log.info("started a local Ray runtime (%d CPUs)", os.cpu_count() or 1)
    return True


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail in seconds, with one line, when HOST:PORT does not answer.

    Ray itself keeps retrying an unreachable head for minutes, logging as it goes.
    """
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise MasqueradeError(f"cannot reach the Ray cluster at {address}: {reason}") from None


class _Pool:
    """The actors: starting, replacing the dead, and which are idle."""

    def __init__(self, opts: BatchOptions, size: int, cpus: float, gpus: float) -> None:
        import ray

        self.opts = opts
        options: dict[str, Any] = {"num_cpus": cpus, "max_restarts": 0, "max_task_retries": 0,
                                   "max_concurrency": 2}  # `progress` answers during `run`
        if gpus:
            options["num_gpus"] = gpus
        self.actor_class = ray.remote(BatchWorker).options(**options)
        self.starting: dict[Any, Any] = {}  # info ref -> actor
        self.idle: collections.deque = collections.deque()
        self.info: dict[Any, dict[str, Any]] = {}  # actor -> its info
        self.started = 0
        # Replacements are bounded: a config that kills every worker must end the batch.
        self.budget = size * (1 + opts.max_attempts)
        for _ in range(size):
            self.add()

    def add(self) -> bool:
        if self.started >= self.budget:
            return False
        actor = self.actor_class.remote(self.opts.config, self.opts.key_source)
        self.starting[actor.info.remote()] = actor
        self.started += 1
        return True

    def collect_started(self, timeout: float) -> None:
        """Move actors whose start finished into `idle`; a start error ends the batch."""
        import ray
        from ray.exceptions import RayActorError

        if not self.starting:
            return
        ready, _ = ray.wait(list(self.starting), num_returns=len(self.starting),
                            timeout=timeout)
        for ref in ready:
            actor = self.starting.pop(ref)
            try:
                info = ray.get(ref)
            except RayActorError as exc:
                log.warning("a worker died while starting (%s); starting another",
                            _first_line(exc))
                self.add()
                continue
            if info["error"] is not None:
                message, code = info["error"]
                error = MasqueradeError(f"worker on {info['host']}: {message}")
                error.exit_code = code
                raise error
            log.debug("worker pid %d on %s ready (networks loaded in %.1f s)", info["pid"],
                      info["host"], info["load_seconds"])
            self.info[actor] = info
            self.idle.append(actor)

    def kill_all(self) -> None:
        import ray

        for actor in [*self.info, *self.starting.values()]:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor)


def _dispatch(opts: BatchOptions, planned: list[Planned], manifest: Manifest,
              config_sha: str, report: BatchReport) -> None:
    import ray
    from ray.exceptions import RayActorError

    started_here = start_ray(opts)
    pool: _Pool | None = None
    inflight: dict[Any, tuple[Any, Planned]] = {}  # run ref -> (actor, planned)
    try:
        cpus = opts.cpus_per_file or default_cpus_per_file(opts.config)
        gpus = default_gpus_per_file(opts.config) if opts.gpus_per_file is None \
            else opts.gpus_per_file
        cluster_cpus = float(ray.cluster_resources().get("CPU", 1))
        size = opts.workers or max(1, math.floor(cluster_cpus / cpus))
        size = min(size, len(planned))
        if opts.workers and opts.workers * cpus > cluster_cpus:
            log.warning("--workers %d x %g CPUs is more than the cluster's %g CPUs: some "
                        "workers wait for resources", opts.workers, cpus, cluster_cpus)
        report.workers = size
        log.info("%d input(s) to run on %d worker(s), %g CPU(s)%s each", len(planned), size,
                 cpus, f" and {gpus:g} GPU(s)" if gpus else "")
        pool = _Pool(opts, size, cpus, gpus)
        queue = collections.deque(planned)
        expected = {p.item.rel: p.frames for p in planned}
        partial: dict[str, int] = {}  # frames written so far of the files in flight
        finished_frames = 0
        bar = tqdm(total=sum(expected.values()), unit="frame", desc="batch", file=sys.stderr,
                   disable=not opts.progress, dynamic_ncols=True)
        files_total = len(planned)
        waiting_since = time.monotonic()
        warned = False
        try:
            while queue or inflight:
                pool.collect_started(0 if inflight else POLL_SECONDS)
                while queue and pool.idle:
                    actor = pool.idle.popleft()
                    item = queue.popleft()
                    inflight[actor.run.remote(item.task)] = (actor, item)
                    log.debug("%s: attempt %d on worker pid %d", item.item.rel,
                              item.task.attempt, pool.info[actor]["pid"])
                if not inflight:
                    if not pool.starting and queue and not pool.add():
                        raise MasqueradeError("no worker could be started (see the log)")
                    if not warned and time.monotonic() - waiting_since > \
                            ACTOR_START_WARNING_SECONDS:
                        log.warning("still waiting for a worker: the cluster may lack %g CPU(s)"
                                    "%s free", cpus, f" and {gpus:g} GPU(s)" if gpus else "")
                        warned = True
                    continue
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_SECONDS)
                for ref in done:
                    actor, item = inflight.pop(ref)
                    rel = item.item.rel
                    partial.pop(rel, None)
                    try:
                        result = ray.get(ref)
                    except RayActorError as exc:
                        lost = _worker_lost(opts, pool, actor, item, exc, manifest, config_sha,
                                            report)
                        if lost is not None:
                            queue.appendleft(lost)
                        else:
                            bar.total -= expected[rel]
                        continue
                    pool.idle.append(actor)
                    _record(result, item, manifest, config_sha, report)
                    if result["status"] == DONE:
                        finished_frames += expected[rel]
                    else:
                        bar.total -= expected[rel]
                    bar.refresh()
                partial.update(_poll_progress(inflight))
                bar.update(finished_frames + sum(partial.values()) - bar.n)
                bar.set_postfix_str(f"files {len(report.done)}/{files_total}"
                                    + (f", {len(report.failed)} failed" if report.failed else ""),
                                    refresh=False)
        finally:
            bar.close()
    except BaseException:
        for actor, item in inflight.values():
            pid = pool.info.get(actor, {}).get("pid") if pool else None
            if pool:
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(actor)
            if pid:
                _remove_partials(item.output, pid)
        raise
    finally:
        if pool is not None:
            pool.kill_all()
        if started_here or ray.is_initialized():
            ray.shutdown()


def _poll_progress(inflight: dict[Any, tuple[Any, Planned]]) -> dict[str, int]:
    """Frames written so far by each busy worker (those that answer within a poll)."""
    import ray

    refs = {actor.progress.remote(): item.item.rel for actor, item in inflight.values()}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=POLL_SECONDS)
    out = {}
    for ref in ready:
        try:
            current, frames = ray.get(ref)
        except Exception:  # a dying worker: its run call will tell
            continue
        if current == refs[ref]:
            out[current] = frames
    return out


def _worker_lost(opts: BatchOptions, pool: _Pool, actor: Any, item: Planned, exc: Exception,
                 manifest: Manifest, config_sha: str, report: BatchReport) -> Planned | None:
    """The worker running `item` died: clean up, record, and requeue within the bound."""
    info = pool.info.pop(actor, {})
    pid, host = info.get("pid"), info.get("host", "?")
    if pid:
        for path in _remove_partials(item.output, pid):
            log.info("removed %s, left by the dead worker", path)
    task = item.task
    why = f"worker pid {pid} on {host} died mid-file ({_first_line(exc)})"
    base = {"input": task.rel, "source": task.source, "output": item.item.output_rel(opts.fmt),
            "stream_id": task.stream_id, "input_sha256": item.input_sha,
            "config_sha256": config_sha, "attempt": task.attempt,
            "worker": {"pid": pid, "host": host}}
    report.retries += 1
    if task.attempt < opts.max_attempts:
        pool.add()  # Ray places it wherever resources remain: another node if this one died
        log.warning("%s: %s; retrying (attempt %d of %d)", task.rel, why, task.attempt + 1,
                    opts.max_attempts)
        manifest.append({**base, "status": RETRY, "error": why})
        return dataclasses.replace(item, task=dataclasses.replace(task, attempt=task.attempt + 1))
    error = f"gave up after {task.attempt} attempts: {why}"
    log.warning("%s: %s", task.rel, error)
    manifest.append({**base, "status": FAILED, "error": error, "exit_code": 1})
    report.failed.append((task.rel, error, 1))
    return None


def _record(result: dict[str, Any], item: Planned, manifest: Manifest, config_sha: str,
            report: BatchReport) -> None:
    rel = item.item.rel
    record = {"input": rel, "source": item.task.source, "output": _output_rel(item),
              "stream_id": item.task.stream_id, "input_sha256": item.input_sha,
              "config_sha256": config_sha, "fps": item.fps,
              **{k: v for k, v in result.items() if k not in ("input", "summary")}}
    manifest.append(record)
    if result["status"] == DONE:
        report.done.append(rel)
        report.frames += int(result.get("frames") or 0)
        log.debug("%s: %s", rel, result.get("summary", "done"))
    else:
        report.failed.append((rel, str(result.get("error")), int(result.get("exit_code") or 1)))
        log.warning("%s failed: %s", rel, result.get("error"))


def _output_rel(item: Planned) -> str:
    return item.item.output_rel(Path(item.output).suffix.lstrip("."))


def _remove_partials(output: Path, pid: int) -> list[Path]:
    """Delete the temporary files a dead worker left for `output` and its side files.

    Matched by the worker's PID in the name (`outputs.make_partial`), which the driver
    knows: on a cluster the dead worker's node may be gone, and a PID check on this
    machine would say nothing about it.
    """
    from masquerade.pipeline.track_log import track_log_path
    from masquerade.seals.format import seals_path

    removed = []
    for target in (output, track_log_path(output), seals_path(output)):
        pattern = f".{glob.escape(target.stem)}.{pid}-*.partial{glob.escape(target.suffix)}"
        for path in target.parent.glob(pattern):
            try:
                path.unlink()
            except OSError as exc:
                log.warning("cannot remove %s, left by a dead worker: %s", path, exc.strerror)
                continue
            removed.append(path)
    return removed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def format_report(report: BatchReport, outdir: Path) -> str:
    """The final lines: counts, throughput, and a table of every failure."""
    lines = [f"batch: {len(report.done)} done, {len(report.skipped)} skipped (identical), "
             f"{len(report.failed)} failed of {report.inputs} input(s) -> {outdir}"]
    if report.done:
        rate = report.frames / max(report.seconds, 1e-9)
        lines.append(f"{report.frames} frames in {report.seconds:.1f} s ({rate:.1f} frames/s) "
                     f"on {report.workers} worker(s)"
                     + (f"; {report.retries} attempt(s) lost with a worker" if report.retries
                        else ""))
    if report.failed:
        width = max(len("INPUT"), *(len(rel) for rel, _, _ in report.failed))
        lines.append(f"{'INPUT':<{width}}  EXIT  ERROR")
        lines.extend(f"{rel:<{width}}  {code:>4}  {error}" for rel, error, code in report.failed)
    lines.append(f"manifest: {report.manifest}")
    return "\n".join(lines)


class BatchFailed(MasqueradeError):
    """Some inputs were not done; the exit code is theirs when they agree, else 1."""

    def __init__(self, report: BatchReport) -> None:
        codes = {code for _, _, code in report.failed}
        self.exit_code = codes.pop() if len(codes) == 1 else 1
        n = len(report.failed)
        super().__init__(f"{n} of {report.inputs} input(s) failed (table above); fix them and "
                         "rerun with --retry-failed: finished files are skipped")
