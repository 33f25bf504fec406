"""Camera credentials out of everything a person or a scraper can read.

Camera URLs usually carry a user and password (`rtsp://admin:pw@host/stream`), and
FFmpeg's and GStreamer's error strings repeat the URL they failed on. `redact` is the
single place that hides them: it is applied where URLs and error messages are formatted
for logs, `/healthz`, metric labels, summaries and the CLI's error line, and the CLI's
log formatter applies it once more to every record, so a message a library builds on its
own (a traceback, a warning) cannot leak a password either.
"""

from __future__ import annotations

import logging
import re

# scheme://userinfo@ — the userinfo runs to the last '@' before the host's end ('/', '?',
# '#' or whitespace), as FFmpeg parses it, so a password with a raw '@' is covered too.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")
REDACTED = "***"


def redact(text: object) -> str:
    """`text` (a URL, an error message, a log line) with every URL's userinfo as ***."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", str(text))


class RedactingFormatter(logging.Formatter):
    """A log formatter whose output has passed through `redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
