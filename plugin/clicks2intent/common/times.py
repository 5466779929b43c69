"""UTC timestamps as int64 microseconds since the epoch: the one conversion training and serving share."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.errors import ContractError
from clicks2intent.names.columns import EVENT_TIMESTAMP

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_DAY = 86_400 * 1_000_000
# The plausible range of an event time at the contract edge (validate_events): nothing of
# ours happened before 1990, and a clock more than a day ahead is broken (or an attack: pandas cannot
# even represent years before 1677 or after 2262).
EARLIEST = pd.Timestamp("1990-01-01", tz="UTC")
MAX_FUTURE = pd.Timedelta(days=1)


# Requests use a fixed range of years, as written, that an OpenAPI document can state exactly (a
# pattern): a client cannot know our clock, and these years cannot overflow datetime arithmetic.
REQUEST_YEARS = (1990, 2099)
REQUEST_YEAR_PATTERN = r"^(199[0-9]|20[0-9][0-9])-"


def to_us(value: Any) -> int | None:
    """One timestamp → µs since the epoch (naive = UTC, as the contract repairs it); None for missing."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, datetime) and not isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - EPOCH) // timedelta(microseconds=1)  # exact integer arithmetic
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ContractError(f"'{EVENT_TIMESTAMP}' must be a timestamp, got {value!r}") from None
    if pd.isna(stamp):
        return None
    return int(stamp.value // 1000)  # .value is UTC ns (naive stamps are read as UTC)


def series_to_us(ts: pd.Series) -> np.ndarray:
    """A column of UTC timestamps → int64 µs (nulls are an error: every row needs a time)."""
    s = pd.to_datetime(ts, utc=True)
    if s.isna().any():
        raise ValueError(f"{ts.name}: null timestamps are not allowed")
    return ((s - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")).to_numpy(dtype=np.int64)
