"""Metrics of the paper's two tasks, and paired bootstrap intervals for the ablation table.

Every metric takes integer class codes ``y_true`` (0..K-1) and either a probability matrix ``proba``
(n × K) or predicted codes. They are written in numpy rather than borrowed from scikit-learn so the
bootstrap can evaluate hundreds of resamples quickly and so the definitions are explicit:

* **macro Recall@1** — recall of the top-ranked class, averaged over the classes present in ``y_true``
  (a class absent from the sample has no recall; averaging it in as 0 or 1 would be arbitrary).
* **log loss** — mean negative log probability of the true class, probabilities clipped to
  ``[eps, 1]`` (rows are *not* renormalised: a model that puts mass elsewhere pays for it).
* **NDCG@k** — one relevant item per row (the clicked tile), so DCG = 1 / log2(1 + rank) when the
  rank is ≤ k and the ideal DCG is 1.
* **micro / macro F1** — over ``labels`` (default: all classes). For conversion the "none" class is
  left out (``labels`` = the products): micro F1 over all classes of a single-label problem is plain
  accuracy, dominated by sessions that convert to nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_EPS = 1e-15


def _check(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or y.ndim != 1 or len(y) != len(p):
        raise ValueError(f"y_true must be (n,) and proba (n, K); got {y.shape} and {p.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"y_true codes must lie in 0..{p.shape[1] - 1}")
    return y, p


def ranks_of_true(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """1-based rank of the true class in each row's descending order (ties count against the model)."""
    y, p = _check(y_true, proba)
    true_p = p[np.arange(len(y)), y]
    return (p >= true_p[:, None]).sum(axis=1)  # ≥ counts the true class itself, so rank ≥ 1


def macro_recall_at_1(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean over present classes of P(top-1 == class | class); the paper's tile-ranking metric."""
    y, p = _check(y_true, proba)
    hit = p.argmax(axis=1) == y
    classes = np.unique(y)
    return float(np.mean([hit[y == c].mean() for c in classes])) if len(classes) else float("nan")


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = _EPS) -> float:
    """Multi-class log loss (natural log), the paper's calibration-sensitive metric."""
    y, p = _check(y_true, proba)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0))))


def ndcg_at_k(y_true: np.ndarray, proba: np.ndarray, k: int = 3) -> float:
    """NDCG@k with one relevant item per row; rewards a clicked tile shown in the top k, not only first."""
    r = ranks_of_true(y_true, proba)
    gains = np.where(r <= k, 1.0 / np.log2(1.0 + r), 0.0)
    return float(gains.mean())


def _f1_counts(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    tp = np.array([np.sum((y_pred == c) & (y_true == c)) for c in labels], dtype=np.float64)
    fp = np.array([np.sum((y_pred == c) & (y_true != c)) for c in labels], dtype=np.float64)
    fn = np.array([np.sum((y_pred != c) & (y_true == c)) for c in labels], dtype=np.float64)
    return tp, fp, fn


def micro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int] | None = None) -> float:
    """Micro F1 over ``labels``: pooled TP/FP/FN, so frequent products weigh more (the paper's metric)."""
    y, yp = np.asarray(y_true), np.asarray(y_pred)
    lab = np.unique(np.concatenate([y, yp])) if labels is None else np.asarray(labels)
    tp, fp, fn = (x.sum() for x in _f1_counts(y, yp, lab))
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom else 0.0


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int] | None = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (a class never true nor predicted scores 0)."""
    y, yp = np.asarray(y_true), np.asarray(y_pred)
    lab = np.unique(np.concatenate([y, yp])) if labels is None else np.asarray(labels)
    tp, fp, fn = _f1_counts(y, yp, lab)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean()) if len(lab) else 0.0


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE: |accuracy − confidence| per confidence bin, weighted by bin size."""
    y, p = _check(y_true, proba)
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return float(ece)


def reliability_curve(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Per-bin mean top-1 confidence, accuracy and count: the points of a calibration plot."""
    y, p = _check(y_true, proba)
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    out: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        m = bins == b
        if m.any():
            out["confidence"].append(float(conf[m].mean()))
            out["accuracy"].append(float(hit[m].mean()))
            out["count"].append(float(m.sum()))
    return out


# --- task metric sets -------------------------------------------------------------------------
MetricFn = Callable[[np.ndarray, np.ndarray], float]


def ranking_metrics() -> dict[str, MetricFn]:
    """Tile ranking: macro Recall@1 and log loss (the paper's), NDCG@3 (a shown-in-top-3 view)."""
    return {"macro_recall_at_1": macro_recall_at_1, "log_loss": log_loss, "ndcg_at_3": ndcg_at_k}


def decide(
    proba: np.ndarray, positive_labels: Sequence[int], none_label: int, threshold: float
) -> np.ndarray:
    """Predict the most likely product when its probability reaches ``threshold``, else "none".

    Conversion is rare (most sessions convert to nothing), so a plain argmax predicts "none" almost
    always and every F1 over products is 0. F1 needs a decision rule; log loss does not.
    """
    p = np.asarray(proba)
    pos = np.asarray(positive_labels)
    best = pos[p[:, pos].argmax(axis=1)]
    return np.where(p[np.arange(len(p)), best] >= threshold, best, none_label)


def tune_threshold(
    y_true: np.ndarray, proba: np.ndarray, positive_labels: Sequence[int], none_label: int, n_grid: int = 50
) -> float:
    """The product-probability threshold that maximises micro F1 on (validation) rows."""
    p = np.asarray(proba)
    pos = np.asarray(positive_labels)
    top = p[:, pos].max(axis=1)
    grid = np.unique(np.quantile(top, np.linspace(0.0, 0.995, n_grid))) if len(top) else np.array([0.5])
    scores = [micro_f1(y_true, decide(p, pos, none_label, t), pos) for t in grid]
    return float(grid[int(np.argmax(scores))])


def conversion_metrics(
    positive_labels: Sequence[int], none_label: int | None = None, threshold: float | None = None
) -> dict[str, MetricFn]:
    """Conversion: micro/macro F1 over the products and log loss over all classes.

    The F1 decision is :func:`decide` with ``threshold`` (tuned on validation rows) when given, else a
    plain argmax over all classes.
    """
    pos = np.asarray(positive_labels)

    def pred(p: np.ndarray) -> np.ndarray:
        if threshold is None or none_label is None:
            return p.argmax(axis=1)
        return decide(p, pos, none_label, threshold)

    return {
        "micro_f1": lambda y, p: micro_f1(y, pred(p), pos),
        "macro_f1": lambda y, p: macro_f1(y, pred(p), pos),
        "log_loss": log_loss,
    }


# Direction of improvement, so reports can say "better" without knowing each metric.
LOWER_IS_BETTER = frozenset({"log_loss", "ece"})


@dataclass
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}


def cluster_resamples(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of ``n_boot`` resamples that each draw whole groups with replacement."""
    if len(groups) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(n_boot)]
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(counts), size=len(counts))
        k = counts[drawn]
        offsets = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
        out.append(order[np.repeat(starts[drawn], k) + offsets])
    return out


def paired_bootstrap(
    y_true: np.ndarray,
    probas: Mapping[str, np.ndarray],
    metrics: Mapping[str, MetricFn],
    baseline: str = "baseline",
    n_boot: int = 500,
    alpha: float = 0.05,
    random_state: int = 0,
    variant_metrics: Mapping[str, Mapping[str, MetricFn]] | None = None,
    reference: str | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, dict[str, dict[str, Interval]]]:
    """Metric intervals per variant and intervals of the *paired* difference against ``baseline``.

    Paired: every resample draws the same test rows for all variants, so the per-row correlation
    between variants cancels out of the difference — much tighter and more honest than comparing two
    independent intervals. Returns ``{variant: {"metric": {m: Interval}, "diff": {m: Interval}}}``;
    ``diff`` is variant − baseline (negative log-loss difference = improvement).
    ``variant_metrics`` overrides the metric functions of some variants (same names), e.g. an F1
    whose decision threshold was tuned per model.
    ``reference`` (e.g. an oracle variant): each variant also gets ``"headroom"``, the share of the
    reference's gain it recovered, ``(m_v − m_base) / (m_ref − m_base)``, with its interval from the
    same resamples (a ratio per resample, so the three variants' correlation is kept).
    ``groups`` (one id per row, e.g. the session of each prefix): resample whole groups, not rows —
    rows of one group are correlated, and a row bootstrap would make their intervals too narrow.
    """
    if baseline not in probas:
        raise ValueError(f"baseline variant {baseline!r} not among {sorted(probas)}")
    y = np.asarray(y_true, dtype=np.int64)
    n = len(y)
    rng = np.random.default_rng(random_state)
    idx = (
        [rng.integers(0, n, size=n) for _ in range(n_boot)]
        if groups is None
        else cluster_resamples(np.asarray(groups), n_boot, rng)
    )
    fns = {v: dict(metrics) | dict((variant_metrics or {}).get(v, {})) for v in probas}
    point = {v: {m: fn(y, p) for m, fn in fns[v].items()} for v, p in probas.items()}
    draws = {v: {m: np.empty(n_boot) for m in metrics} for v in probas}
    for b in range(n_boot):
        ib = idx[b]
        yb = y[ib]
        for v, p in probas.items():
            pb = p[ib]
            for m, fn in fns[v].items():
                draws[v][m][b] = fn(yb, pb)
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)
    out: dict[str, dict[str, dict[str, Interval]]] = {}
    for v in probas:
        out[v] = {"metric": {}, "diff": {}}
        for m in metrics:
            d = draws[v][m]
            out[v]["metric"][m] = Interval(point[v][m], *np.nanpercentile(d, [lo, hi]).tolist())
            diff = d - draws[baseline][m]
            out[v]["diff"][m] = Interval(
                point[v][m] - point[baseline][m], *np.nanpercentile(diff, [lo, hi]).tolist()
            )
            if reference is not None and reference in probas:
                gain = point[reference][m] - point[baseline][m]
                ref_draw = draws[reference][m] - draws[baseline][m]
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.where(ref_draw != 0, diff / ref_draw, np.nan)
                share = (point[v][m] - point[baseline][m]) / gain if gain else float("nan")
                bounds = (
                    np.nanpercentile(ratio, [lo, hi]).tolist() if np.isfinite(ratio).any() else [np.nan] * 2
                )
                out[v].setdefault("headroom", {})[m] = Interval(share, *bounds)
    return out
