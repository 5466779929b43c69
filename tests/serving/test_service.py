"""bento/service.py in BentoML's three test layers: the class in-process, the ASGI app with a test
client (status codes, schemas, bad input, fallbacks), and one real ``bentoml serve`` subprocess.

All run on the tiny real deployment of ``conftest.build_serving_pipeline`` (built once per session).
``/rank_tiles`` is the route the service mounts itself (``@bentoml.asgi_app``); the other two are
``@bentoml.api`` methods: each route is declared once, and every answer of ``/rank_tiles`` comes from
the one path (the engine runs once per request).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clicks2intent.data.simulator import simulator_world
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names import settings as ENV
from clicks2intent.serving import schemas

REPO_ROOT = Path(__file__).resolve().parents[2]
TILE_SERVICE, CONVERSION_SERVICE = N.TILE_RANKER_V1, N.CONVERSION_V1
pytestmark = pytest.mark.slow  # every test here needs the tiny pipeline (~30 s to build, once)
WORLD = simulator_world()  # the pipeline's data are simulated: the service's world is the simulator's
EXAMPLES = schemas.examples(WORLD)


@pytest.fixture(scope="module")
def service_cls(pipeline: Path) -> Iterator[Any]:
    """``bento.service.Clicks2Intent`` wired to the pipeline: its model store, Feast repo, artifacts."""
    import torch
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    threads = torch.get_num_threads()  # the service sets 1 per worker; give the test process its own back
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV.ARTIFACTS, str(pipeline))
        mp.setenv(ENV.FEATURE_REPO, str(pipeline / "feature_repo"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "True")
        # Two ASGI apps in one process would register the Prometheus collectors twice (metrics are off
        # by default; the real `bentoml serve` test below turns them on).
        mp.setenv(ENV.METRICS, "0")
        mp.syspath_prepend(str(REPO_ROOT))
        with BentoMLContainer.model_store.patch(ModelStore(str(pipeline / "bentoml" / "models"))):
            sys.modules.pop("bento.service", None)
            module = importlib.import_module("bento.service")
            yield module.Clicks2Intent
            sys.modules.pop("bento.service", None)
    torch.set_num_threads(threads)


# --- layer 1: the service class in-process ------------------------------------------------------
def test_service_class_in_process(service_cls: Any, ids: dict[str, str]) -> None:
    module = sys.modules["bento.service"]
    assert module.WORLD.digest == WORLD.digest  # read from the artifacts' features/world.yaml at import
    assert module.API.tiles == WORLD.tiles and EXAMPLES.rank_tiles == module.EXAMPLE_INPUT
    svc = service_cls()
    ranked = asyncio.run(
        svc.rank_tiles(module.API.rank_tiles(customer_id=ids["customer"], k=2))
    )  # the route's
    assert isinstance(ranked, schemas.RankTilesResponse) and len(ranked.tiles) == 2
    assert ranked.intent.source == "customer" and ranked.model.name == TILE_SERVICE
    conv = svc.predict_conversion(visitor_id=ids["visitor"])
    assert conv.model.name == CONVERSION_SERVICE and conv.intent.source == "visitor"
    intent = svc.intent(session_events=schemas.IntentRequest.model_validate(EXAMPLES.intent).session_events)
    assert intent.label == intent.top3[0].label


# --- layer 2: the ASGI app with a test client -----------------------------------------------------
@pytest.fixture(scope="module")
def client(service_cls: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    with TestClient(service_cls.to_asgi()) as c:
        yield c


def test_asgi_endpoints_answer_with_their_schemas(client: Any, ids: dict[str, str]) -> None:
    assert client.get("/readyz").status_code == 200
    r = client.post("/rank_tiles", json={"customer_id": ids["customer"], "k": 3, "explain": True})
    assert r.status_code == 200, r.text
    body = schemas.RankTilesResponse.model_validate(r.json())
    assert len(body.tiles) == 3 and body.explanation is not None
    r = client.post(
        "/predict_conversion", json={"visitor_id": ids["visitor"], "session_events": EXAMPLES.events}
    )
    assert r.status_code == 200, r.text
    conv = schemas.ConversionResponse.model_validate(r.json())
    assert conv.intent.source == "session" and set(conv.probabilities) == set(WORLD.products) | {
        C.NO_CONVERSION
    }
    r = client.post("/intent", json=EXAMPLES.intent)
    assert r.status_code == 200, r.text
    assert len(schemas.IntentResponse.model_validate(r.json()).top3) == 3


def test_each_route_is_declared_once_and_rank_tiles_is_the_mounted_one(service_cls: Any) -> None:
    apis = {api.route for api in service_cls.apis.values()}
    mounted = [r.path for app, _, _ in service_cls.mount_apps for r in getattr(app, "routes", [])]
    assert "/rank_tiles" in mounted and "/rank_tiles" not in apis
    assert {"/predict_conversion", "/intent"} <= apis
    assert len(mounted) == len(set(mounted)) and not apis & set(mounted)
    answered_by = sys.modules["bento.service"].ROUTES["/rank_tiles"]
    assert answered_by.request_model is sys.modules["bento.service"].API.rank_tiles


def test_rank_tiles_runs_the_engine_once_per_request_whatever_the_answer(
    client: Any, ids: dict[str, str]
) -> None:
    """200, 503, 500 and 400 all come from the mounted route: the engine runs once (never for a 400),
    and each answer is one JSON body with a Content-Length."""
    import bentoml

    from clicks2intent.serving.engine import FeatureStoreUnavailable

    engine = bentoml.get_current_service().engine
    real = engine.rank_tiles_async
    calls: list[str] = []
    failure: list[BaseException] = []

    async def counted(request: Any) -> Any:
        calls.append(request.customer_id)
        if failure:
            raise failure[0]
        return await real(request)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "rank_tiles_async", counted)
        ok = client.post("/rank_tiles", json={"customer_id": ids["customer"]})
        failure.append(FeatureStoreUnavailable("online feature store read failed: ConnectionError: down"))
        unavailable = client.post("/rank_tiles", json={"customer_id": ids["customer"]})
        failure[0] = RuntimeError("a bug")
        broken = client.post("/rank_tiles", json={"customer_id": ids["customer"]})
        bad = client.post("/rank_tiles", json={"customer_id": ids["customer"], "k": 0})
    assert calls == [ids["customer"]] * 3
    assert [r.status_code for r in (ok, unavailable, broken, bad)] == [200, 503, 500, 400]
    assert unavailable.json() == {"error": "online feature store read failed: ConnectionError: down"}
    assert broken.json() == {"error": "Internal Server Error"} and "a bug" not in broken.text
    assert bad.json()["detail"] == "k: Input should be greater than or equal to 1"
    for r in (ok, unavailable, broken, bad):
        assert r.headers["content-type"] == "application/json"
        assert int(r.headers["content-length"]) == len(r.content)


def test_asgi_unknown_ids_are_a_fallback_not_an_error(client: Any, ids: dict[str, str]) -> None:
    r = client.post(
        "/rank_tiles", json={"customer_id": ids["unknown_customer"], "visitor_id": ids["unknown_visitor"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["intent"] == {
        "label": None,
        "confidence": None,
        "source": "none",
        "unknown_page_share": None,
    }
    r = client.post(
        "/rank_tiles", json={"customer_id": ids["unknown_customer"], "visitor_id": ids["visitor"]}
    )
    assert r.status_code == 200 and r.json()["intent"]["source"] == "visitor"
    r = client.post("/predict_conversion", json={"visitor_id": ids["unknown_visitor"]})
    assert r.status_code == 200 and r.json()["intent"]["source"] == "none"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/rank_tiles", {}, "customer_id"),
        ("/rank_tiles", {"customer_id": "c1", "k": 99}, "k"),
        ("/rank_tiles", {"customer_id": "c1", "candidate_tiles": ["spaceship"]}, "candidate_tiles"),
        (
            "/rank_tiles",
            {
                "customer_id": "c1",
                "session_events": [{"page_type": "home"}] * (schemas.MAX_SESSION_EVENTS + 1),
            },
            "session_events",
        ),
        ("/rank_tiles", {"customer_id": "c1", "session_events": [{"page_type": "home"}]}, "event_timestamp"),
        ("/predict_conversion", {}, "visitor_id and/or session_events"),
        ("/intent", {"session_events": []}, "session_events"),
        ("/intent", {"session_events": "home"}, "session_events"),
    ],
)
def test_asgi_bad_input_is_a_400_naming_the_field(
    client: Any, path: str, body: dict[str, Any], field: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_asgi_unreachable_online_store_is_a_503(
    service_cls: Any,
    client: Any,
    second_app: Any,
    pipeline: Path,
    ids: dict[str, str],
    tmp_path: Path,
) -> None:
    broken = tmp_path / "feature_store.broken.yaml"
    broken.write_text(
        "project: c2i_serving_test\nprovider: local\n"
        f"registry: {pipeline / 'feature_repo' / 'data' / 'registry.db'}\n"
        f"online_store:\n  type: sqlite\n  path: {tmp_path / 'no-such-dir' / 'online.db'}\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV.FEAST_CONFIG, str(broken))
        with second_app(service_cls) as broken_client:
            r = broken_client.post("/rank_tiles", json={"customer_id": ids["customer"]})
    assert r.status_code == 503, r.text
    assert client.post("/rank_tiles", json={"customer_id": ids["customer"]}).status_code == 200


def test_asgi_malformed_json_is_a_400(client: Any) -> None:
    r = client.post("/rank_tiles", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_openapi_documents_fields_and_examples(client: Any) -> None:
    spec = client.get("/docs.json").json()
    assert {"/rank_tiles", "/predict_conversion", "/intent"} <= set(spec["paths"])
    text = str(spec)
    assert "Logged-in customer" in text  # pydantic field docs reach the API docs
    assert EXAMPLES.rank_tiles["customer_id"] in text  # and the example input
    body = spec["paths"]["/rank_tiles"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    rank = body["properties"]["candidate_tiles"]
    assert rank["items"]["enum"] == list(WORLD.tiles)  # the tile enum is the served world's


# --- layer 3: a real `bentoml serve` on a free loopback port --------------------------------------
def test_bentoml_serve_subprocess(pipeline: Path, ids: dict[str, str], tmp_path: Path) -> None:
    from clicks2intent.serving.launcher import running_service

    log = tmp_path / "serve.log"
    with running_service(
        pipeline,
        feature_repo=pipeline / "feature_repo",
        workers=1,
        log_path=log,
        bentoml_home=pipeline / "bentoml",
        extra_env={ENV.METRICS: "1"},  # the opt-in Prometheus endpoint works too
    ) as (url, proc):
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=30) as http:
            r = http.post("/rank_tiles", json={"customer_id": ids["customer"]})
            assert r.status_code == 200, r.text + log.read_text()[-2000:]
            assert r.json()["intent"]["source"] == "customer"
            assert http.post("/predict_conversion", json={"visitor_id": ids["visitor"]}).status_code == 200
            assert http.post("/intent", json=EXAMPLES.intent).status_code == 200
            assert http.post("/rank_tiles", json={"customer_id": ""}).status_code == 400
            assert "bentoml_service_request" in http.get("/metrics").text
    assert proc.poll() is not None  # stopped with its workers


# Packaging (`bentoml build`, serving the built bento, the image context): tests/serving/test_bento.py


def test_a_service_that_dies_at_start_says_why(tmp_path: Path) -> None:
    """An early exit names the status and carries the service log's last lines (CI shows the cause)."""
    from clicks2intent.errors import ServiceError
    from clicks2intent.serving.launcher import running_service

    log = tmp_path / "serve.log"
    with (
        pytest.raises(ServiceError, match=r"exited with status \d+ before it was ready; last lines of"),
        running_service(tmp_path, target="no_such_module_c2i:Service", log_path=log, timeout=60),
    ):
        pass
