"""Why did the model rank this tile first? Feature contributions grouped as baseline / embedding / labels.

XGBoost's ``pred_contribs`` splits each class margin (log-odds before the softmax) exactly into one
additive contribution per model column plus a bias (TreeSHAP). Columns are summed back to the Feast
feature they came from (the 64 dimensions of an embedding are one feature), and features to their
group via :func:`clicks2intent.features.definitions.feature_group`, so a reviewer sees at a glance whether
the customer's web intent drove a recommendation or the in-app profile did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.models.xgb import FeatureModel

GroupFn = Callable[[str], str]
BIAS = "bias"


def default_group_of() -> GroupFn:
    """The Feast part's grouping (imported lazily: the Feast objects pull in Feast)."""
    from clicks2intent.features.definitions import feature_group

    return feature_group


def _feature_contributions(
    model: FeatureModel, features: pd.DataFrame
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(n, K, n_features) contributions summed per source feature, feature names, and bias (n, K)."""
    contribs = model.estimator.contributions(model.frame(features))
    sources = model.spec.column_sources()
    names = model.spec.feature_names
    index = {n: i for i, n in enumerate(names)}
    agg = np.zeros(contribs.shape[:2] + (len(names),))
    for j, src in enumerate(sources):
        agg[:, :, index[src]] += contribs[:, :, j]
    return agg, names, contribs[:, :, -1]


def explain(
    model: FeatureModel,
    features: pd.DataFrame,
    top_k: int = 5,
    target: str | None = None,
    group_of: GroupFn | None = None,
) -> list[dict[str, Any]]:
    """Per row: the explained class (``target`` or the top-ranked one), its probability, the margin
    contribution of each group and the ``top_k`` features by absolute contribution."""
    group_of = group_of or default_group_of()
    agg, names, bias = _feature_contributions(model, features)
    proba = model.estimator.predict_proba(model.frame(features))
    groups = [group_of(n) for n in names]
    out: list[dict[str, Any]] = []
    for i in range(len(features)):
        k = model.classes.index(target) if target is not None else int(proba[i].argmax())
        row = agg[i, k]
        by_group: dict[str, float] = {}
        for g, v in zip(groups, row, strict=True):
            by_group[g] = by_group.get(g, 0.0) + float(v)
        order = np.argsort(-np.abs(row), kind="stable")[:top_k]
        out.append(
            {
                "class": model.classes[k],
                "probability": float(proba[i, k]),
                "groups": by_group | {BIAS: float(bias[i, k])},
                "top_features": [
                    {"feature": names[j], "group": groups[j], "contribution": float(row[j])} for j in order
                ],
            }
        )
    return out


def group_shares(
    model: FeatureModel, features: pd.DataFrame, group_of: GroupFn | None = None
) -> dict[str, float]:
    """Share of the mean absolute contribution (to each row's top class) that each group carries.

    Summed over a test set this answers "how much of the ranking does web intent drive?" without the
    noise of single explanations. Shares add up to 1 (bias excluded).
    """
    group_of = group_of or default_group_of()
    agg, names, _ = _feature_contributions(model, features)
    top = model.estimator.predict_proba(model.frame(features)).argmax(axis=1)
    per_feature = np.abs(agg[np.arange(len(top)), top]).mean(axis=0) if len(top) else np.zeros(len(names))
    totals: dict[str, float] = {}
    for n, v in zip(names, per_feature, strict=True):
        g = group_of(n)
        totals[g] = totals.get(g, 0.0) + float(v)
    s = sum(totals.values())
    return {g: (v / s if s > 0 else 0.0) for g, v in sorted(totals.items())}
