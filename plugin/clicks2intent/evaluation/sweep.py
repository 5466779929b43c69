"""What identity resolution is worth: the tile-ranking ablation re-run at several link rates.

``c2i sweep link_rate=0.1,0.28,0.5,0.8`` re-simulates the demo's world (``truth/params.json``: same seed,
same customers) with only the swept parameter changed. The identity links are the simulator's LAST
random step, so the events, impressions and conversions are identical at every value (checked): the
encoder, the intent labels and the tile prototypes of the main run stay valid, and only the
customer web-intent aggregates change. Those are rebuilt with the feature job's own timeline
(:func:`clicks2intent.features.build.web_intent_timeline`, :data:`CUSTOMER_TIMELINE_COLUMNS`) and its
tile affinity (:func:`clicks2intent.features.transforms.tile_affinity`), joined as of each impression
like Feast's point-in-time join (latest row at or before the impression, within the view's ttl),
without a Feast repository per value. Each value gets the four variants and both oracle rows
(:mod:`clicks2intent.evaluation.oracle`, with that value's links), so the plot shows each variant's
gain and the headroom beside it.

Outputs: ``sweep_<parameter>.json``, ``.md`` and ``.png`` (log-loss and macro Recall@1 change vs the
baseline, with 95 % paired-bootstrap intervals, per value).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.data.simulator import SimulatorConfig, simulate
from clicks2intent.data.world import World, load_world
from clicks2intent.errors import ArtifactError, ConfigError
from clicks2intent.evaluation.ablation import VARIANTS, AblationConfig, run_task_ablation, variant_features
from clicks2intent.evaluation.oracle import (
    ORACLES,
    TILE_ORACLE_FEATURES,
    TruthOracle,
    oracle_variant_features,
)
from clicks2intent.features.build import (
    CUSTOMER_TIMELINE_COLUMNS,
    FeatureBuildConfig,
    load_classes,
    web_intent_timeline,
)
from clicks2intent.features.definitions import feature_group
from clicks2intent.features.transforms import load_prototypes, tile_affinity
from clicks2intent.models.inputs import model_feature_names
from clicks2intent.models.training_sets import (
    TILE_RANKING,
    read_task_entities,
    sample_entities,
    task_classes,
    time_split,
)
from clicks2intent.names import columns as C
from clicks2intent.names.features import CUSTOMER_WEB_EMBEDDING, TILE_AFFINITY
from clicks2intent.names.paths import ARTIFACTS, WORLD_FILE

logger = logging.getLogger(__name__)

# Parameters that change only the identity links (the simulator's last random step).
SWEEPABLE: tuple[str, ...] = ("link_rate", "link_moment_odds")
METRICS: tuple[str, ...] = ("log_loss", "macro_recall_at_1")


@dataclass
class SweepRun:
    """Where the sweep reads (the main run's artifacts) and what it varies."""

    parameter: str = "link_rate"
    values: tuple[float, ...] = (0.1, 0.28, 0.5, 0.8)
    root: str = str(ARTIFACTS.root)  # data/, embeddings/, intent/, features/ of the main run
    reports_dir: str = str(ARTIFACTS.reports)
    max_rows: int | None = 40_000  # clicked impressions per value (as c2i evaluate)
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    web_intent_ttl_days: float = 90.0  # the customer_web_intent view's ttl
    features: FeatureBuildConfig = field(default_factory=FeatureBuildConfig)

    def check(self) -> SweepRun:
        if self.parameter not in SWEEPABLE:
            raise ConfigError(
                f"sweep parameter: {self.parameter!r} is not sweepable on a fixed encoder; choose one of "
                f"{list(SWEEPABLE)} (they change the identity links only)"
            )
        if not self.values:
            raise ConfigError("sweep values: give at least one value (e.g. link_rate=0.1,0.28,0.5,0.8)")
        if self.parameter == "link_rate" and not all(0.0 <= v <= 1.0 for v in self.values):
            raise ConfigError(f"sweep values: link_rate must lie in [0, 1], got {list(self.values)}")
        return self


def parse_sweep(spec: str) -> tuple[str, tuple[float, ...]]:
    """``"link_rate=0.1,0.28"`` → ``("link_rate", (0.1, 0.28))``; a malformed spec names the rule."""
    name, sep, values = spec.partition("=")
    try:
        parsed = tuple(float(v) for v in values.split(",") if v.strip())
    except ValueError:
        parsed = ()
    if not sep or not name.strip() or not parsed:
        raise ConfigError(f"sweep: {spec!r} must read PARAMETER=V1,V2,... (e.g. link_rate=0.1,0.28,0.5,0.8)")
    return name.strip(), parsed


@dataclass
class _Inputs:
    """What every value shares: the main run's config, sessions, labels, embeddings, prototypes."""

    sim_config: dict[str, Any]
    world: World
    entities: pd.DataFrame
    impressions_digest: str
    contributions: pd.DataFrame  # per web session: visitor, end, label, confidence, embedding
    profile: pd.DataFrame
    classes: list[str]
    prototypes: Any
    dim: int


def _digest(frame: pd.DataFrame) -> str:
    """Content hash of a task log, the same for the written file and the in-memory frame."""
    f = frame.reset_index(drop=True).copy()
    for col in f.columns:
        if isinstance(f[col].dtype, pd.DatetimeTZDtype):
            f[col] = f[col].astype("datetime64[us, UTC]").astype("int64")
        elif f[col].dtype == object:
            f[col] = f[col].astype(str)
    return str(pd.util.hash_pandas_object(f, index=False).sum())


def _load(run: SweepRun) -> _Inputs:
    root = Path(run.root)
    data = root / ARTIFACTS.data.name
    params_path = data / "truth" / "params.json"
    if not params_path.is_file():
        raise ArtifactError(f"sweep: {params_path} not found (the sweep re-simulates a simulated run)")
    sim_config = json.loads(params_path.read_text())["config"]
    events = pd.read_parquet(
        data / ARTIFACTS.events.name, columns=[C.SESSION_ID, C.EVENT_TIMESTAMP, C.VISITOR_ID, C.CHANNEL]
    )
    web = events[events[C.CHANNEL] == "web"].groupby(C.SESSION_ID, sort=False)
    sessions = pd.DataFrame(
        {C.VISITOR_ID: web[C.VISITOR_ID].first(), C.EVENT_TIMESTAMP: web[C.EVENT_TIMESTAMP].max()}
    )
    emb = pd.read_parquet(
        root / ARTIFACTS.embeddings.relative_to(ARTIFACTS.root), columns=[C.SESSION_ID, C.EMBEDDING]
    )
    lab = pd.read_parquet(
        root / ARTIFACTS.session_intents.relative_to(ARTIFACTS.root),
        columns=[C.SESSION_ID, C.INTENT_LABEL, C.INTENT_CONFIDENCE],
    )
    contrib = (
        sessions.reset_index().merge(emb, on=C.SESSION_ID, how="left").merge(lab, on=C.SESSION_ID, how="left")
    )
    imps = pd.read_parquet(data / ARTIFACTS.tile_impressions.name)
    prototypes, dim = load_prototypes(root)
    world = load_world(data / WORLD_FILE)  # the simulator's own declaration, written with its data
    profile = pd.read_parquet(data / ARTIFACTS.customers.name, columns=[C.CUSTOMER_ID, *world.profile])
    return _Inputs(
        sim_config=sim_config,
        world=world,
        entities=read_task_entities(TILE_RANKING, data, world),
        impressions_digest=_digest(imps),
        contributions=contrib,
        profile=profile,
        classes=load_classes(root / ARTIFACTS.intent.relative_to(ARTIFACTS.root)),
        prototypes=prototypes,
        dim=dim,
    )


def customer_features(
    rows: pd.DataFrame, inputs: _Inputs, links: pd.DataFrame, run: SweepRun
) -> pd.DataFrame:
    """The tile_ranker_v1 features of ``rows`` under ``links``: profile, customer web intent, affinity."""
    lk = links[[C.VISITOR_ID, C.CUSTOMER_ID, C.LINKED_AT]]
    c = inputs.contributions.merge(lk, on=C.VISITOR_ID)
    c["available_at"] = c[[C.EVENT_TIMESTAMP, C.LINKED_AT]].max(axis=1)
    tl = web_intent_timeline(c, C.CUSTOMER_ID, inputs.classes, run.features, lk)
    tl = tl.rename(columns=CUSTOMER_TIMELINE_COLUMNS)
    tl["_t"] = tl.pop(C.EVENT_TIMESTAMP).astype("datetime64[ns, UTC]")
    q = rows.assign(_row=np.arange(len(rows)), _q=rows[C.EVENT_TIMESTAMP].astype("datetime64[ns, UTC]"))
    m = pd.merge_asof(
        q.sort_values("_q", kind="stable"),
        tl.sort_values("_t", kind="stable"),
        left_on="_q",
        right_on="_t",
        by=C.CUSTOMER_ID,
        tolerance=pd.Timedelta(days=run.web_intent_ttl_days),
    ).sort_values("_row")
    m.index = rows.index
    web_cols = [c for c in CUSTOMER_TIMELINE_COLUMNS.values() if c in m.columns]
    out = rows.merge(inputs.profile, on=C.CUSTOMER_ID, how="left")
    out.index = rows.index
    for col in web_cols:
        out[col] = m[col]
    out[TILE_AFFINITY] = [
        tile_affinity(
            e if isinstance(e, list | np.ndarray) else None,
            list(inputs.world.tiles),
            inputs.prototypes,
            inputs.dim,
        )
        for e in out[CUSTOMER_WEB_EMBEDDING]
    ]
    return out


def run_sweep(run: SweepRun, config: AblationConfig) -> dict[str, Any]:
    """One tile-ranking ablation (four variants + oracles) per value of the swept parameter."""
    run.check()
    t0 = time.perf_counter()
    inputs = _load(run)
    entities = sample_entities(inputs.entities, run.max_rows, config.random_state)
    report: dict[str, Any] = {
        "parameter": run.parameter,
        "values": list(run.values),
        "run": asdict(run) | {"features": asdict(run.features)},
        "config": asdict(config),
        "simulator": inputs.sim_config,
        "points": [],
    }
    oracle = TruthOracle(Path(run.root) / ARTIFACTS.data.name)
    for value in run.values:
        t1 = time.perf_counter()
        cfg = SimulatorConfig(**(inputs.sim_config | {run.parameter: value}))
        sim = simulate(cfg)
        if _digest(sim.tile_impressions) != inputs.impressions_digest:
            raise ConfigError(
                f"sweep: {run.parameter}={value} changed the tile impressions; the main run's artifacts "
                "do not belong to this simulation (re-run the demo before sweeping)"
            )
        oracle.links = sim.identity_links
        frame = customer_features(entities, inputs, sim.identity_links, run)
        split = time_split(frame, C.EVENT_TIMESTAMP, None, run.valid_fraction, run.test_fraction)
        for part in ("train", "valid", "test"):
            rows = getattr(split, part)
            setattr(split, part, pd.concat([rows, oracle.tile_columns(rows)], axis=1))
        base = list(inputs.world.profile)
        timeline = [c for c in CUSTOMER_TIMELINE_COLUMNS.values() if c in frame.columns]
        full = base + model_feature_names(timeline) + [TILE_AFFINITY]  # the tile ranker's own inputs
        lists = {v: variant_features(base, full, v, feature_group) for v in VARIANTS}
        section, _ = run_task_ablation(
            TILE_RANKING,
            split.train,
            split.valid,
            split.test,
            lists,
            task_classes(inputs.world, TILE_RANKING),
            feature_group,
            config,
            oracle_feature_lists=oracle_variant_features(TILE_ORACLE_FEATURES, base),
        )
        point = {
            "value": value,
            "n_links": len(sim.identity_links),
            "link_rate_customer_visitors": sim.stats["link_rate_customer_visitors"],
            "n_test": section["n_test"],
            "seconds": round(time.perf_counter() - t1, 1),
            "variants": {
                v: _point_metrics(e) for v, e in section["variants"].items() if e.get("status") == "ok"
            },
        }
        report["points"].append(point)
        logger.info("sweep %s=%s: %d links, %.0fs", run.parameter, value, point["n_links"], point["seconds"])
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _point_metrics(entry: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {m: entry[m] for m in METRICS}
    for m in METRICS:
        vs = entry.get("vs_baseline", {}).get(m)
        if vs is not None:
            base = vs["diff"] / (vs["relative_pct"] / 100.0) if vs["relative_pct"] else None
            out[f"{m}_rel_pct"] = vs["relative_pct"]
            out[f"{m}_rel_ci"] = (
                [100 * vs["ci_low"] / abs(base), 100 * vs["ci_high"] / abs(base)] if base else None
            )
        h = entry.get("headroom_recovered", {}).get(m)
        if h is not None:
            out[f"{m}_headroom"] = [h["share"], h["ci_low"], h["ci_high"]]
    return out


def sweep_markdown(report: dict[str, Any]) -> str:
    """Per value: each variant's log-loss and R@1 change vs the baseline (95 % interval) and headroom share."""
    p = report["parameter"]
    variants = [v for v in (*VARIANTS, *ORACLES) if v != "baseline"]
    lines = [
        f"# Sweep — {p}",
        "",
        f"The demo's world re-simulated at each {p} (events identical, links differ); tile ranking, change vs "
        "the profile baseline with the 95 % paired-bootstrap interval; headroom = share of oracle_observable's gain.",
        "",
        f"| {p} | links | n_test | variant | log loss Δ % | macro R@1 Δ % | headroom (log loss) |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    for pt in report["points"]:
        for v in variants:
            e = pt["variants"].get(v)
            if e is None or "log_loss_rel_pct" not in e:
                continue
            ll, r1 = e.get("log_loss_rel_ci"), e.get("macro_recall_at_1_rel_ci")
            h = e.get("log_loss_headroom")
            lines.append(
                f"| {pt['value']:g} | {pt['n_links']} | {pt['n_test']} | {v} | "
                f"{e['log_loss_rel_pct']:+.2f} [{ll[0]:+.2f}, {ll[1]:+.2f}] | "
                f"{e['macro_recall_at_1_rel_pct']:+.1f} [{r1[0]:+.1f}, {r1[1]:+.1f}] | "
                + (f"{100 * h[0]:.0f} % [{100 * h[1]:.0f}, {100 * h[2]:.0f}]" if h else "–")
                + " |"
            )
    return "\n".join(lines) + "\n"


def plot_sweep(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [pt["value"] for pt in report["points"]]
    for ax, m, title in zip(
        axes, METRICS, ("tile log loss Δ % (lower is better)", "macro Recall@1 Δ %"), strict=True
    ):
        for v in [v for v in (*VARIANTS, *ORACLES) if v != "baseline"]:
            ys, lo, hi = [], [], []
            for pt in report["points"]:
                e = pt["variants"].get(v, {})
                ci = e.get(f"{m}_rel_ci")
                ys.append(e.get(f"{m}_rel_pct", np.nan))
                lo.append(ys[-1] - ci[0] if ci else 0.0)
                hi.append(ci[1] - ys[-1] if ci else 0.0)
            style = "--" if v in ORACLES else "-"
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=3, capsize=3, ls=style, label=v)
        ax.axhline(0, color="#999", lw=0.8)
        ax.set_xlabel(report["parameter"])
        ax.set_title(title, fontsize=9)
    axes[1].legend(fontsize=7)
    fig.suptitle(
        f"Value of identity resolution: tile ranking vs {report['parameter']} (95 % CI)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_sweep(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"sweep_{report['parameter']}"
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(report, indent=1, default=str) + "\n")
    paths["png"] = plot_sweep(report, out / f"{stem}.png")
    paths["md"].write_text(sweep_markdown(report) + f"\n![{stem}]({stem}.png)\n")
    return paths


def sweep_values(spec: str | None, values: Sequence[float] | None = None) -> tuple[str, tuple[float, ...]]:
    """The (parameter, values) of a CLI spec, defaulting to the link-rate sweep."""
    if spec:
        return parse_sweep(spec)
    return "link_rate", tuple(values or SweepRun.values)
