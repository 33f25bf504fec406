"""The sealed-originals side of the command line: `tracks`, `keys export-track`, and the
options of `restore --exact`.

Kept apart from `cli` because they share one question that the other commands do not:
which key was given — the master key, which opens every track, or exported track keys,
which open one person each — and what each may be used for.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from masquerade.cli_options import add_key_args, key_from_args
from masquerade.errors import ConfigError, OutputError
from masquerade.seals.format import RecordHead

log = logging.getLogger(__name__)


def add_restore_args(restore: argparse.ArgumentParser) -> None:
    exact = restore.add_argument_group(
        "exact recovery (videos written with --seal)",
        "Put the original pixels back, bit for bit, from VIDEO.seals: with the master key "
        "any track, with a track key (keys export-track) only that track.")
    exact.add_argument("--exact", action="store_true",
                       help="restore the sealed original pixels instead of re-rendering deid "
                            "faces")
    exact.add_argument("--track", dest="tracks", type=int, action="append", metavar="ID",
                       help="restore only this track (repeatable; default: every track the "
                            "key opens; see `masquerade tracks VIDEO`)")
    exact.add_argument("--track-key", dest="track_keys", action="append", metavar="PATH",
                       help="a track key file from `masquerade keys export-track` instead of "
                            "the master key (repeatable)")
    restore.add_argument("--lossless", action="store_true",
                         help="encode the result losslessly (H.264 RGB, qp 0; large, not for "
                              "browsers): restored regions decode to exactly the original "
                              "pixels")


def add_commands(sub: argparse._SubParsersAction) -> None:
    tracks = sub.add_parser(
        "tracks", help="list the sealed tracks of a video (who can be disclosed)",
        description="List the tracks sealed in VIDEO.seals: id, first and last time, frame "
                    "count. With a key and --thumbnails DIR, also write each track's largest "
                    "original crop (the person) as DIR/track-ID.png, so an operator can pick "
                    "whom a warrant names.")
    tracks.add_argument("input", metavar="VIDEO", help="video written with --seal")
    tracks.add_argument("--json", action="store_true", help="print JSON")
    tracks.add_argument("--thumbnails", metavar="DIR",
                        help="write a thumbnail per track the key opens (needs a key)")
    tracks.add_argument("--overwrite", action="store_true", help="replace existing thumbnails")
    add_key_args(tracks, password=False)
    tracks.add_argument("--track-key", dest="track_keys", action="append", metavar="PATH",
                        help="a track key file instead of the master key (repeatable)")

    keys = sub.add_parser("keys", help="export one track's key for disclosure")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    export = keys_sub.add_parser(
        "export-track", help="write the key that opens one track of one sealed video",
        description="Derive, from the master key, the key of track ID of VIDEO.seals and "
                    "write it to OUT (mode 0600). It opens that track of that video and "
                    "nothing else: give it to `restore --exact --track-key OUT`.")
    export.add_argument("input", metavar="VIDEO", help="video written with --seal")
    export.add_argument("--track", type=int, required=True, metavar="ID", help="the track")
    export.add_argument("-o", "--output", required=True, metavar="OUT", help="key file to write")
    add_key_args(export, password=False)


def seal_keys_from_args(args: argparse.Namespace):
    """Exported track keys, or else the master key, as `SealKeys`."""
    from masquerade.seals.keyring import ExportedTrackKeys, MasterKeys

    if getattr(args, "track_keys", None):
        if args.key_file or args.password_file or getattr(args, "password", None):
            raise ConfigError("give either --track-key or a master key, not both")
        from masquerade.keys.seal_keys import TrackKey

        return ExportedTrackKeys([TrackKey.from_file(p) for p in args.track_keys])
    return MasterKeys(key_from_args(args))


def check_restore_args(args: argparse.Namespace) -> None:
    if not args.exact:
        for option, given in (("--track", args.tracks), ("--track-key", args.track_keys)):
            if given:
                raise ConfigError(f"{option} needs --exact")


def cmd_tracks(args: argparse.Namespace) -> int:
    from masquerade.seals.reader import open_store

    store = open_store(args.input)
    infos = store.track_infos()
    thumbs: dict[int, str] = {}
    if args.thumbnails:
        thumbs = _write_thumbnails(store, seal_keys_from_args(args), Path(args.thumbnails),
                                   args.overwrite)
    if args.json:
        print(json.dumps({"video": args.input, "frames": store.frames, "tracks": [
            {"track": t.track_id, "first_s": round(t.first_time, 3),
             "last_s": round(t.last_time, 3), "frames": t.frames, "regions": t.records,
             **({"thumbnail": thumbs[t.track_id]} if t.track_id in thumbs else {})}
            for t in infos]}, indent=2))
        return 0
    print(f"{len(infos)} sealed track(s) in {args.input} ({store.frames} frames)")
    print(f"{'track':>6}  {'first':>9}  {'last':>9}  {'frames':>6}  thumbnail")
    for t in infos:
        print(f"{t.track_id:>6}  {t.first_time:>8.3f}s  {t.last_time:>8.3f}s  {t.frames:>6}  "
              f"{thumbs.get(t.track_id, '')}")
    return 0


def _write_thumbnails(store, keys, folder: Path, overwrite: bool) -> dict[int, str]:
    """Each openable track's largest crop as a PNG, verified before it is shown."""
    import cv2

    from masquerade.outputs import PendingFile
    from masquerade.seals.reader import CropOpener

    if not folder.is_dir():
        raise OutputError(f"--thumbnails {folder} is not a folder")
    tracks = keys.tracks(store)
    store.check_tracks(keys, tracks)
    largest: dict[int, RecordHead] = {}
    for h in store.records:
        if h.track_id in largest and _area(largest[h.track_id]) >= _area(h):
            continue
        largest[h.track_id] = h
    opener = CropOpener(store, keys)
    written = {}
    try:
        for track_id in tracks:
            if track_id not in largest:
                continue
            crop = opener.open(largest[track_id])
            _, png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            pending = PendingFile(folder / f"track-{track_id}.png", overwrite)
            pending.write_bytes(png.tobytes())
            written[track_id] = str(pending.commit())
    finally:
        opener.close()
    return written


def _area(head: RecordHead) -> int:
    return (head.box[2] - head.box[0]) * (head.box[3] - head.box[1])


def cmd_keys(args: argparse.Namespace) -> int:
    from masquerade.keys.seal_keys import TrackKey
    from masquerade.seals.keyring import MasterKeys
    from masquerade.seals.reader import open_store

    store = open_store(args.input)
    keys = MasterKeys(key_from_args(args))
    store.check_tracks(keys, [args.track])
    out = Path(args.output)
    if out.exists():
        raise OutputError(f"output {out} exists (a key file is never replaced)")
    key: TrackKey = keys.track(store, args.track)
    try:
        key.save(out)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None
    log.info("exported the key of track %d of %s", args.track, args.input)
    print(f"wrote {out} (opens track {args.track} of {args.input} only)")
    return 0
