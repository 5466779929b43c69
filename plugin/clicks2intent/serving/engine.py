"""Request → Feast online features → XGBoost → response: the logic behind the BentoML service.

``bento/service.py`` is a thin shell around :class:`ServingEngine` (load once per worker, one method
per endpoint), so everything here is testable without a server and the benchmark's in-process loop
runs exactly the code the service runs.

Rules, stated once:

* **Validation** is the request schemas' job (:mod:`clicks2intent.serving.schemas`): a bad request
  fails before any feature read, with a message whose ``loc`` names the field.
* **Freshest web intent wins.** The models were trained on the *customer's* web intent (through
  identity links). At request time a fresher source may exist, and it is substituted into the same
  model inputs, in this order: the in-flight session sent in the request → the visitor's own web
  intent → the customer's → none. ``intent.source`` says which one was used.
* **Unknown keys are not errors.** Feast returns nulls for an unknown customer or visitor; nulls stay
  NaN in the model inputs (XGBoost's learned "missing" branch: the baseline behaviour) and the answer
  says ``source: "none"``. Only a malformed request is a 4xx; an unreachable store is a 503.
* **Hot path.** One row per request: model inputs are written straight into a preallocated float32
  row from the Feast response (:class:`RowBuilder`, tested against ``to_model_frame``) and scored by
  the forest compiled to numpy (:class:`TreeEnsemble`, checked against the booster at load): no pandas
  frame, no DMatrix, no per-call XGBoost setup.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.data.pii import scrub
from clicks2intent.data.world import World
from clicks2intent.encoder.pipeline import ONLINE_SESSION_ID
from clicks2intent.errors import ConfigError, ServiceError
from clicks2intent.features import store as fs
from clicks2intent.features import transforms as T
from clicks2intent.features.sessions import session_stats
from clicks2intent.models.inputs import ARRAY, CATEGORICAL, ModelInputSpec
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names import settings as ENV
from clicks2intent.names.paths import ArtifactLayout
from clicks2intent.serving.online import OnlineReader, OutageGate, direct_reader
from clicks2intent.serving.schemas import (
    SOURCE_CUSTOMER,
    SOURCE_NONE,
    SOURCE_SESSION,
    SOURCE_VISITOR,
    TOP_LABELS,
    Contribution,
    ConversionRequest,
    ConversionResponse,
    Explanation,
    IntentInfo,
    IntentRequest,
    IntentResponse,
    LabelScore,
    ModelInfo,
    RankTilesRequest,
    RankTilesResponse,
    SessionEvent,
    TileScore,
)

logger = logging.getLogger(__name__)


# --- model inputs, one row at a time -------------------------------------------------------------
def _missing(value: Any) -> bool:
    if isinstance(value, str):
        return value == C.NO_LABEL  # an unreadable in-flight session's label
    return value is None or (isinstance(value, float) and math.isnan(value))


class RowBuilder:
    """Writes one Feast feature row into the model's column layout (a ``(1, n_columns)`` float32 array).

    Same rules as :func:`clicks2intent.models.inputs.to_model_frame` (missing → NaN, arrays expanded,
    labels one-hot over the stored vocabulary, unknown label → zeros), without building a DataFrame:
    on the serving path the frame cost more than the Feast read itself. Parity is tested.
    """

    def __init__(self, spec: ModelInputSpec) -> None:
        self.spec = spec
        self.n_columns = len(spec.columns)
        self._plan: list[tuple[str, str, int, int, dict[str, int] | None]] = []
        offset = 0
        for f in spec.features:
            width = len(f.columns)
            vocab = {v: i for i, v in enumerate(f.vocabulary or [])} if f.kind == CATEGORICAL else None
            self._plan.append((f.name, f.kind, offset, width, vocab))
            offset += width

    @property
    def feature_names(self) -> list[str]:
        return self.spec.feature_names

    def build(self, features: Mapping[str, Any]) -> np.ndarray:
        row = np.full((1, self.n_columns), np.nan, dtype=np.float32)
        out = row[0]
        for name, kind, start, width, vocab in self._plan:
            if name not in features:
                raise KeyError(
                    f"feature {name!r} is missing from the feature row (model expects {self.feature_names})"
                )
            value = features[name]
            if _missing(value):
                continue
            if kind == ARRAY:
                a = np.asarray(value, dtype=np.float32)
                if a.shape != (width,):
                    raise ValueError(f"array feature {name!r}: expected length {width}, got shape {a.shape}")
                out[start : start + width] = a
            elif kind == CATEGORICAL:
                out[start : start + width] = 0.0
                j = vocab.get(str(value)) if vocab is not None else None
                if j is not None:
                    out[start + j] = 1.0
            else:
                out[start] = float(value)
        return row


class TreeEnsemble:
    """A softmax XGBoost forest compiled into flat numpy arrays, for scoring ONE row.

    Why: ``Booster.inplace_predict`` on one row spends more CPU per call than walking the trees in numpy,
    even for a small model (per-call C++ setup plus Python argument marshalling; benchmarks/bench_service.py,
    docs/decisions/0013-serving-path.md). All trees are
    walked together, one numpy step per tree level: leaves point to themselves, so ``depth`` steps
    reach every leaf. Semantics are XGBoost's: go left when ``x < split`` (float32), missing values
    follow ``default_left``, class margin = base score + sum of its trees' leaves, then softmax.
    :meth:`from_booster` returns ``None`` for anything else (categorical splits, another objective),
    and :class:`ServedModel` checks parity against the booster before using it.
    """

    def __init__(self, booster: Any, iteration_range: tuple[int, int]) -> None:
        model = json.loads(booster.save_raw("json"))["learner"]
        params = model["learner_model_param"]
        objective = model["objective"]["name"]
        forest = model["gradient_booster"]["model"]
        if (
            objective not in ("multi:softprob", "multi:softmax")
            or model["gradient_booster"]["name"] != "gbtree"
        ):
            raise ValueError(f"unsupported model for TreeEnsemble: {objective}")
        self.n_classes = int(params["num_class"])
        base = params["base_score"]
        self.base = np.asarray(json.loads(base) if base.startswith("[") else [float(base)], dtype=np.float64)
        indptr = forest["iteration_indptr"]
        trees = forest["trees"][indptr[iteration_range[0]] : indptr[iteration_range[1]]]
        self.tree_class = np.asarray(
            forest["tree_info"][indptr[iteration_range[0]] : indptr[iteration_range[1]]]
        )
        if any(any(t["split_type"]) for t in trees):
            raise ValueError("categorical splits are not supported by TreeEnsemble")
        sizes = np.asarray([len(t["left_children"]) for t in trees])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        shift = np.repeat(offsets, sizes)
        left = np.concatenate([t["left_children"] for t in trees]).astype(np.int64)
        right = np.concatenate([t["right_children"] for t in trees]).astype(np.int64)
        is_leaf = left == -1
        self_index = np.arange(len(left), dtype=np.int64)
        self.left = np.where(is_leaf, self_index, left + shift)
        self.right = np.where(is_leaf, self_index, right + shift)
        # children[2 * node + went_right]: one gather per level instead of two and a select
        self.children = np.stack([self.left, self.right], axis=1).ravel()
        self.feature = np.concatenate([t["split_indices"] for t in trees]).astype(np.int64)
        self.split = np.concatenate([np.asarray(t["split_conditions"], dtype=np.float32) for t in trees])
        self.default_left = np.concatenate([t["default_left"] for t in trees]).astype(bool)
        self.default_right = ~self.default_left
        self.leaf_value = np.where(is_leaf, self.split, 0.0).astype(
            np.float64
        )  # leaves store their value there
        self.roots = offsets
        self.depth = max((self._depth(t) for t in trees), default=0)

    @staticmethod
    def _depth(tree: Mapping[str, Any]) -> int:
        depth = {0: 0}
        for i, (lc, rc) in enumerate(zip(tree["left_children"], tree["right_children"], strict=True)):
            if lc != -1:
                depth[lc] = depth[rc] = depth[i] + 1
        return max(depth.values())

    @classmethod
    def from_booster(cls, booster: Any, iteration_range: tuple[int, int]) -> TreeEnsemble | None:
        try:
            return cls(booster, iteration_range)
        except (ValueError, KeyError):
            return None

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Class margins ``(K,)`` for one row of model columns (float32, NaN = missing)."""
        node = self.roots
        missing = np.isnan(x)
        for _ in range(self.depth):
            f = self.feature[node]
            # right unless x < split; a missing x (every comparison False) goes where its node says
            right = (x[f] >= self.split[node]) | (missing[f] & self.default_right[node])
            node = self.children[(node << 1) | right]
        return self.base + np.bincount(
            self.tree_class, weights=self.leaf_value[node], minlength=self.n_classes
        )

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = self.margin(x)
        z = np.exp(z - z.max())
        return z / z.sum()


@dataclass
class ServedModel:
    """A stored :class:`~clicks2intent.models.xgb.FeatureModel` prepared for one-row requests."""

    model: Any  # clicks2intent.models.xgb.FeatureModel
    name: str
    version: str
    compile_trees: bool = True  # score with TreeEnsemble when it reproduces the booster

    def __post_init__(self) -> None:
        est = self.model.estimator
        self.rows = RowBuilder(self.model.spec)
        self.classes: list[str] = list(est.classes_)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.iteration_range = (0, int(est.best_iteration_) + 1)
        self.booster = est.booster_
        # One request = one row: OpenMP threads only add wake-up latency and fight the other workers.
        self.booster.set_param({"nthread": 1})
        self._lock = threading.Lock()  # Booster predictions are not documented as thread-safe
        self.trees = (
            TreeEnsemble.from_booster(self.booster, self.iteration_range) if self.compile_trees else None
        )
        if self.trees is not None and not self._trees_agree():
            logger.warning("model %s:%s: the compiled forest disagrees with the booster; scoring with the booster",
                           self.name, self.version)  # fmt: skip
            self.trees = None
        # The estimator's post-hoc prior correction (XGBMultiClassifier.predict_proba): training weighted
        # class c by w_c, so its odds are divided by w_c again. Parity with predict_proba is tested.
        self.class_weights: np.ndarray | None = None
        if getattr(est, "prior_correction", False):
            self.class_weights = np.array(
                [est.class_weights_.get(c, 1.0) for c in self.classes], dtype=np.float64
            )

    def _trees_agree(self, n: int = 64, tol: float = 1e-5) -> bool:
        """Parity self-check on random rows with missing values: never serve a mis-compiled forest."""
        rng = np.random.default_rng(0)
        X = rng.normal(size=(n, self.rows.n_columns)).astype(np.float32)
        X[rng.random(X.shape) < 0.3] = np.nan
        X[: n // 4] = np.where(
            np.isnan(X[: n // 4]), np.nan, np.round(X[: n // 4])
        )  # one-hot-like 0/1 values
        ref = np.asarray(
            self.booster.inplace_predict(X, iteration_range=self.iteration_range, missing=np.nan)
        )
        got = np.stack([self.trees.predict_proba(x) for x in X])  # type: ignore[union-attr]
        return ref.shape == got.shape and bool(np.abs(ref - got).max() <= tol)

    @classmethod
    def from_store(cls, bento_model: Any, compile_trees: bool = True) -> ServedModel:
        """From a ``bentoml.Model`` (what a ``BentoModel`` class attribute resolves to)."""
        from clicks2intent.models.store import load_feature_model  # scikit-learn + XGBoost: workers only

        model = load_feature_model(bento_model)
        return cls(model, str(bento_model.tag.name), str(bento_model.tag.version), compile_trees)

    @property
    def feature_service(self) -> str:
        return self.model.feature_service

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, version=self.version)

    def predict_row(self, row: np.ndarray) -> np.ndarray:
        """Class probabilities ``(K,)`` for one model-input row ``(1, n_columns)``, as ``predict_proba``."""
        if self.trees is not None:
            p = self.trees.predict_proba(row[0])
        else:
            with self._lock:
                p = self.booster.inplace_predict(row, iteration_range=self.iteration_range, missing=np.nan)
            p = np.asarray(p, dtype=np.float64).reshape(-1)
        if self.class_weights is not None:
            p = p / self.class_weights
            p /= p.sum()
        return p

    def predict(self, features: Mapping[str, Any]) -> np.ndarray:
        return self.predict_row(self.rows.build(features))


def _float_or_none(value: Any) -> float | None:
    return None if _missing(value) else float(value)


def session_activity(events: Sequence[Mapping[str, Any]], world: World) -> dict[str, Any]:
    """The ``session_activity`` features of the in-flight session, by the batch job's own function."""
    frame = pd.DataFrame(
        [
            {
                C.SESSION_ID: ONLINE_SESSION_ID,
                C.EVENT_TIMESTAMP: e.get(C.EVENT_TIMESTAMP),
                C.PAGE_TYPE: e[C.PAGE_TYPE],
                C.SEARCH_QUERY: e.get(C.SEARCH_QUERY),
                C.DWELL_SECONDS: e.get(C.DWELL_SECONDS),
                C.CHANNEL: e.get(C.CHANNEL),
            }
            for e in events
        ]
    )
    frame[C.EVENT_TIMESTAMP] = pd.to_datetime(frame[C.EVENT_TIMESTAMP], utc=True)
    frame[C.DWELL_SECONDS] = pd.to_numeric(frame[C.DWELL_SECONDS], errors="coerce")
    frame = frame.sort_values(C.EVENT_TIMESTAMP, kind="stable")
    activity, _ = session_stats(frame, world)
    row = activity.iloc[0]
    return {
        n: (None if pd.isna(row[n]) else row[n].item() if hasattr(row[n], "item") else row[n])
        for n in world.session_activity_fields
    }


# --- fresher web intent into the tile ranker's inputs ------------------------------------------------
# Per source: tile-ranker input (customer web intent) <- the fresher feature that replaces it.
# ``customer_intent_decayed`` for a session is the one-hot of its label (what the decayed mix is for a
# customer with exactly that one session); ``tile_affinity`` is recomputed from the substituted
# embedding with the on-demand view's own function.
SUBSTITUTIONS: dict[str, dict[str, str]] = {
    SOURCE_SESSION: {
        N.CUSTOMER_WEB_EMBEDDING: N.INFLIGHT_EMBEDDING,
        N.CUSTOMER_INTENT_LABEL: N.INFLIGHT_INTENT_LABEL,
        N.CUSTOMER_INTENT_CONFIDENCE: N.INFLIGHT_INTENT_CONFIDENCE,
    },
    SOURCE_VISITOR: {
        N.CUSTOMER_WEB_EMBEDDING: N.VISITOR_EMBEDDING_DECAYED,
        N.CUSTOMER_INTENT_LABEL: N.VISITOR_INTENT_LABEL,
        N.CUSTOMER_INTENT_CONFIDENCE: N.VISITOR_INTENT_CONFIDENCE,
        N.CUSTOMER_INTENT_DECAYED: N.VISITOR_INTENT_DECAYED,
    },
}
# The visitor's web intent read beside the in-flight session (the visitor_web_intent view).
VISITOR_FIELDS: tuple[str, ...] = (
    N.VISITOR_INTENT_LABEL,
    N.VISITOR_INTENT_CONFIDENCE,
    N.VISITOR_INTENT_DECAYED,
    N.VISITOR_EMBEDDING_DECAYED,
)
INFLIGHT_FIELDS: tuple[str, ...] = (
    N.INFLIGHT_EMBEDDING,
    N.INFLIGHT_INTENT_LABEL,
    N.INFLIGHT_INTENT_CONFIDENCE,
    N.INFLIGHT_UNKNOWN_PAGE_SHARE,
)


def scrubbed_events(events: Sequence[SessionEvent], world: World) -> list[dict[str, Any]]:
    """Request events → contract event dicts: raw pages mapped to the world's page types, search queries
    PII-scrubbed, before any featurisation."""
    out = []
    for e in events:
        d = e.model_dump(exclude_none=True)
        if C.SEARCH_QUERY in d:
            d[C.SEARCH_QUERY] = scrub(d[C.SEARCH_QUERY])
        out.append(d)
    return T.map_pages(out, world)


_UNVERSIONED = {"", "unknown", "none"}


def check_versions(
    models: Sequence[ServedModel], artifacts: Path, taxonomy_version: str, world: World | None = None
) -> None:
    """Refuse to serve models trained on another encoder, taxonomy or world than the one loaded here.

    The in-flight embedding and label are model inputs: a retrained encoder (other embedding space)
    or a new taxonomy (other label ids) would be scored silently wrong, and another world declaration
    means other tiles and page types. ``unknown``/``none`` (e.g. a baseline model) skip the check."""
    from clicks2intent.models.store import file_version

    encoder = file_version(ArtifactLayout(artifacts).checkpoint)
    world_digest = world.digest if world is not None else "unknown"
    for m in models:
        meta = m.model.metadata
        for key, have in (
            ("encoder_version", encoder),
            ("taxonomy_version", str(taxonomy_version)),
            ("world_digest", world_digest),
        ):
            want = str(meta.get(key, "unknown"))
            if want not in _UNVERSIONED and have not in _UNVERSIONED and want != have:
                raise ConfigError(
                    f"model {m.name}:{m.version} was trained with {key} {want!r} but {artifacts} holds {have!r}: "
                    f"retrain the models or point {ENV.ARTIFACTS} at the matching encoder/intent artifacts"
                )


class FeatureStoreUnavailable(ServiceError):
    """The online store could not be read (a 503 for the caller, not a 500)."""


@dataclass
class ServingSettings:
    """Where a worker finds its store and artifacts (``serving.deployment.serving_settings`` fills it in)."""

    artifacts: Path  # encoder/, intent/, features/tile_prototypes.parquet (the on-demand views' inputs too)
    feature_repo: Path  # the Feast repository (feature_store.yaml + definitions)
    feast_config: str | None = None  # another YAML in the repo, e.g. feature_store.production.yaml (Redis)
    local_odfv: bool = True  # tile_affinity computed in-process (False: through Feast's on-demand view)
    direct_reads: bool = True  # stored views read with online_read (False: get_online_features)


class ServingEngine:
    """Everything one worker holds: the Feast store, both models, the encoder and intent classifier.

    Build it once per worker (``__init__`` of the BentoML service); its methods are the endpoints.
    """

    def __init__(
        self,
        store: Any,
        tile_model: ServedModel,
        conversion_model: ServedModel,
        artifacts: Path,
        local_odfv: bool = True,
        direct_reads: bool = True,
    ) -> None:
        self.store = store
        self.tile_model = tile_model
        self.conversion_model = conversion_model
        self.artifacts = Path(artifacts)
        # Resolved once: a registry lookup per request is pure overhead. From the registry as the store
        # (or load's ping_registry) just read it: a refresh per lookup re-read the whole registry.
        self.tile_service = store.get_feature_service(tile_model.feature_service, allow_cache=True)
        self.conversion_service = store.get_feature_service(
            conversion_model.feature_service, allow_cache=True
        )
        # The bank's declaration the features were built with: its tiles, page types and Feast prefix.
        self.world = T.load_artifact_world(self.artifacts)
        # The ranker saw tile_affinity over ALL tiles in this order at training time; the request's
        # candidate list only filters the answer, it never changes the model inputs.
        self.affinity_tiles: list[str] = list(self.world.tiles)
        self.embedder, self.classifier = T.load_models(self.artifacts)
        self.intent_classes: list[str] = [str(c) for c in self.classifier.classes_]
        self.prototypes, self.prototype_dim = T.load_prototypes(self.artifacts)
        self.next_page_head = T.load_next_page_head(self.artifacts)
        self._substitute = SUBSTITUTIONS
        # Tile features: the service's feature views through Feast, its tile_affinity on-demand view
        # computed here with the view's own function. Run by Feast, the python-mode view more than
        # doubled the CPU of the read (proto round trips and type checks per call; see benchmarks/).
        odfvs = {v.name for v in store.list_on_demand_feature_views(allow_cache=True)}
        projections = self.tile_service.feature_view_projections
        self._tile_refs = [
            f"{p.name}:{f.name}" for p in projections if p.name not in odfvs for f in p.features
        ]
        name = self.world.feast_name
        local_ok = {p.name for p in projections if p.name in odfvs} <= {name(N.TILE_AFFINITY_VIEW)}
        self.local_odfv = local_odfv and local_ok
        self._visitor_refs = [f"{name(N.VISITOR_WEB_INTENT)}:{n}" for n in VISITOR_FIELDS]
        # The stored views' rows in one call of the online store (one round trip), keys and fields
        # resolved here once: get_online_features' general assembly cost more than the reads
        # (serving/online.py). A customer with a visitor id: both entities' rows in that one call.
        self._tile_reader = direct_reader(store, self._tile_refs) if direct_reads else None
        self._visitor_reader = direct_reader(store, self._visitor_refs) if direct_reads else None
        self._tile_visitor_reader = (
            direct_reader(store, self._tile_refs + self._visitor_refs) if direct_reads else None
        )
        # Reads run inline on the worker's event loop: after a read that hung until its time-out, fail
        # fast for a moment rather than hold every request behind the next one (serving/online.py).
        self.gate = OutageGate()
        self._inflight_refs = [f"{name(N.INFLIGHT_SESSION_INTENT)}:{n}" for n in INFLIGHT_FIELDS]
        check_versions(
            [tile_model, conversion_model], self.artifacts, self.classifier.taxonomy_version, self.world
        )
        unknown = [t for t in self.tile_model.classes if t not in self.world.tiles]
        if unknown or not self.tile_model.classes:
            raise ConfigError(
                f"tile model {tile_model.name}: its classes {unknown[:5] or tile_model.classes} are not tiles of "
                f"world {self.world.name!r}: retrain it on the features of this declaration"
            )

    @classmethod
    def load(
        cls, tile_model: ServedModel, conversion_model: ServedModel, settings: ServingSettings
    ) -> ServingEngine:
        store = fs.open_store(settings.feature_repo, settings.feast_config)
        fs.ping_registry(store)  # registry down at start-up: one clear error, not a worker traceback
        return cls(
            store,
            tile_model,
            conversion_model,
            settings.artifacts,
            local_odfv=settings.local_odfv,
            direct_reads=settings.direct_reads,
        )

    # --- feature reads -------------------------------------------------------------------------------
    def online(self, features: Any, row: Mapping[str, Any]) -> dict[str, Any]:
        """One entity row through ``get_online_features`` → ``{feature: value}``."""
        columns = self._guarded(
            lambda: self.store.get_online_features(features=features, entity_rows=[dict(row)]).to_dict()
        )
        return {k: v[0] for k, v in columns.items()}

    def read(self, reader: OnlineReader, row: Mapping[str, Any]) -> dict[str, Any]:
        """One entity row through :class:`OnlineReader` (same values and errors as :meth:`online`)."""
        return self._guarded(lambda: reader.read(row))

    async def read_async(self, reader: OnlineReader, row: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`read`, awaiting the store's reply (the event loop serves other requests meanwhile)."""
        self._refuse_while_failing_fast()
        started = time.monotonic()
        try:
            out = await reader.read_async(row)
        except (ValueError, KeyError, TypeError):
            raise
        except Exception as err:
            raise self._unavailable(started, err) from err
        self.gate.passed()
        return out

    def _guarded(self, read: Any) -> Any:
        """``read()``; a store failure (or the gate after a slow one) is :class:`FeatureStoreUnavailable`."""
        self._refuse_while_failing_fast()
        started = time.monotonic()
        try:
            out = read()
        except (ValueError, KeyError, TypeError):
            raise  # a bug in our request rows: let it surface as one
        except Exception as err:  # the online store is down / unreachable
            raise self._unavailable(started, err) from err
        self.gate.passed()
        return out

    def _refuse_while_failing_fast(self) -> None:
        refused = self.gate.refusal()
        if refused is not None:
            raise FeatureStoreUnavailable(f"online feature store unavailable (failing fast): {refused}")

    def _unavailable(self, started: float, err: Exception) -> FeatureStoreUnavailable:
        self.gate.failed(started, err)
        return FeatureStoreUnavailable(f"online feature store read failed: {type(err).__name__}: {err}")

    def tile_features(self, customer_id: str) -> dict[str, Any]:
        """The tile ranker's feature-service row for one customer (the benchmark's in-process loop)."""
        if not self.local_odfv:
            row = {C.CUSTOMER_ID: customer_id, N.CANDIDATE_TILES: self.affinity_tiles}
            return self.online(self.tile_service, row)
        row = {C.CUSTOMER_ID: customer_id}
        if self._tile_reader is not None:
            features = self.read(self._tile_reader, row)
        else:
            features = self.online(self._tile_refs, row)
        return self._with_affinity(features)

    def _with_affinity(self, features: dict[str, Any]) -> dict[str, Any]:
        features[N.TILE_AFFINITY] = T.tile_affinity(
            features[N.CUSTOMER_WEB_EMBEDDING], self.affinity_tiles, self.prototypes, self.prototype_dim
        )
        return features

    def _stored_rows_reader(
        self, req: RankTilesRequest, events: list[dict[str, Any]]
    ) -> tuple[OnlineReader, dict[str, Any]] | None:
        """The reader of everything /rank_tiles reads from the store, and its entity row, when one read
        serves it: the customer's views, and the visitor's when a visitor id comes without a session."""
        if events or not self.local_odfv:
            return None
        if req.visitor_id is None:
            reader = self._tile_reader
            row = {C.CUSTOMER_ID: req.customer_id}
        else:
            reader = self._tile_visitor_reader
            row = {C.CUSTOMER_ID: req.customer_id, C.VISITOR_ID: req.visitor_id}
        return None if reader is None else (reader, row)

    def _split(self, both: dict[str, Any], visitor_id: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """One read's row → (:meth:`tile_features`, the visitor's web intent or ``{}``)."""
        if visitor_id is None:
            return self._with_affinity(both), {}
        visitor = {C.VISITOR_ID: both.pop(C.VISITOR_ID)} | {n: both.pop(n) for n in VISITOR_FIELDS}
        return self._with_affinity(both), visitor

    def fresher_intent(self, visitor_id: str | None, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Visitor web intent and/or the in-flight session's intent (through the on-demand view), in one read."""
        refs: list[str] = []
        row: dict[str, Any] = {}
        if visitor_id is not None and not events and self._visitor_reader is not None:
            return self.read(self._visitor_reader, {C.VISITOR_ID: visitor_id})
        if visitor_id is not None:
            refs += self._visitor_refs
            row[C.VISITOR_ID] = visitor_id
        if events:
            refs += self._inflight_refs
            row.update(fs.inflight_request(events))
        return self.online(refs, row) if refs else {}

    # --- endpoints -----------------------------------------------------------------------------------
    def rank_tiles(self, req: RankTilesRequest) -> RankTilesResponse:
        return self._rank_tiles(req, scrubbed_events(req.session_events, self.world))

    def _rank_tiles(self, req: RankTilesRequest, events: list[dict[str, Any]]) -> RankTilesResponse:
        direct = self._stored_rows_reader(req, events)
        if direct is not None:
            features, fresh = self._split(self.read(*direct), req.visitor_id)
        else:
            features = self.tile_features(req.customer_id)
            fresh = self.fresher_intent(req.visitor_id, events)
        return self._ranked(req, features, fresh)

    async def rank_tiles_async(self, req: RankTilesRequest) -> RankTilesResponse:
        """:meth:`rank_tiles`, awaiting the store's reply where its class reads asynchronously (Redis):
        the worker's event loop runs other requests while this one waits on the network. An in-flight
        session (CPU: its embedding) and a store without asynchronous reads take :meth:`rank_tiles`."""
        events = scrubbed_events(req.session_events, self.world)
        direct = self._stored_rows_reader(req, events)
        if direct is None or direct[0].read_rows_async is None:
            return self._rank_tiles(req, events)
        features, fresh = self._split(await self.read_async(*direct), req.visitor_id)
        return self._ranked(req, features, fresh)

    def _ranked(
        self, req: RankTilesRequest, features: dict[str, Any], fresh: dict[str, Any]
    ) -> RankTilesResponse:
        """The answer from the stored rows (``features``) and the fresher web intent (``fresh``)."""
        source = self._tile_source(fresh, features)
        if source in self._substitute:
            for target, src in self._substitute[source].items():
                features[target] = fresh[src]
            if source == SOURCE_SESSION:
                features[N.CUSTOMER_INTENT_DECAYED] = self._one_hot(fresh[N.INFLIGHT_INTENT_LABEL])
            features[N.TILE_AFFINITY] = T.tile_affinity(
                features[N.CUSTOMER_WEB_EMBEDDING], self.affinity_tiles, self.prototypes, self.prototype_dim
            )
        model = self.tile_model
        proba = model.predict(features)
        candidates = req.candidate_tiles or [t for t in self.world.tiles if t in model.class_index]
        scored = sorted(
            ((t, float(proba[model.class_index[t]])) for t in candidates if t in model.class_index),
            key=lambda x: -x[1],
        )
        tiles = [TileScore(tile_id=t, score=s) for t, s in scored[: req.k]]
        label = features.get(N.CUSTOMER_INTENT_LABEL) if source != SOURCE_NONE else None
        confidence = features.get(N.CUSTOMER_INTENT_CONFIDENCE) if source != SOURCE_NONE else None
        return RankTilesResponse(
            tiles=tiles,
            intent=IntentInfo(
                label=label,
                confidence=_float_or_none(confidence),
                source=source,
                unknown_page_share=_float_or_none(fresh.get(N.INFLIGHT_UNKNOWN_PAGE_SHARE)),
            ),
            model=model.info,
            explanation=self._explain(features, tiles[0].tile_id) if req.explain and tiles else None,
        )

    def predict_conversion(self, req: ConversionRequest) -> ConversionResponse:
        events = scrubbed_events(req.session_events, self.world)
        # The in-flight session is not in the store (its session_id matches nothing: nulls); the
        # visitor's stored web intent is. An absent visitor is an id no visitor has.
        row = {C.SESSION_ID: ONLINE_SESSION_ID, C.VISITOR_ID: req.visitor_id or ""}
        features = self.online(self.conversion_service, row)
        unknown: float | None = None
        if events:
            fresh = self.fresher_intent(None, events)
            unknown = _float_or_none(fresh.get(N.INFLIGHT_UNKNOWN_PAGE_SHARE))
            features |= session_activity(events, self.world)
            features[C.EMBEDDING] = fresh[N.INFLIGHT_EMBEDDING]
            if N.SESSION_TILE_AFFINITY in features:  # the on-demand view scored the stored (absent) one
                features[N.SESSION_TILE_AFFINITY] = T.tile_affinity(
                    fresh[N.INFLIGHT_EMBEDDING], self.affinity_tiles, self.prototypes, self.prototype_dim
                )
            if N.SESSION_NEXT_PAGE in features:  # likewise: where the in-flight session heads next
                features[N.SESSION_NEXT_PAGE] = T.next_page_logp(
                    fresh[N.INFLIGHT_EMBEDDING], self.next_page_head
                )
            features[C.INTENT_LABEL] = fresh[N.INFLIGHT_INTENT_LABEL]
            features[C.INTENT_CONFIDENCE] = fresh[N.INFLIGHT_INTENT_CONFIDENCE]
            source, label, confidence = (
                SOURCE_SESSION,
                features[C.INTENT_LABEL],
                features[C.INTENT_CONFIDENCE],
            )
        elif not _missing(features.get(N.VISITOR_INTENT_LABEL)):
            source, label, confidence = (
                SOURCE_VISITOR,
                features[N.VISITOR_INTENT_LABEL],
                features[N.VISITOR_INTENT_CONFIDENCE],
            )
        else:
            source, label, confidence = SOURCE_NONE, None, None
        model = self.conversion_model
        proba = model.predict(features)
        probabilities = {c: float(p) for c, p in zip(model.classes, proba, strict=True)}
        return ConversionResponse(
            probabilities=probabilities,
            predicted_product=max(probabilities, key=probabilities.__getitem__),
            intent=IntentInfo(
                label=None if _missing(label) else label,
                confidence=_float_or_none(confidence),
                source=source,
                unknown_page_share=unknown,
            ),
            model=model.info,
        )

    def intent(self, req: IntentRequest) -> IntentResponse:
        request = fs.inflight_request(scrubbed_events(req.session_events, self.world))
        # The on-demand view's own transform: /intent and the features served to the models agree.
        out = T.inflight_intent_transform(
            {k: [v] for k, v in request.items()}, artifacts_dir=str(self.artifacts)
        )
        embedding = out[N.INFLIGHT_EMBEDDING][0]
        unknown = float(out[N.INFLIGHT_UNKNOWN_PAGE_SHARE][0])
        text = T.request_text(request, self.world)  # the pages and words the transform's classifier read
        label, confidence, top = self.classifier.predict_one(embedding, k=TOP_LABELS, text=text)
        readable = out[N.INFLIGHT_INTENT_LABEL][0] != C.NO_LABEL  # no page the models can read: no label
        return IntentResponse(
            embedding=embedding,
            label=label if readable else None,
            label_name=self.classifier.label_names.get(label) if readable else None,
            confidence=confidence if readable else None,
            top3=[LabelScore(label=lab, confidence=p) for lab, p in top] if readable else [],
            taxonomy_version=str(self.classifier.taxonomy_version),
            unknown_page_share=unknown,
        )

    # --- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _tile_source(fresh: Mapping[str, Any], features: Mapping[str, Any]) -> str:
        """The freshest web intent that exists: in-flight session > visitor > linked customer > none.

        An in-flight session none of whose pages the models can read says nothing: it is skipped."""
        if not _missing(fresh.get(N.INFLIGHT_EMBEDDING)) and not _missing(fresh.get(N.INFLIGHT_INTENT_LABEL)):
            return SOURCE_SESSION
        if not _missing(fresh.get(N.VISITOR_EMBEDDING_DECAYED)):
            return SOURCE_VISITOR
        if not _missing(features.get(N.CUSTOMER_WEB_EMBEDDING)) or not _missing(
            features.get(N.CUSTOMER_INTENT_LABEL)
        ):
            return SOURCE_CUSTOMER
        return SOURCE_NONE

    def _one_hot(self, label: str | None) -> list[float] | None:
        if label is None:
            return None
        return [1.0 if c == label else 0.0 for c in self.intent_classes]

    def _explain(self, features: Mapping[str, Any], tile_id: str) -> Explanation:
        """Grouped contributions for the top tile (slow path: a frame and TreeSHAP, only on request)."""
        from clicks2intent.models.explain import BIAS, explain  # once per worker, ms: XGBoost is loaded

        frame = pd.DataFrame([{n: features.get(n) for n in self.tile_model.rows.feature_names}])
        out = explain(self.tile_model.model, frame, top_k=5, target=tile_id)[0]
        return Explanation(
            tile_id=tile_id,
            groups={g: float(v) for g, v in out["groups"].items()} | {BIAS: float(out["groups"][BIAS])},
            top_features=[Contribution(**f) for f in out["top_features"]],
        )
