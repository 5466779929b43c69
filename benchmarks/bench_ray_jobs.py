"""Batch embedding on Ray Data vs the single-process job, same encoder and events, one run.

``c2i embed`` (clicks2intent.encoder.embed.embed_file, the current path) and ``c2i embed --engine ray``
(clicks2intent.features.ray_jobs.ray_embed_file: local Ray started in-process, ``--ray-cpus`` CPUs,
``--actors`` encoder actors) embed the same events; each figure is wall time from the call to the
output file written (Ray's start-up included and also reported on its own), with ``uptime`` load, and
the largest difference between the two outputs' vectors.

    python benchmarks/bench_ray_jobs.py --encoder artifacts/encoder --events artifacts/data/events.parquet
        [--channel web] [--ray-cpus 2] [--actors 2] [--repeat 1]

Labelling on Ray is the same job around the LLM: its throughput is the endpoint's (the rule decides
most sessions; tests/intent/test_labelling_ray.py checks equal labels and a free re-run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clicks2intent.encoder.embed import embed_file
from clicks2intent.features.ray_jobs import RayOptions, ray_embed_file, ray_session
from clicks2intent.names import columns as C


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values(C.SESSION_ID).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--channel", default="web")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--ray-cpus", type=int, default=2)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--rows-per-shard", type=int, default=RayOptions.rows_per_shard)
    p.add_argument("--repeat", type=int, default=1, help="runs of each path (interleaved)")
    args = p.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="c2i-bench-ray-"))
    options = RayOptions(num_cpus=args.ray_cpus, actors=args.actors, rows_per_shard=args.rows_per_shard)
    figures: dict[str, list[tuple[float, int, str]]] = {"single process (current)": [], "ray": []}
    try:
        t = time.perf_counter()
        with ray_session(options):
            startup = time.perf_counter() - t
            for _ in range(args.repeat):
                for name in figures:
                    path = out / f"{name[:6].strip()}.parquet"
                    t = time.perf_counter()
                    if name == "ray":
                        stats = ray_embed_file(args.encoder, args.events, path, batch_size=args.batch_size,
                                               channel=args.channel, ray=options)  # fmt: skip
                    else:
                        stats = embed_file(args.encoder, args.events, path, batch_size=args.batch_size,
                                           channel=args.channel, progress=False)  # fmt: skip
                    figures[name].append((time.perf_counter() - t, stats.n_sessions, load()))
        a, b = _read(out / "single.parquet"), _read(out / "ray.parquet")
        same_ids = list(a[C.SESSION_ID]) == list(b[C.SESSION_ID])
        diff = (
            float(np.abs(np.stack(a[C.EMBEDDING]) - np.stack(b[C.EMBEDDING])).max())
            if same_ids
            else float("nan")
        )
        print(f"\nembed {figures['ray'][0][1]:,} sessions of {args.events} (channel {args.channel}); "
              f"ray: {args.actors} actors on {args.ray_cpus} CPUs, start-up {startup:.1f} s (not in the figures)")  # fmt: skip
        base = np.median([s for s, _, _ in figures["single process (current)"]])
        for name, runs in figures.items():
            secs = float(np.median([s for s, _, _ in runs]))
            n = runs[0][1]
            print(
                f"  {name:<26} {secs:7.1f} s  {n / secs:>9,.0f} sessions/s  x{base / secs:4.2f}  load {runs[-1][2]}"
            )
        print(f"  same sessions: {same_ids}; max |vector difference|: {diff:.2e}")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
