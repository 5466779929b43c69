"""The HTTP edge of the service: malformed requests are a 4xx the OpenAPI document announces, never a 5xx.

:class:`RequestEdge` is a pure ASGI middleware the BentoML service installs
(``Clicks2Intent.add_asgi_middleware(RequestEdge)``). Measured under schemathesis before it:

* a ``multipart/form-data`` body without a boundary made BentoML's form parser raise
  ``KeyError: b'boundary'`` (a 500). The API takes JSON only: any other body type is a 400 here,
  before BentoML parses anything (``application/json`` or no content type pass through).
* 400 bodies carried pydantic's error *list* in ``detail`` where BentoML's own OpenAPI document says
  ``detail`` is a string. It is rewritten to one line per broken field, ``field.path: message``
  (no input values: they may hold PII), so the answer is what the schema promises. An unknown key is
  the client's text (it may be an e-mail address): it is named ``<unknown field>``, never echoed.
* BentoML logs every rejected request at ERROR with a traceback (``log_exception``) whose pydantic text
  holds each broken field's ``input_value``: a card number or an e-mail address in the service log.
  :class:`ClientErrorLog` (installed by :class:`RequestEdge` on that logger) makes a client error one
  WARNING line naming the path, each broken field and its rule; server errors keep their traceback.
* A body that trickles in (a slow or stalled client) held a worker's request until BentoML's traffic
  time-out answered 504, as if the service were slow. The body must arrive within ``body_timeout_s``
  of the request's headers, else the answer is 408 with ``Connection: close`` (the app behind sees the
  client as gone). Idle keep-alive connections are closed by uvicorn (``bentoml serve
  --timeout-keep-alive``, which the launcher sets).
* A request whose HEADERS never finish (slowloris) is seen by no ASGI code, and uvicorn has no header
  deadline: :func:`install_header_deadline` gives its HTTP protocol one (``HEADER_TIMEOUT_S`` from the
  first byte, then :data:`HEADER_TIMEOUT_ANSWER` and a staged close, RFC 9112 section 9.6: a header
  line crossing a plain close drew a reset; a connection that sent nothing is closed).

Only 400 responses are buffered; every other response streams through untouched (one status check per
response on the hot path).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from clicks2intent.common import framework_adapter
from clicks2intent.common.framework_adapter import BENTOML_REQUEST_LOGGER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = ("application/json",)  # the one request body type of the API
# BENTOML_REQUEST_LOGGER: the logger of BentoML's ``log_exception``, which its endpoint wrapper calls for
# every exception of a request, 4xx included (a private module's name: clicks2intent.common.framework_adapter).
BODY_TIMEOUT_S = 5.0  # a request body must arrive within this of its headers (then 408)
HEADER_TIMEOUT_S = 5.0  # a request's headers must be complete within this of their first byte (then 408)
HEADER_LINGER_S = 2.0  # after that 408, how long further bytes are read and dropped before the close
UNKNOWN_FIELD = "<unknown field>"
_KEY = "<key>"


def field_path(err: dict[str, Any]) -> str:
    """``session_events.0.page_type`` of one pydantic error; a key the client made up (an unknown field,
    or any location part that is not a plain name) is replaced, never echoed."""
    loc = [p for p in err.get("loc", ()) if p != "body"]
    if err.get("type") == "extra_forbidden" and loc:
        loc[-1] = UNKNOWN_FIELD
    return ".".join(
        str(p) if isinstance(p, int) or p == UNKNOWN_FIELD or str(p).isidentifier() else _KEY for p in loc
    )


def detail_text(detail: Any) -> str:
    """Pydantic's error list → ``"loc.path: msg; other.loc: msg"`` (any other detail as a string)."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = field_path(err)
                parts.append(f"{loc}: {err.get('msg', '')}" if loc else str(err.get("msg", "")))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    return json.dumps(detail, default=str)


def client_error_summary(exc: BaseException) -> str | None:
    """One line for the log of a client error (a request the schema rejects, a BentoML 4xx): the fields
    and their rules, no value; None for anything else (a server error keeps its traceback)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        rules = "; ".join(f"{field_path(dict(e)) or '(body)'}: {e.get('type', '?')}" for e in errors[:10])
        more = f"; … {len(errors) - 10} more" if len(errors) > 10 else ""
        return f"{len(errors)} validation error(s): {rules}{more}"
    code = getattr(getattr(exc, "error_code", None), "value", None)
    if isinstance(code, int) and 400 <= code < 500:
        return f"{type(exc).__name__} (HTTP {code})"  # BentoML's own text may quote the request: not logged
    return None


class ClientErrorLog(logging.Filter):
    """On BentoML's request-exception logger: a client error's record becomes one WARNING line, ``client
    error on <path> [<method>]: <fields and rules>``, with no traceback (whose text holds the values)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        summary = client_error_summary(exc) if exc is not None else None
        if summary is None:
            return True
        where = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        record.msg, record.args = "client error on %s [%s]: %s", (*where, summary)
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def install_client_error_log() -> None:
    """Put :class:`ClientErrorLog` on BentoML's request-exception logger (once per process)."""
    log = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, ClientErrorLog) for f in log.filters):
        log.addFilter(ClientErrorLog())


def _content_type(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


class RequestEdge:
    """Rejects non-JSON POST bodies with a 400, makes every 400 ``detail`` a string without the client's
    values or keys, keeps client errors' values out of the service log (:class:`ClientErrorLog`), and
    answers 408 to a body that does not arrive within ``body_timeout_s``."""

    def __init__(self, app: ASGIApp, body_timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        install_client_error_log()  # built in each worker, after BentoML configured its logging

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
            deadline = _BodyDeadline(receive, send, self.body_timeout_s)
            await self.app(scope, deadline.receive, _RewriteBadRequest(deadline.send))
            return
        await self.app(scope, receive, _RewriteBadRequest(send))


class _BodyDeadline:
    """``receive`` / ``send`` of one request with a deadline for its body: one timer, cancelled when the
    body is complete or the answer starts. When it fires first, the client gets a 408 with
    ``Connection: close`` (uvicorn then closes the connection, so the app's pending ``receive`` returns
    ``http.disconnect``) and whatever the app sends after that is dropped. A timer, not a time-out around
    each ``receive``: that cost several times as much per request on the hot path (docs/decisions/0013-serving-path.md)."""

    __slots__ = ("_receive", "_send", "_timer", "_started", "_timed_out", "_answer")

    def __init__(self, receive: Receive, send: Send, timeout_s: float) -> None:
        self._receive, self._send = receive, send
        self._started = self._timed_out = False
        self._answer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            timeout_s, self._expire
        )

    def _expire(self) -> None:
        self._timer = None
        if self._started:
            return
        self._timed_out = True
        payload = {"error": "Request Timeout", "detail": "the request body did not arrive in time"}
        self._answer = asyncio.ensure_future(_send_json(self._send, 408, payload, close=True))

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def receive(self) -> Message:
        message = await self._receive()
        if self._timed_out:
            return {"type": "http.disconnect"}
        if self._timer is not None and (
            message.get("type") != "http.request" or not message.get("more_body")
        ):
            self._disarm()  # the body is complete (or the client left): no deadline any more
        return message

    async def send(self, message: Message) -> None:
        if self._timed_out:
            return
        if not self._started:
            self._started = True
            self._disarm()
        await self._send(message)


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


async def _send_json(send: Send, status: int, payload: dict[str, Any], close: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # uvicorn closes the connection after this answer
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _raw_json_response(status: int, reason: str, payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")  # fmt: skip
    return head.encode() + body


# Written by the HTTP protocol itself (no ASGI app has seen the request): the same body as the body deadline's.
HEADER_TIMEOUT_ANSWER = _raw_json_response(
    408,
    "Request Timeout",
    {"error": "Request Timeout", "detail": "the request headers did not arrive in time"},
)


def install_header_deadline(timeout_s: float = HEADER_TIMEOUT_S, linger_s: float = HEADER_LINGER_S) -> None:
    """Every connection the service's workers accept must complete a request's headers within
    ``timeout_s`` of their first byte (408, then a close that lingers up to ``linger_s``), or send
    something within it (else closed). Called when the service module is imported, before BentoML's
    worker starts uvicorn."""
    framework_adapter.install_header_deadline(timeout_s, HEADER_TIMEOUT_ANSWER, linger_s)
