"""RedisPipe (clicks2intent.features.redis_pipe) against a real redis-server of the test's own: concurrent
requests get their own replies, an error reply fails one request only, a paused Redis is a time-out for every
waiting request and a killed one a refused connection, and both recover with the next request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from clicks2intent.features.redis_pipe import RedisPipe, command, pipe_options


def _pipe(own_redis: Any, timeout: float = 0.5) -> RedisPipe:
    return RedisPipe("127.0.0.1", own_redis.port, socket_timeout=timeout, socket_connect_timeout=0.25)


def test_concurrent_requests_get_their_own_replies_in_order(own_redis: Any) -> None:
    client = redis.Redis(port=own_redis.port)
    for i in range(300):
        client.hset(f"k{i}", mapping={"a": f"a{i}", "b": f"b{i}"})

    async def main() -> list[Any]:
        pipe = _pipe(own_redis)
        one = [pipe.request(command(b"HMGET", f"k{i}".encode(), b"b", b"a")) for i in range(300)]
        two = pipe.request(command(b"HGET", b"k1", b"a") + command(b"HGET", b"k2", b"b"), 2)
        return await asyncio.gather(*one, two)

    *replies, pair = asyncio.run(main())
    assert replies == [[[f"b{i}".encode(), f"a{i}".encode()]] for i in range(300)]
    assert pair == [b"a1", b"b2"]


def test_an_error_reply_fails_its_request_only(own_redis: Any) -> None:
    redis.Redis(port=own_redis.port).set("s", "x")

    async def main() -> tuple[Any, Any, Any]:
        pipe = _pipe(own_redis)
        bad, good = await asyncio.gather(
            pipe.request(command(b"HGET", b"s", b"a")),
            pipe.request(command(b"GET", b"s")),
            return_exceptions=True,
        )
        protocol = pipe._protocol
        after = await pipe.request(command(b"GET", b"s"))
        return bad, good, (after, pipe._protocol is protocol)

    bad, good, (after, same_connection) = asyncio.run(main())
    assert isinstance(bad, redis.ResponseError) and "WRONGTYPE" in str(bad)
    assert good == [b"x"] and after == [b"x"] and same_connection


def test_paused_redis_times_out_every_waiting_request_then_recovers(own_redis: Any) -> None:
    async def main() -> tuple[list[Any], float, Any]:
        pipe = _pipe(own_redis, timeout=0.3)
        await pipe.request(command(b"PING"))
        own_redis.pause()
        try:
            t0 = time.monotonic()
            failed = await asyncio.gather(
                *(pipe.request(command(b"PING")) for _ in range(20)), return_exceptions=True
            )
            waited = time.monotonic() - t0
        finally:
            own_redis.resume()
        return failed, waited, await pipe.request(command(b"PING"))

    failed, waited, recovered = asyncio.run(main())
    assert all(isinstance(f, (redis.TimeoutError, redis.ConnectionError)) for f in failed), failed
    assert any(isinstance(f, redis.TimeoutError) for f in failed)
    assert waited < 0.6, waited  # one time-out for all of them, not one each
    assert recovered == [b"PONG"]


def test_killed_redis_is_a_refused_connection_then_recovers(own_redis: Any) -> None:
    async def main() -> tuple[Any, float, Any]:
        pipe = _pipe(own_redis)
        await pipe.request(command(b"PING"))
        own_redis.kill()
        t0 = time.monotonic()
        try:
            await pipe.request(command(b"PING"))
            lost: Any = None
        except redis.ConnectionError as err:
            lost = err
        try:
            await pipe.request(command(b"PING"))
            refused: Any = None
        except redis.ConnectionError as err:
            refused = err
        took = time.monotonic() - t0
        own_redis.start()
        return (lost, refused), took, await pipe.request(command(b"PING"))

    (lost, refused), took, recovered = asyncio.run(main())
    assert refused is not None and took < 0.5, (lost, refused, took)
    assert recovered == [b"PONG"]


@pytest.mark.parametrize(
    ("params", "handled"),
    [
        ({"socket_timeout": 0.5, "socket_connect_timeout": 0.25, "retry": None}, True),
        ({"db": 2, "password": "p"}, True),
        ({"ssl": True}, False),  # TLS: redis-py's asyncio client
        ({"retry": "3"}, False),
    ],
)
def test_connection_string_options_it_handles(params: dict[str, Any], handled: bool) -> None:
    assert (pipe_options(params) is not None) == handled
