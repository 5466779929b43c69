"""The service's answers and errors are what its OpenAPI document says they are (generated typed clients
trust the document): every status code sent is documented for its path, every body validates against
the schema documented for that status, the 200 examples are answers in the bank's own terms (its world's
tiles, products and label ids) of the documented shape, ``/metrics`` is listed only when it is served.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from clicks2intent.data.simulator import simulator_world
from clicks2intent.data.world import load_world
from clicks2intent.names import settings as ENV
from clicks2intent.names.paths import ArtifactLayout
from clicks2intent.serving import schemas
from clicks2intent.serving.openapi import METRICS_PATH, example_responses, service_document

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # the tiny pipeline
EXAMPLES = schemas.examples(simulator_world())  # the pipeline's data are simulated


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
    events = EXAMPLES.events
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
        ("/intent", EXAMPLES.intent),
        ("/intent", {"session_events": [dict(events[0], dwell_seconds=None)]}),
        ("/intent", {"session_events": [dict(events[0], page_type="/no/such/page")]}),  # no label: nulls
        ("/rank_tiles", {"customer_id": ids["customer"], "session_events": [dict(events[0], page_type="x")]}),
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
    app: Any, second_app: Any, pipeline: Path, ids: dict[str, str], tmp_path: Path
) -> None:
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
        with second_app(service) as client:
            doc = Contract(client.get("/docs.json").json())
            r = client.post("/rank_tiles", json={"customer_id": ids["customer"]})
    assert r.status_code == 503, r.text
    doc.check("/rank_tiles", 503, r.json())


def test_examples_are_answers_of_the_documented_shape(app: Any, contract: Contract, pipeline: Path) -> None:
    """The documented 200 examples speak the served world's terms: its tiles, products and the classifier's
    label ids (read here from the artifacts the service loads)."""
    from clicks2intent.intent.distill import IntentClassifier

    _, client = app
    layout = ArtifactLayout(pipeline)
    world = load_world(layout.features_world)
    clf = IntentClassifier.load(layout.intent)
    expected = example_responses(world, [str(c) for c in clf.classes_], clf.label_names)
    requests = {"/rank_tiles": EXAMPLES.rank_tiles, "/predict_conversion": EXAMPLES.conversion,
                "/intent": EXAMPLES.intent}  # fmt: skip
    assert set(expected) == set(requests)
    for path, example in expected.items():
        documented = contract.doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
        assert documented["example"] == example
        contract.check(path, 200, example)
        answer = client.post(path, json=requests[path]).json()
        assert set(answer) == set(example)
        assert set(answer.get("intent") or {}) == set(example.get("intent") or {})
    assert expected["/intent"]["label"] == expected["/intent"]["top3"][0]["label"] == str(clf.classes_[0])
    assert [t["tile_id"] for t in expected["/rank_tiles"]["tiles"]] == list(world.tiles[:3])
    assert set(expected["/predict_conversion"]["probabilities"]) == set(world.classes("conversion"))


def test_metrics_is_listed_only_when_served(app: Any, contract: Contract) -> None:
    _, client = app
    assert METRICS_PATH not in contract.doc["paths"]
    assert client.get(METRICS_PATH).status_code == 404
    assert METRICS_PATH in service_document({"paths": {METRICS_PATH: {}}}, metrics=True)["paths"]
