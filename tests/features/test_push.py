"""The session_intent push source: a pushed row is readable by plain get_online_features at once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clicks2intent.errors import ContractError
from clicks2intent.features import build as F
from clicks2intent.features import definitions as fo
from clicks2intent.features import push as P
from clicks2intent.features import store as FS
from clicks2intent.names import columns as C
from clicks2intent.names.paths import FEATURE_FILES, ArtifactLayout


def test_push_reaches_online_store(tmp_path: Path):
    features = ArtifactLayout(tmp_path).features
    features.mkdir(parents=True)
    for name, schema in F.source_schemas().items():  # empty sources with the job's schemas
        pq.write_table(schema.empty_table(), features / FEATURE_FILES[name])
    repo = tmp_path / "repo"
    repo.mkdir()
    FS.write_config(repo / "feature_store.yaml", {
        "project": "c2i_push", "provider": "local", "registry": "registry.db",
        "online_store": {"type": "sqlite", "path": "online.db"}, "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3})  # fmt: skip
    store = FS.open_store(repo)
    objects = fo.build(fo.file_sources(str(features)), embedding_dim=4, artifacts_dir=str(tmp_path))
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
