"""The offline feature job: events, embeddings, intents and identity links → the parquet sources Feast reads.

``c2i features build`` writes one file per feature view (:data:`FEATURE_FILES`), each with the entity
key and an ``event_timestamp`` that says when the row's values became known:

* ``session_activity`` / ``session_intent``: one row per session at its END (a session's stats,
  embedding and label exist once it is over; an in-flight session is the on-demand view's job).
* ``visitor_web_intent``: one row per visitor at every time its aggregate changes: each session end
  (the session joins the aggregate) and each session end + ``window_days`` (it leaves the 30-day count).
* ``customer_web_intent``: the same for a customer, over the sessions of every visitor LINKED to it.
  A linked visitor's session counts from ``max(session end, linked_at)``: a link made later makes the
  visitor's earlier history known only from that moment, so nothing leaks backwards in time. Rows are
  also emitted at each ``linked_at`` (the linked-visitor count changes).
* ``customer_profile``: the customer snapshot: the world's ``profile`` columns, cast to their declared
  kinds (a declared column the table lacks, or a value that does not cast, is an error).
* ``tile_prototypes`` (not a Feast source): per app tile of the world, the direction in embedding space
  of the sessions that visited that tile's pages, relative to all sessions; the ``tile_affinity``
  on-demand view scores a customer's web embedding against it. Computed from events and embeddings only
  (never from tile clicks or conversions, the models' targets).
* ``world.yaml``: the declaration the sources were built with; the Feast repo generates its fields from
  this copy and serving reads its tiles from it, so neither can drift from the files.

Time decay: a session ended at ``e`` weighs ``confidence · 2^(−(t − e) / half_life)`` at time ``t``. The
outputs are NORMALISED (a label distribution, a unit-length mean embedding), so decaying every weight
by the same factor between two changes leaves them unchanged: the value stored at a change time is
exact for every later time until the next change, which is what Feast's as-of join serves.

"Latest" intent (``*_intent_label`` / ``*_intent_confidence``) is the label of the most recently ended
session; the decayed distribution is the time-weighted mix over all of them.

Feast workaround (0.67, file offline store): ``get_historical_features`` DROPS an entity row whose
entity has feature rows but none inside ``[t − ttl, t]`` (e.g. a customer whose first link is after
``t``) instead of returning nulls. Every entity therefore also gets one *anchor* row with a null
``event_timestamp`` and null features: Feast keeps null-timestamp matches, prefers a real in-range row
when there is one, and ``materialize`` never selects a null timestamp.

Scale: every input is read in record batches; rows are hash-partitioned by entity into spill files
(:class:`_Buckets`), and each per-entity step holds one bucket in memory at a time, so memory is set
by ``bucket_rows``, not by the size of the inputs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clicks2intent.common.files import AtomicFile, atomic_output, exclusive, job_temp_dir, write_text
from clicks2intent.common.progress import step_bar
from clicks2intent.common.times import US_PER_DAY, series_to_us
from clicks2intent.data.world import (
    World,
    check_page_types,
    load_world,
    resolve_world_path,
    write_world,
)
from clicks2intent.errors import ArtifactError, ConfigError, ContractError
from clicks2intent.features.sessions import session_stats
from clicks2intent.features.transforms import CENTRE_KEY, PROTOTYPE, PROTOTYPE_SESSIONS, TILE_ID
from clicks2intent.names import columns as C
from clicks2intent.names.features import (
    CUSTOMER_INTENT_CONFIDENCE,
    CUSTOMER_INTENT_DECAYED,
    CUSTOMER_INTENT_LABEL,
    CUSTOMER_LINKED_VISITORS,
    CUSTOMER_WEB_EMBEDDING,
    CUSTOMER_WEB_SESSIONS_30D,
    RECENT_WINDOW_NAMES,
    SESSION_CHANNEL,
    SESSION_DURATION_S,
    SESSION_MEAN_DWELL_S,
    SESSION_N_APPLY_PAGES,
    SESSION_N_DISTINCT_PAGES,
    SESSION_N_EVENTS,
    SESSION_N_PRODUCT_PAGES,
    SESSION_N_SEARCHES,
    SESSION_REACHED_APPLY_FORM,
    SESSION_REACHED_APPLY_START,
    VISITOR_EMBEDDING_DECAYED,
    VISITOR_INTENT_CONFIDENCE,
    VISITOR_INTENT_DECAYED,
    VISITOR_INTENT_LABEL,
    VISITOR_SESSIONS_30D,
)
from clicks2intent.names.paths import ARTIFACTS, CLASSIFIER_META_FILE, FEATURE_FILES, WORLD_FILE
from clicks2intent.names.paths import BUILD_REPORT_FILE as REPORT_FILE

logger = logging.getLogger(__name__)

_TS = pa.timestamp("us", tz="UTC")
_F32_LIST = pa.list_(pa.float32())


@dataclass
class FeatureBuildConfig:
    """Knobs of the offline job; each default says why."""

    half_life_days: float = 7.0  # a week-old session counts half: need episodes last days to weeks
    window_days: float = 30.0  # the *_sessions_30d activity counts
    # Recency of the linked web sessions: counts over short windows (6 h, 1 day, 3 days). Fresh
    # research is what a customer acts on after logging in; a count that drops when a session leaves
    # its window is exact for Feast's as-of join, unlike an "age" that changes every second. On the
    # simulated tile task they raised the embedding's share of the observable headroom
    # (docs/decisions/0012-features-and-feast.md).
    recent_windows_days: tuple[float, ...] = (0.25, 1.0, 3.0)
    batch_rows: int = 131_072  # rows per record batch read from any input: bounds memory per read
    bucket_rows: int = 2_000_000  # events per hash bucket; one bucket is in memory at a time
    n_buckets: int | None = None  # None: ceil(events / bucket_rows); set it to force partitioning

    def validate(self) -> FeatureBuildConfig:
        for name in ("half_life_days", "window_days"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: must be a positive number of days, got {value!r}")
        for w in self.recent_windows_days:
            if not (isinstance(w, int | float) and math.isfinite(w) and w > 0):
                raise ConfigError(
                    f"recent_windows_days: each window must be a positive number of days, got {w!r}"
                )
        if len(self.recent_windows_days) != len(RECENT_WINDOW_NAMES):
            raise ConfigError(
                f"recent_windows_days: needs {len(RECENT_WINDOW_NAMES)} windows (the customer view's "
                f"{list(RECENT_WINDOW_NAMES)}), got {self.recent_windows_days!r}"
            )
        for name in ("batch_rows", "bucket_rows"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)!r}")
        if self.n_buckets is not None and int(self.n_buckets) < 1:
            raise ConfigError(f"n_buckets: must be >= 1 or None, got {self.n_buckets!r}")
        return self


# --- Output schemas -------------------------------------------------------------------------------
def source_schemas(world: World) -> dict[str, pa.Schema]:
    """Arrow schema of every output file (embeddings are list<float32> of any dimension)."""
    return {
        "session_activity": pa.schema(
            [
                (C.SESSION_ID, pa.string()),
                (C.EVENT_TIMESTAMP, _TS),
                (C.VISITOR_ID, pa.string()),
                (SESSION_CHANNEL, pa.string()),
                (SESSION_N_EVENTS, pa.int64()),
                (SESSION_DURATION_S, pa.float64()),
                (SESSION_N_SEARCHES, pa.int64()),
                (SESSION_N_APPLY_PAGES, pa.int64()),
                (SESSION_N_PRODUCT_PAGES, pa.int64()),
                (SESSION_N_DISTINCT_PAGES, pa.int64()),
                (SESSION_MEAN_DWELL_S, pa.float64()),
                (SESSION_REACHED_APPLY_START, pa.int64()),
                (SESSION_REACHED_APPLY_FORM, pa.int64()),
            ]
            + [(name, pa.int64()) for name in world.page_count_fields]
        ),
        "session_intent": pa.schema(
            [
                (C.SESSION_ID, pa.string()),
                (C.EVENT_TIMESTAMP, _TS),
                (C.EMBEDDING, _F32_LIST),
                (C.INTENT_LABEL, pa.string()),
                (C.INTENT_CONFIDENCE, pa.float64()),
                (C.TAXONOMY_VERSION, pa.string()),
            ]
        ),
        "visitor_web_intent": pa.schema(
            [
                (C.VISITOR_ID, pa.string()),
                (C.EVENT_TIMESTAMP, _TS),
                (VISITOR_INTENT_LABEL, pa.string()),
                (VISITOR_INTENT_CONFIDENCE, pa.float64()),
                (VISITOR_INTENT_DECAYED, _F32_LIST),
                (VISITOR_EMBEDDING_DECAYED, _F32_LIST),
                (VISITOR_SESSIONS_30D, pa.int64()),
            ]
        ),
        "customer_web_intent": pa.schema(
            [
                (C.CUSTOMER_ID, pa.string()),
                (C.EVENT_TIMESTAMP, _TS),
                (CUSTOMER_INTENT_LABEL, pa.string()),
                (CUSTOMER_INTENT_CONFIDENCE, pa.float64()),
                (CUSTOMER_INTENT_DECAYED, _F32_LIST),
                (CUSTOMER_WEB_EMBEDDING, _F32_LIST),
                (CUSTOMER_LINKED_VISITORS, pa.int64()),
                (CUSTOMER_WEB_SESSIONS_30D, pa.int64()),
            ]
            + [(name, pa.int64()) for name in RECENT_WINDOW_NAMES]
        ),
        "customer_profile": pa.schema(
            [(C.CUSTOMER_ID, pa.string()), (C.EVENT_TIMESTAMP, _TS)] + list(world.profile_schema().items())
        ),
        "tile_prototypes": pa.schema(
            [(TILE_ID, pa.string()), (PROTOTYPE, _F32_LIST), (PROTOTYPE_SESSIONS, pa.int64())]
        ),
    }


# Spill-file schemas (internal).
_EVENT_SPILL = pa.schema(
    [
        (C.SESSION_ID, pa.string()),
        (C.EVENT_TIMESTAMP, _TS),
        (C.PAGE_TYPE, pa.string()),
        (C.VISITOR_ID, pa.string()),
        (C.CHANNEL, pa.string()),
        (C.DWELL_SECONDS, pa.float64()),
        (C.SEARCH_QUERY, pa.string()),
    ]
)
_EMB_SPILL = pa.schema([(C.SESSION_ID, pa.string()), (C.EVENT_TIMESTAMP, _TS), (C.EMBEDDING, _F32_LIST)])
_INTENT_SPILL = pa.schema(
    [
        (C.SESSION_ID, pa.string()),
        (C.EVENT_TIMESTAMP, _TS),
        (C.INTENT_LABEL, pa.string()),
        (C.INTENT_CONFIDENCE, pa.float64()),
        (C.TAXONOMY_VERSION, pa.string()),
    ]
)
_CONTRIB_SPILL = pa.schema(
    [
        (C.VISITOR_ID, pa.string()),
        (C.SESSION_ID, pa.string()),
        (C.EVENT_TIMESTAMP, _TS),
        (C.INTENT_LABEL, pa.string()),
        (C.INTENT_CONFIDENCE, pa.float64()),
        (C.EMBEDDING, _F32_LIST),
    ]
)
_CUSTOMER_CONTRIB_SPILL = pa.schema(
    [(C.CUSTOMER_ID, pa.string()), (C.LINKED_AT, _TS)]
    + list(zip(_CONTRIB_SPILL.names, _CONTRIB_SPILL.types, strict=True))
)
_LINK_SPILL = pa.schema([(C.VISITOR_ID, pa.string()), (C.CUSTOMER_ID, pa.string()), (C.LINKED_AT, _TS)])


# --- Streaming and spilling -----------------------------------------------------------------------
def _bucket_of(keys: np.ndarray, n: int) -> np.ndarray:
    """Stable hash partition (pandas' SipHash with a fixed key: the same in every process)."""
    if n == 1:
        return np.zeros(len(keys), dtype=np.int64)
    return (pd.util.hash_array(np.asarray(keys, dtype=object)) % np.uint64(n)).astype(np.int64)


class _Buckets:
    """Hash-partitioned spill files: all rows of one key land in one file, so per-key work needs only
    that file in memory."""

    def __init__(self, root: Path, name: str, n: int, schema: pa.Schema) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = n
        self.schema = schema
        self._writers: dict[int, pq.ParquetWriter] = {}

    def write(self, table: pa.Table, key: str) -> None:
        if table.num_rows == 0:
            return
        table = _conform(table, self.schema)
        bucket = _bucket_of(table[key].to_numpy(zero_copy_only=False), self.n)
        order = np.argsort(bucket, kind="stable")
        table, bucket = table.take(pa.array(order)), bucket[order]
        bounds = np.searchsorted(bucket, np.arange(self.n + 1))
        for b in range(self.n):
            lo, hi = int(bounds[b]), int(bounds[b + 1])
            if hi > lo:
                if b not in self._writers:
                    self._writers[b] = pq.ParquetWriter(self.dir / f"{b:05d}.parquet", self.schema)
                self._writers[b].write_table(table.slice(lo, hi - lo))

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()

    def read(self, b: int) -> pa.Table:
        path = self.dir / f"{b:05d}.parquet"
        return pq.read_table(path) if path.exists() else self.schema.empty_table()


def _conform(table: pa.Table, schema: pa.Schema, what: str = "input") -> pa.Table:
    """Select and cast to ``schema``; absent optional columns become nulls (callers require the promised
    ones first); a value that does not cast is an error naming the column."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table[f.name]
            if pa.types.is_timestamp(f.type) and pa.types.is_timestamp(col.type) and col.type.tz is None:
                col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))  # naive = UTC (the event contract)
            try:
                cols.append(col.cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise ContractError(
                    f"{what}: column {f.name!r} of type {col.type} does not cast to {f.type} "
                    f"({str(err).splitlines()[0][:120]})"
                ) from None
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.table(cols, schema=schema)


def _record_batches(
    path: Path, columns: Sequence[str], required: Sequence[str], batch_rows: int, what: str
) -> Iterator[pa.Table]:
    """Parquet record batches of the columns present; a missing required column is an error naming it."""
    if not path.is_file():
        raise ArtifactError(f"{what}: {path} not found")
    pf = pq.ParquetFile(path)
    present = [c for c in columns if c in pf.schema_arrow.names]
    missing = [c for c in required if c not in pf.schema_arrow.names]
    if missing:
        raise ContractError(f"{what} ({path}): required column(s) {missing} missing")
    for batch in pf.iter_batches(batch_size=batch_rows, columns=present):
        yield pa.Table.from_batches([batch])


class _Output:
    """One output parquet written bucket by bucket (into a temporary name of this job, renamed when
    complete: :class:`~clicks2intent.common.files.AtomicFile`)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.file = AtomicFile(path, lock=False)  # the job holds its output directory's lock
        self.tmp = self.file.tmp
        self.schema = schema
        try:
            self.writer = pq.ParquetWriter(self.tmp, schema)
        except BaseException:
            self.file.abort()  # a full disk can fail the header: no half-made temporary file
            raise
        self.rows = 0
        self.anchors = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.writer.write_table(_conform(table, self.schema))
            self.rows += table.num_rows

    def write_anchors(self, keys: Sequence[str] | np.ndarray) -> None:
        """One null-timestamp, null-feature row per entity (see the module docstring)."""
        keys = pd.unique(np.asarray(keys, dtype=object))
        if len(keys):
            key = self.schema.names[0]
            self.writer.write_table(_conform(pa.table({key: pa.array(keys, pa.string())}), self.schema))
            self.anchors += len(keys)

    def close(self) -> None:
        self.writer.close()
        self.file.commit()

    def abort(self) -> None:
        if self.writer.is_open:
            with contextlib.suppress(OSError):  # a full disk fails the close too: the error is raised
                self.writer.close()
        self.file.abort()


# --- Time-decayed web intent ------------------------------------------------------------------------
_ADD, _EXPIRE, _LINK = 0, 1, 2
SPILL_PREFIX = ".spill-"  # the build's scratch dir in its output directory (named after its owner)


def web_intent_timeline(
    contributions: pd.DataFrame,
    key: str,
    classes: Sequence[str],
    config: FeatureBuildConfig | None = None,
    links: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Point-in-time web-intent aggregate of each entity, one row per change time.

    ``contributions``: one row per (entity ``key``, session) with ``event_timestamp`` (session end),
    ``available_at`` (when the entity may use it: the session end, or the later link time),
    ``intent_label``, ``intent_confidence``, ``embedding``. ``links`` (customers only): ``key``,
    ``visitor_id``, ``linked_at``. Returns ``key, event_timestamp, label, confidence, decayed,
    embedding, sessions_window[, linked_visitors]`` (generic names; callers rename).
    """
    cfg = config or FeatureBuildConfig()
    class_index = {str(c): i for i, c in enumerate(classes)}
    n_classes = len(class_index)
    rate = math.log(2.0) / (cfg.half_life_days * US_PER_DAY)  # per microsecond
    window_us = int(round(cfg.window_days * US_PER_DAY))

    n = len(contributions)
    ent = contributions[key].astype(str).to_numpy(dtype=object)
    end = series_to_us(contributions[C.EVENT_TIMESTAMP]) if n else np.zeros(0, np.int64)
    avail = series_to_us(contributions["available_at"]) if n else np.zeros(0, np.int64)
    label_idx = np.array(
        [class_index.get(str(x), -1) if x is not None else -1 for x in contributions[C.INTENT_LABEL]],
        dtype=np.int64,
    )
    labels = contributions[C.INTENT_LABEL].to_numpy(dtype=object)
    conf = contributions[C.INTENT_CONFIDENCE].astype(float).to_numpy() if n else np.zeros(0)
    emb = contributions[C.EMBEDDING].to_numpy(dtype=object)
    dims = {len(e) for e in emb if e is not None}
    if len(dims) > 1:
        raise ContractError(f"{C.EMBEDDING}: sessions have different dimensions {sorted(dims)[:5]}")
    dim = dims.pop() if dims else 0

    # Window 0 is the 30-day count, then the recency windows; an expiry event's index says which.
    windows_us = [window_us] + [int(round(w * US_PER_DAY)) for w in cfg.recent_windows_days]
    link_visitors = np.zeros(0, dtype=object)
    if links is not None and len(links):
        link_visitors = links[C.VISITOR_ID].astype(str).to_numpy(dtype=object)
    e_ent, e_t, e_kind, e_idx, e_win = _timeline_events(ent, end, avail, windows_us, links, key)
    n_win = len(windows_us)

    out_ent: list[str] = []
    out_t: list[int] = []
    out_label: list[str | None] = []
    out_conf: list[float | None] = []
    out_dist: list[np.ndarray | None] = []
    out_emb: list[np.ndarray | None] = []
    out_count: list[list[int]] = []
    out_links: list[int] = []

    current = None
    lab = np.zeros(n_classes)
    vec = np.zeros(dim)
    wsum = 0.0
    t_state = 0
    latest_end, latest_i = -1, -1
    count = [0] * n_win
    linked: set[str] = set()
    m = len(e_t)
    for j in range(m):
        en, t, kind, i = e_ent[j], int(e_t[j]), e_kind[j], int(e_idx[j])
        if en != current:
            current, t_state = en, t
            lab, vec, wsum = np.zeros(n_classes), np.zeros(dim), 0.0
            latest_end, latest_i, count = -1, -1, [0] * n_win
            linked = set()
        if t != t_state:
            f = math.exp(-rate * (t - t_state))
            lab *= f
            vec *= f
            wsum *= f
            t_state = t
        if kind == _ADD:
            w = math.exp(-rate * (t - end[i]))
            if label_idx[i] >= 0:
                c = conf[i] if math.isfinite(conf[i]) else 1.0
                lab[label_idx[i]] += c * w
            if emb[i] is not None and dim:
                vec += w * np.asarray(emb[i], dtype=np.float64)
                wsum += w
            if end[i] > latest_end:
                latest_end, latest_i = end[i], i
            for k in range(n_win):
                if end[i] + windows_us[k] > t:
                    count[k] += 1
        elif kind == _EXPIRE:
            count[e_win[j]] -= 1
        else:
            linked.add(link_visitors[i])
        if j + 1 < m and e_ent[j + 1] == en and int(e_t[j + 1]) == t:
            continue  # emit once per (entity, time), after every change at that time
        out_ent.append(en)
        out_t.append(t)
        if latest_i >= 0:
            out_label.append(None if labels[latest_i] is None else str(labels[latest_i]))
            out_conf.append(float(conf[latest_i]) if math.isfinite(conf[latest_i]) else None)
        else:
            out_label.append(None)
            out_conf.append(None)
        total = lab.sum()
        out_dist.append((lab / total).astype(np.float32) if total > 0 else None)
        norm = np.linalg.norm(vec)
        out_emb.append((vec / norm).astype(np.float32) if wsum > 0 and norm > 0 else None)
        out_count.append(list(count))
        out_links.append(len(linked))

    frame = pd.DataFrame(
        {
            key: pd.Series(out_ent, dtype=object),
            C.EVENT_TIMESTAMP: pd.to_datetime(pd.Series(out_t, dtype=np.int64), unit="us", utc=True),
            "label": pd.Series(out_label, dtype=object),
            "confidence": pd.Series(out_conf, dtype=float),
            "decayed": pd.Series(out_dist, dtype=object),
            "embedding": pd.Series(out_emb, dtype=object),
            "sessions_window": pd.Series([c[0] for c in out_count], dtype=np.int64),
        }
        | {
            f"sessions_recent_{k}": pd.Series([c[k + 1] for c in out_count], dtype=np.int64)
            for k in range(n_win - 1)
        }
    )
    if links is not None:
        frame["linked_visitors"] = pd.Series(out_links, dtype=np.int64)
    return frame


def _timeline_events(
    ent: np.ndarray,
    end: np.ndarray,
    avail: np.ndarray,
    windows_us: Sequence[int],
    links: pd.DataFrame | None,
    key: str,
) -> tuple[np.ndarray, ...]:
    """Every change of every entity's aggregate, sorted: (entity, time, kind, row index, window index).

    A contribution is added at ``available_at`` and leaves window ``k`` at ``end + windows_us[k]``
    (if that is later); each link is an event of its own."""
    n = len(ent)
    ev_ent, ev_t, ev_kind = [ent], [avail], [np.full(n, _ADD)]
    ev_idx, ev_win = [np.arange(n)], [np.zeros(n, np.int64)]
    for k, w_us in enumerate(windows_us):
        expiring = end + w_us > avail
        ev_ent.append(ent[expiring])
        ev_t.append(end[expiring] + w_us)
        ev_kind.append(np.full(int(expiring.sum()), _EXPIRE))
        ev_idx.append(np.flatnonzero(expiring))
        ev_win.append(np.full(int(expiring.sum()), k, np.int64))
    if links is not None and len(links):
        ev_ent.append(links[key].astype(str).to_numpy(dtype=object))
        ev_t.append(series_to_us(links[C.LINKED_AT]))
        ev_kind.append(np.full(len(links), _LINK))
        ev_idx.append(np.arange(len(links)))
        ev_win.append(np.zeros(len(links), np.int64))
    e_ent = np.concatenate(ev_ent)
    e_t, e_kind, e_idx = np.concatenate(ev_t), np.concatenate(ev_kind), np.concatenate(ev_idx)
    e_win = np.concatenate(ev_win)
    order = np.lexsort((e_kind, e_t, e_ent))
    return e_ent[order], e_t[order], e_kind[order], e_idx[order], e_win[order]


def _str_or_none(values: pd.Series) -> pa.Array:
    return pa.array(
        [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values],
        pa.string(),
    )


def _list_array(values: Sequence[np.ndarray | None]) -> pa.Array:
    return pa.array([None if v is None else np.asarray(v, dtype=np.float32) for v in values], type=_F32_LIST)


def _timeline_table(frame: pd.DataFrame, key: str, names: dict[str, str]) -> pa.Table:
    cols = {
        key: pa.array(frame[key].to_numpy(dtype=object), pa.string()),
        C.EVENT_TIMESTAMP: pa.array(frame[C.EVENT_TIMESTAMP], _TS),
    }
    for generic, name in names.items():
        if generic in ("decayed", "embedding"):
            cols[name] = _list_array(list(frame[generic]))
        else:
            cols[name] = pa.array(frame[generic])
    return pa.table(cols)


# --- The job ----------------------------------------------------------------------------------------
@dataclass
class BuildReport:
    """What the job read and wrote (saved as ``build_report.json`` next to the sources)."""

    n_events: int = 0
    n_sessions: int = 0
    n_sessions_with_intent: int = 0
    n_embeddings_without_intent: int = 0
    n_intents_without_embedding: int = 0
    n_labels_outside_classes: int = 0
    n_links: int = 0
    n_customers: int = 0
    n_buckets: int = 1
    embedding_dim: int = 0
    world: str = ""  # the declaration's name and digest (models and serving check they match)
    world_digest: str = ""
    classes: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    anchors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_features(
    events_path: str | Path,
    embeddings_path: str | Path,
    intents_path: str | Path,
    links_path: str | Path,
    customers_path: str | Path,
    out_dir: str | Path,
    classes: Sequence[str],
    world: World,
    config: FeatureBuildConfig | None = None,
) -> BuildReport:
    """Write every file of :data:`FEATURE_FILES` and the ``world`` declaration into ``out_dir`` (see the
    module docstring).

    ``classes`` is the label order of the decayed distributions: the intent classifier's ``classes_``.
    ``world``: the bank's declaration (page types, funnel, tiles, profile columns).
    """
    cfg = (config or FeatureBuildConfig()).validate()
    classes = [str(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"classes: need a non-empty list of distinct label ids, got {classes[:10]}")
    inputs = _Inputs(
        events=Path(events_path),
        embeddings=Path(embeddings_path),
        intents=Path(intents_path),
        links=Path(links_path),
        customers=Path(customers_path),
    )
    inputs.require()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir):  # one build per directory; a full disk is one line naming it
        report = _build_into(inputs, out_dir, classes, world, cfg)
    logger.info("features: wrote %s in %.1fs", out_dir, report.seconds)
    return report


def _build_into(
    inputs: _Inputs, out_dir: Path, classes: list[str], world: World, cfg: FeatureBuildConfig
) -> BuildReport:
    """:func:`build_features` once its inputs are checked and its output directory is held."""
    t0 = time.perf_counter()
    n_events = pq.ParquetFile(inputs.events).metadata.num_rows
    n_b = int(cfg.n_buckets) if cfg.n_buckets is not None else max(1, math.ceil(n_events / cfg.bucket_rows))
    emb_dim = _embedding_dim(inputs.embeddings)
    report = BuildReport(
        classes=classes, config=asdict(cfg), n_buckets=n_b, embedding_dim=emb_dim, world=world.name,
        world_digest=world.digest,
    )  # fmt: skip
    logger.info("features: %d events in %d bucket(s), embedding dimension %d", n_events, n_b, emb_dim)
    schemas = source_schemas(world)
    outputs: dict[str, _Output] = {}
    spill = job_temp_dir(out_dir, SPILL_PREFIX)  # a killed build's spill: removed by the next build
    sums = _PrototypeSums.empty(list(world.tiles), emb_dim)
    try:
        for name in FEATURE_FILES:
            if name != "tile_prototypes":
                outputs[name] = _Output(out_dir / FEATURE_FILES[name], schemas[name])
        job = _Job(cfg, world, classes, report, outputs, spill, n_b)
        with step_bar("features build", 6) as done:  # a progress bar on a terminal
            sessions = _partition_sessions(job, inputs)  # 1.
            done("sessions partitioned")
            visitor_contrib = _session_step(job, sessions, sums)  # 2.
            done("session features")
            links_by_visitor, links_by_customer = _partition_links(job, inputs.links)  # 3.
            done("identity links")
            customer_contrib = _visitor_step(job, visitor_contrib, links_by_visitor)  # 4.
            done("visitor web intent")
            _customer_step(job, customer_contrib, links_by_customer)  # 5.
            done("customer web intent")
            _profile_step(job, inputs.customers, schemas["customer_profile"])  # 6.
            done("customer profiles")
        for name, o in outputs.items():
            o.close()
            report.rows[name] = o.rows
            report.anchors[name] = o.anchors
    except BaseException:
        for o in outputs.values():
            if not o.file.done:
                o.abort()
        raise
    finally:
        shutil.rmtree(spill, ignore_errors=True)

    protos = tile_prototypes(sums.tiles, sums.proto_sum, sums.proto_n, sums.all_sum, sums.all_n)
    with atomic_output(out_dir / FEATURE_FILES["tile_prototypes"]) as tmp:
        pq.write_table(protos, tmp)
    report.rows["tile_prototypes"] = protos.num_rows
    write_world(world, out_dir / WORLD_FILE)
    report.seconds = time.perf_counter() - t0
    write_text(out_dir / REPORT_FILE, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return report


@dataclass(frozen=True)
class _Inputs:
    """The five input files of the job."""

    events: Path
    embeddings: Path
    intents: Path
    links: Path
    customers: Path

    def require(self) -> None:
        """Every input exists, or an error naming the first missing one (before any work starts)."""
        for what, p in (
            ("events", self.events),
            ("embeddings", self.embeddings),
            ("intents", self.intents),
            ("identity links", self.links),
            ("customers", self.customers),
        ):
            if not p.is_file():
                raise ArtifactError(f"{what}: {p} not found")


@dataclass
class _Job:
    """What every step of one run shares: its config, label order, report, outputs and spill dir."""

    cfg: FeatureBuildConfig
    world: World
    classes: list[str]
    report: BuildReport
    outputs: dict[str, _Output]
    tmp: Path
    n_buckets: int

    def buckets(self, name: str, schema: pa.Schema) -> _Buckets:
        return _Buckets(self.tmp, name, self.n_buckets, schema)


@dataclass
class _PrototypeSums:
    """Running embedding sums per tile (sessions that visited its pages) and over all sessions."""

    tiles: list[str]
    proto_sum: np.ndarray
    proto_n: np.ndarray
    all_sum: np.ndarray
    all_n: int = 0

    @classmethod
    def empty(cls, tiles: list[str], dim: int) -> _PrototypeSums:
        return cls(tiles, np.zeros((len(tiles), dim)), np.zeros(len(tiles), dtype=np.int64), np.zeros(dim))

    def add(self, X: np.ndarray, hits: pd.DataFrame) -> None:
        """``X``: the sessions' embeddings; ``hits``: for each of those sessions, which tiles it visited."""
        self.all_sum += X.sum(axis=0)
        self.all_n += len(X)
        for k, tile in enumerate(self.tiles):
            mask = hits[tile].fillna(False).to_numpy(dtype=bool)
            self.proto_sum[k] += X[mask].sum(axis=0)
            self.proto_n[k] += int(mask.sum())


def _partition_sessions(job: _Job, inputs: _Inputs) -> tuple[_Buckets, _Buckets, _Buckets]:
    """1. Partition events, embeddings and intents by session."""
    cfg, report = job.cfg, job.report
    ev_b = job.buckets("events", _EVENT_SPILL)
    for t in _record_batches(
        inputs.events, _EVENT_SPILL.names, C.REQUIRED_EVENT_COLUMNS, cfg.batch_rows, "events"
    ):
        # Raw URLs here would count nowhere: every page count would be a silent zero.
        check_page_types(pc.unique(t[C.PAGE_TYPE]).to_pylist(), job.world, f"events ({inputs.events})")
        report.n_events += t.num_rows
        ev_b.write(t, C.SESSION_ID)
    ev_b.close()
    emb_b = job.buckets("embeddings", _EMB_SPILL)
    for t in _record_batches(
        inputs.embeddings, _EMB_SPILL.names, _EMB_SPILL.names, cfg.batch_rows, "embeddings"
    ):
        emb_b.write(t, C.SESSION_ID)
    emb_b.close()
    int_b = job.buckets("intents", _INTENT_SPILL)
    for t in _record_batches(
        inputs.intents, _INTENT_SPILL.names, _INTENT_SPILL.names[:4], cfg.batch_rows, "intents"
    ):
        int_b.write(t, C.SESSION_ID)
    int_b.close()
    return ev_b, emb_b, int_b


def _session_step(job: _Job, sessions: tuple[_Buckets, _Buckets, _Buckets], sums: _PrototypeSums) -> _Buckets:
    """2. Per session bucket: activity stats, embedding ⋈ intent, visitor contributions, prototypes."""
    ev_b, emb_b, int_b = sessions
    report, outputs, emb_dim = job.report, job.outputs, job.report.embedding_dim
    contrib_b = job.buckets("visitor_contrib", _CONTRIB_SPILL)
    for b in range(job.n_buckets):
        events = ev_b.read(b).to_pandas()
        if len(events):
            activity, tile_hits = session_stats(events, job.world)
            report.n_sessions += len(activity)
            outputs["session_activity"].write(pa.Table.from_pandas(activity, preserve_index=False))
            outputs["session_activity"].write_anchors(activity[C.SESSION_ID])
        else:
            activity = pd.DataFrame(columns=[C.SESSION_ID, C.VISITOR_ID])
            tile_hits = pd.DataFrame(columns=[C.SESSION_ID, *sums.tiles])
        joined = _join_intents(emb_b.read(b).to_pandas(), int_b.read(b).to_pandas(), report)
        if joined.empty:
            continue
        dims = set(joined[C.EMBEDDING].map(len))
        if dims != {emb_dim}:
            raise ContractError(
                f"embeddings: every row must have dimension {emb_dim}, found {sorted(dims)[:5]}"
            )
        report.n_sessions_with_intent += len(joined)
        report.n_labels_outside_classes += int((~joined[C.INTENT_LABEL].astype(str).isin(job.classes)).sum())
        outputs["session_intent"].write(_session_intent_table(joined))
        outputs["session_intent"].write_anchors(joined[C.SESSION_ID])
        X = np.stack(joined[C.EMBEDDING].to_numpy()).astype(np.float64)
        sums.add(X, joined[[C.SESSION_ID]].merge(tile_hits, on=C.SESSION_ID, how="left"))
        web = joined.merge(activity[[C.SESSION_ID, C.VISITOR_ID]], on=C.SESSION_ID, how="inner")
        web = web[web[C.VISITOR_ID].notna()]
        contrib_b.write(_contrib_table(web), C.VISITOR_ID)
    contrib_b.close()
    for spilled in sessions:
        shutil.rmtree(spilled.dir)
    return contrib_b


def _partition_links(job: _Job, links_path: Path) -> tuple[_Buckets, _Buckets]:
    """3. Links, partitioned by visitor (to join sessions) and by customer (its own link events)."""
    links_v = job.buckets("links_by_visitor", _LINK_SPILL)
    links_c = job.buckets("links_by_customer", _LINK_SPILL)
    for t in _record_batches(
        links_path, _LINK_SPILL.names, _LINK_SPILL.names, job.cfg.batch_rows, "identity links"
    ):
        job.report.n_links += t.num_rows
        links_v.write(t, C.VISITOR_ID)
        links_c.write(t, C.CUSTOMER_ID)
    links_v.close()
    links_c.close()
    return links_v, links_c


_VISITOR_NAMES = {
    "label": VISITOR_INTENT_LABEL,
    "confidence": VISITOR_INTENT_CONFIDENCE,
    "decayed": VISITOR_INTENT_DECAYED,
    "embedding": VISITOR_EMBEDDING_DECAYED,
    "sessions_window": VISITOR_SESSIONS_30D,
}
_CUSTOMER_NAMES = {
    "label": CUSTOMER_INTENT_LABEL,
    "confidence": CUSTOMER_INTENT_CONFIDENCE,
    "decayed": CUSTOMER_INTENT_DECAYED,
    "embedding": CUSTOMER_WEB_EMBEDDING,
    "linked_visitors": CUSTOMER_LINKED_VISITORS,
    "sessions_window": CUSTOMER_WEB_SESSIONS_30D,
} | {f"sessions_recent_{k}": name for k, name in enumerate(RECENT_WINDOW_NAMES)}
CUSTOMER_TIMELINE_COLUMNS: dict[str, str] = dict(_CUSTOMER_NAMES)  # timeline column → customer view feature


def _visitor_step(job: _Job, contrib_b: _Buckets, links_v: _Buckets) -> _Buckets:
    """4. Per visitor bucket: the visitor timeline; contributions re-keyed to linked customers."""
    out = job.outputs["visitor_web_intent"]
    cust_b = job.buckets("customer_contrib", _CUSTOMER_CONTRIB_SPILL)
    for b in range(job.n_buckets):
        contrib = contrib_b.read(b).to_pandas()
        if len(contrib):
            contrib["available_at"] = contrib[C.EVENT_TIMESTAMP]
            timeline = web_intent_timeline(contrib, C.VISITOR_ID, job.classes, job.cfg)
            out.write(_timeline_table(timeline, C.VISITOR_ID, _VISITOR_NAMES))
            out.write_anchors(contrib[C.VISITOR_ID])
        links = _first_links(links_v.read(b).to_pandas())
        if len(contrib) and len(links):
            per_customer = contrib.drop(columns="available_at").merge(links, on=C.VISITOR_ID, how="inner")
            cust_b.write(pa.Table.from_pandas(per_customer, preserve_index=False), C.CUSTOMER_ID)
    cust_b.close()
    return cust_b


def _customer_step(job: _Job, cust_b: _Buckets, links_c: _Buckets) -> None:
    """5. Per customer bucket: the customer timeline over linked visitors' sessions."""
    out = job.outputs["customer_web_intent"]
    for b in range(job.n_buckets):
        links = _first_links(links_c.read(b).to_pandas())
        if links.empty:
            continue
        contrib = cust_b.read(b).to_pandas()
        contrib["available_at"] = (
            np.maximum(contrib[C.EVENT_TIMESTAMP], contrib[C.LINKED_AT])
            if len(contrib)
            else contrib[C.EVENT_TIMESTAMP]
        )
        timeline = web_intent_timeline(contrib, C.CUSTOMER_ID, job.classes, job.cfg, links=links)
        out.write(_timeline_table(timeline, C.CUSTOMER_ID, _CUSTOMER_NAMES))
        out.write_anchors(links[C.CUSTOMER_ID])


def _profile_step(job: _Job, customers_path: Path, schema: pa.Schema) -> None:
    """6. Customer profile snapshot, partitioned by customer so anchors are unique."""
    prof_b = job.buckets("profile", schema)
    what = f"customers ({customers_path}, world {job.world.name!r})"
    # Every declared profile column is required: a missing one must not become a column of nulls.
    for t in _record_batches(customers_path, schema.names, schema.names, job.cfg.batch_rows, what):
        prof_b.write(_conform(t, schema, what), C.CUSTOMER_ID)
    prof_b.close()
    out = job.outputs["customer_profile"]
    customers: set[str] = set()
    for b in range(job.n_buckets):
        t = prof_b.read(b)
        out.write(t)
        keys = t[C.CUSTOMER_ID].to_numpy(zero_copy_only=False)
        out.write_anchors(keys)
        customers.update(keys)
    job.report.n_customers = len(customers)


def _embedding_dim(path: Path) -> int:
    """The embedding dimension, from the first non-empty row."""
    for t in _record_batches(
        path, [C.EMBEDDING], [C.SESSION_ID, C.EVENT_TIMESTAMP, C.EMBEDDING], 1024, "embeddings"
    ):
        for v in t[C.EMBEDDING].to_pylist():
            if v:
                return len(v)
    raise ContractError(f"embeddings ({path}): no non-empty '{C.EMBEDDING}' row")


def _join_intents(emb: pd.DataFrame, intents: pd.DataFrame, report: BuildReport) -> pd.DataFrame:
    """Embedding ⋈ intent per session (last row wins for a re-embedded session); the row's time is the
    later of the two (both are the session end when produced by the pipeline)."""
    emb = emb.drop_duplicates(C.SESSION_ID, keep="last")
    intents = intents.drop_duplicates(C.SESSION_ID, keep="last")
    joined = emb.merge(intents, on=C.SESSION_ID, how="inner", suffixes=("", "_intent"))
    report.n_embeddings_without_intent += len(emb) - len(joined)
    report.n_intents_without_embedding += len(intents) - len(joined)
    if joined.empty:
        return joined
    joined[C.EVENT_TIMESTAMP] = joined[[C.EVENT_TIMESTAMP, f"{C.EVENT_TIMESTAMP}_intent"]].max(axis=1)
    joined = joined[joined[C.EMBEDDING].notna()]
    return joined.drop(columns=f"{C.EVENT_TIMESTAMP}_intent").reset_index(drop=True)


def _session_intent_table(joined: pd.DataFrame) -> pa.Table:
    return pa.table(
        {
            C.SESSION_ID: pa.array(joined[C.SESSION_ID].astype(str), pa.string()),
            C.EVENT_TIMESTAMP: pa.array(joined[C.EVENT_TIMESTAMP], _TS),
            C.EMBEDDING: _list_array(list(joined[C.EMBEDDING])),
            C.INTENT_LABEL: _str_or_none(joined[C.INTENT_LABEL]),
            C.INTENT_CONFIDENCE: pa.array(joined[C.INTENT_CONFIDENCE].astype(float), pa.float64()),
            C.TAXONOMY_VERSION: _str_or_none(joined[C.TAXONOMY_VERSION]),
        }
    )


def _contrib_table(web: pd.DataFrame) -> pa.Table:
    return pa.table(
        {
            C.VISITOR_ID: pa.array(web[C.VISITOR_ID].astype(str), pa.string()),
            C.SESSION_ID: pa.array(web[C.SESSION_ID].astype(str), pa.string()),
            C.EVENT_TIMESTAMP: pa.array(web[C.EVENT_TIMESTAMP], _TS),
            C.INTENT_LABEL: _str_or_none(web[C.INTENT_LABEL]),
            C.INTENT_CONFIDENCE: pa.array(web[C.INTENT_CONFIDENCE].astype(float), pa.float64()),
            C.EMBEDDING: _list_array(list(web[C.EMBEDDING])),
        },
        schema=_CONTRIB_SPILL,
    )


def _first_links(links: pd.DataFrame) -> pd.DataFrame:
    """One link per (visitor, customer): the earliest (a later duplicate adds nothing)."""
    if links.empty:
        return links
    bad = links[C.LINKED_AT].isna() | links[C.VISITOR_ID].isna() | links[C.CUSTOMER_ID].isna()
    if bad.any():
        raise ContractError(
            f"identity links: {int(bad.sum())} row(s) with a null visitor_id, customer_id or linked_at"
        )
    return (
        links.sort_values(C.LINKED_AT, kind="stable")
        .drop_duplicates([C.VISITOR_ID, C.CUSTOMER_ID])
        .reset_index(drop=True)
    )


def tile_prototypes(
    tiles: Sequence[str], proto_sum: np.ndarray, proto_n: np.ndarray, all_sum: np.ndarray, all_n: int
) -> pa.Table:
    """Per tile: unit vector from the mean of all sessions to the mean of the tile's sessions.

    Centring matters: session embeddings share a common direction, so raw cosine to a tile's mean is
    high for everyone; the offset from the overall mean is what distinguishes one tile's visitors. The
    mean itself travels in the file's metadata (:data:`~clicks2intent.features.transforms.CENTRE_KEY`):
    ``tile_affinity`` centres the scored embedding on it too."""
    rows = []
    mean_all = all_sum / max(all_n, 1)
    for k in range(len(tiles)):
        if proto_n[k] == 0 or all_n == 0:
            rows.append(None)
            continue
        d = proto_sum[k] / proto_n[k] - mean_all
        norm = np.linalg.norm(d)
        rows.append((d / norm).astype(np.float32) if norm > 0 else None)
    table = pa.table(
        {
            TILE_ID: pa.array(list(tiles), pa.string()),
            PROTOTYPE: _list_array(rows),
            PROTOTYPE_SESSIONS: pa.array(proto_n.astype(np.int64)),
        }
    )
    if all_n == 0:
        return table
    return table.replace_schema_metadata({CENTRE_KEY: json.dumps([float(v) for v in mean_all])})


# --- From the artifacts layout (what ``c2i features build`` runs) ----------------------------------
@dataclass(frozen=True)
class FeatureBuildPaths:
    """Where the job reads and writes; the defaults are the ``artifacts/`` layout."""

    data_dir: Path = ARTIFACTS.data  # events, identity_links and customers parquet
    world: Path | None = None  # the bank's declaration; None: $C2I_WORLD, else data_dir/world.yaml
    embeddings: Path = ARTIFACTS.embeddings
    intents: Path = ARTIFACTS.session_intents
    intent_model: Path = ARTIFACTS.intent  # the distilled classifier: its classes_ give the label order
    out_dir: Path = ARTIFACTS.features

    def inputs(self) -> _Inputs:
        data = Path(self.data_dir)
        return _Inputs(
            events=data / ARTIFACTS.events.name,
            embeddings=Path(self.embeddings),
            intents=Path(self.intents),
            links=data / ARTIFACTS.identity_links.name,
            customers=data / ARTIFACTS.customers.name,
        )


def load_classes(intent_dir: str | Path) -> list[str]:
    """Label order of the decayed distributions: the distilled classifier's ``classes_``."""
    from clicks2intent.intent.distill import IntentClassifier

    intent_dir = Path(intent_dir)
    if not (intent_dir / CLASSIFIER_META_FILE).is_file():
        raise ArtifactError(
            f"intent model: {intent_dir / CLASSIFIER_META_FILE} not found; run `c2i taxonomy distill` first"
        )
    return [str(c) for c in IntentClassifier.load(intent_dir).classes_]


def build_feature_sources(
    paths: FeatureBuildPaths | None = None, config: FeatureBuildConfig | None = None
) -> BuildReport:
    """:func:`build_features` over an artifacts layout: every input is checked before any work starts."""
    paths = paths or FeatureBuildPaths()
    inputs = paths.inputs()
    inputs.require()
    return build_features(
        events_path=inputs.events,
        embeddings_path=inputs.embeddings,
        intents_path=inputs.intents,
        links_path=inputs.links,
        customers_path=inputs.customers,
        out_dir=paths.out_dir,
        classes=load_classes(paths.intent_model),
        world=load_world(resolve_world_path(paths.world, paths.data_dir)),
        config=config,
    )
