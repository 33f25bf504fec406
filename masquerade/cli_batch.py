"""`masquerade batch`: the command line of many-file runs on Ray (`masquerade.batch`).

Kept apart from `cli` because its questions are its own: which inputs a SRC names, how
many workers, where the cluster is, and how a worker on another machine gets the key
without the key travelling in a task argument.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from masquerade import interrupts
from masquerade.cli_options import add_key_args, key_from_args
from masquerade.config import load_config

log = logging.getLogger(__name__)

KEYED_MODES = ("deid", "camouflage")

DESCRIPTION = """\
Anonymize many files on a pool of Ray workers, resumably.

SRC is a video file, a folder (searched recursively for video extensions; hidden files
and anything under OUTDIR are left out), a glob ('cams/*/2024-*.mp4', quoted; '**'
allowed) or a list file (.txt/.lst/.list: one SRC per line, relative to the list's
folder, '#' comments). Outputs mirror the input tree under OUTDIR, named as `run` names
them: footage/cam1/a.mp4 given as the folder 'footage' lands in
OUTDIR/cam1/a.anonymized.mp4 (with a.anonymized.mp4.tracks.json in deid mode and
.seals with --seal). Each is written to a hidden temporary file and renamed when
complete; an existing file is never replaced without --overwrite, except an output this
batch wrote itself (its hash is in the manifest) whose input or config changed.

Every `run` option works: --config, --set, --mode (blur, pixelate, solid, deid,
camouflage), --seal, --strict and the keys. Each file's key namespace (deid stream id)
is its relative path (after --stream-id PREFIX/ when given), recorded in its track log
and seal store, so `masquerade restore` works on any output alone.

Ray: without --address (or RAY_ADDRESS) a local Ray runtime starts on this machine
and stops at the end; no cluster, no dashboard needed. With --address HOST:PORT the same
job runs on that cluster: every node needs masquerade installed and must see SRC and
OUTDIR at the same paths (a shared file system). Each worker is a Ray actor that loads
the networks once and then takes file after file.

Resume: OUTDIR/masquerade-batch.jsonl records for every input its content hash, the
config hash, status, output hash, frames, fps and errors. Running the same command
again skips what is done and identical, redoes what changed (input, config, key, or a
missing output), and leaves earlier failures failed unless --retry-failed.

Faults: a worker process or node that dies mid-file has its partial files removed and
the file retried on another worker (at most --max-attempts attempts); an input that
fails (not a video, unreadable) is recorded with its one-line error and the batch goes
on. The exit status is 0 only when every input is done (or skipped as identical); else
a table lists the failures and the exit status is theirs (3 input, 4 output) or 1.

Keys (deid, camouflage, --seal): the key never travels in a task argument or a log.
With --key-file or --password-file, each worker reads that path itself: it must exist,
mode 0600, at the same path on every node (a mount only the job's user can read). With
MASQUERADE_KEY, MASQUERADE_PASSWORD, --password or a prompt, the master key is given to
the workers as MASQUERADE_KEY in the job's Ray runtime environment: not a task argument,
but visible to whoever operates the cluster (Ray's job table and logs). Each worker
checks that the key it found has the driver's fingerprint.
"""

EPILOG = """\
examples:
  masquerade batch footage/ -o anon/ --mode pixelate
  masquerade batch 'cams/*/2024-05-*.mp4' list.txt -o anon/ --workers 2
  masquerade batch footage/ -o anon/ --mode deid --key-file /mnt/keys/masquerade.key \\
      --address 10.0.0.5:6379
  masquerade batch footage/ -o anon/ --retry-failed    # after fixing the failed inputs
"""


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="anonymize many files on Ray (local or a cluster), "
                                     "resumably",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="video file, folder, glob or list file (repeatable)")
    p.add_argument("-o", "--output-dir", required=True, metavar="OUTDIR",
                   help="where the outputs (mirroring the input tree) and the manifest go; "
                        "created if missing")
    p.add_argument("--format", choices=["mp4", "mkv", "mov", "ts"], default="mp4",
                   help="output container (default mp4, as `run`)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs that this batch did not write")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again the inputs that failed before, unchanged")
    p.add_argument("--strict", action="store_true",
                   help="an input that ends before the frame count its header announces "
                        "fails (as `run --strict`) instead of a warning")
    p.add_argument("--seal", action="store_true",
                   help="also seal the covered originals (OUTPUT.seals) as `run --seal`; "
                        "needs a key")
    ray_group = p.add_argument_group("workers and cluster")
    ray_group.add_argument("--workers", type=_positive_int, metavar="N",
                           help="actors, each holding the networks once (default: the "
                                "cluster's CPUs / --cpus-per-file)")
    ray_group.add_argument("--cpus-per-file", type=_positive_float, metavar="X",
                           help="CPUs each worker reserves (default: engine.threads when "
                                "set, else 1)")
    ray_group.add_argument("--gpus-per-file", type=_non_negative_float, metavar="X",
                           help="GPUs each worker reserves (default: 1 when engine.backend="
                                "tensorrt or engine.device=cuda, else 0)")
    ray_group.add_argument("--max-attempts", type=_positive_int, default=3, metavar="N",
                           help="attempts per file when workers die under it (default 3)")
    ray_group.add_argument("--address", metavar="HOST:PORT",
                           help="a running Ray cluster (default: RAY_ADDRESS, else a local "
                                "runtime started for this job)")
    p.add_argument("--config", metavar="FILE", help="YAML config (see configs/default.yaml)")
    p.add_argument("--mode", choices=["blur", "pixelate", "solid", "deid", "camouflage"],
                   help="anonymization mode (shortcut for --set anonymizer.mode=...)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override one config key, as `run` (repeatable; see `run --help`)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    keys = add_key_args(p)
    keys.add_argument("--stream-id", metavar="PREFIX", default="",
                      help="key namespace prefix: each file's stream id is PREFIX/RELPATH "
                           "(default: RELPATH)")


def cmd_batch(args: argparse.Namespace) -> int:
    from masquerade.batch.job import BatchFailed, BatchOptions, format_report, run_batch

    overrides = list(args.overrides)
    if args.mode:
        overrides.append(f"anonymizer.mode={args.mode}")
    if args.seal:
        overrides.append("anonymizer.seal_originals=true")
    config = load_config(args.config, overrides)
    key, key_source, worker_env = _keys(args, config)
    opts = BatchOptions(
        sources=args.sources, outdir=Path(args.output_dir), config=config, fmt=args.format,
        overwrite=args.overwrite, retry_failed=args.retry_failed, strict=args.strict,
        workers=args.workers, cpus_per_file=args.cpus_per_file,
        gpus_per_file=args.gpus_per_file, max_attempts=args.max_attempts,
        address=args.address, stream_prefix=args.stream_id,
        progress=not args.no_progress and sys.stderr.isatty(),
        verbose=args.verbose > 0, key=key, key_source=key_source, worker_env=worker_env)
    try:
        report = run_batch(opts)
    except KeyboardInterrupt:
        code = 128 + signal.SIGTERM if interrupts.terminated() else 130
        print("masquerade: interrupted; finished files are kept and recorded, files in "
              "progress were discarded; run the same command again to resume",
              file=sys.stderr)
        return code
    print(format_report(report, opts.outdir))
    if not report.ok:
        raise BatchFailed(report)
    return 0


def _keys(args: argparse.Namespace, config):
    """(key, where workers find it, env for the job's runtime) when the mode needs one.

    The driver loads the key too: a bad key fails here in one line, before Ray starts,
    and its public fingerprint lets each worker check it found the same key.
    """
    from masquerade.batch.workers import KeySource
    from masquerade.keys.secret import ENV_VAR

    if config.anonymizer.mode not in KEYED_MODES and not config.anonymizer.seal_originals:
        return None, None, {}
    key = key_from_args(args, confirm=True)
    if args.key_file:
        return key, KeySource("file", os.path.abspath(args.key_file), key.key_id()), {}
    if args.password_file:
        return key, KeySource("password-file", os.path.abspath(args.password_file),
                              key.key_id()), {}
    # From the environment, --password or a prompt: the stretched key, not the passphrase,
    # goes to the workers through the job's runtime environment (see DESCRIPTION).
    return key, KeySource("env", ENV_VAR, key.key_id()), {ENV_VAR: key.to_hex()}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value
