"""Training sets for the two tasks: entity rows from the task logs, features from Feast, a time split.

* **Entity rows.** Tile ranking: one row per homepage impression with a tile click (customer,
  timestamp → clicked tile). The ranker is trained on *clicked* impressions only: the paper's task is
  "which of the N tiles did the customer click", and a view without a click says nothing about the
  order of the tiles (most simulated views have no click: docs/decisions/0008-data-and-simulator.md;
  modelling "click at all" is a different model).
  ``clicked_only=False`` keeps them with the class ``"none"``. Conversion: one row per web session
  (session, visitor, session end → product or ``"none"``).
* **Features** come only from Feast ``get_historical_features`` with a versioned feature service,
  so every value is point-in-time correct (as of the entity timestamp) and the same service name is
  used when serving.
* **Time split.** Train on the earliest rows, validate (early stopping) on the next period, test on
  the latest — never a random row split. With ``group_column`` each entity (e.g. a session) is
  assigned whole to the split of its LAST row, so no entity appears in two splits and every training
  row is strictly earlier than the validation period. ``embargo`` additionally drops rows of an
  earlier split whose label could only be known inside the next period (a conversion horizon).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clicks2intent.data.world import World, check_labels
from clicks2intent.errors import ArtifactError, ConfigError, ContractError
from clicks2intent.names import columns as C
from clicks2intent.names.features import CANDIDATE_TILES
from clicks2intent.names.paths import ARTIFACTS

logger = logging.getLogger(__name__)

LABEL = "label"  # the target column of every training frame
TILE_RANKING, CONVERSION = "tile_ranking", "conversion"
TASKS: tuple[str, ...] = (TILE_RANKING, CONVERSION)


def task_classes(world: World, task: str) -> tuple[str, ...]:
    """A task's classes in the world: its tiles (ranking), its products + ``none`` (conversion)."""
    return world.classes(task)


def world_request_values(world: World) -> dict[str, Any]:
    """Request-time inputs the on-demand views of a service may need; at training time the candidate
    tiles of an impression are all the world's tiles (the app shows the full set, the ranker orders it)."""
    return {CANDIDATE_TILES: list(world.tiles)}


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True)


def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ContractError(f"{what}: missing column(s) {missing}")


def tile_entity_df(impressions: pd.DataFrame, world: World, clicked_only: bool = True) -> pd.DataFrame:
    """Impressions → ``customer_id, event_timestamp, impression_id, label`` (see module docstring)."""
    _require(
        impressions, [C.IMPRESSION_ID, C.CUSTOMER_ID, C.EVENT_TIMESTAMP, C.CLICKED_TILE], "tile impressions"
    )
    df = impressions[[C.IMPRESSION_ID, C.CUSTOMER_ID, C.EVENT_TIMESTAMP, C.CLICKED_TILE]].copy()
    check_labels(df[C.CLICKED_TILE], (*world.tiles, C.NO_CLICK), "tile impressions", C.CLICKED_TILE, world)
    if clicked_only:
        df = df[df[C.CLICKED_TILE] != C.NO_CLICK]
    df[C.EVENT_TIMESTAMP] = _utc(df[C.EVENT_TIMESTAMP])
    return (
        df.rename(columns={C.CLICKED_TILE: LABEL})
        .sort_values(C.EVENT_TIMESTAMP, kind="stable")
        .reset_index(drop=True)
    )


def conversion_entity_df(conversions: pd.DataFrame, world: World) -> pd.DataFrame:
    """Conversions → ``session_id, visitor_id, event_timestamp (session end), label``."""
    _require(
        conversions, [C.SESSION_ID, C.VISITOR_ID, C.EVENT_TIMESTAMP, C.CONVERSION_PRODUCT], "conversions"
    )
    df = conversions[[C.SESSION_ID, C.VISITOR_ID, C.EVENT_TIMESTAMP, C.CONVERSION_PRODUCT]].copy()
    check_labels(
        df[C.CONVERSION_PRODUCT], world.classes(CONVERSION), "conversions", C.CONVERSION_PRODUCT, world
    )
    if df[C.SESSION_ID].duplicated().any():
        raise ContractError(f"conversions: {C.SESSION_ID} must be unique (one row per web session)")
    df[C.EVENT_TIMESTAMP] = _utc(df[C.EVENT_TIMESTAMP])
    return (
        df.rename(columns={C.CONVERSION_PRODUCT: LABEL})
        .sort_values(C.EVENT_TIMESTAMP, kind="stable")
        .reset_index(drop=True)
    )


# --- Feast ------------------------------------------------------------------------------------
def service_feature_names(store: Any, service_name: str) -> list[str]:
    """The feature names a feature service returns, in the service's order."""
    service = store.get_feature_service(service_name)
    return [f.name for proj in service.feature_view_projections for f in proj.features]


def service_request_fields(store: Any, service_name: str) -> list[str]:
    """Request-source fields the service's on-demand views need in the entity dataframe."""
    service = store.get_feature_service(service_name)
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    out: list[str] = []
    for proj in service.feature_view_projections:
        view = odfvs.get(proj.name)
        if view is None:
            continue
        for source in view.source_request_sources.values():
            out.extend(f.name for f in source.schema if f.name not in out)
    return out


def historical_features(
    store: Any,
    entity_df: pd.DataFrame,
    service_name: str,
    request_values: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """``get_historical_features`` for a feature service; request fields filled from ``request_values``
    (the world's :func:`world_request_values`).

    Rows come back one per entity row, in the entity order, with the entity columns, ``label`` and one
    column per feature (through :func:`clicks2intent.features.store.historical_features`, which works
    around the file offline store's one-row-per-(key, time) behaviour).
    """
    from clicks2intent.features.store import historical_features as fetch

    request_values = dict(request_values or {})
    entity = entity_df.copy()
    for name in service_request_fields(store, service_name):
        if name in entity.columns:
            continue
        if name not in request_values:
            raise ConfigError(
                f"feature service {service_name!r} needs request field {name!r}: add it to the entity rows "
                "or pass request_values"
            )
        value = request_values[name]
        entity[name] = [value] * len(entity)
    out = fetch(store, entity, store.get_feature_service(service_name))
    if len(out) != len(entity_df):
        raise RuntimeError(
            f"Feast returned {len(out)} rows for {len(entity_df)} entity rows ({service_name})"
        )
    return out


# --- time split -------------------------------------------------------------------------------
@dataclass
class TimeSplit:
    """Train / valid / test frames, each sorted by time, and the period boundaries."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    valid_start: pd.Timestamp
    test_start: pd.Timestamp
    timestamp_column: str = C.EVENT_TIMESTAMP
    group_column: str | None = None
    n_embargoed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Sizes and time windows (ISO strings), for reports and model metadata."""

        def window(df: pd.DataFrame) -> list[str | None]:
            if df.empty:
                return [None, None]
            ts = df[self.timestamp_column]
            return [ts.min().isoformat(), ts.max().isoformat()]

        return {
            "n_train": len(self.train),
            "n_valid": len(self.valid),
            "n_test": len(self.test),
            "train_window": window(self.train),
            "valid_window": window(self.valid),
            "test_window": window(self.test),
            "valid_start": self.valid_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "group_column": self.group_column,
            "n_embargoed": self.n_embargoed,
        }


def time_split(
    df: pd.DataFrame,
    timestamp_column: str = C.EVENT_TIMESTAMP,
    group_column: str | None = None,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    embargo: pd.Timedelta | str | None = None,
) -> TimeSplit:
    """Split by time (see module docstring). Fractions are of entities (rows when no group column)."""
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ConfigError("valid_fraction and test_fraction must be in (0, 1) and sum to less than 1")
    _require(df, [timestamp_column] + ([group_column] if group_column else []), "time_split")
    if df.empty:
        raise ContractError("time_split: no rows")
    ts = _utc(df[timestamp_column])
    if ts.isna().any():
        raise ContractError(f"time_split: {timestamp_column} has nulls")
    key = ts if group_column is None else ts.groupby(df[group_column]).transform("max")
    per_entity = key if group_column is None else key.groupby(df[group_column]).first()
    valid_start = per_entity.quantile(1 - valid_fraction - test_fraction)
    test_start = per_entity.quantile(1 - test_fraction)
    if not valid_start < test_start:
        raise ContractError("time_split: too few distinct timestamps for three periods")
    part = pd.Series("valid", index=df.index)
    part[key < valid_start] = "train"
    part[key >= test_start] = "test"
    gap = pd.Timedelta(embargo) if embargo is not None else pd.Timedelta(0)
    dropped = pd.Series(False, index=df.index)
    if gap > pd.Timedelta(0):
        # A label known only after the next period starts must not be trained / early-stopped on.
        dropped = ((part == "train") & (ts + gap >= valid_start)) | (
            (part == "valid") & (ts + gap >= test_start)
        )
    frame = df.assign(**{timestamp_column: ts})

    def take(name: str) -> pd.DataFrame:
        m = (part == name) & ~dropped
        return frame[m].sort_values(timestamp_column, kind="stable").reset_index(drop=True)

    split = TimeSplit(
        train=take("train"),
        valid=take("valid"),
        test=take("test"),
        valid_start=valid_start,
        test_start=test_start,
        timestamp_column=timestamp_column,
        group_column=group_column,
        n_embargoed=int(dropped.sum()),
    )
    for name in ("train", "valid", "test"):
        if getattr(split, name).empty:
            raise ContractError(f"time_split: the {name} period is empty (too few rows)")
    return split


# --- the task training sets ---------------------------------------------------------------------
@dataclass
class TrainingSet:
    """One task's rows with the features of one feature service, split by time."""

    task: str
    feature_service: str
    feature_names: list[str]
    split: TimeSplit
    classes: tuple[str, ...]
    label_column: str = LABEL


def read_task_entities(
    task: str, data_dir: str | Path, world: World, clicked_only: bool = True
) -> pd.DataFrame:
    """Entity rows of a task from a bank's (or the simulator's) task logs under ``data_dir``; every label
    must be one of the ``world``'s tiles / products (or ``none``)."""
    files = {TILE_RANKING: ARTIFACTS.tile_impressions.name, CONVERSION: ARTIFACTS.conversions.name}
    if task not in files:
        raise ConfigError(f"unknown task {task!r}; expected {TILE_RANKING!r} or {CONVERSION!r}")
    path = Path(data_dir) / files[task]
    if not path.is_file():
        raise ArtifactError(f"{task}: task log {path} not found (simulate or ingest the data first)")
    frame = pd.read_parquet(path)
    if task == TILE_RANKING:
        return tile_entity_df(frame, world, clicked_only)
    return conversion_entity_df(frame, world)


def sample_entities(entities: pd.DataFrame, max_rows: int | None, random_state: int = 0) -> pd.DataFrame:
    """Uniform sample (kept in time order) to bound training time; None keeps everything."""
    if max_rows is None or len(entities) <= max_rows:
        return entities
    return (
        entities.sample(n=max_rows, random_state=random_state)
        .sort_values(C.EVENT_TIMESTAMP, kind="stable")
        .reset_index(drop=True)
    )


def build_training_set(
    store: Any,
    task: str,
    entities: pd.DataFrame,
    feature_service: str,
    world: World,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    embargo: pd.Timedelta | str | None = None,
    request_values: Mapping[str, Any] | None = None,
) -> TrainingSet:
    """Fetch the service's features for the entity rows, then split by time with entity hygiene."""
    logger.info(
        "%s: point-in-time features of %d entity rows from service %s", task, len(entities), feature_service
    )
    frame = historical_features(
        store, entities, feature_service, {**world_request_values(world), **(request_values or {})}
    )
    group = C.SESSION_ID if task == CONVERSION else None  # impressions are their own entity
    split = time_split(frame, C.EVENT_TIMESTAMP, group, valid_fraction, test_fraction, embargo)
    return TrainingSet(
        task=task,
        feature_service=feature_service,
        feature_names=service_feature_names(store, feature_service),
        split=split,
        classes=task_classes(world, task),
    )
