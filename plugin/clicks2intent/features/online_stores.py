"""Feast's SQLite and Redis online stores, plus one read of several views' rows in one round trip and a
column-wise Arrow write.

Configured by class path in a feature store YAML, Feast's extension point for online stores::

    online_store:
      type: clicks2intent.features.online_stores.Clicks2IntentSqliteOnlineStore
      path: data/online_store.db

    online_store:
      type: clicks2intent.features.online_stores.Clicks2IntentRedisOnlineStore
      connection_string: 127.0.0.1:6379,socket_timeout=0.5

Each class IS Feast's store (a subclass; every option of ``type: sqlite`` / ``type: redis`` is accepted):
the same tables and hashes, and ``online_read``, ``online_write_batch``, ``update`` and ``teardown`` are
Feast's own, so ``get_online_features``, ``feast serve``, ``feast materialize`` and the push source read
and write them unchanged. The SQLite class has one option more, ``layout: wide``: one row per entity,
its features in one blob (a serialised Feast ``Map``), instead of Feast's one row per entity and
feature; there ``update``, ``online_write_batch`` and ``online_read`` are the class's own and return
what Feast's return after the same writes (a push of some of a view's features keeps the others), and
only Feast's tools that go through the class read the tables (a plain ``type: sqlite`` does not).
Two methods are added:

* :meth:`online_read_rows`: the rows of several (view, entity) pairs at once, each exactly what
  ``online_read(config, view, [entity_key], fields)`` returns for it. SQLite: one ``UNION ALL``
  statement over the views' tables; Redis: one ``HMGET`` per entity key, all views of that entity in it
  (Feast keeps them in one hash), every key in one pipelined round trip. The service reads a request's
  rows with it (clicks2intent.serving.online). Redis also has ``online_read_rows_async``: the same
  commands awaited on one pipelined connection per event loop (clicks2intent.features.redis_pipe), so a
  worker's event loop serves other requests while one waits for its round trip.
* :meth:`online_write_arrow`: the latest row per entity of a view from an Arrow table, column-wise
  (clicks2intent.features.online_write), byte-identical to Feast's own writes; the Arrow batch engine
  (clicks2intent.features.engines) uses it where :meth:`writes_arrow` says the layout is one it
  reproduces, and Feast's own materialisation elsewhere.

Why classes and not calls into Feast's internals: the YAML names them, so the extension is visible, and
only public Feast names are used (tests/test_private_names.py); docs/decisions/0005-online-store-classes.md.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id, compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, convert_timestamp
from feast.protos.feast.types.Value_pb2 import Map as MapProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.utils import to_naive_utc
from pydantic import model_validator

from clicks2intent.errors import ConfigError
from clicks2intent.features import online_write as W
from clicks2intent.features.redis_pipe import RedisPipe, pipe_options

if TYPE_CHECKING:
    import pyarrow as pa
    from feast import FeatureView, RepoConfig
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto

SQLITE_TYPE = "clicks2intent.features.online_stores.Clicks2IntentSqliteOnlineStore"
REDIS_TYPE = "clicks2intent.features.online_stores.Clicks2IntentRedisOnlineStore"

# One (view, entity key, requested fields or None for all of the view's) per row to read.
RowRead = tuple["FeatureView", "EntityKeyProto", "Sequence[str] | None"]
Row = tuple[datetime | None, dict[str, ValueProto] | None]


def parse_connection_string(connection_string: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Feast's ``host:port[,host:port...][,key=value...]`` → (nodes, client options; JSON values decoded)."""
    nodes = [
        dict(zip(["host", "port"], c.split(":"), strict=False))
        for c in connection_string.split(",")
        if "=" not in c
    ]
    params: dict[str, Any] = {}
    for part in connection_string.split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
    return nodes, params


# --- SQLite ------------------------------------------------------------------------------------------
class Clicks2IntentSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """``online_store`` section for :class:`Clicks2IntentSqliteOnlineStore`: every field of ``sqlite``,
    plus ``layout``."""

    type: Literal["clicks2intent.features.online_stores.Clicks2IntentSqliteOnlineStore"] = SQLITE_TYPE  # type: ignore[assignment]
    # feast: Feast's tables, one row per entity and feature (a plain `type: sqlite` store reads them);
    # wide: one row per entity, its features in one blob (a materialisation is one B-tree insert per
    # entity, not one per feature: docs/decisions/0006-a-banks-day.md). Plain views only.
    layout: Literal["feast", "wide"] = "feast"

    @model_validator(mode="after")
    def _wide_is_plain(self) -> Clicks2IntentSqliteOnlineStoreConfig:
        extras = [
            f
            for f in ("vector_enabled", "text_search_enabled", "enable_openai_compatible_store")
            if getattr(self, f, False)
        ]
        if self.layout == "wide" and extras:
            raise ValueError(
                f"online_store.layout: 'wide' holds plain views only; {', '.join(extras)} needs layout: feast"
            )
        return self


class Clicks2IntentSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store with :meth:`online_read_rows` and :meth:`online_write_arrow`; with
    ``layout: wide`` its tables hold one row per entity, and ``update``, ``online_write_batch`` and
    ``online_read`` are this class's, returning what Feast's return for the same writes."""

    _rows_conn: sqlite3.Connection | None = None
    _rows_sql: dict[tuple[str, ...], str] | None = None

    def rows_connection(self, config: RepoConfig) -> sqlite3.Connection:
        """This store's own connection to the database file (Feast's rule for a relative path)."""
        if self._rows_conn is None:
            path = Path(config.online_store.path)
            if config.repo_path and not path.is_absolute():
                path = Path(config.repo_path) / path
            path.parent.mkdir(parents=True, exist_ok=True)
            # No type detection: only one timestamp per row read is converted (as Feast's converter does)
            self._rows_conn = sqlite3.connect(str(path), check_same_thread=False)
        return self._rows_conn

    def table_name(self, config: RepoConfig, table: FeatureView) -> str:
        return compute_table_id(config.project, table, config.registry.enable_online_feature_view_versioning)

    @staticmethod
    def wide(config: RepoConfig) -> bool:
        return getattr(config.online_store, "layout", "feast") == "wide"

    def _table_layout(self, config: RepoConfig, name: str) -> str | None:
        columns = [
            r[1]
            for r in self.rows_connection(config).execute(f"PRAGMA table_info({W.quote_identifier(name)})")
        ]
        if not columns:
            return None
        return "wide" if tuple(columns) == W.WIDE_COLUMNS else "feast"

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Any],
        entities_to_keep: Sequence[Any],
        partial: bool,
    ) -> None:
        """Create the kept views' tables in the configured layout and drop the deleted ones'. A table
        already there in the other layout is an error (its rows would be read as missing)."""
        layout = config.online_store.layout
        for view in tables_to_keep:
            name = self.table_name(config, view)
            found = self._table_layout(config, name)
            if found is not None and found != layout:
                raise ConfigError(
                    f"online_store.layout: {layout!r}, but table {name!r} in {config.online_store.path} has the "
                    f"{found!r} layout; delete it (feast teardown) and materialize again, or set layout: {found}"
                )
        if layout == "feast":
            super().update(
                config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial
            )
            return
        conn = self.rows_connection(config)
        with conn:
            for view in tables_to_keep:
                conn.execute(W.wide_create(self.table_name(config, view)))
            for view in tables_to_delete:
                conn.execute(f"DROP TABLE IF EXISTS {W.quote_identifier(self.table_name(config, view))}")

    def plan(self, config: RepoConfig, desired_registry_proto: Any) -> list[Any]:
        """Feast's table objects describe its own layout: none for the wide one (``update`` creates it)."""
        return [] if self.wide(config) else super().plan(config, desired_registry_proto)

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Any]) -> None:
        if self._rows_conn is not None:
            self._rows_conn.close()
            self._rows_conn = None
            self._rows_sql = None
        super().teardown(config, tables, entities)

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Any,
    ) -> None:
        """Feast's row path (push sources, Feast's own materialisation). Wide: a row that carries only some
        of the view's features keeps the others' stored values, as Feast's one-row-per-feature table does;
        its event time becomes the row's."""
        if not self.wide(config):
            super().online_write_batch(config, table, data, progress)
            return
        if not data:
            return
        conn = self.rows_connection(config)
        name = self.table_name(config, table)
        version = config.entity_key_serialization_version
        keys = [serialize_entity_key(k, entity_key_serialization_version=version) for k, *_ in data]
        every = {f.name for f in table.features}
        full = [every <= values.keys() for _, values, *_ in data]
        partial = sorted({k for k, whole in zip(keys, full, strict=True) if not whole})
        state = {key: _wide_values(blob) for key, blob in _wide_rows(conn, name, "features", partial)}
        rows: dict[bytes, tuple[Any, Any, dict[str, ValueProto]]] = {}
        for key, whole, (_, values, ts, created) in zip(keys, full, data, strict=True):
            merged = state[key] = values if whole else {**state.get(key, {}), **values}
            rows[key] = (to_naive_utc(ts), to_naive_utc(created) if created is not None else None, merged)
        encoded = [
            (key, ts, created, W.encode_wide({n: [v.SerializeToString()] for n, v in values.items()})[0])
            for key, (ts, created, values) in sorted(rows.items())
        ]
        with conn:
            conn.executemany(W.wide_upsert(name), encoded)
        if progress:
            progress(len(data))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[Row]:
        """Feast's read (every feature of the view, whatever is requested); wide: one statement per 500 keys."""
        if not self.wide(config):
            return super().online_read(config, table, entity_keys, requested_features)
        version = config.entity_key_serialization_version
        keys = [serialize_entity_key(k, entity_key_serialization_version=version) for k in entity_keys]
        rows = _wide_rows(
            self.rows_connection(config), self.table_name(config, table), "event_ts, features", keys
        )
        found = {key: (ts, blob) for key, ts, blob in rows}
        out: list[Row] = []
        for key in keys:
            hit = found.get(key)
            out.append((None, None) if hit is None else (_utc(hit[0]), _wide_values(hit[1])))
        return out

    def online_read_rows(self, config: RepoConfig, reads: Sequence[RowRead]) -> list[Row]:
        """Each read's ``(event time, {feature: Value})`` or ``(None, None)``, one statement for all."""
        if not reads:
            return []
        names = tuple(self.table_name(config, table) for table, _, _ in reads)
        cache = self._rows_sql if self._rows_sql is not None else {}
        self._rows_sql = cache
        wide = self.wide(config)
        sql = cache.get(names)
        if sql is None:
            columns = "event_ts, features" if wide else "feature_name, value, event_ts"
            sql = cache[names] = " UNION ALL ".join(
                f"SELECT {i}, {columns} FROM {W.quote_identifier(n)} WHERE entity_key = ?"
                for i, n in enumerate(names)
            )
        keys = _serialized_keys(reads, config.entity_key_serialization_version)
        found: list[dict[str, ValueProto]] = [{} for _ in reads]
        last_ts: list[Any] = [None] * len(reads)
        rows = self.rows_connection(config).execute(sql, keys)
        if wide:
            for i, ts, blob in rows:
                found[i], last_ts[i] = _wide_values(blob), ts
        else:
            for i, feature, value, ts in rows:
                proto = ValueProto()
                proto.ParseFromString(value)
                found[i][feature] = proto
                last_ts[i] = ts
        out: list[Row] = []
        for (_, _, fields), values, ts in zip(reads, found, last_ts, strict=True):
            if not values:
                out.append((None, None))
                continue
            if fields is not None:
                values = {f: values[f] for f in fields if f in values}
            out.append((_utc(ts), values))
        return out

    def writes_arrow(self, config: RepoConfig) -> bool:
        """Plain tables only (no vector or OpenAI-compatible columns): the layout the writer reproduces."""
        online = config.online_store
        return not getattr(online, "vector_enabled", False) and not getattr(
            online, "enable_openai_compatible_store", False
        )

    def online_write_arrow(self, config: RepoConfig, table: FeatureView, data: pa.Table) -> None:
        """Upsert the latest row per entity of ``table`` (``data``: its Arrow columns), column-wise."""
        if data.num_rows == 0:
            return
        keys = W.encode_entity_keys(data, W.join_key_types(table), config.entity_key_serialization_version)
        write = W.write_sqlite_wide if self.wide(config) else W.write_sqlite
        write(self.rows_connection(config), self.table_name(config, table), table, data, keys)


def _utc(ts: Any) -> datetime | None:
    """A stored event time as Feast's ``online_read`` returns it (naive values are UTC)."""
    when = convert_timestamp(str(ts).encode()) if ts is not None else None
    if when is None:
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _wide_rows(conn: sqlite3.Connection, table: str, columns: str, keys: Sequence[bytes]) -> Iterator[tuple]:
    """``(entity_key, *columns)`` of the wide table's rows among ``keys``, 500 keys per statement."""
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        yield from conn.execute(
            f"SELECT entity_key, {columns} FROM {W.quote_identifier(table)} "
            f"WHERE entity_key IN ({','.join('?' * len(chunk))})",
            chunk,
        )


def _wide_values(blob: bytes) -> dict[str, ValueProto]:
    """A wide row's ``features`` blob (a Feast ``Map``) → feature name → Value."""
    values = MapProto()
    values.ParseFromString(blob)
    return dict(values.val)


# --- Redis -------------------------------------------------------------------------------------------
class Clicks2IntentRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """``online_store`` section for :class:`Clicks2IntentRedisOnlineStore`: every field of ``redis``."""

    type: Literal["clicks2intent.features.online_stores.Clicks2IntentRedisOnlineStore"] = REDIS_TYPE  # type: ignore[assignment]


class Clicks2IntentRedisOnlineStore(RedisOnlineStore):
    """Feast's Redis online store with :meth:`online_read_rows` (one round trip) and :meth:`online_write_arrow`.

    Both need a single Redis (``redis_type: redis``, the redis-py client); a cluster, Sentinel or the
    GLIDE client get Feast's own per-view reads and Feast's materialisation."""

    _rows_client: Any = None
    _rows_clients_async: weakref.WeakKeyDictionary[Any, Any] | None = None
    _rows_fields: dict[tuple[str, tuple[str, ...] | None], tuple[list[str], bytes, list[bytes]]] | None = None
    _rows_lock = threading.Lock()

    @staticmethod
    def single_redis(config: RepoConfig) -> bool:
        online = config.online_store
        return (
            str(getattr(online.redis_type, "value", online.redis_type)) == "redis"
            and str(getattr(online.client, "value", online.client)) == "redis"
        )

    def rows_client(self, config: RepoConfig) -> Any:
        """This store's own redis-py client, from the connection string's host, port and options."""
        if self._rows_client is None:
            import redis

            nodes, params = parse_connection_string(config.online_store.connection_string)
            with self._rows_lock:
                if self._rows_client is None:
                    self._rows_client = redis.Redis(
                        host=nodes[0]["host"], port=int(nodes[0]["port"]), **params
                    )
        return self._rows_client

    def rows_client_async(self, config: RepoConfig) -> Any:
        """This store's asynchronous client for the running event loop (a client belongs to one loop): a
        :class:`~clicks2intent.features.redis_pipe.RedisPipe`, or redis-py's asyncio client where the
        connection string has options the pipe does not handle (TLS, …)."""
        loop = asyncio.get_running_loop()
        if self._rows_clients_async is None:
            self._rows_clients_async = weakref.WeakKeyDictionary()
        client = self._rows_clients_async.get(loop)
        if client is None:
            nodes, params = parse_connection_string(config.online_store.connection_string)
            host, port = nodes[0]["host"], int(nodes[0]["port"])
            options = pipe_options(params)
            if options is not None:
                client = RedisPipe(host, port, **options)
            else:
                import redis.asyncio as aioredis

                client = aioredis.Redis(host=host, port=port, **params)
            self._rows_clients_async[loop] = client
        return client

    def hash_fields(
        self, config: RepoConfig, table: FeatureView, fields: Sequence[str] | None
    ) -> tuple[list[str], bytes, list[bytes]]:
        """(feature names, their hash fields + the view's ``_ts`` field RESP-encoded, the same fields),
        built once per view."""
        cache = self._rows_fields if self._rows_fields is not None else {}
        self._rows_fields = cache
        key = (table.name, None if fields is None else tuple(fields))
        if key not in cache:
            view = compute_versioned_name(table, config.registry.enable_online_feature_view_versioning)
            names = [f.name for f in table.features] if fields is None else list(fields)
            encoded = [W.redis_field(view, n) for n in names] + [f"_ts:{view}".encode()]
            cache[key] = (names, b"".join(W.bulk(encoded)), encoded)
        return cache[key]

    def _plan_rows(
        self, config: RepoConfig, reads: Sequence[RowRead]
    ) -> tuple[dict[bytes, list[int]], list[tuple[list[str], bytes, list[bytes]]]]:
        """(Redis key → the reads on it, each read's fields): one HMGET per key covers its reads."""
        project = config.project.encode("utf-8")
        by_key: dict[bytes, list[int]] = {}
        plans = []
        keys = _serialized_keys(reads, config.entity_key_serialization_version)
        for i, ((table, _, fields), key) in enumerate(zip(reads, keys, strict=True)):
            by_key.setdefault(key + project, []).append(i)
            plans.append(self.hash_fields(config, table, fields))
        return by_key, plans

    @staticmethod
    def _rows(
        by_key: dict[bytes, list[int]],
        plans: list[tuple[list[str], bytes, list[bytes]]],
        replies: Sequence[Any],
    ) -> list[Row]:
        """Each read's row out of its key's HMGET reply (Feast's ``_get_features_for_entity``)."""
        out: list[Row | None] = [None] * len(plans)
        for members, reply in zip(by_key.values(), replies, strict=True):
            start = 0
            for i in members:
                names = plans[i][0]
                values, stamp = reply[start : start + len(names)], reply[start + len(names)]
                start += len(names) + 1
                out[i] = _redis_row(names, values, stamp)
        return out  # type: ignore[return-value]

    def online_read_rows(self, config: RepoConfig, reads: Sequence[RowRead]) -> list[Row]:
        """Each read's ``(event time, {feature: Value})`` as Feast's ``online_read`` returns it; one HMGET
        per entity key (every view of that entity in it), all in one round trip."""
        if not reads:
            return []
        if not self.single_redis(config):
            return [self.online_read(config, t, [k], list(f) if f else None)[0] for t, k, f in reads]
        by_key, plans = self._plan_rows(config, reads)
        commands = self._hmgets(by_key, plans)
        return self._rows(by_key, plans, W.pipelined(self.rows_client(config), commands, len(commands)))

    @staticmethod
    def _hmgets(
        by_key: dict[bytes, list[int]], plans: list[tuple[list[str], bytes, list[bytes]]]
    ) -> list[bytes]:
        """One RESP-encoded HMGET per key: the fields of every read on it."""
        commands = []
        for redis_key, members in by_key.items():
            n_fields = sum(len(plans[i][0]) + 1 for i in members)
            head = b"*%d\r\n$5\r\nHMGET\r\n" % (2 + n_fields) + W.bulk([redis_key])[0]
            commands.append(head + b"".join(plans[i][1] for i in members))
        return commands

    async def online_read_rows_async(self, config: RepoConfig, reads: Sequence[RowRead]) -> list[Row]:
        """:meth:`online_read_rows` awaiting the reply: one HMGET per entity key, one round trip."""
        if not reads:
            return []
        if not self.single_redis(config):
            return [
                (await self.online_read_async(config, t, [k], list(f) if f else None))[0] for t, k, f in reads
            ]
        by_key, plans = self._plan_rows(config, reads)
        client = self.rows_client_async(config)
        if isinstance(client, RedisPipe):
            packed = self._hmgets(by_key, plans)
            return self._rows(by_key, plans, await client.request(b"".join(packed), len(packed)))
        commands = [[f for i in members for f in plans[i][2]] for members in by_key.values()]
        if len(by_key) == 1:  # the usual request: one entity, no pipeline object needed
            replies = [await client.execute_command("HMGET", next(iter(by_key)), *commands[0])]
        else:
            async with client.pipeline(transaction=False) as pipe:
                for redis_key, fields in zip(by_key, commands, strict=True):
                    pipe.execute_command("HMGET", redis_key, *fields)
                replies = await pipe.execute()
        return self._rows(by_key, plans, replies)

    def writes_arrow(self, config: RepoConfig) -> bool:
        return self.single_redis(config)

    def online_write_arrow(self, config: RepoConfig, table: FeatureView, data: pa.Table) -> None:
        """HSET the latest row per entity into Feast's hashes, skipping rows older than the stored ones."""
        if data.num_rows == 0:
            return
        keys = W.encode_entity_keys(data, W.join_key_types(table), config.entity_key_serialization_version)
        W.write_redis(self.rows_client(config), config, table, data, keys)


def _serialized_keys(reads: Sequence[RowRead], version: int) -> list[bytes]:
    """Feast's serialised entity key of each read (once per key object: the views of one entity share it)."""
    done: dict[int, bytes] = {}
    out = []
    for _, key, _ in reads:
        if id(key) not in done:
            done[id(key)] = serialize_entity_key(key, entity_key_serialization_version=version)
        out.append(done[id(key)])
    return out


def _redis_row(names: list[str], values: Sequence[bytes | None], stamp: bytes | None) -> Row:
    """Feast's ``_get_features_for_entity``: every requested feature (an empty Value where the hash has
    none), the ``_ts`` field as the event time (the epoch when absent)."""
    from google.protobuf.timestamp_pb2 import Timestamp

    res: dict[str, ValueProto] = {}
    for name, raw in zip(names, values, strict=True):
        proto = ValueProto()
        if raw:
            proto.ParseFromString(raw)
        res[name] = proto
    if not res:
        return None, None
    ts = Timestamp()
    if stamp:
        ts.ParseFromString(stamp)
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1_000_000_000.0, tz=UTC), res
