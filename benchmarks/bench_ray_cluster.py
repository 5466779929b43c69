"""Multi-node Ray, for real: three Ray nodes on this machine, the three Ray jobs on them, where each ran.

    nice -n 10 .venv/bin/python benchmarks/bench_ray_cluster.py --root /tmp/q28/scale/x1 [--kill-only]

``--root`` is a directory ``benchmarks/bench_scaling.py`` filled (its ``artifacts/``, its copy of the
Feast repo and the single-process outputs: ``c2i embed``'s embeddings). A cluster of ``--nodes`` Ray
nodes (``ray.cluster_utils.Cluster``: a head and workers, each its own raylet and object store, on
loopback) runs, each job as its own ``c2i`` / ``feast`` process connected by ``--ray-address``:

1. ``c2i embed --engine ray --ray-actors 3`` against the single-process ``c2i embed`` output;
2. ``c2i taxonomy label --engine ray`` against ``c2i taxonomy label`` (each with a fresh LLM cache, so
   both ask the embedded LLM);
3. ``feast -f feature_store.ray.yaml materialize`` (Feast's Ray compute engine, ``ray_address`` set)
   against the Arrow engine's materialisation of the same window, online store row by row;
4. the node kill: ``c2i embed --engine ray`` again, a worker node SIGKILLed once its actor works; the
   job must finish with the same vectors, or fail with one line and leave no output.

For each job: the tasks each node ran (the GCS's task events, diffed around the job), wall seconds,
the 1-minute load average. Figures go to ``ROOT/ray_cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

VENV_BIN = Path(sys.executable).parent
C2I, FEAST = str(VENV_BIN / "c2i"), str(VENV_BIN / "feast")
REPO = Path(__file__).resolve().parents[1]
DAY = "2024-06-29T00:00:00"
INTERNAL = ("_StatsActor", "_Autoscaling", "ActorLocationTracker", "_UsageCollection", "datasets_stats_actor",
            "AutoscalingCoordinator", "DataUsageCollectionActor")  # fmt: skip


def start_cluster(nodes: int, cpus: int, temp_dir: str) -> object:
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    store = 200 * 2**20
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": cpus, "object_store_memory": store, "include_dashboard": False,
                        "temp_dir": temp_dir},
    )  # fmt: skip
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus, object_store_memory=store)
    cluster.wait_for_nodes()
    return cluster


def snapshot() -> dict[str, Counter]:
    from clicks2intent.features.ray_jobs import task_counts_by_node

    time.sleep(1.5)  # task events reach the GCS within a second
    return task_counts_by_node()


def per_node(before: dict[str, Counter], after: dict[str, Counter], names: dict[str, str]) -> dict[str, dict]:
    out = {}
    for node, counts in after.items():
        diff = counts - before.get(node, Counter())
        job = {k: v for k, v in diff.items() if not k.startswith(INTERNAL)}
        if job:
            out[names.get(node, node[:8])] = {
                "tasks": sum(job.values()),
                "by_name": dict(Counter(job).most_common(4)),
            }
    return out


def run(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.run(argv, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    return rc, time.perf_counter() - t0, log.read_text(errors="replace")


def _vectors(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values("session_id").reset_index(drop=True)


def compare_embeddings(a: Path, b: Path) -> dict:
    x, y = _vectors(a), _vectors(b)
    same_ids = list(x["session_id"]) == list(y["session_id"])
    diff = float(np.abs(np.stack(x["embedding"]) - np.stack(y["embedding"])).max()) if same_ids else None
    return {"sessions": len(x), "same_sessions": same_ids, "same_end_times": bool((x["event_timestamp"] ==
            y["event_timestamp"]).all()) if same_ids else False, "max_abs_diff": diff}  # fmt: skip


def online_rows(db: Path) -> dict[str, set]:
    con = sqlite3.connect(db)
    out = {}
    for (table,) in con.execute("select name from sqlite_master where type='table'"):
        rows = con.execute(f'select * from "{table}"').fetchall()  # either layout: every stored column
        out[table.split("_", 1)[1] if "_" in table else table] = set(rows)
    con.close()
    return out


def repo_copy(root: Path, name: str, yaml: str, ray_address: str | None) -> Path:
    repo = root / name
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "data").mkdir(parents=True)
    shutil.copy2(root / "feature_repo/feature_definitions.py", repo)
    shutil.copy2(root / "feature_repo/.feastignore", repo)
    lines = (REPO / "feature_repo" / yaml).read_text().splitlines()
    if ray_address:  # join the cluster; Ray refuses a local ray_conf (num_cpus) when joining one
        lines = [
            f"  ray_address: {ray_address}" if ln.strip() == "# ray_address: auto" else ln for ln in lines
        ]
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "ray_conf:")
        end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
        del lines[start:end]
    (repo / "feature_store.yaml").write_text("\n".join(lines) + "\n")
    return repo


def kill_when_working(
    cluster: object, victim: object, names: dict[str, str], before: dict[str, Counter], deadline: float
) -> dict:
    """SIGKILL ``victim``'s processes (raylet, object store, workers) once this job's embedding actor
    there has taken a shard (a ``submit`` task newer than ``before``), or at the deadline."""
    from clicks2intent.features.ray_jobs import task_counts_by_node

    node_id = victim.node_id
    key = "MapWorker(MapBatches(_EmbedActor)).submit"
    seen = before.get(node_id, Counter())[key]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < deadline:
        if task_counts_by_node().get(node_id, Counter())[key] > seen:
            break
        time.sleep(0.1)
    cluster.remove_node(victim, allow_graceful=False)
    return {"killed": names.get(node_id, node_id[:8]), "after_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--cpus-per-node", type=int, default=2)
    ap.add_argument("--actors", type=int, default=3)
    ap.add_argument("--label-sample", type=int, default=3000)
    ap.add_argument("--kill-only", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], choices=["embed", "label", "materialize", "kill"])
    args = ap.parse_args()
    import ray

    root = args.root.resolve()
    out = root / "artifacts" / "ray"
    out.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    env = dict(os.environ, C2I_ARTIFACTS=str(root / "artifacts"), OMP_WAIT_POLICY="PASSIVE",
               RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")  # fmt: skip
    results: dict = {"load1_start": os.getloadavg()[0]}
    t0 = time.perf_counter()
    cluster = start_cluster(args.nodes, args.cpus_per_node, "/tmp/q28/ray")
    results["cluster_start_s"] = round(time.perf_counter() - t0, 1)
    ray.init(address=cluster.address, log_to_driver=False)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    head_id = cluster.head_node.node_id
    names = {n["NodeID"]: ("head " if n["NodeID"] == head_id else "worker ") + n["NodeID"][:8] for n in nodes}
    results["nodes"] = {names[n["NodeID"]]: n["Resources"].get("CPU") for n in nodes}
    print(
        f"cluster up in {results['cluster_start_s']} s at {cluster.address}: {results['nodes']}", flush=True
    )
    address = cluster.address
    ev = "artifacts/data/events.parquet"
    ray_flags = ["--engine", "ray", "--ray-address", address, "--ray-actors", str(args.actors)]
    try:
        if not args.kill_only and "embed" not in args.skip:
            before = snapshot()
            load = os.getloadavg()[0]
            rc, s, text = run([C2I, "embed", "--encoder", "artifacts/encoder", "--events", ev, "--channel", "web",
                               "--out", str(out / "embeddings_ray.parquet"), "--quiet", *ray_flags], root, env,
                              logs / "ray_embed.log")  # fmt: skip
            assert rc == 0, text[-2000:]
            results["embed"] = {"seconds": round(s, 1), "load1": load, "tasks_per_node": per_node(before, snapshot(), names),
                                "vs_single_process": compare_embeddings(root / "artifacts/embeddings/session_embeddings.parquet",
                                                                        out / "embeddings_ray.parquet"),
                                "line": text.strip().splitlines()[-1]}  # fmt: skip
            print(json.dumps({"embed": results["embed"]}, indent=1), flush=True)
        if not args.kill_only and "label" not in args.skip:
            label = [C2I, "taxonomy", "label", "--events", ev, "--taxonomy", "artifacts/taxonomy/taxonomy.yaml",
                     "--sample", str(args.label_sample), "--concurrency", str(args.actors)]  # fmt: skip
            for f in out.glob("cache_*.sqlite*"):
                f.unlink()
            rc, s_local, text = run([*label, "--cache", str(out / "cache_local.sqlite"), "--out",
                                     str(out / "labels_local.parquet")], root, env, logs / "label_local.log")  # fmt: skip
            assert rc == 0, text[-2000:]
            before = snapshot()
            load = os.getloadavg()[0]
            rc, s, text = run([*label, "--cache", str(out / "cache_ray.sqlite"), "--out", str(out / "labels_ray.parquet"),
                               *ray_flags], root, env, logs / "label_ray.log")  # fmt: skip
            assert rc == 0, text[-2000:]
            a, b = pd.read_parquet(out / "labels_local.parquet"), pd.read_parquet(out / "labels_ray.parquet")
            rep = json.loads((out / "labels_ray.report.json").read_text())
            results["label"] = {"seconds": round(s, 1), "single_process_seconds": round(s_local, 1), "load1": load,
                                "tasks_per_node": per_node(before, snapshot(), names),
                                "sessions_per_node": {names.get(k, k[:8]): v for k, v in rep["ray_sessions_per_node"].items()},
                                "identical_to_single_process": bool(a.equals(b)), "sessions": len(a),
                                "llm_calls": rep["ledger"]["api_calls"]}  # fmt: skip
            print(json.dumps({"label": results["label"]}, indent=1), flush=True)
        if not args.kill_only and "materialize" not in args.skip:
            arrow = repo_copy(root, "feature_repo_arrow", "feature_store.yaml", None)
            on_ray = repo_copy(root, "feature_repo_ray", "feature_store.ray.yaml", address)
            for repo in (arrow, on_ray):
                rc, _, text = run(
                    [FEAST, "-c", str(repo), "apply"], root, env, logs / f"apply_{repo.name}.log"
                )
                assert rc == 0, text[-2000:]
            rc, s_arrow, text = run([FEAST, "-c", str(arrow), "materialize", "2000-01-01T00:00:00", DAY], root, env,
                                    logs / "materialize_arrow.log")  # fmt: skip
            assert rc == 0, text[-2000:]
            before = snapshot()
            load = os.getloadavg()[0]
            rc, s, text = run([FEAST, "-c", str(on_ray), "materialize", "2000-01-01T00:00:00", DAY], root, env,
                              logs / "materialize_ray.log")  # fmt: skip
            assert rc == 0, text[-2000:]
            a, b = online_rows(arrow / "data/online_store.db"), online_rows(on_ray / "data/online_store.db")
            results["materialize"] = {"seconds": round(s, 1), "arrow_engine_seconds": round(s_arrow, 1), "load1": load,
                                      "tasks_per_node": per_node(before, snapshot(), names),
                                      "rows_per_view": {k: len(v) for k, v in b.items()},
                                      "identical_online_rows": a == b,
                                      "views_differing": sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))}  # fmt: skip
            print(json.dumps({"materialize": results["materialize"]}, indent=1), flush=True)
        if "kill" not in args.skip:
            victim = next(iter(cluster.worker_nodes))
            target = out / "embeddings_kill.parquet"
            target.unlink(missing_ok=True)
            before = snapshot()
            proc = subprocess.Popen([C2I, "embed", "--encoder", "artifacts/encoder", "--events", ev, "--channel",
                                     "web", "--out", str(target), "--quiet", *ray_flags], cwd=root, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
            killed: dict = {}
            killer = threading.Thread(
                target=lambda: killed.update(kill_when_working(cluster, victim, names, before, 120))
            )
            killer.start()
            try:
                stdout, stderr = proc.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            killer.join()
            leftovers = [p.name for p in out.iterdir() if p.name.startswith(".embeddings_kill")]
            outcome = {"rc": proc.returncode, **killed, "stderr_lines": len(stderr.strip().splitlines()),
                       "stderr_last": stderr.strip().splitlines()[-1:] , "stdout": stdout.strip()[-300:],
                       "output_written": target.exists(), "leftovers": leftovers,
                       "tasks_per_node": per_node(before, snapshot(), names)}  # fmt: skip
            if target.exists():
                outcome["vs_single_process"] = compare_embeddings(
                    root / "artifacts/embeddings/session_embeddings.parquet", target
                )
            results["node_kill"] = outcome
            print(json.dumps({"node_kill": outcome}, indent=1), flush=True)
    finally:
        results["load1_end"] = os.getloadavg()[0]
        ray.shutdown()
        cluster.shutdown()
        path = root / ("ray_cluster_kill.json" if args.kill_only else "ray_cluster.json")
        path.write_text(json.dumps(results, indent=2, default=str))
        print(f"figures: {path}")


if __name__ == "__main__":
    main()
