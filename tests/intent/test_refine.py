"""Semi-supervised refinement of the LLM labels (clicks2intent.intent.refine) and distill's ``teacher``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.naive_bayes import MultinomialNB

from clicks2intent.intent.distill import DistillConfig, distill
from clicks2intent.intent.inputs import SessionText
from clicks2intent.intent.refine import SemiSupervisedNB, refine_labels, session_counts
from clicks2intent.names import columns as C

TOPICS = {
    "loan": ["loan_rates", "loan_apply", "loan_calc"],
    "card": ["card_rewards", "card_apply", "card_fees"],
}
GENERIC = ["home", "faq", "login", "about", "news", "branches"]
SITE = GENERIC + [p for pages in TOPICS.values() for p in pages]


def _world(n: int = 3000, seed: int = 0) -> tuple[list[SessionText], np.ndarray, np.ndarray]:
    """Sessions of a goal (mostly its own pages and searches) or browsing (pages drawn from the whole
    site), with the labels a keyword rule gives: a topic as soon as one of its pages shows, else other.
    Returns (texts, true goal, rule label): the truth is this test's yardstick only."""
    rng = np.random.default_rng(seed)
    texts, truth, rule = [], [], []
    for _ in range(n):
        goal = rng.choice(["loan", "card", "other"], p=[0.3, 0.3, 0.4])
        if goal == "other":
            pages = list(rng.choice(SITE, size=int(rng.integers(3, 7))))
            queries: list[str] = []
        else:
            k = int(rng.integers(3, 7))
            pages = [
                rng.choice(TOPICS[goal]) if rng.random() < 0.7 else rng.choice(GENERIC) for _ in range(k)
            ]
            queries = [f"best {goal} rates"] if rng.random() < 0.4 else []
        hits = {t: sum(p in TOPICS[t] for p in pages) for t in TOPICS}
        best = max(hits, key=lambda t: hits[t])
        texts.append(SessionText(tuple(pages), tuple(queries)))
        truth.append(goal)
        rule.append(best if hits[best] else "other")
    return texts, np.array(truth), np.array(rule)


def test_counts_hold_pages_and_words_seen_twice_and_no_pii() -> None:
    texts = [
        SessionText(("home", "loan_rates"), ("loan rates", "mail jane.doe@example.com")),
        SessionText(("loan_rates",), ("loan help",)),
        SessionText(("faq",), ()),
    ]
    X, vocab = session_counts(texts)
    assert vocab == ["page:faq", "page:home", "page:loan_rates", "query:loan"]
    assert X.toarray().tolist() == [[0, 1, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0]]
    assert not any("jane" in v or "example" in v for v in vocab)  # scrubbed before counting


def test_labelled_rows_alone_give_scikit_learns_multinomial_nb() -> None:
    texts, _, rule = _world(400)
    X, _ = session_counts(texts)
    ours = SemiSupervisedNB().fit(X, list(rule))
    ref = MultinomialNB(alpha=1.0).fit(X, rule)
    assert ours.n_iter_ == 0 and ours.converged_  # nothing unlabelled: no EM step to take
    np.testing.assert_allclose(ours.feature_log_prob_, ref.feature_log_prob_, rtol=1e-9)
    assert (ours.predict(X) == ref.predict(X)).mean() > 0.98  # priors: add-one on the counts here


def test_em_on_unlabelled_sessions_undoes_a_keyword_rules_bias() -> None:
    texts, truth, rule = _world()
    X, _ = session_counts(texts)
    labelled = np.zeros(len(texts), dtype=bool)
    labelled[:300] = True  # a labelled sample; the rest unlabelled
    given = [r if m else None for r, m in zip(rule, labelled, strict=True)]
    refined, summary = refine_labels(X, given)
    supervised = SemiSupervisedNB(max_iter=0).fit(X, given).predict(X)  # no EM: the sample alone
    rule_acc, sup_acc, em_acc = ((v == truth).mean() for v in (rule, supervised, refined))
    assert summary["converged"] and summary["n_labelled"] == 300 and summary["n_unlabelled"] == 2700
    assert em_acc > sup_acc >= rule_acc - 0.02, (rule_acc, sup_acc, em_acc)
    assert em_acc > rule_acc + 0.05
    assert 0 < summary["labelled_kept_share"] < 1  # the bias is in the sample too: some labels move


def test_refinement_refuses_what_it_cannot_use() -> None:
    X = sparse.csr_matrix(np.ones((3, 2)))
    with pytest.raises(ValueError, match="no labelled rows"):
        SemiSupervisedNB().fit(X, [None, None, None])
    with pytest.raises(ValueError, match="length"):
        SemiSupervisedNB().fit(X, ["a"])
    with pytest.raises(ValueError, match="non-negative"):
        SemiSupervisedNB().fit(sparse.csr_matrix(-np.ones((1, 2))), ["a"])


def test_distill_learns_the_refined_labels_by_default_and_the_llm_labels_when_asked() -> None:
    texts, truth, rule = _world(1200, seed=1)
    ids = [f"s{i:05d}" for i in range(len(texts))]
    rng = np.random.default_rng(2)
    X = rng.normal(size=(len(texts), 4)).astype(np.float32)  # an embedding that says nothing here
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(texts)), unit="min")
    emb = pd.DataFrame({C.SESSION_ID: ids, C.EVENT_TIMESTAMP: ts, C.EMBEDDING: list(X)})
    sample = sorted(rng.choice(len(ids), 300, replace=False))
    labels = pd.DataFrame(
        {
            C.SESSION_ID: [ids[i] for i in sample],
            "label_id": rule[sample],
            "status": "ok",
            C.TAXONOMY_VERSION: "v1",
            "model": "rule:clear-margin",
        }
    )
    by_id = dict(zip(ids, texts, strict=True))
    _, refined, report = distill(labels, emb, test_fraction=0.2, texts=by_id)
    _, plain, plain_report = distill(labels, emb, test_fraction=0.2, texts=by_id, teacher="llm")
    acc = {
        k: float((v[C.INTENT_LABEL].to_numpy() == truth).mean())
        for k, v in (("refined", refined), ("llm", plain))
    }
    assert report["teacher"] == "refined" and plain_report["teacher"] == "llm"
    assert plain_report["refinement"] is None and report["refinement"]["converged"]
    assert report["refinement"]["n_labelled"] + report["refinement"]["n_unlabelled"] == len(ids)
    assert "vs_refined_teacher" in report["held_out"]
    assert acc["refined"] > acc["llm"] + 0.03, acc
    # Held-out agreement with the LLM labels is about the LLM labels' (biased) rule: refining lowers it.
    assert report["held_out"]["agreement"] < plain_report["held_out"]["agreement"]
    with pytest.raises(ValueError, match="teacher"):
        distill(labels, emb, texts=by_id, teacher="truth")


def test_distill_config_names_its_teachers() -> None:
    from clicks2intent.cli import intent
    from clicks2intent.intent.distill import DISTILL_TEACHERS

    assert intent.DISTILL_TEACHERS == DISTILL_TEACHERS  # the CLI's light copy of the choice list
    assert DistillConfig().teacher == "refined"
    with pytest.raises(Exception, match="teacher"):
        DistillConfig(teacher="truth")
