"""The trained models in the BentoML model store, with what serving needs to use them correctly.

A model is stored under the name of its Feast feature service (``tile_ranker_v1``,
``conversion_v1``, ``tile_ranker_baseline``, ``conversion_baseline``): the service that produced its
training features is the service serving must call, so the name cannot drift from the features.
Each store entry holds ``booster.ubj`` + ``estimator.json`` (classes, input spec with the fixed label
vocabularies, early-stopped tree count) and metadata a reviewer and the service read:

* ``feature_service`` and ``feature_names`` — what to fetch from Feast;
* ``encoder_version`` and ``taxonomy_version`` — which embedding and label space the model expects
  (a new encoder or taxonomy means retraining, and the service can refuse a mismatch);
* ``metrics`` — test metrics of the ablation run that produced it;
* ``training_window`` — the time span of the training rows (plus validation / test windows).

``BENTOML_HOME`` decides the store; the commands default it to ``artifacts/bentoml`` so the demo
never writes to the user's ``~/bentoml``. ``home=`` selects a store explicitly (tests, tools).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clicks2intent.common import settings
from clicks2intent.common.settings import ARTIFACTS_MODEL_NAME
from clicks2intent.errors import ArtifactError
from clicks2intent.models.xgb import FeatureModel
from clicks2intent.names.paths import ARTIFACTS
from clicks2intent.names.settings import BENTOML_DO_NOT_TRACK, BENTOML_HOME

DEFAULT_HOME = ARTIFACTS.bentoml_home
REQUIRED_METADATA: tuple[str, ...] = (
    "task",
    "feature_service",
    "feature_names",
    "encoder_version",
    "taxonomy_version",
    "metrics",
    "training_window",
)


def use_default_home(home: str | Path | None = None) -> Path:
    """Point BentoML at ``home`` (or keep an explicit ``BENTOML_HOME``; else ``artifacts/bentoml``).

    Must run before BentoML first touches its store in this process (it resolves the home once).
    """
    if home is not None:
        settings.set_variable(BENTOML_HOME, str(Path(home).resolve()))
    store_home = settings.set_default(BENTOML_HOME, str(DEFAULT_HOME.resolve()))
    settings.set_default(BENTOML_DO_NOT_TRACK, "True")  # no usage analytics from training jobs
    return Path(store_home)


def _store_kwargs(home: str | Path | None) -> dict[str, Any]:
    """``_model_store=`` for an explicit home; BentoML's configured store otherwise."""
    settings.set_default(BENTOML_DO_NOT_TRACK, "True")
    if home is None:
        return {}
    from clicks2intent.common.framework_adapter import bentoml_model_store  # BentoML has no public one

    return bentoml_model_store(home)


def file_version(path: str | Path | None, length: int = 12) -> str:
    """Content hash of an artifact (e.g. the encoder checkpoint): changes exactly when the file does."""
    if path is None or not Path(path).is_file():
        return "unknown"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()[:length]}"


def taxonomy_version(path: str | Path | None) -> str:
    """The version string a taxonomy.yaml gives its labels (``v3``), or ``"unknown"`` without one."""
    if path is None or not Path(path).is_file():
        return "unknown"
    from clicks2intent.intent.taxonomy import Taxonomy

    try:
        return Taxonomy.load(path).version_string
    except ValueError:  # not a valid taxonomy: say so rather than guess a version
        return "unknown"


def clean_metadata(value: Any) -> Any:
    """BentoML metadata holds only basic types and no None: drop None-valued keys, None items → ""."""
    if isinstance(value, Mapping):
        return {str(k): clean_metadata(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return ["" if v is None else clean_metadata(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        return value.item()
    return value


def save_feature_model(
    model: FeatureModel,
    metadata: Mapping[str, Any],
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    home: str | Path | None = None,
) -> str:
    """Save to the model store; returns the tag (``name:version``). Name defaults to the service."""
    import bentoml

    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"model metadata is missing {missing} (required: {list(REQUIRED_METADATA)})")
    if metadata["feature_service"] != model.feature_service:
        raise ValueError(
            f"metadata feature_service {metadata['feature_service']!r} != model's {model.feature_service!r}"
        )
    name = name or model.feature_service
    meta = clean_metadata(
        dict(metadata) | {"classes": model.classes, "model_columns": len(model.spec.columns)}
    )
    model.metadata = dict(meta)
    store_labels = {"task": str(meta["task"]), "feature_service": str(meta["feature_service"])} | dict(
        labels or {}
    )
    with bentoml.models.create(
        name, labels=store_labels, metadata=meta, **_store_kwargs(home)
    ) as bento_model:
        model.save(bento_model.path)
    return str(bento_model.tag)


def get_bento_model(tag: str, home: str | Path | None = None) -> Any:
    """The store entry (``bentoml.Model``) for a tag like ``tile_ranker_v1:latest``."""
    import bentoml

    return bentoml.models.get(tag, **_store_kwargs(home))


def load_feature_model(tag_or_model: Any, home: str | Path | None = None) -> FeatureModel:
    """Load a stored model (tag string or ``bentoml.Model``) with its store metadata attached."""
    bento_model = get_bento_model(tag_or_model, home) if isinstance(tag_or_model, str) else tag_or_model
    model = FeatureModel.load(bento_model.path)
    model.metadata = dict(bento_model.info.metadata) | {"tag": str(bento_model.tag)}
    return model


# --- what the in-flight path loads, as one model a bento carries ------------------------------------
def save_serving_artifacts(
    encoder_dir: str | Path,
    intent_dir: str | Path,
    features_dir: str | Path,
    home: str | Path | None = None,
) -> str:
    """Save the encoder, the distilled intent classifier, the tile prototypes and the world declaration
    (both from ``features_dir``) as one store entry.

    Why a model: ``bentoml build`` copies the service's models into the bento, so a bento serves the
    in-flight session path (``/intent``, fresh session intent, tile affinity) with no ``C2I_ARTIFACTS``
    volume. The entry holds an ``artifacts/`` layout (``encoder/``, ``intent/``,
    ``features/tile_prototypes.parquet``, ``features/world.yaml``); its metadata carries the versions
    the served models are checked against. Returns the tag."""
    import shutil

    import bentoml

    from clicks2intent.data.world import load_world
    from clicks2intent.names.paths import FEATURE_FILES, WORLD_FILE, ArtifactLayout

    encoder_dir, intent_dir, features_dir = Path(encoder_dir), Path(intent_dir), Path(features_dir)
    prototypes, world_path = features_dir / FEATURE_FILES["tile_prototypes"], features_dir / WORLD_FILE
    for path, what in ((encoder_dir / "checkpoint.pt", "encoder checkpoint"), (intent_dir, "intent classifier"),
                       (prototypes, "tile prototypes"), (world_path, "world declaration")):  # fmt: skip
        if not path.exists():
            raise ArtifactError(
                f"{what} {path} not found: train and build it before saving the serving artifacts"
            )
    from clicks2intent.intent.distill import IntentClassifier

    world = load_world(world_path)
    meta = {
        "encoder_version": file_version(encoder_dir / "checkpoint.pt"),
        "taxonomy_version": str(IntentClassifier.load(intent_dir).taxonomy_version),
        "world": world.name,
        "world_digest": world.digest,
    }
    with bentoml.models.create(
        ARTIFACTS_MODEL_NAME, labels={"kind": "serving-artifacts"}, metadata=meta, **_store_kwargs(home)
    ) as bento_model:
        layout = ArtifactLayout(Path(bento_model.path))
        shutil.copytree(encoder_dir, layout.encoder, ignore=shutil.ignore_patterns("*.parquet"))
        layout.intent.mkdir(parents=True)
        for f in intent_dir.iterdir():  # the classifier, not the intents of every session
            if f.is_file() and f.suffix != ".parquet":
                shutil.copy2(f, layout.intent / f.name)
        layout.features.mkdir(parents=True)
        shutil.copy2(prototypes, layout.feature_file("tile_prototypes"))
        shutil.copy2(world_path, layout.features_world)
    return str(bento_model.tag)
