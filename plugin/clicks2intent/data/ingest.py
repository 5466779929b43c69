"""Readers that convert clickstream exports and public data sets into the clickstream contract.

Every reader ends in :func:`clicks2intent.data.contract.validate_events`: rows are validated, repaired or
rejected with their rule, free text is scrubbed, and (with a world declaration) raw pages are mapped to
the bank's page types.

GA4 BigQuery export (``c2i ingest ga4``; the rules in full: ``docs/ga4.md``)
-----------------------------------------------------------------------------
The daily ``events_YYYYMMDD`` (and streaming ``events_intraday_YYYYMMDD``) tables, exported as
newline-delimited JSON (optionally gzipped; INT64 values as numbers or as BigQuery's JSON strings) or
parquet, nested records as exported. One row is one event; per row:

* ``page_view`` (web) and ``screen_view`` (app) rows become contract events: ``session_id`` =
  ``<user_pseudo_id>:<ga_session_id>`` (:func:`ga4_session_id`; ``ga_session_id`` is only unique per
  user), ``visitor_id`` = ``user_pseudo_id``, ``customer_id`` = ``user_id`` where set (not when it is no
  valid id or an e-mail address: counted), ``event_timestamp`` from ``event_timestamp`` (µs, UTC),
  ``page_type`` = the world's mapping of ``page_location`` (its path only) or ``firebase_screen``,
  ``channel`` from ``platform`` (WEB → web, ANDROID/IOS → app, else null and counted), ``device`` =
  ``device.category``, ``referrer`` = ``page_referrer`` (its query string dropped by the scrubber);
* ``search_query``: the ``search_term`` of the first ``view_search_results`` row at or after the page
  view and before the session's next page view (GA4 sends it right after the search page's
  ``page_view``, same URL); else the page URL's ``q``/``query``/``search``/``s`` parameter. A search term
  before any page view of its session is counted, not attached. Scrubbed like all free text;
* ``dwell_seconds``: the ``engagement_time_msec`` of the rows after the page view up to and including the
  session's next page view (GA4 reports the foreground time accumulated since the previous event, so the
  next page view carries the tail of this one); a page view with no such row gets the time to the next
  page view of its session (what Universal Analytics called time on page); the last one, null;
* identity links: each (``user_pseudo_id``, ``user_id``) pair, from any row, at the first time it was
  seen, ``method`` = ``ga4_user_id``;
* every other event name is counted in the report (rows per ``event_name``, and what each became).

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

import gzip
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clicks2intent.common.files import atomic_output, exclusive
from clicks2intent.common.text import valid_id
from clicks2intent.data.contract import (
    ValidationReport,
    ValidationResult,
    check_oov_share,
    readable_file,
    validate_events,
    write_events,
)
from clicks2intent.data.pii import EMAIL as EMAIL_PLACEHOLDER
from clicks2intent.data.pii import scrub
from clicks2intent.data.world import write_world
from clicks2intent.errors import ArtifactError, ConfigError, ContractError
from clicks2intent.names import columns as C
from clicks2intent.names.paths import ARTIFACTS, WORLD_FILE

if TYPE_CHECKING:
    from clicks2intent.data.world import World

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


# --- GA4 BigQuery export -------------------------------------------------------------------------------
GA4_PAGE_EVENTS: dict[str, str] = {"page_view": "page_location", "screen_view": "firebase_screen"}
GA4_SEARCH_EVENT = "view_search_results"
GA4_REQUIRED_FIELDS: tuple[str, ...] = ("event_name", "event_timestamp")
GA4_LINK_METHOD = "ga4_user_id"
GA4_SEARCH_URL_PARAMS: tuple[str, ...] = ("q", "query", "search", "s")  # GA4's own site-search defaults
GA4_CHANNELS: dict[str, str] = {"WEB": "web", "ANDROID": "app", "IOS": "app"}
GA4_BATCH_ROWS = 20_000  # export rows parsed at a time (a GA4 row is 1-3 kB of JSON)
GA4_SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".ndjson", ".parquet", ".pq")
_GA4_PARAMS: tuple[str, ...] = (
    "ga_session_id", "page_location", "firebase_screen", "page_referrer", "search_term", "engagement_time_msec",
)  # fmt: skip
# A data directory's own tables are never export files (ingest may write beside the export).
_DATA_DIR_TABLES = frozenset(
    p.name
    for p in (ARTIFACTS.events, ARTIFACTS.identity_links, ARTIFACTS.customers, ARTIFACTS.tile_impressions,
              ARTIFACTS.conversions)
)  # fmt: skip
_GA4_FILE_RE = re.compile(r"(?:^|[^a-z])events_(intraday_)?(\d{8})")
_KIND_PAGE, _KIND_SEARCH, _KIND_OTHER = 0, 1, 2  # page views sort first among events of the same µs
_KINDS: dict[str, int] = {**dict.fromkeys(GA4_PAGE_EVENTS, _KIND_PAGE), GA4_SEARCH_EVENT: _KIND_SEARCH}
_SLIM_SCHEMA = pa.schema(
    [
        ("kind", pa.int8()),
        ("name", pa.string()),
        ("ts", pa.int64()),
        ("upid", pa.string()),
        ("gsid", pa.string()),
        ("uid", pa.string()),
        ("page", pa.string()),
        ("referrer", pa.string()),
        ("term", pa.string()),
        ("eng", pa.float64()),
        ("platform", pa.string()),
        ("device", pa.string()),
    ]
)


@dataclass
class Ga4Report:
    """What ``c2i ingest ga4`` read and made of it; nothing is left out without a count here."""

    files: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)  # intraday files whose daily file was also given
    n_rows: int = 0
    event_names: dict[str, int] = field(default_factory=dict)
    engagement_rows: dict[str, int] = field(default_factory=dict)  # per event name: rows with engagement time
    n_page_views: int = 0
    n_screen_views: int = 0
    n_without_session: int = 0  # page views lacking user_pseudo_id or ga_session_id (rejected)
    n_sessions: int = 0
    n_visitors: int = 0
    n_customers: int = 0
    n_links: int = 0
    n_linked_visitors: int = 0
    dwell_from_engagement: int = 0
    dwell_from_gap: int = 0
    dwell_null: int = 0
    search_from_term: int = 0
    search_from_url: int = 0
    search_terms_unattached: int = 0
    unknown_platforms: dict[str, int] = field(default_factory=dict)
    user_ids_dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    validation: ValidationReport = field(default_factory=ValidationReport)
    outputs: dict[str, str] = field(default_factory=dict)

    def role(self, name: str) -> str:
        """What rows of one event name became."""
        if name in GA4_PAGE_EVENTS:
            return "events"
        if name == GA4_SEARCH_EVENT:
            return "search_query of their page view"
        if self.engagement_rows.get(name):
            return f"dwell_seconds ({self.engagement_rows[name]:,} with engagement_time_msec)"
        return "counted only"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["event_roles"] = {n: self.role(n) for n in self.event_names}
        return out

    def to_text(self) -> str:
        """The report ``c2i ingest ga4`` prints."""
        lines = [f"GA4 export: {len(self.files)} file(s), {self.n_rows:,} rows read"]
        if self.superseded:
            lines.append(
                f"intraday file(s) skipped, their day's daily file was given: {', '.join(self.superseded)}"
            )
        names = sorted(self.event_names.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append("rows per event_name: " + "; ".join(f"{n} {c:,} → {self.role(n)}" for n, c in names))
        lines.append(
            f"page views {self.n_page_views:,}, screen views {self.n_screen_views:,} → "
            f"{self.validation.n_valid:,} events in {self.n_sessions:,} sessions; visitors {self.n_visitors:,}, "
            f"customers {self.n_customers:,}, linked visitors {self.n_linked_visitors:,} "
            f"({self.n_links:,} identity links)"
        )
        if self.n_without_session:
            lines.append(
                f"{self.n_without_session:,} page view(s) without user_pseudo_id or ga_session_id "
                "(consent-mode pings): rejected as empty_session_id"
            )
        lines.append(
            f"dwell_seconds: {self.dwell_from_engagement:,} from engagement_time_msec, {self.dwell_from_gap:,} "
            f"from the time to the next page view, {self.dwell_null:,} null (last page view, no engagement time)"
        )
        lines.append(
            f"search_query: {self.search_from_term:,} from {GA4_SEARCH_EVENT}'s search_term, "
            f"{self.search_from_url:,} from the URL's {'/'.join(GA4_SEARCH_URL_PARAMS)} parameter; "
            f"{self.search_terms_unattached:,} search term(s) before any page view of their session (not attached)"
        )
        if self.unknown_platforms:
            lines.append(
                "platform not WEB/ANDROID/IOS (channel left null): "
                + ", ".join(f"{k} x{v:,}" for k, v in sorted(self.unknown_platforms.items()))
            )
        if self.user_ids_dropped:
            lines.append(
                "user_id not used as customer_id (event kept, no identity link): "
                + ", ".join(f"{k} x{v:,}" for k, v in sorted(self.user_ids_dropped.items()))
            )
        lines.append(self.validation.to_text())
        return "\n".join(lines)


@dataclass
class Ga4Result:
    """Contract events, identity links and the report of one GA4 ingest."""

    events: pd.DataFrame
    identity_links: pd.DataFrame
    report: Ga4Report
    rejected: pd.DataFrame


def ga4_session_id(user_pseudo_id: str, ga_session_id: str | int) -> str:
    """The contract session id of a GA4 session: ``ga_session_id`` is only unique per user (it is the
    session's start in seconds), so the id is ``<user_pseudo_id>:<ga_session_id>``."""
    return f"{user_pseudo_id}:{ga_session_id}"


def ga4_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """The export files to read (a directory stands for its export files, sorted) and the intraday files
    skipped because the same day's daily file is among them (GA4 deletes the intraday table once the
    daily one is complete: reading both would count that day twice)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f
                for f in p.iterdir()
                if f.is_file() and _ga4_suffix(f) in GA4_SUFFIXES and f.name not in _DATA_DIR_TABLES
            )
            if not found:
                raise ArtifactError(
                    f"{p}: no GA4 export file ({', '.join(GA4_SUFFIXES)}, optionally .gz) in it"
                )
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise ArtifactError(f"GA4 export file not found: {p}")
    daily = {m.group(2) for f in files if (m := _GA4_FILE_RE.search(f.name)) and not m.group(1)}
    skipped = [f for f in files if (m := _GA4_FILE_RE.search(f.name)) and m.group(1) and m.group(2) in daily]
    return [f for f in dict.fromkeys(files) if f not in skipped], skipped


def _ga4_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_ga4(path: Path, batch_rows: int = GA4_BATCH_ROWS) -> Iterator[tuple[pa.Table, Counter[str]]]:
    """One export file, batch by batch: the slim rows that matter (page and screen views, search
    results, events carrying engagement time) and every row's event name counted. Bad input is one
    :class:`ContractError` naming the file, the line or field and the rule."""
    suffix = _ga4_suffix(path)
    if suffix in {".parquet", ".pq"}:
        yield from _read_ga4_parquet(path, batch_rows)
    elif suffix in {".json", ".jsonl", ".ndjson"}:
        yield from _read_ga4_json(path, batch_rows)
    else:
        raise ContractError(
            f"{path}: unsupported GA4 export file type {suffix or '(none)'!r}: rule 'readable_file' — "
            f"use newline-delimited JSON or parquet ({', '.join(GA4_SUFFIXES)}, optionally .gz)"
        )


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"  # by content: a .json that is gzipped (or not) still reads


def _open_text(path: Path) -> IO[str]:
    return gzip.open(path, "rt", encoding="utf-8") if _is_gzip(path) else open(path, encoding="utf-8")


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _read_ga4_json(path: Path, batch_rows: int) -> Iterator[tuple[pa.Table, Counter[str]]]:
    """Arrow's JSON reader when the file's types are uniform (faster than row by row:
    docs/decisions/0008-data-and-simulator.md), else the row reader, which also names the line and the
    rule of any bad row."""
    fast = _read_ga4_json_arrow(path)
    if fast is not None:
        yield from fast
    else:
        yield from _read_ga4_json_rows(path, batch_rows)


def _ga4_json_schema(int_type: pa.DataType) -> pa.Schema:
    """The export fields the ingest reads; INT64 fields as BigQuery's JSON strings or as numbers."""
    value = pa.struct(
        [
            ("string_value", pa.string()),
            ("int_value", int_type),
            ("float_value", pa.float64()),
            ("double_value", pa.float64()),
        ]
    )
    return pa.schema(
        [
            ("event_name", pa.string()),
            ("event_timestamp", int_type),
            ("event_params", pa.list_(pa.struct([("key", pa.string()), ("value", value)]))),
            ("user_pseudo_id", pa.string()),
            ("user_id", pa.string()),
            ("platform", pa.string()),
            ("device", pa.struct([("category", pa.string())])),
        ]
    )


def _read_ga4_json_arrow(path: Path) -> list[tuple[pa.Table, Counter[str]]] | None:
    """The whole file's slim batches through Arrow, or None when the row reader must do it (mixed
    types, a bad row, an unreadable file, or a pyarrow without a streaming JSON reader)."""
    import pyarrow.json as pj

    open_json = getattr(pj, "open_json", None)
    if open_json is None:
        return None
    try:
        with _open_text(path) as fh:
            first = next((json.loads(line) for line in fh if line.strip()), None)
        if not isinstance(first, dict):
            return None
        int_type = pa.string() if isinstance(first.get("event_timestamp"), str) else pa.int64()
        parse = pj.ParseOptions(
            explicit_schema=_ga4_json_schema(int_type), unexpected_field_behavior="ignore"
        )
        out = []
        first_row = 1
        with _open_binary(path) as fh:
            for batch in open_json(fh, read_options=pj.ReadOptions(block_size=4 << 20), parse_options=parse):
                out.append(_slim_from_arrow(batch, path, first_row))
                first_row += batch.num_rows
    except (pa.ArrowException, ContractError, OSError, EOFError, ValueError) as err:
        logger.debug(
            "GA4: %s read row by row (%s)", path, str(err).splitlines()[0][:120] if str(err) else err
        )
        return None
    return out


def _read_ga4_json_rows(path: Path, batch_rows: int) -> Iterator[tuple[pa.Table, Counter[str]]]:
    with readable_file(path, "GA4 newline-delimited JSON export"), _open_text(path) as fh:
        builder = _SlimBuilder(path)
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ContractError(
                    f"{path}: line {line_no}: not a JSON object ({err.msg}): rule 'readable_file' — a GA4 "
                    "export is newline-delimited JSON, one event per line"
                ) from None
            builder.add(row, line_no)
            if builder.n_rows >= batch_rows:
                yield builder.flush()
        if builder.n_rows:
            yield builder.flush()


def _param_value(value: Any) -> Any:
    """An event_params value record → its one set value (string, int, double or float)."""
    if not isinstance(value, dict):
        return None
    for key in ("string_value", "int_value", "double_value", "float_value"):
        v = value.get(key)
        if v is not None:
            return v
    return None


def _as_micros(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():  # BigQuery writes INT64 as a JSON string
        return int(value)
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class _SlimBuilder:
    """Collects the slim columns of parsed JSON export rows (one batch at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: Counter[str] = Counter()
        self._reset()

    def _reset(self) -> None:
        self.cols: dict[str, list[Any]] = {f.name: [] for f in _SLIM_SCHEMA}
        self.n_rows = 0

    def add(self, row: Any, line_no: int) -> None:
        if not isinstance(row, dict):
            raise ContractError(
                f"{self.path}: line {line_no}: a {type(row).__name__}, not an event record: rule 'ga4_row' — "
                "each line of a GA4 export is one event object"
            )
        for key in GA4_REQUIRED_FIELDS:
            if row.get(key) is None:
                raise ContractError(
                    f"{self.path}: line {line_no}: missing field '{key}': rule 'ga4_required_field' — every GA4 "
                    f"export row has {' and '.join(GA4_REQUIRED_FIELDS)} (is this a GA4 BigQuery export?)"
                )
        name = str(row["event_name"])
        ts = _as_micros(row["event_timestamp"])
        if ts is None:
            raise ContractError(
                f"{self.path}: line {line_no}: event_timestamp {str(row['event_timestamp'])[:40]!r} is not an "
                "integer: rule 'ga4_timestamp_micros' — GA4 exports microseconds since the epoch, UTC"
            )
        self.n_rows += 1
        self.names[name] += 1
        raw_params = row.get("event_params") or ()
        params = {
            p.get("key"): _param_value(p.get("value"))
            for p in raw_params
            if isinstance(p, dict) and p.get("key") in _GA4_PARAMS
        }
        eng = _as_number(params.get("engagement_time_msec"))
        kind = _KINDS.get(name, _KIND_OTHER)
        uid = _text(row.get("user_id"))
        if kind == _KIND_OTHER and eng is None and uid is None:
            return  # counted; nothing else of it is used (identity comes from rows with a user_id)
        device = row.get("device")
        c = self.cols
        c["kind"].append(kind)
        c["name"].append(name)
        c["ts"].append(ts)
        c["upid"].append(_text(row.get("user_pseudo_id")))
        c["gsid"].append(_text(params.get("ga_session_id")))
        c["uid"].append(uid)
        c["page"].append(_text(params.get(GA4_PAGE_EVENTS[name])) if kind == _KIND_PAGE else None)
        c["referrer"].append(_text(params.get("page_referrer")) if kind == _KIND_PAGE else None)
        c["term"].append(_text(params.get("search_term")) if kind == _KIND_SEARCH else None)
        c["eng"].append(eng)
        c["platform"].append(_text(row.get("platform")) if kind == _KIND_PAGE else None)
        c["device"].append(
            _text(device.get("category")) if kind == _KIND_PAGE and isinstance(device, dict) else None
        )

    def flush(self) -> tuple[pa.Table, Counter[str]]:
        table = pa.table(self.cols, schema=_SLIM_SCHEMA)
        names, self.names = self.names, Counter()
        self._reset()
        return table, names


def _read_ga4_parquet(path: Path, batch_rows: int) -> Iterator[tuple[pa.Table, Counter[str]]]:
    what = "GA4 parquet export"
    with readable_file(path, what):
        pf = pq.ParquetFile(path)
        present = pf.schema_arrow.names
    missing = [k for k in GA4_REQUIRED_FIELDS if k not in present]
    if missing:
        raise ContractError(
            f"{path}: missing field '{missing[0]}': rule 'ga4_required_field' — every GA4 export row has "
            f"{' and '.join(GA4_REQUIRED_FIELDS)} (is this a GA4 BigQuery export? columns: {present[:8]})"
        )
    wanted = (
        "event_name",
        "event_timestamp",
        "event_params",
        "user_pseudo_id",
        "user_id",
        "platform",
        "device",
    )
    first_row = 1
    with readable_file(path, what):
        for batch in pf.iter_batches(batch_size=batch_rows, columns=[c for c in wanted if c in present]):
            yield _slim_from_arrow(batch, path, first_row)
            first_row += batch.num_rows


def _arrow_strings(values: pa.Array) -> pa.Array:
    return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())


def _arrow_params(params: pa.Array, n: int) -> dict[str, np.ndarray]:
    """event_params (list of key + value record) → one object array per wanted key (None where unset)."""
    out = {k: np.full(n, None, dtype=object) for k in _GA4_PARAMS}
    flat = pc.list_flatten(params)
    if not len(flat):
        return out
    parent = pc.list_parent_indices(params).to_numpy()
    keys = pc.struct_field(flat, "key")
    value = pc.struct_field(flat, "value")
    fields = [value.type.field(i).name for i in range(value.type.num_fields)]
    for key in _GA4_PARAMS:
        mask = pc.fill_null(pc.equal(keys, key), False)
        rows = parent[mask.to_numpy(zero_copy_only=False)]
        if not len(rows):
            continue
        vals = pc.filter(value, mask)
        parts = [
            _arrow_strings(pc.struct_field(vals, f))
            for f in ("string_value", "int_value", "double_value", "float_value")
            if f in fields
        ]
        merged = pc.coalesce(*parts) if parts else pa.nulls(len(rows), pa.string())
        out[key][rows] = merged.to_numpy(zero_copy_only=False)
    return out


def _slim_from_arrow(batch: pa.RecordBatch, path: Path, first_row: int) -> tuple[pa.Table, Counter[str]]:
    """A parquet batch with the export's nested structure → the slim rows (as :class:`_SlimBuilder`)."""
    n = batch.num_rows
    for key in GA4_REQUIRED_FIELDS:
        nulls = batch.column(key).null_count
        if nulls:
            row = first_row + int(
                np.flatnonzero(batch.column(key).is_null().to_numpy(zero_copy_only=False))[0]
            )
            raise ContractError(
                f"{path}: row {row}: missing field '{key}': rule 'ga4_required_field' — every GA4 export row "
                f"has {' and '.join(GA4_REQUIRED_FIELDS)}"
            )
    names = _arrow_strings(batch.column("event_name"))
    try:
        ts = pc.cast(batch.column("event_timestamp"), pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ContractError(
            f"{path}: event_timestamp of type {batch.column('event_timestamp').type} is not an integer: rule "
            "'ga4_timestamp_micros' — GA4 exports microseconds since the epoch, UTC"
        ) from None
    name_np = names.to_numpy(zero_copy_only=False)
    kind = np.full(n, _KIND_OTHER, dtype=np.int8)
    kind[np.isin(name_np, list(GA4_PAGE_EVENTS))] = _KIND_PAGE
    kind[name_np == GA4_SEARCH_EVENT] = _KIND_SEARCH
    schema_names = batch.schema.names
    params = (
        _arrow_params(batch.column("event_params"), n)
        if "event_params" in schema_names
        else {k: np.full(n, None, dtype=object) for k in _GA4_PARAMS}
    )

    def column(name: str) -> np.ndarray:
        if name not in schema_names:
            return np.full(n, None, dtype=object)
        return _arrow_strings(batch.column(name)).to_numpy(zero_copy_only=False)

    device = np.full(n, None, dtype=object)
    if "device" in schema_names and pa.types.is_struct(batch.column("device").type):
        dev = batch.column("device")
        if dev.type.get_field_index("category") >= 0:
            device = _arrow_strings(pc.struct_field(dev, "category")).to_numpy(zero_copy_only=False)
    eng = pd.to_numeric(pd.Series(params["engagement_time_msec"], dtype=object), errors="coerce")
    eng = eng.to_numpy(dtype=float)
    uid = column("user_id")
    keep = (kind != _KIND_OTHER) | ~np.isnan(eng) | pd.notna(uid)
    page_loc = np.where(name_np == "screen_view", params["firebase_screen"], params["page_location"])
    is_page = kind == _KIND_PAGE
    cols = {
        "kind": kind,
        "name": name_np,
        "ts": ts,
        "upid": column("user_pseudo_id"),
        "gsid": params["ga_session_id"],
        "uid": uid,
        "page": np.where(is_page, page_loc, None),
        "referrer": np.where(is_page, params["page_referrer"], None),
        "term": np.where(kind == _KIND_SEARCH, params["search_term"], None),
        "eng": eng,
        "platform": np.where(is_page, column("platform"), None),
        "device": np.where(is_page, device, None),
    }
    table = pa.table(
        {f.name: pa.array(cols[f.name][keep], f.type, from_pandas=True) for f in _SLIM_SCHEMA},
        schema=_SLIM_SCHEMA,
    )
    return table, Counter(pd.Series(name_np).value_counts().to_dict())


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _utc_micros(micros: np.ndarray) -> pd.Series:
    """Microseconds since the epoch → UTC timestamps (``datetime64[us]``: no nanosecond overflow for
    absurd values, which validation then rejects as implausible)."""
    return pd.Series(micros.astype("datetime64[us]")).dt.tz_localize("UTC")


def _url_search_query(url: Any) -> str | None:
    """A page URL's site-search parameter (``q``, ``query``, ``search`` or ``s``), if it has one."""
    if not isinstance(url, str) or "?" not in url:
        return None
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=False))
    return next((params[k] for k in GA4_SEARCH_URL_PARAMS if params.get(k, "").strip()), None)


def _usable_user_ids(uid: pa.Array, report: Ga4Report) -> np.ndarray:
    """Rows whose GA4 user_id can be the customer id. One that is no valid id, or an e-mail address (GA4
    forbids PII in user_id), is not used: the event stays, without a customer id or identity link
    (counted per reason). Each distinct user_id is judged once."""
    encoded = pc.dictionary_encode(uid)
    reasons: list[str | None] = []
    for u in encoded.dictionary.to_pylist():
        if not valid_id(u):
            reasons.append("invalid_id")
        elif EMAIL_PLACEHOLDER in scrub(u):
            reasons.append("pii_email")
        else:
            reasons.append(None)
    codes = pc.fill_null(encoded.indices, -1).to_numpy()
    usable = np.array([r is None for r in reasons] + [False], dtype=bool)[codes]
    rows_per_value = np.bincount(codes[codes >= 0], minlength=len(reasons))
    for reason, n in zip(reasons, rows_per_value, strict=True):
        if reason is not None and n:
            report.user_ids_dropped[reason] = report.user_ids_dropped.get(reason, 0) + int(n)
    return usable


def _ga4_sessions(slim: pa.Table) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The slim rows with their session id, the order that groups them by session, in time order within
    it (page views first at the same µs, then file order), and each ordered row's session code (-1: no
    user_pseudo_id or ga_session_id; those rows last). Sessions are grouped, not sorted by id:
    validation sorts the events."""
    sid = pc.binary_join_element_wise(slim["upid"], slim["gsid"], ":")
    slim = slim.append_column("sid", sid)
    # One dictionary for all chunks (large_string: an export's ids may pass 2 GB of text).
    codes = pc.dictionary_encode(pc.cast(sid, pa.large_string()).combine_chunks()).indices
    codes = pc.fill_null(codes, -1).to_numpy().astype(np.int64)
    key = np.where(codes < 0, codes.max(initial=0) + 1, codes)
    order = np.lexsort((np.arange(len(codes)), slim["kind"].to_numpy(), slim["ts"].to_numpy(), key))
    return slim, order, codes[order]


def _page_view_context(kind: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every row: the position of the latest page view at or before it in its session (-1: none);
    for page views: the position of the previous page view of the session (-1: the first)."""
    n = len(kind)
    pos = np.arange(n)
    is_pv = (kind == _KIND_PAGE) & (codes >= 0)
    starts = np.r_[True, codes[1:] != codes[:-1]] if n else np.zeros(0, bool)
    start_pos = np.maximum.accumulate(np.where(starts, pos, 0)) if n else pos
    latest = np.maximum.accumulate(np.where(is_pv, pos, -1)) if n else pos
    latest = np.where((latest >= start_pos) & (codes >= 0), latest, -1)
    before = np.r_[-1, latest[:-1]] if n else pos
    previous = np.where(is_pv & (before >= start_pos), before, -1)
    return latest, previous


class _OrderedRows:
    """A table read through a row order: only the rows asked for become Python objects."""

    def __init__(self, table: pa.Table, order: np.ndarray) -> None:
        self.table, self.order = table, order

    def objects(self, name: str, rows: np.ndarray) -> np.ndarray:
        return _objects(self.table[name], self.order[rows])

    def valid(self, name: str) -> np.ndarray:
        return self.table[name].is_valid().to_numpy(zero_copy_only=False)[self.order]


def _objects(column: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> np.ndarray:
    """Some rows of a string column as Python objects, one object per distinct value (ids, URLs and
    devices repeat: a str per row multiplied the memory, docs/decisions/0008-data-and-simulator.md).
    Only page views are ever materialised."""
    taken = column.take(pa.array(rows, pa.int64()))
    if isinstance(taken, pa.ChunkedArray):
        taken = taken.combine_chunks()
    encoded = pc.dictionary_encode(taken)
    values = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
    return values[pc.fill_null(encoded.indices, -1).to_numpy()]


def _search_queries(
    rows: _OrderedRows, kind: np.ndarray, latest: np.ndarray, pv: np.ndarray, report: Ga4Report
) -> np.ndarray:
    """Each page view's search_query: the first view_search_results' search_term attached to it (the
    latest page view of its session at or before it), else its URL's site-search parameter."""
    is_term = (kind == _KIND_SEARCH) & rows.valid("term")
    term_rows = np.flatnonzero(is_term)
    attached = term_rows[latest[term_rows] >= 0]
    report.search_terms_unattached = int(len(term_rows) - len(attached))
    terms = pd.Series(rows.objects("term", attached), index=latest[attached])
    terms = terms.groupby(level=0, sort=False).first()
    from_term = pd.Series(pv).map(terms).to_numpy(dtype=object)
    has_term = pd.notna(from_term)
    page = pd.Series(rows.objects("page", pv), dtype=object)
    codes_page, uniq_page = pd.factorize(page, use_na_sentinel=True)
    url_query = np.array([_url_search_query(u) for u in uniq_page] + [None], dtype=object)[codes_page]
    report.search_from_term = int(has_term.sum())
    report.search_from_url = int((~has_term & pd.notna(url_query)).sum())
    return np.where(has_term, from_term, url_query)


def _dwell(
    kind: np.ndarray,
    ts: np.ndarray,
    eng: np.ndarray,
    latest: np.ndarray,
    previous: np.ndarray,
    pv: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each page view's dwell_seconds: the engagement time reported after it up to and including the next
    page view (GA4 sends the time accumulated since the previous event), else the time to the next page
    view of its session, else null; and which page views had engagement time."""
    n = len(kind)
    has_eng = ~np.isnan(eng)
    target = np.where(kind == _KIND_PAGE, previous, latest)
    contrib = has_eng & (target >= 0)
    eng_sum = np.bincount(target[contrib], weights=eng[contrib], minlength=n)
    eng_seen = np.bincount(target[contrib], minlength=n) > 0
    nxt = np.full(n, -1)
    with_prev = pv[previous[pv] >= 0]
    nxt[previous[with_prev]] = with_prev
    gap = np.where(nxt[pv] >= 0, (ts[np.maximum(nxt[pv], 0)] - ts[pv]) / 1e6, np.nan)
    return np.where(eng_seen[pv], eng_sum[pv] / 1000.0, gap), eng_seen[pv]


def _ga4_contract_rows(slim: pa.Table, report: Ga4Report) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Slim export rows → raw contract rows (one per page or screen view, before validation) and the
    identity links; the rules are in the module docstring and docs/ga4.md."""
    slim, order, codes = _ga4_sessions(slim)
    kind = slim["kind"].to_numpy()[order]
    ts = slim["ts"].to_numpy()[order]
    eng = slim["eng"].to_numpy(zero_copy_only=False)[order]
    latest, previous = _page_view_context(kind, codes)
    pv = np.flatnonzero(kind == _KIND_PAGE)
    usable_uid = _usable_user_ids(pc.cast(slim["uid"], pa.large_string()).combine_chunks(), report)[order]
    rows = _OrderedRows(slim, order)  # columns read in session order, only the rows asked for

    pv_query = _search_queries(rows, kind, latest, pv, report)
    dwell, from_engagement = _dwell(kind, ts, eng, latest, previous, pv)
    report.dwell_from_engagement = int(from_engagement.sum())
    report.dwell_null = int(np.isnan(dwell).sum())
    report.dwell_from_gap = len(pv) - report.dwell_from_engagement - report.dwell_null

    platform = pd.Series(rows.objects("platform", pv), dtype=object)
    channel = platform.str.upper().map(GA4_CHANNELS)
    unknown = platform[platform.notna() & channel.isna()]
    report.unknown_platforms = {str(k): int(v) for k, v in unknown.value_counts().items()}
    names = rows.objects("name", pv)
    report.n_page_views = int((names == "page_view").sum())
    report.n_screen_views = int((names == "screen_view").sum())
    report.n_without_session = int((codes[pv] < 0).sum())
    eng_rows = np.flatnonzero(~np.isnan(eng) & (kind != _KIND_PAGE))
    report.engagement_rows = {
        str(c["values"]): int(c["counts"])
        for c in pc.value_counts(slim["name"].take(pa.array(order[eng_rows], pa.int64()))).to_pylist()
    }
    customer = rows.objects("uid", pv)
    customer[~usable_uid[pv]] = None
    raw = pd.DataFrame(
        {
            C.SESSION_ID: rows.objects("sid", pv),
            C.EVENT_TIMESTAMP: _utc_micros(ts[pv]),
            C.PAGE_TYPE: rows.objects("page", pv),
            C.VISITOR_ID: rows.objects("upid", pv),
            C.CUSTOMER_ID: customer,
            C.CHANNEL: channel.to_numpy(dtype=object),
            C.DWELL_SECONDS: dwell,
            C.SEARCH_QUERY: pv_query,
            C.DEVICE: rows.objects("device", pv),
            C.REFERRER: rows.objects("referrer", pv),
        }
    )
    linkable = np.flatnonzero(usable_uid & rows.valid("upid"))
    return raw, _ga4_links(rows.objects("upid", linkable), rows.objects("uid", linkable), ts[linkable])


def _ga4_links(upid: np.ndarray, uid: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
    """One identity link per (user_pseudo_id, user_id) pair, at the first time the pair was seen."""
    pairs = pd.DataFrame({C.VISITOR_ID: upid, C.CUSTOMER_ID: uid, "ts": ts})
    pairs = pairs[pairs[C.VISITOR_ID].map(lambda v: valid_id(str(v))).astype(bool)]
    first = pairs.groupby([C.VISITOR_ID, C.CUSTOMER_ID], sort=False)["ts"].min().reset_index()
    first = first.sort_values(["ts", C.VISITOR_ID, C.CUSTOMER_ID], kind="stable").reset_index(drop=True)
    return pd.DataFrame(
        {
            C.VISITOR_ID: first[C.VISITOR_ID].astype(object),
            C.CUSTOMER_ID: first[C.CUSTOMER_ID].astype(object),
            C.LINKED_AT: _utc_micros(first["ts"].to_numpy(np.int64)),
            C.LINK_METHOD: GA4_LINK_METHOD,
        }
    )


IDENTITY_LINK_SCHEMA = pa.schema(
    [
        pa.field(C.VISITOR_ID, pa.string(), nullable=False),
        pa.field(C.CUSTOMER_ID, pa.string(), nullable=False),
        pa.field(C.LINKED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(C.LINK_METHOD, pa.string(), nullable=False),
    ]
)


def ingest_ga4(
    paths: Sequence[str | Path] | str | Path,
    world: World,
    out_dir: str | Path | None = None,
    *,
    max_session_events: int = 2000,
    batch_rows: int = GA4_BATCH_ROWS,
    now: pd.Timestamp | None = None,
) -> Ga4Result:
    """A GA4 BigQuery export (daily/intraday tables as newline-delimited JSON, optionally gzipped, or
    parquet; files or directories) → contract events and identity links, through the world's page
    mapping and :func:`~clicks2intent.data.contract.validate_events`. With ``out_dir``: writes
    ``events.parquet``, ``identity_links.parquet`` and the declaration there (``c2i ingest ga4``).

    Files are read one at a time, batch by batch, keeping only the slim columns of the rows that matter
    (page and screen views, search results, engagement time, user ids): memory follows the page views,
    not the size of the export."""
    files, skipped = ga4_files([paths] if isinstance(paths, str | Path) else paths)
    report = Ga4Report(files=[str(f) for f in files], superseded=[str(f) for f in skipped])
    tables: list[pa.Table] = []
    names: Counter[str] = Counter()
    for f in files:
        n_before = sum(names.values())
        for table, counts in read_ga4(f, batch_rows):
            tables.append(table)
            names.update(counts)
        logger.debug("GA4: %s rows read from %s", f"{sum(names.values()) - n_before:,}", f)
    report.n_rows = sum(names.values())
    logger.info("GA4: %s rows read from %d file(s)", f"{report.n_rows:,}", len(files))
    report.event_names = dict(names.most_common())
    slim = pa.concat_tables(tables) if tables else _SLIM_SCHEMA.empty_table()
    del tables
    raw, links = _ga4_contract_rows(slim, report)
    del slim
    if raw.empty:
        seen = ", ".join(f"{k} ({v:,})" for k, v in names.most_common(5)) or "none"
        raise ContractError(
            f"{', '.join(report.files)}: no page_view or screen_view event in {report.n_rows:,} rows (event "
            f"names: {seen}): rule 'ga4_page_views' — export the web stream's events_* tables"
        )
    result = validate_events(raw, world=world, max_session_events=max_session_events, now=now)
    check_oov_share(result.report, world, f"GA4 export ({len(files)} file(s))")
    events = result.events
    linked = links[links[C.VISITOR_ID].isin(set(events[C.VISITOR_ID].dropna()))] if len(links) else links
    report.validation = result.report
    report.n_sessions = int(events[C.SESSION_ID].nunique())
    report.n_visitors = int(events[C.VISITOR_ID].nunique())
    report.n_customers = int(events[C.CUSTOMER_ID].nunique())
    report.n_links = len(links)
    report.n_linked_visitors = int(linked[C.VISITOR_ID].nunique()) if len(linked) else 0
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with exclusive(out):  # the three files of one export, not a mix of two jobs' files
            ev_path = write_events(events, out / ARTIFACTS.events.name)
            links_path = out / ARTIFACTS.identity_links.name
            with atomic_output(links_path) as tmp:
                table = pa.Table.from_pandas(links, schema=IDENTITY_LINK_SCHEMA, preserve_index=False)
                pq.write_table(table, tmp)
            world_path = write_world(world, out / WORLD_FILE)
        report.outputs = {"events": str(ev_path), "identity_links": str(links_path), "world": str(world_path)}
    return Ga4Result(events=events, identity_links=links, report=report, rejected=result.rejected)
