"""Report writers of the evaluation: the ablation report (JSON + Markdown + PNGs) and its contract.

The JSON is the machine-readable record (what the serving issue, the README and reviewers read);
the Markdown opens with the notes and holds the paper's table per task; the PNGs show metric
intervals and calibration. :func:`evaluate` runs an ablation (simulated or MSNBC) and writes its report. :func:`describe_artifacts` lists every output of the pipeline
(``c2i summary``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from clicks2intent.evaluation import metrics as M
from clicks2intent.evaluation.ablation import (
    BASELINE,
    TASK_TITLES,
    VARIANTS,
    AblationConfig,
    FeastRun,
    run_feast_ablation,
)
from clicks2intent.evaluation.msnbc import MsnbcRun, run_msnbc
from clicks2intent.models.training_sets import CONVERSION, TILE_RANKING

# --- report schema ---------------------------------------------------------------------------------
TASK_METRIC_NAMES: dict[str, tuple[str, ...]] = {
    TILE_RANKING: ("macro_recall_at_1", "log_loss", "ndcg_at_3"),
    CONVERSION: ("micro_f1", "macro_f1", "log_loss"),
}


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first missing piece of the ablation report contract.

    ``{"dataset", "<task>": {"n_test", "variants": {<4 variants>: {<metrics>…}}}, "distillation",
    "taxonomy"}`` — what the serving issue, the README and reviewers read.
    """
    for key in ("dataset", "tasks", "distillation", "taxonomy"):
        if key not in report:
            raise ValueError(f"ablation report: missing top-level key {key!r}")
    for task in report["tasks"]:
        sec = report.get(task)
        if not isinstance(sec, Mapping):
            raise ValueError(f"ablation report: missing task section {task!r}")
        if not isinstance(sec.get("n_test"), int) or sec["n_test"] <= 0:
            raise ValueError(f"ablation report: {task}.n_test must be a positive int")
        variants = sec.get("variants", {})
        for v in VARIANTS:
            if v not in variants:
                raise ValueError(f"ablation report: {task}.variants lacks {v!r}")
            e = variants[v]
            if e.get("status") == "skipped":
                continue
            for m in TASK_METRIC_NAMES.get(task, sec.get("metric_names", ())):
                if not isinstance(e.get(m), float):
                    raise ValueError(f"ablation report: {task}.variants.{v}.{m} must be a number")
            if v != BASELINE and "vs_baseline" not in e:
                raise ValueError(f"ablation report: {task}.variants.{v} lacks vs_baseline")


# --- report writing -------------------------------------------------------------------------------
_COLOURS = {"baseline": "#888", "labels": "#e69f00", "embedding": "#56b4e9", "embedding+labels": "#009e73"}


def _fmt(v: Any, digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown_table(section: Mapping[str, Any], title: str) -> str:
    """The paper's form: each variant's metrics and their relative change against the baseline,
    with the 95 % paired-bootstrap interval of the absolute difference."""
    metrics = section["metric_names"]
    lines = [
        f"### {title} (n_train={section['n_train']}, n_valid={section['n_valid']}, n_test={section['n_test']})",
        "",
        "| variant | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for variant in _rows(section):
        e = section["variants"].get(variant)
        if e is None:
            continue
        if e.get("status") != "ok":
            lines.append(f"| {variant} | " + " | ".join(["skipped"] * len(metrics)) + " |")
            continue
        cells = []
        for m in metrics:
            cell = _fmt(e.get(m))
            vs = e.get("vs_baseline", {}).get(m)
            if vs is not None:
                rel = vs["relative_pct"]
                star = "*" if vs["significant"] else ""
                cell += (
                    f" ({rel:+.2f} %{star}; Δ [{vs['ci_low']:+.4f}, {vs['ci_high']:+.4f}])"
                    if rel is not None
                    else ""
                )
            cells.append(cell)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Relative change against baseline; Δ = 95 % paired-bootstrap interval of the absolute difference "
        "(* = interval excludes 0). Lower log loss is better.",
    ]
    lines += _headroom_lines(section)
    shares = {
        v: e["contribution_shares"] for v, e in section["variants"].items() if "contribution_shares" in e
    }
    if shares:
        lines += ["", "Share of mean |contribution| (TreeSHAP, top class) per feature group:", ""]
        groups = sorted({g for s in shares.values() for g in s})
        lines += ["| variant | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
        for v, s in shares.items():
            lines.append(f"| {v} | " + " | ".join(f"{s.get(g, 0.0):.2f}" for g in groups) + " |")
    return "\n".join(lines) + "\n"


def _rows(section: Mapping[str, Any]) -> list[str]:
    """The four variants, then any oracle rows (evaluation-only references), in the section's order."""
    return list(VARIANTS) + [v for v in section["variants"] if v not in VARIANTS]


def _headroom_lines(section: Mapping[str, Any]) -> list[str]:
    """The share of the observable oracle's gain each variant recovered (with its bootstrap interval)."""
    rows = {v: e["headroom_recovered"] for v, e in section["variants"].items() if "headroom_recovered" in e}
    if not rows:
        return []
    metrics = [m for m in section["metric_names"] if any(m in r for r in rows.values())]
    ref = next(iter(next(iter(rows.values())).values()))["reference"]
    gain = section["variants"][ref].get("vs_baseline", {})
    out = [
        "",
        f"Share of the observable headroom recovered: (variant − baseline) / ({ref} − baseline), "
        "95 % paired-bootstrap interval. The reference's own gain: "
        + ", ".join(
            f"{m} {gain[m]['relative_pct']:+.2f} %"
            for m in metrics
            if gain.get(m, {}).get("relative_pct") is not None
        )
        + " (oracle rows are trained on truth columns, evaluation only).",
        "",
        "| variant | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for v, r in rows.items():
        cells = [
            f"{100 * r[m]['share']:.0f} % [{100 * r[m]['ci_low']:.0f}, {100 * r[m]['ci_high']:.0f}]"
            if m in r and math.isfinite(r[m]["share"])
            else "–"
            for m in metrics
        ]
        out.append(f"| {v} | " + " | ".join(cells) + " |")
    return out


def plot_report(report: Mapping[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Per task, each variant's difference to the baseline with its paired interval; one calibration figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    tasks = [t for t in report.get("tasks", []) if t in report]
    for task in tasks:
        path = out_dir / f"{stem}_{task}.png"
        if _plot_differences(
            plt, report[task], f"{TASK_TITLES.get(task, task)} — {report.get('dataset', '')}", path
        ):
            paths.append(path)
    if tasks:
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4))
        for ax, task in zip(np.atleast_1d(axes), tasks, strict=True):
            ax.plot([0, 1], [0, 1], color="#bbb", lw=1, ls="--")
            for v in VARIANTS:
                e = report[task]["variants"].get(v, {})
                if e.get("status") == "ok":
                    cal = e["calibration"]
                    ax.plot(
                        cal["confidence"],
                        cal["accuracy"],
                        marker="o",
                        ms=3,
                        label=f"{v} (ECE {e['ece']:.3f})",
                    )
            ax.set_xlabel("top-1 confidence")
            ax.set_ylabel("top-1 accuracy")
            ax.set_title(f"Calibration — {TASK_TITLES.get(task, task)}", fontsize=10)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{stem}_calibration.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_differences(plt: Any, sec: Mapping[str, Any], title: str, path: Path) -> bool:
    """One panel per metric: variant − baseline with its paired 95 % bootstrap interval, on an axis that
    is centred on zero and always shows it (a 0.5 % difference looks like one, not like a bar race)."""
    metrics = sec["metric_names"]
    rows = [v for v in _rows(sec) if sec["variants"].get(v, {}).get("vs_baseline")]
    if not rows:
        return False
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 0.5 * len(rows) + 1.6), sharey=True)
    for ax, m in zip(np.atleast_1d(axes), metrics, strict=True):
        d = [sec["variants"][v]["vs_baseline"].get(m) or {} for v in rows]
        val = np.array([x.get("diff", np.nan) for x in d], dtype=float)
        lo, hi = (np.array([x.get(k, np.nan) for x in d], dtype=float) for k in ("ci_low", "ci_high"))
        y = np.arange(len(rows))[::-1]
        ax.errorbar(val, y, xerr=[val - lo, hi - val], fmt="o", capsize=3, color="#0072b2")
        ax.axvline(0.0, color="#444", lw=1)
        reach = np.nanmax(np.abs(np.concatenate([lo, hi, val]))) if np.isfinite(lo).any() else 1.0
        ax.set_xlim(-1.15 * reach, 1.15 * reach)
        ax.set_yticks(y, rows, fontsize=8)
        better = "lower" if m in M.LOWER_IS_BETTER else "higher"
        ax.set_title(f"{m}: variant − baseline ({better} is better)", fontsize=9)
    fig.suptitle(f"{title}: difference to baseline (paired 95 % bootstrap CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _flat_rows(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested report section as (field, value) rows: dicts dotted, short lists inline."""
    if isinstance(value, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += _flat_rows(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            shown = ", ".join(_cell(v) for v in value[:12]) + (
                f", … ({len(value)})" if len(value) > 12 else ""
            )
            return [(prefix, shown)]
        return [r for i, v in enumerate(value) for r in _flat_rows(v, f"{prefix}[{i}]")]
    return [(prefix, _cell(value))]


def _cell(v: Any) -> str:
    return _fmt(v) if v is None or isinstance(v, float) else str(v)


def section_table(section: Mapping[str, Any]) -> str:
    """A report section (distillation, taxonomy) as a two-column Markdown table, not a JSON dump."""
    lines = ["| field | value |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in _flat_rows(section)]
    return "\n".join(lines)


_HEADLINE = {TILE_RANKING: "log_loss", CONVERSION: "micro_f1"}


def conclusion_lines(report: Mapping[str, Any]) -> list[str]:
    """The report's conclusion in words: each variant's headline change, beside the oracle references."""
    lines = ["## Conclusion", ""]
    for task in report.get("tasks", []):
        sec = report.get(task)
        if not isinstance(sec, Mapping):
            continue
        m = _HEADLINE.get(task, sec["metric_names"][0])
        parts = []
        for v in _rows(sec):
            e = sec["variants"].get(v, {})
            vs = e.get("vs_baseline", {}).get(m)
            if e.get("status") != "ok" or vs is None or vs["relative_pct"] is None:
                continue
            better = (vs["diff"] < 0) == (m in M.LOWER_IS_BETTER)
            word = ("helped" if better else "hurt") if vs["significant"] else "no clear change"
            text = f"{v} {word}: {vs['relative_pct']:+.2f} % (Δ {vs['diff']:+.4f} [{vs['ci_low']:+.4f}, {vs['ci_high']:+.4f}])"
            h = e.get("headroom_recovered", {}).get(m)
            if h is not None and math.isfinite(h["share"]):
                text += f", {100 * h['share']:.0f} % of the observable headroom [{100 * h['ci_low']:.0f}, {100 * h['ci_high']:.0f}]"
            parts.append(text)
        if parts:
            lines.append(
                f"- {TASK_TITLES.get(task, task)}, {m} vs baseline (n_test={sec['n_test']}): "
                + "; ".join(parts)
                + "."
            )
    return lines if len(lines) > 2 else []


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, pd.Timestamp):
        return o.isoformat()
    return str(o)


def write_report(report: dict[str, Any], out_dir: str | Path, stem: str = "ablation") -> dict[str, Path]:
    """``<stem>.json`` + ``<stem>.md`` + PNGs under ``out_dir``; returns the paths."""
    validate_report(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
    pngs = plot_report(report, out_dir, stem)
    md = [f"# Ablation — {report.get('dataset', '')}", ""]
    md += conclusion_lines(report) + [""]
    md += [f"- {line}" for line in report.get("notes", [])]
    md.append("")
    for task in report.get("tasks", []):
        if task in report:
            md.append(markdown_table(report[task], TASK_TITLES.get(task, task)))
    for key in ("distillation", "taxonomy"):
        if report.get(key):
            md += [f"### {key.capitalize()}", "", section_table(report[key]), ""]
    md += [f"![{p.stem}]({p.name})" for p in pngs]
    md_path = out_dir / f"{stem}.md"
    md_path.write_text("\n".join(md) + "\n")
    return {"json": json_path, "md": md_path} | {p.stem: p for p in pngs}


def tables_markdown(report: Mapping[str, Any]) -> str:
    """Every task's table, titled with the task and the data set (what ``c2i evaluate`` prints)."""
    return "\n".join(
        markdown_table(report[task], f"{TASK_TITLES.get(task, task)} — {report.get('dataset', '')}")
        for task in report.get("tasks", [])
        if task in report
    )


def evaluate(
    run: FeastRun | MsnbcRun, config: AblationConfig, reports_dir: str | Path
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Run the ablation on ``run``'s data set and write its report: ``ablation.*`` (a data directory
    through Feast, models saved to the BentoML store unless ``run.save_models`` is off) or
    ``ablation_msnbc.*``."""
    if isinstance(run, MsnbcRun):
        report, stem = run_msnbc(run, config), "ablation_msnbc"
    else:
        report, stem = run_feast_ablation(run, config), "ablation"
    return report, write_report(report, reports_dir, stem)


# --- the pipeline's outputs ----------------------------------------------------------------------
SKIPPED_DIRS = frozenset({"cache", "bentoml", "__pycache__"})  # caches and the model store's internals


def describe_directories(root: Path, shown: int = 4) -> list[str]:
    """One line per directory: its size and its first files (``describe_artifacts`` lists every one)."""
    groups: dict[Path, list[Path]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part in SKIPPED_DIRS for part in rel.parts[:-1]):
            continue
        groups.setdefault(rel.parent, []).append(path)
    lines = []
    for rel_dir, files in groups.items():
        size = sum(f.stat().st_size for f in files) / 2**20
        names = ", ".join(f.name for f in files[:shown]) + (
            f" (+{len(files) - shown} more)" if len(files) > shown else ""
        )
        lines.append(f"  {root / rel_dir}/  {size:,.1f} MiB: {names}")
    return lines


def describe_artifacts(root: Path) -> list[str]:
    """One line per artifact file: path, size and (for parquet) rows and columns."""
    lines: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part in SKIPPED_DIRS for part in rel.parts[:-1]):
            continue
        size = path.stat().st_size
        detail = ""
        if path.suffix == ".parquet":
            meta = pq.read_metadata(path)
            detail = f"  {meta.num_rows:,} rows x {meta.num_columns} cols"
        lines.append(f"  {root / rel}  ({size / 1024:,.0f} KiB){detail}")
    return lines
