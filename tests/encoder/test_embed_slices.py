"""``c2i embed`` reads a session-sorted file in slices cut at session boundaries: the model starts after
the first slice, and every session is still embedded whole (the same vectors as one read of the file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clicks2intent.encoder import pipeline
from clicks2intent.names import columns as C

PAGES = ["home", "rates", "search", "product_mortgage", "apply_start"]


def _events(n_sessions: int = 300, seed: int = 2) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        t = pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(minutes=s)
        for _ in range(int(rng.integers(1, 9))):
            rows.append({C.SESSION_ID: f"s{s:04d}", C.EVENT_TIMESTAMP: t, C.PAGE_TYPE: PAGES[int(rng.integers(0, 5))],
                         C.CHANNEL: "web" if s % 5 else "app", C.DWELL_SECONDS: float(rng.exponential(20))})  # fmt: skip
            t += pd.Timedelta(seconds=30)
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clicks2intent.encoder.model import EncoderConfig
    from clicks2intent.encoder.train import TrainConfig, save_encoder_dir, train_encoder

    cfg = EncoderConfig(
        d_model=16, n_heads=2, n_layers=1, d_ff=32, embedding_dim=8, max_len=6, query_buckets=64
    )
    t_cfg = TrainConfig(max_steps=2, batch_size=16, warmup_steps=1, evals_per_epoch=1)
    checkpoint = train_encoder(_events(), cfg, t_cfg, progress=False).checkpoint
    return save_encoder_dir(checkpoint, tmp_path_factory.mktemp("enc") / "encoder")


def test_slices_hold_whole_sessions_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(_events(), path)
    parts = list(pipeline._partitions(path, [C.SESSION_ID, C.CHANNEL], 10**9, "web", tmp_path, slice_rows=37))
    assert len(parts) > 10
    ids = [p[C.SESSION_ID].to_pylist() for p in parts]
    assert all(a[-1] < b[0] for a, b in zip(ids, ids[1:], strict=False))  # no session in two slices
    assert sum(ids, []) == [s for s in _events()[C.SESSION_ID].to_pylist() if int(s[1:]) % 5]


def test_a_sliced_file_embeds_like_one_read(encoder_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from clicks2intent.encoder import runtime

    path = tmp_path / "events.parquet"
    pq.write_table(_events(), path)
    runtime.embed_file(encoder_dir, path, tmp_path / "whole.parquet", channel="web", progress=False)
    monkeypatch.setattr(pipeline, "SLICE_EVENTS", 50)
    stats = runtime.embed_file(encoder_dir, path, tmp_path / "sliced.parquet", channel="web", progress=False)
    assert stats.n_partitions > 10
    a, b = (
        pd.read_parquet(tmp_path / f).sort_values(C.SESSION_ID).reset_index(drop=True)
        for f in ("whole.parquet", "sliced.parquet")
    )
    assert (
        list(a[C.SESSION_ID]) == list(b[C.SESSION_ID])
        and (a[C.EVENT_TIMESTAMP] == b[C.EVENT_TIMESTAMP]).all()
    )
    np.testing.assert_allclose(np.stack(b[C.EMBEDDING]), np.stack(a[C.EMBEDDING]), atol=1e-5)


def test_an_unsorted_file_is_read_whole(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "shuffled.parquet"
    table = _events()
    pq.write_table(table.take(np.random.default_rng(0).permutation(table.num_rows)), path)
    assert not pipeline._sorted_by_session(pq.ParquetFile(path))
    parts = list(pipeline._partitions(path, [C.SESSION_ID], 10**9, None, tmp_path, slice_rows=37))
    assert len(parts) == 1 and parts[0].num_rows == table.num_rows
