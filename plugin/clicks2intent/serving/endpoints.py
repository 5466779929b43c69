"""The routes the service owns outright: one ASGI app, mounted openly on the service class.

Why: the /rank_tiles logic is a fraction of a millisecond of CPU per request (docs/decisions/0013-serving-path.md), and BentoML's
per-endpoint path in front of it (a ``Request`` object and its header parsing, the validated input
model turned back into keyword arguments, a hop into the thread pool and back, response headers
through dependency injection, a chunked response) cost more than the logic; its pool threads
contending for the GIL put tens of milliseconds into the p99 (docs/decisions/0004-request-path.md).
BentoML's extension point for a route a service handles itself is ``@bentoml.asgi_app``:
:func:`routes_app` builds that app, and ``bento/service.py`` mounts it with the decorator on its one
service class, so the route table is visible there, each route declared once.

:class:`JSONEndpoint` answers every outcome of its route itself, one JSON body each, as the OpenAPI
document says (:func:`clicks2intent.serving.openapi.json_route`):

* 200: the request validated by its pydantic model (the schema the document shows), the service
  method run on the worker's event loop (a coroutine where it waits on the network: the loop serves
  other requests meanwhile; the store's client time-outs and
  :class:`clicks2intent.serving.online.OutageGate` bound the wait), the answer dumped once;
* 400 ``{"error", "detail"}``: the body is not JSON or breaks the schema; ``detail`` names each broken
  field and its rule, never a value, and the service log gets one WARNING line (no values either);
* 503 ``{"error"}``: the online feature store could not be read;
* 500 ``{"error"}``: anything else (logged with its traceback).

The engine runs once per request, whatever the outcome: nothing is replayed elsewhere.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clicks2intent.serving.edge import client_error_summary, detail_text

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger(__name__)

JSON_HEADERS = [(b"content-type", b"application/json")]
UNAVAILABLE = "ServiceUnavailable"


@dataclass
class JSONEndpoint:
    """POST JSON → ``request_model`` → ``handler(request)`` → ``response_model`` as one JSON body.

    ``handler`` is called with the validated request (and awaited when it returns an awaitable); the
    service passes one that looks its method up on the running service instance
    (``bentoml.get_current_service()``)."""

    request_model: Any  # a pydantic model class
    response_model: Any  # the pydantic model class of a 200 (the OpenAPI document's)
    handler: Callable[[Any], Any]
    description: str = ""
    unavailable: tuple[type[BaseException], ...] = ()  # exceptions that mean "the store is down": 503
    headers: Sequence[tuple[bytes, bytes]] = field(default_factory=list)  # added to every answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if body is None:  # the client went away before its body arrived
            return
        try:
            request = self.request_model.model_validate_json(body)
        except ValueError as err:  # pydantic's ValidationError: a client error, never the engine's
            await self.reject(scope, send, err)
            return
        try:
            answer = self.handler(request)
            if inspect.isawaitable(answer):
                answer = await answer
            payload = answer.model_dump_json().encode()
        except self.unavailable as err:
            await self.answer(send, 503, {"error": str(err)})
            return
        except Exception:
            logger.exception("server error on %s [%s]", scope.get("path"), scope.get("method"))
            await self.answer(send, 500, {"error": "Internal Server Error"})
            return
        await self.answer_bytes(send, 200, payload)

    async def reject(self, scope: Scope, send: Send, err: ValueError) -> None:
        """400 with one line per broken field (no values); one WARNING log line (no values)."""
        summary = client_error_summary(err) or type(err).__name__
        logger.warning("client error on %s [%s]: %s", scope.get("path"), scope.get("method"), summary)
        errors = getattr(err, "errors", None)
        if callable(errors):
            detail = detail_text(errors(include_url=False, include_context=False, include_input=False))
            count = len(errors(include_url=False, include_input=False))
            title = getattr(err, "title", self.request_model.__name__)
            message = f"{count} validation error{'s' if count != 1 else ''} for {title}"
        else:
            detail, message = "", "invalid request"
        await self.answer(send, 400, {"error": message, "detail": detail})

    async def answer(self, send: Send, status: int, payload: Mapping[str, Any]) -> None:
        await self.answer_bytes(send, status, json.dumps(payload).encode())

    async def answer_bytes(self, send: Send, status: int, body: bytes) -> None:
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *self.headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def routes_app(routes: Mapping[str, JSONEndpoint]) -> Any:
    """The app ``bento/service.py`` mounts with ``@bentoml.asgi_app``: a Starlette app with one ``POST``
    route per entry, so BentoML's mount matches only these paths (its own routes answer the rest).

    A ``POST`` to a listed path goes straight to its endpoint: Starlette's own stack in front of it (error
    and exception middlewares, a second router) had nothing to do under BentoML's router and middlewares
    (docs/decisions/0004-request-path.md). Anything else (another method: 405) is Starlette's."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    class RoutesApp(Starlette):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope.get("method") == "POST":
                path, root = scope["path"], scope.get("root_path", "")
                endpoint = routes.get(path[len(root) :] if root and path.startswith(root) else path)
                if endpoint is not None:
                    await endpoint(scope, receive, send)
                    return
            await super().__call__(scope, receive, send)

    return RoutesApp(routes=[Route(path, endpoint, methods=["POST"]) for path, endpoint in routes.items()])
