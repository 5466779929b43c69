"""Opening the Feast store (embedded default or production config) and the read helpers around it.

* :func:`open_store`: a ``FeatureStore`` for a repo and an optional YAML (``feature_store.yaml`` by
  default; ``feature_store.production.yaml`` for Redis + the SQL registry on PostgreSQL).
* :func:`production_config` / :func:`write_config` / :func:`production_store`: the production config as
  data, so tests, benchmarks and deployments can point it at their own Redis, registry URL and project
  (``$C2I_REDIS`` and ``$C2I_REGISTRY_URL`` override the defaults).
* :func:`drop_project`: remove one project from the online store and the registry. Never call
  ``FeatureStore.teardown()`` on a SQL registry: Feast 0.67's ``SqlRegistry.teardown`` deletes the rows
  of EVERY project in the database.
* :func:`historical_features`: ``get_historical_features`` that returns exactly one row per entity row,
  in order (Feast's file offline store collapses entity rows sharing join keys and timestamp, #6787).
* :func:`inflight_request` / :func:`online_features`: what serving sends and reads;
  :func:`customer_features`: one customer's online features (``c2i features online``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clicks2intent.common import settings as env
from clicks2intent.errors import ArtifactError, ConfigError, ContractError, ServiceError
from clicks2intent.names import columns as C
from clicks2intent.names.features import (
    CANDIDATE_TILES,
    CUSTOMER_WEB_EMBEDDING,
    CUSTOMER_WEB_SESSIONS_30D,
    INFLIGHT_CHANNEL,
    INFLIGHT_DEVICE,
    INFLIGHT_DWELL_SECONDS,
    INFLIGHT_EVENT_TIMES_US,
    INFLIGHT_PAGE_TYPES,
    INFLIGHT_SEARCH_QUERIES,
    TILE_AFFINITY,
    TILE_RANKER_V1,
)
from clicks2intent.names.paths import ARTIFACTS, FEATURE_FILES, WORLD_FILE

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

logger = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parents[3] / "feature_repo"  # the checkout's repo (when run from one)
DEFAULT_YAML = "feature_store.yaml"
PRODUCTION_YAML = "feature_store.production.yaml"
PRODUCTION_PROJECT = "clicks2intent"
# Redis client options the production config adds to the connection string (unless it sets them):
# an outage must be a 503 within 1 s, not a hang: without them a frozen Redis hung requests (no read
# timeout) and a killed one cost seconds per request (redis-py's default retries with backoff;
# docs/decisions/0012-features-and-feast.md). No retries: the next request opens a fresh connection, so
# recovery is automatic once Redis answers again.
REDIS_CLIENT_OPTIONS: dict[str, str] = {
    "socket_connect_timeout": "0.25",  # seconds to open a connection (loopback / same-zone Redis)
    "socket_timeout": "0.5",  # seconds to wait for a reply; far above a healthy read
    "retry": "null",  # redis-py: no retry (its default retries 3 times with up to 10 s backoff)
}


def redis_connection_string(redis: str, options: Mapping[str, str] = REDIS_CLIENT_OPTIONS) -> str:
    """Feast's ``host:port[,key=value…]`` with :data:`REDIS_CLIENT_OPTIONS` added where not given."""
    given = {part.split("=", 1)[0].strip() for part in redis.split(",") if "=" in part}
    extra = [f"{k}={v}" for k, v in options.items() if k not in given]
    return ",".join([redis, *extra])


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """``typeguard.typechecked`` as it is under ``python -O``: the target unchanged."""
    return _unchecked if target is None else target


def skip_feast_typechecks() -> bool:
    """Import Feast in this process without typeguard's run-time instrumentation, as ``python -O`` would.

    Feast decorates its classes with ``@typeguard.typechecked``, which re-reads, re-parses and recompiles
    every decorated class when Feast is imported (most of ``import feast``) and then checks argument
    types on each call. typeguard documents it as a development aid that optimised mode turns off;
    ``-O`` would also drop every ``assert`` (ours and the libraries'), so only the decorator is replaced,
    and only in the processes that read a store ``feast apply`` already validated with the checks on
    (the service, ``c2i features online``). Must run before Feast's first import; returns whether it did.
    """
    if "feast" in sys.modules:
        return False
    import typeguard

    typeguard.typechecked = _unchecked
    return True


def open_store(repo_path: str | Path = REPO_DIR, config: str | Path | None = None) -> FeatureStore:
    """A ``FeatureStore`` for ``repo_path`` (relative paths in the YAML resolve against it).

    ``config``: a YAML path (absolute, or relative to the working directory, or a file name inside the
    repo such as ``feature_store.production.yaml``); default the repo's ``feature_store.yaml``."""
    from feast import FeatureStore

    repo = Path(repo_path).resolve()
    if not repo.is_dir():
        raise ArtifactError(f"repo_path: feature repository {repo} not found")
    if config is None:
        return _opened(lambda: FeatureStore(repo_path=str(repo)), repo / DEFAULT_YAML)
    path = Path(config)
    if not path.is_file() and (repo / path).is_file():
        path = repo / path
    if not path.is_file():
        raise ArtifactError(f"config: feature store YAML {config} not found (nor in {repo})")
    return _opened(lambda: FeatureStore(repo_path=str(repo), fs_yaml_file=path.resolve()), path)


def _opened(make: Any, config: Path | str) -> FeatureStore:
    """``make()``, with a config Feast cannot build a store from (a bad value, an unknown store type)
    as one clear error. The SQL registry connects later, at its first read: see :func:`ping_registry`."""
    try:
        return make()
    except (ArtifactError, ConfigError):
        raise
    except Exception as err:  # Feast/SQLAlchemy/pydantic raise many types; the reason is what matters
        lines = str(err).strip().splitlines()
        reason = f"{type(err).__name__}: {lines[0][:300] if lines else ''}"
        raise ServiceError(
            f"config: the feature store of {config} cannot be opened (registry or config): {reason}"
        ) from err


REDIS_STORE_TYPE = "clicks2intent.features.online_stores.Clicks2IntentRedisOnlineStore"
SQLITE_STORE_TYPE = "clicks2intent.features.online_stores.Clicks2IntentSqliteOnlineStore"


def production_config(
    project: str = PRODUCTION_PROJECT,
    redis: str | None = None,
    registry_url: str | None = None,
    registry_cache_ttl_seconds: int = 60,
) -> dict[str, Any]:
    """The production store as a dict: Redis online store (Feast's, as :data:`REDIS_STORE_TYPE`), SQL
    registry (SQLAlchemy, PostgreSQL), DuckDB offline store, the Arrow batch engine. ``redis`` is Feast's ``host:port[,db=N,password=…]`` connection string; the
    client timeouts of :data:`REDIS_CLIENT_OPTIONS` are added to it, and the registry connection
    gives up after a few seconds (a down PostgreSQL is a clear error at start-up, not a hang)."""
    if not project.replace("_", "a").isalnum():
        raise ConfigError(f"project: {project!r} may hold letters, digits and '_' only (Feast project names)")
    redis = redis or env.redis()
    registry_url = registry_url or env.registry_url()
    return {
        "project": project,
        "provider": "local",
        "registry": {
            "registry_type": "sql",
            "path": registry_url,
            "cache_ttl_seconds": int(registry_cache_ttl_seconds),
            "sqlalchemy_config_kwargs": {
                "echo": False,
                "pool_pre_ping": True,
                "connect_args": {"connect_timeout": 5},  # psycopg: seconds to reach PostgreSQL
            },
        },
        # Feast's Redis store plus a one-round-trip read of several views (features/online_stores.py)
        "online_store": {"type": REDIS_STORE_TYPE, "connection_string": redis_connection_string(redis)},
        "offline_store": {"type": "duckdb"},
        "batch_engine": {"type": "clicks2intent.features.engines.ArrowComputeEngine"},
        "entity_key_serialization_version": 3,
    }


def write_config(path: str | Path, config: Mapping[str, Any]) -> Path:
    """Write a feature store YAML (what ``feast -f <path> …`` and :func:`open_store` read)."""
    import yaml

    path = Path(path)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    return path


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a feature store YAML as a dict (``${VAR}`` expanded, as Feast does)."""
    import yaml

    return yaml.safe_load(env.expand_variables(Path(path).read_text(encoding="utf-8")))


def ping_registry(store: FeatureStore) -> list[FeatureService]:
    """Read the registry once: an unreachable or empty one is a clear :class:`ServiceError` now (at a
    service's start-up) instead of a SQLAlchemy traceback at its first request. Returns its feature
    services, so a caller needs no second read."""
    try:
        services = store.list_feature_services()
    except Exception as err:  # SQLAlchemy OperationalError, a missing registry file, ...
        lines = str(err).strip().splitlines()
        raise ServiceError(
            f"registry: the Feast registry of project {store.project!r} cannot be read "
            f"({type(err).__name__}: {lines[0][:300] if lines else ''}); is PostgreSQL up, and was "
            "`feast apply` run with this config?"
        ) from err
    if not services:
        raise ServiceError(f"registry: project {store.project!r} has no feature services: run `feast apply`")
    return services


def production_store(repo_path: str | Path = REPO_DIR, **kwargs: Any) -> FeatureStore:
    """A ``FeatureStore`` on :func:`production_config` (keyword arguments go to it)."""
    from feast import FeatureStore, RepoConfig

    repo = Path(repo_path).resolve()
    config = RepoConfig(**production_config(**kwargs))
    config.repo_path = repo
    return _opened(lambda: FeatureStore(repo_path=str(repo), config=config), "the production config")


def drop_project(store: FeatureStore) -> None:
    """Delete this store's project from the online store and the registry, and nothing else."""
    from feast.errors import ProjectNotFoundException
    from feast.infra.online_stores.helpers import get_online_store_from_config

    project = store.project
    logger.info("dropping Feast project %s from the online store and the registry", project)
    views = store.list_feature_views()
    entities = store.list_entities()
    # What the provider's teardown does for the online store, through the store class the YAML names.
    get_online_store_from_config(store.config.online_store).teardown(store.config, views, entities)
    with contextlib.suppress(ProjectNotFoundException):  # already gone: nothing to delete
        store.registry.delete_project(project, commit=True)


def service_available(kind: str, timeout_s: float = 1.0) -> str | None:
    """``None`` when the Redis (``"redis"``) or PostgreSQL (``"postgres"``) of the production config
    answers, else the reason it does not (tests skip or fail with it)."""
    config = production_config()
    try:
        if kind == "redis":
            import redis

            host, _, rest = config["online_store"]["connection_string"].partition(":")
            port = int(rest.split(",")[0] or 6379)
            redis.Redis(host=host, port=port, socket_connect_timeout=timeout_s).ping()
        elif kind == "postgres":
            import sqlalchemy

            engine = sqlalchemy.create_engine(
                config["registry"]["path"], connect_args={"connect_timeout": max(1, int(timeout_s))}
            )
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("select 1"))
            engine.dispose()
        else:
            raise ValueError(f"kind: {kind!r} must be 'redis' or 'postgres'")
    except ValueError:
        raise
    except Exception as e:  # any connection failure is a reason to report, not to crash on
        return f"{kind} not reachable ({type(e).__name__}: {e})"
    return None


# --- Offline -----------------------------------------------------------------------------------------
# Offline stores verified to return one row per entity row, repeats included (the DuckDB store);
# every other store is assumed to collapse repeats like the file store (#6787) and gets the rounds.
EXACT_OFFLINE_STORES = ("duckdb", "feast.infra.offline_stores.duckdb.DuckDBOfflineStore")


def collapses_entity_rows(store: FeatureStore) -> bool:
    """Whether this store's offline store may collapse entity rows sharing keys and time."""
    return str(getattr(store.config.offline_store, "type", "file")) not in EXACT_OFFLINE_STORES


def historical_features(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    features: FeatureService | Sequence[str],
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """Point-in-time features, exactly one output row per entity row, in the entity order.

    Feast 0.67's file offline store keeps one row per (join keys, event_timestamp) (#6787); entity rows
    that repeat a key and time are therefore retrieved from it in rounds (k-th repeat in round k). The
    DuckDB store (the default) keeps every entity row, so it answers in ONE query: the fast path
    (``tests/models/test_training_sets_fast.py`` checks both give the same values). Either way the
    row order and count are checked against the entity rows."""
    if C.EVENT_TIMESTAMP not in entity_df.columns:
        raise ContractError(f"entity_df: needs an '{C.EVENT_TIMESTAMP}' column (the as-of time of each row)")
    ts = pd.to_datetime(entity_df[C.EVENT_TIMESTAMP], utc=True)
    if ts.isna().any():
        raise ContractError(f"entity_df: '{C.EVENT_TIMESTAMP}' has {int(ts.isna().sum())} null(s)")
    frame = entity_df.reset_index(drop=True).assign(**{C.EVENT_TIMESTAMP: ts.reset_index(drop=True)})
    keys = [c for c in (C.SESSION_ID, C.VISITOR_ID, C.CUSTOMER_ID) if c in frame.columns]
    row = "__c2i_row"
    frame[row] = np.arange(len(frame))
    repeat = (
        frame.groupby(keys + [C.EVENT_TIMESTAMP], sort=False, dropna=False).cumcount()
        if keys and collapses_entity_rows(store)
        else pd.Series(0, index=frame.index)
    )
    parts = []
    for k in range(int(repeat.max()) + 1 if len(frame) else 0):
        chunk = frame[repeat.to_numpy() == k]
        parts.append(
            store.get_historical_features(
                entity_df=chunk, features=features, full_feature_names=full_feature_names
            ).to_df()
        )
    if not parts:
        return frame.drop(columns=row)
    out = pd.concat(parts, ignore_index=True).sort_values(row, kind="stable").reset_index(drop=True)
    if len(out) != len(frame) or not (out[row].to_numpy() == np.arange(len(frame))).all():
        raise RuntimeError(f"Feast returned {len(out)} rows for {len(frame)} entity rows")
    return out.drop(columns=row)


# --- Online ------------------------------------------------------------------------------------------
def inflight_request(events: Sequence[Mapping[str, Any]] | pd.DataFrame) -> dict[str, Any]:
    """One in-flight session's events (contract columns) → the ``inflight_session`` request fields.

    Events are ordered by time first (as the batch featuriser does); a missing dwell becomes NaN and a
    missing query ``""`` (Feast request arrays cannot hold nulls)."""
    rows = events.to_dict("records") if isinstance(events, pd.DataFrame) else [dict(e) for e in events]
    for i, e in enumerate(rows):
        page = e.get(C.PAGE_TYPE)
        if not isinstance(page, str) or not page.strip():
            raise ContractError(
                f"event {i}: '{C.PAGE_TYPE}' is required and must be a non-empty string, got {page!r}"
            )
    stamps = []
    for i, e in enumerate(rows):
        t = e.get(C.EVENT_TIMESTAMP)
        stamp = pd.Timestamp(t) if t is not None and not (isinstance(t, float) and np.isnan(t)) else None
        if stamp is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize("UTC")
        if stamp is None or pd.isna(stamp):
            raise ContractError(
                f"event {i}: '{C.EVENT_TIMESTAMP}' is required for an in-flight event, got {t!r}"
            )
        stamps.append(int((stamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")))
    order = sorted(range(len(rows)), key=lambda i: stamps[i])

    def text(v: Any) -> str:
        return v.strip() if isinstance(v, str) else ""

    def dwell(v: Any) -> float:
        return float(v) if v is not None and not (isinstance(v, float) and np.isnan(v)) else float("nan")

    first = rows[order[0]] if rows else {}
    return {
        INFLIGHT_PAGE_TYPES: [rows[i][C.PAGE_TYPE].strip() for i in order],
        INFLIGHT_EVENT_TIMES_US: [stamps[i] for i in order],
        INFLIGHT_DWELL_SECONDS: [dwell(rows[i].get(C.DWELL_SECONDS)) for i in order],
        INFLIGHT_SEARCH_QUERIES: [text(rows[i].get(C.SEARCH_QUERY)) for i in order],
        INFLIGHT_CHANNEL: text(first.get(C.CHANNEL)),
        INFLIGHT_DEVICE: text(first.get(C.DEVICE)),
    }


def online_features(
    store: FeatureStore,
    features: FeatureService | str | Sequence[str],
    entity_rows: Iterable[Mapping[str, Any]],
    request: Mapping[str, Any] | None = None,
) -> dict[str, list[Any]]:
    """``get_online_features`` → column dict. ``features`` may name a feature service; ``request``
    fields (e.g. ``candidate_tiles``) are added to every entity row."""
    if isinstance(features, str):
        features = store.get_feature_service(features)
    rows = [{**dict(r), **dict(request or {})} for r in entity_rows]
    return store.get_online_features(features=features, entity_rows=rows).to_dict()


def default_customer(features_dir: str | Path) -> str:
    """A customer with linked web intent (the most linked web sessions), for the demo."""
    import pyarrow.parquet as pq

    path = Path(features_dir) / FEATURE_FILES["customer_web_intent"]
    if not path.is_file():
        raise ArtifactError(f"{path} not found: run `c2i features build` or pass --customer-id")
    df = pq.read_table(
        path,
        columns=[C.CUSTOMER_ID, C.EVENT_TIMESTAMP, CUSTOMER_WEB_SESSIONS_30D, CUSTOMER_WEB_EMBEDDING],
    ).to_pandas()
    df = df[df[CUSTOMER_WEB_EMBEDDING].notna()]
    if df.empty:
        raise ArtifactError(f"{path}: no customer has linked web intent; pass --customer-id")
    return str(
        df.sort_values([CUSTOMER_WEB_SESSIONS_30D, C.EVENT_TIMESTAMP], ascending=False)[C.CUSTOMER_ID].iloc[0]
    )


@dataclass
class CustomerFeatures:
    """One customer's online features from one feature service (what ``c2i features online`` shows)."""

    customer_id: str
    service: str
    project: str
    values: dict[str, Any]  # feature name → the customer's value
    tiles: tuple[str, ...] = ()  # the candidates sent (the world's tiles), in the affinity's order

    def tiles_by_affinity(self) -> list[tuple[str, float]]:
        """Candidate tiles, highest web-intent affinity first (unknown last); empty without affinity."""
        affinity = self.values.get(TILE_AFFINITY)
        if affinity is None:
            return []
        return sorted(
            zip(self.tiles, affinity, strict=True),
            key=lambda kv: -kv[1] if kv[1] == kv[1] else np.inf,  # NaN last
        )


def customer_features(
    repo_path: str | Path = REPO_DIR,
    customer_id: str | None = None,
    service: str | None = None,
    config: str | Path | None = None,
    features_dir: str | Path = ARTIFACTS.features,
) -> CustomerFeatures:
    """One customer's online features (after ``feast apply`` + ``materialize``), every tile a candidate.

    ``customer_id`` defaults to :func:`default_customer` over ``features_dir``; ``service`` to the world's
    ``tile_ranker_v1`` (with its Feast prefix). The tiles are the world's, from ``features_dir``."""
    from clicks2intent.data.world import load_world

    world_path = Path(features_dir) / WORLD_FILE
    if not world_path.is_file():
        raise ArtifactError(f"{world_path} not found: run `c2i features build` or pass --features")
    world = load_world(world_path)
    service = service or world.feast_name(TILE_RANKER_V1)
    store = open_store(repo_path, config)
    services = {s.name: s for s in ping_registry(store)}  # one registry read serves every lookup below
    if service not in services:
        raise ConfigError(
            f"--service: {service!r} is not a feature service of project {store.project!r} "
            f"(known: {', '.join(sorted(services)) or 'none: run feast apply'})"
        )
    customer_id = customer_id or default_customer(features_dir)
    tiles = tuple(world.tiles)
    values = online_features(
        store, services[service], [{C.CUSTOMER_ID: customer_id}], request={CANDIDATE_TILES: list(tiles)}
    )
    row = {k: v[0] for k, v in values.items()}
    odfvs = {v.name for v in store.list_on_demand_feature_views(allow_cache=True)}
    stored = [
        f.name for p in services[service].feature_view_projections if p.name not in odfvs for f in p.features
    ]
    if stored and all(_missing(row.get(n)) for n in stored):  # Feast answers nulls for unknown keys
        raise ArtifactError(
            f"customer_id: {customer_id!r} has no online features in project {store.project!r} "
            f"(service {service}): an unknown customer, or the store was not materialized"
        )
    return CustomerFeatures(customer_id, service, store.project, row, tiles)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
