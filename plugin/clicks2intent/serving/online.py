"""Direct online-store reads for the exact entity keys and fields a model needs, resolved at start-up.

Why: ``FeatureStore.get_online_features`` is general. Per call it resolves the feature references
against the registry, groups them by view, converts the entity rows to protos, finds unique entities,
builds a ``GetOnlineFeaturesResponse`` proto and converts it back to Python (``to_dict``). For one
customer and a fixed list of fields that assembly cost more CPU than the store reads themselves
(benchmarks/bench_service.py measures both). :class:`OnlineReader` does that resolution once and then
calls only the online store's own ``online_read`` (the same call ``get_online_features`` makes, so
SQLite, Redis or any other Feast online store work unchanged) and Feast's own value conversion
(``feast_value_type_to_python_type``), so the values are those ``get_online_features(...).to_dict()``
returns (tests/serving/test_online.py checks that over many entities).

It declines (:class:`UnsupportedRead`) what it does not reproduce: views with more than one join key
or a join-key mapping, on-demand views, unknown views or fields. Callers then keep
``get_online_features``.
"""

from __future__ import annotations

import logging
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
class _ViewRead:
    """One feature view: its registry object, its one join key and the fields read from it."""

    table: Any  # feast.FeatureView, as the registry returns it
    join_key: str
    key_type: Any  # feast.ValueType of the join key
    fields: tuple[str, ...]
    types: tuple[Any, ...]  # each field's feast.ValueType (to_dict passes it to the conversion too)


class OnlineReader:
    """Reads ``view:field`` references for one entity row through ``OnlineStore.online_read``.

    ``refs`` are Feast feature references (``"customer_profile:tenure_days"``), in the order the
    answer should list them. Built once per worker; :meth:`read` is the per-request call.
    """

    def __init__(self, store: Any, refs: Sequence[str]) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
        from feast.value_type import ValueType

        self._entity_key_proto, self._value_proto, self._string = EntityKey, Value, ValueType.STRING
        self._to_proto = python_values_to_proto_values
        self.store = store
        self.refs = list(refs)
        by_view: dict[str, list[str]] = {}
        for ref in self.refs:
            view, sep, field = ref.partition(":")
            if not sep or not field or "@" in view:
                raise UnsupportedRead(f"refs: {ref!r} is not a plain 'view:field' reference")
            by_view.setdefault(view, []).append(field)
        odfvs = {v.name for v in store.list_on_demand_feature_views()}
        self._views: list[_ViewRead] = []
        for name, fields in by_view.items():
            if name in odfvs:
                raise UnsupportedRead(f"refs: {name!r} is an on-demand view (computed, not stored)")
            self._views.append(self._resolve(name, fields))
        self.join_keys = sorted({v.join_key for v in self._views})
        self._config = store.config
        self._online_store = store._get_provider().online_store  # what get_online_features reads
        self._feast_to_python = feast_value_type_to_python_type
        uuid_types = {t for t in ValueType if "UUID" in t.name}
        self._fast = [tuple(t not in uuid_types for t in v.types) for v in self._views]

    def _to_python(self, value: Any, value_type: Any, fast: bool) -> Any:
        """Feast's conversion of one stored value (``to_dict``'s), short-cut for plain scalars and lists."""
        if fast:
            kind = value.WhichOneof("val")
            if kind is None:
                return None
            if kind in _SCALARS:
                return getattr(value, kind)
            if kind in _LISTS:
                return list(getattr(value, kind).val)
        return self._feast_to_python(value, value_type)

    def _resolve(self, name: str, fields: list[str]) -> _ViewRead:
        from feast.errors import FeatureViewNotFoundException

        try:
            table = self.store.get_feature_view(name)
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
        return _ViewRead(
            table, column.name, column.dtype.to_value_type(), tuple(fields), tuple(dtypes[f] for f in fields)
        )

    def _entity_key(self, join_key: str, key_type: Any, value: Any) -> Any:
        """The key proto ``get_online_features`` builds for ``{join_key: value}`` (same conversion)."""
        if key_type == self._string and isinstance(value, str):
            proto = self._value_proto(string_val=value)
        else:
            proto = self._to_proto([value], key_type)[0]
        return self._entity_key_proto(join_keys=[join_key], entity_values=[proto])

    def read(self, keys: Mapping[str, Any]) -> dict[str, Any]:
        """``{join_key: value, field: python value or None}`` for one entity row ``{join_key: value}``.

        A key the store has never seen reads as ``None`` for each of its view's fields, as in
        ``get_online_features``. Errors of the store propagate unchanged."""
        out: dict[str, Any] = {}
        to_python = self._to_python
        for view, fast in zip(self._views, self._fast, strict=True):
            try:
                key = out[view.join_key] = keys[view.join_key]  # to_dict lists the join keys too
            except KeyError:
                raise KeyError(
                    f"entity row lacks join key {view.join_key!r} (needs {self.join_keys})"
                ) from None
            ek = self._entity_key(view.join_key, view.key_type, key)
            (_, values), *_ = self._online_store.online_read(
                self._config, view.table, [ek], list(view.fields)
            )
            if values is None:
                out.update(dict.fromkeys(view.fields))
            else:
                for f, t, quick in zip(view.fields, view.types, fast, strict=True):
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
