"""Decode and encode on their own threads so they overlap the face work (PyAV releases
the GIL in FFmpeg's decoders and x264).

Bounded both ways: when the encoder is slower than the pipeline, `put` blocks, and the
decoder runs at most `maxsize` items ahead, so memory stays flat; a live runner's input
queue is what drops frames (counted), never these.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
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


def prefetch(items: Iterable[T], maxsize: int = 4, name: str = "reader") -> Iterator[T]:
    """Iterate `items` on a background thread, `maxsize` ahead; its errors re-raise here.

    Closing the generator early (an error downstream) stops the thread at its next item.
    """
    buffer: queue.Queue[object] = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    failure: list[BaseException] = []

    def put(item: object) -> bool:
        """Queue `item` unless the consumer has gone; False once it has."""
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:
            failure.append(exc)
        finally:
            put(_STOP)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _STOP:
                if failure:
                    raise failure[0]
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
