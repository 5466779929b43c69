"""Splits by time, never random rows: earlier sessions train, later ones validate and test.

A session belongs to one side as a whole (a random row split would leak a session into both); sessions
are ordered by their first event's time, ties by session id, so a split is deterministic. Stages that
need a time split of sessions (the encoder's early stopping and holdout, later the task training sets)
call :func:`split_sessions_by_time`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from clicks2intent.errors import ConfigError, ContractError
from clicks2intent.names import columns as C


@dataclass
class SessionSplit:
    """Session ids per side, ordered by (session start, session id)."""

    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray
    train_end: str | None  # latest session start in train (ISO, UTC)
    holdout_start: str | None  # earliest session start in holdout
    holdout_first_session: str | None  # its session id (ties in start time are ordered by id)


def session_starts(
    events: pa.Table | pd.DataFrame,
    *,
    session_column: str = C.SESSION_ID,
    timestamp_column: str = C.EVENT_TIMESTAMP,
) -> pd.DataFrame:
    """One row per session (``session_column``, ``start``), ordered by (first event time, session id)."""
    if isinstance(events, pd.DataFrame):
        missing = [c for c in (session_column, timestamp_column) if c not in events.columns]
        if missing:
            raise ContractError(f"events: missing required column(s) {missing}")
        events = pa.Table.from_pandas(events[[session_column, timestamp_column]], preserve_index=False)
    starts = events.group_by(session_column).aggregate([(timestamp_column, "min")]).to_pandas()
    starts = starts.rename(columns={f"{timestamp_column}_min": "start"})
    return starts.sort_values(["start", session_column], kind="stable").reset_index(drop=True)


def split_sessions_by_time(
    events: pa.Table | pd.DataFrame,
    val_fraction: float,
    holdout_fraction: float = 0.0,
    *,
    session_column: str = C.SESSION_ID,
    timestamp_column: str = C.EVENT_TIMESTAMP,
) -> SessionSplit:
    """Split sessions by their first event's time: train < validation < holdout.

    The latest ``holdout_fraction`` of sessions (rounded) is the holdout, the latest ``val_fraction`` of
    the rest (at least one, leaving at least one for training) validates, the earlier ones train.
    """
    if not 0.0 <= holdout_fraction < 1.0 or not 0.0 < val_fraction < 1.0:
        raise ConfigError(
            f"val_fraction={val_fraction} must be in (0, 1) and holdout_fraction={holdout_fraction} in [0, 1)"
        )
    starts = session_starts(events, session_column=session_column, timestamp_column=timestamp_column)
    ids = starts[session_column].to_numpy(dtype=object)
    n = len(ids)
    n_hold = int(round(holdout_fraction * n))
    n_rest = n - n_hold
    if n_rest < 2:
        raise ContractError(
            f"events: {n} session(s) ({n_hold} held out) are too few to split into train/validation; "
            "need at least 2 outside the holdout"
        )
    n_val = min(max(1, int(round(val_fraction * n_rest))), n_rest - 1)
    n_train = n_rest - n_val

    def iso(i: int) -> str | None:
        return pd.Timestamp(starts["start"].iloc[i]).isoformat() if 0 <= i < n else None

    return SessionSplit(
        train=ids[:n_train],
        val=ids[n_train:n_rest],
        holdout=ids[n_rest:],
        train_end=iso(n_train - 1),
        holdout_start=iso(n_rest) if n_hold else None,
        holdout_first_session=str(ids[n_rest]) if n_hold else None,
    )
