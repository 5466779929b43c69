"""Multi-node Ray on one machine: three Ray nodes (``ray.cluster_utils.Cluster``: a raylet and object store
each), the embedding job spread over them, and a worker node SIGKILLed mid-job.

The job must run on every node and give the single-process vectors; with a node killed it must finish
with the same vectors or fail with one line (exit code 5) and write nothing. ``benchmarks/
bench_ray_cluster.py`` runs the same on the demo's data, with the labelling job and Feast's Ray engine.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicks2intent.names import columns as C

if importlib.util.find_spec("ray") is None:
    if os.environ.get("CI"):
        raise RuntimeError('CI must run the Ray tests, but ray is not installed (pip install -e ".[ray]")')
    pytest.skip('ray extra not installed (pip install -e ".[ray]")', allow_module_level=True)

pytestmark = pytest.mark.slow

PAGES = ["home", "mortgages", "mortgage_rates", "credit_cards", "card_compare", "savings_rates", "search"]
ACTORS = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    store = 150 * 2**20
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": store,
                                                      "include_dashboard": False})  # fmt: skip
    for _ in range(2):
        c.add_node(num_cpus=2, object_store_memory=store)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Events (3,000 web sessions), a small encoder with its ONNX export, and the single-process vectors."""
    from clicks2intent.data.contract import validate_events, write_events
    from clicks2intent.encoder.embed import embed_file
    from clicks2intent.encoder.model import EncoderConfig
    from clicks2intent.encoder.train import TrainConfig, save_encoder_dir, train_encoder

    root = tmp_path_factory.mktemp("cluster")
    rng = np.random.default_rng(4)
    rows = []
    t0 = pd.Timestamp("2026-03-01 10:00", tz="UTC")
    for s in range(3000):
        t = t0 + pd.Timedelta(minutes=s)
        for _ in range(int(rng.integers(1, 12))):
            page = PAGES[int(rng.integers(0, len(PAGES)))]
            rows.append({C.SESSION_ID: f"s{s:05d}", C.EVENT_TIMESTAMP: t, C.PAGE_TYPE: page, C.CHANNEL: "web",
                         C.DWELL_SECONDS: float(rng.exponential(30)), C.SEARCH_QUERY: "rates" if page == "search"
                         else None, C.DEVICE: "mobile"})  # fmt: skip
            t = t + pd.Timedelta(seconds=float(rng.exponential(40)))
    events = write_events(validate_events(pd.DataFrame(rows)).events, root / "events.parquet")
    cfg = EncoderConfig(
        d_model=32, n_heads=4, n_layers=1, d_ff=64, embedding_dim=16, max_len=12, query_buckets=256
    )
    t_cfg = TrainConfig(max_steps=2, batch_size=32, warmup_steps=1, evals_per_epoch=1)
    table = pd.read_parquet(events)
    encoder = save_encoder_dir(train_encoder(table, cfg, t_cfg, progress=False).checkpoint, root / "encoder")
    embed_file(encoder, events, root / "local.parquet", progress=False)
    return events, encoder, root / "local.parquet"


def _vectors(path: Path) -> tuple[list[str], np.ndarray]:
    df = pd.read_parquet(path).sort_values(C.SESSION_ID)
    return list(df[C.SESSION_ID]), np.stack(df[C.EMBEDDING])


def test_the_embedding_job_runs_on_every_node_and_equals_one_process(
    cluster: object, inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from clicks2intent.features.ray_jobs import RayOptions, ray_embed_file, task_counts_by_node

    events, encoder, local = inputs
    before = task_counts_by_node()
    stats = ray_embed_file(encoder, events, tmp_path / "ray.parquet", ray=RayOptions(address=cluster.address,
                                                                                      actors=ACTORS))  # fmt: skip
    assert len(stats.nodes) == 3 and sum(stats.nodes.values()) == stats.n_sessions == 3000
    time.sleep(1.5)  # task events reach the GCS within a second
    after = task_counts_by_node()
    ran = {
        n
        for n, c in after.items()
        if (c - before.get(n, Counter()))["MapWorker(MapBatches(_EmbedActor)).submit"]
    }
    assert len(ran) == 3, after
    ids, got = _vectors(tmp_path / "ray.parquet")
    want_ids, want = _vectors(local)
    assert ids == want_ids
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_node_killed_mid_job_finishes_or_fails_in_one_line(
    cluster: object, inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from clicks2intent.features.ray_jobs import task_counts_by_node

    events, encoder, local = inputs
    victim = next(iter(cluster.worker_nodes))
    key = "MapWorker(MapBatches(_EmbedActor)).submit"
    seen = task_counts_by_node().get(victim.node_id, Counter())[key]
    out = tmp_path / "out" / "emb.parquet"
    out.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clicks2intent", "embed", "--encoder", str(encoder), "--events", str(events),
         "--out", str(out), "--quiet", "--engine", "ray", "--ray-address", cluster.address, "--ray-actors",
         str(ACTORS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, C2I_LOG_LEVEL="WARNING"),
    )  # fmt: skip

    def kill() -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 120 and proc.poll() is None:
            if task_counts_by_node().get(victim.node_id, Counter())[key] > seen:
                break
            time.sleep(0.1)
        cluster.remove_node(victim, allow_graceful=False)

    killer = threading.Thread(target=kill)
    killer.start()
    stdout, stderr = proc.communicate(timeout=600)
    killer.join()
    leftovers = [p.name for p in out.parent.iterdir() if p.name != out.name]
    assert leftovers == []
    if proc.returncode == 0:  # Ray restarted the lost actor elsewhere and re-ran its shards
        ids, got = _vectors(out)
        want_ids, want = _vectors(local)
        assert ids == want_ids
        np.testing.assert_allclose(got, want, atol=1e-5)
    else:
        assert proc.returncode == 5, stderr[-2000:]
        errors = [ln for ln in stderr.splitlines() if ln.startswith("c2i embed: error:")]
        assert len(errors) == 1 and "nothing written" in errors[0] and not out.exists()
