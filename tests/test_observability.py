"""The metrics/health server as scrapers and bad clients meet it, on 127.0.0.1."""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from masquerade.observability import MetricsServer
from tests.conftest import PATIENCE, wait_for


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    srv = MetricsServer(lambda: {}, host="127.0.0.1", port=0)
    yield srv
    srv.close()


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def idle_client(port: int) -> socket.socket:
    """A client that sends half a request and then says nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    return s


def closed_by_server(s: socket.socket) -> bool:
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True


def test_only_the_exact_routes_answer(server: MetricsServer) -> None:
    assert status_of(f"{server.url}/metrics") == 200
    assert status_of(f"{server.url}/metrics?name[]=x") == 200  # a query string is fine
    assert status_of(f"{server.url}/healthz") == 200  # no streams: nothing stale
    for path in ("/metricsXYZ", "/metrics/x", "/healthzz", "/healthz/../metrics", "/",
                 "/favicon.ico"):
        assert status_of(f"{server.url}{path}") == 404, path


BOUND = 16  # handler threads by default


def test_idle_clients_hold_a_bounded_number_of_threads(server: MetricsServer) -> None:
    before = threading.active_count()
    clients = [idle_client(server.port) for _ in range(50)]
    try:
        # the connections beyond the bound are closed at once ...
        assert wait_for(lambda: sum(closed_by_server(c) for c in clients) >= 50 - BOUND,
                        PATIENCE), f"{threading.active_count() - before} threads"
        assert threading.active_count() <= before + BOUND
    finally:
        for c in clients:
            c.close()
    # ... and the server still answers once they are gone
    assert wait_for(lambda: status_of(f"{server.url}/metrics") == 200, PATIENCE)


def test_silent_clients_are_dropped_after_the_timeout() -> None:
    server = MetricsServer(lambda: {}, port=0, max_handlers=4, request_timeout=0.5)
    try:
        clients = [idle_client(server.port) for _ in range(4)]
        assert wait_for(lambda: all(closed_by_server(c) for c in clients), PATIENCE)
        assert status_of(f"{server.url}/healthz") == 200  # the slots are free again
        for c in clients:
            c.close()
    finally:
        server.close()


def test_a_client_that_goes_away_is_a_debug_line_not_a_traceback(
        server: MetricsServer, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG, logger="masquerade.observability")
    for _ in range(5):
        s = idle_client(server.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST mid-request
    assert wait_for(lambda: caplog.text.count("went away") >= 5, PATIENCE), caplog.text
    assert status_of(f"{server.url}/metrics") == 200
    assert "Traceback" not in capsys.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
