"""Freshness benchmark: session end → online-readable latency, push source vs incremental materialize.

For ``--sessions`` sessions, one at a time on the same store: the session's ``session_intent`` row
(64-d embedding, label) is (a) pushed through the ``session_intent_push`` source
(:func:`clicks2intent.features.push.push_session_intents`) and (b) — the current path — appended to
the batch file and made online by ``materialize_incremental``; the latency is from the call until
plain ``get_online_features`` returns the new embedding. (c) The visitor path: the session row AND
its visitor's new ``visitor_web_intent`` row (the visitor's batch history + the session, aggregated
as ``features build`` does: :func:`clicks2intent.features.push.visitor_intents`) pushed, until the
visitor's online row shows the session's label. The embedding itself is synthetic (the encoder's
time is measured by benchmarks/bench_embed.py); without push, a visitor's row changes only at the
next ``features build`` + ``materialize``.

    python benchmarks/bench_push.py [--sessions 20] [--background 50000]
"""

from __future__ import annotations

import argparse
import json
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
from clicks2intent.names.paths import BUILD_REPORT_FILE, FEATURE_FILES, ArtifactLayout  # noqa: E402


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


def _wait_visitor(store, vid: str, label: str, t0: float, timeout: float = 30.0) -> float:
    while time.perf_counter() - t0 < timeout:
        if P.online_visitor_intent(store, [vid])[P.VISITOR_FEATURES["label"]][0] == label:
            return time.perf_counter() - t0
        time.sleep(0.005)
    return float("nan")


def _build_report(features: Path) -> None:
    """What visitor_intents reads from ``features build``: the classes (here the synthetic labels)."""
    labels = pq.read_table(features / FEATURE_FILES["session_intent"], columns=[C.INTENT_LABEL]).column(0)
    classes = sorted(x for x in labels.unique().to_pylist() if x is not None)
    (features / BUILD_REPORT_FILE).write_text(json.dumps({"classes": classes, "config": {}}))


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
        _build_report(features)
        act = pq.read_table(features / FEATURE_FILES["session_activity"], columns=[C.VISITOR_ID]).column(0)
        visitors = [v for v in act.unique().to_pylist() if v is not None]
        lat: dict[str, list[float]] = {"push": [], "materialize_incremental (current)": [],
                                       "push session + visitor": []}  # fmt: skip
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
            # End = now (after the row was written): a future end left rows made within the next second
            # outside every later window (they never became readable).
            store.materialize_incremental(pd.Timestamp.now(tz="UTC"))
            lat["materialize_incremental (current)"].append(_wait(store, row[C.SESSION_ID][0], t0))
            row = _row(2 * args.sessions + i, rng).assign(**{C.INTENT_LABEL: f"fresh{i}"})
            vid = visitors[(7919 * i) % len(visitors)]  # a visitor with batch history
            t0 = time.perf_counter()
            P.push_session_intents(store, row)
            P.push_visitor_intents(store, P.visitor_intents(row, {row[C.SESSION_ID][0]: vid}, features))
            lat["push session + visitor"].append(_wait_visitor(store, vid, f"fresh{i}", t0))
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
