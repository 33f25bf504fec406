"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class MasqueradeError(Exception):
    """Base for errors caused by the user's input, config or environment."""

    exit_code = 1


class ConfigError(MasqueradeError):
    """A config file, key or value is wrong; the message names the key."""

    exit_code = 2


class InputError(MasqueradeError):
    """The input is missing, unreadable or holds no decodable video."""

    exit_code = 3


class OutputError(MasqueradeError):
    """The output cannot be written, or would overwrite something."""

    exit_code = 4
