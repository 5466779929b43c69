"""Freshness: push a finished session's embedding and intent label to the online store right away.

The ``session_intent`` and ``visitor_web_intent`` views read Feast push sources
(``session_intent_push``, ``visitor_web_intent_push``) whose batch sources are the files
``c2i features build`` writes, so a session — and its visitor's web intent — can reach the online store
seconds after it ends (``FeatureStore.push``, Feast's own push path, readable by plain
``get_online_features`` and ``feast serve``) instead of at the next ``materialize``.

:func:`push_sessions` (``c2i push``) embeds the sessions' events with the encoder, labels them with the
distilled classifier and pushes the session rows; with ``features_dir`` it also pushes each visitor's
new ``visitor_web_intent`` row: the visitor's batch history (``session_activity`` ⋈ ``session_intent``)
plus the new sessions, aggregated by the batch job's own
:func:`~clicks2intent.features.build.web_intent_timeline` with the build's classes and decay settings
(``build_report.json``), so the pushed row is the one the next ``features build`` writes for that time.
Sessions pushed by an EARLIER call and not yet in the batch files are not in that history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from clicks2intent.errors import ContractError
from clicks2intent.names import columns as C
from clicks2intent.names.features import (
    SESSION_INTENT,
    VISITOR_EMBEDDING_DECAYED,
    VISITOR_INTENT_CONFIDENCE,
    VISITOR_INTENT_DECAYED,
    VISITOR_INTENT_LABEL,
    VISITOR_SESSIONS_30D,
    VISITOR_WEB_INTENT,
)
from clicks2intent.names.paths import BUILD_REPORT_FILE, FEATURE_FILES

if TYPE_CHECKING:
    from feast import FeatureStore

    from clicks2intent.data.world import World

logger = logging.getLogger(__name__)

PUSH_SOURCE = f"{SESSION_INTENT}_push"  # the name definitions.build gives it (before any prefix)
VISITOR_PUSH_SOURCE = f"{VISITOR_WEB_INTENT}_push"
# web_intent_timeline's generic columns → the visitor view's features (as features build names them)
VISITOR_FEATURES = {
    "label": VISITOR_INTENT_LABEL,
    "confidence": VISITOR_INTENT_CONFIDENCE,
    "decayed": VISITOR_INTENT_DECAYED,
    "embedding": VISITOR_EMBEDDING_DECAYED,
    "sessions_window": VISITOR_SESSIONS_30D,
}
PUSH_COLUMNS = (
    C.SESSION_ID,
    C.EVENT_TIMESTAMP,
    C.EMBEDDING,
    C.INTENT_LABEL,
    C.INTENT_CONFIDENCE,
    C.TAXONOMY_VERSION,
)


def push_session_intents(store: FeatureStore, rows: pd.DataFrame, prefix: str = "") -> int:
    """Push ``session_intent`` rows (:data:`PUSH_COLUMNS`, ``event_timestamp`` = session end) online."""
    from feast.data_source import PushMode

    missing = [c for c in PUSH_COLUMNS if c not in rows.columns]
    if missing:
        raise ContractError(f"session intents: missing column(s) {missing} (need {list(PUSH_COLUMNS)})")
    frame = rows[list(PUSH_COLUMNS)].copy()
    frame[C.EVENT_TIMESTAMP] = pd.to_datetime(frame[C.EVENT_TIMESTAMP], utc=True)
    if frame[C.EVENT_TIMESTAMP].isna().any():
        raise ContractError(f"session intents: '{C.EVENT_TIMESTAMP}' (the session end) has nulls")
    frame[C.EMBEDDING] = [[float(x) for x in v] for v in frame[C.EMBEDDING]]
    store.push(f"{prefix}{PUSH_SOURCE}", frame, to=PushMode.ONLINE)
    logger.info("pushed %d session intent row(s) to %s", len(frame), f"{prefix}{PUSH_SOURCE}")
    return len(frame)


def session_intents(
    events: pd.DataFrame, embedder: Any, classifier: Any, taxonomy_version: str
) -> pd.DataFrame:
    """Finished sessions' events (contract columns) → one ``session_intent`` row per session.

    Embedded in one batch by the embed job's own path (:meth:`SessionEmbedder.embed_events`), so a
    pushed vector is the one the next batch embedding writes, without a forward pass per session."""
    if events.empty:
        return pd.DataFrame(columns=list(PUSH_COLUMNS))
    from clicks2intent.intent.inputs import SessionText, session_texts

    out = embedder.embed_events(events)
    # The session's pages and search words too, as `c2i taxonomy distill` labelled the batch sessions.
    texts = session_texts(events) if getattr(classifier, "reads_text", False) else {}
    predicted = [
        classifier.predict_one(v, text=texts.get(str(s), SessionText()))
        for s, v in zip(out[C.SESSION_ID], out[C.EMBEDDING], strict=True)
    ]
    out[C.SESSION_ID] = out[C.SESSION_ID].astype(str)
    out[C.EMBEDDING] = [[float(x) for x in v] for v in out[C.EMBEDDING]]
    out[C.INTENT_LABEL] = [label for label, _, _ in predicted]
    out[C.INTENT_CONFIDENCE] = [float(conf) for _, conf, _ in predicted]
    out[C.TAXONOMY_VERSION] = taxonomy_version
    return out[list(PUSH_COLUMNS)].reset_index(drop=True)


def session_visitors(events: pd.DataFrame) -> dict[str, str]:
    """session id → visitor id (the first non-null one of its events); sessions without one are left out."""
    if C.VISITOR_ID not in events.columns:
        return {}
    known = events.loc[events[C.VISITOR_ID].notna(), [C.SESSION_ID, C.VISITOR_ID]]
    first = known.drop_duplicates(C.SESSION_ID)
    return dict(zip(first[C.SESSION_ID].astype(str), first[C.VISITOR_ID].astype(str), strict=True))


def visitor_history(features_dir: str | Path, visitor_ids: Sequence[str]) -> pd.DataFrame:
    """Batch contributions of these visitors: one row per past session with its embedding and label."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    features_dir = Path(features_dir)
    act = pq.read_table(
        features_dir / FEATURE_FILES["session_activity"],
        columns=[C.SESSION_ID, C.VISITOR_ID, C.EVENT_TIMESTAMP],
    )
    act = act.filter(
        pc.fill_null(pc.is_in(act[C.VISITOR_ID], pa.array(list(visitor_ids), pa.string())), False)
    )
    act = act.filter(act[C.EVENT_TIMESTAMP].is_valid())  # anchor rows have no time
    if act.num_rows == 0:
        return pd.DataFrame(columns=[C.VISITOR_ID, *PUSH_COLUMNS])
    intent = pq.read_table(features_dir / FEATURE_FILES["session_intent"], columns=list(PUSH_COLUMNS))
    intent = intent.filter(pc.fill_null(pc.is_in(intent[C.SESSION_ID], act[C.SESSION_ID]), False))
    intent = intent.filter(intent[C.EVENT_TIMESTAMP].is_valid())
    joined = intent.to_pandas().merge(
        act.select([C.SESSION_ID, C.VISITOR_ID]).to_pandas(), on=C.SESSION_ID, how="inner"
    )
    return joined.drop_duplicates(C.SESSION_ID, keep="last")


def visitor_intents(
    sessions: pd.DataFrame, visitors: dict[str, str], features_dir: str | Path
) -> pd.DataFrame:
    """Each visitor's ``visitor_web_intent`` row as of its newest session in ``sessions`` (``session_intent``
    rows), aggregated over its batch history plus these sessions exactly as ``features build`` does."""
    import json

    from clicks2intent.features.build import FeatureBuildConfig, web_intent_timeline

    columns = [C.VISITOR_ID, C.EVENT_TIMESTAMP, *VISITOR_FEATURES.values()]
    new = sessions.assign(**{C.VISITOR_ID: sessions[C.SESSION_ID].map(visitors)})
    new = new[new[C.VISITOR_ID].notna()]
    if new.empty:
        return pd.DataFrame(columns=columns)
    report_path = Path(features_dir) / BUILD_REPORT_FILE
    if not report_path.is_file():
        raise ContractError(f"visitor push: {report_path} not found (run `c2i features build` first)")
    report = json.loads(report_path.read_text())
    known = {f for f in FeatureBuildConfig.__dataclass_fields__}
    config = FeatureBuildConfig(**{k: v for k, v in report.get("config", {}).items() if k in known})
    history = visitor_history(features_dir, sorted(set(new[C.VISITOR_ID])))
    history = history[~history[C.SESSION_ID].isin(set(new[C.SESSION_ID]))]
    contrib = pd.concat([history, new[history.columns]], ignore_index=True)
    contrib[C.EVENT_TIMESTAMP] = pd.to_datetime(contrib[C.EVENT_TIMESTAMP], utc=True)
    contrib["available_at"] = contrib[C.EVENT_TIMESTAMP]
    timeline = web_intent_timeline(contrib, C.VISITOR_ID, report["classes"], config)
    as_of = new.groupby(C.VISITOR_ID)[C.EVENT_TIMESTAMP].max()
    timeline = timeline[timeline[C.EVENT_TIMESTAMP] <= timeline[C.VISITOR_ID].map(as_of)]
    latest = timeline.groupby(C.VISITOR_ID, sort=False).tail(1).rename(columns=VISITOR_FEATURES)
    return latest[columns].reset_index(drop=True)


def push_visitor_intents(store: FeatureStore, rows: pd.DataFrame, prefix: str = "") -> int:
    """Push ``visitor_web_intent`` rows (visitor id, event_timestamp, the view's features) online."""
    from feast.data_source import PushMode

    if rows.empty:
        return 0
    frame = rows.copy()
    for name in (VISITOR_INTENT_DECAYED, VISITOR_EMBEDDING_DECAYED):
        frame[name] = [None if v is None else [float(x) for x in v] for v in frame[name]]
    store.push(f"{prefix}{VISITOR_PUSH_SOURCE}", frame, to=PushMode.ONLINE)
    logger.info("pushed %d visitor web intent row(s) to %s", len(frame), f"{prefix}{VISITOR_PUSH_SOURCE}")
    return len(frame)


@dataclass
class PushReport:
    """What :func:`push_sessions` pushed (``c2i push`` prints it)."""

    session_ids: list[str]
    visitor_ids: list[str]
    seconds: dict[str, float]  # embed+label, visitor aggregate, push


def push_sessions(
    store: FeatureStore,
    events: pd.DataFrame,
    embedder: Any,
    classifier: Any,
    taxonomy_version: str,
    prefix: str | None = None,
    features_dir: str | Path | None = None,
    world: World | None = None,
) -> PushReport:
    """Embed, label and push the sessions of ``events`` (and, with ``features_dir``, their visitors' web
    intent). Returns the ids pushed, in push order, and the time of each step.

    ``world``: raw page names / URLs of the events map to its page types first (as ``c2i validate
    --world`` does for batch data), and its Feast prefix is the default ``prefix``."""
    t0 = time.perf_counter()
    if world is not None:
        events = events.assign(**{C.PAGE_TYPE: events[C.PAGE_TYPE].map(world.mapper)})
    prefix = (world.feast_prefix if world is not None else "") if prefix is None else prefix
    rows = session_intents(events, embedder, classifier, taxonomy_version)
    t1 = time.perf_counter()
    visitors = pd.DataFrame()
    if features_dir is not None:
        visitors = visitor_intents(rows, session_visitors(events), features_dir)
    t2 = time.perf_counter()
    push_session_intents(store, rows, prefix)
    push_visitor_intents(store, visitors, prefix)
    seconds = {"embed_label": t1 - t0, "visitor_aggregate": t2 - t1, "push": time.perf_counter() - t2}
    vids = [] if visitors.empty else list(visitors[C.VISITOR_ID])
    return PushReport(list(rows[C.SESSION_ID]), vids, seconds)


def online_session_intent(
    store: FeatureStore, session_ids: Sequence[str], prefix: str = ""
) -> dict[str, list[Any]]:
    """What serving reads back for these sessions (plain ``get_online_features``)."""
    refs = [f"{prefix}{SESSION_INTENT}:{c}" for c in PUSH_COLUMNS[2:]]
    return store.get_online_features(
        features=refs, entity_rows=[{C.SESSION_ID: s} for s in session_ids]
    ).to_dict()


def online_visitor_intent(
    store: FeatureStore, visitor_ids: Sequence[str], prefix: str = ""
) -> dict[str, list[Any]]:
    """What serving reads back for these visitors (plain ``get_online_features``)."""
    refs = [f"{prefix}{VISITOR_WEB_INTENT}:{c}" for c in VISITOR_FEATURES.values()]
    return store.get_online_features(
        features=refs, entity_rows=[{C.VISITOR_ID: v} for v in visitor_ids]
    ).to_dict()
