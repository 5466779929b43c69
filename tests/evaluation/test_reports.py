"""The ablation report a ranking team reads in 30 seconds: one sentence per task first, every interval
after it, and a difference plot whose oracle reference rows never set the variants' axis."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from clicks2intent.evaluation.ablation import BASELINE, BOTH, EMBEDDING, LABELS
from clicks2intent.evaluation.reports import (
    REFERENCE_AXES,
    VARIANT_AXES,
    difference_figure,
    headline_sentences,
    headline_table,
    write_report,
)
from clicks2intent.models.training_sets import CONVERSION, TILE_RANKING

ORACLE_OBSERVABLE, ORACLE_NEED = "oracle_observable", "oracle_need"
Diffs = dict[str, tuple[float, float, float]]  # metric -> (difference, interval low, interval high)


def _entry(base: dict[str, float], diffs: Diffs | None, oracle: bool = False) -> dict[str, Any]:
    e: dict[str, Any] = {"status": "ok", "ece": 0.05}
    e["calibration"] = {"confidence": [0.2, 0.5, 0.8], "accuracy": [0.25, 0.5, 0.7]}
    e |= {m: v + (diffs[m][0] if diffs else 0.0) for m, v in base.items()}
    if diffs is not None:
        e["vs_baseline"] = {
            m: {"diff": d, "ci_low": lo, "ci_high": hi, "relative_pct": 100 * d / base[m],
                "significant": lo > 0 or hi < 0}
            for m, (d, lo, hi) in diffs.items()
        }  # fmt: skip
    if oracle:
        e["oracle"] = True
    return e


def _section(base: dict[str, float], rows: dict[str, Diffs], headroom: bool = True) -> dict[str, Any]:
    variants = {BASELINE: _entry(base, None)}
    variants |= {v: _entry(base, d, oracle=v.startswith("oracle")) for v, d in rows.items()}
    if headroom and ORACLE_OBSERVABLE in rows:
        for v in (LABELS, EMBEDDING, BOTH):
            variants[v]["headroom_recovered"] = {
                m: {"share": 0.25, "ci_low": 0.1, "ci_high": 0.4, "reference": ORACLE_OBSERVABLE}
                for m in base
            }
    return {"n_train": 900, "n_valid": 100, "n_test": 375, "metric_names": list(base), "variants": variants}


# The demo's shape: small, clear gains for the tile variants, oracle rows ten times larger; conversion
# with no clear gain and one variant clearly worse.
TILE = _section(
    {"macro_recall_at_1": 0.15, "log_loss": 2.15, "ndcg_at_3": 0.41},
    {
        LABELS: {"macro_recall_at_1": (0.038, 0.011, 0.061), "log_loss": (-0.051, -0.080, -0.026),
                 "ndcg_at_3": (0.031, 0.008, 0.043)},
        EMBEDDING: {"macro_recall_at_1": (0.012, -0.031, 0.048), "log_loss": (-0.029, -0.047, -0.008),
                    "ndcg_at_3": (0.010, -0.013, 0.033)},
        BOTH: {"macro_recall_at_1": (0.028, 0.008, 0.050), "log_loss": (-0.058, -0.092, -0.040),
               "ndcg_at_3": (0.023, 0.001, 0.048)},
        ORACLE_OBSERVABLE: {"macro_recall_at_1": (0.094, 0.059, 0.134), "log_loss": (-0.182, -0.221, -0.143),
                            "ndcg_at_3": (0.056, 0.029, 0.081)},
        ORACLE_NEED: {"macro_recall_at_1": (0.272, 0.207, 0.352), "log_loss": (-0.506, -0.642, -0.376),
                      "ndcg_at_3": (0.175, 0.136, 0.227)},
    },
)  # fmt: skip
CONV = _section(
    {"micro_f1": 0.47, "macro_f1": 0.34, "log_loss": 0.36},
    {
        LABELS: {"micro_f1": (0.001, -0.069, 0.042), "macro_f1": (0.018, -0.055, 0.055),
                 "log_loss": (0.010, -0.005, 0.021)},
        EMBEDDING: {"micro_f1": (0.006, -0.056, 0.067), "macro_f1": (0.017, -0.053, 0.063),
                    "log_loss": (0.011, -0.014, 0.032)},
        BOTH: {"micro_f1": (-0.035, -0.060, -0.010), "macro_f1": (-0.040, -0.096, 0.022),
               "log_loss": (0.013, -0.016, 0.032)},
        ORACLE_OBSERVABLE: {"micro_f1": (0.063, -0.008, 0.133), "macro_f1": (0.068, 0.000, 0.126),
                            "log_loss": (-0.061, -0.091, -0.036)},
    },
)  # fmt: skip


def _report(**sections: dict[str, Any]) -> dict[str, Any]:
    sections = sections or {TILE_RANKING: TILE, CONVERSION: CONV}
    return {"dataset": "unit-bank", "tasks": list(sections), "distillation": {"status": "ok"},
            "taxonomy": {"version": "t1"}, "notes": ["Splits by time."], **sections}  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], list[str]]:
    paths = write_report(_report(), tmp_path_factory.mktemp("reports"), "ablation")
    return paths, paths["md"].read_text().splitlines()


def test_the_report_opens_with_one_short_sentence_per_task(
    written: tuple[dict[str, Path], list[str]],
) -> None:
    _, lines = written
    assert lines[0] == "# Ablation — unit-bank" and lines[1] == "" and lines[4] == ""
    tile, conv = lines[2], lines[3]
    assert tile == (
        "- **Tile ranking:** embedding+labels helped most, log_loss -2.70 % vs baseline "
        "(interval excludes 0)."
    )
    # Nothing helped: the best point estimate, that its interval includes 0, and who clearly hurt.
    assert conv == (
        "- **Conversion:** no variant clearly helped; best micro_f1 +1.28 % (embedding), "
        "interval includes 0; embedding+labels clearly hurt."
    )
    for line in (tile, conv):
        assert len(line) <= 140 and line.count(". ") == 0 and "oracle" not in line


def test_every_interval_of_the_report_is_kept_after_the_sentences(
    written: tuple[dict[str, Path], list[str]],
) -> None:
    _, lines = written
    md = "\n".join(lines)
    details = md.index("## Details")
    for sec in (TILE, CONV):
        for v, e in sec["variants"].items():
            for m, vs in e.get("vs_baseline", {}).items():
                # the paper's table cell, and for the headline metric the Δ with its interval
                assert f"Δ [{vs['ci_low']:+.4f}, {vs['ci_high']:+.4f}]" in md, (v, m)
            for h in e.get("headroom_recovered", {}).values():
                assert f"{100 * h['share']:.0f} % [{100 * h['ci_low']:.0f}, {100 * h['ci_high']:.0f}]" in md
    headline = re.search(
        r"\| embedding\+labels \| -2\.70 % \| -0\.0580 \[-0\.0920, -0\.0400\] \| helped \|", md
    )
    assert headline and headline.start() > details
    assert "| oracle_need (reference) | -23.53 % |" in md
    for heading in ("### Tile ranking (n_train=900", "### Conversion (n_train=900", "### Distillation"):
        assert heading in md
    assert "- Splits by time." in md and "![ablation_tile_ranking](ablation_tile_ranking.png)" in md


def _axes(fig: Any) -> dict[str, Any]:
    return {ax.get_label(): ax for ax in fig.axes if ax.get_label()}


def test_oracle_rows_do_not_squeeze_the_variants_axis() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = difference_figure(TILE, "Tile ranking — unit-bank")
    try:
        axes = _axes(fig)
        for m in TILE["metric_names"]:
            lo, hi = axes[f"{VARIANT_AXES}:{m}"].get_xlim()
            variants = [TILE["variants"][v]["vs_baseline"][m] for v in (LABELS, EMBEDDING, BOTH)]
            reach = max(max(abs(d["ci_low"]), abs(d["ci_high"])) for d in variants)
            assert lo <= -reach and hi >= reach  # every variant interval shown, centred on 0
            assert hi - lo <= 2.5 * reach  # ... and the axis is theirs
            oracle = TILE["variants"][ORACLE_NEED]["vs_baseline"][m]
            assert not lo <= oracle["diff"] <= hi  # the oracle lies beyond it
            ref_lo, ref_hi = axes[f"{REFERENCE_AXES}:{m}"].get_xlim()
            assert ref_lo <= oracle["ci_low"] and oracle["ci_high"] <= ref_hi  # on its own scale
        labels = [t.get_text() for t in axes[f"{REFERENCE_AXES}:macro_recall_at_1"].get_yticklabels()]
        assert labels == [ORACLE_OBSERVABLE, ORACLE_NEED]  # top to bottom, the section's order
    finally:
        plt.close(fig)


def test_without_oracle_rows_one_row_of_panels() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {v: d for v, d in ((v, TILE["variants"][v]["vs_baseline"]) for v in (LABELS, EMBEDDING, BOTH))}
    plain = _section(
        {"macro_recall_at_1": 0.15, "log_loss": 2.15, "ndcg_at_3": 0.41},
        {v: {m: (d["diff"], d["ci_low"], d["ci_high"]) for m, d in vs.items()} for v, vs in rows.items()},
    )
    fig = difference_figure(plain, "plain")
    try:
        assert sorted(_axes(fig)) == sorted(f"{VARIANT_AXES}:{m}" for m in plain["metric_names"])
    finally:
        plt.close(fig)


def test_msnbc_sentences_name_the_proxy_task(tmp_path: Path) -> None:
    proxied = {
        TILE_RANKING: TILE | {"proxy": "next_category"},
        CONVERSION: CONV | {"proxy": "later_category"},
    }
    lines = headline_sentences(_report(**proxied))
    assert lines[0].startswith("- **Tile ranking (next_category proxy):** embedding+labels helped most")
    assert lines[1].startswith("- **Conversion (later_category proxy):** no variant clearly helped")
    md = write_report(_report(**proxied), tmp_path, "ablation_msnbc")["md"].read_text().splitlines()
    assert md[2:4] == lines


def test_every_variant_hurt_is_said_so() -> None:
    worse = _section(
        {"micro_f1": 0.47, "macro_f1": 0.34, "log_loss": 0.36},
        {v: {"micro_f1": (-0.03 * (i + 1), -0.05 * (i + 1), -0.01), "macro_f1": (0.0, -0.1, 0.1),
             "log_loss": (0.0, -0.1, 0.1)} for i, v in enumerate((LABELS, EMBEDDING, BOTH))},
        headroom=False,
    )  # fmt: skip
    (line,) = headline_sentences(_report(**{CONVERSION: worse}))
    header = headline_table(CONVERSION, worse)[2]
    assert header == "| variant | change | Δ [95 % interval] | verdict |"  # no oracle: no headroom column
    assert (
        line == "- **Conversion:** every variant hurt; least: labels, micro_f1 -6.38 % (interval excludes 0)."
    )
