"""The session_intent push source: a pushed row is readable by plain get_online_features at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clicks2intent.data.world import World
from clicks2intent.errors import ContractError
from clicks2intent.features import build as F
from clicks2intent.features import definitions as fo
from clicks2intent.features import push as P
from clicks2intent.features import store as FS
from clicks2intent.names import columns as C
from clicks2intent.names.paths import FEATURE_FILES, ArtifactLayout


def test_push_reaches_online_store(tmp_path: Path, tiny_encoder_writer, sim_world: World):
    tiny_encoder_writer(tmp_path, embedding_dim=4)  # session_affinity reads its next-event head (+ the world)
    features = ArtifactLayout(tmp_path).features
    for name, schema in F.source_schemas(sim_world).items():  # empty sources with the job's schemas
        pq.write_table(schema.empty_table(), features / FEATURE_FILES[name])
    repo = tmp_path / "repo"
    repo.mkdir()
    FS.write_config(repo / "feature_store.yaml", {
        "project": "c2i_push", "provider": "local", "registry": "registry.db",
        "online_store": {"type": "sqlite", "path": "online.db"}, "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3})  # fmt: skip
    store = FS.open_store(repo)
    objects = fo.build(
        fo.file_sources(str(features)), embedding_dim=4, world=sim_world, artifacts_dir=str(tmp_path)
    )
    store.apply([o for o in objects.all() if o is not objects.inflight_session_intent])
    assert store.get_data_source(P.PUSH_SOURCE).batch_source.path.endswith(FEATURE_FILES["session_intent"])
    row = pd.DataFrame({C.SESSION_ID: ["s_new"], C.EVENT_TIMESTAMP: [pd.Timestamp.now(tz="UTC")],
                        C.EMBEDDING: [[0.5, 0.5, 0.5, 0.5]], C.INTENT_LABEL: ["mortgage_research"],
                        C.INTENT_CONFIDENCE: [0.8], C.TAXONOMY_VERSION: ["v1"]})  # fmt: skip
    assert P.online_session_intent(store, ["s_new"])[C.EMBEDDING] == [None]
    assert P.push_session_intents(store, row) == 1
    got = P.online_session_intent(store, ["s_new"])
    assert got[C.EMBEDDING][0] == pytest.approx([0.5] * 4)
    assert got[C.INTENT_LABEL] == ["mortgage_research"]
    with pytest.raises(ContractError, match=C.INTENT_LABEL):
        P.push_session_intents(store, row.drop(columns=[C.INTENT_LABEL]))


def _tiny_inputs(
    root: Path, sessions: list[tuple[str, str, pd.Timestamp, str]], world: World
) -> dict[str, Any]:
    """Contract inputs of ``features build`` in the simulated bank's ``world``: one web session per
    (id, visitor, start, label)."""
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    pages = {
        "a": ["home", "product_mortgage"],
        "b": ["security_center"],
        "c": ["product_credit_card", "rates"],
    }
    events = [
        {C.SESSION_ID: s, C.EVENT_TIMESTAMP: t + pd.Timedelta(seconds=30 * i), C.PAGE_TYPE: p, C.VISITOR_ID: v,
         C.CUSTOMER_ID: None, C.CHANNEL: "web", C.DWELL_SECONDS: 30.0, C.SEARCH_QUERY: None}
        for s, v, t, lab in sessions for i, p in enumerate(pages[lab])
    ]  # fmt: skip
    ev = pd.DataFrame(events)
    ev.to_parquet(root / "events.parquet")
    ends = ev.groupby(C.SESSION_ID)[C.EVENT_TIMESTAMP].max().reset_index()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(ends), 4)).astype(np.float32)
    ends[C.EMBEDDING] = list(X / np.linalg.norm(X, axis=1, keepdims=True))
    ends.to_parquet(root / "emb.parquet")
    labels = {s: lab for s, _, _, lab in sessions}
    intents = ends[[C.SESSION_ID, C.EVENT_TIMESTAMP]].assign(
        **{C.INTENT_LABEL: ends[C.SESSION_ID].map(labels), C.INTENT_CONFIDENCE: 0.8, C.TAXONOMY_VERSION: "t1"}
    )
    intents.to_parquet(root / "int.parquet")
    pd.DataFrame({C.VISITOR_ID: ["v1"], C.CUSTOMER_ID: ["c1"], C.LINKED_AT: [sessions[0][2]],
                  C.LINK_METHOD: "login"}).to_parquet(root / "links.parquet")  # fmt: skip
    prof = {C.CUSTOMER_ID: ["c1"], C.EVENT_TIMESTAMP: [sessions[0][2] - pd.Timedelta(days=30)],
            "tenure_months": [12], "age": [30], "app_sessions_30d": [2], "balance_band": ["0-1k"],
            "n_products": [1]} | {f"has_{p}": [False] for p in world.products}  # fmt: skip
    pd.DataFrame(prof).to_parquet(root / "customers.parquet")
    return {"events_path": root / "events.parquet", "embeddings_path": root / "emb.parquet",
            "intents_path": root / "int.parquet", "links_path": root / "links.parquet",
            "customers_path": root / "customers.parquet", "world": world}  # fmt: skip


def test_visitor_push_is_the_row_the_next_build_writes(tmp_path: Path, tiny_encoder_writer, sim_world: World):
    tiny_encoder_writer(tmp_path, embedding_dim=4)  # session_affinity reads its next-event head
    from clicks2intent.names.features import VISITOR_EMBEDDING_DECAYED, VISITOR_INTENT_DECAYED

    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(days=3)
    history = [("w1", "v1", t0, "a"), ("w2", "v1", t0 + pd.Timedelta(days=1), "b"), ("w3", "v2", t0, "c")]
    fresh = ("w4", "v1", t0 + pd.Timedelta(days=2), "c")  # ends now-ish: pushed, not yet built
    before, after = ArtifactLayout(tmp_path).features, tmp_path / "after"  # the ODFVs read prototypes there
    F.build_features(
        **_tiny_inputs(tmp_path / "in0", history, sim_world), out_dir=before, classes=["a", "b", "c"]
    )
    inputs = _tiny_inputs(tmp_path / "in1", [*history, fresh], sim_world)
    F.build_features(**inputs, out_dir=after, classes=["a", "b", "c"])

    repo = tmp_path / "repo"
    repo.mkdir()
    FS.write_config(repo / "feature_store.yaml", {
        "project": "c2i_vpush", "provider": "local", "registry": "registry.db",
        "online_store": {"type": "sqlite", "path": "online.db"}, "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3})  # fmt: skip
    store = FS.open_store(repo)
    objects = fo.build(
        fo.file_sources(str(before)), embedding_dim=4, world=sim_world, artifacts_dir=str(tmp_path)
    )
    store.apply([o for o in objects.all() if o is not objects.inflight_session_intent])
    assert store.get_data_source(P.VISITOR_PUSH_SOURCE).batch_source.path.endswith(
        FEATURE_FILES["visitor_web_intent"]
    )
    emb = pd.read_parquet(inputs["embeddings_path"]).set_index(C.SESSION_ID)
    row = pd.DataFrame({C.SESSION_ID: ["w4"], C.EVENT_TIMESTAMP: [emb.loc["w4", C.EVENT_TIMESTAMP]],
                        C.EMBEDDING: [list(emb.loc["w4", C.EMBEDDING])], C.INTENT_LABEL: ["c"],
                        C.INTENT_CONFIDENCE: [0.8], C.TAXONOMY_VERSION: ["t1"]})  # fmt: skip
    visitors = P.visitor_intents(row, {"w4": "v1"}, before)
    assert list(visitors[C.VISITOR_ID]) == ["v1"]
    assert P.online_visitor_intent(store, ["v1"])[VISITOR_EMBEDDING_DECAYED] == [None]
    assert P.push_visitor_intents(store, visitors) == 1
    got = P.online_visitor_intent(store, ["v1"])
    built = pq.read_table(after / FEATURE_FILES["visitor_web_intent"]).to_pandas()
    want = built[
        (built[C.VISITOR_ID] == "v1") & (built[C.EVENT_TIMESTAMP] == row[C.EVENT_TIMESTAMP][0])
    ].iloc[0]
    for name in P.VISITOR_FEATURES.values():
        if name in (VISITOR_INTENT_DECAYED, VISITOR_EMBEDDING_DECAYED):
            assert got[name][0] == pytest.approx(list(want[name]), abs=1e-6), name
        else:
            assert got[name][0] == pytest.approx(want[name]), name
    assert got[P.VISITOR_FEATURES["label"]] == ["c"] and got[P.VISITOR_FEATURES["sessions_window"]] == [3]


def test_push_command_without_models_is_one_line(tmp_path: Path, capsys):
    from clicks2intent.cli import main

    events = pd.DataFrame({C.SESSION_ID: ["s1"], C.EVENT_TIMESTAMP: [pd.Timestamp.now(tz="UTC")],
                           C.PAGE_TYPE: ["home"], C.CHANNEL: ["web"], C.VISITOR_ID: ["v1"]})  # fmt: skip
    events.to_parquet(tmp_path / "events.parquet")
    code = main(["features", "push", "--events", str(tmp_path / "events.parquet"), "--artifacts",
                 str(tmp_path / "none"), "--repo", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "Traceback" not in err
