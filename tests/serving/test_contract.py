"""The service's answers and errors are what its OpenAPI document says they are (generated typed clients
trust the document): every status code sent is documented for its path, every body validates against
the schema documented for that status, the 200 examples are real answers, ``/metrics`` is listed only
when it is served.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from clicks2intent.names import settings as ENV
from clicks2intent.serving import schemas
from clicks2intent.serving.openapi import EXAMPLE_RESPONSES, METRICS_PATH, service_document

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # the tiny pipeline


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: ``nullable`` becomes ``null`` allowed, ``$ref`` keeps siblings."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k not in ("nullable", "example", "examples")}
    if "$ref" in out and len(out) > 1:
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


class Contract:
    """The document's responses per (path, status) as JSON Schema validators."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.components = _json_schema(doc.get("components", {}))

    def statuses(self, path: str) -> set[str]:
        return set(self.doc["paths"][path]["post"]["responses"])

    def schema(self, path: str, status: int) -> dict[str, Any]:
        response = self.doc["paths"][path]["post"]["responses"][str(status)]
        return response["content"]["application/json"]["schema"]

    def check(self, path: str, status: int, body: Any) -> None:
        assert str(status) in self.statuses(path), (
            f"{path} sent {status}, documented {sorted(self.statuses(path))}"
        )
        root = {"allOf": [_json_schema(self.schema(path, status))], "components": self.components}
        jsonschema.validate(body, root)


@pytest.fixture(scope="module")
def app(pipeline: Path) -> Iterator[Any]:
    import torch
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore
    from starlette.testclient import TestClient

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV.ARTIFACTS, str(pipeline))
        mp.setenv(ENV.FEATURE_REPO, str(pipeline / "feature_repo"))
        mp.setenv(ENV.METRICS, "0")
        mp.setenv("BENTOML_DO_NOT_TRACK", "True")
        mp.syspath_prepend(str(REPO_ROOT))
        with BentoMLContainer.model_store.patch(ModelStore(str(pipeline / "bentoml" / "models"))):
            sys.modules.pop("bento.service", None)
            service = importlib.import_module("bento.service").Clicks2Intent
            with TestClient(service.to_asgi()) as client:
                yield service, client
            sys.modules.pop("bento.service", None)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def contract(app: Any) -> Contract:
    _, client = app
    return Contract(client.get("/docs.json").json())


def _cases(ids: dict[str, str]) -> list[tuple[str, Any]]:
    events = schemas.EXAMPLE_EVENTS
    return [
        ("/rank_tiles", {"customer_id": ids["customer"]}),
        (
            "/rank_tiles",
            {
                "customer_id": ids["customer"],
                "k": 2,
                "explain": True,
                "candidate_tiles": ["mortgage", "savings"],
            },
        ),
        ("/rank_tiles", {"customer_id": ids["unknown_customer"], "visitor_id": ids["visitor"]}),
        ("/rank_tiles", {"customer_id": ids["unknown_customer"], "session_events": events}),
        ("/predict_conversion", {"visitor_id": ids["visitor"]}),
        ("/predict_conversion", {"visitor_id": ids["unknown_visitor"], "session_events": events}),
        ("/intent", schemas.EXAMPLE_INTENT),
        ("/intent", {"session_events": [dict(events[0], dwell_seconds=None)]}),
        # errors
        ("/rank_tiles", {}),
        ("/rank_tiles", {"customer_id": "c1", "k": 99}),
        ("/rank_tiles", {"customer_id": "c1", "candidate_tiles": ["spaceship"]}),
        ("/rank_tiles", {"customer_id": "c1", "session_events": [{"page_type": "home"}]}),
        ("/predict_conversion", {}),
        ("/intent", {"session_events": []}),
        ("/intent", {"session_events": "home"}),
        ("/intent", [1, 2]),
        ("/rank_tiles", b"{not json"),
    ]


def test_every_answer_and_error_matches_the_document(
    app: Any, contract: Contract, ids: dict[str, str]
) -> None:
    _, client = app
    seen: set[int] = set()
    for path, body in _cases(ids):
        if isinstance(body, bytes):
            r = client.post(path, content=body, headers={"content-type": "application/json"})
        else:
            r = client.post(path, json=body)
        contract.check(path, r.status_code, r.json())
        seen.add(r.status_code)
    r = client.post(
        "/intent", content=b"page_type=home", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    contract.check("/intent", r.status_code, r.json())
    assert seen == {200, 400}


def test_an_unreachable_store_is_a_documented_503(
    app: Any, pipeline: Path, ids: dict[str, str], tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    service, _ = app
    broken = tmp_path / "feature_store.broken.yaml"
    broken.write_text(
        "project: c2i_serving_test\nprovider: local\n"
        f"registry: {pipeline / 'feature_repo' / 'data' / 'registry.db'}\n"
        f"online_store:\n  type: sqlite\n  path: {tmp_path / 'no-such-dir' / 'online.db'}\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV.FEAST_CONFIG, str(broken))
        with TestClient(service.to_asgi()) as client:
            doc = Contract(client.get("/docs.json").json())
            r = client.post("/rank_tiles", json={"customer_id": ids["customer"]})
    assert r.status_code == 503, r.text
    doc.check("/rank_tiles", 503, r.json())


def test_examples_are_real_answers_of_the_documented_shape(app: Any, contract: Contract) -> None:
    _, client = app
    requests = {"/rank_tiles": schemas.EXAMPLE_RANK_TILES, "/predict_conversion": schemas.EXAMPLE_CONVERSION,
                "/intent": schemas.EXAMPLE_INTENT}  # fmt: skip
    for path, example in EXAMPLE_RESPONSES.items():
        documented = contract.doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
        assert documented["example"] == example
        contract.check(path, 200, example)
        answer = client.post(path, json=requests[path]).json()
        assert set(answer) == set(example)
        assert set(answer.get("intent") or {}) == set(example.get("intent") or {})
    assert EXAMPLE_RESPONSES["/intent"]["label"] == EXAMPLE_RESPONSES["/intent"]["top3"][0]["label"]


def test_metrics_is_listed_only_when_served(app: Any, contract: Contract) -> None:
    _, client = app
    assert METRICS_PATH not in contract.doc["paths"]
    assert client.get(METRICS_PATH).status_code == 404
    assert METRICS_PATH in service_document({"paths": {METRICS_PATH: {}}}, metrics=True)["paths"]
