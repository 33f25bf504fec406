"""Encode on a second thread so it overlaps detection (PyAV releases the GIL in x264).

Bounded: when the encoder is slower than the pipeline, `put` blocks, so memory stays flat
and a live runner's input queue is what drops frames (counted), never the writer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
_STOP = object()


class BackgroundWriter(Generic[T]):
    def __init__(self, write: Callable[[T], None], maxsize: int = 4, name: str = "writer"):
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None:
                try:
                    self._write(item)  # type: ignore[arg-type]
                except BaseException as exc:
                    self._error = exc

    def put(self, item: T) -> None:
        """Queue `item`; raises the writer's first error so the caller stops early."""
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        """Wait until everything queued is written; raises the writer's first error."""
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error
