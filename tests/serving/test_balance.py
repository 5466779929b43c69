"""Keep-alive connections spread over the workers (clicks2intent.serving.balance)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from clicks2intent.serving import balance
from clicks2intent.serving.balance import (
    CLOSE_EVERY_S,
    ConnectionBalance,
    SharedCounts,
    WorkerConnections,
    remove_stale,
)


def two_workers(tmp_path: Path) -> tuple[WorkerConnections, WorkerConnections]:
    path = tmp_path / "c2i-workers-1.counts"
    return (
        WorkerConnections(SharedCounts(path, 2), 0, 2),
        WorkerConnections(SharedCounts(path, 2), 1, 2),
    )


def test_counts_are_shared_through_the_file(tmp_path: Path) -> None:
    a = SharedCounts(tmp_path / "f.counts", 3)
    b = SharedCounts(tmp_path / "f.counts", 3)
    a.set(0, 5)
    b.set(2, 4)
    assert a.total() == b.total() == 9


def test_a_worker_with_every_connection_closes_until_it_holds_its_share(tmp_path: Path) -> None:
    a, b = two_workers(tmp_path)
    clients = [("127.0.0.1", 40000 + i) for i in range(8)]
    now, closed = 0.0, []
    for step in range(400):  # 8 connections, all on worker a; a closed one reconnects to worker b
        now += 0.001
        client = clients[step % len(clients)]
        if client in b.seen:
            b.should_close(client, now)
            continue
        if a.should_close(client, now):
            closed.append(client)
            clients[clients.index(client)] = ("127.0.0.1", 50000 + len(closed))
            b.should_close(clients[clients.index(("127.0.0.1", 50000 + len(closed)))], now)
    assert len(a.seen) == len(b.seen) == 4
    assert len(closed) == 4 == a.closed
    assert b.closed == 0


def test_no_close_at_or_under_the_share_nor_twice_within_the_interval(tmp_path: Path) -> None:
    a, b = two_workers(tmp_path)
    for i in range(4):  # 4 each, arriving alternately
        assert not b.should_close(("h", 100 + i), 0.0)
        b.next_publish = 0.0
        assert not a.should_close(("h", i), 0.0)
        a.next_publish = 0.0
    assert not a.should_close(("h", 0), 0.02)  # 4 each: balanced
    for i in range(4, 8):  # a now holds 8 of 12
        a.should_close(("h", i), 0.03)
    a.next_publish = 0.0
    assert a.should_close(("h", 7), 0.1)
    assert not a.should_close(("h", 6), 0.1 + CLOSE_EVERY_S / 2)  # rate-limited
    assert a.should_close(("h", 6), 0.1 + CLOSE_EVERY_S)


def test_idle_connections_stop_counting(tmp_path: Path) -> None:
    a, _ = two_workers(tmp_path)
    for i in range(6):
        a.should_close(("h", i), 0.0)
    a.should_close(("h", 0), balance.ACTIVE_S + 0.1)  # only this one spoke recently
    assert list(a.seen) == [("h", 0)]
    assert a.counts.total() == 1


def test_stale_files_of_dead_servers_are_removed(tmp_path: Path) -> None:
    live = tmp_path / f"c2i-workers-{os.getpid()}.counts"
    dead = tmp_path / "c2i-workers-999999999.counts"
    other = tmp_path / "c2i-workers-notes.txt"
    for p in (live, dead, other):
        p.write_bytes(b"")
    remove_stale(tmp_path)
    assert live.exists() and other.exists() and not dead.exists()


def run(app: ConnectionBalance, client: tuple[str, int]) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "client": client}, receive, send))
    return sent


async def answer(scope: dict, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_middleware_adds_connection_close_only_when_told(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(balance, "counts_dir", lambda: tmp_path)
    app = ConnectionBalance(answer, workers=2, worker_index=lambda: 1)
    first = run(app, ("h", 1))
    assert first[0]["headers"] == [(b"content-type", b"x")] and first[1]["body"] == b"ok"
    app.state.should_close = lambda client, now: True
    closing = run(app, ("h", 2))
    assert (b"connection", b"close") in closing[0]["headers"] and closing[1]["body"] == b"ok"


def test_middleware_is_off_outside_a_worker_and_for_one_worker(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(balance, "counts_dir", lambda: tmp_path)
    outside = ConnectionBalance(answer, workers=2, worker_index=lambda: None)
    run(outside, ("h", 1))
    assert outside.off and outside.state is None
    single = ConnectionBalance(answer, workers=1, worker_index=lambda: 1)
    run(single, ("h", 1))
    assert single.off and not list(tmp_path.iterdir())
