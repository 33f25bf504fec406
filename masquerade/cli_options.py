"""Command-line options shared by `run`, `restore` and `serve`: keys and giving up.

One definition, so the three commands take a key the same way and their `--help` says
the same thing about which key source to prefer: a passphrase given with `--password`
sits in the process list (`ps`) for every user of the machine to read.
"""

from __future__ import annotations

import argparse

KEYS_TITLE = "keys (modes deid and camouflage)"
KEYS_HELP = (
    "Prefer --key-file (or MASQUERADE_KEY), then --password-file or MASQUERADE_PASSWORD; "
    "with none of them and a terminal on stdin, the passphrase is prompted for. "
    "--password shows the passphrase to every user in `ps`: use it only for tests."
)
# A one-shot `run` of a live URL stops retrying after this long without a frame.
RUN_GIVE_UP_AFTER = 60.0


def add_key_args(parser: argparse.ArgumentParser, *, password: bool = True
                 ) -> argparse._ArgumentGroup:
    """--key-file, --password-file and (unless `password` is False) --password."""
    keys = parser.add_argument_group(KEYS_TITLE, KEYS_HELP)
    keys.add_argument("--key-file", metavar="PATH",
                      help="master key file, mode 0600: exactly 64 hex digits (and an optional "
                           "newline) or exactly 32 raw bytes; anything else is refused")
    keys.add_argument("--password-file", metavar="PATH",
                      help="file (mode 0600) whose one line is the passphrase (>= 8 characters, "
                           "stretched with scrypt)")
    if password:
        keys.add_argument("--password", metavar="TEXT",
                          help="the passphrase itself: visible in `ps`, for tests only")
    return keys


def key_from_args(args: argparse.Namespace, *, confirm: bool = False):
    """The master key the options (or the environment, or a prompt) name.

    `confirm` makes a prompt ask twice: for runs that write keyed output.
    """
    from masquerade.keys.secret import load_key, passphrase_prompt

    return load_key(args.key_file, getattr(args, "password", None),
                    password_file=args.password_file, prompt=passphrase_prompt(confirm))


def add_give_up_arg(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--give-up-after", type=_seconds, metavar="SECONDS",
                        help="stop retrying a source that has delivered no frame for this long "
                             f"and exit non-zero (0 = retry forever; default: {default})")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value
