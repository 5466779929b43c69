"""Direct online-store reads (clicks2intent.serving.online) serve what get_online_features serves.

Parity over every customer and visitor of the tiny deployment (``conftest.py``), ids nobody has, and
in-flight sessions taken from its clickstream: the reader against ``get_online_features(...).to_dict()``
field by field, and the whole /rank_tiles answer of an engine reading directly against one reading
through ``get_online_features``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names.paths import ArtifactLayout
from clicks2intent.serving import engine as S
from clicks2intent.serving import schemas
from clicks2intent.serving.online import OnlineReader, UnsupportedRead, direct_reader


def _identical(a: Any, b: Any) -> bool:
    """Equal values and types, NaN equal to NaN (lists element by element)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _through_feast(store: Any, refs: list[str], row: dict[str, Any]) -> dict[str, Any]:
    columns = store.get_online_features(features=refs, entity_rows=[row]).to_dict()
    return {ref.split(":", 1)[1]: columns[ref.split(":", 1)[1]][0] for ref in refs}


@pytest.fixture(scope="module")
def store(pipeline: Path) -> Any:
    from clicks2intent.features.store import open_store

    return open_store(pipeline / "feature_repo")


@pytest.fixture(scope="module")
def engines(pipeline: Path, store: Any) -> tuple[S.ServingEngine, S.ServingEngine]:
    from clicks2intent.models.store import get_bento_model

    home = pipeline / "bentoml"
    tile = S.ServedModel.from_store(get_bento_model(f"{N.TILE_RANKER_V1}:latest", home=home))
    conv = S.ServedModel.from_store(get_bento_model(f"{N.CONVERSION_V1}:latest", home=home))
    direct = S.ServingEngine(store, tile, conv, pipeline)
    via_feast = S.ServingEngine(store, tile, conv, pipeline, direct_reads=False)
    return direct, via_feast


def _ids(pipeline: Path, view: str, key: str) -> list[str]:
    frame = pd.read_parquet(ArtifactLayout(pipeline).feature_file(view), columns=[key])
    return sorted(frame[key].dropna().astype(str).unique())


@pytest.mark.slow
def test_reader_values_equal_get_online_features(pipeline: Path, store: Any) -> None:
    service = store.get_feature_service(N.TILE_RANKER_V1)
    odfvs = {v.name for v in store.list_on_demand_feature_views()}
    customer_refs = [
        f"{p.name}:{f.name}"
        for p in service.feature_view_projections
        if p.name not in odfvs
        for f in p.features
    ]
    visitor_refs = [f"{N.VISITOR_WEB_INTENT}:{n}" for n in S.VISITOR_FIELDS]
    cases = [
        (customer_refs, C.CUSTOMER_ID, _ids(pipeline, N.CUSTOMER_PROFILE, C.CUSTOMER_ID)),
        (visitor_refs, C.VISITOR_ID, _ids(pipeline, N.VISITOR_WEB_INTENT, C.VISITOR_ID)),
    ]
    for refs, key, ids in cases:
        reader = OnlineReader(store, refs)
        assert reader.read_rows is not None  # the repo names the clicks2intent store class: one statement
        known = 0
        for entity in [*ids, "no-such-id"]:
            got = reader.read({key: entity})
            assert got.pop(key) == entity
            want = _through_feast(store, refs, {key: entity})
            assert list(got) == list(want)
            for name, value in want.items():
                assert _identical(got[name], value), (key, entity, name, got[name], value)
            known += any(v is not None for v in want.values())
        assert known >= min(len(ids), 20), f"too few {key}s with stored values to compare"
        assert all(v is None for k, v in reader.read({key: "no-such-id"}).items() if k != key)


@pytest.mark.slow
def test_reader_reads_feasts_own_store_class_view_by_view(pipeline: Path, store: Any, tmp_path: Path) -> None:
    """``type: sqlite`` (no online_read_rows): the reader calls its public online_read per view, same values.
    Feast's own store cannot read the pipeline's wide tables: 30 visitors' rows are copied into its layout."""
    from feast.infra.online_stores.helpers import get_online_store_from_config
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from clicks2intent.features.store import load_config, open_store, write_config

    cfg = load_config(pipeline / "feature_repo" / "feature_store.yaml")
    cfg["online_store"] = {"type": "sqlite", "path": str(tmp_path / "plain.db")}
    plain = open_store(pipeline / "feature_repo", write_config(tmp_path / "plain.yaml", cfg))
    view = plain.get_feature_view(N.VISITOR_WEB_INTENT)
    visitors = _ids(pipeline, N.VISITOR_WEB_INTENT, C.VISITOR_ID)[:30]
    keys = [EntityKey(join_keys=[C.VISITOR_ID], entity_values=[Value(string_val=v)]) for v in visitors]
    rows = get_online_store_from_config(store.config.online_store).online_read(store.config, view, keys)
    feast_own = get_online_store_from_config(plain.config.online_store)
    feast_own.update(plain.config, [], [view], [], [], False)
    feast_own.online_write_batch(
        plain.config,
        view,
        [(k, v, t, None) for k, (t, v) in zip(keys, rows, strict=True) if v is not None],
        None,
    )
    refs = [f"{N.VISITOR_WEB_INTENT}:{n}" for n in S.VISITOR_FIELDS]
    reader = OnlineReader(plain, refs)
    assert reader.read_rows is None
    for visitor in [*visitors, "no-such-id"]:
        got = reader.read({C.VISITOR_ID: visitor})
        assert got.pop(C.VISITOR_ID) == visitor
        want = _through_feast(plain, refs, {C.VISITOR_ID: visitor})
        assert all(_identical(got[k], v) for k, v in want.items()), visitor


@pytest.mark.slow
def test_reader_declines_what_it_cannot_reproduce(store: Any) -> None:
    for refs in (
        [f"{N.TILE_AFFINITY_VIEW}:{N.TILE_AFFINITY}"],  # on-demand: computed, not stored
        [f"{N.VISITOR_WEB_INTENT}:no_such_field"],
        ["no_such_view:x"],
        ["no-colon"],
    ):
        with pytest.raises(UnsupportedRead):
            OnlineReader(store, refs)
        assert direct_reader(store, refs) is None
    reader = OnlineReader(store, [f"{N.VISITOR_WEB_INTENT}:{S.VISITOR_FIELDS[0]}"])
    with pytest.raises(KeyError, match=C.VISITOR_ID):
        reader.read({C.CUSTOMER_ID: "c1"})


def _inflight_sessions(pipeline: Path, n: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    """Web sessions of the simulated clickstream as request events (strings and floats only)."""
    events = pd.read_parquet(ArtifactLayout(pipeline).events)
    web = events[events[C.CHANNEL] == "web"]
    picked = random.Random(seed).sample(sorted(web[C.SESSION_ID].unique()), n)
    out = []
    for sid in picked:
        rows = web[web[C.SESSION_ID] == sid].sort_values(C.EVENT_TIMESTAMP).head(20)
        session = []
        for r in rows.itertuples(index=False):
            e = {C.PAGE_TYPE: r.page_type, C.EVENT_TIMESTAMP: r.event_timestamp.isoformat(), C.CHANNEL: "web"}
            if pd.notna(r.dwell_seconds):
                e[C.DWELL_SECONDS] = float(r.dwell_seconds)
            if isinstance(r.search_query, str) and r.search_query:
                e[C.SEARCH_QUERY] = r.search_query[: schemas.MAX_TEXT_LENGTH]
            session.append(e)
        out.append(session)
    return out


@pytest.mark.slow
def test_rank_tiles_served_identically_with_direct_reads(
    pipeline: Path, engines: tuple[S.ServingEngine, S.ServingEngine]
) -> None:
    direct, via_feast = engines
    assert direct._tile_reader is not None and via_feast._tile_reader is None
    customers = _ids(pipeline, N.CUSTOMER_PROFILE, C.CUSTOMER_ID)
    visitors = _ids(pipeline, N.VISITOR_WEB_INTENT, C.VISITOR_ID)
    rng = random.Random(1)
    sessions = _inflight_sessions(pipeline, 12)
    bodies: list[dict[str, Any]] = [{"customer_id": c, "k": 10} for c in customers]
    bodies += [{"customer_id": "no-such-customer", "visitor_id": v} for v in rng.sample(visitors, 40)]
    bodies += [{"customer_id": rng.choice(customers), "visitor_id": "no-such-visitor"}]
    bodies += [
        {
            "customer_id": rng.choice(customers),
            "visitor_id": rng.choice(visitors),
            "session_events": s,
            "k": 5,
        }
        for s in sessions
    ]
    sources = set()
    for body in bodies:
        req = schemas.RankTilesRequest.model_validate(body)
        got, want = direct.rank_tiles(req), via_feast.rank_tiles(req)
        assert got == want, body
        sources.add(got.intent.source)
    assert sources == {"session", "visitor", "customer", "none"}  # every fallback branch was compared
    for customer in customers[:50]:
        got_f, want_f = direct.tile_features(customer), via_feast.tile_features(customer)
        assert sorted(got_f) == sorted(want_f)  # the same names (Feast orders them by its grouping)
        assert all(_identical(got_f[k], want_f[k]) for k in want_f), customer
