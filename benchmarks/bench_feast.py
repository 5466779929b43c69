"""Feast benchmark: materialisation throughput of 64-d embeddings and online read latency, SQLite vs Redis.

For each online store (SQLite embedded default; Redis + SQL registry on PostgreSQL, the production
config) it measures, in one run on the same synthetic sources:

* materialisation rows/s of the ``session_intent`` view (64-d ``Array(Float32)`` embedding + label +
  confidence + taxonomy version per session);
* ``get_online_features`` p50/p99 for the ``tile_ranker_v1`` feature service (customer profile +
  customer web intent + the ``tile_affinity`` on-demand view over 10 candidate tiles), 1 and 20 rows;
* the same two feature views read WITHOUT the on-demand view (``get_online_features`` on feature refs);
* the bare online-store read of the same keys (``OnlineStore.online_read`` of both views), i.e. what
  Feast adds on top of the store itself.

The three read variants are called round-robin, so a burst of load on a shared machine hits them alike.

    python benchmarks/bench_feast.py [--sessions 20000] [--customers 2000] [--iters 300] [--stores sqlite,redis]
    python benchmarks/bench_feast.py --engines [--sessions 20000] [--customers 4000] [--rows 5000]

``--engines``: the offline side instead, on one set of sources in one run: the file offline store with
Feast's local engine (the original path) against DuckDB + the Arrow engine (the default), DuckDB + the
Ray compute engine (``feature_store.ray.yaml``'s) and Feast's Ray offline store + Ray engine, each
materialising into SQLite and Redis (rows/s, rows really readable online, the empty window) and
building both training sets (entity rows/s, values equal to the original path's). The work is
benchmarks/bench_offline.py's (``--engine-configs`` picks its configurations).

The synthetic sources have the exact schemas ``c2i features build`` writes for the simulated bank's world
declaration (random unit embeddings, profile columns by their declared kinds, the declaration written
beside them); nothing here depends on model quality. A store whose server does not answer is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clicks2intent.data.simulator import simulator_world
from clicks2intent.data.world import World, write_world
from clicks2intent.features import build as F
from clicks2intent.features import definitions as fo
from clicks2intent.features import store as FS
from clicks2intent.features import transforms as T
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names.paths import FEATURE_FILES, WORLD_FILE, ArtifactLayout

T0 = pd.Timestamp("2024-05-01", tz="UTC")


def write_sources(
    out: Path, n_sessions: int, n_customers: int, dim: int, world: World, seed: int = 0
) -> None:
    """Synthetic feature sources of ``world`` with the job's schemas (one row per entity; no anchors
    needed here) and the declaration beside them."""
    rng = np.random.default_rng(seed)
    schemas = F.source_schemas(world)
    out.mkdir(parents=True, exist_ok=True)

    def unit(n: int, d: int) -> list[np.ndarray]:
        x = rng.normal(size=(n, d)).astype(np.float32)
        return list(x / np.linalg.norm(x, axis=1, keepdims=True))

    def write(name: str, cols: dict[str, Any]) -> None:
        table = pa.table(
            {
                f.name: pa.array(cols[f.name], f.type)
                if f.name in cols
                else pa.nulls(len(next(iter(cols.values()))), f.type)
                for f in schemas[name]
            }
        )
        pq.write_table(table, out / FEATURE_FILES[name])

    times = T0 + pd.to_timedelta(rng.integers(0, 86_400 * 30, n_sessions), unit="s")
    labels = np.array([f"L{i:02d}" for i in range(12)], dtype=object)
    write(
        "session_intent",
        {
            C.SESSION_ID: [f"s{i:08d}" for i in range(n_sessions)],
            C.EVENT_TIMESTAMP: times,
            C.EMBEDDING: unit(n_sessions, dim),
            C.INTENT_LABEL: labels[rng.integers(0, 12, n_sessions)],
            C.INTENT_CONFIDENCE: rng.uniform(0.3, 1, n_sessions),
            C.TAXONOMY_VERSION: ["bench"] * n_sessions,
        },  # fmt: skip
    )
    customers = [f"c{i:07d}" for i in range(n_customers)]
    ctimes = T0 + pd.to_timedelta(rng.integers(0, 86_400 * 30, n_customers), unit="s")
    dist = rng.dirichlet(np.ones(12), n_customers).astype(np.float32)
    write(
        "customer_web_intent",
        {
            C.CUSTOMER_ID: customers,
            C.EVENT_TIMESTAMP: ctimes,
            N.CUSTOMER_INTENT_LABEL: labels[dist.argmax(1)],
            N.CUSTOMER_INTENT_CONFIDENCE: dist.max(1).astype(float),
            N.CUSTOMER_INTENT_DECAYED: list(dist),
            N.CUSTOMER_WEB_EMBEDDING: unit(n_customers, dim),
            N.CUSTOMER_LINKED_VISITORS: rng.integers(1, 3, n_customers),
            N.CUSTOMER_WEB_SESSIONS_30D: rng.integers(0, 6, n_customers),
        },  # fmt: skip
    )
    profile = {C.CUSTOMER_ID: customers, C.EVENT_TIMESTAMP: [T0 - pd.Timedelta(days=1)] * n_customers}
    by_kind = {  # a value per declared kind of the world's profile columns
        "int": lambda: rng.integers(0, 90, n_customers),
        "float": lambda: rng.uniform(1, 200, n_customers),
        "bool": lambda: rng.random(n_customers) < 0.3,
        "string": lambda: rng.choice(["a", "b", "c"], n_customers),
    }
    profile |= {name: by_kind[kind]() for name, kind in world.profile.items()}
    write("customer_profile", profile)
    one = {C.EVENT_TIMESTAMP: [T0]}
    write("session_activity", {C.SESSION_ID: ["s00000000"], **one})
    write("visitor_web_intent", {C.VISITOR_ID: ["v0"], **one})
    pq.write_table(
        pa.table(
            {
                T.TILE_ID: list(world.tiles),
                T.PROTOTYPE: pa.array(unit(len(world.tiles), dim), pa.list_(pa.float32())),
                T.PROTOTYPE_SESSIONS: [1] * len(world.tiles),
            }
        ),
        out / FEATURE_FILES["tile_prototypes"],
    )
    write_world(world, out / WORLD_FILE)


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def timed(fns: dict[str, Any], iters: int, warmup: int = 20) -> dict[str, dict[str, float]]:
    """p50/p99 of each function, calls interleaved round-robin so load bursts hit every variant alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t)
    return {name: percentiles(s) for name, s in samples.items()}


def bench_store(
    kind: str, root: Path, features_dir: Path, world: World, args: argparse.Namespace
) -> dict[str, Any]:
    """Apply, materialise and read one store; returns its figures."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    repo = root / f"repo_{kind}"
    repo.mkdir()
    if kind == "sqlite":
        cfg = {"project": "c2i_bench", "provider": "local", "registry": "data/registry.db",
               "online_store": {"type": "sqlite", "path": "data/online_store.db"}, "offline_store": {"type": "file"},
               "entity_key_serialization_version": 3}  # fmt: skip
    else:
        cfg = FS.production_config(project=f"c2i_bench_{uuid.uuid4().hex[:8]}")
    FS.write_config(repo / "feature_store.yaml", cfg)
    store = FS.open_store(repo)
    objects = fo.build(
        fo.file_sources(str(features_dir)), embedding_dim=args.dim, world=world, artifacts_dir=str(root)
    )
    # The in-flight view needs a trained encoder; it is not part of tile_ranker_v1 and not measured here.
    store.apply([o for o in objects.all() if o is not objects.inflight_session_intent])
    result: dict[str, Any] = {"store": kind, "project": cfg["project"]}
    try:
        t = time.perf_counter()
        store.materialize(
            T0 - pd.Timedelta(days=2), T0 + pd.Timedelta(days=31), feature_views=[N.SESSION_INTENT]
        )
        secs = time.perf_counter() - t
        result["materialize_session_intent"] = {
            "rows": args.sessions,
            "seconds": secs,
            "rows_per_s": args.sessions / secs,
            "dim": args.dim,
        }
        t = time.perf_counter()
        store.materialize(
            T0 - pd.Timedelta(days=2),
            T0 + pd.Timedelta(days=31),
            feature_views=[N.CUSTOMER_WEB_INTENT, N.CUSTOMER_PROFILE],
        )
        result["materialize_customer_views"] = {
            "rows": 2 * args.customers,
            "seconds": time.perf_counter() - t,
        }

        service = store.get_feature_service(N.TILE_RANKER_V1)
        refs = [
            f"{p.name}:{f.name}"
            for p in service.feature_view_projections
            if p.name != N.TILE_AFFINITY_VIEW
            for f in p.features
        ]
        provider = store._get_provider()
        views = [store.get_feature_view(N.CUSTOMER_PROFILE), store.get_feature_view(N.CUSTOMER_WEB_INTENT)]
        rng = np.random.default_rng(1)
        for n_rows in (1, 20):
            ids = [f"c{i:07d}" for i in rng.choice(args.customers, n_rows, replace=False)]
            rows = [{C.CUSTOMER_ID: c, N.CANDIDATE_TILES: list(world.tiles)} for c in ids]
            plain_rows = [{C.CUSTOMER_ID: c} for c in ids]
            keys = [EntityKey(join_keys=[C.CUSTOMER_ID], entity_values=[Value(string_val=c)]) for c in ids]
            check = store.get_online_features(features=service, entity_rows=rows).to_dict()
            assert all(v is not None for v in check[N.CUSTOMER_WEB_EMBEDDING]), "materialised rows missing"

            def bare(keys: list[Any] = keys) -> None:
                for view in views:
                    provider.online_read(config=store.config, table=view, entity_keys=keys)

            result[f"rows_{n_rows}"] = timed(
                {
                    "get_online_features_tile_ranker_v1": lambda rows=rows: store.get_online_features(
                        features=service, entity_rows=rows
                    ),
                    "get_online_features_without_odfv": lambda r=plain_rows: store.get_online_features(
                        features=refs, entity_rows=r
                    ),
                    "bare_online_read_2_views": bare,
                },
                args.iters,
            )
    finally:
        if kind != "sqlite":
            FS.drop_project(store)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=20_000, help="session_intent rows to materialise")
    p.add_argument("--customers", type=int, default=2_000, help="customers in the online store")
    p.add_argument("--dim", type=int, default=64, help="embedding dimension")
    p.add_argument("--iters", type=int, default=300, help="timed calls per latency figure")
    p.add_argument("--stores", default="sqlite,redis", help="comma list of sqlite, redis")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--engines", action="store_true", help="offline stores x batch engines (see above)")
    p.add_argument("--engine-configs", default="file,duckdb+arrow,duckdb+ray,ray", help="with --engines")
    p.add_argument("--rows", type=int, default=5_000, help="with --engines: entity rows per training set")
    p.add_argument("--ray-cpus", type=int, default=2, help="with --engines: CPUs of the in-process Ray")
    args = p.parse_args(argv)
    if args.engines:
        return _engines(args)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from offline_data import write_untrained_encoder

    root = Path(tempfile.mkdtemp(prefix="c2i-bench-feast-"))
    results: list[dict[str, Any]] = []
    try:
        features_dir = ArtifactLayout(root).features
        world = simulator_world()
        write_sources(features_dir, args.sessions, args.customers, args.dim, world)
        write_untrained_encoder(root, args.dim, world)  # session_affinity (conversion_v1) reads its head
        for kind in [s.strip() for s in args.stores.split(",") if s.strip()]:
            if kind == "redis":
                reasons = [r for r in (FS.service_available("redis"), FS.service_available("postgres")) if r]
                if reasons:
                    print(f"redis: skipped ({'; '.join(reasons)})")
                    continue
            elif kind != "sqlite":
                raise SystemExit(f"--stores: unknown store {kind!r} (sqlite, redis)")
            results.append(bench_store(kind, root, features_dir, world, args))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    import feast

    print(
        f"\nFeast {feast.__version__}; {args.sessions} sessions x {args.dim}-d embedding; {args.customers} customers; {args.iters} calls per figure"
    )
    for r in results:
        m = r["materialize_session_intent"]
        label = "SQLite (embedded default)" if r["store"] == "sqlite" else "Redis + SQL registry (PostgreSQL)"
        print(f"\n{label}")
        print(
            f"  materialize session_intent: {m['rows']} rows in {m['seconds']:.2f} s = {m['rows_per_s']:,.0f} rows/s"
        )
        for n in (1, 20):
            for name, figs in r[f"rows_{n}"].items():
                print(
                    f"  {n:>2} row(s)  {name:<38} p50 {figs['p50_ms']:7.3f} ms   p99 {figs['p99_ms']:7.3f} ms"
                )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"feast": feast.__version__, "args": vars(args), "results": results}, indent=2) + "\n"
        )
    return 0


def _engines(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_offline as BO

    ns = argparse.Namespace(sessions=args.sessions, customers=args.customers, rows=args.rows, dim=args.dim,
                            configs=args.engine_configs, redis=FS.service_available("redis") is None,
                            no_retrieval=False, ray_cpus=args.ray_cpus, artifacts=None, json=args.json)  # fmt: skip
    results = BO.run(ns)
    BO.report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
