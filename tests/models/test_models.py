"""The XGBoost multi-class estimator, the stored unit (FeatureModel) and grouped explanations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clicks2intent.models.explain import explain, group_shares
from clicks2intent.models.xgb import (
    FeatureModel,
    XGBMultiClassifier,
    class_weight_table,
    row_weights,
    train_feature_model,
)

CLASSES = ["a", "b", "c", "d"]  # "d" never occurs: the output columns must still include it
GROUPS = {"age": "baseline", "label": "labels", "emb": "embedding"}


def group_of(name: str) -> str:
    return GROUPS[name]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Class carried mostly by the embedding (missing for a third of rows), a little by the label."""
    rng = np.random.default_rng(0)
    n = 360
    y = rng.choice(CLASSES[:3], n, p=[0.6, 0.3, 0.1])
    centre = {"a": [0.0, 0.0], "b": [2.0, 0.0], "c": [0.0, 2.0]}
    emb = [
        None if rng.random() < 0.33 else (np.array(centre[v]) + rng.normal(0, 0.5, 2)).astype(np.float32)
        for v in y
    ]
    label = [f"L_{v}" if rng.random() < 0.5 else "L_other" for v in y]
    return pd.DataFrame({"age": rng.normal(40, 10, n), "label": label, "emb": emb, "y": y})


@pytest.fixture(scope="module")
def model(frame: pd.DataFrame) -> FeatureModel:
    return train_feature_model(
        frame.iloc[:240], frame.iloc[240:300], ["age", "label", "emb"], "y", CLASSES,
        feature_service="svc_v1", n_estimators=40, n_jobs=1, random_state=0,
    )  # fmt: skip


def test_class_weights_by_hand() -> None:
    y = np.array([0, 0, 0, 1])  # n=4, K=2 present: w0 = (4/(2*3))**p, w1 = (4/(2*1))**p
    t = class_weight_table(y, 3, power=1.0)
    assert t.tolist() == pytest.approx([2 / 3, 2.0, 1.0])  # the absent class keeps weight 1
    assert row_weights(y, t).mean() == pytest.approx(1.0)
    assert class_weight_table(y, 2, power=0.0).tolist() == [1.0, 1.0]
    assert class_weight_table(y, 2, power=0.5).tolist() == pytest.approx([(2 / 3) ** 0.5, 2**0.5])


def test_probabilities_cover_the_fixed_classes_and_beat_chance(
    model: FeatureModel, frame: pd.DataFrame
) -> None:
    test = frame.iloc[300:]
    p = model.predict_proba(test)
    assert p.shape == (len(test), 4) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert model.classes == CLASSES and p[:, 3].max() < 0.05
    acc = (np.asarray(CLASSES)[p.argmax(axis=1)] == test["y"].to_numpy()).mean()
    assert acc > 0.7  # majority class alone gives ~0.6
    assert 0 <= model.estimator.best_iteration_ < 40
    assert model.estimator.n_train_ == 240 and model.estimator.n_valid_ == 60
    ranking = model.rank(test.iloc[:1])[0]
    assert [c for c, _ in ranking][0] == CLASSES[int(p[0].argmax())] and len(ranking) == 4


def test_missing_embedding_rows_are_scored_not_imputed(model: FeatureModel, frame: pd.DataFrame) -> None:
    rows = frame.iloc[300:].copy()
    rows["emb"] = None
    X = model.frame(rows)
    assert X.filter(like="emb_").isna().all(axis=None)
    assert np.isfinite(model.predict_proba(rows)).all()


def test_internal_validation_slice_when_no_eval_set() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"x": rng.normal(size=100)})
    est = XGBMultiClassifier(n_estimators=5, validation_fraction=0.2, n_jobs=1).fit(
        X, ["p" if v > 0 else "q" for v in X["x"]]
    )
    assert (est.n_train_, est.n_valid_) == (80, 20) and est.classes_ == ["p", "q"]
    assert est.get_params()["n_estimators"] == 5


def test_errors_name_the_problem(model: FeatureModel, frame: pd.DataFrame) -> None:
    X = model.frame(frame.iloc[:10])
    with pytest.raises(ValueError, match="not among the model's classes"):
        XGBMultiClassifier(classes=["a"], n_estimators=2, n_jobs=1).fit(X, ["zzz"] * 10)
    with pytest.raises(ValueError, match="columns differ"):
        model.estimator.predict_proba(X[X.columns[::-1]])
    with pytest.raises(TypeError, match="DataFrame"):
        XGBMultiClassifier().fit(X.to_numpy(), ["a"] * 10)


def test_save_load_round_trip(model: FeatureModel, frame: pd.DataFrame, tmp_path) -> None:
    model.save(tmp_path / "m")
    again = FeatureModel.load(tmp_path / "m")
    test = frame.iloc[300:]
    np.testing.assert_allclose(again.predict_proba(test), model.predict_proba(test), rtol=1e-6)
    assert again.feature_service == "svc_v1" and again.spec.to_dict() == model.spec.to_dict()


def test_contributions_add_up_to_the_margin(model: FeatureModel, frame: pd.DataFrame) -> None:
    import xgboost as xgb

    X = model.frame(frame.iloc[300:310])
    contribs = model.estimator.contributions(X)
    margin = model.estimator.booster_.predict(
        xgb.DMatrix(X.to_numpy(np.float32), missing=np.nan, feature_names=list(X.columns)),
        output_margin=True,
        iteration_range=(0, model.estimator.best_iteration_ + 1),
    )
    np.testing.assert_allclose(contribs.sum(axis=2), margin, atol=1e-4)


def test_explanations_grouped_by_feature_group(model: FeatureModel, frame: pd.DataFrame) -> None:
    rows = frame.iloc[300:305]
    out = explain(model, rows, top_k=2, group_of=group_of)
    assert len(out) == 5
    first = out[0]
    assert set(first["groups"]) == {"baseline", "labels", "embedding", "bias"}
    assert len(first["top_features"]) == 2 and first["top_features"][0]["group"] in GROUPS.values()
    # group sums + bias reproduce the explained class's margin
    contribs = model.estimator.contributions(model.frame(rows.iloc[:1]))[0, CLASSES.index(first["class"])]
    assert sum(first["groups"].values()) == pytest.approx(float(contribs.sum()), abs=1e-4)
    forced = explain(model, rows.iloc[:1], target="c", group_of=group_of)[0]
    assert forced["class"] == "c"
    shares = group_shares(model, frame.iloc[300:], group_of=group_of)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["embedding"] > shares["baseline"]  # the data put the class signal in the embedding


def test_weighted_counts_keep_a_subsampled_class_weight() -> None:
    y = np.array([0] * 9 + [1])
    full = class_weight_table(y, 2, power=1.0)
    # keep 3 of the 9 majority rows at weight 3: the same effective frequencies, the same table
    y_sub = np.array([0] * 3 + [1])
    assert class_weight_table(y_sub, 2, 1.0, np.array([3.0, 3.0, 3.0, 1.0])).tolist() == pytest.approx(
        full.tolist()
    )


def test_prior_correction_restores_class_frequencies() -> None:
    rng = np.random.default_rng(4)
    n = 1200
    x = rng.normal(size=n)
    y = np.where(
        rng.random(n) < 0.08, "rare", "common"
    )  # label independent of x: only the prior is learnable
    X = pd.DataFrame({"x": x})
    est = XGBMultiClassifier(n_estimators=30, class_weight_power=1.0, n_jobs=1, random_state=0)
    est.fit(X.iloc[:1000], y[:1000])
    corrected = est.predict_proba(X.iloc[1000:])[:, est.classes_.index("rare")].mean()
    est.prior_correction = False
    balanced = est.predict_proba(X.iloc[1000:])[:, est.classes_.index("rare")].mean()
    assert abs(corrected - 0.08) < 0.04  # back on the data's frequency
    assert balanced > 0.3  # fully balanced weights alone would claim ~50 %
