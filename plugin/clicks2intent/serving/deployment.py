"""What a deployed service needs before its first worker starts, checked once, with one clear message.

A built bento carries its models (tile ranker, conversion model and the ``clicks2intent_artifacts``
model: encoder, intent classifier, tile prototypes) and the feature repo's *configuration*, never its
data: the registry and the online store live outside the bento. Before this module, a bento served
without ``C2I_FEATURE_REPO`` opened ``src/feature_repo/feature_store.yaml``, Feast created an empty
``data/registry.db`` inside the stored bento, every worker died on ``FeatureServiceNotFoundException``
and BentoML restarted them forever.

Likewise ``bentoml serve <bento>`` imports the service with the bento's ``src/`` as working directory:
with a relative ``BENTOML_HOME=artifacts/bentoml`` the model store came out empty there, BentoML fell
back to BentoCloud and crashed on a missing ``artifacts/bentoml/.yatai.yaml``; its workers run there too,
so a relative ``C2I_FEATURE_REPO=feature_repo`` named the bento's own repo config (the check in the
``bentoml serve`` process read it from where it was started, and passed).

:func:`check_environment` refuses a relative path setting that cannot work there before anything is
resolved (:func:`world_of_artifacts` runs it first, when the service is imported). :func:`serving_settings`
resolves the settings (:class:`~clicks2intent.common.settings.Settings`) into paths;
:func:`check_feature_store` refuses, without creating anything, a file registry or SQLite online store
that does not exist and a registry without the models' feature services. The service runs both in its
``on_deployment`` hook (the ``bentoml serve`` process, before workers fork): a missing or wrong
setting ends ``bentoml serve`` with one line instead of a restart loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clicks2intent.common.settings import Settings, environment, expand_variables
from clicks2intent.errors import ArtifactError, ConfigError
from clicks2intent.features import store as fs
from clicks2intent.names import settings as ENV
from clicks2intent.names.paths import ArtifactLayout
from clicks2intent.serving.engine import ServingSettings

logger = logging.getLogger(__name__)

HOW_TO_POINT = (
    f"set {ENV.FEATURE_REPO} to the Feast repository you ran `feast apply` and `feast materialize` in, "
    f"or {ENV.FEAST_CONFIG} to a feature store YAML whose registry and online store are reachable "
    "(e.g. feature_store.production.yaml: SQL registry + Redis)"
)


BENTOML_HOME = ENV.BENTOML_HOME  # BentoML's own variable: its model and bento store
BENTO_MANIFEST = "bento.yaml"  # beside a built bento's src/


def check_environment(
    settings: Settings, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> None:
    """Refuse a relative path setting that cannot name what it meant where the service runs.

    Run when the service module is imported: ``cwd`` is then where its workers import it and run too.
    For a built bento that is the bento's ``src/`` (BentoML changes to it), not where ``bentoml serve``
    was started, so every relative path is refused there; elsewhere one that names no directory."""
    environ = environment() if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    in_bento = (cwd.parent / BENTO_MANIFEST).is_file()
    where = (
        f"but `bentoml serve` runs the service in the bento's src/ ({cwd})"
        if in_bento
        else f"and names no directory from {cwd}, where the service runs"
    )
    paths = {
        BENTOML_HOME: environ.get(BENTOML_HOME),
        ENV.ARTIFACTS: settings.artifacts,
        ENV.FEATURE_REPO: settings.feature_repo,
    }
    for name, value in paths.items():
        path = Path(expand_variables(str(value or ""))).expanduser()
        if value and not path.is_absolute() and (in_bento or not (cwd / path).is_dir()):
            raise ConfigError(
                f"{name}={value} is a relative path {where}: give an absolute path ({name}=$PWD/{value})"
            )
    config = settings.feast_config
    if in_bento and config and not Path(config).is_absolute() and Path(config).name != config:
        raise ConfigError(
            f"{ENV.FEAST_CONFIG}={config} is a relative path {where}: give a file name inside the "
            "feature repo (feature_store.production.yaml) or an absolute path"
        )


def serving_settings(
    settings: Settings, carried_repo: Path, carried_artifacts: Path | None = None
) -> ServingSettings:
    """The worker's paths: ``C2I_ARTIFACTS`` else the carried artifacts model, ``C2I_FEATURE_REPO`` else
    the repo config the bento carries (then ``C2I_FEAST_CONFIG`` must say where the registry is)."""
    artifacts = settings.artifacts or carried_artifacts
    if artifacts is None:
        raise ConfigError(
            f"{ENV.ARTIFACTS}: not set and no {ENV.ARTIFACTS_MODEL} model is carried; "
            "point it at the directory holding encoder/, intent/ and features/tile_prototypes.parquet"
        )
    return ServingSettings(
        artifacts=Path(artifacts).resolve(),
        feature_repo=Path(settings.feature_repo or carried_repo).resolve(),
        feast_config=settings.feast_config,
        local_odfv=not settings.feast_odfv,
        direct_reads=settings.direct_reads,
    )


def world_of_artifacts(settings: Settings, carried: Any) -> tuple[Any, tuple[Any, ...]]:
    """(the world the served artifacts were built with, (label ids, label names) for the examples).

    Read when the service module is imported: its request schemas are the world's. ``carried``: the
    artifacts ``BentoModel`` (resolved only when ``C2I_ARTIFACTS`` is not set)."""
    import json

    from clicks2intent.data.world import load_world
    from clicks2intent.names.paths import CLASSIFIER_META_FILE

    check_environment(settings)  # at import: the workers' directory, before BentoModel.resolve()
    root = Path(settings.artifacts) if settings.artifacts else Path(carried.resolve().path)
    layout = ArtifactLayout(root.resolve())
    if not layout.features_world.is_file():
        raise ConfigError(
            f"{layout.features_world} not found: the served artifacts carry no world declaration "
            f"(run `c2i features build` and `c2i evaluate` again, or point {ENV.ARTIFACTS} at them)"
        )
    meta_path = layout.intent / CLASSIFIER_META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    labels = (list(meta.get("classes", [])), dict(meta.get("label_names", {})))
    return load_world(layout.features_world), labels


def check_artifacts(root: Path) -> None:
    """The files the in-flight path loads exist under ``root`` (encoder, classifier, tile prototypes)."""
    layout = ArtifactLayout(root)
    needed = [layout.checkpoint, layout.intent, layout.feature_file("tile_prototypes"), layout.features_world]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ArtifactError(
            f"{ENV.ARTIFACTS}: {root} lacks {', '.join(missing)}; point it at the demo's artifacts/ "
            f"(or unset it to use the bento's {ENV.ARTIFACTS_MODEL} model)"
        )


def _repo_config(repo: Path, config: str | None) -> Any:
    """Feast's ``RepoConfig`` for the repo + YAML, parsed without opening a store (nothing is created)."""
    from feast.repo_config import load_repo_config

    if not repo.is_dir():
        raise ConfigError(f"{ENV.FEATURE_REPO}: {repo} is not a directory; {HOW_TO_POINT}")
    path = repo / fs.DEFAULT_YAML
    if config is not None:
        path = Path(config) if Path(config).is_file() else repo / config
    if not path.is_file():
        raise ConfigError(
            f"{ENV.FEAST_CONFIG}: {config or path} is not a file (nor in {repo}); {HOW_TO_POINT}"
        )
    try:
        return load_repo_config(repo, path.resolve())
    except Exception as err:  # Feast raises pydantic / yaml / its own errors for a bad YAML
        raise ConfigError(f"{ENV.FEAST_CONFIG}: {path} is not a valid feature store YAML: {err}") from None


def _local_path(repo: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else repo / path


def check_feature_store(repo: Path, config: str | None = None, services: Sequence[str] = ()) -> list[str]:
    """Refuse a store that does not exist; returns the feature services found.

    A file registry and a SQLite online store must already exist (Feast would create empty ones, inside
    the bento when the repo is the bento's), and every name in ``services`` must be registered."""
    cfg = _repo_config(repo, config)
    registry = cfg.registry
    registry_type = getattr(registry, "registry_type", "file")
    if registry_type == "file":
        path = _local_path(repo, str(registry.path))
        if not path.is_file():
            raise ConfigError(f"feature registry {path} does not exist; {HOW_TO_POINT}")
    online = cfg.online_store
    if getattr(online, "type", "") == "sqlite":
        path = _local_path(repo, str(online.path))
        if not path.is_file():
            raise ConfigError(
                f"SQLite online store {path} does not exist (run `feast materialize`); {HOW_TO_POINT}"
            )
    store = fs.open_store(repo, config)
    try:
        found = [s.name for s in store.list_feature_services()]
    except Exception as err:  # an unreachable SQL registry
        raise ConfigError(
            f"feature registry {registry.path} cannot be read ({type(err).__name__}: {err}); {HOW_TO_POINT}"
        ) from None
    missing = [s for s in services if s not in found]
    if missing:
        raise ConfigError(
            f"feature registry of project {cfg.project!r} has no feature service {missing} (it has {sorted(found)}): "
            f"run `feast apply` with the repo the models were trained on, or {HOW_TO_POINT}"
        )
    return found


def check_deployment(serving: ServingSettings, services: Sequence[str]) -> None:
    """Everything :class:`~clicks2intent.serving.engine.ServingEngine` loads, checked without side effects."""
    check_artifacts(serving.artifacts)
    found = check_feature_store(serving.feature_repo, serving.feast_config, services)
    logger.info("deployment checked: artifacts %s, feature repo %s (%s), services %s",
                serving.artifacts, serving.feature_repo, serving.feast_config or fs.DEFAULT_YAML, sorted(found))  # fmt: skip
