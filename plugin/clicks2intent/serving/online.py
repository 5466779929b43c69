"""The rows a request needs, read in one round trip through the online store, and a fail-fast gate for outages.

Why: ``FeatureStore.get_online_features`` is general. Per call it resolves the feature references
against the registry, groups them by view, converts the entity rows to protos, finds unique entities,
builds a ``GetOnlineFeaturesResponse`` proto and converts it back to Python (``to_dict``); for one
customer and a fixed list of fields that assembly cost more CPU than the store reads themselves, and
on Redis it read view by view. :class:`OnlineReader` does the resolution once per worker and then makes
ONE call per request: ``online_read_rows`` of the online store class the feature store YAML names
(:mod:`clicks2intent.features.online_stores`: one SQLite statement, or one Redis round trip for every
view of the request, whatever entities they are keyed by). The values are converted with Feast's own
``feast_value_type_to_python_type``, so they are what ``get_online_features(...).to_dict()`` returns
(tests/serving/test_online.py checks that over many entities). With an online store class that has no
``online_read_rows`` (Feast's own ``type: sqlite`` / ``type: redis``) it calls the store's public
``online_read`` view by view: same values, one round trip per view.

It declines (:class:`UnsupportedRead`) what it does not reproduce: views with more than one join key
or a join-key mapping, on-demand views, unknown views or fields. Callers then keep
``get_online_features``.

:class:`OutageGate`: the service reads inline on each worker's event loop, so a read that hangs until
its socket time-out (Redis paused) holds every request of that worker behind it. After such a slow
failure the gate answers "unavailable" at once for a short hold, then lets one read probe the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clicks2intent.errors import ConfigError

logger = logging.getLogger(__name__)


# Value kinds whose Python value Feast's ``feast_value_type_to_python_type`` returns unchanged (scalars)
# or as ``list(.val)`` (lists), unless the field is declared a UUID: converted here without its chain of
# checks (it was the largest single cost of a read after SQLite itself). Anything else goes to Feast's.
_SCALARS = frozenset(
    {"string_val", "int32_val", "int64_val", "double_val", "float_val", "bool_val", "bytes_val"}
)
_LISTS = frozenset({f"{k[:-4]}_list_val" for k in _SCALARS})


class UnsupportedRead(ConfigError):
    """These feature references cannot be read directly (the caller keeps ``get_online_features``)."""


@dataclass(frozen=True)
class ViewRead:
    """One feature view: its registry object, its one join key and the fields read from it."""

    table: Any  # feast.FeatureView, as the registry returns it
    join_key: str
    key_type: Any  # feast.ValueType of the join key
    fields: tuple[str, ...]
    types: tuple[Any, ...]  # each field's feast.ValueType (to_dict passes it to the conversion too)
    fast: tuple[bool, ...]  # per field: a plain scalar / list (converted here), not a UUID


class OnlineReader:
    """Reads ``view:field`` references for one entity row through the online store, in one call.

    ``refs`` are Feast feature references (``"customer_profile:tenure_days"``), in the order the
    answer should list them; their views may be keyed by different entities (a customer's views and a
    visitor's). Built once per worker; :meth:`read` is the per-request call.
    """

    def __init__(self, store: Any, refs: Sequence[str]) -> None:
        from feast.infra.online_stores.helpers import get_online_store_from_config
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
        from feast.value_type import ValueType

        self.entity_key_proto, self.value_proto, self.string_type = EntityKey, Value, ValueType.STRING
        self.to_proto = python_values_to_proto_values
        self.feast_to_python = feast_value_type_to_python_type
        self.store = store
        self.refs = list(refs)
        by_view: dict[str, list[str]] = {}
        for ref in self.refs:
            view, sep, field = ref.partition(":")
            if not sep or not field or "@" in view:
                raise UnsupportedRead(f"refs: {ref!r} is not a plain 'view:field' reference")
            by_view.setdefault(view, []).append(field)
        odfvs = {v.name for v in store.list_on_demand_feature_views(allow_cache=True)}
        self.views: list[ViewRead] = []
        for name, fields in by_view.items():
            if name in odfvs:
                raise UnsupportedRead(f"refs: {name!r} is an on-demand view (computed, not stored)")
            self.views.append(self.resolve(name, fields))
        self.join_keys = sorted({v.join_key for v in self.views})
        self.config = store.config
        # The online store class the YAML names, as Feast builds it (its own connection / client).
        self.online_store = get_online_store_from_config(store.config.online_store)
        self.read_rows = getattr(self.online_store, "online_read_rows", None)
        # Stores whose reads wait on the network also read asynchronously (Redis): see read_async.
        self.read_rows_async = getattr(self.online_store, "online_read_rows_async", None)
        if self.read_rows is None:
            logger.info("%s has no online_read_rows: one online_read per view",
                        type(self.online_store).__name__)  # fmt: skip

    def resolve(self, name: str, fields: list[str]) -> ViewRead:
        from feast.errors import FeatureViewNotFoundException
        from feast.value_type import ValueType

        try:
            table = self.store.get_feature_view(name, allow_registry_cache=True)
        except FeatureViewNotFoundException as err:
            raise UnsupportedRead(f"refs: feature view {name!r} is not in the registry") from err
        known = {f.name for f in table.features}
        missing = [f for f in fields if f not in known]
        if missing:
            raise UnsupportedRead(f"refs: view {name!r} has no field(s) {missing}")
        entity_columns = list(table.entity_columns)
        if len(entity_columns) != 1 or table.projection.join_key_map:
            raise UnsupportedRead(f"refs: view {name!r} has {len(entity_columns)} join keys or a key mapping")
        column = entity_columns[0]
        dtypes = {f.name: f.dtype.to_value_type() for f in table.features}
        types = tuple(dtypes[f] for f in fields)
        uuid_types = {t for t in ValueType if "UUID" in t.name}
        return ViewRead(
            table, column.name, column.dtype.to_value_type(), tuple(fields), types,
            tuple(t not in uuid_types for t in types),
        )  # fmt: skip

    def to_python(self, value: Any, value_type: Any, fast: bool) -> Any:
        """Feast's conversion of one stored value (``to_dict``'s), short-cut for plain scalars and lists."""
        if fast:
            kind = value.WhichOneof("val")
            if kind is None:
                return None
            if kind in _SCALARS:
                return getattr(value, kind)
            if kind in _LISTS:
                return list(getattr(value, kind).val)
        return self.feast_to_python(value, value_type)

    def entity_key(self, join_key: str, key_type: Any, value: Any) -> Any:
        """The key proto ``get_online_features`` builds for ``{join_key: value}`` (same conversion)."""
        if key_type == self.string_type and isinstance(value, str):
            proto = self.value_proto(string_val=value)
        else:
            proto = self.to_proto([value], key_type)[0]
        return self.entity_key_proto(join_keys=[join_key], entity_values=[proto])

    def read(self, keys: Mapping[str, Any]) -> dict[str, Any]:
        """``{join_key: value, field: python value or None}`` for one entity row ``{join_key: value}``.

        A key the store has never seen reads as ``None`` for each of its view's fields, as in
        ``get_online_features``. Errors of the store propagate unchanged."""
        out, reads = self._plan(keys)
        if self.read_rows is not None:
            rows = self.read_rows(self.config, reads)
        else:
            rows = [self.online_store.online_read(self.config, t, [k], list(f))[0] for t, k, f in reads]
        return self._filled(out, rows)

    async def read_async(self, keys: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`read` through the store's ``online_read_rows_async`` (:meth:`read` without one)."""
        if self.read_rows_async is None:
            return self.read(keys)
        out, reads = self._plan(keys)
        return self._filled(out, await self.read_rows_async(self.config, reads))

    def _plan(self, keys: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[Any, Any, tuple[str, ...]]]]:
        """(the answer's join keys, one ``(view, entity key, fields)`` read per view)."""
        out: dict[str, Any] = {}
        protos: dict[str, Any] = {}
        reads = []
        for view in self.views:
            key = view.join_key
            if key not in protos:
                try:
                    out[key] = keys[key]  # to_dict lists the join keys too
                except KeyError:
                    raise KeyError(f"entity row lacks join key {key!r} (needs {self.join_keys})") from None
                protos[key] = self.entity_key(key, view.key_type, keys[key])
            reads.append((view.table, protos[key], view.fields))
        return out, reads

    def _filled(self, out: dict[str, Any], rows: Sequence[Any]) -> dict[str, Any]:
        to_python = self.to_python
        for view, (_, values) in zip(self.views, rows, strict=True):
            if values is None:
                out.update(dict.fromkeys(view.fields))
                continue
            for f, t, quick in zip(view.fields, view.types, view.fast, strict=True):
                v = values.get(f)
                out[f] = None if v is None else to_python(v, t, quick)
        return out


def direct_reader(store: Any, refs: Sequence[str]) -> OnlineReader | None:
    """An :class:`OnlineReader` for ``refs``, or ``None`` (logged) when it cannot reproduce them."""
    try:
        return OnlineReader(store, refs)
    except UnsupportedRead as err:
        logger.info("direct online reads off, get_online_features kept: %s", err)
        return None


SLOW_FAILURE_S = 0.05  # a failed read that took longer held the event loop (a time-out, not a refusal)
HOLD_S = 0.25  # after one, answer "unavailable" at once this long, then let one read probe the store


class OutageGate:
    """Fail fast after a slow failure of the online store, probe again after :data:`HOLD_S`.

    A refused connection fails in microseconds and is simply retried by the next request; a read that
    waits for its socket time-out (a paused or partitioned Redis) would hold each worker's event loop
    that long per request, so for ``hold_s`` after one every read is refused at once. Recovery needs one
    successful read after the hold (docs/decisions/0004-request-path.md)."""

    def __init__(self, hold_s: float = HOLD_S, slow_failure_s: float = SLOW_FAILURE_S) -> None:
        self.hold_s = hold_s
        self.slow_failure_s = slow_failure_s
        self.closed_until = 0.0  # monotonic time until which reads are refused
        self.reason = ""
        self._lock = threading.Lock()

    def refusal(self) -> str | None:
        """Why a read is refused now (the last slow failure), or None when it may go ahead."""
        if self.closed_until and time.monotonic() < self.closed_until:
            return self.reason
        return None

    def failed(self, started: float, err: BaseException) -> None:
        """A read that started at ``started`` (monotonic) failed with ``err``."""
        now = time.monotonic()
        if now - started >= self.slow_failure_s:
            with self._lock:
                if now >= self.closed_until:
                    logger.warning("online store read failed after %.2f s (%s): failing fast for %.2f s",
                                   now - started, type(err).__name__, self.hold_s)  # fmt: skip
                self.closed_until = now + self.hold_s
                self.reason = f"{type(err).__name__}: {err}"

    def passed(self) -> None:
        if self.closed_until:
            self.closed_until = 0.0
