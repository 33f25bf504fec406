import threading
import time

import pytest

from masquerade.pipeline.background import BackgroundWriter, prefetch
from tests.conftest import wait_for


def test_prefetch_yields_everything_in_order_and_reads_ahead():
    produced = []

    def source():
        for i in range(20):
            produced.append(i)
            yield i

    items = prefetch(source(), maxsize=4)
    assert next(items) == 0
    assert wait_for(lambda: len(produced) >= 3)  # ahead (however slow the machine) ...
    time.sleep(0.2)  # ... and given time to run further, it would show here
    assert len(produced) <= 7  # but bounded
    assert list(items) == list(range(1, 20))


def test_prefetch_reraises_the_source_error_after_the_items_before_it():
    def source():
        yield 1
        raise ValueError("corrupt input")

    items = prefetch(source())
    assert next(items) == 1
    with pytest.raises(ValueError, match="corrupt input"):
        next(items)


def test_closing_prefetch_early_stops_its_thread():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    items = prefetch(endless(), maxsize=2, name="endless")
    next(items)
    items.close()
    assert threading.active_count() == before
    assert not any(t.name == "endless" for t in threading.enumerate())


def test_background_writer_raises_the_first_write_error():
    seen = []

    def write(x):
        if x == 2:
            raise OSError("disk full")
        seen.append(x)

    writer = BackgroundWriter(write)
    writer.put(1)
    writer.put(2)
    with pytest.raises(OSError, match="disk full"):
        for i in range(3, 100):
            writer.put(i)
            time.sleep(0.001)
        writer.close()
    assert seen == [1]
