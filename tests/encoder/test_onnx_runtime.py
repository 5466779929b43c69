"""The ONNX batch runtime: ``encoder.onnx`` equals the eager model, ``c2i embed --runtime`` picks it
only when it matches the checkpoint, and its process never imports torch or pandas."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see encoder/model.py)

import itertools  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from clicks2intent.cli import encoder as cli_encoder  # noqa: E402
from clicks2intent.cli import main as cli_main  # noqa: E402
from clicks2intent.encoder.embed import SessionEmbedder, embed_file  # noqa: E402
from clicks2intent.encoder.export import export_onnx  # noqa: E402
from clicks2intent.encoder.model import (  # noqa: E402
    EncoderCheckpoint,
    EncoderConfig,
    FusedInputs,
    Vocabulary,
    build_model,
    save_checkpoint,
)
from clicks2intent.encoder.runtime import OnnxEmbedder, bucket_ids, select_runtime  # noqa: E402
from clicks2intent.errors import ArtifactError, ConfigError  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402
from clicks2intent.names.paths import CHECKPOINT_FILE, ONNX_FILE  # noqa: E402

VOCABS = {
    C.PAGE_TYPE: Vocabulary(["home", "rates", "apply", "search"]),
    C.CHANNEL: Vocabulary(["web", "app"]),
    C.DEVICE: Vocabulary(["mobile", "desktop"]),
}
TINY = dict(d_model=16, n_heads=2, n_layers=2, d_ff=32, embedding_dim=8, max_len=8, query_buckets=128)
QUERIES = np.array(["mortgage rates", "lost card", "x", "open a savings account today"], dtype=object)


def _events(n_sessions: int = 40, seed: int = 0) -> pa.Table:
    """Lengths 1..13 (beyond max_len 8), unknown pages, missing dwell/device/times, several queries."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 14, n_sessions)
    n = int(lengths.sum())
    session = np.repeat(np.arange(n_sessions), lengths)
    ts = np.arange(n, dtype=np.int64) * 7_000_000 + rng.integers(0, 3_000_000, n) + 1_767_225_600_000_000
    ts_valid = rng.random(n) > 0.05
    ts_valid[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = True  # every session keeps an end time
    dwell = rng.lognormal(2, 2, n)
    dwell[rng.random(n) < 0.2] = np.nan
    dwell[rng.random(n) < 0.05] = 0.0
    pages = np.array(["home", "rates", "apply", "search", "never_seen"], dtype=object)[rng.integers(0, 5, n)]
    queries = np.where(rng.random(n) < 0.3, QUERIES[rng.integers(0, len(QUERIES), n)], None)
    devices = np.array(["mobile", "desktop", None, "tv"], dtype=object)[rng.integers(0, 4, n)]
    channels = np.array(["web", "app"], dtype=object)[session % 2]
    return pa.table(
        {
            C.SESSION_ID: pa.array([f"s{i:03d}" for i in session], pa.string()),
            C.EVENT_TIMESTAMP: pa.array(ts, pa.int64(), mask=~ts_valid).cast(pa.timestamp("us", tz="UTC")),
            C.PAGE_TYPE: pa.array(pages, pa.string()),
            C.CHANNEL: pa.array(channels, pa.string()),
            C.DWELL_SECONDS: pa.array(dwell, pa.float64(), from_pandas=True),
            C.SEARCH_QUERY: pa.array(queries, pa.string()),
            C.DEVICE: pa.array(devices, pa.string()),
        }
    )


def _model(config: EncoderConfig, seed: int = 0) -> torch.nn.Module:
    """A random model with weights far enough from init that every part moves the output."""
    torch.manual_seed(seed)
    model = build_model(config, VOCABS).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _encoder_dir(path: Path, config: EncoderConfig, seed: int = 0) -> Path:
    model = _model(config, seed)
    path.mkdir(parents=True, exist_ok=True)
    save_checkpoint(EncoderCheckpoint(config, VOCABS, model, {}), path / CHECKPOINT_FILE)
    export_onnx(model, path / ONNX_FILE, VOCABS, path / CHECKPOINT_FILE)
    return path


VARIANTS = list(itertools.product(("last", "mean", "attention", "last+attention"), (True, False)))


@pytest.mark.parametrize(("pooling", "causal"), VARIANTS)
def test_onnx_graph_equals_the_eager_forward(tmp_path, pooling, causal) -> None:
    table = _events()
    for output in ("vector", "next", "vector+next"):
        config = EncoderConfig(**TINY, pooling=pooling, causal=causal, output=output)
        model = _model(config)
        encoder_dir = _encoder_dir(tmp_path / output, config)
        onnx = OnnxEmbedder.load(encoder_dir, batch_size=7, threads=1)  # batches of 7, not the example's 3
        arrays = onnx.featurise(table)
        assert arrays.lengths.max() == config.max_len and (arrays.n_events > config.max_len).any()
        got = onnx.embed_arrays(arrays)
        with torch.inference_mode():
            want = model(**arrays.batch(np.arange(len(arrays)))).numpy()
        assert got.shape == want.shape == (len(arrays), onnx.dim)
        np.testing.assert_allclose(
            got, want, atol=1e-5, rtol=0, err_msg=f"{pooling} causal={causal} {output}"
        )
        one = onnx.embed_arrays(arrays.slice(5, 6))  # batch of one
        np.testing.assert_allclose(one, want[5:6], atol=1e-5, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_event_ids_are_the_fused_inputs_ids(tmp_path, causal) -> None:
    config = EncoderConfig(**TINY, causal=causal)
    onnx = OnnxEmbedder.load(_encoder_dir(tmp_path, config), threads=1)
    model = _model(config)
    arrays = onnx.featurise(_events(seed=3))
    fused = FusedInputs(model)
    used = np.unique(np.concatenate([[0], arrays.query]))
    query = np.searchsorted(used, arrays.query)
    want = fused.event_ids(
        *(torch.from_numpy(np.ascontiguousarray(getattr(arrays, k))) for k in ("page", "dwell", "time")),
        torch.from_numpy(arrays.channel),
        torch.from_numpy(arrays.device),
        torch.from_numpy(query),
        torch.from_numpy(arrays.offsets),
    )
    np.testing.assert_array_equal(onnx.event_ids(arrays, query), want.numpy())
    seconds = np.array([np.nan, -5, 0, 1e-3, 1, 30, 1800, 1e7], dtype=np.float32)
    np.testing.assert_array_equal(
        bucket_ids(seconds, onnx.dwell_edges), model.dwell_bucket(torch.from_numpy(seconds)).numpy()
    )


def _embed(encoder_dir: Path, events: Path, out: Path, *extra: str) -> int:
    return cli_main(["embed", "--encoder", str(encoder_dir), "--events", str(events), "--out", str(out), "--quiet", "--device", "cpu", *extra])  # fmt: skip


def test_embed_file_onnx_and_torch_write_the_same_rows(tmp_path, capsys) -> None:
    encoder_dir = _encoder_dir(tmp_path / "enc", EncoderConfig(**TINY))
    events = tmp_path / "events.parquet"
    pq.write_table(_events(60, seed=1), events)
    stats = {}
    for runtime in ("onnx", "torch"):
        assert _embed(encoder_dir, events, tmp_path / f"{runtime}.parquet", "--runtime", runtime) == 0
        assert f"({runtime} runtime)" in capsys.readouterr().out
    onnx, torch_ = (pq.read_table(tmp_path / f"{r}.parquet") for r in ("onnx", "torch"))
    assert onnx.schema == torch_.schema
    assert onnx[C.SESSION_ID].to_pylist() == torch_[C.SESSION_ID].to_pylist()
    assert onnx[C.EVENT_TIMESTAMP].equals(torch_[C.EVENT_TIMESTAMP])
    np.testing.assert_allclose(
        np.array(onnx[C.EMBEDDING].to_pylist()), np.array(torch_[C.EMBEDDING].to_pylist()), atol=1e-5, rtol=0
    )
    # the library entry points, with small chunks and partitions: same phases and batch shapes
    from clicks2intent.encoder import runtime

    for name, fn in (("o", runtime.embed_file), ("t", embed_file)):
        stats[name] = fn(encoder_dir, events, tmp_path / f"{name}.parquet", batch_size=5, chunk_sessions=17,
                         max_rows_in_memory=150, progress=False)  # fmt: skip
    assert stats["o"].batch_shapes == stats["t"].batch_shapes and stats["o"].n_partitions > 1
    assert set(stats["o"].phase_seconds) == set(stats["t"].phase_seconds)
    a, b = (pq.read_table(tmp_path / f"{n}.parquet") for n in ("o", "t"))
    assert a[C.SESSION_ID].to_pylist() == b[C.SESSION_ID].to_pylist()


def test_stale_or_missing_export_is_refused_by_onnx_and_skipped_by_auto(tmp_path, capsys, caplog) -> None:
    config = EncoderConfig(**TINY)
    encoder_dir = _encoder_dir(tmp_path / "enc", config)
    # retrained: a new checkpoint, the old export left behind
    save_checkpoint(
        EncoderCheckpoint(config, VOCABS, _model(config, seed=1), {}), encoder_dir / CHECKPOINT_FILE
    )
    with pytest.raises(ArtifactError, match="stale export"):
        OnnxEmbedder.load(encoder_dir)
    events = tmp_path / "events.parquet"
    pq.write_table(_events(10), events)
    assert _embed(encoder_dir, events, tmp_path / "a.parquet", "--runtime", "onnx") == 2
    err = capsys.readouterr().err.strip()
    assert "stale export" in err and len(err.splitlines()) == 1
    with caplog.at_level("INFO"):
        assert _embed(encoder_dir, events, tmp_path / "b.parquet", "--runtime", "auto") == 0
    assert "(torch runtime)" in capsys.readouterr().out
    assert "torch runtime (" in caplog.text and "stale export" in caplog.text
    want = SessionEmbedder.load(encoder_dir, device="cpu").embed_table(_events(10))  # the NEW checkpoint
    got = pq.read_table(tmp_path / "b.parquet")
    np.testing.assert_allclose(
        np.array(got[C.EMBEDDING].to_pylist()), np.array(want[C.EMBEDDING].to_pylist()), atol=1e-6
    )
    (encoder_dir / ONNX_FILE).unlink()
    assert select_runtime(encoder_dir, "auto", "cpu") is None
    with pytest.raises(ArtifactError, match="no ONNX export"):
        select_runtime(encoder_dir, "onnx", "cpu")
    with pytest.raises(ConfigError, match="CUDA"):
        select_runtime(encoder_dir, "onnx", "cuda")
    assert select_runtime(encoder_dir, "torch", "cpu") is None


def test_engine_choices_match_ray_jobs() -> None:
    from clicks2intent.features.ray_jobs import ENGINES

    assert cli_encoder.ENGINES == ENGINES


_NO_TORCH = """
import sys
from clicks2intent.cli import main
code = main(sys.argv[1:])
heavy = [m for m in ("torch", "pandas") if m in sys.modules]
print("HEAVY", heavy, "ORT", "onnxruntime" in sys.modules)
sys.exit(code or (3 if heavy else 0))
"""


def test_onnx_embed_process_never_imports_torch_or_pandas(tmp_path) -> None:
    encoder_dir = _encoder_dir(tmp_path / "enc", EncoderConfig(**TINY))
    events = tmp_path / "events.parquet"
    pq.write_table(_events(30), events)
    for runtime in ("onnx", "auto"):
        out = tmp_path / f"{runtime}.parquet"
        args = ["embed", "--encoder", str(encoder_dir), "--events", str(events), "--out", str(out), "--quiet",
                "--device", "cpu", "--runtime", runtime]  # fmt: skip
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        proc = subprocess.run(
            [sys.executable, "-c", _NO_TORCH, *args], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "HEAVY [] ORT True" in proc.stdout and "(onnx runtime)" in proc.stdout
        assert pq.read_table(out).num_rows == 30


def test_arrow_numpy_helpers_equal_pyarrows_own_conversions() -> None:
    from clicks2intent.encoder.pipeline import arrow_to_numpy, numpy_to_arrow, strings_to_arrow

    ints = pa.chunked_array([pa.array([1, None, 3], pa.int32()), pa.array([None, 5], pa.int32())])
    np.testing.assert_array_equal(arrow_to_numpy(ints, fill=-1), ints.fill_null(-1).to_numpy())
    floats = pa.array([0.5, None, 2.0, 3.0]).slice(1)  # an offset into the buffers
    np.testing.assert_array_equal(arrow_to_numpy(floats, fill=np.nan), floats.to_numpy(zero_copy_only=False))
    assert len(arrow_to_numpy(pa.array([], pa.int64()))) == 0
    values = np.arange(5, dtype=np.int64) * 7
    assert numpy_to_arrow(values, pa.int64()).equals(pa.array(values))
    names = ["s1", "ünïcode", "", "x" * 40]
    assert strings_to_arrow(names).equals(pa.array(names, pa.string()))


@pytest.mark.parametrize(
    ("policy", "spins"), [("PASSIVE", "0"), ("ACTIVE", "1"), ("active", "1"), (None, "0")]
)
def test_onnx_threads_spin_only_where_omp_wait_policy_is_active(tmp_path, monkeypatch, policy, spins) -> None:
    encoder_dir = _encoder_dir(tmp_path / "enc", EncoderConfig(**TINY))
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    options = OnnxEmbedder.load(encoder_dir).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == spins
