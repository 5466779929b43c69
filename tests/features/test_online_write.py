"""The column-wise online writer and the Arrow batch engine against Feast's own materialisation.

One tiny feature view holds every type the writer encodes itself (float32 and float64 lists, doubles
with NaN, ints, strings, bools), nulls in each, an empty list, a non-ASCII string and repeated entity
rows at different times. It is materialised once by Feast's local engine into Feast's own store class
(``type: sqlite`` / ``type: redis``) and once by :class:`ArrowComputeEngine` into the
clicks2intent online store classes (their ``online_write_arrow``); the stored bytes must be equal row
for row, and plain ``get_online_features`` must read the same values from both.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clicks2intent.common.settings import DEFAULT_REDIS
from clicks2intent.features import online_write as W
from clicks2intent.features import store as FS
from clicks2intent.features.engines import ENGINE_TYPE
from clicks2intent.features.online_stores import REDIS_TYPE, SQLITE_TYPE

T0 = pd.Timestamp("2024-05-01", tz="UTC")
KEYS = ["k0", "k1", "k2", "k3", "ké"]


def _source(path: Path) -> None:
    n = 8
    ids = ["k0", "k1", "k2", "k3", "ké", "k0", "k1", "k2"]  # k0..k2 twice: the later row wins
    table = pa.table(
        {
            "kid": ids,
            "event_timestamp": pa.array(
                [T0 + pd.Timedelta(hours=h, microseconds=7 * h) for h in range(n)], pa.timestamp("us", "UTC")
            ),
            "emb": pa.array(
                [[0.1, 0.2], None, [], [np.nan, 1.0], [3.0, -4.5], [5.0, 6.0], [7.0, 8.0], None],
                pa.list_(pa.float32()),
            ),
            "dl": pa.array([[1.0], [2.0, 3.0], None, [], [4.0], [5.5], None, [6.0]], pa.list_(pa.float64())),
            "d": pa.array([1.5, None, float("nan"), 0.0, -2.25, 3.0, 1e300, None], pa.float64()),
            "i": pa.array([1, None, -5, 0, 2**40, 7, 8, None], pa.int64()),
            "s": pa.array(["a", None, "", "é", "x", "y", None, "z"], pa.string()),
            "b": pa.array([True, None, False, True, False, True, None, False]),
        }
    )
    pq.write_table(table, path)


def _store(root: Path, name: str, source: Path, online: dict, engine: str | None):
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Bool, Float32, Float64, Int64, String

    repo = root / name
    repo.mkdir()
    cfg = {
        "project": online.pop("project", "c2i_w"),
        "provider": "local",
        "registry": "registry.db",
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }
    if engine:
        cfg["batch_engine"] = {"type": engine}
    FS.write_config(repo / "feature_store.yaml", cfg)
    store = FS.open_store(repo)
    entity = Entity(name="k", join_keys=["kid"], value_type=ValueType.STRING)
    view = FeatureView(
        name="v",
        entities=[entity],
        ttl=timedelta(days=30),
        source=FileSource(path=str(source), timestamp_field="event_timestamp"),
        schema=[
            Field(name="emb", dtype=Array(Float32)),
            Field(name="dl", dtype=Array(Float64)),
            Field(name="d", dtype=Float64),
            Field(name="i", dtype=Int64),
            Field(name="s", dtype=String),
            Field(name="b", dtype=Bool),
        ],
    )
    store.apply([entity, view])
    store.materialize(T0 - pd.Timedelta(days=1), T0 + pd.Timedelta(days=1))
    return store


def _online(store) -> str:
    """Plain ``get_online_features`` of every key, as text (so NaN compares equal to NaN)."""
    feats = [f"v:{c}" for c in ("emb", "dl", "d", "i", "s", "b")]
    out = store.get_online_features(features=feats, entity_rows=[{"kid": k} for k in KEYS]).to_dict()
    return repr(sorted(out.items()))


def test_arrow_engine_leaves_feasts_own_store_classes_to_feast(tmp_path: Path) -> None:
    """``type: sqlite`` has no online_write_arrow: the engine runs Feast's own materialisation."""
    source = tmp_path / "v.parquet"
    _source(source)
    feast_store = _store(tmp_path, "feast", source, {"type": "sqlite", "path": "online.db"}, None)
    plain = _store(tmp_path, "plain", source, {"type": "sqlite", "path": "online.db"}, ENGINE_TYPE)
    assert _online(plain) == _online(feast_store)


def test_redis_field_is_feasts_hash():
    from feast.infra.online_stores.helpers import _mmh3

    for name in ("v:emb", "customer_web_intent:customer_web_embedding", "vue:é"):
        view, feature = name.split(":")
        assert W.redis_field(view, feature) == _mmh3(name)


def test_encode_column_matches_feast_bytes():
    from feast.utils import _columns_to_proto_values
    from feast.value_type import ValueType as VT

    table = pa.table(
        {
            "f": pa.array([[1.0, 2.0], None, [np.nan], []], pa.list_(pa.float32())),
            "f64": pa.array([[1.0, 2.0], None, [0.5], []], pa.list_(pa.float64())),  # stored as float32
            # one length per row (the embeddings' block path), with and without a null row
            "u": pa.array([[1.0, 2.0], [3.0, -4.5], None, [np.nan, 6.0]], pa.list_(pa.float32())),
            "u2": pa.array([[1.0], [2.0], [3.0], [4.0]], pa.list_(pa.float32())),
            "ud": pa.array([None, [2.0, 3.0], [4.0, 5.0], None], pa.list_(pa.float64())),
            "d": pa.array([1.5, None, float("nan"), -0.0]),
            "i": pa.array([1, None, -5, 0]),
            "s": pa.array(["a", None, "", "é"]),
            "b": pa.array([True, None, False, True]),
        }
    )
    cols = {
        "f": VT.FLOAT_LIST,
        "f64": VT.FLOAT_LIST,
        "u": VT.FLOAT_LIST,
        "u2": VT.FLOAT_LIST,
        "ud": VT.DOUBLE_LIST,
        "d": VT.DOUBLE,
        "i": VT.INT64,
        "s": VT.STRING,
        "b": VT.BOOL,
    }
    feast = _columns_to_proto_values(table.to_batches()[0], list(cols.items()), allow_missing=False)
    for name, vt in cols.items():
        assert W.encode_column(table.column(name), vt) == [p.SerializeToString() for p in feast[name]], name


def test_entity_keys_match_feast():
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.value_type import ValueType as VT

    table = pa.table({"b_id": ["x", "é"], "a_n": [3, -(2**40)]})
    got = W.encode_entity_keys(table, {"b_id": VT.STRING, "a_n": VT.INT64})
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])  # two chunks per column
    assert W.encode_entity_keys(chunked, {"b_id": VT.STRING, "a_n": VT.INT64}) == got
    want = [
        serialize_entity_key(
            EntityKey(join_keys=["a_n", "b_id"], entity_values=[Value(int64_val=n), Value(string_val=s)]), 3
        )
        for s, n in [("x", 3), ("é", -(2**40))]
    ]
    assert got == want


@pytest.mark.parametrize("rows_per_statement,chunk_rows", [(200, 20_000), (12, 3)])
def test_sqlite_arrow_engine_matches_feast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows_per_statement: int, chunk_rows: int
):
    # (12, 3): two entities per INSERT and chunks of three, so full statements, a remainder statement
    # and several transactions all run on the 5 keys.
    monkeypatch.setattr(W, "SQLITE_ROWS_PER_STATEMENT", rows_per_statement)
    monkeypatch.setattr(W, "CHUNK_ROWS", chunk_rows)
    source = tmp_path / "v.parquet"
    _source(source)
    feast_store = _store(tmp_path, "feast", source, {"type": "sqlite", "path": "online.db"}, None)
    fast_store = _store(tmp_path, "fast", source, {"type": SQLITE_TYPE, "path": "online.db"}, ENGINE_TYPE)

    def rows(repo: str) -> list[tuple]:
        with sqlite3.connect(tmp_path / repo / "online.db") as conn:
            return conn.execute(
                "SELECT entity_key, feature_name, value, value_text, event_ts, created_ts FROM c2i_w_v "
                "ORDER BY entity_key, feature_name"
            ).fetchall()

    assert len(rows("feast")) == len(KEYS) * 6
    assert rows("fast") == rows("feast")
    assert _online(fast_store) == _online(feast_store)
    emb = fast_store.get_online_features(features=["v:emb"], entity_rows=[{"kid": "k0"}]).to_dict()["emb"]
    assert emb[0] == pytest.approx([5.0, 6.0])  # k0's later row won


@pytest.mark.services
@pytest.mark.parametrize("key_ttl_seconds,chunk_rows", [(None, 20_000), (3600, 2)])
def test_redis_arrow_engine_matches_feast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_ttl_seconds: int | None, chunk_rows: int
):
    reason = FS.service_available("redis")
    if reason:
        pytest.skip(reason)
    monkeypatch.setattr(W, "CHUNK_ROWS", chunk_rows)
    import redis

    source = tmp_path / "v.parquet"
    _source(source)
    tag = uuid.uuid4().hex[:8]
    projects = {"feast": f"c2i_wf_{tag}", "fast": f"c2i_wa_{tag}"}
    host, _, port = DEFAULT_REDIS.partition(":")
    stores = {}
    try:
        for name, engine in (("feast", None), ("fast", ENGINE_TYPE)):
            kind = REDIS_TYPE if engine else "redis"
            online = {"type": kind, "connection_string": DEFAULT_REDIS, "project": projects[name]}
            if key_ttl_seconds:
                online["key_ttl_seconds"] = key_ttl_seconds
            stores[name] = _store(tmp_path, name, source, online, engine)
        client = redis.Redis(host=host, port=int(port))

        def hashes(project: str) -> dict:
            suffix = project.encode()
            keys = [k for k in client.scan_iter(match=b"*" + suffix) if k.endswith(suffix)]
            return {k[: -len(suffix)]: client.hgetall(k) for k in keys}

        want = hashes(projects["feast"])
        assert len(want) == len(KEYS)
        for project in projects.values():  # Feast's EXPIRE where a key ttl is set, none otherwise
            suffix = project.encode()
            ttls = {client.ttl(k) for k in client.scan_iter(match=b"*" + suffix) if k.endswith(suffix)}
            assert (min(ttls) > 0 and max(ttls) <= key_ttl_seconds) if key_ttl_seconds else ttls == {-1}
        assert hashes(projects["fast"]) == want
        assert _online(stores["fast"]) == _online(stores["feast"])
        # A second run of older rows must not overwrite newer values (Feast's timestamp check).
        stores["fast"].materialize(T0 - pd.Timedelta(days=1), T0 + pd.Timedelta(hours=3))
        assert hashes(projects["fast"]) == want
    finally:
        for store in stores.values():
            FS.drop_project(store)


@pytest.mark.services
def test_redis_error_reply_drops_the_connection():
    """An error reply mid-batch raises, and the pooled connection does not hand the batch's unread
    replies to its next user."""
    reason = FS.service_available("redis")
    if reason:
        pytest.skip(reason)
    import redis

    host, _, port = DEFAULT_REDIS.partition(":")
    client = redis.Redis(host=host, port=int(port))
    key = f"c2i_wt_{uuid.uuid4().hex[:8]}".encode()
    client.set(key, b"x")
    try:
        ping = b"*1\r\n$4\r\nPING\r\n"
        hset = b"*4\r\n$4\r\nHSET\r\n" + b"$%d\r\n%b\r\n" % (len(key), key) + b"$1\r\nf\r\n$1\r\nv\r\n"
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            W.pipelined(client, [hset, ping, ping], 3)
        assert client.get(key) == b"x"  # not the batch's pending PONG
        assert W.pipelined(client, [ping], 1) == [b"PONG"]
    finally:
        client.delete(key)
