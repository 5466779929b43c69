"""The word-match rule: the reference every intent-label report shows beside the LLM labels.

Why: it is what a bank's analytics team writes in an afternoon — a table of words per intent, matched
against the page names and search queries a session shows. An LLM taxonomy that agrees with the hidden
true intents less than this table gives auditors nothing, so every report measures both on the same
sessions. The rule has no parameters to learn; the table is a constructor argument: the bank's
``keywords`` in its world declaration (``World.rule_keywords``: else the words of each tile and its pages).

Per session: count the words of its page names (``product_mortgage`` -> "product", "mortgage") and
queries that each intent's word set holds; the intent with most hits wins, ties go to the earlier table
entry, and a session without any hit gets ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

import pandas as pd

from clicks2intent.errors import ConfigError
from clicks2intent.names import columns as C

RULE_OTHER = "other"

_WORD = re.compile(r"[a-z0-9]+")


def words(text: object) -> list[str]:
    """Lower-case words of a page name or query (``_``, ``-``, ``/`` and spaces all separate)."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return []
    return _WORD.findall(str(text).lower())


class WordMatchRule:
    """Keyword table -> one label per session (scikit-learn conventions; nothing is learned)."""

    def __init__(self, keywords: Mapping[str, Iterable[str]], other: str = RULE_OTHER) -> None:
        self.keywords = keywords  # label -> words (a world's rule_keywords())
        self.other = other

    def fit(self, X: object = None, y: object = None) -> WordMatchRule:
        """Check the table and freeze it; returns self."""
        table = self.keywords
        if not table:
            raise ConfigError("WordMatchRule.keywords: the table must hold at least one label")
        self.table_: dict[str, frozenset[str]] = {}
        for label, ws in table.items():
            got = frozenset(w for item in ws for w in words(item))
            if not got:
                raise ConfigError(f"WordMatchRule.keywords[{label!r}]: needs at least one word")
            self.table_[str(label)] = got
        self.labels_ = [*self.table_, self.other]
        return self

    def scores(self, pages: Iterable[object], queries: Iterable[object] = ()) -> dict[str, int]:
        """Hits per label (table order) for one session's page names and queries."""
        if not hasattr(self, "table_"):
            self.fit()
        toks = [w for p in pages for w in words(p)] + [w for q in queries for w in words(q)]
        return {label: sum(t in ws for t in toks) for label, ws in self.table_.items()}

    def predict_session(self, pages: Iterable[object], queries: Iterable[object] = ()) -> str:
        scores = self.scores(pages, queries)
        best = max(scores.values())
        return self.other if best == 0 else next(k for k, v in scores.items() if v == best)

    def predict(self, events: pd.DataFrame, session_ids: Collection[str] | None = None) -> pd.Series:
        """Label per session of ``events`` (clickstream contract), indexed by session id (sorted)."""
        for col in (C.SESSION_ID, C.PAGE_TYPE):
            if col not in events.columns:
                raise ValueError(f"events: required column {col!r} is missing")
        ev = events
        if session_ids is not None:
            ev = ev[ev[C.SESSION_ID].astype(str).isin({str(s) for s in session_ids})]
        queries = ev[C.SEARCH_QUERY] if C.SEARCH_QUERY in ev.columns else pd.Series(None, index=ev.index)
        frame = pd.DataFrame(
            {
                "s": ev[C.SESSION_ID].astype(str),
                "p": ev[C.PAGE_TYPE],
                "q": queries.where(queries.notna(), None),
            }
        )
        out = {sid: self.predict_session(g["p"], g["q"]) for sid, g in frame.groupby("s", sort=True)}
        return pd.Series(out, name="rule_label", dtype=object)
