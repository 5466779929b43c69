"""Benchmark: ``feast materialize`` as a platform engineer runs it — fixed cost and marginal rows/s per view.

After ``make demo`` (its ``feature_repo`` applied, its sources built), for each view: the ``feast`` CLI
over an empty window (the fixed cost: interpreter, imports, registry, DuckDB, the online store's set-up)
and over the whole history (fixed + every row), so marginal rows/s = rows / (whole − empty). Beside them,
in the same run: ``python -c "import feast"`` (what Feast's own import costs), the same with
``PYTHONOPTIMIZE=1`` (typeguard's instrumentation off, as ``python -O`` does: a reference, not a
recommendation: it also drops every ``assert``), and ``c2i features materialize`` (the same
materialisation through our CLI, which imports Feast without typeguard's instrumentation). Each figure is
the median of ``--repeats`` runs; the load average is printed beside.

    .venv/bin/python benchmarks/bench_materialize_cli.py --views session_intent session_activity
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EMPTY = ("2000-01-01T00:00:00", "2000-01-02T00:00:00")
WHOLE = ("2000-01-01T00:00:00", "2030-01-01T00:00:00")


def timed(argv: list[str], env: dict[str, str] | None = None, repeats: int = 3) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
        runs.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", nargs="+", default=["session_intent", "session_activity"])
    ap.add_argument("--repo", default="feature_repo")
    ap.add_argument("--features", type=Path, default=REPO / "artifacts" / "features")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    py, feast, c2i = str(BIN / "python"), str(BIN / "feast"), str(BIN / "c2i")
    optimised = {**os.environ, "PYTHONOPTIMIZE": "1"}
    print(f"load before: {os.getloadavg()[0]:.2f}")
    ref = {
        "python -c pass": timed([py, "-c", "pass"], repeats=args.repeats),
        "python -c 'import feast'": timed([py, "-c", "import feast"], repeats=args.repeats),
        "PYTHONOPTIMIZE=1 python -c 'import feast'": timed(
            [py, "-c", "import feast"], optimised, args.repeats
        ),
    }
    for name, s in ref.items():
        print(f"{name}: {s:.2f} s")
    print("\n| view | rows | command | empty window s | whole history s | marginal rows/s |")
    print("|---|---:|---|---:|---:|---:|")
    for view in args.views:
        rows = pq.ParquetFile(args.features / f"{view}.parquet").metadata.num_rows
        commands = {
            "feast materialize": lambda w, v=view: [feast, "-c", args.repo, "materialize", "-v", v, *w],
            "c2i features materialize": lambda w, v=view: [
                c2i,
                "features",
                "materialize",
                *w,
                "--repo",
                args.repo,
                "--views",
                v,
            ],  # fmt: skip
        }
        for name, argv in commands.items():
            empty = timed(argv(EMPTY), repeats=args.repeats)
            whole = timed(argv(WHOLE), repeats=args.repeats)
            rate = rows / (whole - empty) if whole > empty else float("nan")
            print(f"| {view} | {rows:,} | {name} | {empty:.2f} | {whole:.2f} | {rate:,.0f} |", flush=True)
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
