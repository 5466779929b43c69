"""The service's OpenAPI document, corrected to say what the service does.

BentoML generates ``/docs.json`` from the endpoints' pydantic schemas, but three things in it were not
true of this service, and generated typed clients trusted them:

* ``/metrics`` was listed while it answers 404 unless ``C2I_METRICS=1``: it is listed only when on;
* a 503 (the online feature store could not be read) was sent but not documented;
* the 200 answers had no examples (Swagger UI showed placeholders): each carries an answer in the
  bank's own terms (its tiles, products, Feast names and label ids; :func:`example_responses`).

:func:`service_document` rewrites the document (a pure function, tested); :class:`OpenAPIDocument` is
the ASGI middleware the service installs, touching only ``GET /docs.json``. The contract test
(``tests/serving/test_contract.py``) checks every answer and error of the service against the result.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clicks2intent.data.world import World

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DOCUMENT_PATH = "/docs.json"
METRICS_PATH = "/metrics"
UNAVAILABLE = "ServiceUnavailable"


def example_responses(
    world: World, labels: Sequence[str] = (), label_names: Mapping[str, str] | None = None, dim: int = 8
) -> dict[str, dict[str, Any]]:
    """Illustrative 200 answers in the bank's own terms: its tiles, products, Feast names and the intent
    classifier's label ids (their shape, not a model's output: scores are made up and marked so)."""
    from clicks2intent.names.columns import NO_CONVERSION
    from clicks2intent.names.features import CONVERSION_V1, TILE_RANKER_V1

    label = labels[0] if labels else "L01"
    intent = {"label": label, "confidence": 0.62, "source": "session", "unknown_page_share": 0.0}
    products = list(world.products)
    share = round(0.2 / max(len(products), 1), 4)
    top = [label, *labels[1:3]]
    return {
        "/rank_tiles": {
            "tiles": [
                {"tile_id": t, "score": s} for t, s in zip(world.tiles[:3], (0.31, 0.22, 0.14), strict=False)
            ],
            "intent": intent,
            "model": {"name": world.feast_name(TILE_RANKER_V1), "version": "example"},
            "explanation": None,
        },
        "/predict_conversion": {
            "probabilities": dict.fromkeys(products, share)
            | {NO_CONVERSION: round(1 - share * len(products), 4)},
            "predicted_product": NO_CONVERSION,
            "intent": intent,
            "model": {"name": world.feast_name(CONVERSION_V1), "version": "example"},
        },
        "/intent": {
            "embedding": [round(dim**-0.5, 4)] * dim,
            "label": label,
            "label_name": (label_names or {}).get(label),
            "confidence": 0.62,
            "top3": [
                {"label": lab, "confidence": c} for lab, c in zip(top, (0.62, 0.21, 0.09), strict=False)
            ],
            "taxonomy_version": "example",
            "unknown_page_share": 0.0,
        },
    }


def service_document(
    spec: Mapping[str, Any], *, metrics: bool, examples: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """BentoML's document with ``/metrics`` only when served, the 503 documented, 200 examples in the
    bank's terms (:func:`example_responses`)."""
    examples = examples or {}
    doc = copy.deepcopy(dict(spec))
    paths = doc.setdefault("paths", {})
    if not metrics:
        paths.pop(METRICS_PATH, None)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas[UNAVAILABLE] = {
        "type": "object",
        "title": UNAVAILABLE,
        "required": ["error"],
        "properties": {"error": {"type": "string", "title": "Message"}},
        "description": "Service Unavailable",
    }
    for route, item in paths.items():
        post = item.get("post")
        if not post or "requestBody" not in post:
            continue
        post["responses"]["503"] = {
            "description": "Service Unavailable: the online feature store could not be read; retry later",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{UNAVAILABLE}"}}},
        }
        if route in examples:
            post["responses"]["200"]["content"]["application/json"]["example"] = examples[route]
    return doc


class OpenAPIDocument:
    """ASGI middleware: ``GET /docs.json`` answers :func:`service_document` of BentoML's document."""

    def __init__(
        self, app: ASGIApp, metrics: bool = False, examples: Mapping[str, Any] | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.examples = dict(examples or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "GET"
            or not scope.get("path", "").endswith(DOCUMENT_PATH)
        ):
            await self.app(scope, receive, send)
            return
        start: Message = {}
        body = bytearray()

        async def buffer(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                body.extend(message.get("body", b""))

        await self.app(scope, receive, buffer)
        payload = bytes(body)
        if start.get("status") == 200:
            doc = service_document(json.loads(payload), metrics=self.metrics, examples=self.examples)
            payload = json.dumps(doc).encode()
        headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
