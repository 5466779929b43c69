"""BentoML model store: save a model with its metadata, load it back by tag, predictions unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clicks2intent.models.store import (
    REQUIRED_METADATA,
    file_version,
    get_bento_model,
    load_feature_model,
    save_feature_model,
    taxonomy_version,
)
from clicks2intent.models.xgb import train_feature_model


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 120
    y = rng.choice(["mortgage", "credit_card", "savings"], n)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "customer_intent_label": [f"L_{v}" if rng.random() < 0.7 else None for v in y],
            "customer_web_embedding": [rng.normal(size=3).astype(np.float32) for _ in y],
            "label": y,
        }
    )


def _metadata(model) -> dict:
    return {
        "task": "tile_ranking",
        "variant": "embedding+labels",
        "feature_service": "tile_ranker_v1",
        "feature_names": model.spec.feature_names,
        "encoder_version": "sha256:0123456789ab",
        "taxonomy_version": "v3",
        "metrics": {"macro_recall_at_1": 0.41, "log_loss": 1.23, "n_test": 30},
        "training_window": ["2024-04-01T00:00:00+00:00", "2024-05-31T23:00:00+00:00"],
        "request_values": {"candidate_tiles": ["mortgage", "credit_card", "savings"]},
    }


def test_metadata_round_trip(rows: pd.DataFrame, tmp_path) -> None:
    model = train_feature_model(
        rows.iloc[:80], rows.iloc[80:100], ["age", "customer_intent_label", "customer_web_embedding"], "label",
        ["mortgage", "credit_card", "savings"], feature_service="tile_ranker_v1", n_estimators=10, n_jobs=1,
    )  # fmt: skip
    meta = _metadata(model)
    tag = save_feature_model(model, meta, home=tmp_path)
    assert tag.startswith("tile_ranker_v1:")

    loaded = load_feature_model("tile_ranker_v1:latest", home=tmp_path)
    for key in REQUIRED_METADATA + ("variant", "request_values"):
        assert loaded.metadata[key] == meta[key], key
    assert loaded.metadata["classes"] == ["mortgage", "credit_card", "savings"]
    assert loaded.metadata["tag"] == tag
    assert loaded.feature_service == "tile_ranker_v1"
    np.testing.assert_allclose(
        loaded.predict_proba(rows.iloc[100:]), model.predict_proba(rows.iloc[100:]), rtol=1e-6
    )

    bento_model = get_bento_model(tag, home=tmp_path)
    assert bento_model.info.labels["feature_service"] == "tile_ranker_v1"
    assert load_feature_model(bento_model).spec.columns == model.spec.columns


def test_incomplete_metadata_is_refused(rows: pd.DataFrame, tmp_path) -> None:
    model = train_feature_model(
        rows.iloc[:80], rows.iloc[80:100], ["age"], "label", ["mortgage", "credit_card", "savings"],
        feature_service="conversion_v1", n_estimators=3, n_jobs=1,
    )  # fmt: skip
    meta = _metadata(model) | {"feature_service": "conversion_v1"}
    del meta["training_window"]
    with pytest.raises(ValueError, match="training_window"):
        save_feature_model(model, meta, home=tmp_path)
    with pytest.raises(ValueError, match="feature_service"):
        save_feature_model(
            model, _metadata(model), home=tmp_path
        )  # says tile_ranker_v1, model is conversion_v1


def test_versions_of_artifacts(tmp_path) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"weights-1")
    v1 = file_version(ckpt)
    ckpt.write_bytes(b"weights-2")
    assert v1.startswith("sha256:") and file_version(ckpt) != v1
    assert file_version(tmp_path / "missing.pt") == "unknown"
    from clicks2intent.intent.taxonomy import Label, Taxonomy

    tax = tmp_path / "taxonomy.yaml"
    Taxonomy(
        version=7, status="draft", labels=[Label(id="mortgage_research", name="Mortgage", description="d")]
    ).save(tax)
    assert taxonomy_version(tax) == "v7" and taxonomy_version(None) == "unknown"
    tax.write_text("version: seven\n")  # not a taxonomy: no guessed version
    assert taxonomy_version(tax) == "unknown"
