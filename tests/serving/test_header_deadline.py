"""uvicorn's HTTP protocol with a header deadline (clicks2intent.serving.edge.install_header_deadline).

A real uvicorn server on a loopback port, built as BentoML's worker builds it (``uvicorn.Config`` without
``http``), answering a two-line ASGI app. Before the deadline a connection that sent half a request's
headers was held until the client gave up (slowloris). Runs against the newest uvicorn in
``make test-newest``: the protocol reads two attributes of uvicorn's own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
import uvicorn.config

from clicks2intent.common.net import LOOPBACK, free_port
from clicks2intent.serving.edge import HEADER_TIMEOUT_ANSWER, install_header_deadline

TIMEOUT_S = 0.6
LINGER_S = 1.5
SLACK_S = 1.5  # the event loop's timer plus a loaded 2-core box
BLOCK_S = TIMEOUT_S - 0.1


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/block":  # holds the event loop, as a loaded worker's does
        # a timer due just before the deadline's
        asyncio.get_running_loop().call_later(BLOCK_S / 2, time.sleep, BLOCK_S)
        time.sleep(BLOCK_S)  # held past both: they run in one pass of the timers, that one first
    while (await receive()).get("more_body"):  # the whole body, however slowly it comes
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    saved = uvicorn.config.HTTP_PROTOCOLS["auto"]
    install_header_deadline(TIMEOUT_S, LINGER_S)
    try:
        port = free_port()
        config = uvicorn.Config(app, host=LOOPBACK, port=port, log_config=None, timeout_keep_alive=30)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield port
        server.should_exit = True
        thread.join(10)
    finally:
        uvicorn.config.HTTP_PROTOCOLS["auto"] = saved


def _connect(port: int) -> socket.socket:
    s = socket.create_connection((LOOPBACK, port), timeout=10)
    s.settimeout(10)
    return s


def _until_closed(s: socket.socket) -> tuple[bytes, float]:
    t0, out = time.monotonic(), b""
    while chunk := s.recv(65536):
        out += chunk
    return out, time.monotonic() - t0


def test_the_config_a_worker_builds_uses_the_deadline_protocol(port: int) -> None:
    config = uvicorn.Config(app)
    config.load()
    assert config.http_protocol_class.__name__ == "HeaderDeadlineProtocol"
    assert config.http_protocol_class.header_timeout_s == TIMEOUT_S


def test_half_sent_headers_get_a_408_and_the_connection_closes(port: int) -> None:
    with _connect(port) as s:
        s.sendall(b"POST /rank_tiles HTTP/1.1\r\nHost: x\r\n")
        answer, waited = _until_closed(s)
    assert answer == HEADER_TIMEOUT_ANSWER
    assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer
    assert TIMEOUT_S - 0.1 <= waited <= TIMEOUT_S + SLACK_S, waited


def test_headers_that_trickle_in_are_timed_from_their_first_byte(port: int) -> None:
    with _connect(port) as s:
        s.sendall(b"GET / HTTP/1.1\r\n")
        t0 = time.monotonic()
        for _ in range(int(2 * TIMEOUT_S / 0.1)):  # a header line every 0.1 s: each byte is on time
            time.sleep(0.1)
            s.sendall(b"X-Slow: 1\r\n")  # the lines after the 408 cross the close: dropped, no reset
        answer, _ = _until_closed(s)
    assert answer == HEADER_TIMEOUT_ANSWER
    assert time.monotonic() - t0 <= 2 * TIMEOUT_S + SLACK_S


def test_a_line_that_crosses_the_close_draws_no_reset(port: int) -> None:
    """A header line that reaches the server after its loop last read and before the deadline's timer
    runs (a busy loop: another timer ahead of it blocks). Closing a socket with unread bytes is a reset:
    the client read the 408, then ECONNRESET instead of its end (seen in CI with 40 slow clients)."""
    with _connect(port) as slow, _connect(port) as busy:
        slow.sendall(b"POST /rank_tiles HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        time.sleep(TIMEOUT_S / 2)
        busy.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(TIMEOUT_S / 2 + BLOCK_S + BLOCK_S / 2 - (time.monotonic() - t0))  # the blocking timer runs
        slow.sendall(b"X-Late: 1\r\n")
        answer, _ = _until_closed(slow)
        assert busy.recv(65536).startswith(b"HTTP/1.1 200")
    assert answer == HEADER_TIMEOUT_ANSWER


def test_a_client_that_keeps_sending_after_the_408_is_cut_off_after_the_linger(port: int) -> None:
    with _connect(port) as s:
        s.sendall(b"POST / HTTP/1.1\r\n")
        t0, cut_after = time.monotonic(), None
        while time.monotonic() - t0 < TIMEOUT_S + LINGER_S + 2 * SLACK_S:
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:  # the server closed for good: the kernel reset the next line
                cut_after = time.monotonic() - t0
                break
            time.sleep(0.05)
    assert cut_after is not None, "the lingering close never ended"
    assert TIMEOUT_S + LINGER_S - 0.1 <= cut_after <= TIMEOUT_S + LINGER_S + SLACK_S, cut_after


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(port: int) -> None:
    with _connect(port) as s:
        answer, waited = _until_closed(s)
    assert answer == b""  # a pre-opened connection must not find a stray 408 when it is used
    assert TIMEOUT_S - 0.1 <= waited <= TIMEOUT_S + SLACK_S, waited


def test_a_keep_alive_connection_gets_the_deadline_for_its_next_request(port: int) -> None:
    with _connect(port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        time.sleep(2 * TIMEOUT_S)  # idle longer than the deadline: keep-alive, not the deadline, governs
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        second = s.recv(65536)
        assert second.startswith(b"HTTP/1.1 200"), second
        s.sendall(b"GET / HTTP/1.1\r\n")  # the third never finishes its headers
        answer, waited = _until_closed(s)
    assert answer == HEADER_TIMEOUT_ANSWER
    assert waited <= TIMEOUT_S + SLACK_S, waited


def test_a_slow_body_is_not_the_header_deadline_s_business(port: int) -> None:
    with _connect(port) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        time.sleep(2 * TIMEOUT_S)  # headers complete: the body's own deadline is the app's (RequestEdge)
        s.sendall(b"cd")
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
