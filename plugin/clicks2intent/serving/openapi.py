"""The service's OpenAPI document, corrected to say what the service does.

BentoML generates ``/docs.json`` from the endpoints' pydantic schemas, but three things in it were not
true of this service, and generated typed clients trusted them:

* ``/metrics`` was listed while it answers 404 unless ``C2I_METRICS=1``: it is listed only when on;
* a 503 (the online feature store could not be read) and a 408 (the body did not arrive in time,
  clicks2intent.serving.edge) were sent but not documented;
* the 200 answers had no examples (Swagger UI showed placeholders): each carries an answer in the
  bank's own terms (its tiles, products, Feast names and label ids; :func:`example_responses`);
* request bodies were not marked required, so a POST without a body was schema-valid (and a 400):
  every POST body is required.

The routes the service mounts itself (clicks2intent.serving.endpoints, ``@bentoml.asgi_app``) are not
BentoML APIs, so BentoML does not list them: :func:`json_route` writes each one's path item in the shape
BentoML gives its own APIs, with the errors that route answers.

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
TIMEOUT = "RequestTimeout"
REF_TEMPLATE = "#/components/schemas/{model}"


def _error_schema(title: str, description: str, detail: bool = True) -> dict[str, Any]:
    """An error body ``{"error": str[, "detail": str]}`` as BentoML documents its own."""
    properties: dict[str, Any] = {"error": {"type": "string", "title": "Message"}}
    if detail:
        properties["detail"] = {"type": "string", "title": "Error Detail"}
    return {"type": "object", "title": title, "required": ["error"], "properties": properties,
            "description": description}  # fmt: skip


# The error bodies BentoML documents for its APIs (its InvalidArgument / InternalServerError components).
ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "InvalidArgument": _error_schema("InvalidArgument", "Bad Request"),
    "InternalServerError": _error_schema("InternalServerError", "Internal Server Error"),
    UNAVAILABLE: _error_schema(UNAVAILABLE, "Service Unavailable", detail=False),
    TIMEOUT: _error_schema(TIMEOUT, "Request Timeout"),
}


def _json_ref(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def json_route(
    name: str, request_model: Any, response_model: Any, description: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(path item, component schemas it refers to) of a mounted JSON route, in BentoML's shape for an
    API: the request and 200 schemas inline (pydantic, OpenAPI 3.0 dialect), their sub-models as
    components, 400 and 500 as BentoML's error bodies (:func:`service_document` adds 408 and 503)."""
    request = request_model.model_json_schema(ref_template=REF_TEMPLATE)
    response = response_model.model_json_schema(ref_template=REF_TEMPLATE)
    components = {**request.pop("$defs", {}), **response.pop("$defs", {})}
    item = {
        "post": {
            "responses": {
                "200": {
                    "description": "Successful Response",
                    "content": {"application/json": {"schema": response}},
                },
                "400": {"description": "Bad Request", "content": _json_ref("InvalidArgument")},
                "500": {"description": "Internal Server Error", "content": _json_ref("InternalServerError")},
            },
            "tags": ["Service APIs"],
            "x-bentoml-name": name,
            "description": description,
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        }
    }
    return item, components


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
    spec: Mapping[str, Any],
    *,
    metrics: bool,
    examples: Mapping[str, Any] | None = None,
    routes: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """BentoML's document plus the mounted ``routes`` (path → :func:`json_route`), with ``/metrics``
    only when served, every POST body required, the 408 and 503 documented, 200 examples in the
    bank's terms (:func:`example_responses`)."""
    examples = examples or {}
    doc = copy.deepcopy(dict(spec))
    paths = doc.setdefault("paths", {})
    if not metrics:
        paths.pop(METRICS_PATH, None)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ERROR_SCHEMAS.items():
        schemas.setdefault(name, copy.deepcopy(schema))
    for path, (item, components) in (routes or {}).items():
        paths[path] = copy.deepcopy(dict(item))
        for name, schema in components.items():
            schemas.setdefault(name, copy.deepcopy(schema))
    for route, item in paths.items():
        post = item.get("post")
        if not post or "requestBody" not in post:
            continue
        post["requestBody"]["required"] = True
        post["responses"]["408"] = {
            "description": "Request Timeout: the request body did not arrive in time",
            "content": _json_ref(TIMEOUT),
        }
        post["responses"]["503"] = {
            "description": "Service Unavailable: the online feature store could not be read; retry later",
            "content": _json_ref(UNAVAILABLE),
        }
        if route in examples:
            post["responses"]["200"]["content"]["application/json"]["example"] = examples[route]
    return doc


class OpenAPIDocument:
    """ASGI middleware: ``GET /docs.json`` answers :func:`service_document` of BentoML's document."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: bool = False,
        examples: Mapping[str, Any] | None = None,
        routes: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.examples = dict(examples or {})
        self.routes = dict(routes or {})

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
            doc = service_document(
                json.loads(payload), metrics=self.metrics, examples=self.examples, routes=self.routes
            )
            payload = json.dumps(doc).encode()
        headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
