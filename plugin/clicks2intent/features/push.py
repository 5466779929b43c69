"""Freshness: push a finished session's embedding and intent label to the online store right away.

The ``session_intent`` view reads a Feast ``PushSource`` (``session_intent_push``) whose batch source is
the file ``c2i features build`` writes, so a session can reach the online store seconds after it ends
(``FeatureStore.push``, Feast's own push path, readable by plain ``get_online_features`` and
``feast serve``) instead of at the next ``materialize``. :func:`push_sessions` embeds the sessions'
events with the encoder, labels them with the distilled classifier and pushes the rows;
:func:`push_session_intents` pushes rows that are already computed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from clicks2intent.errors import ContractError
from clicks2intent.names import columns as C
from clicks2intent.names.features import SESSION_INTENT

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)

PUSH_SOURCE = f"{SESSION_INTENT}_push"  # the name definitions.build gives it (before any prefix)
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
    """Finished sessions' events (contract columns) → one ``session_intent`` row per session."""
    if events.empty:
        return pd.DataFrame(columns=list(PUSH_COLUMNS))
    rows = []
    for session_id, group in events.sort_values(C.EVENT_TIMESTAMP, kind="stable").groupby(
        C.SESSION_ID, sort=False
    ):
        vector = embedder.embed_session(group.to_dict("records"))
        label, confidence, _ = classifier.predict_one(vector)
        rows.append(
            {
                C.SESSION_ID: str(session_id),
                C.EVENT_TIMESTAMP: pd.to_datetime(group[C.EVENT_TIMESTAMP], utc=True).max(),
                C.EMBEDDING: [float(x) for x in vector],
                C.INTENT_LABEL: label,
                C.INTENT_CONFIDENCE: float(confidence),
                C.TAXONOMY_VERSION: taxonomy_version,
            }
        )
    return pd.DataFrame(rows, columns=list(PUSH_COLUMNS))


def push_sessions(
    store: FeatureStore,
    events: pd.DataFrame,
    embedder: Any,
    classifier: Any,
    taxonomy_version: str,
    prefix: str = "",
) -> list[str]:
    """Embed, label and push the sessions of ``events``; returns their ids (in push order)."""
    rows = session_intents(events, embedder, classifier, taxonomy_version)
    push_session_intents(store, rows, prefix)
    return list(rows[C.SESSION_ID])


def online_session_intent(
    store: FeatureStore, session_ids: Sequence[str], prefix: str = ""
) -> dict[str, list[Any]]:
    """What serving reads back for these sessions (plain ``get_online_features``)."""
    refs = [f"{prefix}{SESSION_INTENT}:{c}" for c in PUSH_COLUMNS[2:]]
    return store.get_online_features(
        features=refs, entity_rows=[{C.SESSION_ID: s} for s in session_ids]
    ).to_dict()
