"""`masquerade` command line: run, restore, tracks, keys, probe, bench, serve, export.

User errors (bad input, config or output) end as one line on stderr and a non-zero exit;
only a bug shows a traceback, and `--debug` shows it for anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

from masquerade import __version__, cli_batch, cli_seals, interrupts
from masquerade.cli_options import RUN_GIVE_UP_AFTER, add_give_up_arg, add_key_args, key_from_args
from masquerade.config import Config, describe_keys, load_config
from masquerade.errors import ConfigError, MasqueradeError, OutputError
from masquerade.redaction import RedactingFormatter, redact

log = logging.getLogger("masquerade")

DEMO_DIR = Path("masquerade-demo")
KEYED_MODES = ("deid", "camouflage")


def _config_help() -> str:
    lines = ["config keys (set with --set KEY=VALUE or in a --config YAML file):"]
    for key, default, help_text in describe_keys(Config):
        lines.append(f"  {key} = {default!r}")
        lines.extend("      " + line for line in textwrap.wrap(help_text, 70))
    return "\n".join(lines)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config (see configs/default.yaml)")
    p.add_argument("--mode", choices=["blur", "pixelate", "solid", "deid", "camouflage"],
                   help="anonymization mode (shortcut for --set anonymizer.mode=...)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override one config key, e.g. --set detector.min_face_px=32 "
                        "(repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    keys = add_key_args(p)
    keys.add_argument("--stream-id", default="default",
                      help="key namespace of this video (restore needs the same one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="masquerade",
        description="Anonymize faces in video files and streams.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'masquerade COMMAND --help' for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"masquerade {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for all errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="anonymize a video file or URL",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Detect, track and anonymize every face; re-encode the video and copy "
                    "audio untouched. With no INPUT, a built-in demo clip is made and "
                    f"anonymized into ./{DEMO_DIR}/.",
        epilog=_config_help(),
    )
    run.add_argument("input", nargs="?", help="video file or http(s)/rtsp URL (default: demo)")
    run.add_argument("-o", "--output", help="output .mp4/.mkv/.mov/.ts, or an rtsp:// or "
                     "rtmp:// URL to push to (default: INPUT_STEM.anonymized.mp4 beside the "
                     "input)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing output")
    run.add_argument("--summary-json", metavar="FILE",
                     help="also write the run summary as JSON (never over the input, nor over "
                          "an existing file without --overwrite)")
    run.add_argument("--strict", action="store_true",
                     help="fail (exit 3, nothing written) when the input ends before the frame "
                          "count its header announces, instead of warning")
    run.add_argument("--seal", action="store_true",
                     help="also seal every covered region's original pixels into OUTPUT.seals "
                          "(encrypted per track under the master key) for `restore --exact`; "
                          "same as --set anonymizer.seal_originals=true; needs a key")
    _add_config_args(run)
    add_give_up_arg(run, f"{RUN_GIVE_UP_AFTER:g} for a live URL")

    restore = sub.add_parser(
        "restore", help="bring back faces: exact originals (--exact) or deid identities",
        description="With --exact: put the sealed original pixels back into every covered "
                    "region of the chosen tracks (needs INPUT.seals, written by `run --seal`, "
                    "and the master key or the tracks' exported keys); a wrong key or a "
                    "tampered seal store is refused and nothing is written. Without: "
                    "re-render every face that `run --mode deid` replaced, inverting the "
                    "keyed identity rotation (needs INPUT.tracks.json beside the video and the "
                    "same key). A key other than the one the video was written with is "
                    "refused (exit 2) unless --allow-wrong-key is given.",
    )
    restore.add_argument("input", help="video written by `masquerade run --mode deid`")
    restore.add_argument("-o", "--output", required=True, help="restored video (.mp4/.mkv)")
    restore.add_argument("--overwrite", action="store_true", help="replace an existing output")
    restore.add_argument("--allow-wrong-key", action="store_true",
                         help="render with a key whose fingerprint differs from the one the "
                              "track log records (the result is just another fake face)")
    cli_seals.add_restore_args(restore)
    _add_config_args(restore)
    cli_seals.add_commands(sub)
    cli_batch.add_command(sub)

    probe = sub.add_parser("probe", help="show what an input holds (streams, fps, rotation)")
    probe.add_argument("input", help="video file or URL")
    probe.add_argument("--json", action="store_true", help="print JSON")

    serve = sub.add_parser(
        "serve", help="anonymize several live cameras (RTSP/RTMP/HLS) in one process",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every stream of a cameras YAML (see configs/cameras.yaml): each "
                    "reconnects on its own, pushes to RTSP/RTMP servers, records segments, "
                    "and/or is served by the built-in RTSP server; Prometheus metrics at "
                    "/metrics and health at /healthz. Stop with Ctrl-C or SIGTERM: "
                    "recordings are finalized.",
    )
    serve.add_argument("--config", required=True, metavar="FILE", help="cameras YAML")
    add_give_up_arg(serve, "forever, or each stream's give_up_after")
    add_key_args(serve, password=False)

    export = sub.add_parser(
        "export", help="write the networks' ONNX files and build TensorRT engines",
        description="Copy every network as ONNX (dynamic batch, opset in the manifest) into "
                    "OUT; with --tensorrt, also build TensorRT engines into the engine cache "
                    "(keyed by model hash, TensorRT version, GPU and precision), so runs with "
                    "--set engine.backend=tensorrt start without building.",
    )
    export.add_argument("-o", "--output", default="masquerade-models", metavar="OUT",
                        help="directory for the ONNX files and manifest.json")
    export.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines")
    export.add_argument("--precision", nargs="+", choices=["fp32", "fp16"], default=["fp16"],
                        help="TensorRT engine precisions (default fp16)")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    export.add_argument("--config", metavar="FILE", help="YAML config (its engine section)")
    export.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append",
                        default=[], help="override a config key, e.g. engine.max_batch=32")

    bench = sub.add_parser(
        "bench", help="time each pipeline stage against the decode+encode floor",
        description="Run the pipeline on INPUT (default: a generated clip) and report "
                    "per-stage ms per frame, end-to-end fps, and the codec-only floor.",
    )
    bench.add_argument("input", nargs="?", help="video file (default: generated 720p clip)")
    bench.add_argument("--models", action="store_true",
                       help="instead: ms per face of every network on every available engine "
                            "backend (and PyTorch) at batch 1/4/16, and end-to-end deid fps "
                            "with 1, 4 and 16 faces")
    bench.add_argument("--json", metavar="FILE", help="write the results as JSON")
    bench.add_argument("--frames", type=int, default=150, help="generated clip length")
    bench.add_argument("--size", default="1280x720", metavar="WxH",
                       help="generated clip size (default 1280x720)")
    _add_config_args(bench)
    return parser


def _load(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if args.mode:
        overrides.append(f"anonymizer.mode={args.mode}")
    if getattr(args, "seal", False):
        overrides.append("anonymizer.seal_originals=true")
    if args.no_progress or not sys.stderr.isatty():
        overrides.append("pipeline.progress=false")
    return load_config(args.config, overrides)


def _key(args: argparse.Namespace, config: Config):
    """The master key when the mode or sealing needs one (never logged, never written
    anywhere)."""
    if config.anonymizer.mode not in KEYED_MODES and not config.anonymizer.seal_originals:
        return None
    return key_from_args(args, confirm=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from masquerade.pipeline.runner import run_file

    config = _load(args)
    key = _key(args, config)
    if args.input is None:
        from masquerade.synthetic import write_clip

        DEMO_DIR.mkdir(exist_ok=True)
        source = DEMO_DIR / "demo_input.mp4"
        write_clip(source)
        log.info("no input given: made the demo clip %s", source)
        output = Path(args.output) if args.output else DEMO_DIR / "demo_anonymized.mp4"
        overwrite = True if not args.output else args.overwrite
        input_url = str(source)
    else:
        input_url = args.input
        if args.output:
            output = Path(args.output)
        elif "://" in input_url:
            raise OutputError("an output (-o) is needed for a URL input")
        else:
            output = Path(input_url).with_name(Path(input_url).stem + ".anonymized.mp4")
        overwrite = args.overwrite
        if "://" not in input_url and output.resolve() == Path(input_url).resolve():
            raise OutputError("output would overwrite the input")
    from masquerade.streams.pyav import is_live_url

    summary = _summary_file(args.summary_json, input_url, output, args.overwrite)
    try:
        if is_live_url(input_url) or is_live_url(str(output)):
            stats = _run_live(input_url, str(output), config, overwrite, key, args.stream_id,
                              args.give_up_after)
            written = str(output)
        else:
            result = run_file(input_url, output, config, overwrite=overwrite, key=key,
                              stream_id=args.stream_id, strict=args.strict,
                              stop=interrupts.STOPPED)
            stats, written = result.stats, str(result.output)
        log.info("%s", stats.summary())
        if summary is not None:
            try:
                summary.write_text(json.dumps(stats.as_dict(), indent=2) + "\n")
                summary.commit()
            except OutputError as exc:
                raise OutputError(f"{exc} (the video {written} was written)") from None
    finally:
        if summary is not None:
            summary.abort()  # drops the reserved temporary file; a no-op once committed
    print(f"wrote {redact(written)}")
    return 0


def _summary_file(path: str | None, input_url: str, output: Path, overwrite: bool):
    """Check and reserve `--summary-json` before the run, under the video's own rules.

    It must never replace the input or the run's other outputs, nor an existing file
    without --overwrite; reserving its temporary file now makes a bad path a one-line
    error in milliseconds rather than a traceback after a long run.
    """
    if path is None:
        return None
    from masquerade.outputs import PendingFile
    from masquerade.pipeline.track_log import track_log_path
    from masquerade.seals.format import seals_path

    taken = {"the output": output, "the output's track log": track_log_path(output),
             "the output's seals": seals_path(output)}
    if "://" not in input_url:
        taken["the input"] = Path(input_url)
    for what, other in taken.items():
        if Path(path).resolve() == Path(other).resolve():
            raise OutputError(f"--summary-json {path} would overwrite {what}")
    return PendingFile(path, overwrite)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.warning("%s: stopping, finalizing outputs", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _run_live(input_url: str, output: str, config: Config, overwrite: bool, key,
              stream_id: str, give_up_after: float | None = None):
    """A live source or a streaming output: run until the source ends or a signal.

    A run that got no frame (a camera that never answered) or whose file was not
    finalized is an error: exit 0 would tell a script that footage exists.
    """
    from masquerade.pipeline.live import LiveRunner, LiveStream
    from masquerade.pipeline.runner import FramePipeline
    from masquerade.streams.live import PyAVStreamSink, ReconnectingSource
    from masquerade.streams.pyav import PyAVFileSink, PyAVSource, is_live_url

    stop = _stop_on_signals()
    if config.anonymizer.seal_originals and is_live_url(output):
        raise ConfigError("--seal keeps the originals beside a recorded file; a stream "
                          f"output ({redact(output)}) has nowhere to keep them")
    pipeline = FramePipeline.from_config(config, key=key, stream_id=stream_id)
    sink = (PyAVStreamSink(output, config.encoder) if is_live_url(output)
            else PyAVFileSink(output, config.encoder, average_rate=None, overwrite=overwrite))
    if config.anonymizer.seal_originals:
        from masquerade.seals.writer import seal_store_factory

        try:
            sink.sidecar = seal_store_factory(key, stream_id, overwrite)(Path(output))
        except BaseException:
            sink.abort()
            raise
    if is_live_url(input_url):
        source = ReconnectingSource(
            lambda: PyAVSource(input_url, timeout=(10.0, 5.0)), input_url, stop=stop,
            give_up_after=RUN_GIVE_UP_AFTER if give_up_after is None else give_up_after)
        health = source.health
    else:
        source, health = _frames_only(PyAVSource(input_url)), None
    stream = LiveStream(name="stream", source=source, pipeline=pipeline, sinks=[sink])
    stream.health = health
    stats = LiveRunner(stream, stop).run()
    if stats.frames_in == 0:
        from masquerade.errors import InputError

        why = f" (last error: {health.last_error})" if health and health.last_error else ""
        raise InputError(redact(f"no frame was received from {input_url}{why}; "
                                "no output was written"))
    if getattr(source, "gave_up", False):
        from masquerade.errors import InputError

        raise InputError(f"{source.label}: {health.last_error} (what came before was written "
                         "to the output)")
    if not is_live_url(output) and not Path(output).is_file():
        raise OutputError(f"{output} was not written (see the error above)")
    return stats


def _frames_only(source):
    from masquerade.streams.frames import Frame

    with source:
        yield from (item for item in source if isinstance(item, Frame))


def _cmd_serve(args: argparse.Namespace) -> int:
    from masquerade.pipeline.serve import Supervisor, load_serve_config

    spec = load_serve_config(args.config)
    if args.key_file or args.password_file:  # the command line wins over the YAML
        spec.key_file, spec.password_file = args.key_file, args.password_file
    if args.give_up_after is not None:
        for stream in spec.streams:
            stream.give_up_after = args.give_up_after or None
    from masquerade.keys.secret import passphrase_prompt

    supervisor = Supervisor(spec, _stop_on_signals(), prompt=passphrase_prompt())
    supervisor.start()
    try:
        supervisor.wait()
    finally:
        supervisor.close()
    for name, stream in supervisor.streams.items():
        log.info("%s: %s", name, stream.stats.summary())
    supervisor.raise_if_all_gave_up()
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from masquerade.pipeline.restore import restore_file

    cli_seals.check_restore_args(args)
    config = _load(args)
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise OutputError("output would overwrite the input")
    if args.exact:
        from masquerade.pipeline.exact_restore import restore_exact

        keys = cli_seals.seal_keys_from_args(args)
        result = restore_exact(args.input, args.output, config, keys, tracks=args.tracks,
                               overwrite=args.overwrite, lossless=args.lossless)
        log.info("%s", result.stats.summary())
        print(f"wrote {result.output}")
        return 0
    if args.lossless:
        from masquerade.pipeline.exact_restore import lossless_encoder

        config = lossless_encoder(config)
    key = key_from_args(args)
    result = restore_file(args.input, args.output, config, key, overwrite=args.overwrite,
                          allow_wrong_key=args.allow_wrong_key)
    log.info("%s", result.stats.summary())
    print(f"wrote {result.output}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from masquerade.streams import probe

    info = probe(args.input).as_dict()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:12s} {value}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from masquerade.benchmark import model_table, run_benchmark, run_model_benchmark

    config = _load(args)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 1920x1080") from None
    if args.models:
        report = run_model_benchmark(config, frames=min(args.frames, 60), size=(width, height))
        text = model_table(report)
    else:
        report = run_benchmark(args.input, config, frames=args.frames, size=(width, height))
        text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from masquerade.engines.export import export_models

    config = load_config(args.config, args.overrides)
    manifest = export_models(args.output, config.engine, tensorrt=args.tensorrt,
                             precisions=tuple(args.precision), overwrite=args.overwrite)
    for name, entry in manifest["networks"].items():
        print(f"{name:18s} {entry['file']:24s} opset {entry['opset']}  {entry['sha256'][:12]}")
    for entry in manifest["tensorrt"]:
        print(f"{entry['network']:18s} TensorRT {entry['precision']} -> {entry['plan']}")
    print(f"wrote {Path(args.output) / 'manifest.json'}")
    return 0


COMMANDS = {"run": _cmd_run, "restore": _cmd_restore, "tracks": cli_seals.cmd_tracks,
            "keys": cli_seals.cmd_keys, "probe": _cmd_probe,
            "bench": _cmd_bench, "serve": _cmd_serve, "export": _cmd_export,
            "batch": cli_batch.cmd_batch}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * (1 + args.verbose)
    handler = logging.StreamHandler(sys.stderr)  # every line redacted: URLs carry passwords
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=max(level, logging.DEBUG), handlers=[handler])
    os.environ.setdefault("GLOG_minloglevel", "2")
    previous = interrupts.install()  # SIGTERM aborts a run as Ctrl-C does
    try:
        return COMMANDS[args.command](args)
    except MasqueradeError as exc:
        if args.debug:
            raise
        print(f"masquerade: error: {redact(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if interrupts.terminated():
            print("masquerade: terminated (SIGTERM); no output was written", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("masquerade: interrupted; no output was written", file=sys.stderr)
        return 130
    finally:
        interrupts.uninstall(previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
