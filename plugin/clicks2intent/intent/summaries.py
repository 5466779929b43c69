"""Compact, deterministic text summaries of sessions: what the LLM reads instead of raw events.

Why: a 135M model loses the thread in a long list of raw events, and every token costs time. A summary
keeps what carries intent — the page path in order with dwell, the (PII-scrubbed) search queries and the
channel — collapses repeats, elides the middle of long sessions, and is byte-for-byte reproducible, so
prompts (and therefore the response cache) are stable across runs. Example::

    channel web; 5 pages: home 4s > mortgages 41s > mortgage rates x2 95s > mortgage calculator 3m;
    searches: "30 year fixed"
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

import pandas as pd

from clicks2intent.data.pii import scrub
from clicks2intent.names import columns as C

SUMMARY = "summary"
N_EVENTS = "n_events"
PHRASES = "phrases"  # the session's salient pages and searches: the options a small model chooses from
EVIDENCE = "evidence"  # every salient page view and search in event order, repeats kept (for scoring)


@dataclass(frozen=True)
class SummaryConfig:
    """Length limits of a summary; defaults keep one summary under ~80 tokens."""

    max_steps: int = 10  # page steps after collapsing repeats; longer paths keep head + tail
    head_steps: int = 3  # steps kept from the start of a long path (landing context)
    max_queries: int = 3  # distinct queries, in order of first use
    max_query_chars: int = 60  # a query longer than this is cut (it is a hint, not a document)
    max_phrases: int = 8  # salient phrases kept per session (enum options for grounded proposals)

    def __post_init__(self) -> None:
        if not 1 <= self.head_steps < self.max_steps:
            raise ValueError(f"head_steps: must be in [1, max_steps), got {self.head_steps}")


def _fmt_dwell(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return ""
    s = float(seconds)
    return f" {round(s)}s" if s < 120 else f" {round(s / 60)}m"


def _page_name(page: str) -> str:
    # "mortgage_rates" -> "mortgage rates": natural words tokenise better and read better to a small LM.
    return " ".join(str(page).replace("_", " ").replace("-", " ").replace("/", " ").split())


def summarize_session(
    pages: list[str],
    dwells: list[float | None],
    queries: list[str | None],
    channel: str | None,
    config: SummaryConfig = SummaryConfig(),
) -> str:
    """Summary of one session from its events in time order."""
    steps: list[tuple[str, int, float | None]] = []  # (page, repeat count, summed dwell)
    for page, dwell in zip(pages, dwells, strict=True):
        d = None if dwell is None or pd.isna(dwell) else float(dwell)
        if steps and steps[-1][0] == page:
            name, n, total = steps[-1]
            steps[-1] = (name, n + 1, total if d is None else (total or 0.0) + d)
        else:
            steps.append((page, 1, d))
    rendered = [f"{_page_name(p)}{f' x{n}' if n > 1 else ''}{_fmt_dwell(t)}" for p, n, t in steps]
    if len(rendered) > config.max_steps:
        tail = config.max_steps - config.head_steps
        skipped = len(rendered) - config.max_steps
        rendered = rendered[: config.head_steps] + [f"(+{skipped} more)"] + rendered[-tail:]
    seen: list[str] = []
    for q in queries:
        if q is None or pd.isna(q):
            continue
        text = " ".join(scrub(str(q)).split())[: config.max_query_chars]
        if text and text not in seen:
            seen.append(text)
    parts = []
    if channel:
        parts.append(f"channel {channel}")
    parts.append(f"{len(pages)} page{'s' if len(pages) != 1 else ''}: " + " > ".join(rendered))
    if seen:
        parts.append("searches: " + ", ".join(f'"{q}"' for q in seen[: config.max_queries]))
    return "; ".join(parts)


def session_phrases(
    pages: list[str],
    queries: list[str | None],
    generic: Collection[str] = frozenset(),
    config: SummaryConfig = SummaryConfig(),
    prefixes: Collection[str] = frozenset(),
) -> list[str]:
    """Salient phrases of a session, in order of first appearance: its non-generic page names, then its
    (scrubbed) searches. Generic pages (home, login, search… see :func:`generic_pages`) say nothing
    about a goal; what remains is what a visit was *about*. A leading word shared by many page names
    (``prefixes``, e.g. "product" of product_mortgage, product_savings…) is dropped: when every option
    starts with the same word, a small model's choice is made at the second token by its prior, not by
    the visit (docs/decisions/0010-intent-labelling.md)."""
    out: list[str] = []
    for page in pages:
        if page in generic:
            continue
        name = _page_name(page)
        first, _, rest = name.partition(" ")
        if first in prefixes and rest:
            name = rest
        if name and name not in out:
            out.append(name)
    for q in queries:
        if q is None or pd.isna(q):
            continue
        text = " ".join(scrub(str(q)).split())[: config.max_query_chars].lower()
        if text and text not in out:
            out.append(text)
    return out[: config.max_phrases]


def session_evidence(
    pages: list[str],
    queries: list[str | None],
    generic: Collection[str] = frozenset(),
    config: SummaryConfig = SummaryConfig(),
    prefixes: Collection[str] = frozenset(),
) -> list[str]:
    """Every non-generic page view and search of a session as a phrase, in event order, repeats kept
    and nothing cut: what the labeller's rule scores. Unlike :func:`session_phrases` (the few options
    a small model is shown), a goal's page seen three times counts three times, and the end of a long
    session, where a visit's purpose shows most, is not cut off."""
    out: list[str] = []
    for page, q in zip(pages, queries, strict=True):
        if page not in generic:
            name = _page_name(page)
            first, _, rest = name.partition(" ")
            out.append(rest if first in prefixes and rest else name)
        if q is not None and not pd.isna(q):
            text = " ".join(scrub(str(q)).split())[: config.max_query_chars].lower()
            if text:
                out.append(text)
    return [p for p in out if p]


def common_prefixes(page_types: Collection[str], min_pages: int = 3) -> frozenset[str]:
    """First words that start at least ``min_pages`` distinct multi-word page names (site-map
    families such as product_*): they distinguish nothing inside the family."""
    firsts = Counter(_page_name(p).split(" ", 1)[0] for p in set(page_types) if " " in _page_name(p))
    return frozenset(w for w, n in firsts.items() if n >= min_pages)


def generic_pages(events: pd.DataFrame, max_share: float = 0.15) -> frozenset[str]:
    """Page types seen in more than ``max_share`` of web sessions: navigation, not intent (the same
    idea as inverse document frequency; data-driven, so it works for any site map)."""
    if not 0 < max_share <= 1:
        raise ValueError(f"max_share: must be in (0, 1], got {max_share}")
    ev = events
    if C.CHANNEL in ev.columns:
        ev = ev[ev[C.CHANNEL].isna() | (ev[C.CHANNEL] == "web")]
    n = ev[C.SESSION_ID].nunique()
    if n == 0:
        return frozenset()
    share = ev.groupby(C.PAGE_TYPE)[C.SESSION_ID].nunique() / n
    return frozenset(str(p) for p in share[share > max_share].index)


def summarize_sessions(
    events: pd.DataFrame,
    session_ids: Collection[str] | None = None,
    web_only: bool = True,
    config: SummaryConfig = SummaryConfig(),
    generic: Collection[str] = frozenset(),
    prefixes: Collection[str] = frozenset(),
) -> pd.DataFrame:
    """One row per session: ``session_id, event_timestamp`` (session end), ``channel, n_events, summary,
    phrases`` (see :func:`session_phrases`: ``generic`` pages are left out, ``prefixes`` stripped) and
    ``evidence`` (see :func:`session_evidence`).

    ``web_only`` keeps sessions whose channel is ``web`` or unknown (intent is a web-visitor notion; data
    without a channel column, like MSNBC, is kept). Rows are sorted by session_id for determinism.
    """
    for col in C.REQUIRED_EVENT_COLUMNS:
        if col not in events.columns:
            raise ValueError(f"events: required column {col!r} is missing")

    def optional(col: str) -> object:
        return events[col].reset_index(drop=True) if col in events.columns else None

    df = pd.DataFrame(
        {
            C.SESSION_ID: events[C.SESSION_ID].astype(str).reset_index(drop=True),
            C.EVENT_TIMESTAMP: events[C.EVENT_TIMESTAMP].reset_index(drop=True),
            C.PAGE_TYPE: events[C.PAGE_TYPE].reset_index(drop=True),
            "_dwell": optional(C.DWELL_SECONDS),
            "_query": optional(C.SEARCH_QUERY),
            "_channel": optional(C.CHANNEL),
        }
    )
    if session_ids is not None:
        df = df[df[C.SESSION_ID].isin({str(s) for s in session_ids})]
    # Stable sort: events with equal timestamps keep file order (deterministic either way).
    df = df.sort_values([C.SESSION_ID, C.EVENT_TIMESTAMP], kind="stable")
    rows = []
    for sid, g in df.groupby(C.SESSION_ID, sort=True):
        channels = g["_channel"].dropna()
        channel = str(channels.iloc[0]) if len(channels) else None
        if web_only and channel not in (None, "web"):
            continue
        pages = g[C.PAGE_TYPE].astype(str).tolist()
        queries = g["_query"].tolist()
        rows.append(
            {
                C.SESSION_ID: sid,
                C.EVENT_TIMESTAMP: g[C.EVENT_TIMESTAMP].max(),
                C.CHANNEL: channel,
                N_EVENTS: len(g),
                SUMMARY: summarize_session(pages, g["_dwell"].tolist(), queries, channel, config),
                PHRASES: session_phrases(pages, queries, generic, config, prefixes),
                EVIDENCE: session_evidence(pages, queries, generic, config, prefixes),
            }
        )
    return pd.DataFrame(
        rows, columns=[C.SESSION_ID, C.EVENT_TIMESTAMP, C.CHANNEL, N_EVENTS, SUMMARY, PHRASES, EVIDENCE]
    )


def web_session_ids(events: pd.DataFrame) -> list[str]:
    """Sorted ids of sessions that are web (or of unknown channel): the population intent applies to."""
    if C.CHANNEL not in events.columns:
        return sorted(events[C.SESSION_ID].astype(str).unique())
    first = events.dropna(subset=[C.CHANNEL]).groupby(C.SESSION_ID)[C.CHANNEL].first()
    all_ids = pd.Index(events[C.SESSION_ID].astype(str).unique())
    non_web = set(first[first != "web"].index.astype(str))
    return sorted(i for i in all_ids if i not in non_web)
