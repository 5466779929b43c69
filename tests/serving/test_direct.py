"""DirectEndpoints: the success path answered directly, everything else handed on with its body intact."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

from clicks2intent.serving.direct import DirectEndpoints, DirectRoute, DirectRoutes


class Ask(BaseModel):
    n: int


class Answer(BaseModel):
    twice: int


def handler(req: Ask) -> Answer:
    if req.n < 0:
        raise RuntimeError("store down")
    return Answer(twice=2 * req.n)


class Inner:
    """The app behind the middleware (BentoML in the service): records what reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


def call(app: Any, body: bytes, method: str = "POST", path: str = "/ask", ctype: bytes = b"application/json",
         chunks: int = 1) -> tuple[int, dict[bytes, bytes], bytes]:  # fmt: skip
    size = max(1, -(-len(body) // chunks))
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-type", ctype)]}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture()
def apps() -> tuple[DirectEndpoints, Inner]:
    inner = Inner()
    routes = DirectRoutes({"/ask": DirectRoute(Ask)}, headers=[(b"server", b"test")])
    routes.bind("/ask", handler)
    return DirectEndpoints(inner, routes), inner


def test_success_is_answered_directly_as_one_json_body(apps: tuple[DirectEndpoints, Inner]) -> None:
    app, inner = apps
    status, headers, body = call(app, b'{"n": 21}', chunks=3)
    assert status == 200 and json.loads(body) == {"twice": 42} and not inner.bodies
    assert headers[b"content-length"] == str(len(body)).encode() and headers[b"server"] == b"test"
    assert headers[b"content-type"] == b"application/json"


@pytest.mark.parametrize("body", [b'{"n": "x"}', b"{not json", b'{"n": -1}', b""])
def test_any_failure_is_handed_on_with_the_same_body(
    apps: tuple[DirectEndpoints, Inner], body: bytes
) -> None:
    app, inner = apps
    assert call(app, body, chunks=2) == (418, {}, b"inner")
    assert inner.bodies == [body]


@pytest.mark.parametrize(
    "kw", [{"method": "GET"}, {"path": "/other"}, {"ctype": b"multipart/form-data"}, {"ctype": b"text/plain"}]
)
def test_other_methods_routes_and_body_types_pass_through(
    apps: tuple[DirectEndpoints, Inner], kw: dict[str, Any]
) -> None:
    app, inner = apps
    assert call(app, b'{"n": 1}', **kw)[0] == 418 and inner.bodies == [b'{"n": 1}']


def test_json_with_parameters_is_direct_and_an_unbound_route_is_not() -> None:
    inner = Inner()
    routes = DirectRoutes({"/ask": DirectRoute(Ask)})
    app = DirectEndpoints(inner, routes)
    assert call(app, b'{"n": 1}')[0] == 418  # no engine yet (the worker has not built it)
    routes.bind("/ask", handler)
    assert call(app, b'{"n": 1}', ctype=b"Application/JSON; charset=utf-8")[0] == 200
