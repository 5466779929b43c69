"""Freshness benchmark: session end → online-readable latency, push source vs incremental materialize.

For ``--sessions`` sessions, one at a time on the same store: the session's ``session_intent`` row
(64-d embedding, label) is (a) pushed through the ``session_intent_push`` source
(:func:`clicks2intent.features.push.push_session_intents`) and (b) — the current path — appended to
the batch file and made online by ``materialize_incremental``; the latency is from the call until
plain ``get_online_features`` returns the new embedding. The embedding itself is synthetic (the
encoder's time is measured by benchmarks/bench_embed.py).

    python benchmarks/bench_push.py [--sessions 20] [--background 50000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_offline import open_config  # noqa: E402
from offline_data import write_sources  # noqa: E402

from clicks2intent.features import push as P  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402
from clicks2intent.names.paths import FEATURE_FILES, ArtifactLayout  # noqa: E402


def _row(i: int, rng: np.random.Generator) -> pd.DataFrame:
    v = rng.normal(size=64).astype(np.float32)
    return pd.DataFrame({C.SESSION_ID: [f"fresh{i:06d}"], C.EVENT_TIMESTAMP: [pd.Timestamp.now(tz="UTC")],
                         C.EMBEDDING: [(v / np.linalg.norm(v)).tolist()], C.INTENT_LABEL: ["L01"],
                         C.INTENT_CONFIDENCE: [0.9], C.TAXONOMY_VERSION: ["bench"]})  # fmt: skip


def _wait(store, sid: str, t0: float, timeout: float = 600.0) -> float:
    while time.perf_counter() - t0 < timeout:
        if P.online_session_intent(store, [sid])[C.EMBEDDING][0] is not None:
            return time.perf_counter() - t0
        time.sleep(0.005)
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=10, help="fresh sessions per path")
    p.add_argument("--background", type=int, default=20_000, help="sessions already in the batch file")
    p.add_argument("--config", default="duckdb+arrow", help="bench_offline configuration of the store")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="c2i-bench-push-"))
    rng = np.random.default_rng(0)
    try:
        features = ArtifactLayout(root).features
        write_sources(features, args.background, 1000)
        store = open_config(root, args.config, "sqlite", features, argparse.Namespace(dim=64, ray_cpus=2))
        store.materialize_incremental(pd.Timestamp.now(tz="UTC"))
        path = features / FEATURE_FILES["session_intent"]
        lat: dict[str, list[float]] = {"push": [], "materialize_incremental (current)": []}
        for i in range(args.sessions):  # interleaved, so load bursts hit both alike
            row = _row(2 * i, rng)
            t0 = time.perf_counter()
            P.push_session_intents(store, row)
            lat["push"].append(_wait(store, row[C.SESSION_ID][0], t0))
            row = _row(2 * i + 1, rng)
            t0 = time.perf_counter()
            table = pq.read_table(path)
            new = (
                pa.Table.from_pandas(row, preserve_index=False).select(table.schema.names).cast(table.schema)
            )
            pq.write_table(pa.concat_tables([table, new]), path)
            store.materialize_incremental(pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1))
            lat["materialize_incremental (current)"].append(_wait(store, row[C.SESSION_ID][0], t0))
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"\nsession end -> online-readable, SQLite, {args.background} sessions in the batch file, load {load}"
        )
        for name, xs in lat.items():
            print(
                f"  {name:<36} p50 {np.median(xs) * 1e3:9.1f} ms   max {np.max(xs) * 1e3:9.1f} ms   n {len(xs)}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
