"""`masquerade` command line: run, restore, probe, bench, serve, export.

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

from masquerade import __version__
from masquerade.config import Config, describe_keys, load_config
from masquerade.errors import ConfigError, MasqueradeError, OutputError

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
    keys = p.add_argument_group("keys (modes deid and camouflage)")
    keys.add_argument("--password", metavar="TEXT",
                      help="passphrase (>= 8 characters, stretched with scrypt) from which "
                           "every track's key derives")
    keys.add_argument("--key-file", metavar="PATH",
                      help="master key file (hex or 32 raw bytes, mode 0600); or set "
                           "MASQUERADE_KEY")
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
    run.add_argument("--summary-json", metavar="FILE", help="also write the run summary as JSON")
    _add_config_args(run)

    restore = sub.add_parser(
        "restore", help="bring back the original identities of a deid video, with the key",
        description="Re-render every face that `run --mode deid` replaced, inverting the "
                    "keyed identity rotation (needs INPUT.tracks.json beside the video and the "
                    "same --password/--key-file). A wrong key yields other fake faces, "
                    "not an error.",
    )
    restore.add_argument("input", help="video written by `masquerade run --mode deid`")
    restore.add_argument("-o", "--output", required=True, help="restored video (.mp4/.mkv)")
    restore.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _add_config_args(restore)

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
    if args.no_progress or not sys.stderr.isatty():
        overrides.append("pipeline.progress=false")
    return load_config(args.config, overrides)


def _key(args: argparse.Namespace, config: Config):
    """The master key when the mode needs one (never logged, never written anywhere)."""
    if config.anonymizer.mode not in KEYED_MODES:
        return None
    from masquerade.keys import load_key

    return load_key(args.key_file, args.password)


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

    if is_live_url(input_url) or is_live_url(str(output)):
        return _run_live(input_url, str(output), config, overwrite, key, args.stream_id)
    result = run_file(input_url, output, config, overwrite=overwrite, key=key,
                      stream_id=args.stream_id)
    log.info("%s", result.stats.summary())
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(result.stats.as_dict(), indent=2))
    print(f"wrote {result.output}")
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.warning("%s: stopping, finalizing outputs", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _run_live(input_url: str, output: str, config: Config, overwrite: bool, key,
              stream_id: str) -> int:
    """A live source or a streaming output: run until the source ends or a signal."""
    from masquerade.pipeline.live import LiveRunner, LiveStream
    from masquerade.pipeline.runner import FramePipeline
    from masquerade.streams.live import PyAVStreamSink, ReconnectingSource
    from masquerade.streams.pyav import PyAVFileSink, PyAVSource, is_live_url

    stop = _stop_on_signals()
    pipeline = FramePipeline.from_config(config, key=key, stream_id=stream_id)
    sink = (PyAVStreamSink(output, config.encoder) if is_live_url(output)
            else PyAVFileSink(output, config.encoder, average_rate=None, overwrite=overwrite))
    if is_live_url(input_url):
        source = ReconnectingSource(lambda: PyAVSource(input_url, timeout=(10.0, 5.0)),
                                    input_url, stop=stop)
        health = source.health
    else:
        source, health = _frames_only(PyAVSource(input_url)), None
    stream = LiveStream(name="stream", source=source, pipeline=pipeline, sinks=[sink])
    stream.health = health
    stats = LiveRunner(stream, stop).run()
    log.info("%s", stats.summary())
    print(f"wrote {output}")
    return 0


def _frames_only(source):
    from masquerade.streams.frames import Frame

    with source:
        yield from (item for item in source if isinstance(item, Frame))


def _cmd_serve(args: argparse.Namespace) -> int:
    from masquerade.pipeline.serve import Supervisor, load_serve_config

    spec = load_serve_config(args.config)
    supervisor = Supervisor(spec, _stop_on_signals())
    supervisor.start()
    try:
        supervisor.wait()
    finally:
        supervisor.close()
    for name, stream in supervisor.streams.items():
        log.info("%s: %s", name, stream.stats.summary())
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from masquerade.keys import load_key
    from masquerade.pipeline.restore import restore_file

    config = _load(args)
    key = load_key(args.key_file, args.password)
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise OutputError("output would overwrite the input")
    result = restore_file(args.input, args.output, config, key, overwrite=args.overwrite)
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


COMMANDS = {"run": _cmd_run, "restore": _cmd_restore, "probe": _cmd_probe,
            "bench": _cmd_bench, "serve": _cmd_serve, "export": _cmd_export}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * (1 + args.verbose)
    logging.basicConfig(level=max(level, logging.DEBUG), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        return COMMANDS[args.command](args)
    except MasqueradeError as exc:
        if args.debug:
            raise
        print(f"masquerade: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("masquerade: interrupted; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
