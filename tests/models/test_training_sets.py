"""Training sets: entity rows, the time split (no leakage, entity hygiene) and the Feast fetch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clicks2intent.models.training_sets import (
    LABEL,
    conversion_entity_df,
    historical_features,
    sample_entities,
    service_feature_names,
    service_request_fields,
    tile_entity_df,
    time_split,
)
from clicks2intent.names import columns as C

T0 = pd.Timestamp("2024-04-01", tz="UTC")


def _impressions(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            C.IMPRESSION_ID: [f"i{i}" for i in range(n)],
            C.CUSTOMER_ID: rng.choice(["c1", "c2", "c3"], n),
            C.EVENT_TIMESTAMP: T0 + pd.to_timedelta(rng.permutation(n), unit="h"),
            C.CLICKED_TILE: rng.choice(list(C.TILES[:3]) + [C.NO_CLICK], n),
        }
    )


def test_tile_entities_keep_clicked_impressions_in_time_order() -> None:
    imp = _impressions()
    ent = tile_entity_df(imp)
    assert set(ent[LABEL]) <= set(C.TILES)
    assert len(ent) == int((imp[C.CLICKED_TILE] != C.NO_CLICK).sum())
    assert ent[C.EVENT_TIMESTAMP].is_monotonic_increasing
    assert len(tile_entity_df(imp, clicked_only=False)) == len(imp)
    bad = imp.copy()
    bad.loc[0, C.CLICKED_TILE] = "not_a_tile"
    with pytest.raises(ValueError, match="not_a_tile"):
        tile_entity_df(bad)


def test_conversion_entities_one_row_per_session() -> None:
    conv = pd.DataFrame(
        {
            C.SESSION_ID: ["s1", "s2"],
            C.VISITOR_ID: ["v1", "v1"],
            C.EVENT_TIMESTAMP: [T0, T0 + pd.Timedelta(hours=1)],
            C.CONVERSION_PRODUCT: ["mortgage", C.NO_CONVERSION],
        }
    )
    assert conversion_entity_df(conv)[LABEL].tolist() == ["mortgage", C.NO_CONVERSION]
    with pytest.raises(ValueError, match="unique"):
        conversion_entity_df(pd.concat([conv, conv]))


def test_time_split_orders_periods_without_leakage() -> None:
    df = pd.DataFrame(
        {C.EVENT_TIMESTAMP: T0 + pd.to_timedelta(np.random.default_rng(1).permutation(100), unit="h")}
    )
    s = time_split(df, valid_fraction=0.1, test_fraction=0.2)
    assert (len(s.train), len(s.valid), len(s.test)) == (70, 10, 20)
    assert s.train[C.EVENT_TIMESTAMP].max() < s.valid[C.EVENT_TIMESTAMP].min()
    assert s.valid[C.EVENT_TIMESTAMP].max() < s.test[C.EVENT_TIMESTAMP].min()
    assert s.summary()["test_window"][1] == (T0 + pd.Timedelta(hours=99)).isoformat()


def test_time_split_never_puts_an_entity_in_two_splits() -> None:
    rng = np.random.default_rng(2)
    n = 300
    df = pd.DataFrame(
        {
            C.SESSION_ID: rng.choice([f"s{i}" for i in range(60)], n),
            C.EVENT_TIMESTAMP: T0 + pd.to_timedelta(rng.integers(0, 1000, n), unit="min"),
        }
    )
    s = time_split(df, group_column=C.SESSION_ID)
    sets = [set(x[C.SESSION_ID]) for x in (s.train, s.valid, s.test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert len(s.train) + len(s.valid) + len(s.test) == n
    # every training row is strictly before the validation period starts
    assert s.train[C.EVENT_TIMESTAMP].max() < s.valid_start


def test_time_split_embargo_drops_rows_whose_label_crosses_the_boundary() -> None:
    df = pd.DataFrame({C.EVENT_TIMESTAMP: T0 + pd.to_timedelta(np.arange(100), unit="D")})
    s = time_split(df, embargo="3D")
    assert (s.train[C.EVENT_TIMESTAMP] + pd.Timedelta(days=3) < s.valid_start).all()
    assert (s.valid[C.EVENT_TIMESTAMP] + pd.Timedelta(days=3) < s.test_start).all()
    assert s.n_embargoed > 0


def test_time_split_rejects_bad_fractions_and_too_few_rows() -> None:
    df = pd.DataFrame({C.EVENT_TIMESTAMP: [T0] * 5})
    with pytest.raises(ValueError, match="fraction"):
        time_split(df, valid_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="distinct timestamps"):
        time_split(df)


def test_sample_entities_keeps_time_order() -> None:
    ent = tile_entity_df(_impressions(200), clicked_only=False)
    s = sample_entities(ent, 40, random_state=0)
    assert len(s) == 40 and s[C.EVENT_TIMESTAMP].is_monotonic_increasing
    assert sample_entities(ent, None) is ent


@pytest.mark.slow
def test_historical_features_from_a_tiny_feast_repo(tmp_path) -> None:
    """The real Feast path: a file source, a feature view, an on-demand view needing a request field."""
    from feast import (
        Entity,
        FeatureService,
        FeatureStore,
        FeatureView,
        Field,
        FileSource,
        RequestSource,
        ValueType,
    )
    from feast.on_demand_feature_view import on_demand_feature_view
    from feast.types import Array, Float32, Float64, String

    data = pd.DataFrame(
        {
            C.CUSTOMER_ID: ["c1", "c1", "c2"],
            C.EVENT_TIMESTAMP: [T0, T0 + pd.Timedelta(days=2), T0],
            "age": [30.0, 31.0, 50.0],
            "customer_intent_label": ["mortgage", "cards", None],
            "customer_web_embedding": [[0.1, 0.2], [0.3, 0.4], [0.0, 0.0]],
        }
    )
    path = tmp_path / "customer.parquet"
    data.to_parquet(path)
    (tmp_path / "feature_store.yaml").write_text(
        "project: t\nregistry: registry.db\nprovider: local\nonline_store:\n  type: sqlite\n  path: online.db\n"
        "entity_key_serialization_version: 3\n"
    )
    customer = Entity(name="customer", join_keys=[C.CUSTOMER_ID], value_type=ValueType.STRING)
    view = FeatureView(
        name="customer_web_intent",
        entities=[customer],
        schema=[
            Field(name="age", dtype=Float32),
            Field(name="customer_intent_label", dtype=String),
            Field(name="customer_web_embedding", dtype=Array(Float32)),
        ],
        source=FileSource(path=str(path), timestamp_field=C.EVENT_TIMESTAMP),
    )
    request = RequestSource(name="candidates", schema=[Field(name="candidate_tiles", dtype=Array(String))])

    @on_demand_feature_view(
        sources=[view, request], schema=[Field(name="n_candidates", dtype=Float64)], mode="pandas"
    )
    def tile_count(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"n_candidates": inputs["candidate_tiles"].map(len).astype(float)})

    service = FeatureService(name="svc", features=[view, tile_count])
    store = FeatureStore(repo_path=str(tmp_path))
    store.apply([customer, view, tile_count, service])

    entities = pd.DataFrame(
        {
            C.CUSTOMER_ID: ["c1", "c2", "c1", "c3"],
            C.EVENT_TIMESTAMP: [
                T0 + pd.Timedelta(days=3),
                T0 + pd.Timedelta(days=1),
                T0 + pd.Timedelta(days=1),
                T0,
            ],
            LABEL: ["a", "b", "c", "d"],
        }
    )
    assert service_request_fields(store, "svc") == ["candidate_tiles"]
    assert service_feature_names(store, "svc") == [
        "age",
        "customer_intent_label",
        "customer_web_embedding",
        "n_candidates",
    ]
    out = historical_features(store, entities, "svc")
    assert out[LABEL].tolist() == ["a", "b", "c", "d"]  # entity order restored
    assert out["age"].tolist()[:3] == pytest.approx(
        [31.0, 50.0, 30.0]
    )  # point in time: c1 at day 1 -> row of day 0
    assert pd.isna(out["age"].iloc[3])  # unknown customer: missing, not zero
    assert out["n_candidates"].tolist() == [float(len(C.TILES))] * 4
