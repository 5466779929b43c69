"""The four-variant ablation on tiny frames: variant feature sets, the report schema, the files written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clicks2intent.data.world import World
from clicks2intent.evaluation.ablation import (
    BASELINE,
    BOTH,
    EMBEDDING,
    LABELS,
    VARIANTS,
    WEIGHT,
    AblationConfig,
    run_task_ablation,
    subsample_class,
    variant_features,
)
from clicks2intent.evaluation.reports import validate_report, write_report
from clicks2intent.models.training_sets import CONVERSION, TILE_RANKING
from clicks2intent.names import columns as C

GROUPS = {"age": "baseline", "n_products": "baseline", "intent_label": "labels", "embedding": "embedding"}
BASE = ["age", "n_products"]
FULL = BASE + ["intent_label", "embedding"]
CONFIG = AblationConfig(n_estimators=15, n_jobs=1, n_boot=30, early_stopping_rounds=5)


def group_of(name: str) -> str:
    return GROUPS[name]


def _frame(classes: list[str], n: int, seed: int, p: list[float]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, n, p=p)
    code = np.array([classes.index(v) for v in y])
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "n_products": rng.integers(0, 4, n).astype(float),
            "intent_label": [f"L{c}" if rng.random() < 0.6 else "Lx" for c in code],
            "embedding": [np.array([c + rng.normal(0, 0.7), rng.normal()], np.float32) for c in code],
            "label": y,
        }
    )


def test_variant_feature_sets() -> None:
    lists = {v: variant_features(BASE, FULL, v, group_of) for v in VARIANTS}
    assert lists[BASELINE] == BASE
    assert lists[LABELS] == BASE + ["intent_label"]
    assert lists[EMBEDDING] == BASE + ["embedding"]
    assert lists[BOTH] == FULL


@pytest.fixture(scope="module")
def report(sim_world: World) -> dict:
    tiles = list(sim_world.tiles[:4])
    conv = list(sim_world.products[:3]) + [C.NO_CONVERSION]
    lists = {v: variant_features(BASE, FULL, v, group_of) for v in VARIANTS}
    out: dict = {"dataset": "unit", "tasks": [TILE_RANKING, CONVERSION], "distillation": {}, "taxonomy": {}}
    for task, classes, p in (
        (TILE_RANKING, tiles, [0.4, 0.3, 0.2, 0.1]),
        (CONVERSION, conv, [0.1, 0.1, 0.1, 0.7]),
    ):
        df = _frame(classes, 400, seed=len(task), p=p)
        section, models = run_task_ablation(
            task, df.iloc[:260], df.iloc[260:320], df.iloc[320:], lists, classes, group_of, CONFIG
        )
        assert set(models) == set(VARIANTS)
        out[task] = section
    return out


def test_report_schema_and_content(report: dict) -> None:
    validate_report(report)
    tile = report[TILE_RANKING]
    assert tile["n_test"] == 80 and set(tile["variants"]) == set(VARIANTS)
    for v in VARIANTS:
        e = tile["variants"][v]
        assert 0.0 <= e["macro_recall_at_1"] <= 1.0 and e["log_loss"] > 0 and 0 < e["ndcg_at_3"] <= 1
        assert e["ci"]["log_loss"][0] <= e["log_loss"] <= e["ci"]["log_loss"][1]
    emb = tile["variants"][EMBEDDING]["vs_baseline"]["log_loss"]
    assert emb["diff"] == pytest.approx(
        tile["variants"][EMBEDDING]["log_loss"] - tile["variants"][BASELINE]["log_loss"]
    )
    assert emb["relative_pct"] == pytest.approx(100 * emb["diff"] / tile["variants"][BASELINE]["log_loss"])
    # the embedding carries the class here: its log loss must be clearly better than the baseline's
    assert emb["ci_high"] < 0 and emb["significant"]
    assert tile["variants"][BOTH]["contribution_shares"]["embedding"] > 0.3
    conv = report[CONVERSION]["variants"]
    assert set(conv[BASELINE]) >= {"micro_f1", "macro_f1", "log_loss", "decision_threshold"}
    assert conv[EMBEDDING]["micro_f1"] > 0  # the tuned decision predicts products, not only "none"


def test_schema_violations_are_named(report: dict) -> None:
    broken = json.loads(json.dumps(report))
    del broken[TILE_RANKING]["variants"][LABELS]
    with pytest.raises(ValueError, match="lacks 'labels'"):
        validate_report(broken)
    broken = json.loads(json.dumps(report))
    del broken["taxonomy"]
    with pytest.raises(ValueError, match="taxonomy"):
        validate_report(broken)


def test_skipped_variant_when_a_group_has_no_features(sim_world: World) -> None:
    df = _frame(list(sim_world.tiles[:3]), 200, 3, [0.5, 0.3, 0.2])
    lists = {
        v: variant_features(BASE, BASE + ["embedding"], v, group_of) for v in VARIANTS
    }  # no label features
    section, models = run_task_ablation(
        TILE_RANKING,
        df.iloc[:120],
        df.iloc[120:150],
        df.iloc[150:],
        lists,
        list(sim_world.tiles[:3]),
        group_of,
        CONFIG,
    )
    assert section["variants"][LABELS]["status"] == "skipped" and LABELS not in models
    assert section["variants"][BOTH]["status"] == "ok"


def test_write_report_files(report: dict, tmp_path) -> None:
    paths = write_report(report, tmp_path, "ablation")
    data = json.loads(paths["json"].read_text())
    assert data[TILE_RANKING]["variants"][BASELINE]["log_loss"] == pytest.approx(
        report[TILE_RANKING]["variants"][BASELINE]["log_loss"]
    )
    md = paths["md"].read_text()
    assert "| embedding+labels |" in md and "%" in md
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["ablation_calibration.png", "ablation_conversion.png", "ablation_tile_ranking.png"]
    assert all((tmp_path / p).stat().st_size > 1000 for p in pngs)


def test_subsample_class_weights_the_kept_majority_rows() -> None:
    df = pd.DataFrame({"label": [C.NO_CONVERSION] * 1000 + ["mortgage"] * 50})
    out = subsample_class(df, "label", C.NO_CONVERSION, 0.25, random_state=0)
    kept = out[out["label"] == C.NO_CONVERSION]
    assert 200 < len(kept) < 300 and (out["label"] == "mortgage").sum() == 50
    assert set(kept[WEIGHT]) == {4.0} and set(out.loc[out["label"] == "mortgage", WEIGHT]) == {1.0}
    assert out[WEIGHT].sum() == pytest.approx(len(kept) * 4 + 50)  # ≈ 1050 rows in expectation
    with pytest.raises(ValueError, match="none_sample_rate"):
        subsample_class(df, "label", C.NO_CONVERSION, 0.0)
