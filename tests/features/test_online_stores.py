"""The clicks2intent online store classes are Feast's stores: configured by class path, what they read in one
round trip is what Feast's own ``online_read`` returns view by view, and Feast's tools read what they wrote.

Three views (two on one entity, one on another), materialised by the Arrow engine into
``Clicks2IntentSqliteOnlineStore`` and ``Clicks2IntentRedisOnlineStore`` (a Redis of the test's own project);
known keys, a key nobody has, field subsets and all fields. The SQLite store's ``layout: wide`` (one row per
entity) reads what Feast's own layout reads after the same writes: materialisation by either engine, and a
push of some of a view's features.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clicks2intent.common.settings import DEFAULT_REDIS
from clicks2intent.errors import ConfigError
from clicks2intent.features import store as FS
from clicks2intent.features.engines import ENGINE_TYPE
from clicks2intent.features.online_stores import (
    REDIS_TYPE,
    SQLITE_TYPE,
    Clicks2IntentRedisOnlineStore,
    Clicks2IntentSqliteOnlineStore,
    parse_connection_string,
)

T0 = pd.Timestamp("2024-05-01", tz="UTC")
KEYS = ["k0", "k1", "ké"]
USERS = [7, 8]


def _repo(root: Path, online: dict[str, Any], engine: str = ENGINE_TYPE) -> Any:
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float32, Int64, String

    root.mkdir()
    pq.write_table(
        pa.table(
            {
                "kid": ["k0", "k1", "ké", "k0"],
                "event_timestamp": pa.array(
                    [T0, T0, T0, T0 + pd.Timedelta(hours=1)], pa.timestamp("us", "UTC")
                ),
                "emb": pa.array([[0.5, 1.0], None, [2.0, 3.0], [4.0, 5.0]], pa.list_(pa.float32())),
                "label": ["a", "b", None, "c"],
                "n": [1, 2, 3, 4],
            }
        ),
        root / "k.parquet",
    )
    pq.write_table(
        pa.table(
            {"uid": USERS, "event_timestamp": pa.array([T0, T0], pa.timestamp("us", "UTC")), "score": [1, 2]}
        ),
        root / "u.parquet",
    )
    cfg = {
        "project": online.pop("project", "c2i_os"),
        "provider": "local",
        "registry": "registry.db",
        "online_store": online,
        "offline_store": {"type": "file"},
        "batch_engine": {"type": engine},
        "entity_key_serialization_version": 3,
    }
    FS.write_config(root / "feature_store.yaml", cfg)
    store = FS.open_store(root)
    k = Entity(name="k", join_keys=["kid"], value_type=ValueType.STRING)
    u = Entity(name="u", join_keys=["uid"], value_type=ValueType.INT64)
    source = FileSource(path=str(root / "k.parquet"), timestamp_field="event_timestamp")
    views = [
        FeatureView(name="a", entities=[k], ttl=timedelta(days=30), source=source,
                    schema=[Field(name="emb", dtype=Array(Float32)), Field(name="label", dtype=String)]),
        FeatureView(name="b", entities=[k], ttl=timedelta(days=30), source=source,
                    schema=[Field(name="n", dtype=Int64)]),
        FeatureView(name="c", entities=[u], ttl=timedelta(days=30),
                    source=FileSource(path=str(root / "u.parquet"), timestamp_field="event_timestamp"),
                    schema=[Field(name="score", dtype=Int64)]),
    ]  # fmt: skip
    store.apply([k, u, *views])
    store.materialize(T0 - pd.Timedelta(days=1), T0 + pd.Timedelta(days=1))
    return store


def _key(name: str, value: Any) -> Any:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    v = Value(string_val=value) if isinstance(value, str) else Value(int64_val=value)
    return EntityKey(join_keys=[name], entity_values=[v])


def _parity(store: Any, online: Any) -> None:
    """``online_read_rows`` of every combination equals Feast's ``online_read`` of each read."""
    from feast.infra.online_stores.helpers import get_online_store_from_config

    config = store.config
    feast_own = get_online_store_from_config(config.online_store)
    reads = _reads(store)
    got = online.online_read_rows(config, reads)
    assert len(got) == len(reads)
    if hasattr(online, "online_read_rows_async"):  # Redis: the service awaits this one
        assert asyncio.run(online.online_read_rows_async(config, reads)) == got
        assert (
            asyncio.run(online.online_read_rows_async(config, reads[:1])) == got[:1]
        )  # one key: no pipeline
    for (view, key, fields), row in zip(reads, got, strict=True):
        want = feast_own.online_read(config, view, [key], list(fields) if fields else None)[0]
        if want[1] is not None and fields is not None:  # Feast's SQLite read returns every field of the view
            want = (want[0], {f: v for f, v in want[1].items() if f in fields})
        assert row == want, (view.name, key, fields)
    assert online.online_read_rows(config, []) == []
    values = store.get_online_features(features=["a:emb", "b:n"], entity_rows=[{"kid": "k0"}]).to_dict()
    assert values["emb"][0] == pytest.approx([4.0, 5.0]) and values["n"][0] == 4  # the later row won


def test_sqlite_store_by_class_path_reads_rows_as_feast(tmp_path: Path) -> None:
    from feast.infra.online_stores.helpers import get_online_store_from_config

    store = _repo(tmp_path / "repo", {"type": SQLITE_TYPE, "path": "online.db"})
    online = get_online_store_from_config(store.config.online_store)
    assert isinstance(online, Clicks2IntentSqliteOnlineStore) and online.writes_arrow(store.config)
    _parity(store, online)


@pytest.mark.services
def test_redis_store_by_class_path_reads_rows_in_one_round_trip(tmp_path: Path) -> None:
    from feast.infra.online_stores.helpers import get_online_store_from_config

    if reason := FS.service_available("redis"):
        pytest.skip(reason)
    project = f"c2i_os_{uuid.uuid4().hex[:8]}"
    online_cfg = {"type": REDIS_TYPE, "connection_string": FS.redis_connection_string(DEFAULT_REDIS)}
    store = _repo(tmp_path / "repo", online_cfg | {"project": project})
    try:
        online = get_online_store_from_config(store.config.online_store)
        assert isinstance(online, Clicks2IntentRedisOnlineStore) and online.writes_arrow(store.config)
        _parity(store, online)
        connection = online.rows_client(store.config).connection_pool.connection_class
        sent: list[int] = []
        send = connection.send_packed_command

        def counting(self: Any, command: Any, check_health: bool = True) -> None:
            sent.append(1)
            return send(self, command, check_health)

        a, b, c = (store.get_feature_view(n) for n in "abc")
        reads = [(a, _key("kid", "k0"), None), (b, _key("kid", "k0"), ["n"]), (c, _key("uid", 7), None)]
        online.online_read_rows(store.config, reads)  # the connection opened (its handshake) before counting
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(connection, "send_packed_command", counting)
            online.online_read_rows(store.config, reads)
        assert sent == [1]  # two views of k0 and one of user 7: one write to the socket, one round trip
    finally:
        FS.drop_project(store)


def test_connection_string_parsed_as_feast_parses_it() -> None:
    from feast.infra.online_stores.redis import RedisOnlineStore

    for text in ("h:1", "h:6379,db=2,ssl=true,password=p=w", FS.redis_connection_string("10.0.0.1:6380")):
        assert parse_connection_string(text) == RedisOnlineStore._parse_connection_string(text)


def _reads(store: Any) -> list[Any]:
    a, b, c = (store.get_feature_view(n) for n in "abc")
    reads = []
    for kid in [*KEYS, "nobody"]:
        reads += [(a, _key("kid", kid), None), (a, _key("kid", kid), ["label"]), (b, _key("kid", kid), ["n"])]
    return reads + [(c, _key("uid", uid), None) for uid in [*USERS, 99]]


def _everything(store: Any) -> list[Any]:
    """Every read of :func:`_reads`, through ``online_read`` (per view, all keys) and ``online_read_rows``."""
    from feast.infra.online_stores.helpers import get_online_store_from_config

    online = get_online_store_from_config(store.config.online_store)
    reads = _reads(store)
    per_view = [online.online_read(store.config, view, [key]) for view, key, _ in reads]
    served = store.get_online_features(
        features=["a:emb", "a:label", "b:n"], entity_rows=[{"kid": k} for k in [*KEYS, "nobody"]]
    ).to_dict()
    return [per_view, online.online_read_rows(store.config, reads), served]


def _wide_table(root: Path, view: str) -> list[tuple]:
    conn = sqlite3.connect(root / "online.db")
    try:
        return conn.execute(f"SELECT * FROM c2i_os_{view} ORDER BY entity_key").fetchall()
    finally:
        conn.close()


def test_sqlite_wide_layout_reads_what_feasts_layout_reads(tmp_path: Path) -> None:
    from feast.infra.online_stores.helpers import get_online_store_from_config

    feast_layout = _repo(tmp_path / "feast", {"type": SQLITE_TYPE, "path": "online.db"})
    wide = _repo(tmp_path / "wide", {"type": SQLITE_TYPE, "path": "online.db", "layout": "wide"})
    _repo(  # Feast's own engine: its row path, online_write_batch
        tmp_path / "rows", {"type": SQLITE_TYPE, "path": "online.db", "layout": "wide"}, engine="local"
    )
    online = get_online_store_from_config(wide.config.online_store)
    assert online.wide(wide.config) and online.writes_arrow(wide.config)
    assert _everything(wide) == _everything(feast_layout)
    _parity(wide, online)
    table = _wide_table(tmp_path / "wide", "a")
    assert [len(r) for r in table] == [4, 4, 4]  # one row per entity: key, event time, created time, features
    assert _wide_table(tmp_path / "rows", "a") == table  # Feast's engine (online_write_batch): the same bytes
    assert _wide_table(tmp_path / "rows", "c") == _wide_table(tmp_path / "wide", "c")

    # A push of one of view a's features: the others keep their values (Feast's table keeps their rows).
    from feast.protos.feast.types.Value_pb2 import Value

    later = T0 + pd.Timedelta(hours=2)
    for store in (feast_layout, wide):
        view = store.get_feature_view("a")
        batch = [(_key("kid", "k0"), {"label": Value(string_val="pushed")}, later.to_pydatetime(), None)]
        batch += [(_key("kid", "new"), {"label": Value(string_val="n")}, later.to_pydatetime(), None)]
        get_online_store_from_config(store.config.online_store).online_write_batch(
            store.config, view, batch, None
        )
    got, want = _everything(wide), _everything(feast_layout)
    assert got == want
    k0 = get_online_store_from_config(wide.config.online_store).online_read(
        wide.config, wide.get_feature_view("a"), [_key("kid", "k0"), _key("kid", "new")]
    )
    assert k0[0][0] == later and k0[0][1]["label"].string_val == "pushed"
    assert list(k0[0][1]["emb"].float_list_val.val) == [4.0, 5.0]
    assert set(k0[1][1]) == {"label"}


def test_sqlite_layout_mismatch_is_one_clear_error(tmp_path: Path) -> None:
    from feast import FeatureStore

    store = _repo(tmp_path / "repo", {"type": SQLITE_TYPE, "path": "online.db"})
    cfg = FS.load_config(tmp_path / "repo" / "feature_store.yaml")
    cfg["online_store"]["layout"] = "wide"
    FS.write_config(tmp_path / "repo" / "feature_store.yaml", cfg)
    again = FeatureStore(repo_path=str(tmp_path / "repo"))
    with pytest.raises(
        ConfigError, match=r"online_store.layout: 'wide', but table 'c2i_os_a' .* has the 'feast' layout"
    ):
        again.apply([*store.list_entities(), *store.list_feature_views()])


def test_sqlite_wide_layout_refuses_vector_options() -> None:
    from clicks2intent.features.online_stores import Clicks2IntentSqliteOnlineStoreConfig

    with pytest.raises(
        ValueError, match="online_store.layout: 'wide' holds plain views only; vector_enabled"
    ):
        Clicks2IntentSqliteOnlineStoreConfig(layout="wide", vector_enabled=True)
    assert Clicks2IntentSqliteOnlineStoreConfig(vector_enabled=True).layout == "feast"
