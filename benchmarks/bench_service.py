"""Load benchmark of the BentoML service's POST /rank_tiles, beside the in-process limit, A/B by variant.

What it measures, in one run (not a test: figures depend on the machine and its load):

1. **In-process limit**: the service's own feature fetch + model predict for the same customers in a
   plain Python loop (``ServingEngine.tile_features`` + ``ServedModel.predict``), no HTTP; beside it the
   same through ``get_online_features`` (``direct_reads=False``), the full endpoint logic, the bare
   ``online_read`` calls (the floor of Feast's API), tile_affinity run by Feast, and the naive path.
2. **Load**: one ``bentoml serve`` per variant (``--variant NAME=KEY:VALUE,...``: the service's
   environment, e.g. ``C2I_DIRECT_READS:0``, ``C2I_WORKERS:1``; ``ROOT:/checkout`` serves another
   checkout's code), all started up front; ``wrk`` (default when installed; else an asyncio client)
   at 1, 8 and 32 keep-alive connections for a fixed time each, after an unmeasured second. Variants
   alternate ABBA over ``--rounds`` so a drifting load on the shared cores hits each alike; the table
   holds the median over rounds of req/s, p50/p99/max, the errors (non-2xx and socket), the service's
   CPU per request and the 1-minute load average next to every figure.
3. ``--profile``: after the measured rounds, one more 8-client pass per variant while ``py-spy``
   samples the workers: the share of busy samples per layer (store read, Feast assembly, model,
   pydantic, engine, HTTP stack), the idle share, the hottest frames, raw stacks for a flame graph.

    python benchmarks/bench_service.py                      # the demo's artifacts/ and feature_repo/
    python benchmarks/bench_service.py --feast-config feature_store.production.yaml --profile  # Redis

Targets (issue 17; 2 cores, client and server sharing them): zero errors; at 8 connections p99 <= 5 ms
(step bar 10 ms), model included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugin"))  # runnable from a checkout without installing

from clicks2intent.names import columns as C  # noqa: E402
from clicks2intent.names import settings as ENV  # noqa: E402
from clicks2intent.serving import launcher  # noqa: E402


# --- request mix ------------------------------------------------------------------------------
def customer_ids(artifacts: Path, n: int, seed: int) -> list[str]:
    """Real customers of the feature sources (with and without linked web intent), sampled."""
    import pandas as pd

    from clicks2intent.names.paths import ArtifactLayout

    profile = pd.read_parquet(
        ArtifactLayout(artifacts).feature_file("customer_profile"), columns=[C.CUSTOMER_ID]
    )
    ids = sorted(profile[C.CUSTOMER_ID].dropna().astype(str).unique())
    random.Random(seed).shuffle(ids)
    return ids[:n]


def bodies_for(ids: Sequence[str], k: int = 3) -> list[str]:
    return [json.dumps({"customer_id": c, "k": k}) for c in ids]


# --- in-process limit -----------------------------------------------------------------------------
def timed_loops(
    variants: dict[str, Callable[[int], Any]],
    n_items: int,
    seconds: float,
    slice_s: float = 0.5,
    warmup: int = 30,
) -> dict[str, dict[str, float]]:
    """Run each variant ``fn(i)`` over the items for ``seconds`` in total, round-robin in short slices
    (so a load change on the shared machine hits every variant alike); calls/s, CPU and latency."""
    lat: dict[str, list[float]] = {name: [] for name in variants}
    wall = dict.fromkeys(variants, 0.0)
    cpu = dict.fromkeys(variants, 0.0)
    for fn in variants.values():
        for i in range(min(warmup, n_items)):
            fn(i)
    pos = dict.fromkeys(variants, 0)
    for _ in range(max(1, round(seconds / slice_s))):
        for name, fn in variants.items():
            start, cpu0 = time.perf_counter(), time.process_time()
            while time.perf_counter() - start < slice_s:
                t = time.perf_counter()
                fn(pos[name] % n_items)
                lat[name].append(time.perf_counter() - t)
                pos[name] += 1
            wall[name] += time.perf_counter() - start
            cpu[name] += time.process_time() - cpu0
    out = {}
    for name, values in lat.items():
        values.sort()
        out[name] = {
            "calls": len(values),
            "per_s": len(values) / wall[name],
            "cpu_ms": 1e3 * cpu[name] / len(values),  # comparable even when other jobs share the cores
            "p50_ms": 1e3 * values[len(values) // 2],
            "p99_ms": 1e3 * values[min(len(values) - 1, int(0.99 * len(values)))],
            "max_ms": 1e3 * values[-1],
        }
    return out


def in_process(args: argparse.Namespace, ids: list[str]) -> dict[str, dict[str, float]]:
    """The same work as the service, in this process, one request at a time."""
    import numpy as np
    import xgboost as xgb

    from clicks2intent.features.store import open_store
    from clicks2intent.models.store import get_bento_model
    from clicks2intent.serving import engine as S
    from clicks2intent.serving import schemas

    home = Path(args.bentoml_home)
    tile = S.ServedModel.from_store(get_bento_model(f"{args.tile_model}", home=home))
    conv = S.ServedModel.from_store(get_bento_model(f"{args.conversion_model}", home=home))
    store = open_store(args.feature_repo, args.feast_config)
    engine = S.ServingEngine(store, tile, conv, Path(args.artifacts))
    general = S.ServingEngine(store, tile, conv, Path(args.artifacts), direct_reads=False)
    via_feast = S.ServingEngine(store, tile, conv, Path(args.artifacts), local_odfv=False, direct_reads=False)
    reader = engine._tile_reader
    views = [(v.table, list(v.fields), v.join_key, v.key_type) for v in reader._views] if reader else []

    def online_read_only(i: int) -> Any:  # the floor: the online store's own reads, no conversion
        store_ = reader._online_store  # type: ignore[union-attr]
        return [
            store_.online_read(reader._config, t, [reader._entity_key(k, kt, ids[i])], f)  # type: ignore[union-attr]
            for t, f, k, kt in views
        ]

    requests = [schemas.RankTilesRequest.model_validate_json(b) for b in bodies_for(ids)]
    est = tile.model.estimator

    def naive(i: int) -> Any:  # what a first service does: Feast service read → pandas → DMatrix
        import pandas as pd

        row = via_feast.tile_features(ids[i])
        frame = tile.model.frame(pd.DataFrame([row]))
        dm = xgb.DMatrix(frame.to_numpy(dtype=np.float32), missing=np.nan, feature_names=list(frame.columns))
        return est.booster_.predict(dm, iteration_range=tile.iteration_range)

    row = tile.rows.build(engine.tile_features(ids[0]))
    plain = S.ServedModel(tile.model, tile.name, tile.version, compile_trees=False)
    variants: dict[str, Callable[[int], Any]] = {
        "fetch_predict": lambda i: tile.predict(engine.tile_features(ids[i])),  # the limit
        "fetch_predict_get_online_features": lambda i: tile.predict(general.tile_features(ids[i])),
        "endpoint_logic": lambda i: engine.rank_tiles(requests[i]),
        "endpoint_logic_get_online_features": lambda i: general.rank_tiles(requests[i]),
        "fetch_only": lambda i: engine.tile_features(ids[i]),
        "fetch_only_get_online_features": lambda i: general.tile_features(ids[i]),
        "fetch_odfv_in_feast": lambda i: via_feast.tile_features(ids[i]),
        **({"online_read_only": online_read_only} if reader is not None else {}),
        "predict_compiled_forest": lambda i: tile.predict_row(row),
        "predict_xgb_inplace": lambda i: plain.predict_row(row),
        "naive_fetch_frame_dmatrix": naive,
    }
    out = timed_loops(variants, len(ids), args.inproc_seconds)
    return out


# --- load generators ----------------------------------------------------------------------------
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
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT % ", ".join(f"[==[{b}]==]" for b in bodies))
        script = f.name
    try:
        secs = max(1, round(seconds))  # wrk takes whole seconds
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{secs}s", "--timeout", "5s", "-s", script, url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script)
    line = next(x for x in out.splitlines() if x.startswith("C2I_JSON "))
    r = json.loads(line[len("C2I_JSON ") :])
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {
        "client": "wrk",
        "requests": r["requests"],
        "per_s": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "max_ms": r["max_us"] / 1e3,
        "errors": errors,
    }


async def _async_load(
    host: str,
    port: int,
    path: str,
    bodies: list[str],
    connections: int,
    seconds: float,
    reconnect_every: int = 0,
    stagger_s: float = 0.02,
) -> dict[str, Any]:
    """Minimal HTTP/1.1 keep-alive POST client on asyncio streams (cheap enough to share 2 cores).

    Connections are opened ``stagger_s`` apart, then all start together: clients that arrive over
    time, not in one burst, so each one lands on whichever worker is free (one burst is accepted by
    whichever worker wakes first and stays pinned there for the run). ``reconnect_every`` > 0
    re-opens a connection after that many requests, timed as part of the next request."""
    lat: list[float] = []
    errors = Counter()
    payloads = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b.encode())}\r\n\r\n{b}"
        ).encode()
        for b in bodies
    ]

    async def request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> int:
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for h in head.split(b"\r\n"):
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":", 1)[1])
        if length:
            await reader.readexactly(length)
        return int(head.split(b" ", 2)[1])

    streams = []
    for w in range(connections):  # each new client talks to the server a little before the next arrives
        reader, writer = await asyncio.open_connection(host, port)
        await request(reader, writer, payloads[w % len(payloads)])
        streams.append((reader, writer))
        await asyncio.sleep(stagger_s)
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        reader, writer = streams[w]
        i, sent = w, 0
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            if reconnect_every and sent == reconnect_every:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                sent = 0
            status = await request(reader, writer, payloads[i % len(payloads)])
            i, sent = i + 1, sent + 1
            lat.append(time.perf_counter() - t)
            if status != 200:
                errors[status] += 1
        writer.close()

    start = time.perf_counter()
    results = await asyncio.gather(*(worker(w) for w in range(connections)), return_exceptions=True)
    wall = time.perf_counter() - start
    socket_errors = sum(1 for r in results if isinstance(r, Exception))
    lat.sort()
    name = "python-asyncio" + (f" (reconnect every {reconnect_every})" if reconnect_every else "")
    return {
        "client": name,
        "requests": len(lat),
        "per_s": len(lat) / wall,
        "p50_ms": 1e3 * lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
        "max_ms": 1e3 * lat[-1] if lat else float("nan"),
        "errors": sum(errors.values()) + socket_errors,
    }


def _python_client(queue: Any, *a: Any) -> None:
    try:  # uvloop halves the client's CPU per request: less of the 2 cores taken from the server
        import uvloop

        queue.put(uvloop.run(_async_load(*a)))
    except ImportError:
        queue.put(asyncio.run(_async_load(*a)))


def run_python_client(
    url: str, bodies: list[str], connections: int, seconds: float, reconnect_every: int = 0
) -> dict[str, Any]:
    """The asyncio client in its own process (never in the server's, never in this one's GIL)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_python_client,
        args=(
            queue,
            parts.hostname,
            parts.port,
            parts.path or "/",
            bodies,
            connections,
            seconds,
            reconnect_every,
        ),
    )
    proc.start()
    result = queue.get(timeout=seconds + 60)
    proc.join()
    return result


# --- profile ---------------------------------------------------------------------------------------
def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of a process and each of its children (the service's workers)."""
    import psutil

    out: dict[int, float] = {}
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def profile_server(pid: int, seconds: float, raw_path: Path) -> dict[str, list[tuple[float, str]]]:
    """py-spy the service (all worker processes) for ``seconds``: the frames with the largest inclusive
    share of samples (below the server's common entry frames) and the largest self share."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: pip install py-spy (the sampler runs outside the service)")
    cmd = [py_spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)), "--rate", "250",
           "--format", "raw", "--nonblocking", "-o", str(raw_path)]  # fmt: skip
    subprocess.run(cmd, capture_output=True, check=True)

    def key(frame: str) -> str:
        name, _, where = frame.partition(" (")
        return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name

    incl: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += int(n)
        for k in {key(f) for f in frames}:
            incl[k] += int(n)
        own[key(frames[-1])] += int(n)
    if not total:
        return {"inclusive": [], "self": []}
    entry = 0.8 * total  # uvicorn/starlette entry frames every request passes through: not informative
    return {
        "inclusive": [(100.0 * v / total, k) for k, v in incl.most_common(80) if v < entry][:30],
        "self": [(100.0 * v / total, k) for k, v in own.most_common(15)],
    }


# --- profile shares per layer ------------------------------------------------------------------------
# A sample goes to the first layer (in this order) with a frame anywhere in its stack matching one of the
# layer's needles: a store read inside get_online_features counts as the store read, the rest of Feast
# as its assembly; what matches nothing is the HTTP stack (BentoML, starlette, uvicorn, asyncio, anyio).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("store read (online_read + client)", (".online_read (feast/", "._read_hash_fields (feast/")),
    ("Feast assembly (get_online_features)", ("(feast/",)),
    ("model predict", ("ServedModel.predict_row (clicks2intent/", "(xgboost/")),
    ("model inputs (row + affinity)", ("RowBuilder.build (clicks2intent/", "tile_affinity (clicks2intent/")),
    ("pydantic (validate + JSON)", ("(pydantic/", "(pydantic_core/", "model_dump_json")),
    ("engine logic (clicks2intent)", ("(clicks2intent/serving/engine", "(clicks2intent/serving/online")),
)  # fmt: skip
HTTP_LAYER = "HTTP (BentoML/starlette/uvicorn/asyncio)"
# py-spy's idle detection misses these waits (a pool thread waiting for work; the event loop parked in
# uvloop's C code shows as Runner.run): a sample whose innermost frame is one of them is idle time.
IDLE_FRAMES = (
    "Condition.wait (threading",
    "Runner.run (asyncio/runners",
    "select (selectors",
    "Event.wait (threading",
)


def layer_of(frames: Sequence[str]) -> str:
    if any(frames[-1].startswith(x) for x in IDLE_FRAMES):
        return "idle"
    for layer, needles in LAYERS:
        if any(n in frame for frame in frames for n in needles):
            return layer
    return HTTP_LAYER


def layer_shares(raw_path: Path) -> dict[str, float]:
    """Share of the busy py-spy samples (CPU) per layer of the request path; ``idle``: share of all."""
    counts: Counter[str] = Counter()
    for line in raw_path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if frames and n.isdigit():
            counts[layer_of(frames)] += int(n)
    idle = counts.pop("idle", 0)
    busy = sum(counts.values()) or 1
    shares = {layer: 100.0 * counts[layer] / busy for layer in [*(x for x, _ in LAYERS), HTTP_LAYER]}
    return shares | {"idle": 100.0 * idle / max(busy + idle, 1)}


# --- service variants, A/B interleaved -------------------------------------------------------------------
def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """``NAME=KEY:VALUE,KEY:VALUE`` → (name, env). ``ROOT:/checkout`` serves that checkout's code."""
    name, _, body = spec.partition("=")
    env = dict(kv.split(":", 1) for kv in body.split(",") if kv)
    if not name:
        raise SystemExit(f"--variant {spec!r}: expected NAME=KEY:VALUE,...")
    return name, env


@contextlib.contextmanager
def variant_service(args: argparse.Namespace, name: str, env: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """``bentoml serve`` for one variant. ``ROOT`` runs another checkout (e.g. the commit before a change):
    its plugin first on PYTHONPATH and its bento/ as the working directory, everything else alike."""
    env = dict(env)
    root = env.pop("ROOT", None)
    extra = dict(kv.split("=", 1) for kv in args.service_env) | env
    patch: Any = contextlib.nullcontext()
    if root:
        extra["PYTHONPATH"] = str(Path(root) / "plugin")
        patch = mock.patch.object(launcher, "project_root", lambda: Path(root).resolve())
    log = Path(tempfile.gettempdir()) / f"c2i_bench_serve_{name}.log"
    with contextlib.ExitStack() as stack:
        # The checkout is patched for the start-up only: held open, it leaked into every variant started
        # after this one (a variant without ROOT then served the previous variant's checkout).
        with patch:
            served = stack.enter_context(
                launcher.running_service(
                    args.artifacts,
                    feature_repo=args.feature_repo,
                    feast_config=args.feast_config,
                    workers=args.workers,
                    log_path=log,
                    bentoml_home=args.bentoml_home,
                    extra_env=extra,
                )
            )
        yield served


def measure_level(load: Callable[..., dict[str, Any]], url: str, proc: Any, bodies: list[str], c: int,
                  seconds: float, limit: float) -> dict[str, Any]:  # fmt: skip
    load(f"{url}/rank_tiles", bodies, c, 1.0)  # settle this level's connections, unmeasured
    load_avg = os.getloadavg()[0]
    cpu0 = tree_cpu_seconds(proc.pid)
    r = load(f"{url}/rank_tiles", bodies, c, seconds)
    cpu1 = tree_cpu_seconds(proc.pid)
    used = {p: cpu1[p] - cpu0.get(p, 0.0) for p in cpu1}
    r["server_cpu_ms"] = 1e3 * sum(used.values()) / max(r["requests"], 1)
    busy = sorted((v for p, v in used.items() if p != proc.pid), reverse=True)
    r["worker_cpu_share"] = [round(v / max(sum(busy), 1e-9), 2) for v in busy]
    r["vs_in_process"] = r["per_s"] / limit
    r["load_avg_1m"] = (load_avg + os.getloadavg()[0]) / 2  # other jobs on the shared cores, before/after
    return r


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])


def summarise(rows: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, dict[int, dict[str, float]]]:
    """Per variant and level: the median over rounds of each figure, errors summed."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for name, levels in rows.items():
        out[name] = {}
        for c, runs in levels.items():
            out[name][c] = {
                k: _median([r[k] for r in runs])
                for k in ("per_s", "p50_ms", "p99_ms", "max_ms", "server_cpu_ms", "load_avg_1m")
            } | {"errors": sum(r["errors"] for r in runs), "rounds": len(runs)}
    return out


def print_summary(summary: dict[str, dict[int, dict[str, float]]]) -> None:
    print(
        "\n| variant | conns | req/s | p50 ms | p99 ms | max ms | errors | server CPU ms/req | load avg 1m |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, levels in summary.items():
        for c, r in levels.items():
            print(f"| {name} | {c} | {r['per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | "
                  f"{r['errors']} | {r['server_cpu_ms']:.2f} | {r['load_avg_1m']:.1f} |")  # fmt: skip


# --- main ------------------------------------------------------------------------------------------
DEFAULT_VARIANTS = ("get_online_features=C2I_DIRECT_READS:0", "direct_reads=C2I_DIRECT_READS:1")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", default=str(REPO / "artifacts"))
    p.add_argument("--feature-repo", default=str(REPO / "feature_repo"))
    p.add_argument("--feast-config", default=None, help="e.g. feature_store.production.yaml (Redis)")
    p.add_argument("--bentoml-home", default=None, help="model store (default <artifacts>/bentoml)")
    p.add_argument("--tile-model", default="tile_ranker_v1:latest")
    p.add_argument("--conversion-model", default="conversion_v1:latest")
    p.add_argument("--concurrency", default="1,8,32", help="concurrent connections per level")
    p.add_argument("--workers", type=int, default=2, help="service workers (a variant may set C2I_WORKERS)")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=KEY:VALUE,...",
        help="a service configuration to compare (repeatable; env of the service, ROOT:/checkout for "
        f"another checkout's code); default {' and '.join(DEFAULT_VARIANTS)}",
    )
    p.add_argument("--rounds", type=int, default=2, help="A/B rounds: variants alternate (ABBA) per round")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    p.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load before each variant's first level"
    )
    p.add_argument("--inproc-seconds", type=float, default=5.0)
    p.add_argument("--customers", type=int, default=200, help="distinct customers in the request mix")
    p.add_argument(
        "--client",
        choices=["python", "wrk"],
        default="wrk" if shutil.which("wrk") else "python",
        help="wrk (C, default when installed: little client CPU on shared cores) or the asyncio client",
    )
    p.add_argument(
        "--reconnect-every",
        type=int,
        default=0,
        help="python client: re-open each connection after N requests (0: keep-alive for the whole run)",
    )
    p.add_argument(
        "--profile", action="store_true", help="py-spy each variant's workers in an extra 8-client pass"
    )
    p.add_argument("--no-in-process", action="store_true", help="skip the in-process limit (load only)")
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="for every variant, e.g. C2I_METRICS=0 (repeatable)",
    )
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.bentoml_home = args.bentoml_home or str(Path(args.artifacts) / "bentoml")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Feast's on-demand views (the in-process "odfv in Feast" variant) find the artifacts through this.
    os.environ.setdefault(ENV.ARTIFACTS, str(Path(args.artifacts).resolve()))
    levels = [int(x) for x in args.concurrency.split(",")]
    client = args.client
    if client == "wrk":
        load: Callable[..., dict[str, Any]] = run_wrk
    else:

        def load(url: str, bodies: list[str], connections: int, seconds: float) -> dict[str, Any]:
            return run_python_client(url, bodies, connections, seconds, args.reconnect_every)

    ids = customer_ids(Path(args.artifacts), args.customers, args.seed)
    bodies = bodies_for(ids)
    variants = dict(parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS))
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "client": client,
        "customers": len(ids),
        "store": args.feast_config or "feature_store.yaml",
        "variants": variants,
        "service_env": args.service_env,
    }
    limit = float("nan")
    if not args.no_in_process:
        print(f"in-process ({args.inproc_seconds:.0f}s per variant, {len(ids)} customers, load avg "
              f"{os.getloadavg()[0]:.1f}) ...", flush=True)  # fmt: skip
        report["in_process"] = in_process(args, ids)
        for name, r in report["in_process"].items():
            print(
                f"  {name:34s} {r['per_s']:7.0f}/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                f"CPU {r['cpu_ms']:.3f} ms/call"
            )
        limit = report["in_process"]["fetch_predict"]["per_s"]

    rows: dict[str, dict[int, list[dict[str, Any]]]] = {n: {c: [] for c in levels} for n in variants}
    with contextlib.ExitStack() as stack:
        served = {}
        for name, env in variants.items():  # all up at once (idle ones cost no CPU): rounds interleave
            print(f"starting variant {name} {env} ...", flush=True)
            served[name] = stack.enter_context(variant_service(args, name, env))
            load(f"{served[name][0]}/rank_tiles", bodies, 8, args.warmup)  # warm every worker
        names = list(variants)
        for rnd in range(args.rounds):
            for name in names if rnd % 2 == 0 else names[::-1]:  # ABBA: drifting load hits both alike
                url, proc = served[name]
                for c in levels:
                    r = measure_level(load, url, proc, bodies, c, args.duration, limit)
                    rows[name][c].append(r)
                    print(
                        f"  round {rnd} {name:20s} c={c:<3d} {r['per_s']:7.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                        f"p99 {r['p99_ms']:6.2f} ms  max {r['max_ms']:7.2f} ms  errors {r['errors']}  "
                        f"server CPU {r['server_cpu_ms']:.2f} ms/req (workers {r['worker_cpu_share']})  "
                        f"load avg {r['load_avg_1m']:.1f}",
                        flush=True,
                    )
        if args.profile:  # a separate pass per variant: the sampler's own CPU must not bend the figures
            from concurrent.futures import ThreadPoolExecutor

            for name, (url, proc) in served.items():
                raw = Path(tempfile.gettempdir()) / f"c2i_bench_profile_{name}.txt"
                with ThreadPoolExecutor(1) as pool:
                    top = pool.submit(profile_server, proc.pid, max(2.0, args.duration - 2), raw)
                    load(f"{url}/rank_tiles", bodies, 8, args.duration)
                    report.setdefault("profile", {})[name] = {
                        "raw": str(raw),
                        "top": top.result(),
                        "layers": layer_shares(raw),
                    }
    report["load"] = rows
    report["summary"] = summary = summarise(rows)
    print_summary(summary)
    if report.get("profile"):
        profiles = report["profile"]
        print("\nprofile, share of busy samples per layer (py-spy, 8 clients; idle: share of all samples):\n")
        print("| layer | " + " | ".join(profiles) + " |")
        print("|---|" + "---|" * len(profiles))
        for layer in [*(x for x, _ in LAYERS), HTTP_LAYER, "idle"]:
            print(
                f"| {layer} | " + " | ".join(f"{p['layers'][layer]:.1f} %" for p in profiles.values()) + " |"
            )
        for name, prof in profiles.items():
            print(f"\nhottest frames, {name} (raw stacks for a flame graph: {prof['raw']})")
            for kind in ("inclusive", "self"):
                print(f"  {kind} share of samples:")
                for share, frame in prof["top"][kind][:15]:
                    print(f"    {share:5.1f}%  {frame}")
    report["machine"]["load_avg_end"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
