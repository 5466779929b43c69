"""Oracle rows: point-in-time truth columns, headroom shares, and no truth column in any model input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicks2intent.data import simulator as sim
from clicks2intent.data.world import World
from clicks2intent.errors import ConfigError
from clicks2intent.evaluation import oracle as O
from clicks2intent.evaluation.ablation import (
    EMBEDDING,
    VARIANTS,
    AblationConfig,
    run_task_ablation,
    variant_features,
)
from clicks2intent.evaluation.reports import markdown_table
from clicks2intent.features import build as F
from clicks2intent.features import definitions as fo
from clicks2intent.models.training_sets import TILE_RANKING
from clicks2intent.names import columns as C

T0 = pd.Timestamp("2024-01-10", tz="UTC")
DAY = pd.Timedelta(days=1)


def test_observable_session_is_point_in_time() -> None:
    """Only a linked visitor's session ended by t counts, and only once the link is known by t."""
    sessions = pd.DataFrame(
        {
            C.SESSION_ID: ["a", "b", "c", "d"],
            C.VISITOR_ID: ["v1", "v1", "v2", "v3"],
            "end": [T0, T0 + 2 * DAY, T0 + DAY, T0],
        }
    )
    truth = pd.DataFrame(
        {C.SESSION_ID: list("abcd"), C.TRUE_INTENT: ["mortgage", "savings", "auto_loan", "x"]}
    )
    links = pd.DataFrame(
        {
            C.VISITOR_ID: ["v1", "v2"],
            C.CUSTOMER_ID: ["c1", "c1"],
            C.LINKED_AT: [T0 + DAY / 2, T0 + 3 * DAY],  # v3 (session d) is never linked
        }
    )
    rows = pd.DataFrame(
        {
            C.CUSTOMER_ID: ["c1", "c1", "c1", "c1", "c2"],
            C.EVENT_TIMESTAMP: [T0 + DAY / 4, T0 + DAY, T0 + 2.5 * DAY, T0 + 4 * DAY, T0 + DAY],
        },
        index=[10, 11, 12, 13, 14],
    )
    out = O.observable_latest_session(rows, sessions, links, truth)
    assert out.index.tolist() == rows.index.tolist()
    # t=0.25d: v1 not linked yet -> nothing; t=1d: a (0.5d... link at 0.5d, a ended at 0): a, age 1 d;
    # t=2.5d: b; t=4d: v2 linked at 3d, but b (2d) is later than c (1d) -> b; c2 has no link.
    assert out[O.OBS_INTENT].tolist() == [None, "mortgage", "savings", "savings", None]
    assert np.allclose(out[O.OBS_AGE_DAYS].to_numpy()[[1, 2, 3]], [1.0, 0.5, 2.0])
    assert out[O.OBS_AGE_DAYS].isna().tolist() == [True, False, False, False, True]


def test_active_need_covers_the_row() -> None:
    needs = pd.DataFrame(
        {
            "person_id": ["c1", "c1", "p1"],
            "is_prospect": [False, False, True],
            C.TRUE_INTENT: ["mortgage", "fraud_security", "savings"],
            "need_start": [T0, T0 + 5 * DAY, T0],
            "need_end": [T0 + 3 * DAY, T0 + 6 * DAY, T0 + 9 * DAY],
        }
    )
    rows = pd.DataFrame(
        {
            C.CUSTOMER_ID: ["c1", "c1", "c1", "p1"],
            C.EVENT_TIMESTAMP: [T0 + DAY, T0 + 4 * DAY, T0 + 5.5 * DAY, T0 + DAY],
        }
    )
    out = O.active_need(rows, needs)
    assert out[O.NEED_INTENT].tolist() == ["mortgage", None, "fraud_security", None]  # prospects never
    assert np.allclose(out[O.NEED_AGE_DAYS].to_numpy()[[0, 2]], [1.0, 0.5])


def _tile_frame(n: int, seed: int, tiles: list[str]) -> pd.DataFrame:
    """A click that follows a hidden need; the oracle column sees it, the 'embedding' sees it noisily."""
    rng = np.random.default_rng(seed)
    assert len(tiles) == 4
    need = rng.integers(0, 4, n)
    y = np.where(rng.random(n) < 0.6, need, rng.integers(0, 4, n))
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "embedding": [np.array([c + rng.normal(0, 1.2), rng.normal()], np.float32) for c in need],
            O.OBS_INTENT: [tiles[c] for c in need],
            O.OBS_AGE_DAYS: rng.exponential(1.0, n),
            "label": [tiles[c] for c in y],
        }
    )


def test_oracle_rows_report_headroom_and_are_never_models(sim_world: World) -> None:
    tiles = list(sim_world.tiles[:4])
    df = _tile_frame(900, 0, tiles)
    groups = {"age": "baseline", "embedding": "embedding"}
    lists = {v: variant_features(["age"], ["age", "embedding"], v, groups.get) for v in VARIANTS}
    config = AblationConfig(n_estimators=40, n_jobs=1, n_boot=40, early_stopping_rounds=5)
    section, models = run_task_ablation(
        TILE_RANKING,
        df.iloc[:600],
        df.iloc[600:700],
        df.iloc[700:],
        lists,
        tiles,
        groups.get,
        config,
        oracle_feature_lists=O.oracle_variant_features(
            {O.ORACLE_OBSERVABLE: O.TILE_ORACLE_FEATURES[O.ORACLE_OBSERVABLE]}, ["age"]
        ),
    )
    assert O.ORACLE_OBSERVABLE not in models  # an oracle is a reference row, never a deployable model
    assert all(not O.is_oracle_column(f) for m in models.values() for f in m.spec.feature_names)
    v = section["variants"]
    assert v[O.ORACLE_OBSERVABLE]["oracle"] is True
    assert v[O.ORACLE_OBSERVABLE]["vs_baseline"]["log_loss"]["ci_high"] < 0  # the oracle sees the need
    share = v[EMBEDDING]["headroom_recovered"]["log_loss"]
    assert 0.0 < share["share"] < 1.0 and share["ci_low"] <= share["share"] <= share["ci_high"]
    assert "headroom_recovered" not in v[O.ORACLE_OBSERVABLE]
    md = markdown_table(section, "tiles")
    assert "| oracle_observable |" in md and "observable headroom recovered" in md


def test_a_truth_column_in_a_variant_is_refused(sim_world: World) -> None:
    tiles = list(sim_world.tiles[:4])
    df = _tile_frame(200, 1, tiles)
    lists = {v: ["age"] for v in VARIANTS} | {EMBEDDING: ["age", O.OBS_INTENT]}
    with pytest.raises(ConfigError, match="oracle"):
        run_task_ablation(
            TILE_RANKING, df.iloc[:120], df.iloc[120:150], df.iloc[150:], lists, tiles,
            {"age": "baseline"}.get, AblationConfig(n_estimators=5, n_jobs=1, n_boot=5),
        )  # fmt: skip


def _truth_columns(tmp: Path) -> set[str]:
    """Every column name of the simulator's truth files (beyond the shared keys)."""
    res = sim.simulate(sim.SimulatorConfig(n_customers=120, seed=1))
    keys = {C.SESSION_ID, C.CHANNEL, C.CUSTOMER_ID, C.VISITOR_ID, C.EVENT_TIMESTAMP}
    return (set(res.session_truth.columns) | set(res.needs.columns)) - keys


def test_no_truth_or_oracle_column_reaches_a_feature_service(tmp_path: Path, sim_world: World) -> None:
    """Fails if a truth column (or an oracle column) becomes a Feast feature of any service or source."""
    truth_cols = _truth_columns(tmp_path) | {
        O.OBS_INTENT,
        O.OBS_AGE_DAYS,
        O.NEED_INTENT,
        O.NEED_AGE_DAYS,
        O.SESSION_INTENT,
    }
    objects = fo.build(fo.file_sources("../artifacts/features"), embedding_dim=16, world=sim_world)
    served = {
        f.name
        for service in objects.services().values()
        for p in service.feature_view_projections
        for f in p.features
    }
    assert served and not served & truth_cols, served & truth_cols
    assert not any(O.is_oracle_column(f) or "true_" in f or "need_" in f for f in served)
    sources = {c for schema in F.source_schemas(sim_world).values() for c in schema.names}
    assert not sources & truth_cols, sources & truth_cols
