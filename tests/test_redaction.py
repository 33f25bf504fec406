"""`redact`: the one function that keeps camera passwords out of what people read."""

from __future__ import annotations

import logging

import pytest

from masquerade.redaction import RedactingFormatter, redact


@pytest.mark.parametrize(("text", "expected"), [
    ("rtsp://admin:S3cretPw@host/stream", "rtsp://***@host/stream"),
    ("rtsp://admin@host:554/x", "rtsp://***@host:554/x"),
    ("RTMP://u:p@h/app/key", "RTMP://***@h/app/key"),
    ("srt://u:p%40x@h:9000?mode=caller", "srt://***@h:9000?mode=caller"),
    # a raw '@' inside the password: FFmpeg splits at the last '@' before the host
    ("rtsp://admin:p@ss@10.0.0.5/s", "rtsp://***@10.0.0.5/s"),
    # as FFmpeg/GStreamer error strings embed it, with several URLs in one message
    ("InputError: cannot open rtsp://a:b@h1/x: connection refused; tried rtsp://c:d@h2/y",
     "InputError: cannot open rtsp://***@h1/x: connection refused; tried rtsp://***@h2/y"),
    ('Could not open resource "rtsp://a:b@h/x" for reading', 'Could not open resource '
     '"rtsp://***@h/x" for reading'),
    # nothing to hide: unchanged
    ("rtsp://host:554/stream", "rtsp://host:554/stream"),
    ("tcp://127.0.0.1:554?timeout=0 failed, mail me@example.com", "tcp://127.0.0.1:554?"
     "timeout=0 failed, mail me@example.com"),
    ("/videos/in@2x.mp4", "/videos/in@2x.mp4"),
    ("http://host/path@v2/x", "http://host/path@v2/x"),
])
def test_userinfo_is_hidden(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_log_formatter_redacts_messages_arguments_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(levelname)s %(message)s")
    try:
        raise OSError("cannot open rtsp://admin:S3cretPw@h/x")
    except OSError:
        import sys

        record = logging.LogRecord("t", logging.WARNING, __file__, 1, "%s: retrying",
                                   ("rtsp://admin:S3cretPw@h/x",), sys.exc_info())
    text = formatter.format(record)
    assert "S3cretPw" not in text
    assert text.count("rtsp://***@h/x") >= 2  # the message and the exception
