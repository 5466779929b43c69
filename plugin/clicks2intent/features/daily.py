"""The daily job: a new day's sessions into the Feast sources and the online store, with the trained models.

``c2i features daily --day DAY_DIR`` is what a scheduler calls once a day, after the full pipeline
(``make demo``'s steps: train the encoder, distil the classifier, ``c2i features build``, ``feast
apply`` and a first ``feast materialize``) has run on the history. ``DAY_DIR`` holds the day's
``events.parquet`` (clickstream contract: the events of the sessions that ENDED that day, whole) and,
optionally, its new ``identity_links.parquet``. Nothing is retrained:

1. **embed** the day's web sessions with the trained encoder (``c2i embed``'s job: ONNX Runtime on CPU);
2. **label** them with the distilled classifier (``classifier.npz``; its pages and search words where
   it reads them) — no LLM call;
3. **append** to the sources ``c2i features build`` wrote: the day's ``session_activity`` and
   ``session_intent`` rows; for every visitor with a session that day and every customer linked to one
   (or linked that day), its whole ``visitor_web_intent`` / ``customer_web_intent`` timeline is
   recomputed from its sessions in the sources plus the day's, by the build's own
   :func:`~clicks2intent.features.build.web_intent_timeline`, and replaces its rows (a new session
   changes the aggregate from its end onwards, including the later rows where older sessions leave
   the 30-day window). The result equals a full ``features build`` over history + day (tested), except
   ``tile_prototypes`` (a trained artefact: refreshed by the full pipeline, like the models);
4. ``feast materialize-incremental`` to the end of the day (``--end``; default: the UTC midnight after
   the day's last session end), in this process.

The day's embeddings, intents and links are kept under ``<features>/days/<day>/`` (the links of
earlier days are part of the identity history the next days read). **Idempotent**: the sources are
rewritten with the day's keys replaced (a session re-delivered replaces its rows; a re-run writes the
same rows), and ``days/<day>/applied.json`` records the inputs' digest and the sources it produced: a
re-run with the same inputs over those sources changes nothing and says so; a killed run (some
sources renamed, not all) is finished by the next one. The job holds the features directory's lock
(one writer) and writes every file through :mod:`clicks2intent.common.files`.

Cost: the day's embedding, labelling and timelines scale with the day; the appends rewrite the four
source files (Feast reads one parquet file per view), so their I/O grows with the history — measured
per scale in ``benchmarks/bench_scaling.py`` (docs/decisions/0006-a-banks-day.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clicks2intent.common.files import AtomicFile, atomic_output, exclusive, job_temp_dir, write_text
from clicks2intent.errors import ArtifactError, ConfigError, ContractError
from clicks2intent.names import columns as C
from clicks2intent.names.paths import (
    ARTIFACTS,
    BUILD_REPORT_FILE,
    CHECKPOINT_FILE,
    CLASSIFIER_FILE,
    CLASSIFIER_META_FILE,
    FEATURE_FILES,
    WORLD_FILE,
    ArtifactLayout,
)

logger = logging.getLogger(__name__)

DAYS_DIR = "days"  # <features>/days/<day>/: the day's embeddings, intents, links and applied.json
APPLIED_FILE = "applied.json"
DAY_EVENTS = "events.parquet"
DAY_LINKS = "identity_links.parquet"
SCRATCH_PREFIX = ".daily-"
_TS = pa.timestamp("us", tz="UTC")
_APPENDED = ("session_activity", "session_intent", "visitor_web_intent", "customer_web_intent")


# --- a day of simulated data ------------------------------------------------------------------------
def split_off_day(data_dir: str | Path, day_dir: str | Path, day_start: str) -> dict[str, int]:
    """Move the sessions that end at or after ``day_start`` (and the links made then) from a data
    directory (``c2i simulate``'s) into ``day_dir``: the history stays, the day becomes the daily job's
    input. Streams the events (bounded memory); the other files stay as they are."""
    data_dir, day_dir = Path(data_dir), Path(day_dir)
    cut = (
        pd.Timestamp(day_start, tz="UTC")
        if pd.Timestamp(day_start).tzinfo is None
        else pd.Timestamp(day_start)
    )
    events = data_dir / ARTIFACTS.events.name
    pf = pq.ParquetFile(events)
    ends = (
        pq.read_table(events, columns=[C.SESSION_ID, C.EVENT_TIMESTAMP])
        .group_by(C.SESSION_ID)
        .aggregate([(C.EVENT_TIMESTAMP, "max")])
    )
    late = pc.greater_equal(ends[f"{C.EVENT_TIMESTAMP}_max"], pa.scalar(cut.to_pydatetime(), _TS))
    day_ids = ends.filter(late)[C.SESSION_ID].combine_chunks()
    del ends
    day_dir.mkdir(parents=True, exist_ok=True)
    counts = {"history_events": 0, "day_events": 0, "day_sessions": len(day_ids)}
    with (  # the writers close before the renames (reverse order)
        atomic_output(events) as hist_tmp,
        atomic_output(day_dir / DAY_EVENTS) as day_tmp,
        pq.ParquetWriter(hist_tmp, pf.schema_arrow) as hist,
        pq.ParquetWriter(day_tmp, pf.schema_arrow) as day,
    ):
        for batch in pf.iter_batches(batch_size=1 << 20):
            t = pa.Table.from_batches([batch])
            in_day = pc.is_in(t[C.SESSION_ID], value_set=day_ids)
            hist.write_table(t.filter(pc.invert(in_day)))
            day.write_table(t.filter(in_day))
            counts["day_events"] += int(pc.sum(in_day).as_py() or 0)
            counts["history_events"] += t.num_rows
    counts["history_events"] -= counts["day_events"]
    links_path = data_dir / ARTIFACTS.identity_links.name
    if links_path.is_file():
        links = pq.read_table(links_path)
        made_late = pc.greater_equal(links[C.LINKED_AT], pa.scalar(cut.to_pydatetime(), _TS))
        with atomic_output(links_path) as tmp:
            pq.write_table(links.filter(pc.invert(made_late)), tmp)
        with atomic_output(day_dir / DAY_LINKS) as tmp:
            pq.write_table(links.filter(made_late), tmp)
        counts["day_links"] = int(pc.sum(made_late).as_py() or 0)
    return counts


# --- the job ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DailyConfig:
    """One ``c2i features daily`` run: the day's files, where the trained models and sources are."""

    day_dir: Path  # the day's events.parquet (+ identity_links.parquet)
    artifacts: Path = ARTIFACTS.root  # encoder/, intent/, data/identity_links.parquet (the link history)
    features_dir: Path | None = None  # the Feast sources; None: <artifacts>/features
    repo: Path | None = Path("feature_repo")  # materialize-incremental there; None: not materialised
    feast_config: str | None = None  # a feature store YAML in the repo (default: feature_store.yaml)
    end: datetime | None = (
        None  # materialize-incremental END; None: the UTC midnight after the day's last end
    )
    channel: str | None = "web"  # the sessions the encoder embeds (as `c2i embed --channel web` did)
    runtime: str = "auto"  # `c2i embed --runtime`: ONNX Runtime on CPU, else torch
    batch_rows: int = 131_072  # rows per record batch when a source is rewritten

    @property
    def layout(self) -> ArtifactLayout:
        return ArtifactLayout(self.artifacts)

    @property
    def features(self) -> Path:
        return Path(self.features_dir) if self.features_dir else self.layout.features


@dataclass
class DailyReport:
    """What one daily run did (``days/<day>/report.json``; the CLI prints it)."""

    day: str = ""
    inputs_digest: str = ""
    already_applied: bool = False
    n_events: int = 0
    n_sessions: int = 0
    n_embedded: int = 0
    n_labelled: int = 0
    n_new_links: int = 0
    visitors_recomputed: int = 0
    customers_recomputed: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)  # per source: the day's rows (+ anchors)
    rows_replaced: dict[str, int] = field(default_factory=dict)  # per source: rows dropped for them
    materialized_to: str | None = None
    materialized_views: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        if self.already_applied:
            head = f"day {self.day}: already applied with these inputs ({self.inputs_digest[:12]}): sources unchanged"
        else:
            head = (
                f"day {self.day}: {self.n_events} events, {self.n_sessions} sessions ({self.n_embedded} embedded and "
                f"labelled), {self.n_new_links} new identity links; {self.visitors_recomputed} visitor and "
                f"{self.customers_recomputed} customer timelines recomputed"
            )
        out = [head]
        for name, n in self.rows_written.items():
            out.append(f"  {FEATURE_FILES[name]}: +{n} rows (replacing {self.rows_replaced.get(name, 0)})")
        if self.materialized_to:
            views = ", ".join(self.materialized_views) or "none (already materialised)"
            out.append(f"  materialize-incremental to {self.materialized_to}: {views}")
        out.append(f"  {phases}")
        return out


def _digest_files(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.name).encode())
        if p.is_file():
            with p.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        else:
            h.update(b"<absent>")
    return h.hexdigest()


def _source_states(features: Path) -> dict[str, list[int]]:
    """(size, mtime_ns) of each appended source: what ``applied.json`` says the day produced."""
    out = {}
    for name in _APPENDED:
        st = (features / FEATURE_FILES[name]).stat()
        out[name] = [st.st_size, st.st_mtime_ns]
    return out


def _day_id(events: pd.DataFrame) -> tuple[str, datetime]:
    """The day (the UTC date on which most of the sessions ended) and the default materialisation end
    (the midnight after it: a session that ended later reaches the online store with the next day's run)."""
    ends = pd.to_datetime(events.groupby(C.SESSION_ID)[C.EVENT_TIMESTAMP].max(), utc=True)
    day = ends.dt.normalize().mode().iloc[0]
    return day.strftime("%Y-%m-%d"), (day + pd.Timedelta(days=1)).to_pydatetime()


def _require(cfg: DailyConfig) -> None:
    lay, features = cfg.layout, cfg.features
    needed = [
        ("the day's events", Path(cfg.day_dir) / DAY_EVENTS),
        ("encoder checkpoint (c2i train-encoder)", lay.encoder / CHECKPOINT_FILE),
        ("intent classifier (c2i taxonomy distill)", lay.intent / CLASSIFIER_META_FILE),
        ("features build report (c2i features build)", features / BUILD_REPORT_FILE),
        ("features world (c2i features build)", features / WORLD_FILE),
    ] + [(f"source {name} (c2i features build)", features / FEATURE_FILES[name]) for name in _APPENDED]
    for what, p in needed:
        if not p.is_file():
            raise ArtifactError(f"daily: {what}: {p} not found")


def run_daily(cfg: DailyConfig) -> DailyReport:
    """The daily job (see the module docstring); returns what it did."""
    from clicks2intent.data.contract import read_events
    from clicks2intent.data.world import check_page_types, load_world

    t0 = time.perf_counter()
    _require(cfg)
    features, lay = cfg.features, cfg.layout
    report = DailyReport()
    day_events_path = Path(cfg.day_dir) / DAY_EVENTS
    events = read_events(day_events_path)
    if events.empty:
        raise ContractError(f"daily: {day_events_path} holds no events")
    world = load_world(features / WORLD_FILE)
    check_page_types(events[C.PAGE_TYPE].dropna().unique().tolist(), world, f"day events ({day_events_path})")
    report.day, default_end = _day_id(events)
    end = _aware(cfg.end) if cfg.end is not None else default_end
    report.inputs_digest = _digest_files(
        [day_events_path, Path(cfg.day_dir) / DAY_LINKS, lay.encoder / CHECKPOINT_FILE,
         lay.intent / CLASSIFIER_FILE, lay.intent / CLASSIFIER_META_FILE, features / WORLD_FILE]
    )  # fmt: skip
    report.seconds["read"] = time.perf_counter() - t0
    day_out = features / DAYS_DIR / report.day
    with exclusive(features):
        applied = _read_json(day_out / APPLIED_FILE)
        if applied.get("inputs_digest") == report.inputs_digest and applied.get("sources") == _source_states(
            features
        ):
            report.already_applied = True
            logger.info("daily %s: already applied with these inputs; sources unchanged", report.day)
        else:
            _apply_day(cfg, events, world, report, day_out)
    if cfg.repo is not None:
        t = time.perf_counter()
        report.materialized_to = end.isoformat()
        report.materialized_views = materialize_incremental(Path(cfg.repo), end, cfg.feast_config)
        report.seconds["materialize"] = time.perf_counter() - t
    report.seconds["total"] = time.perf_counter() - t0
    return report


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# --- 1-2. embed and label the day ----------------------------------------------------------------------
def embed_day(cfg: DailyConfig, events_path: Path, out: Path) -> pd.DataFrame:
    """The day's sessions of ``cfg.channel`` through the trained encoder (``c2i embed``'s job)."""
    from clicks2intent.encoder import runtime

    encoder = cfg.layout.encoder
    onnx = runtime.select_runtime(encoder, cfg.runtime, "auto")
    if onnx is not None:
        runtime.embed_file(encoder, events_path, out, channel=cfg.channel, progress=False, embedder=onnx)
    else:
        from clicks2intent.encoder.embed import embed_file

        embed_file(encoder, events_path, out, channel=cfg.channel, progress=False)
    return pq.read_table(out).to_pandas()


def label_day(intent_dir: Path, embeddings: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Label each embedded session with the distilled classifier (``c2i taxonomy distill``'s rows)."""
    from clicks2intent.intent.distill import IntentClassifier, embedding_matrix

    clf = IntentClassifier.load(intent_dir)
    if embeddings.empty:
        return pd.DataFrame(columns=[C.SESSION_ID, C.EVENT_TIMESTAMP, C.INTENT_LABEL, C.INTENT_CONFIDENCE,
                                     C.TAXONOMY_VERSION])  # fmt: skip
    X = embedding_matrix(embeddings)
    texts = None
    if getattr(clf, "reads_text", False):  # the session's pages and search words, as distil read them
        from clicks2intent.intent.inputs import SessionText, session_texts

        by_id = session_texts(events, embeddings[C.SESSION_ID].astype(str))
        texts = [by_id.get(str(s), SessionText()) for s in embeddings[C.SESSION_ID]]
    proba = clf.predict_proba(X, texts) if texts is not None else clf.predict_proba(X)
    best = proba.argmax(axis=1)
    return pd.DataFrame(
        {
            C.SESSION_ID: embeddings[C.SESSION_ID].astype(str).to_numpy(),
            C.EVENT_TIMESTAMP: embeddings[C.EVENT_TIMESTAMP].to_numpy(),
            C.INTENT_LABEL: clf.classes_[best],
            C.INTENT_CONFIDENCE: proba[np.arange(len(best)), best].astype(np.float32),
            C.TAXONOMY_VERSION: clf.taxonomy_version,
        }
    )


# --- 3. the appends -------------------------------------------------------------------------------------
def _string_set(values: Iterable[Any]) -> pa.Array:
    return pa.array(sorted({str(v) for v in values if v is not None}), pa.string())


def _scan(path: Path, columns: Sequence[str], key: str, keys: pa.Array, batch_rows: int) -> pa.Table:
    """The rows of ``path`` whose ``key`` is in ``keys`` and whose event_timestamp is set (no anchors),
    read in record batches (memory: the matches)."""
    parts = []
    if len(keys):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(columns)):
            t = pa.Table.from_batches([batch])
            hit = pc.and_(pc.is_in(t[key], value_set=keys), pc.is_valid(t[C.EVENT_TIMESTAMP]))
            t = t.filter(hit)
            if t.num_rows:
                parts.append(t)
    if not parts:
        schema = pq.read_schema(path)
        return pa.schema([schema.field(c) for c in columns]).empty_table()
    return pa.concat_tables(parts)


def history_contributions(
    features: Path, visitors: pa.Array, exclude_sessions: pa.Array, batch_rows: int
) -> pd.DataFrame:
    """Every session of ``visitors`` in the sources (``session_activity`` ⋈ ``session_intent``), except
    ``exclude_sessions``: the visitor contributions ``features build`` aggregates (its contrib rows)."""
    from clicks2intent.features.build import _CONTRIB_SPILL

    act = _scan(features / FEATURE_FILES["session_activity"], [C.SESSION_ID, C.VISITOR_ID, C.EVENT_TIMESTAMP],
                C.VISITOR_ID, visitors, batch_rows)  # fmt: skip
    act = act.filter(pc.invert(pc.is_in(act[C.SESSION_ID], value_set=exclude_sessions)))
    cols = [C.SESSION_ID, C.EVENT_TIMESTAMP, C.EMBEDDING, C.INTENT_LABEL, C.INTENT_CONFIDENCE]
    intent = _scan(features / FEATURE_FILES["session_intent"], cols, C.SESSION_ID,
                   act[C.SESSION_ID].combine_chunks(), batch_rows)  # fmt: skip
    # Arrow's join keeps no list column: the session -> visitor map is taken by position instead.
    act = act.select([C.SESSION_ID, C.VISITOR_ID]).combine_chunks()
    where = pc.index_in(intent[C.SESSION_ID], value_set=act[C.SESSION_ID])
    joined = intent.append_column(C.VISITOR_ID, pc.take(act[C.VISITOR_ID], where))
    return joined.select(_CONTRIB_SPILL.names).cast(_CONTRIB_SPILL).to_pandas()


def read_links(cfg: DailyConfig, day_out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every identity link known after this day, this day's own): the data directory's links, every
    earlier day's under ``days/``, and the day's file."""
    paths = [cfg.layout.data / ARTIFACTS.identity_links.name]
    days = cfg.features / DAYS_DIR
    if days.is_dir():
        paths += sorted(p / DAY_LINKS for p in days.iterdir() if p != day_out and (p / DAY_LINKS).is_file())
    cols = [C.VISITOR_ID, C.CUSTOMER_ID, C.LINKED_AT]
    frames = [pq.read_table(p, columns=cols).to_pandas() for p in paths if p.is_file()]
    day_path = Path(cfg.day_dir) / DAY_LINKS
    day = (
        pq.read_table(day_path, columns=cols).to_pandas()
        if day_path.is_file()
        else pd.DataFrame(columns=cols)
    )
    frames.append(day)
    frames = [f for f in frames if len(f)]
    everything = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    for frame in (everything, day):
        if len(frame):
            frame[C.LINKED_AT] = pd.to_datetime(frame[C.LINKED_AT], utc=True)
    return everything, day


@dataclass
class _NewRows:
    """Per source: the day's rows (already conformed) and the keys whose old rows they replace."""

    tables: dict[str, list[pa.Table]] = field(default_factory=lambda: {n: [] for n in _APPENDED})
    drop: dict[str, pa.Array] = field(default_factory=dict)


def _anchors(keys: Iterable[Any], schema: pa.Schema) -> pa.Table:
    """One null-timestamp row per entity (``features build``'s anchors; see its module docstring)."""
    from clicks2intent.features.build import _conform

    unique = pd.unique(np.asarray([str(k) for k in keys], dtype=object))
    return _conform(pa.table({schema.names[0]: pa.array(unique, pa.string())}), schema)


def _day_rows(
    cfg: DailyConfig,
    events: pd.DataFrame,
    embeddings: pd.DataFrame,
    intents: pd.DataFrame,
    world: Any,
    classes: list[str],
    build_cfg: Any,
    links: tuple[pd.DataFrame, pd.DataFrame],
    report: DailyReport,
) -> _NewRows:
    """The day's rows of every appended source, and the keys whose rows they replace."""
    from clicks2intent.features import build as B
    from clicks2intent.features.sessions import session_stats

    features, new = cfg.features, _NewRows()
    schemas = {n: pq.read_schema(features / FEATURE_FILES[n]) for n in _APPENDED}
    activity, _ = session_stats(events, world)
    day_sessions = _string_set(activity[C.SESSION_ID])
    report.n_sessions = len(activity)
    new.tables["session_activity"] = [
        B._conform(pa.Table.from_pandas(activity, preserve_index=False), schemas["session_activity"]),
        _anchors(activity[C.SESSION_ID], schemas["session_activity"]),
    ]
    joined = B._join_intents(embeddings, intents, B.BuildReport())
    if len(joined):
        new.tables["session_intent"] = [
            B._conform(B._session_intent_table(joined), schemas["session_intent"]),
            _anchors(joined[C.SESSION_ID], schemas["session_intent"]),
        ]
    new.drop["session_activity"] = new.drop["session_intent"] = day_sessions

    # Visitors with a session today: their whole timeline, from the sources' sessions + today's.
    web = (
        joined.merge(activity[[C.SESSION_ID, C.VISITOR_ID]], on=C.SESSION_ID, how="inner")
        if len(joined)
        else joined
    )
    web = web[web[C.VISITOR_ID].notna()] if len(web) else web
    day_contrib = (
        B._contrib_table(web).to_pandas() if len(web) else B._CONTRIB_SPILL.empty_table().to_pandas()
    )
    touched_v = set(day_contrib[C.VISITOR_ID])
    all_links, day_links = links
    first = B._first_links(all_links)
    touched_c = set(first.loc[first[C.VISITOR_ID].isin(touched_v), C.CUSTOMER_ID]) | set(
        day_links[C.CUSTOMER_ID]
    )
    links_c = first[first[C.CUSTOMER_ID].isin(touched_c)].reset_index(drop=True)
    needed = _string_set(touched_v | set(links_c[C.VISITOR_ID]))
    history = history_contributions(features, needed, day_sessions, cfg.batch_rows)
    contrib = pd.concat([history, day_contrib], ignore_index=True) if len(history) else day_contrib
    report.visitors_recomputed, report.customers_recomputed = len(touched_v), len(touched_c)

    per_v = contrib[contrib[C.VISITOR_ID].isin(touched_v)].reset_index(drop=True)
    per_v["available_at"] = per_v[C.EVENT_TIMESTAMP]
    timeline = B.web_intent_timeline(per_v, C.VISITOR_ID, classes, build_cfg)
    vschema = schemas["visitor_web_intent"]
    new.tables["visitor_web_intent"] = [
        B._conform(B._timeline_table(timeline, C.VISITOR_ID, B._VISITOR_NAMES), vschema),
        _anchors(sorted(touched_v), vschema),
    ]
    new.drop["visitor_web_intent"] = _string_set(touched_v)

    # Customers linked to one of those visitors, or linked today: theirs, over every linked visitor.
    per_c = contrib.merge(links_c, on=C.VISITOR_ID, how="inner")
    per_c["available_at"] = (
        np.maximum(per_c[C.EVENT_TIMESTAMP], per_c[C.LINKED_AT]) if len(per_c) else per_c[C.EVENT_TIMESTAMP]
    )
    timeline_c = B.web_intent_timeline(per_c, C.CUSTOMER_ID, classes, build_cfg, links=links_c)
    cschema = schemas["customer_web_intent"]
    new.tables["customer_web_intent"] = [
        B._conform(B._timeline_table(timeline_c, C.CUSTOMER_ID, B._CUSTOMER_NAMES), cschema),
        _anchors(links_c[C.CUSTOMER_ID], cschema),
    ]
    new.drop["customer_web_intent"] = _string_set(touched_c)
    return new


def _rewrite(
    path: Path, key_drop: pa.Array, tables: list[pa.Table], batch_rows: int
) -> tuple[AtomicFile, dict[str, int]]:
    """``path`` without the rows whose key is in ``key_drop``, then ``tables``: written to a temporary
    name (the caller commits). Counts: rows/anchors in the new file, rows replaced, rows added."""
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    key = schema.names[0]
    counts = {"rows": 0, "anchors": 0, "replaced": 0, "added": 0}
    out = AtomicFile(path, lock=False)  # the job holds the features directory's lock
    try:
        with pq.ParquetWriter(out.tmp, schema) as writer:
            for batch in pf.iter_batches(batch_size=batch_rows):
                t = pa.Table.from_batches([batch], schema=schema)
                drop = pc.is_in(t[key], value_set=key_drop)
                counts["replaced"] += int(
                    pc.sum(pc.and_(drop, pc.is_valid(t[C.EVENT_TIMESTAMP]))).as_py() or 0
                )
                t = t.filter(pc.invert(drop))
                _count(t, counts)
                writer.write_table(t)
            for t in tables:
                if t.num_rows:
                    before = counts["rows"]
                    _count(t, counts)
                    counts["added"] += counts["rows"] - before
                    writer.write_table(t.cast(schema))
    except BaseException:
        out.abort()
        raise
    return out, counts


def _count(t: pa.Table, counts: dict[str, int]) -> None:
    valid = int(pc.sum(pc.is_valid(t[C.EVENT_TIMESTAMP])).as_py() or 0) if t.num_rows else 0
    counts["rows"] += valid
    counts["anchors"] += t.num_rows - valid


def _build_config(build_report: dict[str, Any]) -> Any:
    from clicks2intent.features.build import FeatureBuildConfig

    saved = build_report.get("config") or {}
    keep = {k: saved[k] for k in ("half_life_days", "window_days") if k in saved}
    if "recent_windows_days" in saved:
        keep["recent_windows_days"] = tuple(saved["recent_windows_days"])
    return FeatureBuildConfig(**keep).validate()


def _apply_day(
    cfg: DailyConfig, events: pd.DataFrame, world: Any, report: DailyReport, day_out: Path
) -> None:
    """Embed, label and append (the sources are committed together at the end; then the day's files)."""
    features = cfg.features
    build_report = _read_json(features / BUILD_REPORT_FILE)
    classes = [str(c) for c in build_report.get("classes", [])]
    report.n_events = len(events)
    scratch = job_temp_dir(features, SCRATCH_PREFIX)  # a killed run's: removed by the next
    try:
        t = time.perf_counter()
        emb = embed_day(cfg, Path(cfg.day_dir) / DAY_EVENTS, scratch / "embeddings.parquet")
        dim = int(build_report.get("embedding_dim") or 0)
        if len(emb) and len(emb[C.EMBEDDING].iloc[0]) != dim:
            raise ArtifactError(
                f"daily: the encoder's vectors have {len(emb[C.EMBEDDING].iloc[0])} dimensions, the sources "
                f"{dim}: the encoder was retrained after `c2i features build`; run the full pipeline"
            )
        report.n_embedded = len(emb)
        report.seconds["embed"] = time.perf_counter() - t
        t = time.perf_counter()
        intents = label_day(cfg.layout.intent, emb, events)
        if len(intents) and not set(intents[C.INTENT_LABEL]) <= set(classes):
            raise ArtifactError(
                "daily: the classifier's labels are not the sources' classes: it was re-distilled after "
                "`c2i features build`; run the full pipeline"
            )
        report.n_labelled = len(intents)
        report.seconds["label"] = time.perf_counter() - t
        t = time.perf_counter()
        links = read_links(cfg, day_out)
        report.n_new_links = len(links[1])
        new = _day_rows(cfg, events, emb, intents, world, classes, _build_config(build_report), links, report)
        report.seconds["timelines"] = time.perf_counter() - t
        t = time.perf_counter()
        _commit_sources(cfg, new, build_report, report)
        report.seconds["append"] = time.perf_counter() - t
        _write_day(cfg, day_out, emb, intents, links[1], report)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


def _commit_sources(
    cfg: DailyConfig, new: _NewRows, build_report: dict[str, Any], report: DailyReport
) -> None:
    features = cfg.features
    pending: list[AtomicFile] = []
    try:
        for name in _APPENDED:
            drop = new.drop.get(name, pa.array([], pa.string()))
            out, counts = _rewrite(features / FEATURE_FILES[name], drop, new.tables[name], cfg.batch_rows)
            pending.append(out)
            report.rows_written[name] = counts["added"]
            report.rows_replaced[name] = counts["replaced"]
            build_report.setdefault("rows", {})[name] = counts["rows"]
            build_report.setdefault("anchors", {})[name] = counts["anchors"]
    except BaseException:
        for out in pending:
            out.abort()
        raise
    for out in pending:  # four renames, back to back; a kill between them is finished by the next run
        out.commit()
    build_report["days"] = sorted({*build_report.get("days", []), report.day})
    write_text(
        features / BUILD_REPORT_FILE, json.dumps(build_report, indent=2, default=str) + "\n", lock=False
    )


def _write_day(
    cfg: DailyConfig, day_out: Path, emb: pd.DataFrame, intents: pd.DataFrame, links: pd.DataFrame,
    report: DailyReport,
) -> None:  # fmt: skip
    """The day's embeddings, intents and links under ``days/<day>/``, then ``applied.json`` (last)."""
    from clicks2intent.encoder.pipeline import OUTPUT_SCHEMA
    from clicks2intent.intent.distill import write_intents

    day_out.mkdir(parents=True, exist_ok=True)
    with atomic_output(day_out / "embeddings.parquet", lock=False) as tmp:
        pq.write_table(pa.Table.from_pandas(emb, preserve_index=False).select(OUTPUT_SCHEMA.names)
                       .cast(OUTPUT_SCHEMA), tmp)  # fmt: skip
    write_intents(intents, day_out / "intents.parquet")
    with atomic_output(day_out / DAY_LINKS, lock=False) as tmp:
        cols = [C.VISITOR_ID, C.CUSTOMER_ID, C.LINKED_AT]
        schema = pa.schema([(C.VISITOR_ID, pa.string()), (C.CUSTOMER_ID, pa.string()), (C.LINKED_AT, _TS)])
        pq.write_table(pa.Table.from_pandas(links[cols], preserve_index=False).cast(schema), tmp)
    write_text(
        day_out / "report.json", json.dumps(report.to_dict(), indent=2, default=str) + "\n", lock=False
    )
    applied = {"inputs_digest": report.inputs_digest, "sources": _source_states(cfg.features)}
    write_text(day_out / APPLIED_FILE, json.dumps(applied, indent=2) + "\n", lock=False)


# --- 4. materialize-incremental -------------------------------------------------------------------------
def defer_feast_torch() -> bool:
    """Let Feast import torch when it needs it, not when it is imported: must run before Feast's first
    import; returns whether it did.

    ``import feast`` imports torch (``feast.torch_wrapper`` at module level: a large share of ``import
    feast``, docs/decisions/0012-features-and-feast.md) for two ``to_tensor`` methods a materialisation
    never calls.
    Feast reaches torch only through ``feast.torch_wrapper.get_torch()``; this puts a module of that
    name in its place whose ``get_torch()`` imports torch on its first call (same result, same error
    when torch is missing)."""
    if "feast" in sys.modules or "feast.torch_wrapper" in sys.modules:
        return False
    import importlib
    import importlib.util
    import types

    module = types.ModuleType("feast.torch_wrapper", "feast.torch_wrapper with torch imported on first use")

    def get_torch() -> Any:
        try:
            return importlib.import_module("torch")
        except Exception as err:  # Feast's own wording: a friendly error naming the cause
            raise ImportError(f"Torch is not available or failed to import.\nOriginal error:\n{err}") from err

    module.get_torch = get_torch  # type: ignore[attr-defined]
    module.TORCH_AVAILABLE = importlib.util.find_spec("torch") is not None  # type: ignore[attr-defined]
    sys.modules["feast.torch_wrapper"] = module
    return True


def _store(repo: Path, feast_config: str | None) -> Any:
    """The repo's FeatureStore. Where this process imports Feast first, without typeguard's
    instrumentation (a materialisation reads a registry ``feast apply`` checked: docs/decisions/0002)
    and without importing torch (:func:`defer_feast_torch`)."""
    from clicks2intent.features.store import skip_feast_typechecks

    defer_feast_torch()
    skip_feast_typechecks()
    from feast import FeatureStore

    if not Path(repo).is_dir():
        raise ArtifactError(f"feature repo {repo} not found")
    kwargs: dict[str, Any] = {"repo_path": str(repo)}
    if feast_config:
        path = Path(feast_config) if Path(feast_config).is_absolute() else Path(repo) / feast_config
        if not path.is_file():
            raise ArtifactError(f"feature store YAML {path} not found")
        kwargs["fs_yaml_file"] = path
    return FeatureStore(**kwargs)


def materialize(
    repo: Path,
    start: datetime | None,
    end: datetime,
    feast_config: str | None = None,
    views: Sequence[str] | None = None,
) -> list[str]:
    """``feast materialize START END`` (``start`` None: ``materialize-incremental END``) in this process:
    ``c2i features materialize``, the same Feast call without the ``feast`` CLI's start-up (its import of
    Feast with typeguard recompiling Feast's classes). Returns the views materialised."""
    store = _store(repo, feast_config)
    online = [fv.name for fv in store.list_feature_views() if fv.online]
    unknown = sorted(set(views or ()) - set(online))
    if unknown:
        raise ConfigError(f"--views: {unknown} are not online feature views of {repo} ({online})")
    views = list(views) if views else online
    with contextlib.redirect_stdout(sys.stderr):  # Feast prints its progress: the log, not the results
        if start is None:
            store.materialize_incremental(end_date=_aware(end), feature_views=views)
        else:
            store.materialize(_aware(start), _aware(end), feature_views=views)
    return views


def materialize_incremental(repo: Path, end: datetime, feast_config: str | None = None) -> list[str]:
    """``feast materialize-incremental END`` in this process, for the views not yet materialised to
    ``end`` (a re-run touches neither the online store nor the registry). Returns the views written."""
    from feast.utils import make_tzaware

    store = _store(repo, feast_config)
    end = _aware(end)
    views = [
        fv.name
        for fv in store.list_feature_views()
        if fv.online and (fv.most_recent_end_time is None or make_tzaware(fv.most_recent_end_time) < end)
    ]
    if views:
        with contextlib.redirect_stdout(sys.stderr):  # Feast prints its progress: the log, not the results
            store.materialize_incremental(end_date=end, feature_views=views)
    return views
