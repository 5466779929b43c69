"""The success path of a hot JSON endpoint without BentoML's per-request machinery in front of it.

Why: at 8 clients on 2 shared cores the /rank_tiles logic is ~0.4 ms of CPU per request; BentoML's
path in front of it (Starlette routing, a ``Request`` object and its header parsing, the context
middleware, the validated input model turned back into keyword arguments, a hop into the thread pool
and back, response headers through dependency injection, background tasks) cost as much again, and
4 pool threads per worker contending for the GIL put 30-120 ms into the p99 (benchmarks/
bench_service.py). :class:`DirectEndpoints` is an ASGI middleware that answers a POST to one of its
routes itself: the body is validated by the endpoint's own pydantic request model (the schema BentoML
validates it with and the OpenAPI document shows), the engine method runs inline on the worker's
event loop, one request at a time, and the answer is written as one JSON body, the bytes BentoML
writes for it.

Only the success path is short-cut. A request that fails in any way (invalid or non-JSON body, the
store unavailable, a bug) is handed to BentoML unchanged with its body replayed, so every error answer
(400 with its detail, 503, 500) is BentoML's own; so is every other route, method and content type.
The middlewares BentoML puts outside the service's own (metrics, tracing, access log, timeout) still
see every request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = b"application/json"


@dataclass
class DirectRoute:
    """One endpoint: its request model and, once the worker built its engine, the handler."""

    request_model: Any  # a pydantic model class: model_validate_json(body) -> request
    # request -> response model (model_dump_json); it runs inline on the event loop, so bind only a
    # handler that never waits on the network (a local store's reads: the service binds it for SQLite).
    handler: Callable[[Any], Any] | None = None


@dataclass
class DirectRoutes:
    """Route path → :class:`DirectRoute`; shared by the service class (fills the handlers) and the
    middleware (reads them). ``headers`` are added to every direct answer (BentoML's ``Server``)."""

    routes: dict[str, DirectRoute]
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def bind(self, path: str, handler: Callable[[Any], Any]) -> None:
        self.routes[path].handler = handler


def _json_or_untyped(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == JSON)
    return True


class DirectEndpoints:
    """ASGI middleware: the routes of ``routes`` answered directly when they succeed (see the module)."""

    def __init__(self, app: ASGIApp, routes: DirectRoutes) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if (
            route is None
            or route.handler is None
            or scope.get("method") != "POST"
            or not _json_or_untyped(scope)
        ):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before its body arrived
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            request = route.request_model.model_validate_json(body or b"{}")
            answer = route.handler(request)
            payload = answer.model_dump_json().encode()
        except Exception:  # BentoML answers it (400 / 503 / 500), as it would without this middleware
            await self.app(scope, _replay(body, receive), send)
            return
        headers = [(b"content-type", JSON), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers + self.routes.headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then the connection's own messages."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
