"""Semi-supervised refinement of the LLM's labels: naive Bayes fitted by EM on every session's words.

Why: the labelled sample is mostly decided by the taxonomy's keyword rule (the small LLM is asked only
where the rule is unsure), and the rule gives a session a product label as soon as one of the product's
pages or words appears, so a visitor who browses past one product page is labelled with it. A student
that imitates those labels inherits the bias. Every other session of the period is unlabelled but shows
how pages and search words go together; multinomial naive Bayes fitted by expectation-maximisation on the
labelled sessions plus the unlabelled ones (Nigam, McCallum, Thrun & Mitchell, 2000, "Text
classification from labeled and unlabeled documents using EM") moves such a session to the label whose
words its pages and searches fit as a whole. Nothing but the LLM's labels and the sessions' own pages and
words is read (no truth, no outcome). Settings are the textbook ones, not tuned: add-one smoothing
(scikit-learn's ``MultinomialNB`` default), unlabelled sessions weigh as much as labelled ones (basic EM),
iterations until under 0.1 % of the labels change. Measurements: ``docs/decisions/0014-label-refinement.md``.

The refined labels are what the distilled classifier (:mod:`clicks2intent.intent.distill`) learns; the
naive Bayes model itself is not served.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from clicks2intent.intent.inputs import SessionText, frequent_words, query_words

logger = logging.getLogger(__name__)

PAGE_PREFIX, WORD_PREFIX = "page:", "query:"  # one vocabulary: a page name and a search word never collide


def session_counts(
    texts: Sequence[SessionText], min_query_df: int = 2, max_query_words: int = 5000
) -> tuple[Any, list[str]]:
    """Bag of each session's page views and search words → (``csr_matrix`` [n, vocabulary], vocabulary).

    Every page type seen is a column; a search word is one when at least ``min_query_df`` sessions use it
    (the ``max_query_words`` most used at most), as for the classifier's inputs."""
    from scipy import sparse

    word_df: Counter[str] = Counter()
    tokens: list[list[str]] = []
    for t in texts:
        ws = query_words(t.queries)
        word_df.update(set(ws))
        tokens.append([PAGE_PREFIX + p for p in t.pages] + [WORD_PREFIX + w for w in ws])
    words = {WORD_PREFIX + w for w in frequent_words(word_df, min_query_df, max_query_words)}
    pages = sorted({tok for toks in tokens for tok in toks if tok.startswith(PAGE_PREFIX)})
    vocabulary = pages + sorted(words)
    index = {tok: i for i, tok in enumerate(vocabulary)}
    rows, cols = [], []
    for r, toks in enumerate(tokens):
        for tok in toks:
            j = index.get(tok)
            if j is not None:
                rows.append(r)
                cols.append(j)
    X = sparse.csr_matrix(
        (np.ones(len(rows)), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
        shape=(len(texts), len(vocabulary)),
    )
    X.sum_duplicates()
    return X, vocabulary


class SemiSupervisedNB:
    """Multinomial naive Bayes fitted by EM on labelled and unlabelled rows (scikit-learn conventions).

    ``fit(X, y)``: ``X`` non-negative counts [n, vocabulary] (dense or sparse), ``y`` a label per row or
    None for an unlabelled row. Labelled rows keep their label in every M-step; unlabelled rows count with
    their posterior, weighted ``unlabelled_weight``. Fitted state ends in ``_``.
    """

    def __init__(
        self,
        alpha: float = 1.0,  # add-one smoothing: MultinomialNB's default
        unlabelled_weight: float = 1.0,  # basic EM: an unlabelled session weighs as a labelled one
        max_iter: int = 100,
        tol: float = 0.001,  # stop when under this share of the unlabelled rows change label
    ) -> None:
        self.alpha = alpha
        self.unlabelled_weight = unlabelled_weight
        self.max_iter = max_iter
        self.tol = tol

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "unlabelled_weight": self.unlabelled_weight,
            "max_iter": self.max_iter,
            "tol": self.tol,
        }

    def fit(self, X: Any, y: Sequence[str | None]) -> SemiSupervisedNB:
        from scipy import sparse

        X = sparse.csr_matrix(X, dtype=np.float64)
        y = np.asarray([None if v is None or v == "" else str(v) for v in y], dtype=object)
        if len(y) != X.shape[0]:
            raise ValueError(f"y: length {len(y)} does not match X rows {X.shape[0]}")
        if X.nnz and X.data.min() < 0:
            raise ValueError("X: counts must be non-negative")
        labelled = np.flatnonzero(y != None)  # noqa: E711 (element-wise)
        if len(labelled) == 0:
            raise ValueError("y: no labelled rows to start from")
        self.classes_ = np.unique(y[labelled].astype(str))
        code = {c: i for i, c in enumerate(self.classes_)}
        n, k = X.shape[0], len(self.classes_)
        seed = np.zeros((n, k))
        seed[labelled, [code[v] for v in y[labelled]]] = 1.0
        unlabelled = np.ones(n, dtype=bool)
        unlabelled[labelled] = False
        weight = np.where(unlabelled, self.unlabelled_weight, 1.0)
        self._m_step(X, seed, np.where(unlabelled, 0.0, 1.0))  # the labelled rows alone first
        previous = None
        # Nothing unlabelled: the labelled rows' fit is the answer (EM would not move it).
        self.n_iter_, self.converged_, self.changed_ = 0, not unlabelled.any(), 0.0
        for it in range(1, (self.max_iter if unlabelled.any() else 0) + 1):
            resp = self.predict_proba(X)
            current = resp.argmax(axis=1)
            resp[labelled] = seed[labelled]
            self._m_step(X, resp, weight)
            self.n_iter_ = it
            if previous is not None and unlabelled.any():
                self.changed_ = float(np.mean(current[unlabelled] != previous[unlabelled]))
                if self.changed_ < self.tol:
                    self.converged_ = True
                    break
            previous = current
        if not self.converged_ and self.max_iter > 0:
            logger.warning("label refinement: EM stopped at max_iter=%d with %.2f %% of labels still changing",
                           self.max_iter, 100 * self.changed_)  # fmt: skip
        return self

    def _m_step(self, X: Any, resp: np.ndarray, weight: np.ndarray) -> None:
        r = resp * weight[:, None]
        counts = np.asarray((X.T @ r).T) + self.alpha  # [k, vocabulary]
        self.feature_log_prob_ = np.log(counts) - np.log(counts.sum(axis=1, keepdims=True))
        mass = r.sum(axis=0) + 1.0  # add-one on the priors too: a label is never impossible
        self.class_log_prior_ = np.log(mass) - np.log(mass.sum())

    def predict_joint_log_proba(self, X: Any) -> np.ndarray:
        from scipy import sparse

        return (
            np.asarray(sparse.csr_matrix(X, dtype=np.float64) @ self.feature_log_prob_.T)
            + self.class_log_prior_
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        joint = self.predict_joint_log_proba(X)
        joint -= joint.max(axis=1, keepdims=True)
        p = np.exp(joint)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_joint_log_proba(X).argmax(axis=1)]


def refine_labels(
    counts: Any, labels: Sequence[str | None], **params: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """Refined label of every row of ``counts`` (:func:`session_counts`; ``labels``: the LLM's label, or
    None where unlabelled) and a summary (iterations, convergence, the share of labelled rows that kept
    their label)."""
    model = SemiSupervisedNB(**params).fit(counts, labels)
    refined = model.predict(counts)
    given = np.asarray([lab is not None and lab != "" for lab in labels], dtype=bool)
    original = np.asarray([str(lab) for lab in labels], dtype=object)
    summary = {
        "method": "multinomial naive Bayes, EM on labelled + unlabelled sessions",
        **model.get_params(),
        "vocabulary": int(counts.shape[1]),
        "n_labelled": int(given.sum()),
        "n_unlabelled": int((~given).sum()),
        "n_iter": model.n_iter_,
        "converged": model.converged_,
        "labelled_kept_share": float(np.mean(refined[given] == original[given])) if given.any() else None,
    }
    return refined, summary
