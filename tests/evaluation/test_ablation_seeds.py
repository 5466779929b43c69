"""Model seeds and the conversion threshold: each variant over several seeds, one threshold per variant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clicks2intent.data.world import World
from clicks2intent.errors import ConfigError
from clicks2intent.evaluation.ablation import (
    BASELINE,
    EMBEDDING,
    LABELS,
    VARIANTS,
    AblationConfig,
    run_task_ablation,
    seed_lines,
    variant_features,
)
from clicks2intent.models.training_sets import CONVERSION, TILE_RANKING
from clicks2intent.names import columns as C

GROUPS = {"age": "baseline", "intent_label": "labels", "embedding": "embedding"}
BASE, FULL = ["age"], ["age", "intent_label", "embedding"]


def _frame(classes: list[str], n: int, seed: int, p: list[float]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, n, p=p)
    code = np.array([classes.index(v) for v in y])
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "intent_label": [f"L{c}" if rng.random() < 0.4 else "Lx" for c in code],
            "embedding": [np.array([c + rng.normal(0, 0.6), rng.normal()], np.float32) for c in code],
            "label": y,
        }
    )


def _run(task: str, classes: list[str], p: list[float], config: AblationConfig) -> dict:
    df = _frame(classes, 600, seed=1, p=p)
    lists = {v: variant_features(BASE, FULL, v, GROUPS.get) for v in VARIANTS}
    section, _ = run_task_ablation(
        task, df.iloc[:360], df.iloc[360:450], df.iloc[450:], lists, classes, GROUPS.get, config
    )
    return section


CONFIG = AblationConfig(n_estimators=20, n_jobs=1, n_boot=20, early_stopping_rounds=5, model_seeds=3)


@pytest.fixture(scope="module")
def conversion(sim_world: World) -> dict:
    classes = list(sim_world.products[:3]) + [C.NO_CONVERSION]
    return _run(CONVERSION, classes, [0.1, 0.1, 0.1, 0.7], CONFIG)


def test_every_variant_is_fitted_with_each_seed_and_the_gaps_are_per_seed(conversion: dict) -> None:
    seeds = conversion["seeds"]
    assert seeds["seeds"] == [0, 1, 2] and seeds["threshold"] == "pooled"
    for v in VARIANTS:
        s = seeds["variants"][v]["micro_f1"]
        assert len(s["values"]) == 3 and s["min"] <= s["mean"] <= s["max"]
        # the first seed's models are the table's (same rows, same threshold)
        assert s["values"][0] == pytest.approx(conversion["variants"][v]["micro_f1"])
    gap = seeds["gaps"][f"{EMBEDDING} − {LABELS}"]["micro_f1"]
    want = np.subtract(
        seeds["variants"][EMBEDDING]["micro_f1"]["values"], seeds["variants"][LABELS]["micro_f1"]["values"]
    )
    np.testing.assert_allclose(gap["values"], want)
    assert gap["n_positive"] == int((want > 0).sum()) and gap["sd"] == pytest.approx(np.std(want, ddof=1))
    assert "pooled" in conversion["variants"][BASELINE]["decision_threshold_rule"]
    lines = seed_lines(conversion)
    assert any(line.startswith(f"| {EMBEDDING} − {LABELS} |") and "> 0 in" in line for line in lines)


def test_one_seed_pooled_is_per_model_and_tasks_outside_seed_tasks_have_one_seed(sim_world: World) -> None:
    classes = list(sim_world.products[:3]) + [C.NO_CONVERSION]
    one = AblationConfig(n_estimators=20, n_jobs=1, n_boot=10, early_stopping_rounds=5, model_seeds=1)
    pooled = _run(CONVERSION, classes, [0.1, 0.1, 0.1, 0.7], one)
    per_model = _run(
        CONVERSION,
        classes,
        [0.1, 0.1, 0.1, 0.7],
        AblationConfig(**{**one.__dict__, "threshold": "per_model"}),
    )
    for v in VARIANTS:
        assert pooled["variants"][v]["decision_threshold"] == per_model["variants"][v]["decision_threshold"]
    assert "seeds" not in pooled and seed_lines(pooled) == []
    tiles = _run(TILE_RANKING, list(sim_world.tiles[:3]), [0.5, 0.3, 0.2], CONFIG)
    assert (
        "seeds" not in tiles and CONFIG.seeds(TILE_RANKING) == [0] and CONFIG.seeds(CONVERSION) == [0, 1, 2]
    )


def test_config_rejects_bad_seed_settings() -> None:
    with pytest.raises(ConfigError, match="model_seeds"):
        AblationConfig(model_seeds=0)
    with pytest.raises(ConfigError, match="threshold"):
        AblationConfig(threshold="median")
