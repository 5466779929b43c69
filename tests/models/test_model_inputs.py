"""Feast rows → model columns: arrays expanded, labels one-hot on a fixed vocabulary, missing stays NaN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clicks2intent.models.inputs import (
    ModelInputSpec,
    fit_model_inputs,
    model_feature_names,
    to_model_frame,
)
from clicks2intent.names import columns as C


@pytest.fixture
def rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [30, 45, 52],
            "has_mortgage": [True, False, True],
            "customer_intent_label": ["mortgage_research", None, "card_compare"],
            "customer_web_embedding": [np.array([0.1, 0.2], np.float32), None, [0.5, -0.5]],
            "balance_band": ["0-1k", "1k-10k", "0-1k"],
        }
    )


FEATURES = ["age", "has_mortgage", "customer_intent_label", "customer_web_embedding", "balance_band"]


def test_columns_and_values(rows: pd.DataFrame) -> None:
    spec = fit_model_inputs(rows, FEATURES)
    X = to_model_frame(rows, spec=spec)
    assert list(X.columns) == [
        "age",
        "has_mortgage",
        "customer_intent_label=card_compare",
        "customer_intent_label=mortgage_research",
        "customer_web_embedding_0",
        "customer_web_embedding_1",
        "balance_band=0-1k",
        "balance_band=1k-10k",
    ]
    assert X.dtypes.unique().tolist() == [np.dtype("float32")]
    assert X.loc[0, "customer_intent_label=mortgage_research"] == 1.0
    assert X.loc[0, "customer_intent_label=card_compare"] == 0.0
    assert X.loc[2, "customer_web_embedding_1"] == pytest.approx(-0.5)
    assert X.loc[1, "has_mortgage"] == 0.0


def test_missing_web_intent_stays_missing_not_zero(rows: pd.DataFrame) -> None:
    X = to_model_frame(rows, FEATURES)  # fitted on the fly
    row = X.loc[1]
    assert row[["customer_web_embedding_0", "customer_web_embedding_1"]].isna().all()
    assert row[["customer_intent_label=card_compare", "customer_intent_label=mortgage_research"]].isna().all()
    assert not np.isnan(row["age"])


def test_fixed_vocabulary_at_serving_time(rows: pd.DataFrame) -> None:
    spec = fit_model_inputs(
        rows, FEATURES, vocabularies={"customer_intent_label": ["a", "card_compare", "mortgage_research"]}
    )
    serving = rows.iloc[[0]].copy()
    serving["customer_intent_label"] = "brand_new_label"  # unseen at training time
    X = to_model_frame(serving, spec=spec)
    assert list(X.columns) == spec.columns  # the columns never move
    label_cols = [c for c in X.columns if c.startswith("customer_intent_label=")]
    assert len(label_cols) == 3 and (X[label_cols] == 0.0).all(axis=None)  # known to be none of them


def test_spec_round_trips_through_json(rows: pd.DataFrame) -> None:
    import json

    spec = fit_model_inputs(rows, FEATURES)
    again = ModelInputSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    pd.testing.assert_frame_equal(to_model_frame(rows, spec=spec), to_model_frame(rows, spec=again))
    assert again.column_sources()[4] == "customer_web_embedding"


def test_clear_errors(rows: pd.DataFrame) -> None:
    spec = fit_model_inputs(rows, FEATURES)
    with pytest.raises(KeyError, match="customer_web_embedding"):
        to_model_frame(rows.drop(columns="customer_web_embedding"), spec=spec)
    bad = rows.copy()
    bad["customer_web_embedding"] = [[1.0, 2.0, 3.0], None, None]
    with pytest.raises(ValueError, match="expected length 2"):
        to_model_frame(bad, spec=spec)
    ragged = rows.copy()
    ragged["customer_web_embedding"] = [[1.0], [1.0, 2.0], None]
    with pytest.raises(ValueError, match="one dimension"):
        fit_model_inputs(ragged, FEATURES)
    with pytest.raises(ValueError, match="differ"):
        to_model_frame(rows, ["age"], spec=spec)


def test_provenance_fields_are_not_model_inputs() -> None:
    names = ["age", C.INTENT_LABEL, C.TAXONOMY_VERSION, "customer_" + C.TAXONOMY_VERSION]
    assert model_feature_names(names) == ["age", C.INTENT_LABEL]


def test_projection_inputs_are_served_but_not_model_inputs() -> None:
    from clicks2intent.names import features as N

    names = ["age", N.CUSTOMER_WEB_EMBEDDING, N.TILE_AFFINITY]
    assert model_feature_names(names) == ["age", N.TILE_AFFINITY]


def test_nullable_booleans_and_all_missing_numeric() -> None:
    df = pd.DataFrame({"flag": pd.array([True, None, False], dtype="boolean"), "empty": [None, None, None]})
    X = to_model_frame(df, ["flag", "empty"])
    assert X["flag"].tolist()[0] == 1.0 and np.isnan(X["flag"].tolist()[1])
    assert X["empty"].isna().all()
