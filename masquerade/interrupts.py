"""SIGINT and SIGTERM abort a file run cleanly: it unwinds and deletes its temporary files.

`kill`, systemd and container runtimes stop a process with SIGTERM, whose default action
kills a run outright and leaves its hidden temporary output behind. Here both signals
raise KeyboardInterrupt, as Ctrl-C does by default, so the run's cleanup runs. One
exception: inside an import. C code that imports a module (model runtimes do while they
load) may print and drop an exception raised there, and the run would carry on as if
nothing happened. Then the handler only sets `STOPPED` and raises again as soon as the
import is over (polled with SIGALRM); a file run also checks `STOPPED` at every frame.
Live runs and `serve` install their own handlers (finalize the outputs, exit 0).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

STOPPED = threading.Event()
RETRY_SECONDS = 0.05
_received: list[int] = []


def install() -> dict[int, Any]:
    """Install the handlers (main thread only); returns the ones they replace."""
    STOPPED.clear()
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {signum: signal.signal(signum, _on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, _on_retry)
    return previous


def uninstall(previous: dict[int, Any]) -> None:
    if previous:
        signal.setitimer(signal.ITIMER_REAL, 0)
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def terminated() -> bool:
    """Whether the interrupt came from SIGTERM (rather than Ctrl-C)."""
    return signal.SIGTERM in _received


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    STOPPED.set()
    _raise_when_safe(frame)


def _on_retry(_signum: int, frame: FrameType | None) -> None:
    if STOPPED.is_set():
        _raise_when_safe(frame)


def _raise_when_safe(frame: FrameType | None) -> None:
    if _in_import(frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
        return
    raise KeyboardInterrupt


def _in_import(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
