"""Distilled classifier: numpy inference equals scikit-learn, persistence, time split, CLI outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from clicks2intent.cli import main
from clicks2intent.intent.distill import (
    INTENTS_FILE,
    IntentClassifier,
    bootstrap_interval,
    compare_to_truth,
    distill,
)
from clicks2intent.names import columns as C

CLASSES = ["credit_card", "mortgage", "savings"]


def _data(n: int = 240, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three separable-ish clusters on the unit sphere, like L2-normalised session embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, dim))
    y = rng.integers(0, 3, size=n)
    X = centers[y] + 0.6 * rng.normal(size=(n, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), np.array(CLASSES)[y]


def _frames(X: np.ndarray, y: np.ndarray, n_failed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"s{i:04d}" for i in range(len(X))]
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(X)), unit="min")
    emb = pd.DataFrame({C.SESSION_ID: ids, C.EVENT_TIMESTAMP: ts, C.EMBEDDING: list(X)})
    status = np.where(np.arange(len(X)) < n_failed, "failed", "ok")
    labels = pd.DataFrame(
        {
            C.SESSION_ID: ids,
            "label_id": np.where(status == "ok", y, None),
            "status": status,
            "error": np.where(status == "ok", None, "invalid answer"),
            C.TAXONOMY_VERSION: "v1",
            "model": "m",
            "prompt_sha256": "0" * 64,
        }
    )
    return labels, emb


def test_numpy_inference_matches_sklearn_and_predict_one_agrees() -> None:
    X, y = _data()
    clf = IntentClassifier(C=5.0).fit(X, y, {"mortgage": "Mortgage"}, "v1")
    ref = LogisticRegression(C=5.0, max_iter=2000, random_state=0).fit(X.astype(np.float64), y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), atol=1e-4)
    assert list(clf.classes_) == CLASSES and clf.label_names["mortgage"] == "Mortgage"
    assert clf.label_names["savings"] == "savings"  # unnamed ids fall back to the id
    proba = clf.predict_proba(X[:5])
    for x, p in zip(X[:5], proba, strict=True):
        label, conf, top = clf.predict_one(x)
        assert label == CLASSES[int(p.argmax())] and conf == pytest.approx(p.max(), abs=1e-6)
        assert [t[0] for t in top] == [CLASSES[i] for i in np.argsort(-p)[:3]]
        assert top[0][1] >= top[1][1] >= top[2][1]


def test_binary_and_single_class_cases() -> None:
    X, y = _data()
    two = y != "savings"
    clf = IntentClassifier().fit(X[two], y[two])
    ref = LogisticRegression(C=10.0, max_iter=2000, random_state=0).fit(X[two].astype(np.float64), y[two])
    np.testing.assert_allclose(clf.predict_proba(X[two]), ref.predict_proba(X[two]), atol=1e-4)
    one = IntentClassifier().fit(X[:10], ["mortgage"] * 10)
    assert one.predict_one(X[0])[:2] == ("mortgage", 1.0)


def test_save_load_round_trip_and_input_errors(tmp_path: Path) -> None:
    X, y = _data()
    clf = IntentClassifier().fit(X, y, taxonomy_version="v2")
    loaded = IntentClassifier.load(clf.save(tmp_path / "intent"))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert (
        loaded.taxonomy_version == "v2"
        and list(loaded.classes_) == CLASSES
        and loaded.get_params() == clf.get_params()
    )
    with pytest.raises(ValueError, match="dimension 8 != trained dimension 16"):
        loaded.predict_proba(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="finite"):
        loaded.predict_proba(np.full((1, 16), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        loaded.predict_proba(np.zeros(16))
    with pytest.raises(FileNotFoundError, match="c2i taxonomy distill"):
        IntentClassifier.load(tmp_path / "missing")


def test_distill_reports_held_out_fidelity_and_labels_every_session() -> None:
    X, y = _data(n=300)
    labels, emb = _frames(X, y)
    extra = pd.DataFrame(
        {
            C.SESSION_ID: ["unlabelled"],
            C.EVENT_TIMESTAMP: [pd.Timestamp("2024-02-01", tz="UTC")],
            C.EMBEDDING: [X[0]],
        }
    )
    emb = pd.concat([emb, extra], ignore_index=True)
    clf, intents, report = distill(labels, emb, test_fraction=0.2)
    h = report["held_out"]
    assert h["n_test"] == 59 and h["n_train"] == 236  # 295 ok labels, latest 20 % held out
    assert h["agreement"] > 0.9 and h["macro_f1"] > 0.9 and h["agreement"] > h["majority_baseline"]
    assert 0 < h["latency_us"]["p50"] <= h["latency_us"]["p99"] < 5000
    assert len(intents) == len(emb) and set(intents[C.INTENT_LABEL]) <= set(CLASSES)
    assert (
        intents[C.INTENT_CONFIDENCE].between(1 / 3, 1).all() and (intents[C.TAXONOMY_VERSION] == "v1").all()
    )
    assert report["n_labels_ok"] == 295 and report["n_labelled_missing_embedding"] == 0


def test_distill_rejects_mixed_versions_and_missing_columns() -> None:
    X, y = _data(n=40)
    labels, emb = _frames(X, y)
    labels.loc[20:, C.TAXONOMY_VERSION] = "v2"
    with pytest.raises(ValueError, match="exactly one taxonomy_version"):
        distill(labels, emb)
    with pytest.raises(ValueError, match="embeddings: required column 'embedding'"):
        distill(labels, emb.drop(columns=[C.EMBEDDING]))


def test_distill_cli_writes_classifier_intents_and_truth_report(tmp_path: Path) -> None:
    X, y = _data(n=200)
    labels, emb = _frames(X, y)
    labels.to_parquet(tmp_path / "llm_labels.parquet")
    pq.write_table(
        pa.Table.from_pandas(emb.assign(**{C.EMBEDDING: emb[C.EMBEDDING].map(list)}), preserve_index=False),
        tmp_path / "emb.parquet",
    )
    truth = pd.DataFrame({C.SESSION_ID: emb[C.SESSION_ID], C.TRUE_INTENT: y})
    truth.to_parquet(tmp_path / "truth.parquet")
    out = tmp_path / "intent"
    assert (
        main(
            [
                "taxonomy",
                "distill",
                "--labels",
                str(tmp_path / "llm_labels.parquet"),
                "--embeddings",
                str(tmp_path / "emb.parquet"),
                "--out",
                str(out),
                "--truth",
                str(tmp_path / "truth.parquet"),
            ]
        )
        == 0
    )
    schema = pq.read_schema(out / INTENTS_FILE)
    assert schema.names == [
        C.SESSION_ID,
        C.EVENT_TIMESTAMP,
        C.INTENT_LABEL,
        C.INTENT_CONFIDENCE,
        C.TAXONOMY_VERSION,
    ]
    assert str(schema.field(C.EVENT_TIMESTAMP).type) == "timestamp[us, tz=UTC]"
    report = json.loads((out / "report.json").read_text())
    assert report["truth"]["llm_labels_vs_truth"]["ami"] == pytest.approx(1.0)  # labels == truth here
    assert report["truth"]["distilled_vs_truth_all_sessions"]["ami"] > 0.8
    clf = IntentClassifier.load(out)
    assert clf.taxonomy_version == "v1" and clf.predict_one(X[0])[0] in CLASSES


def test_labels_are_compared_to_truth_beside_the_rule_on_the_same_sessions() -> None:
    """Every labeling is scored on the sessions all of them label; the difference to the reference is
    paired, and its interval excludes zero only when one labeling is clearly better."""
    rng = np.random.default_rng(0)
    ids = [f"s{i:03d}" for i in range(300)]
    truth = pd.Series(rng.integers(0, 4, 300).astype(str), index=ids)
    noisy = truth.where(rng.random(300) < 0.5, pd.Series(rng.integers(0, 4, 300).astype(str), index=ids))
    good = truth.where(rng.random(300) < 0.9, "x")
    out = compare_to_truth(truth, {"rule": noisy, "llm": good.drop(ids[:50])}, "rule")
    assert out["n"] == 250 and out["rule"]["n"] == 250  # the llm labels only 250: the rule is cut to them
    lo, hi = out["llm"]["ami_interval"]
    assert lo <= out["llm"]["ami"] <= hi
    dlo, dhi = out["llm"]["ami_minus_reference_interval"]
    assert out["llm"]["ami_minus_reference"] > 0 and dlo > 0  # clearly better than the noisy rule
    same = compare_to_truth(truth, {"rule": noisy, "copy": noisy}, "rule")
    assert same["copy"]["ami_minus_reference"] == 0 and same["copy"]["ami_minus_reference_interval"] == [0, 0]


def test_bootstrap_interval_is_reproducible_and_nan_for_one_row() -> None:
    a = np.arange(50) % 3
    b = np.where(np.arange(50) % 5 == 0, 0, a)
    agree = lambda x, y: float(np.mean(x == y))  # noqa: E731
    assert bootstrap_interval(agree, a, b, seed=1) == bootstrap_interval(agree, a, b, seed=1)
    lo, hi = bootstrap_interval(agree, a, b)
    assert lo <= agree(a, b) <= hi
    assert all(np.isnan(bootstrap_interval(agree, a[:1], b[:1])))
