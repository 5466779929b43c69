"""Benchmark: ``feast materialize`` as a platform engineer runs it — fixed cost and marginal rows/s per view.

After ``make demo`` (its ``feature_repo`` applied, its sources built), for each view: the ``feast`` CLI
over an empty window (the fixed cost: interpreter, imports, registry, DuckDB, the online store's set-up)
and over the whole history (fixed + every row), so marginal rows/s = rows / (whole − empty). Beside them,
in the same run: ``python -c "import feast"`` (what Feast's own import costs), the same with
``PYTHONOPTIMIZE=1`` (typeguard's instrumentation off, as ``python -O`` does), and ``c2i features
materialize`` (the same materialisation through our CLI, which imports Feast without typeguard's
instrumentation). ``--runtime-venv .venv-runtime`` (``make runtime``: the package without its torch
extra, bytecode compiled for ``-O`` too) adds that venv's ``feast`` CLI, plain and with
``PYTHONOPTIMIZE=1``, the deployment the README recommends for a scheduled job. Each figure is the median
of ``--repeats`` runs; the load average is printed beside. For the demo's SQLite store each row ends with
a digest of the view's online table after that command's whole-history runs: the same digest, the same
rows written.

``--stores sqlite sqlite-feast redis``: the demo's ``feature_store.yaml`` (SQLite, its ``layout: wide``:
one row per entity), the same with Feast's own layout (one row per entity and feature; a copy of the
YAML with ``layout: feast`` and its own database file, applied first and deleted after), and the
production layout (Redis online store, SQL registry on PostgreSQL: ``production_config()`` under a
throw-away project, applied first and torn down after). Beside each view, the store's own speed for the
same rows, read back from the demo's SQLite online store after the runs: Python's ``sqlite3`` upserting
them one row per statement in one transaction into a copy of the table that already holds them (what a
whole-history re-run meets), in each layout, and redis-py's pipeline HSETting the same hashes
(``--stores redis``). Entities per second there are comparable to the CLI's marginal rows/s when every
source row is one entity's latest.

    .venv/bin/python benchmarks/bench_materialize_cli.py --views session_intent session_activity
    make runtime && .venv/bin/python benchmarks/bench_materialize_cli.py --runtime-venv .venv-runtime
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from clicks2intent.features.online_write import (
    WIDE_COLUMNS,
    encode_wide,
    quote_identifier,
    wide_create,
    wide_upsert,
)
from clicks2intent.features.store import load_config, production_config, write_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EMPTY = ("2000-01-01T00:00:00", "2000-01-02T00:00:00")
WHOLE = ("2000-01-01T00:00:00", "2030-01-01T00:00:00")


def table_digest(repo: Path, project: str, view: str) -> str:
    """The first 12 hex digits of a SHA-256 over the view's online table, every column of every row in
    key order (either layout; created_ts is the source's, so the same rows give the same digest)."""
    conn = sqlite3.connect(repo / "data" / "online_store.db")
    try:
        digest = hashlib.sha256()
        cursor = conn.execute(f"SELECT * FROM {quote_identifier(f'{project}_{view}')} ORDER BY 1, 2")
        for row in cursor:
            digest.update(repr(row).encode())
        return digest.hexdigest()[:12]
    finally:
        conn.close()


def timed(argv: list[str], env: dict[str, str] | None = None, repeats: int = 3) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
        runs.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return statistics.median(runs)


def sqlite_rows(repo: Path, project: str, view: str) -> tuple[str, list[tuple], list[tuple]]:
    """The view's table in the demo's SQLite online store (either layout): its name, its rows one per
    entity (``entity_key, event_ts, created_ts, features``) and one per entity and feature
    (``entity_key, feature_name, value, value_text, event_ts, created_ts``; no value_text when read from
    a wide table), in key order."""
    from feast.protos.feast.types.Value_pb2 import Map

    conn = sqlite3.connect(repo / "data" / "online_store.db")
    try:
        table = f"{project}_{view}"
        quoted = quote_identifier(table)
        columns = tuple(r[1] for r in conn.execute(f"PRAGMA table_info({quoted})"))
        if columns == WIDE_COLUMNS:
            wide = conn.execute(f"SELECT * FROM {quoted} ORDER BY entity_key").fetchall()
            narrow = []
            for key, ts, created, blob in wide:
                m = Map()
                m.ParseFromString(blob)
                narrow += [(key, f, m.val[f].SerializeToString(), None, ts, created) for f in sorted(m.val)]
        else:
            narrow = conn.execute(
                f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts FROM {quoted} "
                "ORDER BY entity_key, feature_name"
            ).fetchall()
            grouped: dict[bytes, list[tuple]] = {}
            for row in narrow:
                grouped.setdefault(row[0], []).append(row)
            wide = [
                (k, rs[0][4], rs[0][5], encode_wide({r[1]: [r[2]] for r in rs})[0])
                for k, rs in grouped.items()
            ]
    finally:
        conn.close()
    return table, wide, narrow


FEAST_CREATE = (
    "CREATE TABLE {t} (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT, vector_value BLOB, "
    "event_ts timestamp, created_ts timestamp, PRIMARY KEY(entity_key, feature_name))"
)  # Feast 0.67's, with its index on entity_key below
FEAST_UPSERT = (
    "INSERT INTO {t} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
    "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts"
)


def sqlite_floor(repo: Path, table: str, rows: list[tuple], wide: bool, repeats: int) -> float:
    """Seconds for sqlite3 to upsert ``rows`` (one row per statement, one transaction) into a copy of the
    table, in its layout, that already holds them, on the same disk; median of ``repeats``."""
    tmp = Path(tempfile.mkdtemp(dir=repo / "data", prefix="floor-"))
    try:
        conn = sqlite3.connect(tmp / "floor.db")
        quoted = quote_identifier(table)
        if wide:
            conn.execute(wide_create(table))
            sql = wide_upsert(table)
        else:
            conn.execute(FEAST_CREATE.format(t=quoted))
            conn.execute(f"CREATE INDEX {quote_identifier(table + '_ek')} ON {quoted} (entity_key)")
            sql = FEAST_UPSERT.format(t=quoted)
        with conn:
            conn.executemany(sql, rows)
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with conn:
                conn.executemany(sql, rows)
            runs.append(time.perf_counter() - t0)
        conn.close()
        return statistics.median(runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def redis_floor(redis_url: str, rows: list[tuple], repeats: int) -> float:
    """Seconds for redis-py's pipeline to HSET the same hashes (one per entity, a field per feature and
    a timestamp field) under a throw-away prefix, 20k entities per round trip; the keys are deleted after."""
    import redis

    from clicks2intent.features.online_stores import parse_connection_string

    node = parse_connection_string(redis_url)[0][0]
    client = redis.Redis(host=node["host"], port=int(node.get("port", 6379)))
    hashes: dict[bytes, dict[bytes, bytes]] = {}
    for key, feature, value, *_ in rows:
        hashes.setdefault(b"c2i-bench-floor:" + key, {b"_ts": b"\x08\x01"})[feature.encode()] = value
    keys = list(hashes)
    runs = []
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for start in range(0, len(keys), 20_000):
                pipe = client.pipeline(transaction=False)
                for k in keys[start : start + 20_000]:
                    pipe.hset(k, mapping=hashes[k])
                pipe.execute()
            runs.append(time.perf_counter() - t0)
    finally:
        for start in range(0, len(keys), 10_000):
            client.unlink(*keys[start : start + 10_000])
        client.close()
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", nargs="+", default=["session_intent", "session_activity"])
    ap.add_argument("--repo", default="feature_repo")
    ap.add_argument("--features", type=Path, default=REPO / "artifacts" / "features")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stores", nargs="+", choices=["sqlite", "sqlite-feast", "redis"], default=["sqlite"])
    ap.add_argument(
        "--redis", default="127.0.0.1:6379", help="Redis for --stores redis (Feast's host:port form)"
    )
    ap.add_argument(
        "--runtime-venv",
        type=Path,
        help="the feature-store runtime (`make runtime`: the package without torch, bytecode for -O too): "
        "its `feast` CLI is timed beside the main venv's, plain and with PYTHONOPTIMIZE=1",
    )
    args = ap.parse_args()
    py, feast, c2i = str(BIN / "python"), str(BIN / "feast"), str(BIN / "c2i")
    repo = REPO / args.repo
    optimised = {**os.environ, "PYTHONOPTIMIZE": "1"}
    print(f"load before: {os.getloadavg()[0]:.2f}")
    ref = {
        "python -c pass": timed([py, "-c", "pass"], repeats=args.repeats),
        "python -c 'import feast'": timed([py, "-c", "import feast"], repeats=args.repeats),
        "PYTHONOPTIMIZE=1 python -c 'import feast'": timed(
            [py, "-c", "import feast"], optimised, args.repeats
        ),
    }
    runtime_feast = None
    if args.runtime_venv is not None:
        runtime_bin = args.runtime_venv.resolve() / "bin"
        runtime_feast, rpy = str(runtime_bin / "feast"), str(runtime_bin / "python")
        if subprocess.run([rpy, "-c", "import torch"], capture_output=True).returncode == 0:
            raise SystemExit(
                f"{args.runtime_venv}: torch is installed there; `make runtime` builds one without"
            )
        ref["runtime venv: python -c 'import feast'"] = timed(
            [rpy, "-c", "import feast"], repeats=args.repeats
        )
        ref["runtime venv: PYTHONOPTIMIZE=1 python -c 'import feast'"] = timed(
            [rpy, "-c", "import feast"], optimised, args.repeats
        )
    for name, s in ref.items():
        print(f"{name}: {s:.2f} s")
    demo_project = load_config(repo / "feature_store.yaml")["project"]
    configs: dict[str, str | None] = {}
    if "sqlite" in args.stores:
        configs["sqlite"] = None
    redis_yaml = repo / f"feature_store.bench-{os.getpid()}.yaml"
    feast_yaml = repo / f"feature_store.bench-feast-{os.getpid()}.yaml"
    feast_db = f"data/online_store.bench-feast-{os.getpid()}.db"
    if "sqlite-feast" in args.stores:
        cfg = load_config(repo / "feature_store.yaml")
        cfg["online_store"] = {**cfg["online_store"], "layout": "feast", "path": feast_db}
        write_config(feast_yaml, cfg)
        configs["sqlite-feast"] = feast_yaml.name
        apply_s = timed([feast, "-c", args.repo, "-f", str(feast_yaml), "apply"], repeats=1)
        print(f"feast apply (sqlite, Feast's layout): {apply_s:.2f} s")
    if "redis" in args.stores:
        write_config(redis_yaml, production_config(project=f"c2i_bench_{os.getpid()}", redis=args.redis))
        configs["redis"] = redis_yaml.name
        apply_s = timed([feast, "-c", args.repo, "-f", str(redis_yaml), "apply"], repeats=1)
        print(f"feast apply (redis, PostgreSQL registry): {apply_s:.2f} s")
    print(
        "\n| store | view | source rows | command | empty window s | whole history s | marginal rows/s "
        "| table digest |"
    )
    print("|---|---|---:|---|---:|---:|---:|---|")
    try:
        for store, config in configs.items():
            for view in args.views:
                rows = pq.ParquetFile(args.features / f"{view}.parquet").metadata.num_rows
                f = ["-f", str(repo / config)] if config else []
                c = ["--config", config] if config else []

                def feast_cli(
                    w: tuple[str, str], v: str = view, f: list[str] = f, exe: str = feast
                ) -> list[str]:
                    return [exe, "-c", args.repo, *f, "materialize", "-v", v, *w]

                def c2i_cli(w: tuple[str, str], v: str = view, c: list[str] = c) -> list[str]:
                    return [c2i, "features", "materialize", *w, "--repo", args.repo, *c, "--views", v]

                # name: (argv for a window, environment)
                commands: dict[str, tuple[Any, dict[str, str] | None]] = {
                    "feast materialize": (feast_cli, None),
                    "c2i features materialize": (c2i_cli, None),
                }
                if runtime_feast is not None:
                    commands["feast materialize, runtime venv"] = (
                        partial(feast_cli, exe=runtime_feast),
                        None,
                    )
                    commands["feast materialize, runtime venv, PYTHONOPTIMIZE=1"] = (
                        partial(feast_cli, exe=runtime_feast),
                        optimised,
                    )
                for name, (argv, env) in commands.items():
                    empty = timed(argv(EMPTY), env, repeats=args.repeats)
                    whole = timed(argv(WHOLE), env, repeats=args.repeats)
                    rate = rows / (whole - empty) if whole > empty else float("nan")
                    digest = table_digest(repo, demo_project, view) if store == "sqlite" else "n/a"
                    print(
                        f"| {store} | {view} | {rows:,} | {name} | {empty:.2f} | {whole:.2f} | {rate:,.0f} "
                        f"| {digest} |",
                        flush=True,
                    )
    finally:
        if "sqlite-feast" in args.stores:
            feast_yaml.unlink(missing_ok=True)
            (repo / feast_db).unlink(missing_ok=True)
        if "redis" in args.stores:
            subprocess.run(
                [feast, "-c", args.repo, "-f", str(redis_yaml), "teardown"], cwd=REPO, capture_output=True
            )
            redis_yaml.unlink(missing_ok=True)
    print("\nThe store's own speed for the same rows (the demo's SQLite online store read back):")
    print("| view | entities | features | table rows | store | seconds | entities/s |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for view in args.views:
        table, wide_rows, narrow_rows = sqlite_rows(repo, demo_project, view)
        entities = len(wide_rows)
        n_features = len(narrow_rows) // max(1, entities)
        floors = {
            "sqlite3 executemany upsert, one row per entity (wide)": (
                len(wide_rows),
                sqlite_floor(repo, table, wide_rows, True, args.repeats),
            ),
            "sqlite3 executemany upsert, one row per feature (Feast's)": (
                len(narrow_rows),
                sqlite_floor(repo, table, narrow_rows, False, args.repeats),
            ),
        }
        if "redis" in args.stores:
            floors["redis-py pipeline HSET"] = (
                len(narrow_rows),
                redis_floor(args.redis, narrow_rows, args.repeats),
            )
        for name, (n_rows, seconds) in floors.items():
            print(
                f"| {view} | {entities:,} | {n_features} | {n_rows:,} | {name} | {seconds:.2f} | "
                f"{entities / seconds:,.0f} |",
                flush=True,
            )
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
