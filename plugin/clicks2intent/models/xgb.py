"""XGBoost multi-class models: the tile ranker and the conversion model share one estimator.

Tile ranking is "which of N tiles did the customer click": a multi-class problem over the tiles whose
class probabilities, sorted, are the ranking. Conversion is "which product (or none) does the visitor
apply for": the same estimator over products + "none".

Choices, and why:

* **Native ``xgboost.train`` with a fixed class list** — the class columns of ``predict_proba`` are
  fixed by ``classes`` (e.g. ``columns.TILES``), not by whichever classes happen to appear in one
  training window, so a stored model and its serving code always agree on the output order.
* **Missing stays NaN** — XGBoost learns a default branch for missing values; an unlinked customer's
  web-intent features are NaN, never imputed as zeros (see :mod:`clicks2intent.models.inputs`).
* **Early stopping** on a validation slice (the time split's validation period, or the latest
  ``validation_fraction`` of the training rows) with multi-class log loss, up to ``n_estimators``
  rounds — bounded so the demo stays within minutes on a small machine.
* **Class imbalance** — per-row weights ``w_c = (n / (K · n_c)) ** class_weight_power`` (times any
  ``sample_weight``, e.g. the inverse sampling rate of a subsampled "none" class), normalised to
  mean 1: rare classes get their share of splits. The same weights apply to the validation slice so
  early stopping optimises the training objective. Weighting shifts the learned class prior, so with
  ``prior_correction`` (default) ``predict_proba`` divides by the weights and renormalises: the
  probabilities are back on the data's class frequencies (log loss is meaningful: on the simulated
  conversion task, uncorrected sqrt weights gave a log loss worse than the class prior;
  docs/decisions/0011-evaluation.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.common.settings import passive_openmp

passive_openmp()  # before scikit-learn / XGBoost load OpenMP: its spinning workers starve shared cores

from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402

from clicks2intent.errors import ArtifactError  # noqa: E402
from clicks2intent.models.inputs import ModelInputSpec, fit_model_inputs, to_model_frame  # noqa: E402
from clicks2intent.names.paths import BOOSTER_FILE, ESTIMATOR_FILE  # noqa: E402


def class_weight_table(
    y_codes: np.ndarray, n_classes: int, power: float, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """Per-class weights ``(n / (K · n_c)) ** power`` over the K classes present (absent classes: 1).

    Counts are weighted by ``sample_weight``: a class subsampled at rate r with weights 1/r keeps its
    true frequency, so its class weight does not change.
    """
    w = np.ones(len(y_codes)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    counts = np.bincount(y_codes, weights=w, minlength=n_classes).astype(np.float64)
    present = counts > 0
    table = np.ones(n_classes)
    table[present] = (counts.sum() / (present.sum() * counts[present])) ** power
    return table


def row_weights(y_codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Row weights from a class table, normalised to mean 1 so learning-rate settings keep their meaning."""
    w = table[y_codes]
    return w / w.mean() if len(w) else w


class XGBMultiClassifier(ClassifierMixin, BaseEstimator):
    """Multi-class gradient-boosted trees with early stopping and imbalance weights (sklearn-style)."""

    def __init__(
        self,
        classes: Sequence[str] | None = None,
        n_estimators: int = 300,
        learning_rate: float = 0.1,
        max_depth: int = 4,
        min_child_weight: float = 1.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        max_bin: int = 64,
        early_stopping_rounds: int = 20,
        validation_fraction: float = 0.15,
        class_weight_power: float = 0.5,
        prior_correction: bool = True,
        n_jobs: int = 2,
        random_state: int = 0,
    ) -> None:
        self.classes = classes
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.class_weight_power = class_weight_power
        self.prior_correction = prior_correction
        self.n_jobs = n_jobs
        self.random_state = random_state

    # --- helpers ---------------------------------------------------------------------------------
    def _encode(self, y: Sequence[Any]) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes_)}
        values = np.asarray(y, dtype=object)
        unknown = sorted({str(v) for v in values if v not in index})
        if unknown:
            raise ValueError(f"labels {unknown[:5]} are not among the model's classes {list(self.classes_)}")
        return np.array([index[v] for v in values], dtype=np.int64)

    def _matrix(self, X: pd.DataFrame) -> Any:
        import xgboost as xgb

        if list(X.columns) != self.feature_names_in_:
            raise ValueError("X columns differ from the training columns (use the model's ModelInputSpec)")
        return xgb.DMatrix(X.to_numpy(dtype=np.float32), missing=np.nan, feature_names=self.feature_names_in_)

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "multi:softprob",
            "num_class": len(self.classes_),
            "eval_metric": "mlogloss",
            "tree_method": "hist",
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "max_bin": self.max_bin,
            "nthread": self.n_jobs,
            "seed": self.random_state,
            "verbosity": 0,
        }

    # --- sklearn API -----------------------------------------------------------------------------
    def fit(
        self,
        X: pd.DataFrame,
        y: Sequence[Any],
        eval_set: tuple[pd.DataFrame, Sequence[Any]] | None = None,
        sample_weight: Sequence[float] | None = None,
    ) -> XGBMultiClassifier:
        """Train; without ``eval_set`` the LAST ``validation_fraction`` of rows (pass them time-sorted)
        is held out for early stopping, so validation is later than training as in production."""
        import xgboost as xgb

        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                "X must be a DataFrame of model columns (clicks2intent.models.inputs.to_model_frame)"
            )
        y = list(y)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        self.classes_ = list(self.classes) if self.classes is not None else sorted({str(v) for v in y})
        self.feature_names_in_ = [str(c) for c in X.columns]
        self.n_features_in_ = len(self.feature_names_in_)
        codes = self._encode(y)
        sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if len(sw) != len(y) or (sw <= 0).any():
            raise ValueError("sample_weight must hold one positive weight per row")
        if eval_set is None:
            n_valid = int(round(len(X) * self.validation_fraction))
            if n_valid < 1 or n_valid >= len(X):
                raise ValueError(
                    f"cannot hold out {self.validation_fraction:.0%} of {len(X)} rows for early stopping"
                )
            X_tr, X_va = X.iloc[:-n_valid], X.iloc[-n_valid:]
            y_tr, y_va = codes[:-n_valid], codes[-n_valid:]
            sw_tr = sw[:-n_valid]
        else:
            X_tr, y_tr, sw_tr = X, codes, sw
            X_va, y_va = eval_set[0], self._encode(list(eval_set[1]))
        k = len(self.classes_)
        # Weights from the training class frequencies, applied to both sides (same objective).
        table = class_weight_table(y_tr, k, self.class_weight_power, sw_tr)
        self.class_weights_ = {c: float(w) for c, w in zip(self.classes_, table, strict=True)}
        self.class_counts_ = {
            c: int(n) for c, n in zip(self.classes_, np.bincount(y_tr, minlength=k), strict=True)
        }
        w_tr = table[y_tr] * sw_tr
        dtrain = self._matrix(X_tr)
        dtrain.set_label(y_tr)
        dtrain.set_weight(w_tr / w_tr.mean())
        dvalid = self._matrix(X_va)
        dvalid.set_label(y_va)
        dvalid.set_weight(row_weights(y_va, table))
        evals_result: dict[str, Any] = {}
        self.booster_ = xgb.train(
            self._params(),
            dtrain,
            num_boost_round=self.n_estimators,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=self.early_stopping_rounds,
            evals_result=evals_result,
            verbose_eval=False,
        )
        self.best_iteration_ = int(self.booster_.best_iteration)
        self.valid_log_loss_ = float(evals_result["valid"]["mlogloss"][self.best_iteration_])
        self.n_train_, self.n_valid_ = len(X_tr), len(X_va)  # rows actually trained on / validated
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, K) class probabilities in ``classes_`` order, from the early-stopped number of trees."""
        p = self.booster_.predict(self._matrix(X), iteration_range=(0, self.best_iteration_ + 1))
        p = np.asarray(p, dtype=np.float64).reshape(len(X), len(self.classes_))
        if self.prior_correction:
            # Weighting class c by w_c multiplies its odds by w_c; dividing undoes that prior shift,
            # so the probabilities match the data's class frequencies again (calibrated log loss).
            w = np.array([self.class_weights_.get(c, 1.0) for c in self.classes_])
            p = p / w
            p /= p.sum(axis=1, keepdims=True)
        return p

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.classes_, dtype=object)[self.predict_proba(X).argmax(axis=1)]

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """SHAP-style ``pred_contribs``: (n, K, F + 1) margin contributions, last column = bias."""
        c = self.booster_.predict(
            self._matrix(X), pred_contribs=True, iteration_range=(0, self.best_iteration_ + 1)
        )
        return np.asarray(c).reshape(len(X), len(self.classes_), self.n_features_in_ + 1)

    # --- persistence -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything but the trees, JSON-serialisable (stored next to the booster)."""
        return {
            "params": self.get_params(),
            "classes": self.classes_,
            "feature_names": self.feature_names_in_,
            "best_iteration": self.best_iteration_,
            "valid_log_loss": self.valid_log_loss_,
            "class_counts": self.class_counts_,
            "class_weights": self.class_weights_,
            "n_train": self.n_train_,
            "n_valid": self.n_valid_,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], booster: Any) -> XGBMultiClassifier:
        params = dict(state["params"])
        est = cls(**params)
        est.classes_ = list(state["classes"])
        est.feature_names_in_ = list(state["feature_names"])
        est.n_features_in_ = len(est.feature_names_in_)
        est.best_iteration_ = int(state["best_iteration"])
        est.valid_log_loss_ = float(state["valid_log_loss"])
        est.class_counts_ = dict(state["class_counts"])
        est.class_weights_ = dict(state.get("class_weights", {}))
        est.n_train_, est.n_valid_ = int(state["n_train"]), int(state["n_valid"])
        est.booster_ = booster
        return est


@dataclass
class FeatureModel:
    """A fitted estimator plus the fixed mapping from Feast features to its columns.

    This is the unit that is stored and served: serving hands it the rows Feast returns for the
    model's feature service and gets class probabilities back, through the same
    :func:`~clicks2intent.models.inputs.to_model_frame` as training.
    """

    spec: ModelInputSpec
    estimator: XGBMultiClassifier
    feature_service: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(self.estimator.classes_)

    def frame(self, features: pd.DataFrame) -> pd.DataFrame:
        return to_model_frame(features, spec=self.spec)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(self.frame(features))

    def rank(self, features: pd.DataFrame) -> list[list[tuple[str, float]]]:
        """Per row, (class, probability) sorted best first: the tile ranking."""
        p = self.predict_proba(features)
        order = np.argsort(-p, axis=1, kind="stable")
        return [[(self.classes[j], float(p[i, j])) for j in row] for i, row in enumerate(order)]

    def save(self, directory: str | Path) -> Path:
        """Write ``booster.ubj`` + ``estimator.json`` (state, input spec, service, metadata)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.estimator.booster_.save_model(str(directory / BOOSTER_FILE))
        payload = {
            "estimator": self.estimator.state(),
            "input_spec": self.spec.to_dict(),
            "feature_service": self.feature_service,
            "metadata": self.metadata,
        }
        (directory / ESTIMATOR_FILE).write_text(json.dumps(payload, indent=1, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FeatureModel:
        import xgboost as xgb

        directory = Path(directory)
        for name in (ESTIMATOR_FILE, BOOSTER_FILE):
            if not (directory / name).is_file():
                raise ArtifactError(
                    f"model: {directory / name} not found; train the model first (c2i evaluate)"
                )
        payload = json.loads((directory / ESTIMATOR_FILE).read_text())
        booster = xgb.Booster()
        booster.load_model(str(directory / BOOSTER_FILE))
        return cls(
            spec=ModelInputSpec.from_dict(payload["input_spec"]),
            estimator=XGBMultiClassifier.from_state(payload["estimator"], booster),
            feature_service=payload.get("feature_service", ""),
            metadata=payload.get("metadata", {}),
        )


def train_feature_model(
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    feature_names: Sequence[str],
    label_column: str,
    classes: Sequence[str],
    vocabularies: dict[str, Sequence[str]] | None = None,
    feature_service: str = "",
    weight_column: str | None = None,
    **params: Any,
) -> FeatureModel:
    """Fit the input spec on the training rows, then the estimator (early-stopped on ``valid``).

    ``weight_column``: per-row sample weights in ``train`` (e.g. 1/rate for subsampled rows)."""
    spec = fit_model_inputs(train, feature_names, vocabularies)
    est = XGBMultiClassifier(classes=classes, **params)
    eval_set = None if valid is None else (to_model_frame(valid, spec=spec), valid[label_column].tolist())
    weights = None if weight_column is None else train[weight_column].to_numpy(dtype=np.float64)
    est.fit(
        to_model_frame(train, spec=spec),
        train[label_column].tolist(),
        eval_set=eval_set,
        sample_weight=weights,
    )
    return FeatureModel(spec=spec, estimator=est, feature_service=feature_service)
