"""Batch embedding on Ray Data equals the single-process job (local Ray, 2 CPUs).

``c2i embed --engine ray`` against ``c2i embed`` on the same events and encoder; the labelling job on
Ray is tested beside the other labelling tests (tests/intent/test_labelling_ray.py, its LLM server).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicks2intent.cli import main
from clicks2intent.data.world import World
from clicks2intent.names import columns as C

if importlib.util.find_spec("ray") is None:
    if os.environ.get("CI"):
        raise RuntimeError('CI must run the Ray tests, but ray is not installed (pip install -e ".[ray]")')
    pytest.skip('ray extra not installed (pip install -e ".[ray]")', allow_module_level=True)

pytestmark = pytest.mark.slow

PAGES = ["home", "mortgages", "mortgage_rates", "credit_cards", "card_compare", "savings_rates", "search"]
T0 = pd.Timestamp("2026-03-01 10:00", tz="UTC")


def _events(n_sessions: int = 60, seed: int = 3) -> pd.DataFrame:
    """Shuffled contract events: lengths 1..9, web and app, some modalities missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        t = T0 + pd.Timedelta(minutes=5 * s)
        for j in range(int(rng.integers(1, 10))):
            page = PAGES[int(rng.integers(0, len(PAGES)))]
            rows.append(
                {
                    C.SESSION_ID: f"s{s:03d}",
                    C.EVENT_TIMESTAMP: t,
                    C.PAGE_TYPE: page,
                    C.VISITOR_ID: f"v{s % 17:02d}",
                    C.CHANNEL: "web" if s % 4 else "app",
                    C.DWELL_SECONDS: None if j % 3 == 1 else float(rng.exponential(30)),
                    C.SEARCH_QUERY: "mortgage rates" if page == "search" else None,
                    C.DEVICE: "mobile" if s % 2 else "desktop",
                }
            )
            t = t + pd.Timedelta(seconds=float(rng.exponential(40)))
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    for col in C.EVENT_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    return frame[list(C.EVENT_COLUMNS)]


@pytest.fixture(scope="module")
def events_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clicks2intent.data.contract import validate_events, write_events

    out = tmp_path_factory.mktemp("events") / "events.parquet"
    return write_events(validate_events(_events()).events, out)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from clicks2intent.encoder.model import (
        EncoderCheckpoint,
        EncoderConfig,
        Vocabulary,
        build_model,
        save_checkpoint,
    )
    from clicks2intent.names.paths import CHECKPOINT_FILE

    config = EncoderConfig(
        d_model=32, n_heads=4, n_layers=1, d_ff=64, embedding_dim=16, max_len=6, query_buckets=512
    )
    vocabs = {
        C.PAGE_TYPE: Vocabulary(PAGES),
        C.CHANNEL: Vocabulary(["web", "app"]),
        C.DEVICE: Vocabulary(["mobile", "desktop"]),
    }
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("encoder")
    save_checkpoint(
        EncoderCheckpoint(config, vocabs, build_model(config, vocabs).eval(), {}), out / CHECKPOINT_FILE
    )
    return out


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values(C.SESSION_ID).reset_index(drop=True)


def test_ray_embed_equals_single_process(
    ray_cluster: None, events_path: Path, encoder_dir: Path, tmp_path: Path, capsys
) -> None:
    from clicks2intent.features.ray_jobs import RayOptions, ray_embed_file

    common = ["embed", "--encoder", str(encoder_dir), "--events", str(events_path), "--channel", "web"]
    assert main([*common, "--out", str(tmp_path / "local.parquet"), "--quiet", "--batch-size", "8"]) == 0
    assert (
        main([*common, "--out", str(tmp_path / "ray.parquet"), "--engine", "ray", "--batch-size", "8"]) == 0
    )
    assert "(ray, 2 actors; sessions per node: " in capsys.readouterr().out
    local, ray_out = _read(tmp_path / "local.parquet"), _read(tmp_path / "ray.parquet")
    assert len(local) == 45 and list(ray_out[C.SESSION_ID]) == list(local[C.SESSION_ID])  # no app session
    assert (ray_out[C.EVENT_TIMESTAMP] == local[C.EVENT_TIMESTAMP]).all()
    np.testing.assert_allclose(np.stack(ray_out[C.EMBEDDING]), np.stack(local[C.EMBEDDING]), atol=1e-5)
    # Many small shards, read and grouped on the cluster (the path for inputs bigger than the driver
    # should hold): a session is never split across two actor calls (its vector would change).
    stats = ray_embed_file(
        encoder_dir,
        events_path,
        tmp_path / "sharded.parquet",
        channel="web",
        ray=RayOptions(rows_per_shard=20, driver_read_rows=1),
    )
    assert stats.n_partitions >= 8 and stats.n_sessions == 45
    sharded = _read(tmp_path / "sharded.parquet")
    np.testing.assert_allclose(np.stack(sharded[C.EMBEDDING]), np.stack(local[C.EMBEDDING]), atol=1e-5)


def test_ray_embed_missing_encoder_is_one_line(events_path: Path, tmp_path: Path, capsys) -> None:
    code = main(["embed", "--encoder", str(tmp_path / "none"), "--events", str(events_path), "--out",
                 str(tmp_path / "o.parquet"), "--engine", "ray"])  # fmt: skip
    assert code == 2 and "encoder checkpoint not found" in capsys.readouterr().err


def test_ray_engine_materializes_rows_older_than_the_ttl(
    ray_cluster: None, tmp_path: Path, sim_world: World
) -> None:
    """Feast's own ray.engine writes nothing for rows older than now - ttl; ours writes the window's
    latest rows, as the local engine does, readable by plain get_online_features."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clicks2intent.features import build as F
    from clicks2intent.features import definitions as fo
    from clicks2intent.features import store as FS
    from clicks2intent.names.paths import FEATURE_FILES, ArtifactLayout

    features = ArtifactLayout(tmp_path).features
    features.mkdir(parents=True)
    schemas = F.source_schemas(sim_world)
    for name, schema in schemas.items():
        pq.write_table(schema.empty_table(), features / FEATURE_FILES[name])
    old = pd.Timestamp("2024-05-01", tz="UTC")  # far beyond the 30-day session ttl
    rows = {C.SESSION_ID: ["s1", "s2", "s1"], C.EVENT_TIMESTAMP: [old, old, old + pd.Timedelta(hours=1)],
            C.EMBEDDING: [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]], C.INTENT_LABEL: ["a", "b", "c"],
            C.INTENT_CONFIDENCE: [0.5, 0.6, 0.7], C.TAXONOMY_VERSION: ["v1"] * 3}  # fmt: skip
    pq.write_table(
        pa.table(rows, schema=schemas["session_intent"]), features / FEATURE_FILES["session_intent"]
    )
    repo = tmp_path / "repo"
    repo.mkdir()
    FS.write_config(repo / "feature_store.yaml", {
        "project": "c2i_rayeng", "provider": "local", "registry": "registry.db",
        "online_store": {"type": "sqlite", "path": str(repo / "online.db")}, "offline_store": {"type": "duckdb"},
        "batch_engine": {"type": "clicks2intent.features.engines.RayComputeEngine", "max_workers": 1,
                         "write_concurrency": 1},
        "entity_key_serialization_version": 3})  # fmt: skip
    store = FS.open_store(repo)
    objects = fo.build(
        fo.file_sources(str(features)), embedding_dim=4, world=sim_world, artifacts_dir=str(tmp_path)
    )
    store.apply([objects.session, objects.session_intent])
    store.materialize(
        old - pd.Timedelta(days=1), pd.Timestamp.now(tz="UTC"), feature_views=["session_intent"]
    )
    got = store.get_online_features(
        features=["session_intent:embedding", "session_intent:intent_label"],
        entity_rows=[{C.SESSION_ID: "s1"}, {C.SESSION_ID: "s2"}],
    ).to_dict()
    assert got["intent_label"] == ["c", "b"]  # the latest row per session in the window
    assert got["embedding"][0] == pytest.approx([0, 0, 1.0, 0])
