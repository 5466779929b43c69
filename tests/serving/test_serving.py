"""clicks2intent.serving: request validation (schemas), model inputs, fallbacks, endpoints (engine).

Fast tests use small real objects (pydantic schemas, a tiny XGBoost model). The ``pipeline`` fixture
(``conftest.py``) is a whole tiny deployment built the way ``make demo`` does, once per test session
(``test_service.py`` reuses it).
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from clicks2intent.data.simulator import simulator_world
from clicks2intent.data.world import World, parse_world
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.serving import engine as S
from clicks2intent.serving import schemas

TILE_SERVICE, CONVERSION_SERVICE = N.TILE_RANKER_V1, N.CONVERSION_V1
WORLD = simulator_world()  # the pipeline's data are simulated: its world is the simulator's
API = schemas.service_schemas(WORLD)  # the request models the service builds from that world
EXAMPLES = API.examples


# --- request validation ------------------------------------------------------------------------
def _event(**kw: Any) -> dict[str, Any]:
    return {"page_type": "home", "event_timestamp": "2026-03-01T10:00:00Z"} | kw


def _loc(err: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in err.errors()]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "customer_id"),
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": " c1"}, "customer_id"),
        ({"customer_id": "c" * (schemas.MAX_ID_LENGTH + 1)}, "customer_id"),
        ({"customer_id": "c1", "visitor_id": ""}, "visitor_id"),
        ({"customer_id": "c1", "k": 0}, "k"),
        ({"customer_id": "c1", "k": len(WORLD.tiles) + 1}, "k"),
        ({"customer_id": "c1", "candidate_tiles": ["mortgage", "spaceship"]}, "candidate_tiles.1"),
        ({"customer_id": "c1", "candidate_tiles": ["mortgage", "mortgage"]}, "candidate_tiles"),
        ({"customer_id": "c1", "candidate_tiles": []}, "candidate_tiles"),
        (
            {"customer_id": "c1", "session_events": [_event()] * (schemas.MAX_SESSION_EVENTS + 1)},
            "session_events",
        ),
        (
            {"customer_id": "c1", "session_events": [{"page_type": "home"}]},
            "session_events.0.event_timestamp",
        ),
        ({"customer_id": "c1", "session_events": [_event(page_type="  ")]}, "session_events.0.page_type"),
        (
            {"customer_id": "c1", "session_events": [_event(dwell_seconds=-1)]},
            "session_events.0.dwell_seconds",
        ),
        ({"customer_id": "c1", "session_events": [_event(channel="fax")]}, "session_events.0.channel"),
        (
            {"customer_id": "c1", "session_events": [_event(search_query="x" * 600)]},
            "session_events.0.search_query",
        ),
        ({"customer_id": "c1", "session_events": [_event(colour="red")]}, "session_events.0.colour"),
        ({"customer_id": "c1", "surprise": True}, "surprise"),
    ],
)
def test_rank_tiles_request_rejects_bad_input_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        API.rank_tiles.model_validate(body)
    assert field in _loc(err.value)


def test_the_world_free_request_takes_any_well_formed_tile() -> None:
    """The module's request class names no bank's tiles; a world's model bounds them by its own."""
    body = {"customer_id": "c1", "candidate_tiles": ["spaceship", "travel_card"], "k": len(WORLD.tiles) + 1}
    assert schemas.RankTilesRequest.model_validate(body).candidate_tiles == ["spaceship", "travel_card"]
    for bad, field in (
        ({"candidate_tiles": ["Space Ship"]}, "candidate_tiles.0"),
        ({"candidate_tiles": ["a", "a"]}, "candidate_tiles"),
        ({"k": schemas.MAX_TILES + 1}, "k"),
    ):
        with pytest.raises(ValidationError) as err:
            schemas.RankTilesRequest.model_validate({"customer_id": "c1"} | bad)
        assert field in _loc(err.value)
    tiles = API.rank_tiles.model_json_schema()["properties"]["candidate_tiles"]
    assert tiles["items"]["enum"] == list(WORLD.tiles) and tiles["maxItems"] == len(WORLD.tiles)
    assert schemas.service_schemas(WORLD) is API  # built once per declaration


def test_conversion_and_intent_requests_need_something_to_score() -> None:
    with pytest.raises(ValidationError, match="visitor_id and/or session_events"):
        schemas.ConversionRequest.model_validate({})
    with pytest.raises(ValidationError) as err:
        schemas.IntentRequest.model_validate({"session_events": []})
    assert "session_events" in _loc(err.value)
    assert schemas.ConversionRequest.model_validate({"visitor_id": "v1"}).session_events == []


def other_bank() -> World:
    """Another bank: its own pages (URL patterns), tiles and products; no search page."""
    return parse_world(
        {
            "name": "other-bank",
            "tiles": {"travel_card": ["card_page"], "loans": ["loan_page"]},
            "products": ["travel_card", "home_loan"],
            "pages": {"landing": ["/"], "card_page": ["/cards/*"], "loan_page": ["/loans/*"], "apply": ["/apply*"]},
            "funnel": {"product": ["card_page", "loan_page"], "application_start": "apply", "application_form": "apply"},
            "profile": {"tenure_days": "int"},
        },
        "other bank",
    )  # fmt: skip


@pytest.mark.parametrize("world", [WORLD, other_bank()], ids=["simulated", "other"])
def test_example_inputs_are_valid_requests(world: World) -> None:
    api = schemas.service_schemas(world)
    ex = api.examples
    assert api.rank_tiles.model_validate(ex.rank_tiles).k == min(3, len(world.tiles))
    assert api.conversion.model_validate(ex.conversion).visitor_id
    assert len(api.intent.model_validate(ex.intent).session_events) == len(ex.events)
    # The examples read like the bank's own visitor: every page one of its web page types.
    assert {e["page_type"] for e in ex.events} <= set(world.page_types)
    assert api.rank_tiles.model_json_schema()["example"] == ex.rank_tiles
    assert api.intent.model_json_schema()["example"] == ex.intent


def test_scrubbed_events_remove_pii_before_featurisation() -> None:
    req = schemas.IntentRequest.model_validate(
        {"session_events": [_event(search_query="mortgage jane.doe@example.com")]}
    )
    events = S.scrubbed_events(req.session_events, WORLD)
    assert "jane.doe@example.com" not in events[0][C.SEARCH_QUERY]
    assert "mortgage" in events[0][C.SEARCH_QUERY]
    assert set(events[0]) == {C.PAGE_TYPE, C.EVENT_TIMESTAMP, C.SEARCH_QUERY}  # missing fields stay absent


def test_scrubbed_events_map_raw_pages_through_the_world() -> None:
    """A request may carry raw page names or URLs: they become the world's page types (else OOV)."""
    pages = ["https://bank.example/cards/gold?ref=x", "/loans/home/", "loan_page", "/nowhere", "home"]
    req = schemas.IntentRequest.model_validate({"session_events": [_event(page_type=p) for p in pages]})
    mapped = [e[C.PAGE_TYPE] for e in S.scrubbed_events(req.session_events, other_bank())]
    assert mapped == ["card_page", "loan_page", "loan_page", C.OOV_PAGE_TYPE, C.OOV_PAGE_TYPE]
    assert [e[C.PAGE_TYPE] for e in S.scrubbed_events(req.session_events, WORLD)][-1] == "home"


def test_session_activity_matches_the_batch_job(tiny_events: pd.DataFrame) -> None:
    from clicks2intent.features.sessions import session_stats

    s1 = tiny_events[tiny_events[C.SESSION_ID] == "s1"]
    # The batch job reads validated events: their raw pages already mapped through the world.
    batch = session_stats(s1.assign(**{C.PAGE_TYPE: s1[C.PAGE_TYPE].map(WORLD.mapper)}), WORLD)[0].iloc[0]
    req = schemas.IntentRequest.model_validate(
        {"session_events": [{k: v for k, v in r.items() if v is not None and k in schemas.SessionEvent.model_fields}
                            for r in s1.astype(object).where(s1.notna(), None).to_dict("records")]}
    )  # fmt: skip
    online = S.session_activity(S.scrubbed_events(req.session_events, WORLD), WORLD)
    assert list(online) == list(WORLD.session_activity_fields)
    for name, value in online.items():
        expected = batch[name]
        if isinstance(value, float):
            assert value == pytest.approx(float(expected)), name
        else:
            assert value == expected, name
    assert online["session_n_events"] == 3 and online["session_duration_s"] == pytest.approx(70.0)
    assert online[N.page_count_field("home")] == 1 and online[N.page_count_field("mortgage_calculator")] == 1


# --- model inputs and the predict path ---------------------------------------------------------
def _feature_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [30, None, 51, 44],
            "has_mortgage": [True, False, None, True],
            "emb": [[0.1, 0.2, 0.3], None, [0.0, -1.0, 0.5], [0.3, 0.3, 0.3]],
            "band": ["0-1k", "10k-50k", None, "unseen-band"],
        }
    )


def test_row_builder_matches_to_model_frame() -> None:
    from clicks2intent.models.inputs import fit_model_inputs, to_model_frame

    df = _feature_rows()
    spec = fit_model_inputs(df.iloc[:3], ["age", "has_mortgage", "emb", "band"])
    expected = to_model_frame(df, spec=spec).to_numpy()
    builder = S.RowBuilder(spec)
    for i, record in enumerate(df.astype(object).where(df.notna(), None).to_dict("records")):
        np.testing.assert_array_equal(builder.build(record)[0], expected[i])  # NaN == NaN here
    with pytest.raises(KeyError, match="band"):
        builder.build({"age": 1, "has_mortgage": True, "emb": None})
    with pytest.raises(ValueError, match="expected length 3"):
        builder.build({"age": 1, "has_mortgage": True, "emb": [1.0], "band": None})


def test_served_model_predicts_like_the_training_estimator() -> None:
    from clicks2intent.models.xgb import train_feature_model

    rng = np.random.default_rng(0)
    n = 90
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(float),
            "emb": [rng.normal(size=3).tolist() if i % 4 else None for i in range(n)],
            "band": rng.choice(["a", "b", "c"], n),
        }
    )
    df["label"] = np.where(df["age"] > 50, "savings", np.where(df["band"] == "a", "mortgage", "credit_card"))
    model = train_feature_model(
        df.iloc[:70], df.iloc[70:], ["age", "emb", "band"], "label", ["mortgage", "credit_card", "savings"],
        feature_service="test_service", n_estimators=8, max_depth=3, n_jobs=1,
    )  # fmt: skip
    expected = model.predict_proba(df[["age", "emb", "band"]])
    records = df[["age", "emb", "band"]].astype(object).where(df[["age", "emb", "band"]].notna(), None)
    for compile_trees in (True, False):
        served = S.ServedModel(model=model, name="test", version="v0", compile_trees=compile_trees)
        assert (served.trees is not None) == compile_trees  # the compiled forest passed its self-check
        got = np.stack([served.predict(r) for r in records.to_dict("records")])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert served.classes == ["mortgage", "credit_card", "savings"]


@pytest.mark.parametrize("rounds", [1, 12])
def test_tree_ensemble_reproduces_xgboost_with_missing_values(rounds: int) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(rounds)
    X = rng.normal(size=(400, 12)).astype(np.float32)
    X[:, :4] = rng.integers(0, 2, size=(400, 4))  # one-hot-like columns, split at 0.5
    X[rng.random(X.shape) < 0.25] = np.nan
    y = rng.integers(0, 5, 400)
    params = {"objective": "multi:softprob", "num_class": 5, "max_depth": 5, "nthread": 1, "seed": 0}
    booster = xgb.train(params, xgb.DMatrix(X, label=y, missing=np.nan), rounds)
    for iteration_range in ((0, rounds), (0, max(1, rounds // 2))):
        trees = S.TreeEnsemble.from_booster(booster, iteration_range)
        assert trees is not None
        dm = xgb.DMatrix(X, missing=np.nan)
        margin = booster.predict(dm, output_margin=True, iteration_range=iteration_range)
        proba = booster.predict(dm, iteration_range=iteration_range)
        np.testing.assert_allclose(np.stack([trees.margin(x) for x in X]), margin, atol=2e-5)
        np.testing.assert_allclose(np.stack([trees.predict_proba(x) for x in X]), proba, atol=1e-6)


def test_tree_ensemble_declines_what_it_cannot_reproduce() -> None:
    import xgboost as xgb

    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    binary = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(X, label=X[:, 0] > 0), 2)
    assert S.TreeEnsemble.from_booster(binary, (0, 2)) is None


@pytest.fixture(scope="module")
def engine(pipeline: Path) -> S.ServingEngine:
    from clicks2intent.features.store import open_store
    from clicks2intent.models.store import get_bento_model

    home = pipeline / "bentoml"
    tile = S.ServedModel.from_store(get_bento_model(f"{TILE_SERVICE}:latest", home=home))
    conv = S.ServedModel.from_store(get_bento_model(f"{CONVERSION_SERVICE}:latest", home=home))
    return S.ServingEngine(open_store(pipeline / "feature_repo"), tile, conv, pipeline)


def _assert_ranked(
    resp: schemas.RankTilesResponse, k: int, allowed: list[str] | tuple[str, ...] = WORLD.tiles
) -> None:
    scores = [t.score for t in resp.tiles]
    assert len(resp.tiles) == k
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert {t.tile_id for t in resp.tiles} <= set(allowed)
    assert len({t.tile_id for t in resp.tiles}) == k


@pytest.mark.slow
def test_rank_tiles_uses_the_customers_web_intent(engine: S.ServingEngine, ids: dict[str, str]) -> None:
    resp = engine.rank_tiles(schemas.RankTilesRequest(customer_id=ids["customer"], k=4))
    _assert_ranked(resp, 4)
    assert resp.intent.source == "customer" and resp.intent.label is not None
    assert 0.0 < resp.intent.confidence <= 1.0
    assert resp.model.name == TILE_SERVICE and resp.model.version
    picked = ["savings", "mortgage", "security_center"]
    sub = engine.rank_tiles(
        schemas.RankTilesRequest(customer_id=ids["customer"], candidate_tiles=picked, k=3)
    )
    _assert_ranked(sub, 3, picked)
    full = {
        t.tile_id: t.score
        for t in engine.rank_tiles(schemas.RankTilesRequest(customer_id=ids["customer"], k=10)).tiles
    }
    assert {t.tile_id: t.score for t in sub.tiles} == {t: full[t] for t in picked}  # filtering never rescores


@pytest.mark.slow
def test_unknown_ids_fall_back_to_the_baseline(engine: S.ServingEngine, ids: dict[str, str]) -> None:
    resp = engine.rank_tiles(
        schemas.RankTilesRequest(customer_id=ids["unknown_customer"], visitor_id=ids["unknown_visitor"])
    )
    _assert_ranked(resp, 3)
    assert resp.intent.model_dump() == {
        "label": None,
        "confidence": None,
        "source": "none",
        "unknown_page_share": None,  # no in-flight session
    }
    conv = engine.predict_conversion(schemas.ConversionRequest(visitor_id=ids["unknown_visitor"]))
    assert conv.intent.source == "none"
    assert sum(conv.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_fresher_intent_wins_session_then_visitor(engine: S.ServingEngine, ids: dict[str, str]) -> None:
    by_visitor = engine.rank_tiles(
        schemas.RankTilesRequest(customer_id=ids["unknown_customer"], visitor_id=ids["visitor"])
    )
    assert by_visitor.intent.source == "visitor" and by_visitor.intent.label is not None
    body = {
        "customer_id": ids["customer"],
        "visitor_id": ids["visitor"],
        "session_events": EXAMPLES.events,
    }
    by_session = engine.rank_tiles(API.rank_tiles.model_validate(body))
    assert by_session.intent.source == "session" and by_session.intent.unknown_page_share == 0.0
    alone = engine.intent(API.intent.model_validate(EXAMPLES.intent))
    assert by_session.intent.label == alone.label
    assert by_session.intent.confidence == pytest.approx(alone.confidence, rel=1e-6)


@pytest.mark.slow
def test_a_session_of_unreadable_pages_gets_no_label(
    engine: S.ServingEngine, ids: dict[str, str], embedding_dim: int
) -> None:
    """No page the encoder knows: no label (the classifier would only repeat its prior), and the ranker
    falls back to the next freshest intent instead of using the session."""
    assert engine.world.digest == WORLD.digest  # the world the features were built with, read by serving
    events = [
        _event(page_type=f"/not/a/page/{i}", event_timestamp=f"2026-03-01T10:0{i}:00Z") for i in range(3)
    ]
    resp = engine.intent(API.intent.model_validate({"session_events": events}))
    assert resp.label is None and resp.confidence is None and resp.label_name is None and resp.top3 == []
    assert resp.unknown_page_share == 1.0 and len(resp.embedding) == embedding_dim  # still embedded
    body = {"customer_id": ids["unknown_customer"], "visitor_id": ids["visitor"], "session_events": events}
    ranked = engine.rank_tiles(API.rank_tiles.model_validate(body))
    assert ranked.intent.source == "visitor" and ranked.intent.unknown_page_share == 1.0
    conv = engine.predict_conversion(API.conversion.model_validate({"session_events": events}))
    assert conv.intent.label is None and conv.intent.unknown_page_share == 1.0
    assert sum(conv.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    # Half the pages readable: a label, and the share says how much was not.
    half = [
        *events[:2],
        *({**e, "event_timestamp": f"2026-03-01T10:1{i}:00Z"} for i, e in enumerate(EXAMPLES.events[:2])),
    ]
    mixed = engine.intent(API.intent.model_validate({"session_events": half}))
    assert mixed.label in engine.intent_classes and mixed.unknown_page_share == pytest.approx(0.5)


@pytest.mark.slow
def test_local_tile_affinity_equals_the_feast_on_demand_view(
    pipeline: Path, engine: S.ServingEngine, ids: dict[str, str]
) -> None:
    through_feast = S.ServingEngine(
        engine.store, engine.tile_model, engine.conversion_model, pipeline, local_odfv=False
    )
    assert engine.local_odfv and not through_feast.local_odfv
    for customer in (ids["customer"], ids["unknown_customer"]):
        local, feast = engine.tile_features(customer), through_feast.tile_features(customer)
        assert set(local) == set(feast)
        for name, value in feast.items():
            if isinstance(value, list):
                np.testing.assert_allclose(
                    np.asarray(local[name], float), np.asarray(value, float), rtol=1e-12
                )
            elif isinstance(value, float) and math.isnan(value):
                assert math.isnan(local[name])
            else:
                assert local[name] == value, name
    req = schemas.RankTilesRequest(customer_id=ids["customer"], k=10)
    assert engine.rank_tiles(req).tiles == through_feast.rank_tiles(req).tiles


@pytest.mark.slow
def test_explain_groups_the_contributions(engine: S.ServingEngine, ids: dict[str, str]) -> None:
    resp = engine.rank_tiles(schemas.RankTilesRequest(customer_id=ids["customer"], explain=True))
    assert resp.explanation is not None and resp.explanation.tile_id == resp.tiles[0].tile_id
    assert set(resp.explanation.groups) <= {"baseline", "embedding", "labels", "web_activity", "bias"}
    assert "bias" in resp.explanation.groups and resp.explanation.top_features
    # The contributions add up to the model's margin for the explained tile (TreeSHAP is exact).
    model = engine.tile_model
    row = model.rows.build(engine.tile_features(ids["customer"]))
    margin = model.booster.inplace_predict(row, iteration_range=model.iteration_range, predict_type="margin")
    k = model.class_index[resp.explanation.tile_id]
    assert sum(resp.explanation.groups.values()) == pytest.approx(
        float(np.asarray(margin).reshape(-1)[k]), abs=1e-4
    )
    json.dumps(resp.model_dump())  # serialisable
    assert engine.rank_tiles(schemas.RankTilesRequest(customer_id=ids["customer"])).explanation is None


@pytest.mark.slow
def test_predict_conversion_sources(engine: S.ServingEngine, ids: dict[str, str]) -> None:
    by_visitor = engine.predict_conversion(schemas.ConversionRequest(visitor_id=ids["visitor"]))
    assert by_visitor.intent.source == "visitor" and by_visitor.intent.label is not None
    by_session = engine.predict_conversion(API.conversion.model_validate({"session_events": EXAMPLES.events}))
    assert by_session.intent.source == "session" and by_session.intent.unknown_page_share == 0.0
    assert by_visitor.intent.unknown_page_share is None  # no in-flight session
    for resp in (by_visitor, by_session):
        assert set(resp.probabilities) == set(WORLD.products) | {C.NO_CONVERSION}
        assert sum(resp.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert resp.predicted_product == max(resp.probabilities, key=resp.probabilities.get)
        assert resp.model.name == CONVERSION_SERVICE


@pytest.mark.slow
def test_intent_matches_the_encoder_and_classifier(engine: S.ServingEngine, embedding_dim: int) -> None:
    req = API.intent.model_validate(EXAMPLES.intent)
    resp = engine.intent(req)
    direct = engine.embedder.embed_session(S.scrubbed_events(req.session_events, engine.world))
    np.testing.assert_allclose(resp.embedding, direct, rtol=1e-5, atol=1e-6)
    assert len(resp.embedding) == embedding_dim
    assert np.linalg.norm(resp.embedding) == pytest.approx(1.0, abs=1e-4)
    assert resp.top3[0].label == resp.label and resp.top3[0].confidence == pytest.approx(resp.confidence)
    assert [t.confidence for t in resp.top3] == sorted((t.confidence for t in resp.top3), reverse=True)
    assert resp.taxonomy_version == "test-v1" and resp.label in engine.intent_classes
    assert resp.unknown_page_share == 0.0


@pytest.mark.slow
def test_models_of_another_encoder_taxonomy_or_world_are_refused(
    pipeline: Path, engine: S.ServingEngine
) -> None:
    from dataclasses import replace

    tile = engine.tile_model
    assert tile.model.metadata["world_digest"] == engine.world.digest
    for key in ("encoder_version", "taxonomy_version", "world_digest"):
        other = replace(tile.model, metadata=tile.model.metadata | {key: "sha256:000000000000"})
        with pytest.raises(ValueError, match=key):
            S.ServingEngine(
                engine.store, S.ServedModel(other, tile.name, tile.version), engine.conversion_model, pipeline
            )


@pytest.mark.slow
@pytest.mark.services
def test_serving_on_redis_and_the_sql_registry_matches_sqlite(
    pipeline: Path, engine: S.ServingEngine, ids: dict[str, str], embedding_dim: int
) -> None:
    """What a platform team does: another feature_store YAML (Redis + PostgreSQL registry), same answers."""
    import os
    import uuid

    from clicks2intent.features import store as FS
    from clicks2intent.features.definitions import build, file_sources

    reasons = [r for r in (FS.service_available("redis"), FS.service_available("postgres")) if r]
    if reasons:
        message = "production stores unavailable: " + "; ".join(reasons)
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must run the services tests)")
        pytest.skip(message)
    project = f"c2i_serving_{uuid.uuid4().hex[:10]}"
    yaml_path = FS.write_config(
        pipeline / "feature_repo" / f"{project}.yaml", FS.production_config(project=project)
    )
    prod = FS.open_store(pipeline / "feature_repo", yaml_path)
    try:
        objects = build(
            file_sources(str(pipeline / "features")),
            embedding_dim,
            world=engine.world,
            artifacts_dir=str(pipeline),
        )
        prod.apply(objects.all())
        # The window conftest materialised SQLite with: a later end also loads the rows that expire
        # windowed counts (customer_web_sessions_30d 0 instead of 2), a different answer by design.
        events = pd.read_parquet(pipeline / "data" / "events.parquet", columns=[C.EVENT_TIMESTAMP])
        end = events[C.EVENT_TIMESTAMP].max() + pd.Timedelta(days=1)
        prod.materialize(end - pd.Timedelta(days=400), end)
        on_redis = S.ServingEngine(prod, engine.tile_model, engine.conversion_model, pipeline)
        general = S.ServingEngine(
            prod, engine.tile_model, engine.conversion_model, pipeline, direct_reads=False
        )
        assert on_redis._tile_reader is not None  # Redis read through online_read, as SQLite
        for body in (
            {"customer_id": ids["customer"], "k": 10},
            {"customer_id": ids["unknown_customer"], "visitor_id": ids["visitor"]},
        ):
            req = schemas.RankTilesRequest.model_validate(body)
            assert on_redis.rank_tiles(req) == engine.rank_tiles(req) == general.rank_tiles(req)
            # what the service awaits: one asynchronous round trip to Redis, the same answer
            assert on_redis._tile_reader.read_rows_async is not None
            assert asyncio.run(on_redis.rank_tiles_async(req)) == engine.rank_tiles(req)
        conv = schemas.ConversionRequest(visitor_id=ids["visitor"])
        assert on_redis.predict_conversion(conv) == engine.predict_conversion(conv)
    finally:
        FS.drop_project(prod)
        yaml_path.unlink(missing_ok=True)
