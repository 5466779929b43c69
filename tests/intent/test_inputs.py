"""The distilled classifier's session inputs: pages, last page and search words beside the embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from clicks2intent.intent.distill import DistillConfig, IntentClassifier, distill
from clicks2intent.intent.inputs import SessionInputs, SessionText, query_words, session_texts
from clicks2intent.names import columns as C

PAGES = ["home", "rates", "product_a", "product_b", "faq"]
LABELS = ["a", "b", "other"]


def _sessions(n: int = 240, seed: int = 0) -> tuple[list[SessionText], np.ndarray, np.ndarray]:
    """Sessions whose label shows in their pages and searches, with a weakly informative embedding."""
    rng = np.random.default_rng(seed)
    y = np.array(LABELS)[rng.integers(0, 3, n)]
    texts, X = [], rng.normal(size=(n, 6)) * 0.5
    for i, label in enumerate(y):
        pages = list(rng.choice(["home", "rates", "faq"], size=int(rng.integers(1, 4))))
        queries: list[str] = []
        if label != "other":
            pages.append(f"product_{label}")
            if rng.random() < 0.5:
                queries.append(f"{label}x rates" if rng.random() < 0.5 else f"best {label}x")
        texts.append(SessionText(tuple(pages), tuple(queries)))
        X[i, LABELS.index(label)] += 0.3
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return texts, X.astype(np.float32), y


def test_inputs_are_tfidf_as_scikit_learn_computes_it_plus_the_last_page() -> None:
    texts, _, _ = _sessions(60)
    inputs = SessionInputs(PAGES, min_query_df=2).fit(texts)
    M = inputs.transform(texts).toarray()
    n = len(PAGES)
    pages = TfidfVectorizer(analyzer=lambda s: list(s), lowercase=False, vocabulary=PAGES)
    np.testing.assert_allclose(M[:, :n], pages.fit_transform([t.pages for t in texts]).toarray(), atol=1e-12)
    last = np.zeros((len(texts), n))
    last[np.arange(len(texts)), [PAGES.index(t.pages[-1]) for t in texts]] = 1.0
    np.testing.assert_array_equal(M[:, n : 2 * n], last)
    words = TfidfVectorizer(analyzer=lambda s: list(s), lowercase=False, min_df=2)
    ref = words.fit_transform([query_words(t.queries) for t in texts]).toarray()
    assert inputs.query_words_ == list(words.get_feature_names_out())
    np.testing.assert_allclose(M[:, 2 * n :], ref, atol=1e-12)
    cols, vals = inputs.one(texts[0])  # the per-request row is the batch row
    np.testing.assert_allclose(np.bincount(cols, vals, minlength=inputs.n_features), M[0], atol=1e-12)


def test_unknown_pages_and_words_read_as_nothing_and_queries_are_scrubbed() -> None:
    inputs = SessionInputs(PAGES, min_query_df=1).fit(
        [SessionText(("home",), ("mail <EMAIL> rates",)), SessionText(("rates",), ("email rates",))]
    )
    assert "email" in inputs.query_words_ and "gmail" not in inputs.query_words_
    raw, scrubbed = (
        SessionText(("home",), ("mail a.b@gmail.com rates",)),
        SessionText(("home",), ("mail <EMAIL> rates",)),
    )
    np.testing.assert_array_equal(inputs.one(raw)[1], inputs.one(scrubbed)[1])
    cols, vals = inputs.one(SessionText(("oov_page", "unknown"), ("zzz",)))
    assert len(cols) == len(vals) == 0
    assert SessionInputs.from_dict(inputs.to_dict()).to_dict() == inputs.to_dict()


def test_classifier_with_session_inputs_matches_scikit_learn_and_round_trips(tmp_path: Path) -> None:
    texts, X, y = _sessions()
    clf = IntentClassifier(C=5.0, page_types=PAGES).fit(X, y, texts=texts)
    design = sparse.hstack([sparse.csr_matrix(X.astype(np.float64)), clf.inputs_.transform(texts)]).tocsr()
    ref = LogisticRegression(C=5.0, max_iter=2000, random_state=0).fit(design, y)
    np.testing.assert_allclose(clf.predict_proba(X, texts), ref.predict_proba(design), atol=1e-4)
    assert clf.reads_text and clf.coef_.shape == (3, X.shape[1])
    p = clf.predict_proba(X[:5], texts[:5])
    for x, t, row in zip(X[:5], texts[:5], p, strict=True):
        label, conf, _ = clf.predict_one(x, text=t)
        assert label == clf.classes_[row.argmax()] and conf == pytest.approx(row.max(), abs=1e-5)
    with pytest.raises(ValueError, match="pages and search words"):
        clf.predict_one(X[0])
    with pytest.raises(ValueError, match="pages and search words"):
        clf.predict_proba(X)
    loaded = IntentClassifier.load(clf.save(tmp_path / "intent"))
    np.testing.assert_array_equal(loaded.predict_proba(X, texts), clf.predict_proba(X, texts))
    assert loaded.inputs_.to_dict() == clf.inputs_.to_dict() and loaded.get_params() == clf.get_params()
    # The pages and words carry the label here; the embedding alone carries less of it.
    alone = IntentClassifier(C=5.0).fit(X[:180], y[:180])
    both = IntentClassifier(C=5.0, page_types=PAGES).fit(X[:180], y[:180], texts=texts[:180])
    assert np.mean(both.predict(X[180:], texts[180:]) == y[180:]) > np.mean(alone.predict(X[180:]) == y[180:])


def test_session_texts_order_events_by_time_per_session() -> None:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    events = pd.DataFrame(
        {
            C.SESSION_ID: ["s2", "s1", "s1", "s1", "s2"],
            C.EVENT_TIMESTAMP: [
                t0,
                t0 + pd.Timedelta("2min"),
                t0,
                t0 + pd.Timedelta("1min"),
                t0 - pd.Timedelta("1min"),
            ],
            C.PAGE_TYPE: ["faq", "product_a", "home", "search", "home"],
            C.SEARCH_QUERY: [None, None, None, "a rates", ""],
        }
    )
    texts = session_texts(events)
    assert texts == {
        "s1": SessionText(("home", "search", "product_a"), ("a rates",)),
        "s2": SessionText(("home", "faq"), ()),
    }
    assert session_texts(events, ["s2"]) == {"s2": texts["s2"]}
    records = events[events[C.SESSION_ID] == "s1"].sort_values(C.EVENT_TIMESTAMP).to_dict("records")
    assert SessionText.from_events(records) == texts["s1"]


def test_distill_reads_the_sessions_text_when_given() -> None:
    texts, X, y = _sessions(300)
    ids = [f"s{i:04d}" for i in range(len(X))]
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(X)), unit="min")
    emb = pd.DataFrame({C.SESSION_ID: ids, C.EVENT_TIMESTAMP: ts, C.EMBEDDING: list(X)})
    labels = pd.DataFrame(
        {C.SESSION_ID: ids, "label_id": y, "status": "ok", C.TAXONOMY_VERSION: "v1", "model": "m"}
    )
    by_id = dict(zip(ids, texts, strict=True))
    by_id.pop(ids[-1])  # an embedded session without events reads as empty text
    clf, intents, report = distill(labels, emb, test_fraction=0.2, texts=by_id, page_types=PAGES)
    plain, _, plain_report = distill(labels, emb, test_fraction=0.2)
    assert clf.reads_text and not plain.reads_text
    assert report["classifier"]["inputs"] == ["embedding", "pages", "last_page", "query_words"]
    assert report["n_sessions_without_events"] == 1 and len(intents) == len(emb)
    assert report["held_out"]["agreement"] > plain_report["held_out"]["agreement"]
    empty = clf.predict_proba(X[-1:], [SessionText()])[0]
    assert intents[C.INTENT_CONFIDENCE].iloc[-1] == pytest.approx(empty.max(), abs=1e-6)


def test_distill_config_names_its_inputs() -> None:
    from clicks2intent.cli import intent
    from clicks2intent.intent.distill import DISTILL_INPUTS

    assert intent.DISTILL_INPUTS == DISTILL_INPUTS  # the CLI's light copy of the choice list
    assert DistillConfig().inputs == "session"
    with pytest.raises(Exception, match="inputs"):
        DistillConfig(inputs="pages")
