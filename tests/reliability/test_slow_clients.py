"""Slow and stalled clients against a real ``c2i serve``: bounded waits, 408 not 504, other clients unharmed.

* A request body that trickles in and stalls: 408 with ``Connection: close`` once the edge's body
  deadline passes (clicks2intent.serving.edge; before: BentoML's traffic time-out answered 504 after
  10 s, as if the service were slow), and the connection is closed.
* An idle keep-alive connection is closed by the server after ``--timeout-keep-alive``.
* Slowloris: connections that send their headers a byte at a time are held by uvicorn (no ASGI code
  sees a request before its headers end, and neither uvicorn nor BentoML has a header deadline:
  docs/decisions/0004-request-path.md); while 40 of them are open, other clients are answered as usual.

Bounded: about 25 s of waiting in all.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clicks2intent.common.net import LOOPBACK
from clicks2intent.serving.edge import BODY_TIMEOUT_S
from clicks2intent.serving.launcher import KEEP_ALIVE_S

pytestmark = pytest.mark.slow
SLOW_HEADER_CLIENTS = 40


@pytest.fixture(scope="module")
def served(pipeline: Path, tmp_path_factory: pytest.TempPathFactory, serve_c2i: Any) -> Iterator[dict]:
    """``c2i serve`` on a free loopback port, one worker, the tiny deployment."""
    with serve_c2i(pipeline, tmp_path_factory.mktemp("slow") / "serve.log") as (url, _):
        yield {"port": int(url.rsplit(":", 1)[1]), "url": url}


def _connect(port: int) -> socket.socket:
    s = socket.create_connection((LOOPBACK, port), timeout=30)
    s.settimeout(30)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_a_stalled_body_is_a_408_and_the_connection_closes(served: dict, ids: dict[str, str]) -> None:
    body = json.dumps({"customer_id": ids["customer"], "k": 3}).encode()
    with _connect(served["port"]) as s:
        s.sendall(
            b"POST /rank_tiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:5])
        )
        t0 = time.monotonic()
        time.sleep(1.0)
        s.sendall(body[5:8])  # trickles, then stalls
        answer = _read_all(s)
        waited = time.monotonic() - t0
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"connection: close" in head.lower()
    assert json.loads(payload)["error"] == "Request Timeout"
    assert BODY_TIMEOUT_S - 0.5 <= waited <= BODY_TIMEOUT_S + 3, waited
    print(f"stalled body: 408 after {waited:.1f}s, connection closed")


def test_an_idle_keep_alive_connection_is_closed(served: dict, ids: dict[str, str]) -> None:
    body = json.dumps({"customer_id": ids["customer"]}).encode()
    with _connect(served["port"]) as s:
        s.sendall(
            b"POST /rank_tiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        t0 = time.monotonic()
        rest = _read_all(s)  # nothing more is sent: the server closes
        idle = time.monotonic() - t0
    assert rest == b"" or rest.startswith(b"{")  # the rest of the first body at most
    assert KEEP_ALIVE_S - 0.5 <= idle <= KEEP_ALIVE_S + 3, idle
    print(f"idle keep-alive connection closed after {idle:.1f}s")


def test_slowloris_headers_do_not_stall_other_clients(served: dict, ids: dict[str, str]) -> None:
    slow = [_connect(served["port"]) for _ in range(SLOW_HEADER_CLIENTS)]
    try:
        for s in slow:
            s.sendall(b"POST /rank_tiles HTTP/1.1\r\nHost: x\r\n")
        latencies = []
        with httpx.Client(base_url=served["url"], timeout=10) as http:
            deadline = time.monotonic() + 6.0
            while time.monotonic() < deadline:
                for s in slow:  # one more header line each, never the end of the headers
                    s.sendall(b"X-Slow: 1\r\n")
                t = time.monotonic()
                r = http.post("/rank_tiles", json={"customer_id": ids["customer"]})
                latencies.append(time.monotonic() - t)
                assert r.status_code == 200, r.text
                time.sleep(0.2)
        still_open = 0
        for s in slow:
            s.setblocking(False)
            try:
                still_open += s.recv(1) != b""
            except BlockingIOError:
                still_open += 1  # nothing to read and not closed: held by the server
    finally:
        for s in slow:
            s.close()
    latencies.sort()
    print(f"{SLOW_HEADER_CLIENTS} slow-header connections ({still_open} still held after 6 s): "
          f"{len(latencies)} other requests, max {1e3 * latencies[-1]:.0f} ms")  # fmt: skip
    assert latencies[-1] < 1.0, latencies[-5:]
