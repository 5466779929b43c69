"""Arrow → online store writes without Feast's per-row proto conversion, byte-identical to Feast's.

Feast 0.67 materialises by turning every arrow row into an ``EntityKey`` proto plus one ``Value``
proto per feature and handing that list to the store's ``online_write_batch``; for a 64-d embedding
view that conversion is most of the time (docs/decisions/0012-features-and-feast.md). Here
each feature COLUMN is serialised at once: fixed-width values (float lists, doubles) are sliced out of
the arrow buffers behind a constant protobuf prefix, the rest go through one upb ``Value`` per cell;
entity keys are Feast's v3 byte layout. The rows then go to the same tables / hashes Feast's own
``SqliteOnlineStore`` and ``RedisOnlineStore`` write, in the same layout, so ``get_online_features``
and ``feast serve`` read them unchanged (tests compare the stored bytes with Feast's own path). The SQLite
store's ``layout: wide`` gets one row per entity instead, the same serialised values as entries of one
Feast ``Map`` (:func:`write_sqlite_wide`).

The online store classes of :mod:`clicks2intent.features.online_stores` call these writers
(``online_write_arrow``); a store or layout they do not reproduce (another online store, a
vector-enabled SQLite table, a Redis cluster) is materialised by Feast's own engine instead, and an
arrow type without a verified encoding goes through Feast's public value conversion, column by column.
Only public Feast names are used (tests/test_private_names.py).
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from feast import FeatureView, RepoConfig
    from feast.infra.online_stores.online_store import OnlineStore
    from feast.value_type import ValueType

logger = logging.getLogger(__name__)

CHUNK_ROWS = 20_000  # rows per SQLite transaction / Redis pipeline: bounds memory, keeps round trips few
_FLOAT_LIST_TAG = b"\x82\x01"  # Value.float_list_val: field 16, length-delimited
_DOUBLE_LIST_TAG = b"\x7a"  # Value.double_list_val: field 15, length-delimited
_PACKED_VAL_TAG = b"\x0a"  # FloatList/DoubleList.val: field 1, packed
_DOUBLE_TAG = b"\x29"  # Value.double_val: field 5, fixed64


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _packed_list(values: pa.ListArray, tag: bytes, np_type: type, width: int) -> list[bytes] | None:
    """A list<float> column → serialised ``Value`` bytes per row (``b""`` = null), or None to fall back."""
    if values.values.null_count:
        return None  # a null inside a list: Feast's own conversion decides
    flat = values.values.to_numpy(zero_copy_only=False).astype(np_type, copy=False)
    raw = flat.tobytes()
    offsets = values.offsets.to_numpy()
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    prefixes: dict[int, bytes] = {}
    out: list[bytes] = []
    base = int(offsets[0])
    for i in range(len(values)):
        if not valid[i]:
            out.append(b"")
            continue
        start, end = int(offsets[i]) - base, int(offsets[i + 1]) - base
        n = end - start
        prefix = prefixes.get(n)
        if prefix is None:
            body = width * n
            inner = (_PACKED_VAL_TAG + _varint(body)) if n else b""
            prefix = prefixes[n] = tag + _varint(len(inner) + body) + inner
        out.append(prefix + raw[start * width : end * width])
    return out


def _doubles(values: pa.Array) -> list[bytes]:
    """A float64 column → ``double_val`` bytes; null and NaN are null (as Feast writes them)."""
    arr = values.to_numpy(zero_copy_only=False).astype(np.float64)
    missing = np.isnan(arr) | ~values.is_valid().to_numpy(zero_copy_only=False)
    raw = arr.tobytes()
    return [b"" if missing[i] else _DOUBLE_TAG + raw[i * 8 : i * 8 + 8] for i in range(len(arr))]


def _scalars(values: pa.Array, field: str) -> list[bytes]:
    """One upb ``Value`` per distinct cell (ints, strings, bools), shared by the rows holding it: labels
    and versions repeat, so a few hundred serialisations stand for 100k rows; null → ``b""``."""
    from feast.protos.feast.types.Value_pb2 import Value

    cells = values.to_pylist()
    memo = {v: Value(**{field: v}).SerializeToString() for v in set(cells) if v is not None}
    memo[None] = b""
    return [memo[v] for v in cells]


def encode_column(values: pa.Array | pa.ChunkedArray, value_type: ValueType) -> list[bytes] | None:
    """Serialised Feast ``Value`` bytes per row, or None where this type has no verified encoding."""
    from feast.value_type import ValueType

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    t = values.type
    if value_type == ValueType.FLOAT_LIST and pa.types.is_list(t) and pa.types.is_floating(t.value_type):
        return _packed_list(values, _FLOAT_LIST_TAG, np.float32, 4)
    if value_type == ValueType.DOUBLE_LIST and pa.types.is_list(t) and pa.types.is_floating(t.value_type):
        return _packed_list(values, _DOUBLE_LIST_TAG, np.float64, 8)
    if value_type == ValueType.DOUBLE and pa.types.is_floating(t):
        return _doubles(values)
    if value_type == ValueType.INT64 and pa.types.is_integer(t):
        return _scalars(values, "int64_val")
    if value_type == ValueType.INT32 and pa.types.is_integer(t):
        return _scalars(values, "int32_val")
    if value_type == ValueType.STRING and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return _scalars(values, "string_val")
    if value_type == ValueType.BOOL and pa.types.is_boolean(t):
        return _scalars(values, "bool_val")
    return None


def _feast_column(batch: pa.RecordBatch, name: str, value_type: ValueType) -> list[bytes]:
    """Feast's own conversion of one column (what its materialisation applies to every column)."""
    from feast.type_map import python_values_to_proto_values

    protos = python_values_to_proto_values(batch.column(name).to_numpy(zero_copy_only=False), value_type)
    return [p.SerializeToString() for p in protos]


def encode_features(table: pa.Table, feature_view: FeatureView) -> dict[str, list[bytes]]:
    """Every feature of ``feature_view`` → serialised values per row (Feast's conversion where needed)."""
    batch: pa.RecordBatch | None = None
    out: dict[str, list[bytes]] = {}
    for field in feature_view.features:
        value_type = field.dtype.to_value_type()
        encoded = encode_column(table.column(field.name), value_type)
        if encoded is None:
            batch = batch if batch is not None else table.combine_chunks().to_batches()[0]
            encoded = _feast_column(batch, field.name, value_type)
        out[field.name] = encoded
    return out


def join_key_types(feature_view: FeatureView) -> dict[str, ValueType]:
    """The view's join keys and their value types (what its entity keys are built from)."""
    return {e.name: e.dtype.to_value_type() for e in feature_view.entity_columns}


def encode_entity_keys(table: pa.Table, join_keys: Mapping[str, ValueType], version: int = 3) -> list[bytes]:
    """Feast's ``serialize_entity_key`` bytes per row (v3 layout; string and int64 keys)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.value_type import ValueType

    names = sorted(join_keys)
    fast = version >= 3 and all(join_keys[k] in (ValueType.STRING, ValueType.INT64) for k in names)
    columns = [table.column(k).to_pylist() for k in names]
    if not fast:
        fields = {ValueType.STRING: "string_val", ValueType.INT64: "int64_val", ValueType.INT32: "int32_val"}
        out = []
        for row in zip(*columns, strict=True):
            key = EntityKey(
                join_keys=names,
                entity_values=[Value(**{fields[join_keys[k]]: v}) for k, v in zip(names, row, strict=True)],
            )
            out.append(serialize_entity_key(key, entity_key_serialization_version=version))
        return out
    header = struct.pack("<I", len(names)) + b"".join(
        struct.pack("<II", ValueType.STRING.value, len(k.encode())) + k.encode() for k in names
    )
    parts: list[list[bytes]] = []
    for k, col in zip(names, columns, strict=True):
        if any(v is None for v in col):
            raise ValueError(f"join key {k!r}: null values cannot be written to the online store")
        if join_keys[k] == ValueType.STRING:
            tag = struct.pack("<I", ValueType.STRING.value)
            parts.append([tag + struct.pack("<I", len(b)) + b for b in (str(v).encode("utf8") for v in col)])
        else:
            tag = struct.pack("<II", ValueType.INT64.value, 8)
            parts.append([tag + struct.pack("<q", int(v)) for v in col])
    return [header + b"".join(p) for p in zip(*parts, strict=True)]


def _naive_utc(values: pa.Array | pa.ChunkedArray) -> list[Any]:
    """Timestamps → naive UTC ``datetime``\\ s at microsecond precision (what Feast's stores store)."""
    import pandas as pd

    ts = pd.DatetimeIndex(pd.to_datetime(values.to_pandas(), utc=True)).tz_localize(None).floor("us")
    return [None if t is pd.NaT else t for t in ts.to_pydatetime()]


def _sqlite_times(values: pa.Array | pa.ChunkedArray) -> list[Any]:
    """Timestamps as SQLite receives them from Feast: naive UTC datetimes, which Feast's registered
    adapter (``adapt_datetime_epoch``) turns into ``int(dt.timestamp())``. Where that adapter is in
    force and local time is UTC, the same integers are computed in one vectorised step (200k Python
    adapter calls saved per 50k rows); anywhere else the datetimes go through the adapter."""
    import datetime as dt
    import sqlite3
    import time as _time

    from feast.infra.online_stores import sqlite as feast_sqlite

    adapter = sqlite3.adapters.get((dt.datetime, sqlite3.PrepareProtocol))
    if adapter is not feast_sqlite.adapt_datetime_epoch or _time.timezone or _time.daylight:
        return _naive_utc(values)
    ts = pc.cast(values, pa.timestamp("us", "UTC")).cast(pa.int64())
    us = ts.to_numpy(zero_copy_only=False)
    valid = np.asarray(ts.is_valid())
    us = np.where(valid, us, 0)
    whole, micro = np.divmod(us, 1_000_000)
    secs = whole + ((whole < 0) & (micro > 0))  # int() of a float timestamp truncates toward zero
    return [int(s) if ok else None for s, ok in zip(secs.tolist(), valid.tolist(), strict=True)]


def text_values(values: pa.Array | pa.ChunkedArray, value_type: ValueType) -> list[str | None]:
    """SQLite's ``value_text`` column as Feast's ``extract_text_and_num`` fills it (None where Feast
    writes no text: lists, nulls, NaN doubles)."""
    from feast.value_type import ValueType

    if value_type == ValueType.STRING:
        return values.to_pylist()
    if value_type in (ValueType.INT64, ValueType.INT32):  # an int column with nulls may arrive as float
        return [None if v is None or v != v else str(int(v)) for v in values.to_pylist()]
    if value_type == ValueType.BOOL:
        return [None if v is None else str(bool(v)) for v in values.to_pylist()]
    if value_type == ValueType.DOUBLE:
        return [None if v is None or v != v else str(float(v)) for v in values.to_pylist()]
    return [None] * len(values)


def _entity_order(table: pa.Table, keys: list[bytes]) -> tuple[pa.Table, list[bytes]]:
    """Rows sorted by serialised entity key: SQLite's primary-key B-tree then fills in order (fewer page
    moves than random order: docs/decisions/0012-features-and-feast.md)."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return table.take(pa.array(order, pa.int64())), [keys[i] for i in order]


# Value types whose rows carry a value_text (text_values); the rest get a NULL literal.
_TEXT_TYPES = ("STRING", "INT64", "INT32", "BOOL", "DOUBLE")
SQLITE_ROWS_PER_STATEMENT = 200  # table rows per INSERT (entities x features); SQLite allows 999+ variables


def _sqlite_upsert(table: str, names: list[str], texts: list[bool], created: bool, entities: int) -> str:
    """One INSERT of ``entities`` entities x every feature, in Feast's upsert form.

    Per entity the key and timestamps are bound once (numbered parameters) and feature names and the
    NULL ``value_text`` of list features are literals: half the parameters of one row per statement,
    and one statement step per ``entities`` entities (about half the CPU: docs/decisions/0012-features-and-feast.md)."""
    rows, n = [], 0
    for _ in range(entities):
        key, ts = n + 1, n + 2
        n += 3 if created else 2
        cts = f"?{n}" if created else "NULL"
        for name, has_text in zip(names, texts, strict=True):
            value = f"?{n + 1}"
            n += 1
            text = "NULL"
            if has_text:
                text = f"?{n + 1}"
                n += 1
            lit = "'" + name.replace("'", "''") + "'"
            rows.append(f"(?{key}, {lit}, {value}, {text}, ?{ts}, {cts})")
    return (
        f"INSERT INTO {quote_identifier(table)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
        f"VALUES {', '.join(rows)} ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
        "created_ts = excluded.created_ts;"
    )


def quote_identifier(name: str) -> str:
    """An SQLite identifier, double-quoted (SQL's own escaping), as Feast quotes its table names."""
    return '"' + name.replace('"', '""') + '"'


def write_sqlite(
    conn: sqlite3.Connection, name: str, feature_view: FeatureView, table: pa.Table, keys: list[bytes]
) -> None:
    """Upsert into Feast's SQLite table ``name`` of the view (the columns and values
    ``SqliteOnlineStore`` writes), several entities per statement."""
    source = feature_view.batch_source
    created = source.created_timestamp_column
    table, keys = _entity_order(table, keys)
    features = sorted(feature_view.features, key=lambda f: f.name)  # the primary key's order
    names = [f.name for f in features]
    has_text = [f.dtype.to_value_type().name in _TEXT_TYPES for f in features]
    per_statement = max(1, SQLITE_ROWS_PER_STATEMENT // max(1, len(features)))
    sql = _sqlite_upsert(name, names, has_text, bool(created), per_statement)
    for start in range(0, table.num_rows, CHUNK_ROWS):
        chunk = table.slice(start, CHUNK_ROWS)
        encoded = encode_features(chunk, feature_view)
        columns: list[list[Any]] = [keys[start : start + CHUNK_ROWS]]
        columns.append(_sqlite_times(chunk.column(source.timestamp_field)))
        if created:
            columns.append(_sqlite_times(chunk.column(created)))
        for f, text in zip(features, has_text, strict=True):
            columns.append(encoded[f.name])
            if text:
                columns.append(text_values(chunk.column(f.name), f.dtype.to_value_type()))
        flat = [v for row in zip(*columns, strict=True) for v in row]
        width = len(columns) * per_statement
        full = chunk.num_rows // per_statement * per_statement * len(columns)
        # Feast writes entity by entity; the (entity_key, feature_name) upsert makes the order irrelevant
        # except for repeated keys, which materialisation has already reduced to the latest row.
        with conn:
            conn.executemany(sql, (flat[i : i + width] for i in range(0, full, width)))
            if full < len(flat):
                rest = (len(flat) - full) // len(columns)
                conn.execute(_sqlite_upsert(name, names, has_text, bool(created), rest), flat[full:])


# --- SQLite, one row per entity (``layout: wide``) -------------------------------------------------
WIDE_COLUMNS = ("entity_key", "event_ts", "created_ts", "features")


def wide_create(table: str) -> str:
    """The wide layout's table: the entity key, its timestamps, and every feature in one ``features``
    blob, a serialised Feast ``Map`` (``map<string, Value>``) of feature name to value."""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(table)} (entity_key BLOB PRIMARY KEY, "
        "event_ts timestamp, created_ts timestamp, features BLOB)"
    )


def wide_upsert(table: str) -> str:
    return (
        f"INSERT INTO {quote_identifier(table)} (entity_key, event_ts, created_ts, features) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(entity_key) DO UPDATE SET event_ts = excluded.event_ts, created_ts = excluded.created_ts, "
        "features = excluded.features"
    )


def map_entries(name: str, values: list[bytes]) -> list[bytes]:
    """Each serialised Value as one entry of a Feast ``Map``'s ``val`` field (tag 1: an entry message of
    key (1) and value (2)); entries concatenated are the Map's bytes. Heads are cached per value length:
    one concatenation per value."""
    key = name.encode()
    key = b"\x0a" + _varint(len(key)) + key + b"\x12"
    heads: dict[int, bytes] = {}
    out = []
    for v in values:
        n = len(v)
        head = heads.get(n)
        if head is None:
            tail = _varint(n)
            head = heads[n] = b"\x0a" + _varint(len(key) + len(tail) + n) + key + tail
        out.append(head + v)
    return out


def encode_wide(encoded: Mapping[str, list[bytes]]) -> list[bytes]:
    """Per entity, the ``features`` blob of the wide layout from column-wise serialised values (feature
    names in sorted order: the same bytes for the same values)."""
    columns = [map_entries(name, encoded[name]) for name in sorted(encoded)]
    return list(map(b"".join, zip(*columns, strict=True)))


def write_sqlite_wide(
    conn: sqlite3.Connection, name: str, feature_view: FeatureView, table: pa.Table, keys: list[bytes]
) -> None:
    """Upsert one row per entity into the wide table ``name`` (every feature of the view: the row is
    replaced), in key order, one transaction per chunk."""
    source = feature_view.batch_source
    created = source.created_timestamp_column
    table, keys = _entity_order(table, keys)
    sql = wide_upsert(name)
    for start in range(0, table.num_rows, CHUNK_ROWS):
        chunk = table.slice(start, CHUNK_ROWS)
        blobs = encode_wide(encode_features(chunk, feature_view))
        event = _sqlite_times(chunk.column(source.timestamp_field))
        made = _sqlite_times(chunk.column(created)) if created else [None] * chunk.num_rows
        with conn:
            conn.executemany(sql, zip(keys[start : start + CHUNK_ROWS], event, made, blobs, strict=True))


def bulk(values: list[bytes]) -> list[bytes]:
    """RESP bulk strings (``$len\\r\\n…\\r\\n``) of each value."""
    return [b"$%d\r\n%b\r\n" % (len(v), v) for v in values]


def redis_field(view_name: str, feature: str) -> bytes:
    """The hash field of ``view:feature`` in Feast's Redis layout: murmur3_32 (unsigned), little endian,
    4 bytes (Feast's docs/specs/online_store_format.md)."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view_name}:{feature}", signed=False))


def pipelined(client: Any, commands: list[bytes], n_replies: int) -> list[Any]:
    """Send RESP-encoded ``commands`` on one pooled connection and read ``n_replies`` replies.

    redis-py's pipeline spends Python time on every command (argument packing, per-command response
    callbacks: docs/decisions/0012-features-and-feast.md); here commands are packed by column and replies are read raw. A reply that is an
    error, or any failure mid-way, drops the connection (unread replies must not reach its next user)."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([b"".join(commands)], check_health=False)  # one sendall, not one per command
        replies = [conn.read_response(disable_decoding=True) for _ in range(n_replies)]
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    return replies


def write_redis(
    client: Any, config: RepoConfig, feature_view: FeatureView, table: pa.Table, keys: list[bytes]
) -> None:
    """HSET into Feast's Redis hashes, skipping rows older than what is stored (as Feast does):
    the same two pipelined round trips per chunk as Feast's ``online_write_batch`` (HMGET of the
    stored ``_ts``, then one HSET per newer entity, EXPIRE where a key ttl is set)."""
    from feast.infra.online_stores.helpers import compute_versioned_name
    from google.protobuf.timestamp_pb2 import Timestamp

    online = config.online_store
    view = compute_versioned_name(feature_view, config.registry.enable_online_feature_view_versioning)
    ts_key = f"_ts:{view}".encode()
    ts_field = bulk([ts_key])[0]
    fields = [(bulk([redis_field(view, f.name)])[0], f.name) for f in feature_view.features]
    hset_head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (1 + len(fields)))
    hmget_head = b"*3\r\n$5\r\nHMGET\r\n"
    ttl = online.key_ttl_seconds
    expire_tail = b"$%d\r\n%d\r\n" % (len(str(ttl)), ttl) if ttl else b""
    project = config.project.encode("utf-8")
    for start in range(0, table.num_rows, CHUNK_ROWS):
        chunk = table.slice(start, CHUNK_ROWS)
        redis_keys = bulk([k + project for k in keys[start : start + CHUNK_ROWS]])
        ts = pc.cast(chunk.column(feature_view.batch_source.timestamp_field), pa.timestamp("ns", "UTC"))
        nanos = (ts.cast(pa.int64()).to_numpy(zero_copy_only=False) // 1000 * 1000).tolist()  # Feast keeps µs
        prev: list[Any] = [None] * len(redis_keys)
        if not online.skip_dedup:
            replies = pipelined(client, [hmget_head + k + ts_field for k in redis_keys], len(redis_keys))
            prev = [r[0] for r in replies]
        encoded = encode_features(chunk, feature_view)
        columns = [(field, bulk(encoded[name])) for field, name in fields]
        latest: dict[bytes, int] = {}
        commands: list[bytes] = []
        for i, key in enumerate(redis_keys):
            new = nanos[i]
            seen = latest.get(key, 0)
            if prev[i]:
                p = Timestamp.FromString(prev[i])
                seen = max(seen, p.seconds * 1_000_000_000 + p.nanos)
            if seen and new <= seen:
                continue
            latest[key] = new
            stamp = Timestamp(seconds=new // 1_000_000_000, nanos=new % 1_000_000_000).SerializeToString()
            parts = [hset_head, key, ts_field, b"$%d\r\n%b\r\n" % (len(stamp), stamp)]
            for field, values in columns:
                parts.append(field)
                parts.append(values[i])
            commands.append(b"".join(parts))
            if ttl:
                commands.append(b"*3\r\n$6\r\nEXPIRE\r\n" + key + expire_tail)
        if commands:
            pipelined(client, commands, len(commands))


def write_arrow(store: OnlineStore, config: RepoConfig, feature_view: FeatureView, table: pa.Table) -> bool:
    """Write the latest row per entity (``table``, the view's columns) through the store's
    ``online_write_arrow``; False where the store has none or its layout is not one the writers
    reproduce (the caller then materialises the view with Feast's own engine)."""
    writes = getattr(store, "writes_arrow", None)
    if writes is None or not writes(config):
        return False
    store.online_write_arrow(config, feature_view, table)
    return True
