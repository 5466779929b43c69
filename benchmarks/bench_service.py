"""POST /rank_tiles under a bank's traffic, on SQLite and on the production stack, beside ``feast serve`` and the
in-process limit: one command, one table.

What one run measures (figures depend on the machine and its load: the 1-minute load average is printed
beside every figure):

* **Traffic**: every customer of the demo's feature sources, shuffled, plus ``--unknown-share`` (5 %)
  ids no customer has; ``{"customer_id": …, "k": 3}`` per request, the issue's homepage call.
* **Stores**: ``sqlite`` (the repo's ``feature_store.yaml``: the demo's materialised SQLite store) and
  ``redis`` (``feature_store.production.yaml``: Redis + the SQL registry on PostgreSQL, under its own
  project ``--redis-project``, applied with ``feast apply`` and materialised with ``feast materialize``
  the first time: the views the tile ranker reads and the visitor's).
* **Servers**, started per store and measured level by level, alternating which goes first:
  ``ours`` (``c2i serve``'s ``bentoml serve``, ``--workers``) and ``feast serve`` (Feast's own Python
  feature server, ``--workers``, no access log, no worker recycling) answering
  ``/get-online-features`` for the same feature service (its on-demand tile affinity included): the
  features only, without the model.
* **Load**: ``wrk`` (one thread, keep-alive, loopback only) at each of ``--concurrency`` (1, 8, 32
  connections): ``--warmup`` seconds unmeasured, then ``--duration`` seconds; errors are non-2xx
  answers plus socket errors and time-outs.
* **In-process limit**: the service's own engine (``ServingEngine.rank_tiles``) on the same requests
  in a plain loop in this process, and Feast's ``get_online_features`` of the feature service.

    python benchmarks/bench_service.py                       # everything (about 8 minutes)
    python benchmarks/bench_service.py --stores sqlite --concurrency 8 --duration 10
    python benchmarks/bench_service.py --profile             # + py-spy shares of our workers at 8 conns

Goal (issue 27): at 8 connections, p99 <= 5 ms with 0 errors on both stores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugin"))  # runnable from a checkout without installing

from clicks2intent.common.net import LOOPBACK, free_port  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402
from clicks2intent.names import features as N  # noqa: E402
from clicks2intent.names import settings as ENV  # noqa: E402
from clicks2intent.serving import launcher  # noqa: E402

GOAL_CONNECTIONS, GOAL_P99_MS = 8, 5.0
WORK = Path(tempfile.gettempdir()) / "c2i_bench"  # logs, the Redis YAML, profiles ($TMPDIR honoured)
TILE_VIEWS = (N.CUSTOMER_PROFILE, N.CUSTOMER_WEB_INTENT, N.VISITOR_WEB_INTENT)


def load_avg() -> float:
    return os.getloadavg()[0]


# --- traffic ----------------------------------------------------------------------------------------
def request_mix(artifacts: Path, unknown_share: float, seed: int) -> tuple[list[str], int]:
    """Every customer of the feature sources plus ``unknown_share`` of ids nobody has, shuffled."""
    import pandas as pd

    from clicks2intent.names.paths import ArtifactLayout

    frame = pd.read_parquet(
        ArtifactLayout(artifacts).feature_file(N.CUSTOMER_PROFILE), columns=[C.CUSTOMER_ID]
    )
    ids = sorted(frame[C.CUSTOMER_ID].dropna().astype(str).unique())
    n_unknown = round(len(ids) * unknown_share / (1 - unknown_share))
    mix = ids + [f"no-such-customer-{i:05d}" for i in range(n_unknown)]
    random.Random(seed).shuffle(mix)
    return mix, len(ids)


def service_bodies(ids: Sequence[str], k: int = 3) -> list[str]:
    return [json.dumps({"customer_id": c, "k": k}) for c in ids]


def feast_bodies(ids: Sequence[str], service: str, tiles: Sequence[str]) -> list[str]:
    """``feast serve``'s request for the same feature service (its on-demand view needs the candidates)."""
    return [
        json.dumps(
            {"feature_service": service, "entities": {C.CUSTOMER_ID: [c], N.CANDIDATE_TILES: [list(tiles)]}}
        )
        for c in ids
    ]


# --- wrk ---------------------------------------------------------------------------------------------
_WRK_SCRIPT = """
local bodies = {%s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format('C2I_JSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def run_wrk(url: str, bodies: list[str], connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run (one thread, keep-alive) over ``bodies`` in order; req/s, p50/p99/max, errors."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT % ", ".join(f"[==[{b}]==]" for b in bodies))
        script = f.name
    try:
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            script,
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(script)
    line = next(x for x in out.splitlines() if x.startswith("C2I_JSON "))
    r = json.loads(line[len("C2I_JSON ") :])
    return {
        "requests": r["requests"],
        "per_s": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "max_ms": r["max_us"] / 1e3,
        "errors": r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"],
    }


def measure(url: str, bodies: list[str], connections: int, warmup: float, seconds: float,
            pid: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Warm-up at this level (unmeasured), then the measured run, with the load average and server CPU."""
    run_wrk(url, bodies, connections, warmup)
    before, cpu0 = load_avg(), tree_cpu_seconds(pid) if pid else {}
    r = run_wrk(url, bodies, connections, seconds)
    if pid:
        used = {p: v - cpu0.get(p, 0.0) for p, v in tree_cpu_seconds(pid).items()}
        r["server_cpu_ms"] = 1e3 * sum(used.values()) / max(r["requests"], 1)
        busy = sorted((v for p, v in used.items() if p != pid), reverse=True)
        r["worker_cpu_share"] = [round(v / max(sum(busy), 1e-9), 2) for v in busy]  # balance across workers
    else:
        r["server_cpu_ms"], r["worker_cpu_share"] = float("nan"), []
    r["load_avg_1m"] = (before + load_avg()) / 2
    return r


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of a process and each of its children (a server and its workers)."""
    import psutil

    out: dict[int, float] = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
    return out


# --- stores ------------------------------------------------------------------------------------------
def store_yaml(args: argparse.Namespace, store: str) -> str | None:
    """The feature store YAML of ``store`` (None: the repo's own, SQLite)."""
    if store == "sqlite":
        return None
    from clicks2intent.features.store import PRODUCTION_YAML, load_config, write_config

    cfg = load_config(Path(args.feature_repo) / PRODUCTION_YAML)
    cfg["project"] = args.redis_project
    out = WORK / f"feature_store.{args.redis_project}.yaml"
    return str(write_config(out, cfg))


def feast_cli(args: argparse.Namespace, yaml: str, *command: str) -> None:
    feast = Path(sys.executable).with_name("feast")
    env = os.environ | {ENV.ARTIFACTS: str(Path(args.artifacts).resolve())}
    subprocess.run([str(feast), "-c", args.feature_repo, "-f", yaml, *command], check=True, env=env,
                   stdout=subprocess.DEVNULL, timeout=1800)  # fmt: skip


def prepare_redis(args: argparse.Namespace, yaml: str, sample: str) -> str:
    """Apply and materialise the production config once (``--rematerialize``: again); what was done."""
    from clicks2intent.features.store import open_store

    if not args.rematerialize:
        with contextlib.suppress(Exception):  # no project / no data yet: build it below
            store = open_store(args.feature_repo, yaml)
            row = store.get_online_features(
                features=[
                    f"{N.CUSTOMER_PROFILE}:{f.name}"
                    for f in store.get_feature_view(N.CUSTOMER_PROFILE).features[:1]
                ],
                entity_rows=[{C.CUSTOMER_ID: sample}],
            ).to_dict()
            if any(v[0] is not None for k, v in row.items() if k != C.CUSTOMER_ID):
                return "reused (already applied and materialised)"
    t0 = time.perf_counter()
    feast_cli(args, yaml, "apply")
    end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    views = [x for v in TILE_VIEWS for x in ("--views", v)]
    feast_cli(args, yaml, "materialize", "2000-01-01T00:00:00", end, *views)
    return f"feast apply + materialize {', '.join(TILE_VIEWS)}: {time.perf_counter() - t0:.0f} s"


@contextlib.contextmanager
def feast_server(args: argparse.Namespace, yaml: str | None) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """``feast serve`` of the same repo and YAML on a free loopback port, until /health answers."""
    import httpx

    port = free_port()
    feast = Path(sys.executable).with_name("feast")
    cmd = [str(feast), "-c", args.feature_repo, *(["-f", yaml] if yaml else []), "serve", "-h", LOOPBACK,
           "-p", str(port), "-w", str(args.workers), "--no-access-log", "--max-requests", "100000000"]  # fmt: skip
    env = os.environ | {
        ENV.ARTIFACTS: str(Path(args.artifacts).resolve()),  # the on-demand view's prototypes
        "PYTHONPATH": str(REPO / "plugin") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    log = WORK / f"feast_serve_{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"feast serve exited ({proc.returncode}); log: {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"feast serve not ready in 180 s; log: {log}")
            time.sleep(0.5)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# --- in-process limit --------------------------------------------------------------------------------
def timed_loop(fn: Callable[[int], Any], n_items: int, seconds: float, warmup: int = 200) -> dict[str, float]:
    for i in range(min(warmup, n_items)):
        fn(i)
    lat: list[float] = []
    start, cpu0, i = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn(i % n_items)
        lat.append(time.perf_counter() - t)
        i += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    lat.sort()
    return {
        "per_s": len(lat) / wall,
        "cpu_ms": 1e3 * cpu / len(lat),
        "p50_ms": 1e3 * lat[len(lat) // 2],
        "p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "max_ms": 1e3 * lat[-1],
        "load_avg_1m": load_avg(),
    }


def in_process(
    args: argparse.Namespace, yaml: str | None, ids: list[str], tiles: list[str]
) -> dict[str, Any]:
    """The engine's rank_tiles and Feast's get_online_features of the feature service, one request at a time."""
    from clicks2intent.features.store import open_store
    from clicks2intent.models.store import get_bento_model
    from clicks2intent.serving import engine as S
    from clicks2intent.serving import schemas

    home = Path(args.bentoml_home)
    tile = S.ServedModel.from_store(get_bento_model(args.tile_model, home=home))
    conv = S.ServedModel.from_store(get_bento_model(args.conversion_model, home=home))
    store = open_store(args.feature_repo, yaml)
    engine = S.ServingEngine(store, tile, conv, Path(args.artifacts))
    requests = [schemas.RankTilesRequest.model_validate_json(b) for b in service_bodies(ids)]
    service = store.get_feature_service(tile.feature_service)
    rows = [{C.CUSTOMER_ID: c, N.CANDIDATE_TILES: tiles} for c in ids]
    return {
        "rank_tiles (our engine)": timed_loop(lambda i: engine.rank_tiles(requests[i]), len(ids), args.inproc_seconds),
        "get_online_features (Feast)": timed_loop(
            lambda i: store.get_online_features(features=service, entity_rows=[rows[i]]).to_dict(),
            len(ids), args.inproc_seconds,
        ),
    }  # fmt: skip


# --- profile (optional) -------------------------------------------------------------------------------
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("store read", ("online_read_rows (clicks2intent/", ".online_read (feast/")),
    ("Feast", ("(feast/",)),
    ("model predict", ("ServedModel.predict_row (clicks2intent/", "(xgboost/")),
    ("model inputs", ("RowBuilder.build (clicks2intent/", "tile_affinity (clicks2intent/")),
    ("pydantic (validate + JSON)", ("(pydantic/", "(pydantic_core/", "model_dump_json", "model_validate_json")),
    ("engine + route (clicks2intent)", ("(clicks2intent/serving/",)),
)  # fmt: skip
IDLE_FRAMES = (
    "Condition.wait (threading",
    "Runner.run (asyncio/runners",
    "select (selectors",
    "Event.wait (threading",
)


def profile_shares(pid: int, url: str, bodies: list[str], seconds: float) -> dict[str, float]:
    """py-spy over the service's workers during an 8-connection run: share of busy samples per layer."""
    from concurrent.futures import ThreadPoolExecutor

    raw = WORK / "profile.txt"
    spy = [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
           "--subprocesses", "--duration", str(int(seconds)), "--rate", "200", "--format", "raw", "--output",
           str(raw), "--nonblocking"]  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(subprocess.run, spy, capture_output=True, timeout=seconds + 60)
        time.sleep(1.0)
        run_wrk(url, bodies, GOAL_CONNECTIONS, seconds - 2)
        job.result()
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames or not n.isdigit():
            continue
        if any(frames[-1].startswith(x) for x in IDLE_FRAMES):
            counts["idle"] += int(n)
            continue
        layer = next(
            (name for name, needles in LAYERS if any(x in f for f in frames for x in needles)), "HTTP stack"
        )
        counts[layer] += int(n)
    idle = counts.pop("idle", 0)
    busy = sum(counts.values()) or 1
    return {k: 100.0 * v / busy for k, v in counts.most_common()} | {
        "idle (of all)": 100.0 * idle / (busy + idle)
    }


# --- main ----------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", default=str(REPO / "artifacts"))
    p.add_argument("--feature-repo", default=str(REPO / "feature_repo"))
    p.add_argument("--bentoml-home", default=None, help="model store (default <artifacts>/bentoml)")
    p.add_argument("--tile-model", default=f"{N.TILE_RANKER_V1}:latest")
    p.add_argument("--conversion-model", default=f"{N.CONVERSION_V1}:latest")
    p.add_argument("--stores", default="sqlite,redis", help="sqlite and/or redis (the production config)")
    p.add_argument("--redis-project", default="c2i_bench", help="Feast project of the production config run")
    p.add_argument("--rematerialize", action="store_true", help="apply and materialise Redis again")
    p.add_argument("--servers", default="ours,feast", help="ours and/or feast (feast serve)")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each level")
    p.add_argument("--workers", type=int, default=2, help="worker processes of each server")
    p.add_argument("--unknown-share", type=float, default=0.05)
    p.add_argument("--inproc-seconds", type=float, default=5.0, help="0: no in-process limit")
    p.add_argument("--profile", action="store_true", help="py-spy our workers during one more 8-conn run")
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.bentoml_home = args.bentoml_home or str(Path(args.artifacts) / "bentoml")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    os.environ.setdefault(ENV.ARTIFACTS, str(Path(args.artifacts).resolve()))  # Feast's on-demand view
    WORK.mkdir(parents=True, exist_ok=True)
    from clicks2intent.features.transforms import load_artifact_world

    world = load_artifact_world(Path(args.artifacts))
    ids, n_customers = request_mix(Path(args.artifacts), args.unknown_share, args.seed)
    tiles = list(world.tiles)
    service_name = world.feast_name(N.TILE_RANKER_V1)
    ours_bodies, feast_req = service_bodies(ids), feast_bodies(ids, service_name, tiles)
    levels = [int(x) for x in args.concurrency.split(",")]
    servers = args.servers.split(",")
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_start": os.getloadavg(),
        },
        "traffic": {"customers": n_customers, "unknown": len(ids) - n_customers, "requests_in_mix": len(ids)},
        "stores": {},
    }
    print(f"traffic: {n_customers} customers + {len(ids) - n_customers} unknown ids "
          f"({100 * args.unknown_share:.0f} %), shuffled; load avg {load_avg():.2f}", flush=True)  # fmt: skip
    for store in args.stores.split(","):
        yaml = store_yaml(args, store)
        result: dict[str, Any] = report["stores"].setdefault(store, {"load": {}, "in_process": {}})
        if store == "redis":
            from clicks2intent.features.store import service_available

            if reasons := [r for r in (service_available("redis"), service_available("postgres")) if r]:
                print(f"[{store}] skipped: {'; '.join(reasons)}", flush=True)
                result["skipped"] = reasons
                continue
            result["prepared"] = prepare_redis(
                args, yaml, next(i for i in ids if not i.startswith("no-such"))
            )
            print(f"[{store}] {result['prepared']}", flush=True)
        if args.inproc_seconds > 0:
            result["in_process"] = in_process(args, yaml, ids, tiles)
            for name, r in result["in_process"].items():
                print(f"[{store}] in-process {name}: {r['per_s']:.0f}/s p50 {r['p50_ms']:.2f} ms "
                      f"p99 {r['p99_ms']:.2f} ms (load avg {r['load_avg_1m']:.2f})", flush=True)  # fmt: skip
        with contextlib.ExitStack() as stack:
            running: dict[str, tuple[str, Any, list[str]]] = {}
            if "ours" in servers:
                url, proc = stack.enter_context(launcher.running_service(
                    args.artifacts, feature_repo=args.feature_repo, feast_config=yaml, workers=args.workers,
                    log_path=WORK / f"ours_{store}.log",
                    bentoml_home=args.bentoml_home,
                ))  # fmt: skip
                running["ours"] = (f"{url}/rank_tiles", proc, ours_bodies)
            if "feast" in servers:
                url, proc = stack.enter_context(feast_server(args, yaml))
                running["feast serve"] = (f"{url}/get-online-features", proc, feast_req)
            for n, c in enumerate(levels):
                order = list(running) if n % 2 == 0 else list(running)[::-1]  # neither always first
                for name in order:
                    url, proc, bodies = running[name]
                    r = measure(url, bodies, c, args.warmup, args.duration, proc.pid)
                    result["load"].setdefault(name, {})[c] = r
                    print(f"[{store}] {name:11s} c={c:<3d} {r['per_s']:7.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                          f"p99 {r['p99_ms']:6.2f} ms  max {r['max_ms']:7.1f} ms  errors {r['errors']}  "
                          f"server CPU {r['server_cpu_ms']:.2f} ms/req {r['worker_cpu_share']}  "
                          f"load avg {r['load_avg_1m']:.2f}",
                          flush=True)  # fmt: skip
            if args.profile and "ours" in running:
                url, proc, bodies = running["ours"]
                result["profile"] = profile_shares(proc.pid, url, bodies, args.duration)
    report["machine"]["load_avg_end"] = os.getloadavg()
    print_table(report, levels)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
        print(f"\nwrote {args.out}")
    return 0


def print_table(report: dict[str, Any], levels: list[int]) -> None:
    print("\n| store | server | conns | req/s | p50 ms | p99 ms | max ms | errors | server CPU ms/req | worker split "
          "| load avg 1m |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for store, result in report["stores"].items():
        for name, r in result.get("in_process", {}).items():
            print(f"| {store} | in-process {name} | 1 (no HTTP) | {r['per_s']:.0f} | {r['p50_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} | 0 | {r['cpu_ms']:.2f} | | {r['load_avg_1m']:.2f} |")  # fmt: skip
        for c in levels:
            for name, by_level in result.get("load", {}).items():
                if c in by_level:
                    r = by_level[c]
                    print(f"| {store} | {name} | {c} | {r['per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                          f"{r['max_ms']:.1f} | {r['errors']} | {r['server_cpu_ms']:.2f} | "
                          f"{'/'.join(f'{100 * x:.0f}' for x in r['worker_cpu_share'])} | {r['load_avg_1m']:.2f} |")  # fmt: skip
    print()
    for store, result in report["stores"].items():
        r = result.get("load", {}).get("ours", {}).get(GOAL_CONNECTIONS)
        if r is not None:
            met = r["p99_ms"] <= GOAL_P99_MS and r["errors"] == 0
            print(f"goal [{store}]: {GOAL_CONNECTIONS} connections p99 {r['p99_ms']:.2f} ms (<= {GOAL_P99_MS:.0f}), "
                  f"{r['errors']} errors: {'met' if met else 'NOT met'} (load avg {r['load_avg_1m']:.2f})")  # fmt: skip
        if result.get("profile"):
            shares = ", ".join(f"{k} {v:.0f} %" for k, v in result["profile"].items())
            print(f"profile [{store}] ours, 8 conns, share of busy samples: {shares}")
    print(f"\nmachine: {report['machine']}")


if __name__ == "__main__":
    sys.exit(main())
