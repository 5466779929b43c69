"""Feast feature rows → the numeric matrix the XGBoost models see, identically in training and serving.

One function, :func:`to_model_frame`, turns a frame of Feast features (as returned by
``get_historical_features`` offline or ``get_online_features`` online) into model columns:

* numeric / boolean features → one float column of the same name;
* ``Array(Float32)`` features (embeddings, decayed label distributions) → ``<name>_<i>`` columns;
* string features (intent labels, balance band) → one-hot ``<name>=<value>`` columns over a FIXED
  vocabulary recorded at training time (:class:`ModelInputSpec`) and stored with the model, so a label
  first seen at serving time cannot shift the columns. An unknown value gives all zeros ("none of the
  known labels"); a missing value gives all NaN.

Missing stays missing: an unlinked customer has no web intent, and NaN lets XGBoost learn a default
direction for "no web intent" instead of pretending the embedding is the zero vector.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.names import columns as C
from clicks2intent.names import features as N

NUMERIC, ARRAY, CATEGORICAL = "numeric", "array", "categorical"
_FORBIDDEN = str.maketrans({"[": "(", "]": ")", "<": "(", ">": ")", ",": ";"})  # XGBoost feature-name rules


def is_provenance_feature(name: str) -> bool:
    """Provenance fields (which taxonomy produced a label) describe the data, they are not signal."""
    return name.endswith(C.TAXONOMY_VERSION)


def model_feature_names(feature_names: Iterable[str]) -> list[str]:
    """The features of a feature service that become model inputs: provenance fields and the raw inputs
    of on-demand projections (:data:`clicks2intent.names.features.PROJECTION_ONLY_FEATURES`) dropped."""
    return [f for f in feature_names if not is_provenance_feature(f) and f not in N.PROJECTION_ONLY_FEATURES]


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return value is pd.NA or value is pd.NaT


def _is_array(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


@dataclass
class FeatureSpec:
    """How one Feast feature becomes model columns."""

    name: str
    kind: str  # numeric | array | categorical
    columns: list[str]
    dim: int | None = None  # array features
    vocabulary: list[str] | None = None  # categorical features, in column order


@dataclass
class ModelInputSpec:
    """The fixed mapping from feature names to model columns; saved with every model."""

    features: list[FeatureSpec] = field(default_factory=list)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        return [c for f in self.features for c in f.columns]

    def column_sources(self) -> list[str]:
        """For each model column, the Feast feature it came from (explanations group by this)."""
        return [f.name for f in self.features for _ in f.columns]

    def to_dict(self) -> dict[str, Any]:
        return {"features": [asdict(f) for f in self.features]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInputSpec:
        return cls([FeatureSpec(**f) for f in data["features"]])


def fit_model_inputs(
    df: pd.DataFrame,
    feature_names: Sequence[str],
    vocabularies: Mapping[str, Sequence[str]] | None = None,
) -> ModelInputSpec:
    """Record each feature's kind, array dimension and category vocabulary from training rows.

    ``vocabularies`` fixes a categorical feature's values up front (e.g. every label of the taxonomy,
    so a label rare in the training window still gets its column).
    """
    vocabularies = dict(vocabularies or {})
    specs: list[FeatureSpec] = []
    for name in feature_names:
        if name not in df.columns:
            raise KeyError(f"feature {name!r} is not a column of the training frame")
        s = df[name]
        present = [v for v in s if not _is_missing(v)]
        if pd.api.types.is_datetime64_any_dtype(s):
            raise TypeError(f"feature {name!r} is a timestamp; model inputs must be numeric, array or label")
        if name in vocabularies or (
            present and isinstance(present[0], str) or isinstance(s.dtype, pd.CategoricalDtype)
        ):
            vocab = [str(v) for v in vocabularies.get(name, sorted({str(v) for v in present}))]
            cols = [f"{name}={v}".translate(_FORBIDDEN) for v in vocab]
            specs.append(FeatureSpec(name, CATEGORICAL, cols, vocabulary=vocab))
        elif present and _is_array(present[0]):
            dims = {len(v) for v in present}
            if len(dims) != 1:
                raise ValueError(
                    f"array feature {name!r} has rows of lengths {sorted(dims)}; one dimension required"
                )
            dim = dims.pop()
            specs.append(FeatureSpec(name, ARRAY, [f"{name}_{i}" for i in range(dim)], dim=dim))
        else:
            # Numeric, boolean, or all-missing (then numeric: one NaN column, harmless to XGBoost).
            specs.append(FeatureSpec(name, NUMERIC, [name]))
    return ModelInputSpec(specs)


def _expand_array(s: pd.Series, spec: FeatureSpec) -> np.ndarray:
    out = np.full((len(s), spec.dim or 0), np.nan, dtype=np.float32)
    for i, v in enumerate(s.to_numpy(dtype=object)):
        if _is_missing(v):
            continue
        a = np.asarray(v, dtype=np.float32)
        if a.shape != (spec.dim,):
            raise ValueError(f"array feature {spec.name!r}: expected length {spec.dim}, got shape {a.shape}")
        out[i] = a
    return out


def _one_hot(s: pd.Series, spec: FeatureSpec) -> np.ndarray:
    vocab = spec.vocabulary or []
    values = s.to_numpy(dtype=object)
    missing = np.array([_is_missing(v) for v in values], dtype=bool)
    codes = pd.Categorical(
        [None if m else str(v) for v, m in zip(values, missing, strict=True)], categories=vocab
    ).codes
    out = np.zeros((len(s), len(vocab)), dtype=np.float32)
    known = codes >= 0
    out[np.flatnonzero(known), codes[known]] = 1.0
    out[missing] = np.nan
    return out


def to_model_frame(
    df: pd.DataFrame,
    feature_names: Sequence[str] | None = None,
    spec: ModelInputSpec | None = None,
) -> pd.DataFrame:
    """Model columns (float32, NaN = missing) for the rows of ``df``, in the spec's fixed order.

    Training passes the spec it fitted (:func:`fit_model_inputs`); serving passes the spec loaded
    with the model. Without a spec one is fitted on ``df`` (handy for a one-off look, not for serving).
    """
    if spec is None:
        if feature_names is None:
            raise ValueError("give feature_names or a fitted spec")
        spec = fit_model_inputs(df, feature_names)
    elif feature_names is not None and list(feature_names) != spec.feature_names:
        raise ValueError(f"feature_names {list(feature_names)} differ from the model's {spec.feature_names}")
    blocks: list[np.ndarray] = []
    for f in spec.features:
        if f.name not in df.columns:
            raise KeyError(
                f"feature {f.name!r} is missing from the input rows (model expects {spec.feature_names})"
            )
        s = df[f.name]
        if f.kind == ARRAY:
            blocks.append(_expand_array(s, f))
        elif f.kind == CATEGORICAL:
            blocks.append(_one_hot(s, f))
        else:
            try:
                blocks.append(pd.to_numeric(s, errors="raise").astype("float32").to_numpy()[:, None])
            except (TypeError, ValueError) as err:
                raise TypeError(f"feature {f.name!r} must be numeric: {err}") from err
    matrix = np.hstack(blocks) if blocks else np.empty((len(df), 0), dtype=np.float32)
    return pd.DataFrame(matrix, columns=spec.columns, index=df.index)
