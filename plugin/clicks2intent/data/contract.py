"""The clickstream contract: one schema and one validation entry point for every data source.

Every reader (the simulator, a bank's raw log, the MSNBC public data) converts its input to the columns
in :mod:`clicks2intent.names.columns` and passes it through :func:`validate_events`. Validation never drops a
row silently: each row is kept, repaired (a documented, contract-allowed fix) or rejected with the rule
it broke, and the counts land in a :class:`ValidationReport`.

Rules (``rule`` names as they appear in reports):

* file level (raise :class:`ContractError`): ``required_column`` — session_id, event_timestamp and
  page_type must be present; ``readable_file`` — the file must be a parquet file or UTF-8 CSV that
  opens (empty, truncated, binary or badly quoted files are one clear error, never a traceback);
  ``scalar_column`` — a contract column holds one value per row, not lists or structs.
* rejected rows: ``empty_session_id``, ``invalid_id`` (session/visitor/customer ids follow
  :mod:`clicks2intent.common.text`: at most 128 characters, no whitespace, NUL, control, zero-width
  or bidi characters — the request schemas apply the same rule),
  ``unparseable_timestamp`` (text must be ISO 8601: ``YYYY-MM-DD[ T]hh:mm[:ss[.f]]`` with an optional
  ``Z``/``UTC``/``±hh:mm``; zone abbreviations such as ``PST`` are ambiguous and rejected, as are words
  such as ``now``), ``implausible_timestamp`` (outside :data:`~clicks2intent.common.times.EARLIEST` to a
  day after now), ``empty_page_type``, ``non_numeric_dwell``, ``negative_dwell``,
  ``unknown_channel`` (channel must be web/app when given), ``absurd_session_length`` (more than
  ``max_session_events`` events in one session: every row of that session is rejected, since a bot or a
  broken sessioniser produced it and a truncated copy would mislead the encoder).
* repairs: ``unknown_page_type`` → :data:`~clicks2intent.names.columns.OOV_PAGE_TYPE` (only when a vocabulary
  of known page types is given); ``naive_timestamp`` → read as UTC; ``pii_in_<column>`` → every
  free-text column (:data:`FREE_TEXT_COLUMNS`: search_query, referrer, device, page_type) is scrubbed
  to typed placeholders (:mod:`clicks2intent.data.pii`; a referrer loses its query string), invisible
  characters (NUL, controls, bidi) become spaces (``invisible_characters_in_<column>``), and text longer
  than :data:`MAX_TEXT_CHARS` is cut after scrubbing (``long_text_in_<column>``); a missing dwell stays
  null (the contract's "missing" value).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clicks2intent.common.files import atomic_output
from clicks2intent.common.text import valid_id
from clicks2intent.common.times import EARLIEST, MAX_FUTURE
from clicks2intent.data.pii import clean_text, scrub_referrer_with_counts, scrub_with_counts
from clicks2intent.errors import ArtifactError, ContractError
from clicks2intent.names import columns as C

if TYPE_CHECKING:
    from clicks2intent.data.world import World

__all__ = [
    "EVENT_SCHEMA",
    "ContractError",
    "Problem",
    "ValidationReport",
    "ValidationResult",
    "read_events",
    "read_page_types",
    "read_raw",
    "require_columns",
    "to_arrow",
    "validate_events",
    "validate_file",
    "write_events",
]

EVENT_SCHEMA = pa.schema(
    [
        pa.field(C.SESSION_ID, pa.string(), nullable=False),
        pa.field(C.EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(C.PAGE_TYPE, pa.string(), nullable=False),
        pa.field(C.VISITOR_ID, pa.string()),
        pa.field(C.CUSTOMER_ID, pa.string()),
        pa.field(C.CHANNEL, pa.string()),
        pa.field(C.DWELL_SECONDS, pa.float64()),
        pa.field(C.SEARCH_QUERY, pa.string()),
        pa.field(C.DEVICE, pa.string()),
        pa.field(C.REFERRER, pa.string()),
    ]
)

_STRING_COLUMNS = (
    C.SESSION_ID,
    C.PAGE_TYPE,
    C.VISITOR_ID,
    C.CUSTOMER_ID,
    C.CHANNEL,
    C.SEARCH_QUERY,
    C.DEVICE,
    C.REFERRER,
)
_ID_COLUMNS = (C.SESSION_ID, C.VISITOR_ID, C.CUSTOMER_ID)
# Free text scrubbed at ingest (page_type too: raw logs put URLs and ids there). Ids are keys, not text.
FREE_TEXT_COLUMNS: tuple[str, ...] = (C.SEARCH_QUERY, C.REFERRER, C.DEVICE, C.PAGE_TYPE)
MAX_TEXT_CHARS = 1024  # a search query or referrer; longer is abuse, not intent (cut after scrubbing)
_SCRUB_WINDOW = 4 * MAX_TEXT_CHARS  # text beyond this is never kept, so it is never scanned
# ISO 8601 date or date-time with an optional Z / UTC / GMT / numeric offset (nothing else is a time).
_ISO_TIMESTAMP = (
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?"
    r"\s?(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?$"
)
_HAS_ZONE = r"(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"
_MAX_EXAMPLES = 5


@dataclass
class Problem:
    """One rule that some rows broke (rejected) or needed (repaired)."""

    rule: str
    column: str
    action: str  # "rejected" or "repaired"
    count: int
    example_rows: list[int] = field(default_factory=list)  # 0-based positions in the input


@dataclass
class ValidationReport:
    """What validation did to an input: counts per outcome and per rule."""

    n_input: int = 0
    n_valid: int = 0
    n_rejected: int = 0
    n_repaired: int = 0
    n_sessions: int = 0
    pii_redactions: dict[str, int] = field(default_factory=dict)  # placeholder -> count, all columns
    pii_redactions_by_column: dict[str, dict[str, int]] = field(default_factory=dict)  # each column's own
    missing_optional_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # With a world declaration: how raw page values mapped to its page types (data.world.PageMappingReport).
    page_mapping: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        """Human-readable summary printed by ``c2i validate``."""
        lines = [
            f"rows: {self.n_input} read, {self.n_valid} valid, {self.n_rejected} rejected, "
            f"{self.n_repaired} repaired; sessions: {self.n_sessions}",
        ]
        for col, found in self.pii_redactions_by_column.items():
            red = ", ".join(f"{k} x{v}" for k, v in sorted(found.items()))
            lines.append(f"PII scrubbed from {col}: {red}")
        if self.missing_optional_columns:
            lines.append(f"optional columns absent (left null): {', '.join(self.missing_optional_columns)}")
        if self.ignored_columns:
            lines.append(
                f"columns outside the contract (not carried over): {', '.join(self.ignored_columns)}"
            )
        if self.page_mapping:
            from clicks2intent.data.world import PageMappingReport

            m = self.page_mapping
            lines.append(
                PageMappingReport(
                    n_events=m["n_events"],
                    n_oov=m["n_oov"],
                    top_unmatched=[tuple(t) for t in m["top_unmatched"]],
                    unused_types=m["unused_types"],
                ).to_text()
            )
        for p in self.problems:
            lines.append(
                f"{p.action} {p.count} row(s): column '{p.column}' rule '{p.rule}' (e.g. rows {p.example_rows})"
            )
        return "\n".join(lines)


@dataclass
class ValidationResult:
    """Clean events in the contract plus the report, and the rejected rows with their rule."""

    events: pd.DataFrame
    report: ValidationReport
    rejected: pd.DataFrame  # input position, rule, column (no raw values: they may hold PII)


def _as_clean_strings(series: pd.Series) -> pd.Series:
    """Strings stripped of surrounding blanks, with empty strings and nulls both as None.

    Ids and page types repeat heavily, so each distinct value is cleaned once and mapped back (faster
    than a per-element ``str.strip``: docs/decisions/0008-data-and-simulator.md).
    """
    try:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable cells: lists, dicts, arrays
        raise ContractError(
            f"column '{series.name}' holds nested values (lists or structs): rule 'scalar_column' — "
            "every contract column holds one string per row"
        ) from None
    cleaned = [_as_text(u).strip() or None for u in uniques]
    lookup = np.array([*cleaned, None], dtype=object)  # code -1 (null) picks the trailing None
    return pd.Series(lookup[codes], index=series.index, dtype=object)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict | list | tuple | np.ndarray):
        raise ContractError(
            f"a contract column holds a nested value {type(value).__name__}: rule 'scalar_column'"
        )
    return str(value)


def parse_timestamps(raw_ts: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """A timestamp column → (UTC ``datetime64[us]``, NaT where unparseable; naive-value mask).

    Text must be ISO 8601 (see the module docstring): ``pd.to_datetime`` alone reads ``"now"`` as the
    current time and drops an unknown ``"PST"`` to read the value as UTC."""
    if isinstance(raw_ts.dtype, pd.DatetimeTZDtype):
        return raw_ts.dt.tz_convert("UTC").astype("datetime64[us, UTC]"), np.zeros(len(raw_ts), dtype=bool)
    if pd.api.types.is_datetime64_dtype(raw_ts.dtype):
        return raw_ts.dt.tz_localize("UTC").astype("datetime64[us, UTC]"), raw_ts.notna().to_numpy()
    text = _as_clean_strings(raw_ts).astype("string")
    iso = text.str.fullmatch(_ISO_TIMESTAMP, case=False).fillna(False).astype(bool)
    ts = pd.Series(pd.NaT, index=raw_ts.index, dtype="datetime64[us, UTC]")
    if iso.any():
        parsed = pd.to_datetime(
            text[iso].str.replace(r"\s?(?:UTC|GMT)$", "Z", case=False, regex=True),
            utc=True,
            errors="coerce",
            format="mixed",
        )
        ts[iso] = parsed.astype("datetime64[us, UTC]")
    has_zone = text.str.contains(_HAS_ZONE, case=False, regex=True).fillna(False).astype(bool)
    return ts, (ts.notna() & ~has_zone).to_numpy()


def require_columns(columns: Collection[str], where: str | None = None) -> None:
    """Raise :class:`ContractError` (rule ``required_column``) unless every required column is present."""
    missing = [c for c in C.REQUIRED_EVENT_COLUMNS if c not in columns]
    if missing:
        prefix = f"{where}: " if where else ""
        raise ContractError(
            f"{prefix}missing required column(s) {missing}: rule 'required_column' — every event needs "
            f"{list(C.REQUIRED_EVENT_COLUMNS)}; got columns {list(columns)}"
        )


def validate_events(
    df: pd.DataFrame,
    *,
    known_page_types: Collection[str] | None = None,
    max_session_events: int = 2000,
    now: pd.Timestamp | None = None,
    world: World | None = None,
    session_sizes: pd.Series | None = None,
) -> ValidationResult:
    """Validate, repair and normalise raw events into the contract; see the module docstring for rules.

    ``world``: map raw page names / URLs to the bank's page types (unmatched → the OOV token; the
    report's ``page_mapping`` says how many and which). ``known_page_types`` (without a world) is the
    vocabulary a model was trained on: other page types become the OOV token. ``now`` bounds plausible
    timestamps (defaults to the current time; fixed in tests). ``session_sizes`` (session id → events,
    over the whole input): for a chunk of a larger input (:func:`validate_chunks`), whose sessions may
    continue in other chunks; default: counted in ``df``.
    """
    require_columns(df.columns)
    report = ValidationReport(n_input=len(df))
    report.missing_optional_columns = [c for c in C.OPTIONAL_EVENT_COLUMNS if c not in df.columns]
    report.ignored_columns = [c for c in df.columns if c not in C.EVENT_COLUMNS]
    now = now if now is not None else pd.Timestamp.now(tz="UTC")

    position = np.arange(len(df))
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    src = df.reset_index(drop=True)
    for col in src.columns:  # dictionary-encoded parquet columns arrive as categoricals
        if isinstance(src[col].dtype, pd.CategoricalDtype):
            src[col] = src[col].astype(object)
    for col in _STRING_COLUMNS:
        out[col] = _as_clean_strings(src[col]) if col in src.columns else None
    invisible = {col: _strip_invisible(out, col) for col in FREE_TEXT_COLUMNS}

    reject_rule = pd.Series(None, index=out.index, dtype=object)
    reject_col = pd.Series(None, index=out.index, dtype=object)
    repaired = np.zeros(len(df), dtype=bool)

    def reject(mask: pd.Series | np.ndarray, rule: str, column: str) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=out.index) & reject_rule.isna()
        if mask.any():
            reject_rule[mask] = rule
            reject_col[mask] = column
            report.problems.append(
                Problem(
                    rule,
                    column,
                    "rejected",
                    int(mask.sum()),
                    position[mask.to_numpy()][:_MAX_EXAMPLES].tolist(),
                )
            )

    def repair(mask: np.ndarray, rule: str, column: str) -> None:
        if mask.any():
            repaired[mask] = True
            report.problems.append(
                Problem(rule, column, "repaired", int(mask.sum()), position[mask][:_MAX_EXAMPLES].tolist())
            )

    reject(out[C.SESSION_ID].isna(), "empty_session_id", C.SESSION_ID)

    for col in _ID_COLUMNS:
        reject(_bad_ids(out[col]), "invalid_id", col)

    ts, naive = parse_timestamps(src[C.EVENT_TIMESTAMP])
    reject(ts.isna(), "unparseable_timestamp", C.EVENT_TIMESTAMP)
    reject((ts < EARLIEST) | (ts > now + MAX_FUTURE), "implausible_timestamp", C.EVENT_TIMESTAMP)
    out[C.EVENT_TIMESTAMP] = ts

    reject(out[C.PAGE_TYPE].isna(), "empty_page_type", C.PAGE_TYPE)

    if C.DWELL_SECONDS in src.columns:
        raw_dwell = src[C.DWELL_SECONDS]
        dwell = pd.to_numeric(raw_dwell, errors="coerce").astype("float64")
        given = raw_dwell.notna() & (raw_dwell.astype("string").str.strip() != "")
        reject(given & dwell.isna(), "non_numeric_dwell", C.DWELL_SECONDS)
        reject(dwell < 0, "negative_dwell", C.DWELL_SECONDS)
        reject(np.isinf(dwell.to_numpy()), "non_numeric_dwell", C.DWELL_SECONDS)
        out[C.DWELL_SECONDS] = dwell
    else:
        out[C.DWELL_SECONDS] = np.nan

    channel = out[C.CHANNEL].str.lower() if C.CHANNEL in src.columns else out[C.CHANNEL]
    reject(channel.notna() & ~channel.isin(C.CHANNELS), "unknown_channel", C.CHANNEL)
    out[C.CHANNEL] = channel

    if session_sizes is None:
        sizes = out.groupby(C.SESSION_ID, dropna=True)[C.SESSION_ID].transform("size")
    else:
        sizes = out[C.SESSION_ID].map(session_sizes)
    reject(sizes > max_session_events, "absurd_session_length", C.SESSION_ID)

    ok = reject_rule.isna().to_numpy()

    if world is not None:
        # Raw pages (URLs may carry PII in their query) become declared types before anything else reads them.
        mapped, mapping = world.mapper.map_values(out.loc[ok, C.PAGE_TYPE])
        out.loc[ok, C.PAGE_TYPE] = mapped
        report.page_mapping = mapping.to_dict()
        repair(ok & (out[C.PAGE_TYPE] == C.OOV_PAGE_TYPE).to_numpy(), "unknown_page_type", C.PAGE_TYPE)
    elif known_page_types is not None:
        unknown = ok & ~out[C.PAGE_TYPE].isin(set(known_page_types)).to_numpy()
        out.loc[unknown, C.PAGE_TYPE] = C.OOV_PAGE_TYPE
        repair(unknown, "unknown_page_type", C.PAGE_TYPE)
    repair(ok & naive, "naive_timestamp", C.EVENT_TIMESTAMP)

    redactions: dict[str, Counter[str]] = {col: Counter() for col in FREE_TEXT_COLUMNS}
    for col in FREE_TEXT_COLUMNS:
        repair(ok & invisible[col], f"invisible_characters_in_{col}", col)
        out[col] = _scrub_column(out[col], col, ok, redactions[col], repair)
    report.pii_redactions_by_column = {col: dict(found) for col, found in redactions.items() if found}
    report.pii_redactions = dict(sum(redactions.values(), Counter()))

    rejected = pd.DataFrame(
        {"row": position[~ok], "rule": reject_rule[~ok].to_numpy(), "column": reject_col[~ok].to_numpy()}
    )
    events = out.loc[ok, list(C.EVENT_COLUMNS)]
    events = events.sort_values([C.SESSION_ID, C.EVENT_TIMESTAMP], kind="stable").reset_index(drop=True)
    report.n_valid = int(ok.sum())
    report.n_rejected = int((~ok).sum())
    report.n_repaired = int(repaired[ok].sum())
    report.n_sessions = int(events[C.SESSION_ID].nunique())
    return ValidationResult(events=events, report=report, rejected=rejected)


# --- inputs bigger than memory: validation chunk by chunk ---------------------------------------------
CHUNK_ROWS = 500_000  # rows per validated chunk of a large file: bounds validation's memory (~1 GB a chunk)


class ReportMerger:
    """The reports of an input's chunks as the report of the whole input: counts summed, each rule once
    (in the order first met), its example rows the first five overall as positions in the whole input,
    PII counts per column and page-mapping counts summed (``top_unmatched``: merged from each chunk's top
    ten; ``unused_types``: the declared types no chunk saw)."""

    def __init__(self) -> None:
        self.report = ValidationReport()
        self._problems: dict[tuple[str, str, str], Problem] = {}
        self._pii: dict[str, Counter[str]] = {}
        self._mapping: dict[str, Any] = {}
        self._unmatched: Counter[str] = Counter()

    def add(self, part: ValidationReport, positions: np.ndarray) -> None:
        """``part`` validated the input rows at ``positions`` (ascending), in that order."""
        r = self.report
        r.n_input += part.n_input
        r.n_valid += part.n_valid
        r.n_rejected += part.n_rejected
        r.n_repaired += part.n_repaired
        r.missing_optional_columns = part.missing_optional_columns
        r.ignored_columns = part.ignored_columns
        for p in part.problems:
            rows = [int(positions[i]) for i in p.example_rows]
            seen = self._problems.get((p.rule, p.column, p.action))
            if seen is None:
                self._problems[(p.rule, p.column, p.action)] = Problem(
                    p.rule, p.column, p.action, p.count, rows
                )
            else:
                seen.count += p.count
                seen.example_rows = sorted(seen.example_rows + rows)[:_MAX_EXAMPLES]
        for col, found in part.pii_redactions_by_column.items():
            self._pii.setdefault(col, Counter()).update(found)
        m = part.page_mapping
        if m:
            if not self._mapping:
                self._mapping = {"n_events": 0, "n_oov": 0, "unused_types": list(m["unused_types"])}
            self._mapping["n_events"] += m["n_events"]
            self._mapping["n_oov"] += m["n_oov"]
            self._mapping["unused_types"] = [
                t for t in self._mapping["unused_types"] if t in m["unused_types"]
            ]
            self._unmatched.update({str(k): int(v) for k, v in m["top_unmatched"]})

    def result(self, n_sessions: int) -> ValidationReport:
        r = self.report
        r.n_sessions = n_sessions
        r.problems = list(self._problems.values())
        r.pii_redactions_by_column = {c: dict(self._pii[c]) for c in FREE_TEXT_COLUMNS if self._pii.get(c)}
        r.pii_redactions = dict(sum((Counter(v) for v in r.pii_redactions_by_column.values()), Counter()))
        if self._mapping:
            n, oov = self._mapping["n_events"], self._mapping["n_oov"]
            r.page_mapping = {
                "n_events": n,
                "n_oov": oov,
                "oov_share": round(oov / n, 6) if n else 0.0,
                "top_unmatched": [list(t) for t in self._unmatched.most_common(10)],
                "unused_types": self._mapping["unused_types"],
            }
        return r


def session_sizes(path: str | Path) -> pd.Series:
    """Events per (cleaned) session id of a parquet file, read from its ``session_id`` column alone."""
    col = pq.ParquetFile(path).read(columns=[C.SESSION_ID])[C.SESSION_ID].combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    counts = np.bincount(col.indices.fill_null(-1).to_numpy(zero_copy_only=False) + 1,
                         minlength=len(col.dictionary) + 1)[1:]  # fmt: skip
    cleaned = _as_clean_strings(pd.Series(col.dictionary.to_pandas(), dtype=object))
    return pd.Series(counts, index=cleaned.to_numpy()).groupby(level=0, dropna=True).sum()


def validate_chunks(
    chunks: Iterable[tuple[pd.DataFrame, np.ndarray]],
    *,
    keep_events: bool = True,
    sort: bool = True,
    **kwargs: Any,
) -> ValidationResult:
    """:func:`validate_events` chunk by chunk: ``chunks`` yields (raw rows, their positions in the whole
    input, ascending). Pass ``session_sizes`` (:func:`session_sizes`) unless every session lies in one
    chunk. The result equals one call on the whole input (tested): the events in the contract's order
    (session id, time; one stable sort of the chunks' outputs when they are not already in order), the
    rejected rows at their input positions, one merged report. ``keep_events=False``: the report and
    the rejected rows only (memory: one chunk)."""
    kwargs.setdefault("now", pd.Timestamp.now(tz="UTC"))  # one clock for every chunk
    merger = ReportMerger()
    events: list[pd.DataFrame] = []
    sessions: list[np.ndarray] = []
    rejected: list[pd.DataFrame] = []
    for df, positions in chunks:
        part = validate_events(df, **kwargs)
        merger.add(part.report, positions)
        if len(part.rejected):
            rejected.append(part.rejected.assign(row=positions[part.rejected["row"].to_numpy()]))
        if keep_events:
            events.append(part.events)
        else:
            sessions.append(pd.unique(part.events[C.SESSION_ID]))
    columns = list(C.EVENT_COLUMNS)
    out = pd.concat(events, ignore_index=True) if events else pd.DataFrame(columns=columns)
    if keep_events and sort and len(events) > 1 and not _in_contract_order(out):
        out = out.sort_values([C.SESSION_ID, C.EVENT_TIMESTAMP], kind="stable").reset_index(drop=True)
    n_sessions = (
        int(out[C.SESSION_ID].nunique())
        if keep_events
        else len(pd.unique(np.concatenate(sessions)))
        if sessions
        else 0
    )
    bad = (
        pd.concat(rejected, ignore_index=True)
        if rejected
        else pd.DataFrame({"row": [], "rule": [], "column": []})
    )
    return ValidationResult(events=out, report=merger.result(n_sessions), rejected=bad)


def _in_contract_order(events: pd.DataFrame) -> bool:
    """Rows already sorted by (session id, time), as a stable sort would leave them."""
    sid = events[C.SESSION_ID].to_numpy(dtype=object)
    ts = events[C.EVENT_TIMESTAMP].astype("int64").to_numpy()
    if len(sid) < 2:
        return True
    nxt, prev = sid[1:], sid[:-1]
    same = nxt == prev
    return bool(np.all(same | (nxt > prev)) and np.all(~same | (ts[1:] >= ts[:-1])))


def parquet_chunks(
    path: str | Path, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """A parquet file as (rows, positions) chunks of ``chunk_rows`` (:func:`validate_chunks`' input)."""
    start = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
        df = pa.Table.from_batches([batch]).to_pandas()
        yield df, np.arange(start, start + len(df))
        start += len(df)


def _bad_ids(ids: pd.Series) -> np.ndarray:
    """Ids that break :func:`clicks2intent.common.text.valid_id` (too long, blanks, NUL, bidi, ...)."""
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    bad = np.array([not valid_id(u) for u in uniques] + [False], dtype=bool)
    return bad[codes]


def _strip_invisible(out: pd.DataFrame, col: str) -> np.ndarray:
    """Turn NUL, control, zero-width and bidi characters of ``out[col]`` into spaces (before any
    emptiness check or PII pattern sees the text); the rows that changed."""
    codes, uniques = pd.factorize(out[col], use_na_sentinel=True)
    cleaned = [clean_text(u).strip() or None for u in uniques]
    changed = np.array([c != u for c, u in zip(cleaned, uniques, strict=True)] + [False], dtype=bool)
    out[col] = pd.Series(np.array([*cleaned, None], dtype=object)[codes], index=out.index, dtype=object)
    return changed[codes]


def _scrub_column(
    values: pd.Series, col: str, ok: np.ndarray, redactions: Counter[str], repair: Any
) -> pd.Series:
    """One free-text column scrubbed (each distinct text once: queries and referrers repeat a lot)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if not len(uniques):
        return values
    scrub = scrub_referrer_with_counts if col == C.REFERRER else scrub_with_counts
    n_rows = np.bincount(codes[(codes >= 0) & ok], minlength=len(uniques))
    cleaned, pii, long_text = [], [], []
    for text, n in zip(uniques, n_rows, strict=True):
        clean, found = scrub(text[:_SCRUB_WINDOW])
        clean = clean.strip()  # never empty: the text was not, and placeholders are not
        for k, v in found.items():
            redactions[k] += v * int(n)
        pii.append(bool(found))
        long_text.append(len(clean) > MAX_TEXT_CHARS or len(text) > _SCRUB_WINDOW)
        cleaned.append(clean[:MAX_TEXT_CHARS].strip() or clean[:MAX_TEXT_CHARS])
    has = codes >= 0
    for flags, rule in ((pii, f"pii_in_{col}"), (long_text, f"long_text_in_{col}")):
        mask = np.zeros(len(values), dtype=bool)
        mask[has] = np.asarray(flags, dtype=bool)[codes[has]]
        repair(ok & mask, rule, col)
    lookup = np.array([*cleaned, None], dtype=object)
    return pd.Series(lookup[codes], index=values.index, dtype=object)


def read_raw(path: str | Path) -> pd.DataFrame:
    """Read a parquet or CSV file as-is (CSV cells as strings, so validation sees what was written)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"events file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"} or path.is_dir():
        kind = "parquet file"
        read = lambda: pq.read_table(path).to_pandas()  # noqa: E731
    elif suffix in {".csv", ".gz"}:
        kind = "UTF-8 CSV file"
        read = lambda: pd.read_csv(  # noqa: E731
            path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig"
        )
    else:
        raise ContractError(f"unsupported events file type '{suffix}' for {path}: use .parquet or .csv")
    try:
        return read()
    except UnicodeDecodeError as err:
        reason = f"not UTF-8 text (byte {err.start}: {err.reason})"
    except pd.errors.EmptyDataError:
        reason = "empty (no header row)"
    except (pa.ArrowException, pd.errors.ParserError, OSError, ValueError, TypeError, EOFError) as err:
        reason = f"{type(err).__name__}: {_first_line(err)}"
    raise ContractError(f"{path}: cannot be read as a {kind}: rule 'readable_file' — {reason}")


@contextmanager
def readable_file(path: str | Path, kind: str = "parquet file") -> Iterator[None]:
    """Any reader's failure inside as one :class:`ContractError` (rule ``readable_file``) naming ``path``:
    for jobs that read events with their own column selection (e.g. the encoder's training reader)."""
    try:
        yield
    except UnicodeDecodeError as err:
        raise ContractError(
            f"{path}: cannot be read as a {kind}: rule 'readable_file' — not UTF-8 text (byte {err.start})"
        ) from None
    except (pa.ArrowException, OSError, ValueError, EOFError) as err:
        if isinstance(err, ContractError | ArtifactError):
            raise
        raise ContractError(
            f"{path}: cannot be read as a {kind}: rule 'readable_file' — {type(err).__name__}: {_first_line(err)}"
        ) from None


def _first_line(err: BaseException, width: int = 200) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:width]


def _chunked(path: str | Path) -> bool:
    """A parquet file too big to validate at once (validated chunk by chunk: same result, less memory)."""
    path = Path(path)
    if path.suffix.lower() not in {".parquet", ".pq"} or not path.is_file():
        return False
    try:
        return pq.ParquetFile(path).metadata.num_rows > CHUNK_ROWS
    except (pa.ArrowException, OSError):
        return False  # read_raw names the problem


def _validate_path(path: str | Path, keep_events: bool = True, **kwargs: Any) -> ValidationResult:
    """:func:`validate_events` of a file; a large parquet file chunk by chunk (:func:`validate_chunks`)."""
    if not _chunked(path):
        return validate_events(read_raw(path), **kwargs)
    with readable_file(path):
        sizes = session_sizes(path)
        return validate_chunks(parquet_chunks(path), keep_events=keep_events, session_sizes=sizes, **kwargs)


def read_events(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """Read and validate an events file; raises :class:`ContractError` if any row is rejected.

    Jobs that must not run on partial data use this; ``c2i validate`` shows what would be rejected.
    """
    result = _validate_path(path, **kwargs)
    if result.report.n_rejected:
        raise ContractError(f"{path}: {result.report.n_rejected} row(s) rejected\n{result.report.to_text()}")
    return result.events


def to_arrow(events: pd.DataFrame) -> pa.Table:
    """Convert contract events to a table with exactly :data:`EVENT_SCHEMA`."""
    return pa.Table.from_pandas(events[list(C.EVENT_COLUMNS)], schema=EVENT_SCHEMA, preserve_index=False)


def write_events(events: pd.DataFrame, path: str | Path) -> Path:
    """Write contract events as parquet with :data:`EVENT_SCHEMA` (the one on-disk form), atomically and
    by one job at a time (:func:`~clicks2intent.common.files.atomic_output`)."""
    path = Path(path)
    table = to_arrow(events)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
    return path


def check_oov_share(report: ValidationReport, world: World, what: str) -> None:
    """More unmatched page values than the world allows: one error naming the share and the top values."""
    m = report.page_mapping
    if m and m["n_events"] and m["oov_share"] > world.max_oov_share:
        top = ", ".join(f"{p} ({n:,})" for p, n in m["top_unmatched"][:3])
        raise ContractError(
            f"{what}: page_type: {m['oov_share']:.1%} of events match no page type of world {world.name!r} "
            f"(rule max_oov_share {world.max_oov_share:.0%}); most frequent unmatched: {top}. "
            f"Add patterns under pages in {world.source}"
        )


def read_page_types(path: str | Path) -> list[str]:
    """A vocabulary file: one known page type per line (blank lines ignored)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"page-type vocabulary not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def validate_file(
    path: str | Path,
    *,
    known_page_types: Collection[str] | None = None,
    max_session_events: int = 2000,
    rejects_path: str | Path | None = None,
    out_path: str | Path | None = None,
    world: World | None = None,
) -> ValidationResult:
    """Validate an events file (what ``c2i validate`` does); optionally write the rejected rows (CSV,
    only when there are any) and the valid events (parquet).

    With a ``world``, more unmatched page values than its ``max_oov_share`` is an error (nothing is
    written): the declaration does not describe these pages."""
    result = _validate_path(
        path,
        keep_events=bool(out_path),
        known_page_types=known_page_types,
        max_session_events=max_session_events,
        world=world,
    )
    if world is not None:
        check_oov_share(result.report, world, str(path))
    if rejects_path and len(result.rejected):
        with atomic_output(rejects_path) as tmp:
            result.rejected.to_csv(tmp, index=False)
    if out_path:
        write_events(result.events, out_path)
    return result
