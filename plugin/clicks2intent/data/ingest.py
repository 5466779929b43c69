"""Readers that convert public clickstream data sets into the clickstream contract.

MSNBC.com anonymous web data (UCI; msnbc.com logs of 28 September 1999)
------------------------------------------------------------------------
Each line after the header is one visitor's page views during that day, as page-category numbers in
visit order (1 = frontpage … 17 = travel; the names are read from the file's header). The data set
has order but no times, so this reader uses a documented **synthetic clock**:

* session ``n`` (1-based position of the sequence in the full data set of
  :data:`MSNBC_TOTAL_SESSIONS` sessions; in a slice file, the position in the file plus
  ``first_session - 1``) starts at ``1999-09-28T00:00:00Z + floor((n - 1) · 86400 / MSNBC_TOTAL_SESSIONS)``
  seconds — line order becomes arrival order, spread evenly over the day the logs cover, so the first
  60,000 sessions span about the first 87 minutes. The start never depends on ``limit``, so a prefix
  read and a full read agree;
* the ``k``-th page view (0-based) of a session is at ``start + k · MSNBC_EVENT_GAP_S`` (30 s).

Only the order of events within a session and the order of sessions is real; durations, times of day
and gaps are not, and dwell times are left missing (null), not faked. Mapping: ``session_id`` =
``msnbc-<n>``, ``visitor_id`` = ``msnbc-v<n>`` (each sequence is one user's day), ``page_type`` = the
category name, ``channel`` = ``web``; customer id, dwell, query, device and referrer are missing.
Events go through :func:`clicks2intent.data.contract.validate_events` like every other source; sessions
longer than ``max_session_events`` (the file holds a few thousand-view sequences) are rejected there
and counted in the report, never silently dropped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from clicks2intent.data.contract import ValidationResult, validate_events, write_events
from clicks2intent.errors import ArtifactError, ConfigError, ContractError
from clicks2intent.names import columns as C

logger = logging.getLogger(__name__)

MSNBC_TOTAL_SESSIONS = 989_818  # sequences in the complete UCI data set
MSNBC_DAY = pd.Timestamp("1999-09-28T00:00:00Z")  # the day the logs were recorded
MSNBC_EVENT_GAP_S = 30.0  # synthetic seconds between consecutive page views
MSNBC_CATEGORIES: tuple[str, ...] = (
    "frontpage", "news", "tech", "local", "opinion", "on-air", "misc", "weather", "msn-news", "health",
    "living", "business", "msn-sports", "sports", "summary", "bbs", "travel",
)  # fmt: skip
_SLICE_RE = re.compile(r"sessions_(\d+)-(\d+)")


class MsnbcFormatError(ContractError):
    """The file does not look like the UCI MSNBC sequence format (names the line and the rule)."""


def _first_session_number(path: Path) -> int:
    """1-based number of the file's first sequence in the full data set (slice files name their range)."""
    m = _SLICE_RE.search(path.name)
    return int(m.group(1)) if m else 1


def parse_msnbc(path: str | Path, limit: int | None = None) -> tuple[tuple[str, ...], list[np.ndarray], int]:
    """Read the header's category names and up to ``limit`` sequences (as 0-based category codes).

    Returns ``(categories, sequences, first_line_number)`` where the last is the 1-based line of the first
    sequence in the file (for error messages).
    """
    path = Path(path)
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    if not path.is_file():
        raise ArtifactError(f"MSNBC sequence file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise MsnbcFormatError(f"{path}: not UTF-8 text (byte {err.start}): rule 'msnbc_header'") from None
    try:
        seq_marker = next(i for i, line in enumerate(lines) if line.strip().lower().startswith("% sequences"))
    except StopIteration:
        raise MsnbcFormatError(f"{path}: no '% Sequences:' header line: rule 'msnbc_header'") from None
    header = [
        line.strip() for line in lines[:seq_marker] if line.strip() and not line.lstrip().startswith("%")
    ]
    if len(header) != 1:
        raise MsnbcFormatError(
            f"{path}: expected one line of category names before '% Sequences:': rule 'msnbc_header'"
        )
    categories = tuple(header[0].split())
    body_start = seq_marker + 1
    while body_start < len(lines) and not lines[body_start].strip():
        body_start += 1  # the blank line(s) that close the header
    body = lines[body_start:] if limit is None else lines[body_start : body_start + limit]
    sequences: list[np.ndarray] = []
    for k, line in enumerate(body):
        tokens = line.split()
        if not tokens:
            raise MsnbcFormatError(
                f"{path}: line {body_start + k + 1}: empty sequence: rule 'msnbc_empty_sequence'"
            )
        try:
            codes = np.array(tokens, dtype=np.int64) - 1
        except ValueError:
            raise MsnbcFormatError(
                f"{path}: line {body_start + k + 1}: non-integer category in {line[:60]!r}: rule 'msnbc_category_code'"
            ) from None
        if codes.min() < 0 or codes.max() >= len(categories):
            raise MsnbcFormatError(
                f"{path}: line {body_start + k + 1}: category code outside 1..{len(categories)}: rule 'msnbc_category_code'"
            )
        sequences.append(codes)
    return categories, sequences, body_start + 1


def msnbc_raw_events(path: str | Path, limit: int | None = None) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The MSNBC sequences as contract columns with the synthetic clock (before validation), and the
    category names (the page-type vocabulary)."""
    path = Path(path)
    categories, sequences, _ = parse_msnbc(path, limit)
    first = _first_session_number(path)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    n_sessions = len(sequences)
    number = first + np.arange(n_sessions)  # 1-based position in the full data set
    codes = np.concatenate(sequences) if n_sessions else np.zeros(0, np.int64)
    sess = np.repeat(np.arange(n_sessions), lengths)
    pos = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    start_s = np.floor((number - 1) * 86_400 / MSNBC_TOTAL_SESSIONS)
    us = MSNBC_DAY.value // 1000 + np.round((start_s[sess] + pos * MSNBC_EVENT_GAP_S) * 1e6).astype(np.int64)
    width = max(7, len(str(int(number[-1]) if n_sessions else 0)))
    session_ids = np.array([f"msnbc-{n:0{width}d}" for n in number], dtype=object)
    visitor_ids = np.array([f"msnbc-v{n:0{width}d}" for n in number], dtype=object)
    raw = pd.DataFrame(
        {
            C.SESSION_ID: session_ids[sess],
            C.EVENT_TIMESTAMP: pd.to_datetime(us, unit="us", utc=True),
            C.PAGE_TYPE: np.array(categories, dtype=object)[codes],
            C.VISITOR_ID: visitor_ids[sess],
            C.CHANNEL: "web",
        }
    )
    return raw, categories


def ingest_msnbc(
    path: str | Path,
    limit: int | None = None,
    *,
    max_session_events: int = 2000,
    out: str | Path | None = None,
) -> ValidationResult:
    """Convert and validate; returns the :class:`~clicks2intent.data.contract.ValidationResult` (events +
    report). With ``out``, the valid events are also written there (what ``c2i ingest msnbc`` does)."""
    raw, categories = msnbc_raw_events(path, limit)
    result = validate_events(
        raw,
        known_page_types=categories,
        max_session_events=max_session_events,
        now=max(pd.Timestamp.now(tz="UTC"), MSNBC_DAY),
    )
    if out is not None:
        write_events(result.events, out)
        logger.debug("MSNBC: %s events written to %s", f"{len(result.events):,}", out)
    return result


def read_msnbc(path: str | Path, limit: int | None = None, *, max_session_events: int = 2000) -> pd.DataFrame:
    """The first ``limit`` MSNBC sessions (all if None) as validated contract events.

    Used by the encoder and the ablation helpers. Rejected sessions (over ``max_session_events``) are
    left out here; :func:`ingest_msnbc` returns the report that counts them.
    """
    return ingest_msnbc(path, limit, max_session_events=max_session_events).events
