"""The paper's table: baseline / +labels / +embedding / +both, per task, on one time split.

For each task the four variants are trained on the SAME training rows, early-stopped on the same
validation period and scored on the same test period; only the feature columns differ:

=====================  ===============================================================
``baseline``           the production baseline (the ``*_baseline`` feature service)
``labels``             baseline + intent-label features (label, confidence, decayed label mix)
``embedding``          baseline + session-embedding features
``embedding+labels``   baseline + both: the ``*_v1`` feature service, the deployed model
=====================  ===============================================================

Which group a feature belongs to is decided once, by ``feast_objects.feature_group``. Differences
against the baseline come with paired bootstrap intervals over test rows
(:func:`clicks2intent.evaluation.metrics.paired_bootstrap`): an interval that spans zero is reported as such,
whichever way the point estimate goes.

``c2i evaluate`` runs it on any data directory in the file contracts (a bank's, or the simulator's)
through Feast, with the world declaration the features were built with; oracle rows are added only
where the data holds simulator truth (``truth/``). It writes ``reports/ablation.json``, ``ablation.md``
and PNGs, and saves the deployable models to the BentoML store.
``c2i evaluate --dataset msnbc PATH`` runs the same protocol on real MSNBC sessions
(:mod:`clicks2intent.evaluation.msnbc`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.common.progress import progress
from clicks2intent.data.world import World, load_world
from clicks2intent.errors import ConfigError
from clicks2intent.evaluation import metrics as M
from clicks2intent.evaluation.oracle import (
    CONVERSION_ORACLE_FEATURES,
    ORACLE_OBSERVABLE,
    TILE_ORACLE_FEATURES,
    TruthOracle,
    has_truth,
    is_oracle_column,
    oracle_variant_features,
)
from clicks2intent.features.definitions import feature_group
from clicks2intent.features.store import open_store
from clicks2intent.intent.taxonomy import Taxonomy
from clicks2intent.models.explain import group_shares
from clicks2intent.models.inputs import model_feature_names
from clicks2intent.models.store import (
    file_version,
    save_feature_model,
    save_serving_artifacts,
    taxonomy_version,
)
from clicks2intent.models.training_sets import (
    CONVERSION,
    LABEL,
    TILE_RANKING,
    historical_features,
    read_task_entities,
    sample_entities,
    service_feature_names,
    task_classes,
    time_split,
    world_request_values,
)
from clicks2intent.models.xgb import FeatureModel, train_feature_model
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names.paths import ARTIFACTS, CHECKPOINT_FILE, WORLD_FILE

logger = logging.getLogger(__name__)

BASELINE, LABELS, EMBEDDING, BOTH = "baseline", "labels", "embedding", "embedding+labels"
VARIANTS: tuple[str, ...] = (BASELINE, LABELS, EMBEDDING, BOTH)
# The feature groups (clicks2intent.names.features) each variant trains on.
VARIANT_GROUPS: dict[str, frozenset[str]] = {
    BASELINE: frozenset({N.BASELINE}),
    LABELS: frozenset({N.BASELINE, N.WEB_ACTIVITY, N.LABELS}),
    EMBEDDING: frozenset({N.BASELINE, N.WEB_ACTIVITY, N.EMBEDDING}),
    BOTH: frozenset({N.BASELINE, N.WEB_ACTIVITY, N.EMBEDDING, N.LABELS}),
}
# The Feast feature service of the baseline and the full variant (the deployed model's name too),
# before the world's Feast prefix (:func:`task_services`).
SERVICES: dict[str, dict[str, str]] = {
    TILE_RANKING: {BASELINE: N.TILE_RANKER_BASELINE, BOTH: N.TILE_RANKER_V1},
    CONVERSION: {BASELINE: N.CONVERSION_BASELINE, BOTH: N.CONVERSION_V1},
}


def task_services(world: World, task: str) -> dict[str, str]:
    """The task's baseline and v1 feature-service names with the world's Feast prefix."""
    return {variant: world.feast_name(name) for variant, name in SERVICES[task].items()}


TASK_TITLES = {TILE_RANKING: "Tile ranking", CONVERSION: "Conversion"}
GroupFn = Callable[[str], str]


THRESHOLD_RULES = ("pooled", "per_model")
# The gaps each seed's models are compared on (a − b, per seed): the paper's claim and each against the baseline.
SEED_GAPS: tuple[tuple[str, str], ...] = (
    (EMBEDDING, LABELS),
    (BOTH, LABELS),
    (LABELS, BASELINE),
    (EMBEDDING, BASELINE),
    (BOTH, BASELINE),
)


@dataclass
class AblationConfig:
    """Model and evaluation settings shared by every variant (bounded for a demo on a small machine)."""

    n_estimators: int = 300  # upper bound; early stopping usually ends far sooner
    learning_rate: float = 0.1  # with ≤300 rounds: converges on 10k-100k rows
    max_depth: int = 4  # 16 leaves: enough for these feature counts; deeper trees were much slower
    min_child_weight: float = 1.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    max_bin: int = 64  # hist bins: a quarter of the default, faster, ample for 10k-rows training sets
    early_stopping_rounds: int = 20
    class_weight_power: float = 0.5  # sqrt-balanced weights: see clicks2intent.models.xgb
    n_jobs: int = 2
    n_boot: int = 500  # paired bootstrap resamples of the test rows
    none_sample_rate: float = 0.3  # conversion: share of "none" training rows kept (weighted 1/rate)
    n_explain: int = 500  # test rows whose TreeSHAP contributions give the group shares (cost ∝ rows)
    random_state: int = 0
    # Model seeds per variant (random_state, +1, …) for the tasks in seed_tasks: XGBoost's row and column
    # sampling moved conversion micro F1 between seeds as much as the labels/embedding gap
    # (docs/decisions/0003-order-features-distilled-inputs-seeds.md).
    # The report gives each variant's spread and each gap's mean, spread and sign per seed.
    model_seeds: int = 5
    seed_tasks: tuple[str, ...] = (CONVERSION,)
    # Conversion's F1 decision threshold per variant: "pooled" = tuned once on the validation rows with the
    # probabilities averaged over the variant's seeds (one threshold for every seed's model); "per_model" =
    # tuned on each model's own validation probabilities, which moved it between seeds
    # (docs/decisions/0003-order-features-distilled-inputs-seeds.md).
    threshold: str = "pooled"

    def __post_init__(self) -> None:
        if self.model_seeds < 1:
            raise ConfigError(f"AblationConfig.model_seeds={self.model_seeds} must be at least 1")
        if self.threshold not in THRESHOLD_RULES:
            raise ConfigError(
                f"AblationConfig.threshold={self.threshold!r} must be one of {list(THRESHOLD_RULES)}"
            )

    def seeds(self, task: str) -> list[int]:
        """The model seeds of ``task``'s variants (the first one's models are the ones returned and saved)."""
        n = self.model_seeds if task in self.seed_tasks else 1
        return [self.random_state + i for i in range(n)]

    def model_params(self) -> dict[str, Any]:
        keys = (
            "n_estimators", "learning_rate", "max_depth", "min_child_weight", "subsample",
            "colsample_bytree", "max_bin", "early_stopping_rounds", "class_weight_power", "n_jobs",
            "random_state",
        )  # fmt: skip
        return {k: getattr(self, k) for k in keys}


def variant_features(
    baseline_features: Sequence[str], full_features: Sequence[str], variant: str, group_of: GroupFn
) -> list[str]:
    """Baseline features plus the full service's features of the variant's extra groups (ordered)."""
    extra = VARIANT_GROUPS[variant] - {N.BASELINE}
    out = list(baseline_features)
    out += [f for f in full_features if f not in out and group_of(f) in extra]
    return out


WEIGHT = "sample_weight"  # per-row training weight column (inverse sampling rate)


def subsample_class(
    df: pd.DataFrame, label_column: str, majority: str, rate: float, random_state: int = 0
) -> pd.DataFrame:
    """Keep a random ``rate`` share of the ``majority`` rows, weighted 1/rate (others weight 1).

    For conversion, where "none" is the vast majority of sessions: training on a weighted sample gives the same
    objective in expectation at a fraction of the Feast fetch and training time. Only ever applied to
    training rows; validation and test keep every row.
    """
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"none_sample_rate must be in (0, 1], got {rate}")
    rng = np.random.default_rng(random_state)
    is_major = (df[label_column] == majority).to_numpy()
    keep = ~is_major | (rng.random(len(df)) < rate)
    out = df[keep].copy()
    out[WEIGHT] = np.where(is_major[keep], 1.0 / rate, 1.0) * (
        df[WEIGHT].to_numpy()[keep] if WEIGHT in df else 1.0
    )
    return out.reset_index(drop=True)


def _codes(labels: Sequence[Any], classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in labels], dtype=np.int64)


def task_metrics(task: str, classes: Sequence[str]) -> dict[str, M.MetricFn]:
    """The paper's metric set for a task (conversion F1 over the products, "none" left out)."""
    if task == CONVERSION:
        positive = [i for i, c in enumerate(classes) if c != C.NO_CONVERSION]
        return M.conversion_metrics(positive)
    return M.ranking_metrics()


def run_task_ablation(
    task: str,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    variant_feature_lists: Mapping[str, Sequence[str]],
    classes: Sequence[str],
    group_of: GroupFn,
    config: AblationConfig,
    metric_fns: Mapping[str, M.MetricFn] | None = None,
    vocabularies: Mapping[str, Sequence[str]] | None = None,
    label_column: str = LABEL,
    services: Mapping[str, str] | None = None,
    oracle_feature_lists: Mapping[str, Sequence[str]] | None = None,
    test_groups: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, FeatureModel]]:
    """Train every variant with features, score the test rows, bootstrap the differences.

    Returns the task's report section and the fitted models. A variant without any features of its
    extra group (e.g. no label features in the service) is reported as skipped, not silently trained
    as a copy of the baseline. ``oracle_feature_lists`` (simulated data only: baseline features plus
    truth columns, :mod:`clicks2intent.evaluation.oracle`) adds reference rows, trained the same way
    but never returned as models; each variant then reports the share of the ``oracle_observable``
    headroom it recovered. ``test_groups`` (one id per test row): the bootstrap resamples those
    groups whole (several prefixes of one session are not independent rows).
    """
    classes = list(classes)
    metric_fns = dict(metric_fns or task_metrics(task, classes))
    none_label = classes.index(C.NO_CONVERSION) if task == CONVERSION and C.NO_CONVERSION in classes else None
    if none_label is not None and config.none_sample_rate < 1.0 and WEIGHT not in train.columns:
        train = subsample_class(
            train, label_column, C.NO_CONVERSION, config.none_sample_rate, config.random_state
        )
    fit = _VariantFit(train, valid, test, classes, label_column, config, vocabularies, none_label, group_of)
    services = dict(services or {})
    oracles = dict(oracle_feature_lists or {})
    leaked = sorted({f for v in VARIANTS for f in variant_feature_lists.get(v, []) if is_oracle_column(f)})
    if leaked:
        raise ConfigError(f"variant features: oracle (truth) columns {leaked[:5]} may only train oracle rows")
    models: dict[str, FeatureModel] = {}
    section: dict[str, Any] = {
        "n_train": len(train),  # rows trained on (after any "none" subsampling)
        "n_train_weighted": float(train[WEIGHT].sum()) if WEIGHT in train.columns else float(len(train)),
        "n_valid": len(valid),
        "n_test": len(test),
        "bootstrap_unit": "row" if test_groups is None else f"group ({len(np.unique(test_groups))} groups)",
        "classes": list(classes),
        "class_counts": {
            split: {
                c: int(n) for c, n in df[label_column].value_counts().reindex(classes, fill_value=0).items()
            }
            for split, df in (("train", train), ("test", test))
        },
        "metric_names": list(metric_fns),
        "variants": {},
    }
    base_feats = list(variant_feature_lists[BASELINE])
    for variant in progress((*VARIANTS, *oracles), desc=f"evaluate {task}", unit="variant"):
        is_oracle = variant in oracles
        feats = list(oracles[variant] if is_oracle else variant_feature_lists.get(variant, []))
        own = VARIANT_GROUPS.get(variant, frozenset()) - {N.BASELINE, N.WEB_ACTIVITY}
        if (
            not is_oracle
            and variant != BASELINE
            and (feats == base_feats or not any(group_of(f) in own for f in feats if not is_oracle_column(f)))
        ):
            section["variants"][variant] = {
                "features": feats,
                "n_features": len(feats),
                "status": "skipped",
                "reason": f"no {sorted(own)} features available",
            }
            continue
        model, entry = fit.run(task, variant, feats, "" if is_oracle else services.get(variant, ""))
        if is_oracle:
            entry["oracle"] = True  # truth columns: evaluation only, never saved or served
        else:
            models[variant] = model
            for seed in config.seeds(task)[1:]:
                fit.add_seed(variant, feats, seed)
        section["variants"][variant] = entry
    fit.decide_thresholds(section)
    if len(config.seeds(task)) > 1:
        section["seeds"] = fit.seed_summary(metric_fns, config.seeds(task))
    reference = ORACLE_OBSERVABLE if ORACLE_OBSERVABLE in fit.probas else None
    boot = M.paired_bootstrap(
        fit.y_test,
        fit.probas,
        metric_fns,
        BASELINE,
        config.n_boot,
        random_state=config.random_state,
        variant_metrics=fit.variant_fns,
        reference=reference,
        groups=test_groups,
    )
    _attach_intervals(section, boot, reference)
    return section, models


class _VariantFit:
    """Fits one variant on the shared split and records its test probabilities (one task's state)."""

    def __init__(
        self,
        train: pd.DataFrame,
        valid: pd.DataFrame,
        test: pd.DataFrame,
        classes: list[str],
        label_column: str,
        config: AblationConfig,
        vocabularies: Mapping[str, Sequence[str]] | None,
        none_label: int | None,
        group_of: GroupFn,
    ) -> None:
        self.train, self.valid, self.test = train, valid, test
        self.classes, self.label_column, self.config = classes, label_column, config
        self.vocabularies, self.none_label, self.group_of = vocabularies, none_label, group_of
        self.positive = [i for i in range(len(classes)) if i != none_label]
        self.y_valid = _codes(valid[label_column].tolist(), classes)
        self.y_test = _codes(test[label_column].tolist(), classes)
        self.probas: dict[str, np.ndarray] = {}
        self.variant_fns: dict[str, dict[str, M.MetricFn]] = {}
        # Per variant, one (validation, test) probability pair per model seed; the first is self.probas'.
        self.seed_probas: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def _fit(self, feats: list[str], service: str, seed: int) -> FeatureModel:
        params = self.config.model_params() | {"random_state": seed}
        return train_feature_model(
            self.train,
            self.valid,
            feats,
            self.label_column,
            self.classes,
            self.vocabularies,
            service,
            weight_column=WEIGHT if WEIGHT in self.train.columns else None,
            **params,
        )

    def add_seed(self, variant: str, feats: list[str], seed: int) -> None:
        """Fit ``variant`` once more with model seed ``seed`` (same rows and features); keep its probabilities."""
        model = self._fit(feats, "", seed)
        self.seed_probas[variant].append((model.predict_proba(self.valid), model.predict_proba(self.test)))

    def decide_thresholds(self, section: dict[str, Any]) -> None:
        """Conversion: each variant's F1 decision threshold, tuned on the validation rows (pooled over its
        seeds' probabilities or per model, ``config.threshold``); the F1 metrics then use it."""
        if self.none_label is None:
            return
        for variant, pairs in self.seed_probas.items():
            valid = (
                pairs[0][0]
                if self.config.threshold == "per_model"
                else np.mean([v for v, _ in pairs], axis=0)
            )
            t = M.tune_threshold(self.y_valid, valid, self.positive, self.none_label)
            entry = section["variants"][variant]
            entry["decision_threshold"] = t
            entry["decision_threshold_rule"] = f"{self.config.threshold}: tuned on validation" + (
                f", probabilities averaged over {len(pairs)} model seeds"
                if self.config.threshold == "pooled"
                else ""
            )
            self.variant_fns[variant] = M.conversion_metrics(self.positive, self.none_label, t)

    def seed_summary(self, metric_fns: Mapping[str, M.MetricFn], seeds: list[int]) -> dict[str, Any]:
        """Each variant's test metrics per model seed and each :data:`SEED_GAPS` gap per seed: mean, sample
        standard deviation, min, max and how many seeds it was > 0 (the same thresholds for every seed)."""
        per: dict[str, dict[str, list[float]]] = {}
        for variant, pairs in self.seed_probas.items():
            if variant not in VARIANTS or len(pairs) != len(seeds):
                continue
            fns = dict(metric_fns) | self.variant_fns.get(variant, {})
            per[variant] = {m: [float(fn(self.y_test, t)) for _, t in pairs] for m, fn in fns.items()}

        def stats(values: list[float]) -> dict[str, Any]:
            a = np.asarray(values, dtype=float)
            return {
                "values": [float(x) for x in a],
                "mean": float(a.mean()),
                "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                "min": float(a.min()),
                "max": float(a.max()),
                "n_positive": int((a > 0).sum()),
            }

        gaps = {
            f"{a} − {b}": {m: stats(list(np.subtract(per[a][m], per[b][m]))) for m in per[a]}
            for a, b in SEED_GAPS
            if a in per and b in per
        }
        return {
            "seeds": list(seeds),
            "threshold": self.config.threshold,
            "variants": {v: {m: stats(x) for m, x in ms.items()} for v, ms in per.items()},
            "gaps": gaps,
        }

    def run(
        self, task: str, variant: str, feats: list[str], service: str
    ) -> tuple[FeatureModel, dict[str, Any]]:
        cfg = self.config
        t0 = time.perf_counter()
        model = self._fit(feats, service, cfg.random_state)
        fit_s = time.perf_counter() - t0
        logger.info(
            f"{task}/{variant}: {len(feats)} features, {model.estimator.best_iteration_ + 1} trees/class, fit {fit_s:.1f}s"
        )
        p = model.predict_proba(self.test)
        self.probas[variant] = p
        self.seed_probas[variant] = [(model.predict_proba(self.valid), p)]
        entry: dict[str, Any] = {"features": feats, "n_features": len(feats)}
        entry |= {
            "status": "ok",
            "feature_service": service,
            "n_model_columns": len(model.spec.columns),
            "best_iteration": model.estimator.best_iteration_,
            "valid_weighted_log_loss": model.estimator.valid_log_loss_,
            "fit_seconds": round(fit_s, 2),
            "ece": M.expected_calibration_error(self.y_test, p),
            "calibration": M.reliability_curve(self.y_test, p),
        }
        if not any(is_oracle_column(f) for f in feats) and set(self.group_of(f) for f in feats) - {
            N.BASELINE
        }:
            rows = self.test.sample(n=min(len(self.test), cfg.n_explain), random_state=cfg.random_state)
            entry["contribution_shares"] = group_shares(model, rows, self.group_of)
        return model, entry


def _attach_intervals(section: dict[str, Any], boot: Mapping[str, Any], reference: str | None) -> None:
    """Metric values, intervals, differences against the baseline and headroom shares into ``section``."""
    base_metric = boot[BASELINE]["metric"]
    for variant, res in boot.items():
        entry = section["variants"][variant]
        for m, iv in res["metric"].items():
            entry[m] = iv.value
        entry["ci"] = {m: [iv.low, iv.high] for m, iv in res["metric"].items()}
        if variant == BASELINE:
            continue
        entry["vs_baseline"] = {
            m: {
                "diff": d.value,
                "ci_low": d.low,
                "ci_high": d.high,
                "relative_pct": 100.0 * d.value / abs(base_metric[m].value) if base_metric[m].value else None,
                "significant": bool(d.low > 0 or d.high < 0),
            }
            for m, d in res["diff"].items()
            if m in base_metric
        }
        if reference is not None and not entry.get("oracle") and "headroom" in res:
            entry["headroom_recovered"] = {
                m: {"share": h.value, "ci_low": h.low, "ci_high": h.high, "reference": reference}
                for m, h in res["headroom"].items()
            }


# --- the Feast run over a data directory -------------------------------------------------------------
@dataclass
class FeastRun:
    """Where `c2i evaluate` reads and writes (defaults: the demo's artifacts layout). The world is the one
    the features were built with (``features_dir/world.yaml``): the models' classes are its tiles and
    products, and the Feast names carry its prefix."""

    repo_path: str = "feature_repo"
    data_dir: str = str(ARTIFACTS.data)  # task logs (tile_impressions, conversions); truth/ if simulated
    features_dir: str = str(ARTIFACTS.features)  # c2i features build's output: world.yaml, tile prototypes
    reports_dir: str = str(ARTIFACTS.reports)
    encoder_dir: str = str(ARTIFACTS.encoder)
    taxonomy_path: str = str(ARTIFACTS.taxonomy)
    intent_dir: str = str(ARTIFACTS.intent)
    # Per task, entity rows sampled before the Feast query; None = every row. The DuckDB offline store
    # answers the point-in-time join fast enough that no cap is needed (docs/decisions/0011-evaluation.md).
    max_rows: int | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    conversion_embargo_days: float = 0.0  # >0 drops train/valid sessions whose horizon crosses a boundary
    save_models: bool = True
    tasks: tuple[str, ...] = (TILE_RANKING, CONVERSION)
    oracles: bool = True  # oracle rows from truth/ when the data has it (clicks2intent.evaluation.oracle)


def _taxonomy_vocab(path: str) -> list[str] | None:
    """Every label id of the taxonomy: the fixed one-hot vocabulary of the intent-label features."""
    if not Path(path).is_file():
        return None
    return list(Taxonomy.load(path).ids) or None


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run_feast_ablation(
    run: FeastRun, config: AblationConfig, group_of: GroupFn | None = None
) -> dict[str, Any]:
    """Feast training sets → four variants per task → report dict (+ models saved to the store)."""
    group_of = group_of or feature_group
    world = load_world(Path(run.features_dir) / WORLD_FILE)
    store = open_store(run.repo_path)
    tax_vocab = _taxonomy_vocab(run.taxonomy_path)
    enc_version = file_version(Path(run.encoder_dir) / CHECKPOINT_FILE)
    report: dict[str, Any] = {
        "dataset": world.name,
        "world": {"name": world.name, "digest": world.digest, "source": world.source},
        "tasks": list(run.tasks),
        "config": asdict(config),
        "run": asdict(run),
        "encoder_version": enc_version,
        "notes": [
            "Tile ranker trained on clicked impressions only (multi-class over the tiles).",
            "Conversion micro/macro F1 over the products ('none' excluded), decided with a product-probability "
            + threshold_note(config)
            + "; log loss over all classes.",
            f"Class imbalance: sample weights (n/(K n_c))^{config.class_weight_power}, probabilities prior-corrected "
            f"back to the data's class frequencies; conversion trains on {config.none_sample_rate:.0%} of the 'none' "
            "rows, weighted by the inverse rate.",
            "Splits by time: train earliest, valid (early stopping) next, test latest; 95 % paired bootstrap "
            f"({config.n_boot} resamples of the test rows) for differences against the baseline.",
        ],
        "saved_models": {},
    }
    # Oracle rows (simulated data only: truth/ exists): truth columns joined after the Feast fetch.
    oracle = TruthOracle(run.data_dir) if run.oracles and has_truth(run.data_dir) else None
    for task in run.tasks:
        t0 = time.perf_counter()
        services = task_services(world, task)
        entities = sample_entities(
            read_task_entities(task, run.data_dir, world), run.max_rows, config.random_state
        )
        embargo = pd.Timedelta(days=run.conversion_embargo_days) if task == CONVERSION else None
        # Split the entity rows by time first, so "none" training rows can be subsampled before the
        # (slow) point-in-time join; valid and test keep every row.
        group = C.SESSION_ID if task == CONVERSION else None  # impressions are their own entity
        split = time_split(entities, C.EVENT_TIMESTAMP, group, run.valid_fraction, run.test_fraction, embargo)
        train_entities = split.train
        if task == CONVERSION and config.none_sample_rate < 1.0:
            train_entities = subsample_class(
                split.train, LABEL, C.NO_CONVERSION, config.none_sample_rate, config.random_state
            )
        parts = {"train": train_entities, "valid": split.valid, "test": split.test}
        marked = pd.concat([df.assign(_part=name) for name, df in parts.items()], ignore_index=True)
        frame = historical_features(store, marked, services[BOTH], world_request_values(world))
        logger.info(
            f"{task}: {len(frame)} rows from Feast ({services[BOTH]}) in {time.perf_counter() - t0:.1f}s"
        )
        full = model_feature_names(service_feature_names(store, services[BOTH]))
        base = model_feature_names(service_feature_names(store, services[BASELINE]))
        missing_base = [f for f in base if f not in frame.columns]
        if missing_base:  # the baseline service has features v1 lacks: fetch them for the same rows
            extra = historical_features(store, marked, services[BASELINE], world_request_values(world))
            frame[missing_base] = extra[missing_base].to_numpy()
        for name in parts:
            rows = frame[frame["_part"] == name].drop(columns="_part")
            setattr(split, name, rows.sort_values(C.EVENT_TIMESTAMP, kind="stable").reset_index(drop=True))
        lists = {v: variant_features(base, full, v, group_of) for v in VARIANTS}
        oracle_lists = _attach_oracles(task, split, base, oracle) if oracle is not None else None
        vocab = {f: tax_vocab for f in full if tax_vocab and f.endswith(C.INTENT_LABEL)}
        section, models = run_task_ablation(
            task,
            split.train,
            split.valid,
            split.test,
            lists,
            task_classes(world, task),
            group_of,
            config,
            vocabularies=vocab,
            services={BASELINE: services[BASELINE], BOTH: services[BOTH]},
            oracle_feature_lists=oracle_lists,
        )
        section["split"] = split.summary()
        v1_groups = {f: group_of(f) for f in full}
        if sorted(f for f, g in v1_groups.items() if g == N.BASELINE) != sorted(base):
            section["note"] = "the v1 service's baseline-group features differ from the baseline service's"
        section["feature_groups"] = v1_groups
        tax_col = next((c for c in split.train.columns if c.endswith(C.TAXONOMY_VERSION)), None)
        tax_ver = (
            str(split.train[tax_col].dropna().mode().iloc[0])
            if tax_col and split.train[tax_col].notna().any()
            else taxonomy_version(run.taxonomy_path)
        )
        section["taxonomy_version"] = tax_ver
        if run.save_models:
            for variant in (BOTH, BASELINE):
                if variant not in models:
                    continue
                e = section["variants"][variant]
                meta = {
                    "task": task,
                    "variant": variant,
                    "feature_service": services[variant],
                    "feature_names": models[variant].spec.feature_names,
                    "encoder_version": enc_version if variant != BASELINE else "none",
                    "taxonomy_version": tax_ver if variant != BASELINE else "none",
                    "metrics": {m: e[m] for m in section["metric_names"]} | {"n_test": section["n_test"]},
                    "training_window": section["split"]["train_window"],
                    "split": section["split"],
                    "params": config.model_params(),
                    # request fields the service's on-demand views need, as used in training
                    "request_values": world_request_values(world) if task == TILE_RANKING else {},
                    "world": world.name,
                    "world_digest": world.digest,
                }
                report["saved_models"][services[variant]] = save_feature_model(models[variant], meta)
        section["seconds"] = round(time.perf_counter() - t0, 1)
        report[task] = section
    if report[
        "saved_models"
    ]:  # what a bento carries beside the models: encoder, classifier, prototypes, world
        report["saved_models"]["serving_artifacts"] = save_serving_artifacts(
            run.encoder_dir, run.intent_dir, run.features_dir
        )
    report["distillation"] = _distillation_section(Path(run.intent_dir))
    report["taxonomy"] = _taxonomy_section(Path(run.intent_dir), run.taxonomy_path)
    return report


def _attach_oracles(
    task: str, split: Any, baseline: Sequence[str], oracle: TruthOracle
) -> dict[str, list[str]]:
    """Add the task's oracle columns to every part of the split; the oracle variants' feature lists."""
    for name in ("train", "valid", "test"):
        rows = getattr(split, name)
        cols = oracle.tile_columns(rows) if task == TILE_RANKING else oracle.conversion_columns(rows)
        setattr(split, name, pd.concat([rows, cols], axis=1))
    return oracle_variant_features(
        TILE_ORACLE_FEATURES if task == TILE_RANKING else CONVERSION_ORACLE_FEATURES, baseline
    )


def _distillation_section(intent_dir: Path) -> dict[str, Any]:
    """Distillation fidelity from the distil step's report (agreement, macro F1, latency)."""
    rep = _read_json(intent_dir / "report.json")
    if rep is None:
        return {"status": "missing", "path": str(intent_dir / "report.json")}
    keep = (
        "taxonomy_version",
        "held_out",
        "n_labelled_with_embedding",
        "n_sessions_labelled",
        "batch_sessions_per_s",
        "classes",
    )
    return {"status": "ok", "source": str(intent_dir / "report.json")} | {k: rep[k] for k in keep if k in rep}


def _taxonomy_section(intent_dir: Path, taxonomy_path: str) -> dict[str, Any]:
    """Taxonomy quality against the simulator's hidden true intents (AMI/NMI), when measured."""
    rep = _read_json(intent_dir / "report.json") or {}
    out: dict[str, Any] = {"version": None, "n_labels": None}
    if Path(taxonomy_path).is_file():
        tax = Taxonomy.load(taxonomy_path)
        out |= {
            "version": tax.version_string,
            "status": tax.status,
            "n_labels": len(tax.ids),
            "model": tax.model,
        }
    if "truth" in rep:
        out["against_true_intents"] = rep["truth"]
    return out


def threshold_note(config: AblationConfig) -> str:
    """How the conversion F1 threshold was chosen and over how many model seeds (the reports' notes)."""
    seeds = config.seeds(CONVERSION)
    if config.threshold == "per_model" or len(seeds) == 1:
        rule = "threshold tuned on the validation period per model"
    else:
        rule = (
            f"threshold per variant tuned on the validation period with its {len(seeds)} model seeds' "
            "probabilities averaged (one threshold for every seed)"
        )
    spread = (
        f"; each variant fitted with {len(seeds)} model seeds ({seeds[0]}–{seeds[-1]})"
        if len(seeds) > 1
        else ""
    )
    return rule + spread


def seed_lines(section: Mapping[str, Any]) -> list[str]:
    """The task's model-seed spread as Markdown (empty without ``section["seeds"]``): each variant's
    metrics and each gap between variants over the seeds, mean ± sd [min, max] and the seeds where the
    gap was > 0."""
    seeds = section.get("seeds")
    if not seeds:
        return []
    metrics = list(section["metric_names"])
    first, last = seeds["seeds"][0], seeds["seeds"][-1]
    out = [
        "",
        f"Over {len(seeds['seeds'])} model seeds ({first}–{last}; conversion thresholds {seeds['threshold']}): "
        "mean ± sd [min, max] on the test rows.",
        "",
        "| variant | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for v, ms in seeds["variants"].items():
        cells = [
            f"{ms[m]['mean']:.4f} ± {ms[m]['sd']:.4f} [{ms[m]['min']:.4f}, {ms[m]['max']:.4f}]"
            for m in metrics
        ]
        out.append(f"| {v} | " + " | ".join(cells) + " |")
    if seeds["gaps"]:
        out += ["", "| gap, per seed | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
        for gap, ms in seeds["gaps"].items():
            cells = [
                f"{ms[m]['mean']:+.4f} ± {ms[m]['sd']:.4f} [{ms[m]['min']:+.4f}, {ms[m]['max']:+.4f}], "
                f"> 0 in {ms[m]['n_positive']}/{len(ms[m]['values'])}"
                for m in metrics
            ]
            out.append(f"| {gap} | " + " | ".join(cells) + " |")
    return out
