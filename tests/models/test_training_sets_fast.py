"""The fast point-in-time path (DuckDB offline store, one query) against the current one (file store,
retrieval in rounds) on a hand-made case: same values, no future link or session leaks, and no entity
row dropped or collapsed — including two impressions of one customer at the same instant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clicks2intent.data.simulator import simulator_world
from clicks2intent.features import build as F
from clicks2intent.features import definitions as fo
from clicks2intent.features import store as FS
from clicks2intent.features import transforms as T
from clicks2intent.models import training_sets as TS
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names.paths import FEATURE_FILES, ArtifactLayout

DIM = 4
WORLD = simulator_world()
T1, T2, T3, T4 = (pd.Timestamp(f"2024-05-{d:02d} 10:00", tz="UTC") for d in (2, 4, 6, 8))


def _unit(i: int) -> list[float]:
    v = np.zeros(DIM, np.float32)
    v[i % DIM] = 1.0
    return v.tolist()


def _write(features: Path, name: str, key: str, cols: dict) -> None:
    schema = F.source_schemas(WORLD)[name]
    n = len(cols[key])
    table = pa.table(
        {f.name: pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type) for f in schema},
        schema=schema,
    )
    keys = pa.array(sorted(set(cols[key])), pa.string())
    anchors = pa.table(  # what `c2i features build` adds for the file store
        {f.name: keys if f.name == key else pa.nulls(len(keys), f.type) for f in schema}, schema=schema
    )
    pq.write_table(pa.concat_tables([table, anchors]), features / FEATURE_FILES[name])


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_writer) -> Path:
    root = tmp_path_factory.mktemp("fast_pit")
    tiny_encoder_writer(root, embedding_dim=DIM)  # session_affinity reads its next-event head
    features = ArtifactLayout(root).features
    features.mkdir(parents=True, exist_ok=True)
    # c1: web intent at T1 and T3 (a later link); c2: profile only.
    _write(features, "customer_web_intent", C.CUSTOMER_ID, {
        C.CUSTOMER_ID: ["c1", "c1"], C.EVENT_TIMESTAMP: [T1, T3],
        N.CUSTOMER_INTENT_LABEL: ["early", "late"], N.CUSTOMER_WEB_EMBEDDING: [_unit(0), _unit(1)],
        N.CUSTOMER_WEB_SESSIONS_30D: [1, 2]})  # fmt: skip
    _write(features, "customer_profile", C.CUSTOMER_ID, {
        C.CUSTOMER_ID: ["c1", "c2"], C.EVENT_TIMESTAMP: [T1 - pd.Timedelta(days=1)] * 2, "age": [30, 40]})  # fmt: skip
    # v1: session s1 ends at T1, s3 at T3.
    sessions = {C.SESSION_ID: ["s1", "s3"], C.VISITOR_ID: ["v1", "v1"], C.EVENT_TIMESTAMP: [T1, T3]}
    _write(features, "session_activity", C.SESSION_ID, {**sessions, N.SESSION_N_EVENTS: [3, 5]})
    _write(features, "session_intent", C.SESSION_ID, {
        **sessions, C.EMBEDDING: [_unit(2), _unit(3)], C.INTENT_LABEL: ["a", "b"]})  # fmt: skip
    _write(features, "visitor_web_intent", C.VISITOR_ID, {
        C.VISITOR_ID: ["v1", "v1"], C.EVENT_TIMESTAMP: [T1, T3], N.VISITOR_INTENT_LABEL: ["a", "b"]})  # fmt: skip
    tiles = list(WORLD.tiles)
    protos = pa.array([_unit(i) for i in range(len(tiles))], pa.list_(pa.float32()))
    pq.write_table(
        pa.table({T.TILE_ID: tiles, T.PROTOTYPE: protos, T.PROTOTYPE_SESSIONS: [1] * len(tiles)}),
        features / FEATURE_FILES["tile_prototypes"],
    )
    return root


def _store(root: Path, offline: str):
    repo = root / f"repo_{offline}"
    repo.mkdir()
    FS.write_config(repo / "feature_store.yaml", {
        "project": "c2i_fast", "provider": "local", "registry": "registry.db",
        "online_store": {"type": "sqlite", "path": "online.db"}, "offline_store": {"type": offline},
        "entity_key_serialization_version": 3})  # fmt: skip
    store = FS.open_store(repo)
    objects = fo.build(
        fo.file_sources(str(ArtifactLayout(root).features)),
        embedding_dim=DIM,
        world=WORLD,
        artifacts_dir=str(root),
    )
    store.apply([o for o in objects.all() if o is not objects.inflight_session_intent])
    return store


def _text(frame: pd.DataFrame) -> list[str]:
    """Rows as text, numbers as floats: the file store returns an int column as float64 where DuckDB
    keeps int64 (the model inputs cast every number to float32 either way)."""

    def norm(v: object) -> object:
        if isinstance(v, (bool, np.bool_, str)) or v is None:
            return v
        if isinstance(v, (int, float, np.integer, np.floating)):
            return None if v != v else float(v)
        return repr(v)

    return [repr(sorted((k, norm(v)) for k, v in r.items())) for r in frame.astype(object).to_dict("records")]


def test_fast_path_equals_current_and_keeps_point_in_time(sources: Path):
    tiles = pd.DataFrame({
        C.IMPRESSION_ID: ["i0", "i2a", "i2b", "i4", "ix"],
        C.CUSTOMER_ID: ["c1", "c1", "c1", "c1", "c2"],
        C.EVENT_TIMESTAMP: [T1 - pd.Timedelta(hours=1), T2, T2, T4, T2],  # i2a and i2b: same key and time
        "label": [WORLD.tiles[0]] * 5})  # fmt: skip
    conv = pd.DataFrame({C.SESSION_ID: ["s1", "s3"], C.VISITOR_ID: ["v1", "v1"], C.EVENT_TIMESTAMP: [T1, T3],
                         "label": [C.NO_CONVERSION] * 2})  # fmt: skip
    current, fast = _store(sources, "file"), _store(sources, "duckdb")
    request = TS.world_request_values(WORLD)  # the tile service's candidate tiles: every tile
    assert FS.collapses_entity_rows(current) and not FS.collapses_entity_rows(fast)
    for entities, service in ((tiles, N.TILE_RANKER_V1), (conv, N.CONVERSION_V1)):
        want = TS.historical_features(current, entities, service, request)
        got = TS.historical_features(fast, entities, service, request)
        assert len(got) == len(entities)  # nothing dropped or collapsed
        assert list(got.columns) == list(want.columns)
        assert _text(got) == _text(want)
    got = TS.historical_features(fast, tiles, N.TILE_RANKER_V1, request).set_index(C.IMPRESSION_ID)
    label = got[N.CUSTOMER_INTENT_LABEL]
    assert label.isna()["i0"] and label.isna()["ix"]  # before any web intent / never linked
    assert label["i2a"] == label["i2b"] == "early"  # T3's later link is not visible at T2
    assert label["i4"] == "late"
    assert got.loc["i2a", N.TILE_AFFINITY][0] == pytest.approx(1.0)  # on-demand view over T1's embedding
    got = TS.historical_features(fast, conv, N.CONVERSION_V1, request).set_index(C.SESSION_ID)
    assert got.loc["s1", N.VISITOR_INTENT_LABEL] == "a"  # s3 (later session) does not leak into s1
