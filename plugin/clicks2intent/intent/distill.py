"""The distilled intent classifier: session embedding + what the session says → taxonomy label, in µs.

Why distil: the LLM labels a sample offline (seconds per session); serving must label every in-flight
session per request. A multinomial logistic regression trained on the LLM's labels keeps most of the
LLM's labelling at the cost of a sparse matrix-vector product. It reads the session embedding and,
when the distillation has the sessions' events, the session's declared page types, its last page and
its search words (:mod:`clicks2intent.intent.inputs`): the LLM labelled from those pages and words, and
the embedding alone does not carry the queries at all. Training uses scikit-learn; inference is plain
numpy on weights copied out of it, so the Feast on-demand view and the BentoML service load small
arrays and no estimator pipeline. Measurements: ``docs/decisions/0003-order-features-distilled-inputs-seeds.md``.

What it learns, by default, is the LLM's labels *refined*: naive Bayes fitted by EM over the pages and
search words of every embedded session, seeded by the LLM's labels (:mod:`clicks2intent.intent.refine`;
the labelled sample is mostly decided by the taxonomy's keywords, whose bias a pure imitation keeps).
``teacher="llm"`` learns the LLM's labels as they are.

The ``distill`` command trains on the LLM-labelled sessions, reports fidelity on a *time-based*
held-out part (the latest sessions: agreement and macro F1 against the LLM and against the refined
labels, single-session p50/p99 latency in µs), refits on all labelled sessions, labels every embedded session
(``session_intents.parquet``) and, on simulated data, measures AMI/NMI of LLM and distilled labels
against the simulator's hidden true intents.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.common.files import atomic_output, exclusive, write_text
from clicks2intent.errors import ArtifactError, ConfigError
from clicks2intent.intent.inputs import SessionInputs, SessionText, session_texts
from clicks2intent.names import columns as C
from clicks2intent.names.paths import ARTIFACTS, CLASSIFIER_FILE, CLASSIFIER_META_FILE, INTENTS_FILE

META_FILE = CLASSIFIER_META_FILE  # the name other stages know it by
__all__ = [
    "CLASSIFIER_FILE",
    "CLASSIFIER_META_FILE",
    "INTENTS_FILE",
    "META_FILE",
    "DistillConfig",
    "IntentClassifier",
    "distill",
    "render_report",
    "run_distillation",
    "truth_report",
    "write_intents",
]
logger = logging.getLogger(__name__)
FORMAT_VERSION = 2  # 2: optional session inputs (pages, last page, query words) beside the embedding
READABLE_FORMATS = (1, 2)  # 1: embedding only


class IntentClassifier:
    """Multinomial logistic regression with a numpy inference path (scikit-learn conventions).

    Parameters are stored as given; fitted state ends in ``_``. ``predict_one`` is the per-request path.
    Fitted with ``texts`` (one :class:`SessionText` per row), it also reads each session's pages and
    search words (``inputs_``, weights ``text_coef_``); every prediction then needs the session's text.
    ``coef_`` is always the embedding's block ``[n_classes, n_features_in_]``.
    """

    def __init__(
        self,
        # L2-normalised embeddings have small coordinates: weak regularisation, the best of a sweep on
        # held-out agreement (docs/decisions/0010-intent-labelling.md).
        C: float = 10.0,
        class_weight: str | None = None,  # None: follow the LLM's label frequencies (what we distil)
        max_iter: int = 2000,
        random_state: int | None = 0,
        page_types: list[str] | None = None,  # the declared web page types (None: those the texts show)
        min_query_df: int = 2,  # see SessionInputs
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state
        self.page_types = page_types
        self.min_query_df = min_query_df
        self.taxonomy_version: str = ""
        self.label_names: dict[str, str] = {}
        self.inputs_: SessionInputs | None = None
        self.text_coef_ = np.zeros((0, 0), dtype=np.float32)

    @property
    def reads_text(self) -> bool:
        """Whether predictions need the session's pages and queries (fitted with ``texts``)."""
        return self.inputs_ is not None

    # --- training ------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: Any,
        label_names: dict[str, str] | None = None,
        taxonomy_version: str = "",
        texts: list[SessionText] | None = None,
    ) -> IntentClassifier:
        """Fit on embeddings ``X`` [n, dim] (and the sessions' ``texts``, row-aligned) and label ids ``y``."""
        from scipy import sparse
        from sklearn.linear_model import LogisticRegression

        X = self._check_X(np.asarray(X, dtype=np.float64), fitted=False)
        y = np.asarray(y).astype(str)
        if len(y) != len(X):
            raise ValueError(f"y: length {len(y)} does not match X rows {len(X)}")
        if len(y) == 0:
            raise ValueError("y: no labelled rows to train on")
        if texts is not None and len(texts) != len(X):
            raise ValueError(f"texts: {len(texts)} sessions for {len(X)} embedding rows")
        self.inputs_ = None
        design: Any = X
        if texts is not None:
            self.inputs_ = SessionInputs(self.page_types, self.min_query_df).fit(texts)
            design = sparse.hstack([sparse.csr_matrix(X), self.inputs_.transform(texts)], format="csr")
        width = design.shape[1]
        classes = np.unique(y)
        if len(classes) == 1:
            # The LLM used one label only: a constant classifier is the honest distillation of that.
            coef, intercept = np.zeros((1, width)), np.zeros(1)
        else:
            lr = LogisticRegression(
                C=self.C,
                class_weight=self.class_weight,
                max_iter=self.max_iter,
                random_state=self.random_state,
            ).fit(design, y)
            classes = lr.classes_
            coef, intercept = lr.coef_, lr.intercept_
            if coef.shape[0] == 1:  # binary: sklearn keeps one row; make it a 2-class softmax
                coef = np.vstack([-coef / 2, coef / 2])
                intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        d = X.shape[1]
        self.coef_ = np.ascontiguousarray(coef[:, :d], dtype=np.float32)
        self.text_coef_ = np.ascontiguousarray(coef[:, d:], dtype=np.float32)
        self.intercept_ = np.ascontiguousarray(intercept, dtype=np.float32)
        self.classes_ = np.asarray(classes).astype(str)
        self.n_features_in_ = X.shape[1]
        self.label_names = {c: (label_names or {}).get(c, c) for c in self.classes_}
        self.taxonomy_version = taxonomy_version
        return self

    # --- inference -----------------------------------------------------------------------------
    def _check_X(self, X: np.ndarray, fitted: bool = True) -> np.ndarray:
        if X.ndim != 2:
            raise ValueError(f"X: must be 2-D [n_sessions, dim], got shape {X.shape}")
        if fitted and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X: embedding dimension {X.shape[1]} != trained dimension {self.n_features_in_}"
            )
        if not np.isfinite(X).all():
            raise ValueError("X: embeddings must be finite (found NaN/inf)")
        return X

    def _need_texts(self, texts: Any, n: int) -> None:
        if self.inputs_ is None:
            return
        if texts is None:
            raise ValueError(
                "this intent classifier reads the session's pages and search words: pass texts "
                "(clicks2intent.intent.inputs.SessionText) beside the embeddings"
            )
        if len(texts) != n:
            raise ValueError(f"texts: {len(texts)} sessions for {n} embedding rows")

    def decision_function(self, X: np.ndarray, texts: list[SessionText] | None = None) -> np.ndarray:
        X = self._check_X(np.asarray(X, dtype=np.float32))
        self._need_texts(texts, len(X))
        z = X @ self.coef_.T + self.intercept_
        if self.inputs_ is not None and texts is not None:
            z += np.asarray(self.inputs_.transform(texts) @ self.text_coef_.T.astype(np.float64), np.float32)
        return z

    def predict_proba(self, X: np.ndarray, texts: list[SessionText] | None = None) -> np.ndarray:
        """Class probabilities [n, n_classes], columns in ``classes_`` order."""
        z = self.decision_function(X, texts)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict(self, X: np.ndarray, texts: list[SessionText] | None = None) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X, texts), axis=1)]

    def predict_one(
        self, embedding: Any, k: int = 3, text: SessionText | None = None
    ) -> tuple[str, float, list[tuple[str, float]]]:
        """One session: (label id, confidence, top-k [(label id, p)]). No validation beyond shape, so it
        stays in the microseconds: this is the per-request path of the feature view and the service.
        ``text``: the session's pages and queries (required when :attr:`reads_text`)."""
        x = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if x.shape[0] != self.n_features_in_:
            raise ValueError(f"embedding: dimension {x.shape[0]} != trained dimension {self.n_features_in_}")
        z = self.coef_ @ x + self.intercept_
        if self.inputs_ is not None:
            if text is None:
                self._need_texts(None, 1)
            cols, vals = self.inputs_.one(text)
            if len(cols):
                z = z + self.text_coef_[:, cols] @ vals.astype(np.float32)
        z = np.exp(z - z.max())
        p = z / z.sum()
        top = np.argsort(-p)[:k]
        best = int(top[0])
        return str(self.classes_[best]), float(p[best]), [(str(self.classes_[i]), float(p[i])) for i in top]

    # --- persistence ---------------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            "C": self.C,
            "class_weight": self.class_weight,
            "max_iter": self.max_iter,
            "random_state": self.random_state,
            "page_types": self.page_types,
            "min_query_df": self.min_query_df,
        }

    def _inputs_meta(self) -> dict[str, Any]:
        """The session inputs' fitted state and weights (``meta.json``; absent for an embedding-only model)."""
        if self.inputs_ is None:
            return {}
        return {"inputs": self.inputs_.to_dict() | {"coef": self.text_coef_.tolist()}}

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Weights and metadata, each file atomically (a reader never sees half of one)."""
        directory = Path(directory)
        with atomic_output(directory / CLASSIFIER_FILE) as tmp, tmp.open("wb") as f:
            np.savez(f, coef=self.coef_, intercept=self.intercept_)  # a file object: no ".npz" added
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": "multinomial_logistic_regression",
            "params": self.get_params(),
            "classes": self.classes_.tolist(),
            "label_names": self.label_names,
            "taxonomy_version": self.taxonomy_version,
            "n_features_in": int(self.n_features_in_),
            **self._inputs_meta(),
            **(extra or {}),
        }
        write_text(directory / META_FILE, json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> IntentClassifier:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise ArtifactError(f"{meta_path} not found: run `c2i taxonomy distill` first")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format_version") not in READABLE_FORMATS:
            raise ValueError(
                f"{meta_path}: format_version {meta.get('format_version')} is not one of {list(READABLE_FORMATS)}"
            )
        arrays = np.load(directory / CLASSIFIER_FILE)
        clf = cls(**meta["params"])
        clf.coef_ = np.ascontiguousarray(arrays["coef"], dtype=np.float32)
        clf.intercept_ = np.ascontiguousarray(arrays["intercept"], dtype=np.float32)
        clf.classes_ = np.asarray(meta["classes"]).astype(str)
        clf.label_names = dict(meta["label_names"])
        clf.taxonomy_version = meta["taxonomy_version"]
        clf.n_features_in_ = int(meta["n_features_in"])
        if clf.coef_.shape != (len(clf.classes_), clf.n_features_in_):
            raise ValueError(
                f"{directory / CLASSIFIER_FILE}: weights shape {clf.coef_.shape} does not match classes/dim"
            )
        if "inputs" in meta:
            clf.inputs_ = SessionInputs.from_dict(meta["inputs"])
            clf.text_coef_ = np.ascontiguousarray(meta["inputs"]["coef"], dtype=np.float32)
            if clf.text_coef_.shape != (len(clf.classes_), clf.inputs_.n_features):
                raise ValueError(f"{meta_path}: session-input weights do not match classes/inputs")
        return clf


# --- evaluation helpers --------------------------------------------------------------------------
def embedding_matrix(frame: pd.DataFrame) -> np.ndarray:
    """Stack the ``embedding`` list column into float32 [n, dim]; ragged rows are an error."""
    lengths = frame[C.EMBEDDING].map(len)
    if lengths.nunique() > 1:
        raise ValueError(f"embeddings: rows have different dimensions {sorted(lengths.unique())[:5]}")
    if len(frame) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(frame[C.EMBEDDING].map(lambda v: np.asarray(v, dtype=np.float32)).to_list())


def latency_us(
    clf: IntentClassifier, X: np.ndarray, min_calls: int = 2000, texts: list[SessionText] | None = None
) -> dict[str, float]:
    """p50/p99 of one ``predict_one`` call (µs), cycling through real sessions after a warm-up."""
    if len(X) == 0:
        return {}
    texts = texts or [SessionText()] * len(X)
    for x, t in zip(X[:50], texts[:50], strict=False):
        clf.predict_one(x, text=t)
    n = max(min_calls, len(X))
    times = np.empty(n)
    for i in range(n):
        x, t = X[i % len(X)], texts[i % len(X)]
        t0 = time.perf_counter_ns()
        clf.predict_one(x, text=t)
        times[i] = time.perf_counter_ns() - t0
    times /= 1000.0
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)), "calls": n}


def agreement_metrics(y_ref: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    if len(y_ref) == 0:
        return {"n": 0}
    return {
        "n": int(len(y_ref)),
        "agreement": float(np.mean(y_ref == y_pred)),
        "macro_f1": float(f1_score(y_ref, y_pred, average="macro", zero_division=0)),
        "majority_baseline": float(pd.Series(y_ref).value_counts(normalize=True).iloc[0]),
        "agreement_interval": bootstrap_interval(lambda a, b: float(np.mean(a == b)), y_ref, y_pred),
        "macro_f1_interval": bootstrap_interval(
            lambda a, b: float(f1_score(a, b, average="macro", zero_division=0)), y_ref, y_pred
        ),
    }


def truth_metrics(truth: pd.Series, labels: pd.Series) -> dict[str, Any]:
    """AMI/NMI between label assignments and the hidden true intents, on sessions having both."""
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    joined = pd.concat([truth.rename("t"), labels.rename("l")], axis=1, join="inner").dropna()
    if len(joined) < 2:
        return {"n": int(len(joined))}
    return {
        "n": int(len(joined)),
        "ami": float(adjusted_mutual_info_score(joined["t"], joined["l"])),
        "nmi": float(normalized_mutual_info_score(joined["t"], joined["l"])),
        "n_true_intents": int(joined["t"].nunique()),
        "n_labels_used": int(joined["l"].nunique()),
    }


def bootstrap_interval(
    stat: Any, *columns: np.ndarray, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> list[float]:
    """Percentile interval of ``stat(*resampled columns)`` over session resamples (rows drawn with
    replacement, the same rows for every column, so a difference of two labelings is paired). Why here
    and not evaluation's bootstrap: the intent stage sits below evaluation and reports its own fidelity."""
    n = len(columns[0])
    if n < 2:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    vals = np.array([stat(*(c[idx] for c in columns)) for idx in rng.integers(0, n, size=(n_boot, n))])
    lo, hi = np.nanpercentile(vals, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return [float(lo), float(hi)]


def compare_to_truth(
    truth: pd.Series, labelings: dict[str, pd.Series], reference: str, n_boot: int = 100, seed: int = 0
) -> dict[str, Any]:
    """AMI against truth of each labeling on the sessions *all* of them label, with a 95 % interval,
    and the paired difference to ``reference`` (the word-match rule) with its interval: every labeling
    is scored on the same ``n_boot`` session resamples (each AMI is costly, so one set of resamples serves
    all intervals)."""
    from sklearn.metrics import adjusted_mutual_info_score as ami

    frame = pd.concat([truth.rename("_truth"), *(s.rename(k) for k, s in labelings.items())], axis=1)
    frame = frame.dropna()
    # Integer codes, not strings: AMI does not depend on the label names, and sklearn sorts each
    # resample's labels (sorting Python strings took most of distill on large samples; the figure is in
    # docs/decisions/0010-intent-labelling.md).
    t = pd.factorize(frame["_truth"].astype(str))[0]
    names = list(labelings)
    cols = {k: pd.factorize(frame[k].astype(str))[0] for k in names}
    out: dict[str, Any] = {"n": int(len(frame)), "reference": reference}
    if len(frame) < 2:
        return out
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(frame), size=(n_boot, len(frame)))
    boot = {k: np.array([ami(t[i], cols[k][i]) for i in draws]) for k in names}
    for k in names:
        m = truth_metrics(frame["_truth"], frame[k])
        m["ami_interval"] = [float(x) for x in np.percentile(boot[k], [2.5, 97.5])]
        if k != reference:
            m["ami_minus_reference"] = float(
                m["ami"] - truth_metrics(frame["_truth"], frame[reference])["ami"]
            )
            diff = boot[k] - boot[reference]
            m["ami_minus_reference_interval"] = [float(x) for x in np.percentile(diff, [2.5, 97.5])]
        out[k] = m
    return out


def distill(
    labels: pd.DataFrame,
    embeddings: pd.DataFrame,
    label_names: dict[str, str] | None = None,
    test_fraction: float = 0.25,
    lr_C: float | None = None,
    random_state: int = 0,
    texts: Mapping[str, SessionText] | None = None,
    page_types: list[str] | None = None,
    teacher: str = "refined",
) -> tuple[IntentClassifier, pd.DataFrame, dict[str, Any]]:
    """Train, evaluate on the latest ``test_fraction`` of labelled sessions, refit on all labelled
    sessions and label every embedded session. Returns (classifier, session intents, report).

    ``texts`` (session id → :class:`SessionText`, e.g. :func:`session_texts` of the events): the
    classifier also reads each session's pages and search words (``page_types``: the declared web page
    types; None: those the labelled sessions show). A session without events reads as empty text.

    ``teacher``: what the classifier learns on the labelled sessions. ``"refined"`` (with ``texts``): the
    LLM's labels refined by naive Bayes EM over the pages and search words of every embedded session
    (:mod:`clicks2intent.intent.refine`); ``"llm"``: the LLM's labels as they are. The held-out figures
    are computed with the held-out sessions' LLM labels hidden from the refinement."""
    from clicks2intent.intent.labelling import LABEL_ID, STATUS

    for col in (C.SESSION_ID, LABEL_ID, STATUS, C.TAXONOMY_VERSION):
        if col not in labels.columns:
            raise ValueError(f"labels: required column {col!r} is missing")
    for col in (C.SESSION_ID, C.EVENT_TIMESTAMP, C.EMBEDDING):
        if col not in embeddings.columns:
            raise ValueError(f"embeddings: required column {col!r} is missing")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction: must be in [0, 1), got {test_fraction}")
    if teacher not in DISTILL_TEACHERS:
        raise ValueError(f"teacher: must be one of {list(DISTILL_TEACHERS)}, got {teacher!r}")
    ok = labels[labels[STATUS] == "ok"]
    versions = sorted(ok[C.TAXONOMY_VERSION].dropna().unique())
    if len(versions) != 1:
        raise ValueError(f"labels: need exactly one taxonomy_version among ok rows, found {versions}")
    version = str(versions[0])
    emb = embeddings.drop_duplicates(C.SESSION_ID, keep="last").set_index(C.SESSION_ID)
    ok = ok.assign(**{C.SESSION_ID: ok[C.SESSION_ID].astype(str)})
    train_rows = ok.join(emb, on=C.SESSION_ID, how="inner").sort_values([C.EVENT_TIMESTAMP, C.SESSION_ID])
    if train_rows.empty:
        raise ValueError("labels/embeddings: no labelled session has an embedding (session_id mismatch?)")
    X = embedding_matrix(train_rows)
    y = train_rows[LABEL_ID].astype(str).to_numpy()
    params = {"random_state": random_state, **({"C": lr_C} if lr_C is not None else {})}
    if texts is not None:
        params["page_types"] = page_types

    def texts_of(ids: Any) -> list[SessionText] | None:
        return None if texts is None else [texts.get(str(s), SessionText()) for s in ids]

    T = texts_of(train_rows[C.SESSION_ID])
    n_test = int(round(len(y) * test_fraction))
    held_out: dict[str, Any] = {"n_train": len(y) - n_test, "n_test": n_test}
    refine = None
    if teacher == "refined":
        if texts is None:
            logger.warning("distill: no session texts, so the classifier learns the LLM labels unrefined")
        else:
            refine = _Refinement(
                emb.index.astype(str), texts, train_rows[C.SESSION_ID].astype(str).to_numpy()
            )
    if n_test >= 1 and len(y) - n_test >= 1:
        # Time split: train on earlier sessions, test on later ones (no leakage of a session or period).
        t_train, t_test = (None, None) if T is None else (T[:-n_test], T[-n_test:])
        y_train = y[:-n_test]
        if refine is not None:  # the held-out sessions' LLM labels take no part
            taught, _ = refine.labels(y, n_known=len(y) - n_test)
            y_train = taught[:-n_test]
        clf_eval = IntentClassifier(**params).fit(X[:-n_test], y_train, label_names, version, t_train)
        y_hat = clf_eval.predict(X[-n_test:], t_test)
        held_out.update(agreement_metrics(y[-n_test:], y_hat))
        held_out["test_labels_unseen_in_train"] = sorted(set(y[-n_test:]) - set(clf_eval.classes_))
        held_out["latency_us"] = latency_us(clf_eval, X[-n_test:], texts=t_test)
        if refine is not None:
            held_out["vs_refined_teacher"] = agreement_metrics(taught[-n_test:], y_hat)
    refinement: dict[str, Any] | None = None
    y_taught = y
    if refine is not None:
        y_taught, refinement = refine.labels(y, n_known=len(y))
    clf = IntentClassifier(**params).fit(X, y_taught, label_names, version, T)

    all_X = embedding_matrix(embeddings)
    if all_X.shape[1] != clf.n_features_in_:
        raise ValueError(f"embeddings: dimension {all_X.shape[1]} != labelled dimension {clf.n_features_in_}")
    all_T = texts_of(embeddings[C.SESSION_ID])
    t0 = time.perf_counter()
    proba = clf.predict_proba(all_X, all_T)
    batch_s = time.perf_counter() - t0
    best = proba.argmax(axis=1)
    intents = pd.DataFrame(
        {
            C.SESSION_ID: embeddings[C.SESSION_ID].astype(str).to_numpy(),
            C.EVENT_TIMESTAMP: embeddings[C.EVENT_TIMESTAMP].reset_index(drop=True),
            C.INTENT_LABEL: clf.classes_[best],
            C.INTENT_CONFIDENCE: proba[np.arange(len(best)), best].astype(np.float32),
            C.TAXONOMY_VERSION: version,
        }
    )
    report = {
        "taxonomy_version": version,
        "classifier": {
            "kind": "multinomial_logistic_regression",
            **clf.get_params(),
            "inputs": ["embedding"] + ([] if clf.inputs_ is None else ["pages", "last_page", "query_words"]),
            "n_query_words": 0 if clf.inputs_ is None else len(clf.inputs_.query_words_),
        },
        "teacher": "llm" if refinement is None else "refined",
        "refinement": refinement,
        "n_labels_rows": int(len(labels)),
        "n_labels_ok": int(len(ok)),
        "n_labelled_with_embedding": int(len(train_rows)),
        "n_labelled_missing_embedding": int(len(ok) - len(train_rows)),
        "n_sessions_without_events": (
            None if texts is None else int(sum(str(s) not in texts for s in embeddings[C.SESSION_ID]))
        ),
        "classes": clf.classes_.tolist(),
        "held_out": held_out,
        "final_model": f"refit on all {len(y)} labelled sessions",
        "n_sessions_labelled": int(len(intents)),
        "batch_sessions_per_s": float(len(intents) / batch_s) if batch_s > 0 else None,
        "distilled_distribution": intents[C.INTENT_LABEL].value_counts().to_dict(),
    }
    return clf, intents, report


class _Refinement:
    """The refinement's count matrix over every embedded session, built once for the held-out and the final
    fit; ``labels(y, n_known)``: the refined labels of the labelled rows (in ``y``'s order) when the first
    ``n_known`` of them give their LLM label and the rest are unlabelled."""

    def __init__(self, pool_ids: Any, texts: Mapping[str, SessionText], labelled_ids: np.ndarray) -> None:
        from clicks2intent.intent.refine import session_counts

        pool = [str(s) for s in pool_ids]
        self.counts, _ = session_counts([texts.get(s, SessionText()) for s in pool])
        row = {s: i for i, s in enumerate(pool)}
        self.rows = np.asarray([row[s] for s in labelled_ids], dtype=np.int64)
        self.n_pool = len(pool)

    def labels(self, y: np.ndarray, n_known: int) -> tuple[np.ndarray, dict[str, Any]]:
        from clicks2intent.intent.refine import refine_labels

        given: list[str | None] = [None] * self.n_pool
        for r, lab in zip(self.rows[:n_known].tolist(), y[:n_known].tolist(), strict=True):
            given[r] = lab
        refined, summary = refine_labels(self.counts, given)
        summary["refined_distribution_all_sessions"] = pd.Series(refined).value_counts().to_dict()
        return refined[self.rows], summary


def truth_report(
    truth: pd.DataFrame,
    labels: pd.DataFrame,
    intents: pd.DataFrame,
    embeddings: pd.DataFrame,
    n_clusters: int,
    seed: int,
    rule: pd.Series | None = None,
) -> dict[str, Any]:
    """Quality against the simulator's hidden intents, beside the word-match rule (``rule``: a label per
    session id, see :mod:`clicks2intent.intent.rules`) on the *same* sessions, plus an unsupervised
    reference (k-means on the embedding with as many clusters as labels)."""
    from sklearn.cluster import KMeans

    from clicks2intent.intent.labelling import LABEL_ID, STATUS

    if C.TRUE_INTENT not in truth.columns or C.SESSION_ID not in truth.columns:
        raise ValueError(f"truth: needs columns {C.SESSION_ID!r} and {C.TRUE_INTENT!r}")
    t = truth.drop_duplicates(C.SESSION_ID).set_index(truth[C.SESSION_ID].astype(str))[C.TRUE_INTENT]
    ok = labels[labels[STATUS] == "ok"]
    llm = pd.Series(ok[LABEL_ID].to_numpy(), index=ok[C.SESSION_ID].astype(str))
    dist = pd.Series(intents[C.INTENT_LABEL].to_numpy(), index=intents[C.SESSION_ID].astype(str))
    out: dict[str, Any] = {
        "llm_labels_vs_truth": truth_metrics(t, llm),
        "distilled_vs_truth_on_llm_sample": truth_metrics(t, dist.reindex(llm.index)),
        "distilled_vs_truth_all_sessions": truth_metrics(t, dist),
    }
    if rule is not None:
        rule = rule.copy()
        rule.index = rule.index.astype(str)
        out["rule_vs_truth_on_llm_sample"] = truth_metrics(t, rule.reindex(llm.index))
        out["rule_vs_truth_all_sessions"] = truth_metrics(t, rule.reindex(dist.index))
        out["on_llm_sample"] = compare_to_truth(
            t, {"rule": rule, "llm": llm, "distilled": dist.reindex(llm.index)}, "rule"
        )
        out["on_all_sessions"] = compare_to_truth(
            t, {"rule": rule.reindex(dist.index), "distilled": dist}, "rule"
        )
    sub = embeddings[embeddings[C.SESSION_ID].astype(str).isin(t.index)]
    if len(sub) > n_clusters >= 2:
        km = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(embedding_matrix(sub))
        out["reference_kmeans_on_embedding"] = truth_metrics(
            t, pd.Series(km.labels_, index=sub[C.SESSION_ID].astype(str).to_numpy())
        ) | {"k": n_clusters}
    return out


def render_report(report: dict[str, Any]) -> str:
    """The distillation report as Markdown (also written as ``report.md``)."""
    h = report["held_out"]
    lat = h.get("latency_us", {})
    lines = [
        f"# Distilled intent classifier ({report['taxonomy_version']})",
        "",
        f"- trained on {report['n_labelled_with_embedding']} LLM-labelled sessions ({report['final_model']})",
        f"- held-out (latest {h['n_test']} sessions): agreement with LLM {h.get('agreement', float('nan')):.3f}, "
        f"macro F1 {h.get('macro_f1', float('nan')):.3f} (majority baseline {h.get('majority_baseline', float('nan')):.3f})",
        f"- single-session latency: p50 {lat.get('p50', float('nan')):.1f} µs, p99 {lat.get('p99', float('nan')):.1f} µs",
        f"- labelled {report['n_sessions_labelled']} sessions",
    ]
    if "agreement_interval" in h:
        lo, hi = h["agreement_interval"]
        flo, fhi = h["macro_f1_interval"]
        lines.insert(
            4, f"  (95 % intervals: agreement [{lo:.3f}, {hi:.3f}], macro F1 [{flo:.3f}, {fhi:.3f}])"
        )
    ref = report.get("refinement")
    if ref:
        vs = h.get("vs_refined_teacher", {})
        lines[3:3] = [
            f"- taught the LLM labels refined by naive Bayes EM over {ref['n_labelled'] + ref['n_unlabelled']} "
            f"sessions' pages and search words ({ref['n_iter']} iterations, "
            f"{'converged' if ref['converged'] else 'not converged'}): {ref['labelled_kept_share']:.1%} of the "
            f"LLM labels kept; held-out agreement with the refined labels {vs.get('agreement', float('nan')):.3f}",
        ]
    truth = report.get("truth", {})
    for key, title in (("on_llm_sample", "LLM-labelled sample"), ("on_all_sessions", "all web sessions")):
        if key not in truth:
            continue
        cmp = truth[key]
        lines += [
            "",
            f"AMI against the hidden true intent, {title} ({cmp['n']} sessions, the same for every row; "
            f"reference: the word-match rule):",
            "",
            "| labels | labels used | AMI [95 %] | AMI − rule [95 %] |",
            "|---|---:|---:|---:|",
        ]
        for name, m in cmp.items():
            if not isinstance(m, dict) or "ami" not in m:
                continue
            lo, hi = m["ami_interval"]
            diff = ""
            if "ami_minus_reference" in m:
                dlo, dhi = m["ami_minus_reference_interval"]
                diff = f"{m['ami_minus_reference']:+.3f} [{dlo:+.3f}, {dhi:+.3f}]"
            lines.append(f"| {name} | {m['n_labels_used']} | {m['ami']:.3f} [{lo:.3f}, {hi:.3f}] | {diff} |")
    if truth:
        lines += ["", "| against hidden true intent | n | AMI | NMI |", "|---|---:|---:|---:|"]
        for name, m in truth.items():
            if "ami" not in m:
                continue
            lines.append(
                f"| {name} | {m.get('n', 0)} | {m.get('ami', float('nan')):.3f} | {m.get('nmi', float('nan')):.3f} |"
            )
    return "\n".join(lines) + "\n"


DISTILL_INPUTS = ("session", "embedding")
DISTILL_TEACHERS = ("refined", "llm")  # see distill()


@dataclass(frozen=True)
class DistillConfig:
    """One ``c2i taxonomy distill`` run: its inputs, its output directory and the classifier settings."""

    labels: Path = ARTIFACTS.llm_labels  # LLM labels (labelling.LABEL_COLUMNS)
    embeddings: Path = ARTIFACTS.embeddings  # session embeddings (session_id, event_timestamp, embedding)
    out: Path = ARTIFACTS.intent  # classifier directory; the session intents and reports go there too
    taxonomy: Path | None = None  # label names; None: taxonomy.yaml beside the labels (if there)
    truth: Path | None = None  # simulator truth (session_id, true_intent) for AMI/NMI; None: skipped
    events: Path | None = None  # events for the word-match rule beside the labels (with truth); None: no rule
    world: Path | None = (
        None  # the world.yaml whose keywords the rule uses; None: $C2I_WORLD or beside events
    )
    # What the classifier reads: "session" = the embedding + the session's declared page types, last page
    # and search words (needs events; without them it falls back to the embedding, logged), "embedding".
    inputs: str = "session"
    # What the classifier learns: "refined" = the LLM labels refined by naive Bayes EM over every session's
    # pages and search words (needs the session inputs; clicks2intent.intent.refine), "llm" = as they are.
    teacher: str = "refined"
    test_fraction: float = 0.25  # latest share of labelled sessions held out
    lr_C: float | None = None  # inverse regularisation (--C); None: IntentClassifier's default
    seed: int = 0

    def __post_init__(self) -> None:
        if self.inputs not in DISTILL_INPUTS:
            raise ConfigError(f"DistillConfig.inputs={self.inputs!r} must be one of {list(DISTILL_INPUTS)}")
        if self.teacher not in DISTILL_TEACHERS:
            raise ConfigError(
                f"DistillConfig.teacher={self.teacher!r} must be one of {list(DISTILL_TEACHERS)}"
            )

    @property
    def taxonomy_path(self) -> Path:
        return Path(self.taxonomy or Path(self.labels).with_name(ARTIFACTS.taxonomy.name))


def write_intents(intents: pd.DataFrame, path: str | Path) -> Path:
    """``session_intents.parquet`` with the Arrow types the feature build and Feast views expect."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            pa.field(C.SESSION_ID, pa.string()),
            pa.field(C.EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
            pa.field(C.INTENT_LABEL, pa.string()),
            pa.field(C.INTENT_CONFIDENCE, pa.float32()),
            pa.field(C.TAXONOMY_VERSION, pa.string()),
        ]
    )
    table = pa.Table.from_pandas(intents, preserve_index=False).cast(schema, safe=False)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def _session_inputs(
    config: DistillConfig, embeddings: pd.DataFrame
) -> tuple[pd.DataFrame | None, Any, dict[str, SessionText] | None]:
    """The events, their world and each embedded session's text (``None`` where not given/asked for)."""
    if not config.events:
        if config.inputs == "session":
            logger.warning("distill: no --events, so the classifier reads the embedding only")
        return None, None, None
    from clicks2intent.data.contract import read_events
    from clicks2intent.data.world import load_world, resolve_world_path

    world = load_world(resolve_world_path(config.world, Path(config.events).parent))
    events = read_events(config.events)
    if config.inputs != "session":
        return events, world, None
    return events, world, session_texts(events, embeddings[C.SESSION_ID].astype(str))


def run_distillation(config: DistillConfig) -> dict[str, Any]:
    """``c2i taxonomy distill``: :func:`distill` on the files of ``config``, then write the classifier,
    ``session_intents.parquet``, ``report.json`` and ``report.md`` to ``config.out``; returns the report."""
    from clicks2intent.intent.taxonomy import Taxonomy

    labels = pd.read_parquet(config.labels)
    embeddings = pd.read_parquet(config.embeddings)
    tax_path = config.taxonomy_path
    names = Taxonomy.load(tax_path).names if tax_path.is_file() else None
    events, world, texts = _session_inputs(config, embeddings)
    clf, intents, report = distill(
        labels, embeddings, names, config.test_fraction, config.lr_C, config.seed, texts,
        None if world is None else list(world.page_types), config.teacher,
    )  # fmt: skip
    if config.truth:
        truth = pd.read_parquet(config.truth)
        rule = None
        if events is not None and world is not None:
            from clicks2intent.intent.rules import WordMatchRule

            rule = WordMatchRule(world.rule_keywords()).fit().predict(events)
        report["truth"] = truth_report(
            truth, labels, intents, embeddings, max(len(clf.classes_), 2), config.seed, rule
        )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out):  # one distillation per directory: its files come from one run
        clf.save(out, extra={"trained_on": str(config.labels), "held_out": report["held_out"]})
        write_intents(intents, out / INTENTS_FILE)
        write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
        write_text(out / "report.md", render_report(report))
    return report
