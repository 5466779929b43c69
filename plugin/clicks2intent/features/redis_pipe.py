"""One Redis connection per event loop, requests pipelined on it in order: the online store's asynchronous read.

Why: redis-py's asyncio client (a pool of connections, a lock around each, a parser per reply) cost
more CPU per ``HMGET`` than its synchronous client, a noticeable share of a served request
(docs/decisions/0012-features-and-feast.md; the store classes: docs/decisions/0005-online-store-classes.md). Redis answers a connection's commands in the order they
were sent, so concurrent requests can share ONE connection: each writes its already-encoded RESP
command and waits for its own reply, matched first in, first out; hiredis (redis-py's own C parser)
parses the bytes.

Failures are redis-py's exception types, so callers handle them as they would the client's:
``redis.exceptions.TimeoutError`` when a reply takes longer than ``socket_timeout`` (the connection is
dropped: the replies after it would be out of step, so every request waiting on it fails at once and
the next request reconnects), ``ConnectionError`` when Redis cannot be reached or the connection is
lost, ``ResponseError`` for an error reply (the connection stays). No retries: the next request is the
retry (clicks2intent.features.store.REDIS_CLIENT_OPTIONS says why).

Only what the connection string can say for a single Redis is handled here (host, port, ``db``,
``username``, ``password``, the two time-outs, ``retry``); the online store keeps redis-py's asyncio
client for anything else (TLS, other options).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

SUPPORTED_OPTIONS = frozenset(
    {"db", "username", "password", "socket_timeout", "socket_connect_timeout", "retry"}
)


def pipe_options(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The connection string's options as :class:`RedisPipe` keywords, or None when one is not supported."""
    if not set(params) <= SUPPORTED_OPTIONS or params.get("retry") not in (None, "null"):
        return None
    return {k: params[k] for k in params if k != "retry"}


def command(*parts: bytes) -> bytes:
    """One RESP-encoded command."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


class _Protocol(asyncio.Protocol):
    """Feeds replies to hiredis and resolves the waiting futures in order."""

    def __init__(self) -> None:
        import hiredis
        from redis.exceptions import ResponseError

        self.reader = hiredis.Reader()
        self.reply_error, self.response_error = hiredis.ReplyError, ResponseError
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiters:  # a reply nobody waits for: the stream is out of step
                self.abort()
                return
            waiter = self.waiters.popleft()
            if waiter.done():  # its request gave up (time-out): the connection is being dropped
                continue
            if isinstance(reply, self.reply_error):
                waiter.set_exception(self.response_error(str(reply)))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError

        self.lost = True
        error = RedisConnectionError(f"connection to Redis lost ({exc or 'closed'})")
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def abort(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails the other waiters


class RedisPipe:
    """Pipelined requests on one connection of the running event loop (build one per loop)."""

    def __init__(
        self,
        host: str,
        port: int,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        socket_timeout: float | None = None,
        socket_connect_timeout: float | None = None,
    ) -> None:
        self.host, self.port, self.db = host, int(port), int(db)
        self.username, self.password = username, password
        self.timeout = None if socket_timeout is None else float(socket_timeout)
        self.connect_timeout = None if socket_connect_timeout is None else float(socket_connect_timeout)
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def request(self, packed: bytes, replies: int = 1) -> list[Any]:
        """Send ``packed`` (RESP, ``replies`` commands) and return their replies, in order."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connected()
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in range(replies)]
        protocol.waiters.extend(waiters)
        protocol.transport.write(packed)  # type: ignore[union-attr]
        try:
            async with asyncio.timeout(self.timeout):
                return [await w for w in waiters]
        except TimeoutError:
            from redis.exceptions import TimeoutError as RedisTimeoutError

            protocol.abort()  # replies after a missing one would be matched to the wrong requests
            raise RedisTimeoutError(f"Redis did not answer within {self.timeout} s") from None

    async def _connected(self) -> _Protocol:
        """The live connection, opened once however many requests wait for it."""
        connecting = self._connecting
        if connecting is None or connecting.done():
            connecting = self._connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self) -> _Protocol:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
        except TimeoutError:
            raise RedisTimeoutError(f"connecting to Redis {self.host}:{self.port} timed out") from None
        except OSError as err:
            raise RedisConnectionError(f"cannot connect to Redis {self.host}:{self.port}: {err}") from None
        self._protocol = protocol
        handshake = []
        if self.password is not None:
            auth = (
                [self.username.encode(), self.password.encode()]
                if self.username
                else [self.password.encode()]
            )
            handshake.append(command(b"AUTH", *auth))
        if self.db:
            handshake.append(command(b"SELECT", str(self.db).encode()))
        if handshake:
            await self.request(b"".join(handshake), len(handshake))
        return protocol

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.abort()
            self._protocol = None
