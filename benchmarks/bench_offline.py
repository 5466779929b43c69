"""Offline-side benchmark: materialisation and point-in-time retrieval on Feast's engines, one run.

For each configuration (offline store × batch engine) on the SAME sources it measures:

* ``materialize`` of the 64-d ``session_intent`` view into SQLite (and Redis with ``--redis``): rows/s;
* the empty incremental window (every view, a window with no new rows): seconds, in process;
* ``get_historical_features`` of ``tile_ranker_v1`` (incl. the ``tile_affinity`` on-demand view) and
  ``conversion_v1`` for ``--rows`` entity rows each (a tenth repeat another row's key and time), via
  :func:`clicks2intent.models.training_sets.historical_features`: entity rows/s, and whether the
  values equal the current path's (file store) row for row.

The first configuration is the current path (file offline store, Feast's local engine); every figure is
printed beside it. ``uptime`` load is printed with the figures: on a shared machine they move with it.

    python benchmarks/bench_offline.py [--sessions 100000] [--customers 20000] [--rows 30000]
        [--configs file,duckdb,file+arrow,duckdb+arrow,ray] [--redis] [--artifacts DIR] [--json out.json]

``ray`` is Feast's Ray offline store + Ray compute engine through ``engines.RayOfflineStore`` (its
empty-window and null-timestamp reads fixed) on the same sources; ``feastray`` is Feast's own
``type: ray`` on a copy without the anchor rows (its empty window fails).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from offline_data import entity_rows, write_sources, write_untrained_encoder  # noqa: E402

from clicks2intent.data.world import World, load_world  # noqa: E402
from clicks2intent.features import definitions as fo  # noqa: E402
from clicks2intent.features import store as FS  # noqa: E402
from clicks2intent.models import training_sets as TS  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402
from clicks2intent.names import features as N  # noqa: E402
from clicks2intent.names.paths import FEATURE_FILES, WORLD_FILE, ArtifactLayout  # noqa: E402

START, END = pd.Timestamp("2000-01-01", tz="UTC"), pd.Timestamp("2030-01-01", tz="UTC")
CONFIGS = ("file", "duckdb", "file+arrow", "duckdb+arrow", "duckdb+ray", "ray", "feastray", "duckdb+feastray")


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def config(
    name: str, online: dict[str, Any], project: str, ray_cpus: int, storage: str | None = None
) -> dict[str, Any]:
    """A feature store YAML dict for one benchmark configuration (``storage``: the Ray offline store's
    ``storage_path``, where its historical retrieval stages results)."""
    offline, _, engine = name.partition("+")
    cfg: dict[str, Any] = {"project": project, "provider": "local", "registry": "data/registry.db",
                           "online_store": online, "entity_key_serialization_version": 3}  # fmt: skip
    ray_conf = {"num_cpus": ray_cpus, "include_dashboard": False, "ignore_reinit_error": True}
    # Feast's ray.engine with its materialisation ttl filter fixed (engines.RayComputeEngine); "feastray"
    # is Feast's own, which writes nothing for rows older than now - ttl (the synthetic 2024 sessions).
    ray_engine = {"type": "clicks2intent.features.engines.RayComputeEngine", "ray_conf": ray_conf,
                  "max_workers": ray_cpus, "write_concurrency": 1}  # fmt: skip
    if engine == "feastray":
        cfg["batch_engine"] = ray_engine | {"type": "ray.engine"}
    if offline in ("ray", "feastray"):  # "ray": engines.RayOfflineStore (empty window, anchors fixed)
        ray_store = "clicks2intent.features.engines.RayOfflineStore" if offline == "ray" else "ray"
        cfg["offline_store"] = {"type": ray_store, "ray_conf": ray_conf, "storage_path": storage}
        cfg["batch_engine"] = ray_engine
    else:
        cfg["offline_store"] = {"type": offline}
    if engine == "ray":
        cfg["batch_engine"] = ray_engine
    if engine == "arrow":
        cfg["batch_engine"] = {"type": "clicks2intent.features.engines.ArrowComputeEngine"}
    return cfg


def open_config(root: Path, name: str, kind: str, features_dir: Path, args: argparse.Namespace):
    repo = root / f"repo_{name.replace('+', '_')}_{kind}"
    repo.mkdir()
    project = f"c2i_bo_{uuid.uuid4().hex[:8]}"
    online = (
        {"type": "sqlite", "path": "data/online_store.db"}
        if kind == "sqlite"
        else FS.production_config(project=project)["online_store"]
    )
    cfg = config(name, online, project, args.ray_cpus, storage=str(repo / "ray_storage"))
    FS.write_config(repo / "feature_store.yaml", cfg)
    store = FS.open_store(repo)
    world = load_world(features_dir / WORLD_FILE)  # the declaration the sources were built with
    if name == "feastray":  # Feast's own Ray store fails on the null-timestamp anchor rows: none here
        features_dir = without_anchors(features_dir, root / "features_no_anchors")
    objects = fo.build(
        fo.file_sources(str(features_dir)), embedding_dim=args.dim, world=world, artifacts_dir=str(root)
    )
    store.apply([o for o in objects.all() if o is not objects.inflight_session_intent])
    return store


def without_anchors(features_dir: Path, out: Path) -> Path:
    """A copy of the sources without the null-timestamp anchor rows (once)."""
    if not out.is_dir():
        out.mkdir(parents=True)
        for path in features_dir.glob("*.parquet"):
            table = pq.read_table(path)
            if C.EVENT_TIMESTAMP in table.column_names:
                table = table.filter(table.column(C.EVENT_TIMESTAMP).is_valid())
            pq.write_table(table, out / path.name)
        shutil.copy2(features_dir / WORLD_FILE, out / WORLD_FILE)
    return out


def _first_line(err: BaseException) -> str:
    """The error's first line that says something (Ray's task errors open with an ANSI-coloured
    task name and carry the cause further down)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    causes = [ln for ln in lines if ln.split(":")[0].endswith(("Error", "Exception"))]
    return (causes[-1] if causes else lines[0] if lines else "")[:300]


def timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_materialize(store: Any, n_sessions: int, world: World) -> dict[str, Any]:
    session_intent = world.feast_name(N.SESSION_INTENT)  # the view's name with the world's Feast prefix
    cpu = time.process_time()
    _, secs = timed(lambda: store.materialize(START, END, feature_views=[session_intent]))
    cpu = time.process_time() - cpu  # this process only (not a Redis server or Ray workers)
    out: dict[str, Any] = {"rows": n_sessions, "seconds": secs, "rows_per_s": n_sessions / secs,
                           "rows_per_cpu_s": n_sessions / max(cpu, 1e-9), "load": load()}  # fmt: skip
    # Rows that really reached the online store (a materialisation can "succeed" writing nothing).
    path = store.get_feature_view(session_intent).batch_source.path
    ids = pq.read_table(path, columns=[C.SESSION_ID]).column(0)
    sample = ids.unique().to_pylist()[:: max(1, len(ids) // 400)][:200]
    got = store.get_online_features(
        features=[f"{session_intent}:{C.EMBEDDING}"], entity_rows=[{C.SESSION_ID: i} for i in sample]
    ).to_dict()[C.EMBEDDING]
    out["online_readable"] = f"{sum(v is not None for v in got)}/{len(sample)}"
    views = [v.name for v in store.list_feature_views()]
    steps = {
        "other_views_seconds": lambda: store.materialize(
            START, END, feature_views=[v for v in views if v != session_intent]
        ),
        # Empty incremental window: every view, nothing new since END.
        "empty_window_seconds": lambda: store.materialize(
            END, END + pd.Timedelta(hours=1), feature_views=views
        ),
    }
    for name, fn in steps.items():
        try:
            _, out[name] = timed(fn)
        except Exception as e:  # reported beside the figures that did work
            out[name] = float("nan")
            out[name.replace("_seconds", "_error")] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return out


def bench_retrieval(store: Any, entities: dict[str, pd.DataFrame], world: World) -> dict[str, Any]:
    out: dict[str, Any] = {}
    frames: dict[str, pd.DataFrame] = {}
    request = TS.world_request_values(world)  # every tile a candidate, as in training
    for task, service in (("tile_ranking", N.TILE_RANKER_V1), ("conversion", N.CONVERSION_V1)):
        ent = entities[task]
        service = world.feast_name(service)
        frame, secs = timed(
            lambda ent=ent, service=service: TS.historical_features(store, ent, service, request)
        )
        out[task] = {"rows": len(ent), "seconds": secs, "rows_per_s": len(ent) / secs, "load": load()}
        frames[task] = frame
    return {"figures": out, "frames": frames}


def same_values(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """ "equal" or the first difference (column, row) between two training frames."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} rows"
    cols = sorted(set(a.columns) & set(b.columns))
    missing = sorted(set(a.columns) ^ set(b.columns))
    for c in cols:
        x, y = a[c].reset_index(drop=True), b[c].reset_index(drop=True)
        for i in range(len(x)):
            u, v = x.iloc[i], y.iloc[i]
            un = u is None or (isinstance(u, float) and np.isnan(u))
            vn = v is None or (isinstance(v, float) and np.isnan(v))
            if un and vn:
                continue
            if un != vn:
                return f"{c} row {i}: {u!r} vs {v!r}"
            if isinstance(u, (list, np.ndarray)) or isinstance(v, (list, np.ndarray)):
                if any(isinstance(e, str) for e in list(u) + list(v)):
                    if list(u) != list(v):
                        return f"{c} row {i}: {list(u)!r} vs {list(v)!r}"
                elif len(u) != len(v) or not np.allclose(
                    np.asarray(u, float), np.asarray(v, float), equal_nan=True, atol=1e-6
                ):
                    return f"{c} row {i} differs"
            elif isinstance(u, float) or isinstance(v, float):
                if not np.isclose(float(u), float(v), atol=1e-9):
                    return f"{c} row {i}: {u!r} vs {v!r}"
            elif u != v:
                return f"{c} row {i}: {u!r} vs {v!r}"
    return "equal" + (f" (columns only in one: {missing})" if missing else "")


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="c2i-bench-offline-"))
    results: dict[str, Any] = {"configs": {}, "args": vars(args)}
    try:
        features_dir = ArtifactLayout(root).features
        if args.artifacts:
            shutil.copytree(Path(args.artifacts) / "features", features_dir)
            # session_affinity (conversion_v1) reads the encoder's next-event head
            shutil.copytree(Path(args.artifacts) / "encoder", ArtifactLayout(root).encoder)
        else:
            write_sources(features_dir, args.sessions, args.customers, args.dim)
            write_untrained_encoder(root, args.dim, load_world(features_dir / WORLD_FILE))
        stamps = pq.read_table(features_dir / FEATURE_FILES["session_intent"], columns=[C.EVENT_TIMESTAMP])
        n_sessions = stamps.num_rows - stamps.column(0).null_count  # anchors are never materialised
        world = load_world(features_dir / WORLD_FILE)
        entities = entity_rows(features_dir, args.rows)
        if args.artifacts and (Path(args.artifacts) / "data" / "tile_impressions.parquet").is_file():
            entities = {t: TS.read_task_entities(t, Path(args.artifacts) / "data", world) for t in entities}
        results["sessions"], results["entity_rows"] = n_sessions, {t: len(e) for t, e in entities.items()}
        reference: dict[str, pd.DataFrame] | None = None
        kinds = ["sqlite"] + (["redis"] if args.redis else [])
        for name in args.configs.split(","):
            for kind in kinds:
                store = open_config(root, name, kind, features_dir, args)
                try:
                    entry: dict[str, Any] = {"materialize": bench_materialize(store, n_sessions, world)}
                    if kind == "sqlite" and not args.no_retrieval:
                        try:
                            r = bench_retrieval(store, entities, world)
                        except Exception as e:  # kept beside the materialisation figures
                            traceback.print_exc(limit=-6)
                            entry["retrieval_error"] = f"{type(e).__name__}: {_first_line(e)}"
                        else:
                            entry["retrieval"] = r["figures"]
                            reference = reference or r["frames"]
                            entry["retrieval_vs_current"] = {
                                t: same_values(reference[t], r["frames"][t]) for t in r["frames"]
                            }
                except Exception as e:  # a configuration that fails is a result, not a crash
                    traceback.print_exc(limit=-6)
                    entry = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
                finally:
                    if kind != "sqlite":
                        FS.drop_project(store)
                results["configs"][f"{name}/{kind}"] = entry
                print(f"{name}/{kind}: {json.dumps(entry, default=str)}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def report(results: dict[str, Any]) -> None:
    import feast

    print(
        f"\nFeast {feast.__version__}; {results['sessions']} sessions (64-d); entity rows {results['entity_rows']}"
    )
    base = next(iter(results["configs"].values()))
    print(f"{'config':<24}{'mat rows/s':>12}{'x current':>10}{'/cpu-s':>9}{'online':>9}{'empty win s':>12}"
          f"{'tile rows/s':>12}{'conv rows/s':>12}  values vs current   load")  # fmt: skip
    for name, e in results["configs"].items():
        if "error" in e:
            print(f"{name:<24} failed: {e['error']}")
            continue
        m = e["materialize"]
        ratio = m["rows_per_s"] / base["materialize"]["rows_per_s"] if "materialize" in base else float("nan")
        r = e.get("retrieval", {})
        tile = r.get("tile_ranking", {}).get("rows_per_s", float("nan"))
        conv = r.get("conversion", {}).get("rows_per_s", float("nan"))
        same = ",".join(f"{k[:4]}:{v[:40]}" for k, v in e.get("retrieval_vs_current", {}).items())
        if "retrieval_error" in e:
            same = "retrieval failed: " + e["retrieval_error"][:90]
        print(f"{name:<24}{m['rows_per_s']:>12,.0f}{ratio:>10.1f}{m['rows_per_cpu_s']:>9,.0f}{m['online_readable']:>9}"
              f"{m['empty_window_seconds']:>12.2f}"
              f"{tile:>12,.0f}{conv:>12,.0f}  {same or '-':<18} {m['load']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sessions", type=int, default=100_000, help="synthetic web sessions (session_intent rows)"
    )
    p.add_argument("--customers", type=int, default=20_000, help="synthetic customers")
    p.add_argument("--rows", type=int, default=30_000, help="entity rows per task for retrieval")
    p.add_argument("--dim", type=int, default=64, help="embedding dimension")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument(
        "--redis", action="store_true", help="also materialise into Redis (production online store)"
    )
    p.add_argument("--no-retrieval", action="store_true", help="materialisation only")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the in-process Ray cluster")
    p.add_argument("--artifacts", default=None, help="use a demo artifacts dir (features/, data/) instead")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    for name in args.configs.split(","):
        if name not in CONFIGS:
            raise SystemExit(f"--configs: unknown configuration {name!r} ({', '.join(CONFIGS)})")
    if args.redis and (reason := FS.service_available("redis")):
        raise SystemExit(f"--redis: {reason}")
    results = run(args)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
