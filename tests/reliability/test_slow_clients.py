"""Slow and stalled clients against a real ``c2i serve``: bounded waits, 408 not 504, other clients unharmed.

* A request body that trickles in and stalls: 408 with ``Connection: close`` once the edge's body
  deadline passes (clicks2intent.serving.edge; before: BentoML's traffic time-out answered 504 after
  10 s, as if the service were slow), and the connection is closed.
* An idle keep-alive connection is closed by the server after ``--timeout-keep-alive``.
* Slowloris: connections that send their headers a line at a time (before: held by uvicorn for as long
  as the client kept sending; no ASGI code sees a request before its headers end) get a 408 and are
  closed ``HEADER_TIMEOUT_S`` after their first byte (clicks2intent.serving.edge), with no reset though
  they keep sending, and while 40 of them are open other clients are answered as usual. A connection
  that sends nothing is closed silently.

Bounded: about 30 s of waiting in all.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clicks2intent.common.net import LOOPBACK
from clicks2intent.serving.edge import BODY_TIMEOUT_S, HEADER_TIMEOUT_ANSWER, HEADER_TIMEOUT_S
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


def test_slowloris_headers_get_a_408_and_do_not_stall_other_clients(
    served: dict, ids: dict[str, str]
) -> None:
    slow = [_connect(served["port"]) for _ in range(SLOW_HEADER_CLIENTS)]
    answers = [b""] * len(slow)
    closed_after: list[float | None] = [None] * len(slow)
    reset = [False] * len(slow)  # read failed: a header line crossed a plain close (before the staged close)
    try:
        t0 = time.monotonic()
        for s in slow:
            s.sendall(b"POST /rank_tiles HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
        latencies = []
        with httpx.Client(base_url=served["url"], timeout=10) as http:
            while time.monotonic() - t0 < HEADER_TIMEOUT_S + 3.0 and None in closed_after:
                for i, s in enumerate(slow):  # one more header line each, never the end of the headers
                    if closed_after[i] is not None:
                        continue
                    try:
                        while chunk := s.recv(65536):
                            answers[i] += chunk
                        closed_after[i] = time.monotonic() - t0  # recv gave b"": the server closed it
                    except BlockingIOError:
                        with contextlib.suppress(OSError):
                            s.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        closed_after[i] = time.monotonic() - t0
                        reset[i] = True
                t = time.monotonic()
                r = http.post("/rank_tiles", json={"customer_id": ids["customer"]})
                latencies.append(time.monotonic() - t)
                assert r.status_code == 200, r.text
                time.sleep(0.2)
    finally:
        for s in slow:
            s.close()
    latencies.sort()
    held = [i for i, c in enumerate(closed_after) if c is None]
    waits = sorted(c for c in closed_after if c is not None)
    print(f"{SLOW_HEADER_CLIENTS} slow-header connections: {len(held)} still held after "
          f"{HEADER_TIMEOUT_S + 3.0:.0f} s, closed after {waits[0] if waits else 0:.1f}-{waits[-1] if waits else 0:.1f} s, "
          f"{sum(a == HEADER_TIMEOUT_ANSWER for a in answers)} answered 408, {sum(reset)} reset; {len(latencies)} other requests, "
          f"max {1e3 * latencies[-1]:.0f} ms")  # fmt: skip
    assert not held
    assert not any(reset), reset  # CI once saw 14 of 40 before the close lingered
    assert all(a == HEADER_TIMEOUT_ANSWER for a in answers), answers
    assert waits[0] >= HEADER_TIMEOUT_S - 0.5 and waits[-1] <= HEADER_TIMEOUT_S + 3.0, waits
    assert latencies[-1] < 1.0, latencies[-5:]


def test_a_connection_that_sends_nothing_is_closed(served: dict) -> None:
    with _connect(served["port"]) as s:
        t0 = time.monotonic()
        answer = _read_all(s)
        waited = time.monotonic() - t0
    assert answer == b""
    assert HEADER_TIMEOUT_S - 0.5 <= waited <= HEADER_TIMEOUT_S + 3, waited
    print(f"a silent connection closed after {waited:.1f}s")
