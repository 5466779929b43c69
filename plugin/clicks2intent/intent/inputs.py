"""What the distilled intent classifier reads beside the embedding: the session's pages and search words.

Any bank has them: the page types of its world declaration (validation maps raw pages to them) and the
search queries of its sessions (PII-scrubbed). :class:`SessionInputs` turns a session's
:class:`SessionText` into three blocks of sparse features, each fitted on the LLM-labelled sessions only:

* **pages** — TF-IDF of the declared page types the session viewed (raw counts × smoothed idf, L2 row
  norm: scikit-learn's ``TfidfVectorizer`` defaults, reproduced here so that inference needs no
  estimator);
* **last page** — one-hot of the session's last declared page type (where it ended);
* **query words** — TF-IDF of the words of its search queries (words seen in at least ``min_query_df``
  labelled sessions; the vocabulary is part of the fitted state).

The same code featurises a batch of finished sessions (``c2i taxonomy distill``) and one in-flight
session (the on-demand view, ``/intent``), so offline and online labels agree (tested). Queries are
scrubbed again here: the batch events are scrubbed at validation, a Feast request may not be, and
:func:`clicks2intent.data.pii.scrub` leaves scrubbed text unchanged. Why these inputs:
``docs/decisions/0003-order-features-distilled-inputs-seeds.md``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.data.pii import scrub
from clicks2intent.intent.rules import words
from clicks2intent.names import columns as C

BLOCKS = ("pages", "last_page", "query_words")


@dataclass(frozen=True)
class SessionText:
    """One session's page types in time order and its search queries (empty strings and nulls dropped)."""

    pages: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]]) -> SessionText:
        """From contract event dicts already in time order (an in-flight session's request events)."""
        pages: list[str] = []
        queries: list[str] = []
        for e in events:
            page = e.get(C.PAGE_TYPE)
            if isinstance(page, str) and page:
                pages.append(page)
            q = e.get(C.SEARCH_QUERY)
            if isinstance(q, str) and q.strip():
                queries.append(q)
        return cls(tuple(pages), tuple(queries))


def session_texts(events: pd.DataFrame, session_ids: Iterable[str] | None = None) -> dict[str, SessionText]:
    """Finished sessions' events (clickstream contract) → :class:`SessionText` per session id.

    Events are ordered by time within a session (stable, as the encoder's featuriser orders them)."""
    for col in (C.SESSION_ID, C.EVENT_TIMESTAMP, C.PAGE_TYPE):
        if col not in events.columns:
            raise ValueError(f"events: required column {col!r} is missing")
    ev = events
    if session_ids is not None:
        ev = ev[ev[C.SESSION_ID].astype(str).isin({str(s) for s in session_ids})]
    cols = [C.SESSION_ID, C.EVENT_TIMESTAMP, C.PAGE_TYPE]
    ev = ev[cols + ([C.SEARCH_QUERY] if C.SEARCH_QUERY in ev.columns else [])]
    ev = ev.assign(**{C.SESSION_ID: ev[C.SESSION_ID].astype(str)})
    ev = ev.sort_values([C.SESSION_ID, C.EVENT_TIMESTAMP], kind="stable")
    sids = ev[C.SESSION_ID].to_numpy()
    pages = ev[C.PAGE_TYPE].to_numpy(dtype=object)
    queries = ev[C.SEARCH_QUERY].to_numpy(dtype=object) if C.SEARCH_QUERY in ev.columns else None
    out: dict[str, SessionText] = {}
    if len(sids) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    ends = np.r_[starts[1:], len(sids)]
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        p = tuple(x for x in pages[a:b] if isinstance(x, str) and x)
        q = () if queries is None else tuple(x for x in queries[a:b] if isinstance(x, str) and x.strip())
        out[str(sids[a])] = SessionText(p, q)
    return out


def query_words(queries: Iterable[str]) -> list[str]:
    """The words of a session's queries after PII scrubbing (the featuriser's and the fit's tokens)."""
    return [w for q in queries for w in words(scrub(q))]


def frequent_words(word_df: Mapping[str, int], min_df: int, max_words: int) -> list[str]:
    """The words used by at least ``min_df`` sessions, the ``max_words`` most used of them, sorted."""
    kept = sorted((w for w, c in word_df.items() if c >= min_df), key=lambda w: (-word_df[w], w))
    return sorted(kept[:max_words])


def _idf(df: np.ndarray, n: int) -> np.ndarray:
    """scikit-learn's smoothed idf: ln((1 + n) / (1 + df)) + 1."""
    return np.log((1.0 + n) / (1.0 + df)) + 1.0


@dataclass
class SessionInputs:
    """Fitted featuriser of :class:`SessionText` → sparse columns (see the module docstring).

    ``page_types``: the declared web page types (their order is the column order); None takes the page
    types seen in the fitted sessions. Fitted state ends in ``_``."""

    page_types: Sequence[str] | None = None
    min_query_df: int = 2  # a word searched in one labelled session only is noise, not a feature
    max_query_words: int = 5000  # bounds the classifier's width on a bank with many distinct searches

    def fit(self, texts: Sequence[SessionText]) -> SessionInputs:
        n = len(texts)
        if self.page_types is not None:
            self.page_types_ = list(dict.fromkeys(self.page_types))
        else:
            self.page_types_ = sorted({p for t in texts for p in t.pages})
        index = {p: i for i, p in enumerate(self.page_types_)}
        page_df = np.zeros(len(self.page_types_))
        word_df: Counter[str] = Counter()
        for t in texts:
            for i in {index[p] for p in t.pages if p in index}:
                page_df[i] += 1
            word_df.update(set(query_words(t.queries)))
        self.query_words_ = frequent_words(word_df, self.min_query_df, self.max_query_words)
        self.page_idf_ = _idf(page_df, n)
        self.query_idf_ = _idf(np.array([word_df[w] for w in self.query_words_], dtype=float), n)
        self._index()
        return self

    def _index(self) -> None:
        self._pages = {p: i for i, p in enumerate(self.page_types_)}
        self._words = {w: i for i, w in enumerate(self.query_words_)}

    @property
    def n_features(self) -> int:
        return 2 * len(self.page_types_) + len(self.query_words_)

    def feature_names(self) -> list[str]:
        return (
            [f"page:{p}" for p in self.page_types_]
            + [f"last_page:{p}" for p in self.page_types_]
            + [f"query:{w}" for w in self.query_words_]
        )

    def one(self, text: SessionText) -> tuple[np.ndarray, np.ndarray]:
        """``(column ids, values)`` of one session: the sparse row the classifier multiplies."""
        n_pages = len(self.page_types_)
        cols: list[int] = []
        vals: list[float] = []
        for block, offset, index, idf, tokens in (
            ("pages", 0, self._pages, self.page_idf_, text.pages),
            ("query_words", 2 * n_pages, self._words, self.query_idf_, query_words(text.queries)),
        ):
            counts = Counter(index[t] for t in tokens if t in index)
            if not counts:
                continue
            ids = sorted(counts)
            v = [counts[i] * float(idf[i]) for i in ids]
            norm = math.sqrt(sum(x * x for x in v))
            cols += [offset + i for i in ids]
            vals += [x / norm for x in v]
            if block == "pages" and text.pages and text.pages[-1] in index:
                cols.append(n_pages + index[text.pages[-1]])
                vals.append(1.0)
        return np.asarray(cols, dtype=np.int64), np.asarray(vals, dtype=np.float64)

    def transform(self, texts: Sequence[SessionText]) -> Any:
        """``scipy.sparse.csr_matrix`` ``[len(texts), n_features]`` (rows as :meth:`one` gives them)."""
        from scipy import sparse

        indptr = [0]
        indices: list[np.ndarray] = []
        data: list[np.ndarray] = []
        for t in texts:
            c, v = self.one(t)
            indices.append(c)
            data.append(v)
            indptr.append(indptr[-1] + len(c))
        return sparse.csr_matrix(
            (
                np.concatenate(data) if data else np.zeros(0),
                np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
                np.asarray(indptr),
            ),
            shape=(len(texts), self.n_features),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocks": list(BLOCKS),
            "min_query_df": self.min_query_df,
            "max_query_words": self.max_query_words,
            "page_types": list(self.page_types_),
            "page_idf": [float(x) for x in self.page_idf_],
            "query_words": list(self.query_words_),
            "query_idf": [float(x) for x in self.query_idf_],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionInputs:
        if list(data.get("blocks", [])) != list(BLOCKS):
            raise ValueError(
                f"session inputs: blocks {data.get('blocks')} are not the supported {list(BLOCKS)}"
            )
        out = cls(list(data["page_types"]), int(data["min_query_df"]), int(data["max_query_words"]))
        out.page_types_ = list(data["page_types"])
        out.page_idf_ = np.asarray(data["page_idf"], dtype=np.float64)
        out.query_words_ = list(data["query_words"])
        out.query_idf_ = np.asarray(data["query_idf"], dtype=np.float64)
        if len(out.page_idf_) != len(out.page_types_) or len(out.query_idf_) != len(out.query_words_):
            raise ValueError("session inputs: idf lengths do not match their vocabularies")
        out._index()
        return out
