"""Batch embedding and LLM labelling on Ray Data (``c2i embed --engine ray``, ``c2i taxonomy label
--engine ray``): the same jobs as :func:`clicks2intent.encoder.embed.embed_file` and
:func:`clicks2intent.intent.labelling.run_labelling`, spread over a Ray cluster.

Why Ray Data: the two jobs are embarrassingly parallel per session but hold state that is expensive to
create (the encoder's weights; an LLM client with its connection pool and response cache), so each runs
as ``map_batches``/``map_groups`` over an **actor pool**: every actor loads the encoder (or opens the
client) once and then serves many batches.

* **Embedding**: each event gets its session's hash shard (the driver reads and shards inputs up to
  ``driver_read_rows``; bigger ones are read by Ray Data and grouped by shard on the cluster), and
  every actor call gets whole shards, i.e. whole sessions (a session never straddles two batches, so
  every vector is what the single-process job computes, to float rounding). The vectors stream back
  to the driver, which writes the same one-file ``session_embeddings.parquet``.
  Ray adds a fixed cost (actors importing torch, planning) at the same marginal rate, and a single
  process already uses every core of one machine, so Ray pays off only with more machines
  (docs/decisions/0012-features-and-feast.md).
* **Labelling**: the driver samples and summarises sessions exactly as the single-process job does and
  starts (or points at) the LLM endpoint; actors run :func:`~clicks2intent.intent.labelling.label_sessions`
  on batches of summaries, each with its own :class:`~clicks2intent.intent.llm.client.LLMClient` on the
  SAME SQLite response cache and call ledger (``calls`` table), so a re-run costs 0 calls whichever
  engine ran first. The total number of requests in flight is bounded by the LLM options'
  ``concurrency`` (split over the actors).

Ray is local and in-process by default, bounded by :class:`RayOptions` (``num_cpus=2``); set
``address`` (``auto``, ``ray://head:10001``) for a cluster, whose workers must then see the encoder
directory, the taxonomy file's content (shipped by value) and the cache path (a shared file system).
Needs the ``ray`` extra: ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clicks2intent.common.files import atomic_output, exclusive
from clicks2intent.common.settings import set_default
from clicks2intent.errors import ArtifactError, Clicks2IntentError, ClusterError, ConfigError
from clicks2intent.names.paths import CHECKPOINT_FILE
from clicks2intent.names.settings import RAY_ENABLE_UV_RUN_RUNTIME_ENV

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")  # the ``--engine`` choices of ``c2i embed`` and ``c2i taxonomy label``
SHARD = "__c2i_shard"  # the session-hash shard column the embedding job groups by (dropped again)
LEDGER = "__c2i_ledger"  # per-batch ledger delta (JSON) carried back from a labelling actor
ORDER = "__c2i_order"  # a summary's position, so labels come back in the single-process order
NODE = "__c2i_node"  # the Ray node an actor call ran on (counted by the driver, then dropped)
_LEDGER_COUNTS = ("requests", "cache_hits", "api_calls", "prompt_tokens", "completion_tokens", "failures")


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """Where Ray runs and how much of it a job may use."""

    address: str | None = None  # None: start a local Ray in this process; "auto" / "ray://…": a cluster
    num_cpus: int = 2  # local Ray only: the CPUs it may schedule on
    actors: int = 2  # actor pool size (encoders / LLM clients held at once)
    object_store_mb: int = 512  # local Ray only: shared-memory object store
    rows_per_shard: int = 250_000  # embedding: events per session-hash shard (one actor call each)
    driver_read_rows: int = 5_000_000  # embedding: inputs up to this many events are read and sharded
    # by the driver; bigger ones are read by Ray Data and grouped by shard on the cluster (a shuffle)
    # A pool whose actors cannot all be placed (a node lost, too few CPUs) fails after this many seconds
    # with one line, instead of Ray Data's default of waiting forever.
    actor_wait_s: int = 300

    def __post_init__(self) -> None:
        for name in (
            "num_cpus",
            "actors",
            "object_store_mb",
            "rows_per_shard",
            "driver_read_rows",
            "actor_wait_s",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"ray {name}: must be >= 1, got {getattr(self, name)}")


def _require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # an optional extra
        raise ConfigError(
            '--engine ray: Ray is not installed (pip install -e ".[ray]", i.e. ray[data]>=2.47)'
        ) from exc
    return ray


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Ray for the duration of a job: an already initialised Ray is used as is (and left running);
    otherwise a bounded local one is started (or ``options.address`` joined) and shut down after."""
    ray = _require_ray()
    if ray.is_initialized():
        with _job_data_context(ray, options):
            yield ray
        return
    if options.address:
        ray.init(address=options.address, ignore_reinit_error=True, log_to_driver=False)
    else:
        set_default(RAY_ENABLE_UV_RUN_RUNTIME_ENV, "0")
        ray.init(
            num_cpus=options.num_cpus,
            include_dashboard=False,
            object_store_memory=options.object_store_mb * 1024 * 1024,
            log_to_driver=False,
        )
    try:
        with _job_data_context(ray, options):
            yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _job_data_context(ray: Any, options: RayOptions) -> Iterator[None]:
    """Ray Data's settings for one job, the caller's restored after: no progress bars, and the actor
    pool starts only once every actor is up (otherwise the first actors up take all the shards and a
    node joins after the work is gone), also where the caller initialised Ray itself."""
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.wait_for_min_actors_s)
    ctx.enable_progress_bars = False
    ctx.wait_for_min_actors_s = options.actor_wait_s
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.wait_for_min_actors_s = saved


@contextlib.contextmanager
def job_failures(what: str) -> Iterator[None]:
    """Ray's failures of a job (a node lost mid-job, actors that cannot be placed, a worker killed) as one
    :class:`~clicks2intent.errors.ClusterError` line; the job's output is left as it was (its writer is
    atomic). Errors of our own (bad input) pass through unchanged."""
    ray = _require_ray()
    try:
        yield
    except Clicks2IntentError:
        raise
    except (ray.exceptions.RayError, TimeoutError, ConnectionError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ClusterError(
            f"{what} on Ray did not finish, nothing written: {type(err).__name__}: {first}"
        ) from None


def actor_cpus(options: RayOptions, actors: int | None = None) -> float:
    """CPUs each pool actor reserves. On a local Ray, the actors together leave one CPU free: the
    read, shard and shuffle tasks need a whole one, and a pool holding every CPU deadlocks the job
    (a local Ray with num_cpus=2 and two 1-CPU actors never finished)."""
    n = actors or options.actors
    if options.address:
        return 1.0
    return max(0.1, (options.num_cpus - 1) / n) if options.num_cpus > 1 else 0.5 / n


# --- embedding --------------------------------------------------------------------------------------


class _EmbedActor:
    """One encoder per actor, loaded once; each call embeds whole sessions (one shard).

    The runtime is ``c2i embed``'s: ONNX Runtime on CPU when the encoder dir has a current export (an
    actor then imports neither torch nor pandas), else the eager torch model. Each output batch carries
    the node it ran on (:data:`NODE`), which the driver counts and drops."""

    def __init__(
        self, encoder_dir: str, batch_size: int, device: str | None, threads: int, runtime: str = "auto"
    ) -> None:
        from clicks2intent.encoder.runtime import select_runtime

        self.embedder: Any = select_runtime(
            encoder_dir, runtime, device, batch_size=batch_size, threads=threads
        )
        if self.embedder is None:
            import torch

            from clicks2intent.encoder.embed import SessionEmbedder

            torch.set_num_threads(threads)
            self.embedder = SessionEmbedder.load(
                encoder_dir, device=device, batch_size=batch_size, online=False
            )
        self.node = _node_id()

    def __call__(self, table: pa.Table) -> pa.Table:
        from clicks2intent.encoder.pipeline import OUTPUT_SCHEMA, embeddings_table

        if SHARD in table.column_names:
            table = table.drop_columns([SHARD])
        if table.num_rows == 0:
            out = OUTPUT_SCHEMA.empty_table()
        else:
            arrays = self.embedder.featurise(table)
            out = embeddings_table(arrays, self.embedder.embed_arrays(arrays))
        return out.append_column(NODE, pa.array([self.node] * out.num_rows, pa.string()))


def _node_id() -> str:
    """The Ray node this worker runs on (hex id)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _add_shard(table: pa.Table, n_shards: int, channel: str | None) -> pa.Table:
    """Keep ``channel``'s events and tag each with its session's shard (a stable hash)."""
    from clicks2intent.encoder.embed import filter_channel
    from clicks2intent.names import columns as C

    table = filter_channel(table, channel)
    ids = table[C.SESSION_ID].combine_chunks().cast(pa.string()).dictionary_encode()
    uniq = ids.dictionary.to_numpy(zero_copy_only=False).astype(object)
    shard_of_unique = (pd.util.hash_array(uniq) % np.uint64(n_shards)).astype(np.int64)
    shard = shard_of_unique[ids.indices.to_numpy(zero_copy_only=False)]
    return table.append_column(SHARD, pa.array(shard, pa.int64()))


def _count_events(path: Path, channel: str | None) -> int:
    from clicks2intent.names import columns as C

    if channel is None:
        return pq.ParquetFile(path).metadata.num_rows
    col = pq.read_table(path, columns=[C.CHANNEL])[C.CHANNEL]
    return int(pc.sum(pc.fill_null(pc.equal(col, channel), False)).as_py() or 0)


def ray_embed_file(
    encoder_dir: str | Path,
    events_path: str | Path,
    out_path: str | Path,
    *,
    batch_size: int = 1024,
    channel: str | None = None,
    device: str | None = None,
    ray: RayOptions | None = None,
    runtime: str = "auto",
) -> Any:
    """:func:`~clicks2intent.encoder.embed.embed_file` on Ray Data; returns its ``EmbedStats`` (with the
    sessions each Ray node embedded in ``nodes``).

    Rows come out grouped by shard (the single-process job groups them by partition): compare by
    session id, not by position. A job Ray cannot finish (a node lost, actors not placed within
    ``actor_wait_s``) is one :class:`~clicks2intent.errors.ClusterError` line; the output is untouched.
    """
    from clicks2intent.encoder.embed import OUTPUT_SCHEMA, EmbedStats, input_columns

    options = ray or RayOptions()
    start = time.perf_counter()
    events_path, out_path = Path(events_path), Path(out_path)
    if not (Path(encoder_dir) / CHECKPOINT_FILE).exists():
        raise ArtifactError(
            f"encoder checkpoint not found: {Path(encoder_dir) / CHECKPOINT_FILE} (train one with c2i train-encoder)"
        )
    columns = input_columns(events_path)
    n_events = _count_events(events_path, channel)
    # At least 4 shards per actor: an actor takes up to 2 calls at once, so with one shard each the
    # first actors up took them all (on 3 nodes, one node embedded nothing).
    n_shards = max(4 * options.actors, math.ceil(max(n_events, 1) / options.rows_per_shard))
    n_sessions = 0
    nodes: Counter[str] = Counter()
    with (
        atomic_output(out_path) as tmp_out,  # one writer, renamed when done
        ray_session(options) as rt,
        job_failures("c2i embed"),
    ):
        threads = 1  # one thread per actor: the pool is the parallelism
        args = (str(Path(encoder_dir).resolve()), batch_size, device, threads, runtime)
        compute = rt.data.ActorPoolStrategy(size=options.actors)
        if n_events <= options.driver_read_rows:
            # Read and shard here (one Arrow read): a Ray Data hash shuffle of the events cost many
            # times the embedding itself (docs/decisions/0012-features-and-feast.md).
            table = _add_shard(pq.read_table(events_path, columns=columns), n_shards, channel)
            shards = [table.filter(pc.equal(table[SHARD], k)) for k in range(n_shards)]
            ds = rt.data.from_arrow([t for t in shards if t.num_rows]).map_batches(
                _EmbedActor, batch_size=None, batch_format="pyarrow", fn_constructor_args=args,
                compute=compute, num_cpus=actor_cpus(options),
            )  # fmt: skip
        else:  # bigger than the driver should hold: read on the cluster, group by shard there
            ds = (
                rt.data.read_parquet(str(events_path.resolve()), columns=columns)
                .map_batches(_add_shard, batch_format="pyarrow", fn_args=(n_shards, channel))
                .groupby(SHARD, num_partitions=n_shards)
                .map_groups(
                    _EmbedActor,
                    batch_format="pyarrow",
                    fn_constructor_args=args,
                    compute=compute,
                    num_cpus=actor_cpus(options),
                )  # fmt: skip
            )
        with pq.ParquetWriter(tmp_out, OUTPUT_SCHEMA, use_dictionary=False) as writer:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                if batch.num_rows:
                    nodes.update(batch[NODE].to_pylist())
                    writer.write_table(batch.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA))
                    n_sessions += batch.num_rows
    seconds = time.perf_counter() - start
    logger.info(
        "ray embed: %d sessions, %d shards, %d actors, %.1f s; sessions per node: %s",
        n_sessions, n_shards, options.actors, seconds, dict(nodes),
    )  # fmt: skip
    return EmbedStats(n_events, n_sessions, n_shards, seconds, [], {"ray": seconds}, dict(nodes))


# --- labelling --------------------------------------------------------------------------------------


class _LabelActor:
    """One LLM client per actor (same cache file, same ledger table); labels a batch of summaries."""

    def __init__(
        self,
        settings: Any,
        retry_failed: bool,
        taxonomy: Any,
        shortlist_k: int | None,
        sure_ratio: float | None,
        recency: float,
    ) -> None:
        from clicks2intent.intent.llm.client import LLMClient

        self.client = LLMClient(settings, retry_failed=retry_failed)
        self.taxonomy = taxonomy
        self.kwargs = {"sure_ratio": sure_ratio, "recency": recency}
        self.shortlist_k = shortlist_k

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from clicks2intent.intent.labelling import label_sessions

        before = self.client.ledger.to_dict()
        labels = label_sessions(
            batch.drop(columns=[ORDER]), self.taxonomy, self.client, self.shortlist_k, False, **self.kwargs
        )
        after = self.client.ledger.to_dict()
        delta = {k: after[k] - before[k] for k in _LEDGER_COUNTS}
        delta["outcomes"] = dict(Counter(after["outcomes"]) - Counter(before["outcomes"]))
        labels[ORDER] = batch[ORDER].to_numpy()
        labels[LEDGER] = [json.dumps(delta)] + [None] * (len(labels) - 1)
        labels[NODE] = _node_id()
        return labels


def _sum_ledgers(values: list[str]) -> dict[str, Any]:
    total: dict[str, Any] = dict.fromkeys(_LEDGER_COUNTS, 0)
    outcomes: Counter = Counter()
    for text in values:
        part = json.loads(text)
        for k in _LEDGER_COUNTS:
            total[k] += int(part[k])
        outcomes.update(part["outcomes"])
    total["outcomes"] = dict(sorted(outcomes.items()))
    total["total_tokens"] = total["prompt_tokens"] + total["completion_tokens"]
    return total


def _ray_label_frame(
    summaries: pd.DataFrame,
    settings: Any,
    config: Any,
    taxonomy: Any,
    shortlist_k: int | None,
    options: RayOptions,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Label ``summaries`` on an actor pool; (labels in the summaries' order, the summed ledger)."""
    from clicks2intent.intent.labelling import LABEL_COLUMNS

    actors = max(1, min(options.actors, settings.concurrency))
    cache = (
        None if settings.cache_path is None else Path(settings.cache_path).resolve()
    )  # workers' cwd differs
    per_actor = dataclasses.replace(
        settings, concurrency=max(1, settings.concurrency // actors), cache_path=cache
    )
    frame = summaries.reset_index(drop=True).copy()
    frame[ORDER] = np.arange(len(frame), dtype=np.int64)
    blocks = max(1, min(len(frame), 4 * actors))  # several blocks, so every actor gets work
    batch = max(1, math.ceil(len(frame) / blocks))
    with ray_session(options) as rt, job_failures("c2i taxonomy label"):
        ds = rt.data.from_pandas(frame, override_num_blocks=blocks).map_batches(
            _LabelActor,
            batch_format="pandas",
            batch_size=batch,
            fn_constructor_args=(
                per_actor,
                config.llm.retry_failed,
                taxonomy,
                shortlist_k,
                config.sure_ratio or None,
                config.recency,
            ),
            compute=rt.data.ActorPoolStrategy(size=actors),
            num_cpus=actor_cpus(options, actors),
        )
        out = ds.to_pandas()
    out = out.sort_values(ORDER, kind="stable").reset_index(drop=True)
    ledger = _sum_ledgers([v for v in out[LEDGER] if isinstance(v, str)])
    ledger["sessions_per_node"] = {str(k): int(v) for k, v in out[NODE].value_counts().sort_index().items()}
    labels = out[list(LABEL_COLUMNS)].astype(object).where(out[list(LABEL_COLUMNS)].notna(), None)
    return labels, ledger


def ray_run_labelling(config: Any, ray: RayOptions | None = None) -> Any:
    """:func:`~clicks2intent.intent.labelling.run_labelling` with the labelling on Ray actors.

    Same sample, summaries, prompts, cache and output files (labels parquet + report JSON with the
    same keys, ``engine: ray`` added); returns the intent stage's ``LabellingRun``.
    """
    from clicks2intent.data.contract import read_events
    from clicks2intent.intent import labelling as L
    from clicks2intent.intent.llm.server import llm_settings
    from clicks2intent.intent.taxonomy import STATUS_APPROVED, Taxonomy

    options = ray or RayOptions()
    taxonomy = Taxonomy.load(config.taxonomy)
    if config.require_approved and taxonomy.status != STATUS_APPROVED:
        raise ConfigError(
            f"{config.taxonomy} is {taxonomy.status}, and --require-approved was given: approve it first"
        )
    use_shortlist = config.shortlist == "on" or (
        config.shortlist == "auto" and config.llm.uses_embedded_server
    )
    shortlist_k = config.shortlist_k if use_shortlist else None
    summaries = L.summaries_to_label(read_events(config.events), taxonomy, config.sample, config.seed)
    with exclusive(config.out), llm_settings(config.llm) as settings:
        t0 = time.perf_counter()
        labels, ledger = _ray_label_frame(summaries, settings, config, taxonomy, shortlist_k, options)
        per_node = ledger.pop("sessions_per_node")
        seconds = time.perf_counter() - t0
        model = settings.model
        report = L.labelling_report(labels, config, taxonomy, model, shortlist_k, seconds, ledger)
        report["engine"] = "ray"
        report["ray_actors"] = max(1, min(options.actors, settings.concurrency))
        report["ray_sessions_per_node"] = per_node
        L.write_run(labels, report, config)
    return L.LabellingRun(labels, report, taxonomy, seconds)


# --- where a job ran ----------------------------------------------------------------------------------


def task_counts_by_node() -> dict[str, Counter[str]]:
    """Per Ray node (hex id): how many tasks of each name the cluster has run so far, from the GCS's task
    events (this process must be connected: ``ray.init(address=…)``). Diff two calls around a job to see
    where it ran — Feast's Ray engine included, whose tasks carry no marker of ours.

    Ray's public state API (``ray.util.state.list_tasks``) needs the dashboard (``ray[default]``), which
    the ``ray`` extra does not install; the GCS's own task events are read instead (``ray._private``:
    a benchmark and test helper, no job depends on it)."""
    ray = _require_ray()
    from ray._private.state import state

    if not ray.is_initialized():
        raise ConfigError("task_counts_by_node: connect to the cluster first (ray.init(address=...))")
    out: dict[str, Counter[str]] = {}
    for event in state._get_all_task_events():
        node = event.state_updates.node_id.hex() if event.state_updates.node_id else ""
        if node and event.task_info.name:
            out.setdefault(node, Counter())[event.task_info.name] += 1
    return out
