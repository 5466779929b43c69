"""The HTTP edge of the service: malformed requests are a 4xx the OpenAPI document announces, never a 5xx.

:class:`RequestEdge` is a pure ASGI middleware the BentoML service installs
(``Clicks2Intent.add_asgi_middleware(RequestEdge)``). Measured under schemathesis before it:

* a ``multipart/form-data`` body without a boundary made BentoML's form parser raise
  ``KeyError: b'boundary'`` (a 500). The API takes JSON only: any other body type is a 400 here,
  before BentoML parses anything (``application/json`` or no content type pass through).
* 400 bodies carried pydantic's error *list* in ``detail`` where BentoML's own OpenAPI document says
  ``detail`` is a string. It is rewritten to one line per broken field, ``field.path: message``
  (no input values: they may hold PII), so the answer is what the schema promises.

Only 400 responses are buffered; every other response streams through untouched (one status check per
response on the hot path).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = ("application/json",)  # the one request body type of the API


def detail_text(detail: Any) -> str:
    """Pydantic's error list → ``"loc.path: msg; other.loc: msg"`` (any other detail as a string)."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {err.get('msg', '')}" if loc else str(err.get("msg", "")))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    return json.dumps(detail, default=str)


def _content_type(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


class RequestEdge:
    """Rejects non-JSON POST bodies with a 400 and makes every 400 ``detail`` a string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "POST":
            kind = _content_type(scope)
            if kind and kind not in JSON_TYPES:
                await _send_json(
                    send,
                    400,
                    {
                        "error": "unsupported request body",
                        "detail": f"content-type {kind!r}: send application/json",
                    },
                )
                return
        await self.app(scope, receive, _RewriteBadRequest(send))


class _RewriteBadRequest:
    """A ``send`` that buffers a 400 response and rewrites its ``detail``; others pass straight on."""

    __slots__ = ("_send", "_start", "_body", "_through")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._body = bytearray()
        self._through = False

    async def __call__(self, message: Message) -> None:
        if self._through:
            await self._send(message)
            return
        if self._start is None:
            if message["type"] == "http.response.start" and message.get("status") == 400:
                self._start = message
                return
            self._through = True
            await self._send(message)
            return
        self._body += message.get("body", b"")
        if message.get("more_body", False):
            return
        body = bytes(self._body)
        try:
            payload = json.loads(body)
            if isinstance(payload, dict) and "detail" in payload and not isinstance(payload["detail"], str):
                payload["detail"] = detail_text(payload["detail"])
                body = json.dumps(payload).encode()
        except ValueError:
            pass  # not JSON: leave it as it is
        headers = [(k, v) for k, v in self._start.get("headers", ()) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self._send({**self._start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
