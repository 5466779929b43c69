"""Training sets: entity rows, the time split (no leakage, entity hygiene) and the Feast fetch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from clicks2intent.data.world import World
from clicks2intent.errors import ConfigError, ContractError
from clicks2intent.models.training_sets import (
    CONVERSION,
    LABEL,
    TILE_RANKING,
    conversion_entity_df,
    historical_features,
    read_task_entities,
    sample_entities,
    service_feature_names,
    service_request_fields,
    task_classes,
    tile_entity_df,
    time_split,
    world_request_values,
)
from clicks2intent.names import columns as C
from clicks2intent.names.features import CANDIDATE_TILES

T0 = pd.Timestamp("2024-04-01", tz="UTC")


def _impressions(tiles: tuple[str, ...], n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            C.IMPRESSION_ID: [f"i{i}" for i in range(n)],
            C.CUSTOMER_ID: rng.choice(["c1", "c2", "c3"], n),
            C.EVENT_TIMESTAMP: T0 + pd.to_timedelta(rng.permutation(n), unit="h"),
            C.CLICKED_TILE: rng.choice(list(tiles[:3]) + [C.NO_CLICK], n),
        }
    )


def test_tile_entities_keep_clicked_impressions_in_time_order(sim_world: World) -> None:
    imp = _impressions(sim_world.tiles)
    ent = tile_entity_df(imp, sim_world)
    assert set(ent[LABEL]) <= set(sim_world.tiles)
    assert len(ent) == int((imp[C.CLICKED_TILE] != C.NO_CLICK).sum())
    assert ent[C.EVENT_TIMESTAMP].is_monotonic_increasing
    assert len(tile_entity_df(imp, sim_world, clicked_only=False)) == len(imp)
    bad = imp.copy()
    bad.loc[0, C.CLICKED_TILE] = "not_a_tile"
    with pytest.raises(ValueError, match="not_a_tile"):
        tile_entity_df(bad, sim_world)
    bad.loc[0, C.CLICKED_TILE] = None
    with pytest.raises(ContractError, match="null"):
        tile_entity_df(bad, sim_world)


def test_labels_must_be_the_worlds_classes(sim_world: World) -> None:
    """A tile of the simulated bank is no tile of another bank's world: its task log is refused."""
    other = replace(sim_world, name="other-bank", tiles=("travel_card", "loans"))
    imp = _impressions(sim_world.tiles)
    with pytest.raises(ContractError, match="other-bank"):
        tile_entity_df(imp, other)
    conv = pd.DataFrame({C.SESSION_ID: ["s1"], C.VISITOR_ID: ["v1"], C.EVENT_TIMESTAMP: [T0],
                         C.CONVERSION_PRODUCT: [sim_world.products[0]]})  # fmt: skip
    with pytest.raises(ContractError, match=sim_world.products[0]):
        conversion_entity_df(conv, replace(sim_world, products=("travel_card",)))


def test_task_classes_and_request_values_are_the_worlds(sim_world: World) -> None:
    assert task_classes(sim_world, TILE_RANKING) == sim_world.tiles
    assert task_classes(sim_world, CONVERSION) == (*sim_world.products, C.NO_CONVERSION)
    with pytest.raises(ConfigError, match="task"):
        task_classes(sim_world, "churn")
    assert world_request_values(sim_world) == {CANDIDATE_TILES: list(sim_world.tiles)}


def test_read_task_entities_checks_the_logs_against_the_world(sim_world: World, tmp_path) -> None:
    _impressions(sim_world.tiles).to_parquet(tmp_path / "tile_impressions.parquet")
    ent = read_task_entities(TILE_RANKING, tmp_path, sim_world)
    assert set(ent[LABEL]) <= set(sim_world.tiles) and C.NO_CLICK not in set(ent[LABEL])
    assert len(read_task_entities(TILE_RANKING, tmp_path, sim_world, clicked_only=False)) == 50
    with pytest.raises(ContractError, match="not declared"):
        read_task_entities(TILE_RANKING, tmp_path, replace(sim_world, tiles=("a_tile", "b_tile")))
    with pytest.raises(FileNotFoundError, match="conversions"):
        read_task_entities(CONVERSION, tmp_path, sim_world)
    with pytest.raises(ConfigError, match="unknown task"):
        read_task_entities("churn", tmp_path, sim_world)


def test_conversion_entities_one_row_per_session(sim_world: World) -> None:
    product = sim_world.products[0]
    conv = pd.DataFrame(
        {
            C.SESSION_ID: ["s1", "s2"],
            C.VISITOR_ID: ["v1", "v1"],
            C.EVENT_TIMESTAMP: [T0, T0 + pd.Timedelta(hours=1)],
            C.CONVERSION_PRODUCT: [product, C.NO_CONVERSION],
        }
    )
    assert conversion_entity_df(conv, sim_world)[LABEL].tolist() == [product, C.NO_CONVERSION]
    with pytest.raises(ValueError, match="unique"):
        conversion_entity_df(pd.concat([conv, conv]), sim_world)


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


def test_sample_entities_keeps_time_order(sim_world: World) -> None:
    ent = tile_entity_df(_impressions(sim_world.tiles, 200), sim_world, clicked_only=False)
    s = sample_entities(ent, 40, random_state=0)
    assert len(s) == 40 and s[C.EVENT_TIMESTAMP].is_monotonic_increasing
    assert sample_entities(ent, None) is ent


@pytest.mark.slow
def test_historical_features_from_a_tiny_feast_repo(tmp_path, sim_world: World) -> None:
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
    # A request field is filled from the world's request values only when they are given.
    with pytest.raises(ConfigError, match="candidate_tiles"):
        historical_features(store, entities, "svc")
    out = historical_features(store, entities, "svc", world_request_values(sim_world))
    assert out[LABEL].tolist() == ["a", "b", "c", "d"]  # entity order restored
    assert out["age"].tolist()[:3] == pytest.approx(
        [31.0, 50.0, 30.0]
    )  # point in time: c1 at day 1 -> row of day 0
    assert pd.isna(out["age"].iloc[3])  # unknown customer: missing, not zero
    assert out["n_candidates"].tolist() == [float(len(sim_world.tiles))] * 4
    # ... and a value in the entity rows wins over them.
    own = historical_features(store, entities.assign(candidate_tiles=[["a", "b"]] * 4), "svc")
    assert own["n_candidates"].tolist() == [2.0] * 4
