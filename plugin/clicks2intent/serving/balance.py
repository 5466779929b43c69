"""Keep-alive connections spread over the service's workers: a worker holding more than its share closes one.

``bentoml serve``'s workers accept from one shared socket. A keep-alive client (an ingress, a load test)
opens its connections in a burst, and whichever worker is free at that instant can accept them all: the
other worker then idles while this one queues every request (docs/decisions/0004-request-path.md).

:class:`ConnectionBalance` is a pure ASGI middleware the service installs. Each worker counts the client
connections (address and port) it served in the last :data:`ACTIVE_S` and publishes that count in a small
file every worker of the same ``bentoml serve`` maps (:class:`SharedCounts`). A worker holding more than
its share (the total over the workers, rounded up) answers one request with ``Connection: close``, at most
one every :data:`CLOSE_EVERY_S`: the client reconnects, and the less busy worker is the likelier to accept.
Answers are unchanged otherwise; a single worker, a test process (no worker index) or a file that cannot
be mapped leave every request untouched.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)

ACTIVE_S = 0.5  # a connection that sent nothing for this long no longer counts as load
PUBLISH_EVERY_S = 0.01  # how often a worker prunes its connections and publishes their count
CLOSE_EVERY_S = 0.05  # a worker closes at most one connection this often (no reconnect storm)
PREFIX = "c2i-workers-"
SLOT = 8  # bytes per worker: one signed 64-bit count


def counts_dir() -> Path:
    """Shared memory where Linux has it (no disk writes), else the temp directory."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(directory: Path) -> None:
    """Delete count files of servers that are gone (their supervisor's pid is in the name)."""
    for path in directory.glob(f"{PREFIX}*.counts"):
        pid = path.name[len(PREFIX) : -len(".counts")]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


class SharedCounts:
    """``slots`` 64-bit counts in a file every worker maps: each writes its own slot, reads the sum."""

    def __init__(self, path: Path, slots: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < slots * SLOT:  # two workers may both extend it: same size
                os.ftruncate(fd, slots * SLOT)
            self._map = mmap.mmap(fd, slots * SLOT)
        finally:
            os.close(fd)
        self.values = memoryview(self._map).cast("q")

    def set(self, slot: int, value: int) -> None:
        self.values[slot] = value

    def total(self) -> int:
        return sum(self.values)


class WorkerConnections:
    """One worker's recently active connections and its decision to close one of them."""

    def __init__(self, counts: SharedCounts, slot: int, workers: int) -> None:
        self.counts, self.slot, self.workers = counts, slot, workers
        self.seen: dict[Any, float] = {}  # client (host, port) -> last request's monotonic time
        self.next_publish = 0.0
        self.last_close = -math.inf
        self.closed = 0  # connections this worker asked its clients to re-open

    def should_close(self, client: Any, now: float) -> bool:
        """Record a request of ``client`` at ``now``; True when its connection should close after it."""
        seen = self.seen
        seen[client] = now
        if now >= self.next_publish:
            cutoff = now - ACTIVE_S
            if any(t < cutoff for t in seen.values()):
                self.seen = seen = {c: t for c, t in seen.items() if t >= cutoff}
            self.counts.set(self.slot, len(seen))
            self.next_publish = now + PUBLISH_EVERY_S
        own = len(seen)
        if own < 2 or now - self.last_close < CLOSE_EVERY_S:
            return False
        share = -(-max(self.counts.total(), own) // self.workers)
        if own <= share:
            return False
        self.last_close = now
        del seen[client]
        self.counts.set(self.slot, own - 1)
        self.closed += 1
        logger.debug("worker slot %d: closing one of %d connections (share %d)", self.slot, own, share)
        return True


class ConnectionBalance:
    """ASGI middleware: ``Connection: close`` on a request when this worker holds more than its share.

    ``worker_index`` returns the worker's 1-based index (BentoML's ``server_context.worker_index``) or
    None outside ``bentoml serve``; it is read on the first request, when the worker is running."""

    def __init__(self, app: ASGIApp, workers: int, worker_index: Callable[[], int | None]) -> None:
        self.app = app
        self.workers = workers
        self.worker_index = worker_index
        self.state: WorkerConnections | None = None
        self.off = workers < 2

    def _start(self) -> WorkerConnections | None:
        index = self.worker_index()
        if index is None:
            self.off = True
            return None
        directory = counts_dir()
        try:
            remove_stale(directory)
            counts = SharedCounts(directory / f"{PREFIX}{os.getppid()}.counts", self.workers)
        except OSError as err:  # no shared file: every worker keeps what it accepts
            logger.warning("connection balance off: %s", err)
            self.off = True
            return None
        self.state = WorkerConnections(counts, (index - 1) % self.workers, self.workers)
        return self.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.off or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state or self._start()
        client = scope.get("client")
        if state is None or client is None or not state.should_close(tuple(client), time.monotonic()):
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)
