"""The service's OpenAPI document, corrected to say what the service does.

BentoML generates ``/docs.json`` from the endpoints' pydantic schemas, but three things in it were not
true of this service, and generated typed clients trusted them:

* ``/metrics`` was listed while it answers 404 unless ``C2I_METRICS=1``: it is listed only when on;
* a 503 (the online feature store could not be read) was sent but not documented;
* the 200 answers had no examples (Swagger UI showed placeholders): each carries a real answer of the
  service to the request example of its schema (``c0000001`` / ``v0000001`` with the mortgage session),
  recorded from a demo run of the whole pipeline (the values change with every retraining).

:func:`service_document` rewrites the document (a pure function, tested); :class:`OpenAPIDocument` is
the ASGI middleware the service installs, touching only ``GET /docs.json``. The contract test
(``tests/serving/test_contract.py``) checks every answer and error of the service against the result.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DOCUMENT_PATH = "/docs.json"
METRICS_PATH = "/metrics"
UNAVAILABLE = "ServiceUnavailable"

# Real answers to the schemas' request examples (serving.schemas.EXAMPLE_*), recorded from a demo run.
EXAMPLE_RANK_TILES_RESPONSE: dict[str, Any] = {
    "tiles": [
        {"tile_id": "retirement", "score": 0.1758},
        {"tile_id": "account_services", "score": 0.1721},
        {"tile_id": "credit_card", "score": 0.1633},
    ],
    "intent": {"label": "mortgage_calculator", "confidence": 0.3488, "source": "session"},
    "model": {"name": "tile_ranker_v1", "version": "n3agkzxn3cuegax4"},
    "explanation": None,
}
EXAMPLE_CONVERSION_RESPONSE: dict[str, Any] = {
    "probabilities": {
        "mortgage": 0.0051,
        "credit_card": 0.0071,
        "auto_loan": 0.0043,
        "personal_loan": 0.0045,
        "savings": 0.0036,
        "investing": 0.0041,
        "retirement": 0.0022,
        "business_banking": 0.0004,
        "none": 0.9688,
    },
    "predicted_product": "none",
    "intent": {"label": "mortgage_calculator", "confidence": 0.3488, "source": "session"},
    "model": {"name": "conversion_v1", "version": "ztvaichn3cuegax4"},
}
EXAMPLE_INTENT_RESPONSE: dict[str, Any] = {
    "embedding": [
        0.3399,
        0.0677,
        0.0474,
        -0.1117,
        0.0318,
        -0.0346,
        0.3394,
        0.1323,
        0.2193,
        0.2564,
        -0.1315,
        -0.0802,
        0.0223,
        0.0529,
        0.1719,
        0.3207,
        0.1324,
        0.0235,
        -0.1289,
        0.1018,
        -0.4414,
        0.2554,
        0.028,
        0.0305,
        0.1457,
        0.152,
        0.0924,
        0.0128,
        -0.027,
        0.0291,
        -0.2734,
        0.1443,
    ],
    "label": "mortgage_calculator",
    "label_name": "Mortgage calculator",
    "confidence": 0.3488,
    "top3": [
        {"label": "mortgage_calculator", "confidence": 0.3488},
        {"label": "credit_card", "confidence": 0.2631},
        {"label": "auto_loan_calculator", "confidence": 0.141},
    ],
    "taxonomy_version": "v1",
}
EXAMPLE_RESPONSES: dict[str, dict[str, Any]] = {
    "/rank_tiles": EXAMPLE_RANK_TILES_RESPONSE,
    "/predict_conversion": EXAMPLE_CONVERSION_RESPONSE,
    "/intent": EXAMPLE_INTENT_RESPONSE,
}


def service_document(
    spec: Mapping[str, Any], *, metrics: bool, examples: Mapping[str, Any] = EXAMPLE_RESPONSES
) -> dict[str, Any]:
    """BentoML's document with ``/metrics`` only when served, the 503 documented, real 200 examples."""
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

    def __init__(self, app: ASGIApp, metrics: bool = False) -> None:
        self.app = app
        self.metrics = metrics

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
            payload = json.dumps(service_document(json.loads(payload), metrics=self.metrics)).encode()
        headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
