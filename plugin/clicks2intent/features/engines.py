"""A Feast batch engine that materialises through the online store's column-wise Arrow write.

Registered by class path in a feature store YAML (Feast's extension point for compute engines)::

    batch_engine:
      type: clicks2intent.features.engines.ArrowComputeEngine

For a plain feature view (no transformation, aggregation or field mapping) a materialisation is one
offline-store query for the latest row per entity in the window (``pull_latest_from_table_or_query``:
SQL in DuckDB, a dask job on the file store) and one column-wise write into the online store
(``online_write_arrow`` of :mod:`clicks2intent.features.online_stores`), instead of the local engine's
DAG (arrow → pandas → arrow at every node) and per-row proto conversion. Everything else — other views,
an online store without ``online_write_arrow`` (``type: sqlite`` / ``type: redis``: Feast's own
classes), historical retrieval — is Feast's own :class:`LocalComputeEngine`. The tables and hashes
written are Feast's, so serving reads them with plain ``get_online_features``. The engine overrides
``ComputeEngine.materialize``, Feast's public entry point, per task.

**A killed materialisation is repaired by the next one.** The online writers commit in chunks
(``online_write.CHUNK_ROWS`` entities; each entity whole), so a run killed mid-view leaves the view
partly updated. Feast records a view's interval only after it succeeds, so the registry never calls it
done; but ``materialize-incremental`` with no earlier interval starts at now - ttl and would write
nothing of the killed window and record its own window as done. So while a view is written this engine
keeps a marker of its window in the feature repo (:data:`PENDING_DIR`, one JSON file per view); a run
that finds one says so in one WARNING line and widens its window to cover it; success removes it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from feast.utils import make_tzaware

from clicks2intent.common import framework_adapter as adapter
from clicks2intent.common.files import write_text
from clicks2intent.features.online_write import write_arrow

logger = logging.getLogger(__name__)

ENGINE_TYPE = "clicks2intent.features.engines.ArrowComputeEngine"
RAY_ENGINE_TYPE = "clicks2intent.features.engines.RayComputeEngine"
RAY_OFFLINE_TYPE = "clicks2intent.features.engines.RayOfflineStore"


class ArrowComputeEngineConfig(FeastConfigBaseModel):
    """``batch_engine`` section of a feature store YAML for :class:`ArrowComputeEngine`."""

    type: Literal["clicks2intent.features.engines.ArrowComputeEngine"] = ENGINE_TYPE
    backend: str | None = None  # the local engine's DataFrame backend for the views it still runs


def _plain(view: Any) -> bool:
    """A view the direct path can materialise exactly like the local engine's DAG would."""
    from feast import BatchFeatureView, StreamFeatureView

    if isinstance(view, (BatchFeatureView, StreamFeatureView)):
        return False
    if getattr(view, "feature_transformation", None) is not None or getattr(view, "aggregations", None):
        return False
    source = getattr(view, "batch_source", None)
    return source is not None and not (source.field_mapping or {})


PENDING_DIR = ".c2i_materializing"  # in the feature repo: the window of each view being written


class ArrowComputeEngine(LocalComputeEngine):
    """Local compute engine whose materialisation of plain views is query-then-columnar-write, and
    whose killed materialisations are repaired by the next run (see the module docstring)."""

    def materialize(
        self,
        registry: BaseRegistry,
        tasks: MaterializationTask | list[MaterializationTask],
        *,
        lineage_parent: Any = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Each task: plain views written column-wise, the rest by the local engine (Feast's own)."""
        if lineage_parent is not None:
            kwargs["lineage_parent"] = lineage_parent
        tasks = [tasks] if isinstance(tasks, MaterializationTask) else list(tasks)
        return [self.materialize_task(registry, task, **kwargs) for task in tasks]

    def materialize_task(self, registry: BaseRegistry, task: MaterializationTask, **kwargs: Any) -> Any:
        """One view's window, with the pending-window marker around it (see the module docstring)."""
        marker = self._pending_marker(task)
        task = _cover_pending(task, marker)
        if marker is not None:
            write_text(
                marker, json.dumps({"start": task.start_time.isoformat(), "end": task.end_time.isoformat()})
            )
        view = task.feature_view
        arrow = _plain(view) and getattr(self.online_store, "writes_arrow", lambda _: False)(self.repo_config)
        if not arrow:
            (job,) = super().materialize(registry, [task], **kwargs)
        else:
            job_id = f"{view.name}-{task.start_time}-{task.end_time}"
            try:
                self.materialize_view(registry, task)
                job = LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)
            except Exception as e:  # reported through the job, as the local engine does
                job = LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=e)
        if marker is not None and job.status() == MaterializationJobStatus.SUCCEEDED:
            marker.unlink(missing_ok=True)
        return job

    def _pending_marker(self, task: MaterializationTask) -> Path | None:
        """``<repo>/.c2i_materializing/<project>.<view>.json``; None without a local repo directory."""
        repo = getattr(self.repo_config, "repo_path", None)
        if repo is None:
            return None
        return Path(repo) / PENDING_DIR / f"{task.project}.{task.feature_view.name}.json"

    def materialize_view(self, registry: BaseRegistry, task: MaterializationTask) -> int:
        """Latest row per entity in ``[start, end)`` → online store; returns the rows written."""
        view = task.feature_view
        # A plain view's columns are its own names (no field mapping, no aggregation: see _plain).
        join_keys = [e.name for e in view.entity_columns]
        features = [f.name for f in view.features]
        ts_col = view.batch_source.timestamp_field
        created_col = view.batch_source.created_timestamp_column
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # Feast's DuckDB store calls an ibis method ibis deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            table = self.offline_store.pull_latest_from_table_or_query(
                config=self.repo_config,
                data_source=view.batch_source,
                join_key_columns=join_keys,
                feature_name_columns=features,
                timestamp_field=ts_col,
                created_timestamp_column=created_col,
                start_date=task.start_time,
                end_date=task.end_time,
            ).to_arrow()
        t1 = time.perf_counter()
        if view.online and table.num_rows:
            write_arrow(self.online_store, self.repo_config, view, table)
        logger.info(
            "%s: %d rows, query %.2f s, online write %.2f s (column-wise)",
            view.name,
            table.num_rows,
            t1 - t0,
            time.perf_counter() - t1,
        )
        if getattr(view, "offline", False) and table.num_rows:
            self.offline_store.offline_write_batch(
                config=self.repo_config, feature_view=view, table=table, progress=lambda x: None
            )
        return table.num_rows


def _cover_pending(task: MaterializationTask, marker: Path | None) -> MaterializationTask:
    """``task`` widened to the window an earlier, unfinished run of its view was writing (if any)."""
    if marker is None or not marker.is_file():
        return task
    try:
        pending = json.loads(marker.read_text(encoding="utf-8"))
        start, end = (make_tzaware(datetime.fromisoformat(pending[k])) for k in ("start", "end"))
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("%s: unreadable marker %s ignored", task.feature_view.name, marker)
        return task
    logger.warning(
        "%s: the materialization of %s .. %s did not finish (killed?): writing it again with this run",
        task.feature_view.name, start, end,
    )  # fmt: skip
    return dataclasses.replace(
        task,
        start_time=min(start, make_tzaware(task.start_time)),
        end_time=max(end, make_tzaware(task.end_time)),
    )


def _without_ttl(task: MaterializationTask) -> MaterializationTask:
    """The task with its view's ttl off, for materialisation only (RayComputeEngine says why)."""
    view = task.feature_view
    if not getattr(view, "ttl", None):
        return task
    view = copy.copy(view)
    view.ttl = timedelta(0)  # falsy: Feast's Ray filter node skips its ttl clause
    return dataclasses.replace(task, feature_view=view)


def _ray_engine_classes() -> dict[str, type]:
    """:class:`RayComputeEngine` and its config, built on first use: Feast's Ray engine imports ``ray``
    at module level, and the default configuration must not need the ``ray`` extra."""
    from feast.infra.compute_engines.ray.compute import RayComputeEngine as FeastRayComputeEngine
    from feast.infra.compute_engines.ray.config import RayComputeEngineConfig as FeastRayComputeEngineConfig

    class RayComputeEngineConfig(FeastRayComputeEngineConfig):
        """``batch_engine`` section for :class:`RayComputeEngine`: every field of Feast's ``ray.engine``."""

        type: Literal["clicks2intent.features.engines.RayComputeEngine"] = RAY_ENGINE_TYPE  # type: ignore[assignment]

    class RayComputeEngine(FeastRayComputeEngine):
        """Feast's Ray compute engine, materialising what the local engine does.

        Feast 0.67's Ray materialisation filters rows by the view's ttl against the WALL CLOCK
        (``datetime.now() - ttl``, ray/nodes.py), not against the window: a window whose rows are
        older than the ttl — a backfill, or the demo's simulated 2024 sessions — writes nothing and
        reports success (on the demo's artifacts no session row reached the online store:
        docs/decisions/0012-features-and-feast.md). The local
        engine writes the latest row per entity in the window whatever its age (ttl applies when
        values are read), so this engine hands Feast's builder the view without a ttl for
        materialisation only; historical retrieval is unchanged.
        """

        def materialize(
            self,
            registry: BaseRegistry,
            tasks: MaterializationTask | list[MaterializationTask],
            **kwargs: Any,
        ) -> list[Any]:
            tasks = [tasks] if isinstance(tasks, MaterializationTask) else list(tasks)
            return super().materialize(registry, [_without_ttl(task) for task in tasks], **kwargs)

    for cls in (RayComputeEngine, RayComputeEngineConfig):  # picklable by name (Ray ships the config)
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return {"RayComputeEngine": RayComputeEngine, "RayComputeEngineConfig": RayComputeEngineConfig}


def _ray_offline_classes() -> dict[str, type]:
    """:class:`RayOfflineStore` and its config, built on first use (``ray`` is imported by Feast's)."""
    from feast.infra.offline_stores.contrib.ray_offline_store.ray import RayOfflineStore as FeastRayStore
    from feast.infra.offline_stores.contrib.ray_offline_store.ray import (
        RayOfflineStoreConfig as FeastRayStoreConfig,
    )

    class RayOfflineStoreConfig(FeastRayStoreConfig):
        """``offline_store`` section for :class:`RayOfflineStore`: every field of Feast's ``ray``."""

        type: Literal["clicks2intent.features.engines.RayOfflineStore"] = RAY_OFFLINE_TYPE  # type: ignore[assignment]

    class RayOfflineStore(FeastRayStore):
        """Feast's Ray offline store, with materialisation reads that work on ``c2i features build``'s
        sources and on an empty incremental window.

        Feast 0.67's ``ray`` store (``contrib/ray_offline_store/ray.py``) fails two reads that the
        DuckDB and file stores answer: (1) a window with no rows, ``Failed to load/filter dataset:
        'NoneType' object has no attribute 'names'`` (``_load_and_filter_dataset_ray`` reads
        ``ds.schema().names``, and Ray's schema of an empty dataset is None), so every incremental
        ``feast materialize`` with nothing new failed; (2) a source with null timestamps (the anchor
        rows the features job writes): its row filter (``_create_filtered_dataset``) compares None
        with a Timestamp. Its static methods call ``RayOfflineStore`` by name, so the two reads are
        replaced here: an empty window (counted on the timestamp column with pyarrow) is an empty
        dataset of the source's columns, and a source with null timestamps goes through Feast's own
        pre-loaded-dataset pipeline (pandas comparisons, where NaT is never in range). Every other
        read, and historical retrieval, is Feast's unchanged.
        """

        @staticmethod
        def pull_latest_from_table_or_query(
            config: Any,
            data_source: Any,
            join_key_columns: list[str],
            feature_name_columns: list[str],
            timestamp_field: str,
            created_timestamp_column: str | None,
            start_date: Any,
            end_date: Any,
        ) -> Any:
            args = (join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column)
            job = _ray_window_read(config, data_source, *args, start_date, end_date, latest=True)
            if job is None:
                job = FeastRayStore.pull_latest_from_table_or_query(
                    config, data_source, *args, start_date, end_date
                )
            return job

        @staticmethod
        def pull_all_from_table_or_query(
            config: Any,
            data_source: Any,
            join_key_columns: list[str],
            feature_name_columns: list[str],
            timestamp_field: str,
            created_timestamp_column: str | None = None,
            start_date: Any = None,
            end_date: Any = None,
        ) -> Any:
            args = (join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column)
            job = _ray_window_read(config, data_source, *args, start_date, end_date, latest=False)
            if job is None:
                job = FeastRayStore.pull_all_from_table_or_query(
                    config, data_source, *args, start_date, end_date
                )
            return job

    for cls in (RayOfflineStore, RayOfflineStoreConfig):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return {"RayOfflineStore": RayOfflineStore, "RayOfflineStoreConfig": RayOfflineStoreConfig}


def _ray_window_read(
    config: Any,
    data_source: Any,
    join_keys: list[str],
    features: list[str],
    ts: str,
    created: str | None,
    start: Any,
    end: Any,
    *,
    latest: bool,
) -> Any:
    """A Ray retrieval job for the two reads Feast's Ray store fails (see :class:`RayOfflineStore`),
    or None where Feast's own read works (or the source is not a plain parquet FileSource)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    from feast import FileSource
    from feast.infra.offline_stores.contrib.ray_offline_store.ray import RayOfflineStore as FeastRayStore
    from feast.infra.offline_stores.contrib.ray_offline_store.ray import RayRetrievalJob
    from feast.infra.ray_initializer import get_ray_wrapper
    from feast.utils import make_tzaware

    if type(data_source) is not FileSource or data_source.field_mapping or not ts:
        return None
    store = FeastRayStore()
    adapter.ray_init(store, config)
    path = adapter.ray_source_path(store, data_source, config)
    try:
        dataset = pads.dataset(path, format="parquet")
        column = pc.field(ts)
        in_window = column.is_valid()
        if start is not None:
            in_window = in_window & (column >= make_tzaware(start))
        if end is not None:
            in_window = in_window & (column <= make_tzaware(end))  # Feast's Ray filter is inclusive
        empty = dataset.count_rows(filter=in_window) == 0
        has_nulls = not empty and dataset.count_rows(filter=column.is_null()) > 0
    except Exception as err:  # a path or type pyarrow cannot read: Feast's own read decides
        logger.info("Ray offline store: %s not pre-checked (%s); Feast's read", path, err)
        return None
    if not (empty or has_nulls):
        return None
    wanted = list(dict.fromkeys([*join_keys, *features, ts, *([created] if created else [])]))
    names = [n for n in wanted if n in dataset.schema.names]
    ray_data = get_ray_wrapper()
    staging = config.offline_store.storage_path
    if empty:
        table = dataset.schema.empty_table().select(names)
        return RayRetrievalJob(
            lambda: ray_data.from_arrow(table), staging_location=staging, config=config.offline_store
        )

    def load() -> Any:
        ds = adapter.ray_filter_dataset(
            FeastRayStore, data_source, join_keys, features, ts, created, start, end,
            ray_data.read_parquet(path, columns=names),
        )  # fmt: skip
        if latest:
            ds = adapter.ray_latest_rows(FeastRayStore, ds, join_keys, ts, created)
        return ds

    return RayRetrievalJob(load, staging_location=staging, config=config.offline_store)


_LAZY: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    """``batch_engine: type: clicks2intent.features.engines.RayComputeEngine`` and ``offline_store:
    type: clicks2intent.features.engines.RayOfflineStore`` (see _ray_engine_classes)."""
    if name in ("RayComputeEngine", "RayComputeEngineConfig"):
        if "RayComputeEngine" not in _LAZY:
            _LAZY.update(_ray_engine_classes())
        return _LAZY[name]
    if name in ("RayOfflineStore", "RayOfflineStoreConfig"):
        if "RayOfflineStore" not in _LAZY:
            _LAZY.update(_ray_offline_classes())
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
