"""Featurisation, batch vs online parity, the TorchScript export and the streaming ``c2i embed`` job."""

from __future__ import annotations

import os

# Before torch loads OpenMP (see clicks2intent/encoder.py): spinning workers crawl on a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dataclasses import replace  # noqa: E402
from datetime import datetime  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from clicks2intent.cli import main as cli_main  # noqa: E402
from clicks2intent.encoder.embed import (  # noqa: E402
    CHECKPOINT_FILE,
    OUTPUT_SCHEMA,
    SERVING_FILE,
    SessionEmbedder,
    embed_file,
    export_torchscript,
    featurise,
    length_batches,
    load_torchscript,
    query_ngram_ids,
)
from clicks2intent.encoder.model import (  # noqa: E402
    MISSING_ID,
    N_SPECIAL,
    OOV_ID,
    EncoderCheckpoint,
    EncoderConfig,
    Vocabulary,
    build_model,
    save_checkpoint,
)
from clicks2intent.encoder.train import TrainConfig, train_encoder  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402

CONFIG = EncoderConfig(
    d_model=32, n_heads=4, n_layers=1, d_ff=64, embedding_dim=16, max_len=6, query_buckets=512
)
PAGES = ["home", "rates", "mortgage_calculator", "apply_start", "search", "credit_cards"]
T0 = pd.Timestamp("2026-03-01 10:00", tz="UTC")


def _vocabs() -> dict[str, Vocabulary]:
    return {
        C.PAGE_TYPE: Vocabulary(PAGES),
        C.CHANNEL: Vocabulary(["web", "app"]),
        C.DEVICE: Vocabulary(["mobile"]),
    }


def _events(n_sessions: int = 12, seed: int = 0) -> pd.DataFrame:
    """Contract events, shuffled rows, lengths 1..9 (some beyond max_len), every modality sometimes missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        t = T0 + pd.Timedelta(minutes=7 * s)
        for j in range(int(rng.integers(1, 10))):
            page = PAGES[int(rng.integers(0, len(PAGES)))] if j != 3 else "never_seen_page"
            rows.append(
                {
                    C.SESSION_ID: f"s{s:02d}",
                    C.EVENT_TIMESTAMP: t,
                    C.PAGE_TYPE: page,
                    C.CHANNEL: "web" if s % 3 else "app",
                    C.DWELL_SECONDS: None if j % 4 == 1 else float(rng.exponential(30)),
                    C.SEARCH_QUERY: "mortgage rates today" if page == "search" else None,
                    C.DEVICE: "mobile" if s % 2 else None,
                }
            )
            t = t + pd.Timedelta(seconds=float(rng.exponential(40)))
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = build_model(CONFIG, _vocabs()).eval()
    out = tmp_path_factory.mktemp("encoder")
    save_checkpoint(EncoderCheckpoint(CONFIG, _vocabs(), model, {}), out / CHECKPOINT_FILE)
    export_torchscript(model, out / SERVING_FILE)
    return str(out)


@pytest.fixture(scope="module")
def embedder(encoder_dir) -> SessionEmbedder:
    return SessionEmbedder.load(encoder_dir, device="cpu", batch_size=4)


def test_query_hashing_is_stable_bounded_and_words_first() -> None:
    ids = query_ngram_ids("Mortgage  RATES!", CONFIG)
    assert ids == query_ngram_ids("mortgage rates", CONFIG)  # case and punctuation do not matter
    assert all(1 <= i < CONFIG.query_buckets for i in ids)
    assert ids[:2] == query_ngram_ids("mortgage", CONFIG)[:1] + query_ngram_ids("rates", CONFIG)[:1]
    assert len(query_ngram_ids("word " * 500, CONFIG)) == CONFIG.max_query_ngrams
    assert query_ngram_ids("", CONFIG) == []
    # a typo shares character trigrams with the right spelling
    assert len(set(query_ngram_ids("mortage", CONFIG)) & set(query_ngram_ids("mortgage", CONFIG))) >= 3


def test_featurise_orders_by_time_truncates_to_last_events_and_keeps_session_end() -> None:
    events = _events()
    table = pa.Table.from_pandas(events, preserve_index=False)
    arrays = featurise(table, _vocabs(), CONFIG)
    sorted_events = events.sort_values([C.SESSION_ID, C.EVENT_TIMESTAMP])
    for i, sid in enumerate(arrays.session_ids):
        session = sorted_events[sorted_events[C.SESSION_ID] == sid]
        kept = session.tail(CONFIG.max_len)  # the LAST max_len events
        lo, hi = arrays.offsets[i], arrays.offsets[i + 1]
        assert hi - lo == len(kept) and arrays.n_events[i] == len(session)
        assert (
            arrays.page[lo:hi].tolist() == _vocabs()[C.PAGE_TYPE].lookup(kept[C.PAGE_TYPE].tolist()).tolist()
        )
        assert arrays.session_end[i] == session[C.EVENT_TIMESTAMP].max().value // 1000
        times = arrays.time[lo:hi]
        assert times[0] == 0 and (np.diff(times) >= 0).all()
    assert OOV_ID in arrays.page  # "never_seen_page"
    assert MISSING_ID in arrays.device and np.isnan(arrays.dwell).any()


def test_featurise_with_required_columns_only_and_clear_errors() -> None:
    table = pa.table(
        {
            C.SESSION_ID: ["a", "a", "b"],
            C.PAGE_TYPE: ["home", "zzz", "rates"],
            C.EVENT_TIMESTAMP: [T0, T0, T0],
        }
    )
    arrays = featurise(table, _vocabs(), CONFIG)
    assert len(arrays) == 2 and arrays.page.tolist() == [N_SPECIAL, OOV_ID, N_SPECIAL + 1]
    assert (arrays.channel == MISSING_ID).all() and np.isnan(arrays.dwell).all()
    with pytest.raises(ValueError, match="page_type"):
        featurise(table.drop_columns([C.PAGE_TYPE]), _vocabs(), CONFIG)
    bad = table.set_column(2, C.EVENT_TIMESTAMP, pa.array(["x", "y", "z"]))
    with pytest.raises(ValueError, match="event_timestamp"):
        featurise(bad, _vocabs(), CONFIG)


def test_batch_and_online_give_the_same_vector(embedder) -> None:
    """The contract: embed_events (batched, padded, eager) == embed_session (one session, TorchScript)."""
    events = _events()
    batch = embedder.embed_events(events).set_index(C.SESSION_ID)
    assert embedder.serving is not None
    for sid, session in events.groupby(C.SESSION_ID):
        records = session.drop(columns=[C.SESSION_ID]).to_dict("records")  # any row order
        online = embedder.embed_session(records)
        assert online.dtype == np.float32 and online.shape == (embedder.dim,)
        np.testing.assert_allclose(online, batch.loc[sid, C.EMBEDDING], atol=2e-5)
        np.testing.assert_allclose(embedder.embed_session(session), online, atol=1e-6)  # a frame works too


def test_batch_composition_does_not_change_vectors(encoder_dir) -> None:
    events = _events(20)
    small = SessionEmbedder.load(encoder_dir, batch_size=3).embed_events(events).set_index(C.SESSION_ID)
    large = SessionEmbedder.load(encoder_dir, batch_size=64).embed_events(events).set_index(C.SESSION_ID)
    np.testing.assert_allclose(
        np.stack(small.loc[large.index, C.EMBEDDING]), np.stack(large[C.EMBEDDING]), atol=2e-5
    )


def test_torchscript_export_matches_eager(encoder_dir, embedder) -> None:
    arrays = embedder.featurise(pa.Table.from_pandas(_events(), preserve_index=False))
    batch = arrays.batch(np.arange(len(arrays)))
    scripted = load_torchscript(f"{encoder_dir}/{SERVING_FILE}")
    keys = ("page", "dwell", "time", "channel", "device", "query", "query_table", "lengths")
    with torch.inference_mode():
        eager = embedder.model(**batch)
        exported = scripted(*(batch[k] for k in keys))
    torch.testing.assert_close(exported, eager, atol=2e-5, rtol=0)


def test_online_session_with_missing_modalities_and_empty_session(embedder) -> None:
    v = embedder.embed_session([{C.PAGE_TYPE: "home"}, {C.PAGE_TYPE: "brand_new_page"}])
    assert np.isclose(np.linalg.norm(v), 1.0, atol=1e-5)
    empty = embedder.embed_session([])
    assert empty.shape == (embedder.dim,) and np.isclose(np.linalg.norm(empty), 1.0, atol=1e-5)
    naive = embedder.embed_session(
        [
            {C.PAGE_TYPE: "home", C.EVENT_TIMESTAMP: datetime(2026, 3, 1, 10)},
            {C.PAGE_TYPE: "rates", C.EVENT_TIMESTAMP: "2026-03-01T10:00:30"},
        ]  # fmt: skip
    )
    aware = embedder.embed_session(
        [
            {C.PAGE_TYPE: "home", C.EVENT_TIMESTAMP: T0},
            {C.PAGE_TYPE: "rates", C.EVENT_TIMESTAMP: T0 + pd.Timedelta(seconds=30)},
        ]
    )
    np.testing.assert_allclose(naive, aware, atol=1e-6)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({C.PAGE_TYPE: ""}, C.PAGE_TYPE),
        ({C.EVENT_TIMESTAMP: T0}, C.PAGE_TYPE),
        ({C.PAGE_TYPE: "home", C.DWELL_SECONDS: -1.0}, C.DWELL_SECONDS),
        ({C.PAGE_TYPE: "home", C.DWELL_SECONDS: "long"}, C.DWELL_SECONDS),
        ({C.PAGE_TYPE: "home", C.CHANNEL: "tv"}, C.CHANNEL),
        ({C.PAGE_TYPE: "home", C.EVENT_TIMESTAMP: "not a time"}, C.EVENT_TIMESTAMP),
    ],
)
def test_online_bad_input_names_the_field(embedder, event, field) -> None:
    with pytest.raises(ValueError, match=field):
        embedder.embed_session([event])


def test_embed_file_streams_partitions_and_matches_in_memory(tmp_path, encoder_dir, embedder) -> None:
    events = _events(30)
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    whole = embed_file(encoder_dir, path, tmp_path / "a.parquet", progress=False)
    parts = embed_file(encoder_dir, path, tmp_path / "b.parquet", max_rows_in_memory=40, progress=False)
    assert parts.n_partitions > 1 and whole.n_partitions == 1
    assert whole.n_sessions == parts.n_sessions == events[C.SESSION_ID].nunique()
    a = pq.read_table(tmp_path / "a.parquet")
    assert a.schema.equals(OUTPUT_SCHEMA)
    a_df = a.to_pandas().set_index(C.SESSION_ID)
    b_df = pd.read_parquet(tmp_path / "b.parquet").set_index(C.SESSION_ID).loc[a_df.index]
    np.testing.assert_allclose(np.stack(a_df[C.EMBEDDING]), np.stack(b_df[C.EMBEDDING]), atol=2e-5)
    ends = events.groupby(C.SESSION_ID)[C.EVENT_TIMESTAMP].max()
    assert (a_df[C.EVENT_TIMESTAMP] == ends.loc[a_df.index].dt.floor("us")).all()  # the contract is µs
    direct = embedder.embed_events(events).set_index(C.SESSION_ID).loc[a_df.index]
    np.testing.assert_allclose(np.stack(direct[C.EMBEDDING]), np.stack(a_df[C.EMBEDDING]), atol=2e-5)
    assert not list(tmp_path.glob("c2i-embed-*"))  # spill partitions cleaned up


def test_embed_command_with_channel_filter(tmp_path, encoder_dir, capsys) -> None:
    events = _events(15)
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    out = tmp_path / "emb.parquet"
    code = cli_main(
        [
            "embed",
            "--encoder",
            encoder_dir,
            "--events",
            str(path),
            "--out",
            str(out),
            "--channel",
            "web",
            "--quiet",
        ]
    )
    assert code == 0 and "sessions/s" in capsys.readouterr().out
    got = pd.read_parquet(out)
    assert set(got[C.SESSION_ID]) == set(events.loc[events[C.CHANNEL] == "web", C.SESSION_ID])
    assert (
        cli_main(
            [
                "embed",
                "--encoder",
                encoder_dir,
                "--events",
                str(tmp_path / "missing.parquet"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    events.drop(columns=[C.PAGE_TYPE]).to_parquet(tmp_path / "bad.parquet")
    assert (
        cli_main(
            ["embed", "--encoder", encoder_dir, "--events", str(tmp_path / "bad.parquet"), "--out", str(out)]
        )
        == 2
    )
    assert "page_type" in capsys.readouterr().err


def test_batch_output_needs_timestamps(embedder) -> None:
    events = _events(3)
    events[C.EVENT_TIMESTAMP] = pd.Series(pd.NaT, index=events.index, dtype="datetime64[us, UTC]")
    with pytest.raises(ValueError, match="event_timestamp"):
        embedder.embed_events(events)


# --- the batch job's inference path (FusedInputs + publish) equals the model's forward ------------


def _reference_vectors(embedder: SessionEmbedder, arrays) -> np.ndarray:
    """``SessionEncoder.forward`` on ``SessionArrays.batch``, one session per call (no padding at all)."""
    with torch.inference_mode():
        rows = [embedder.model(**arrays.batch(np.array([i])))[0].numpy() for i in range(len(arrays))]
    return np.stack(rows)


def _arrays(embedder: SessionEmbedder, n_sessions: int = 40):
    return embedder.featurise(pa.Table.from_pandas(_events(n_sessions, seed=5), preserve_index=False))


@pytest.mark.parametrize(
    "variant",
    [{}, {"pooling": "last"}, {"pooling": "mean", "n_layers": 2}, {"causal": False, "pooling": "attention"},
     {"output": "vector+next"}, {"normalize": False, "output": "next"}],
)  # fmt: skip
def test_batch_job_inference_equals_the_model_forward(variant) -> None:
    """embed_arrays (ids once per chunk, one embedding_bag per padded batch) == forward, every variant."""
    torch.manual_seed(3)
    config = replace(CONFIG, **variant)
    model = build_model(config, _vocabs()).eval()
    with torch.no_grad():  # unit-scale rows (init is std 0.02): a wrong row id or sum order shows
        for e in (model.page_emb, model.dwell_emb, model.gap_emb, model.channel_emb, model.device_emb,
                  model.query_bag, model.pos_emb, model.rev_pos_emb):  # fmt: skip
            if e is not None:
                e.weight.normal_()
                if e.padding_idx is not None:
                    e.weight[e.padding_idx].zero_()
    embedder = SessionEmbedder(EncoderCheckpoint(config, _vocabs(), model), batch_size=4)
    arrays = _arrays(embedder)
    assert arrays.query.any() and (arrays.lengths == config.max_len).any()  # queries, truncation covered
    shapes: list[tuple[int, int]] = []
    fast = embedder.embed_arrays(arrays, shapes=shapes)
    assert any(s < w for s, w in shapes) or len({w for _, w in shapes}) > 1  # several widths were run
    np.testing.assert_allclose(fast, _reference_vectors(embedder, arrays), atol=1e-5, rtol=0)


def test_batch_job_inference_on_a_trained_checkpoint(tmp_path) -> None:
    """The same on a (tiny) trained encoder, and after new weights are loaded into the embedder's model."""
    events = pa.Table.from_pandas(_events(80, seed=2), preserve_index=False)
    t_cfg = TrainConfig(max_steps=6, batch_size=16, lr=1e-2, warmup_steps=1, evals_per_epoch=1)
    trained = train_encoder(events, CONFIG, t_cfg, progress=False).checkpoint
    embedder = SessionEmbedder(trained, batch_size=8)
    arrays = _arrays(embedder)
    np.testing.assert_allclose(embedder.embed_arrays(arrays), _reference_vectors(embedder, arrays), atol=1e-5)
    torch.manual_seed(9)
    embedder.model.load_state_dict(build_model(CONFIG, trained.vocabularies).state_dict())
    np.testing.assert_allclose(embedder.embed_arrays(arrays), _reference_vectors(embedder, arrays), atol=1e-5)


def test_length_batches_cover_every_session_once_with_little_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.geometric(0.25, 5000), 64)
    batches = length_batches(lengths, 256, max_padding=0.05, min_sessions=32)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert all(len(b) <= 256 for b in batches)
    widths = [int(lengths[b].max()) for b in batches]
    assert widths == sorted(widths)  # shortest first
    for b, w in zip(batches, widths, strict=True):  # more padding only to join a small batch to longer ones
        assert lengths[b].sum() >= 0.95 * len(b) * w or (lengths[b] < w).sum() < 32
    padded = sum(len(b) * w for b, w in zip(batches, widths, strict=True))
    assert padded < 1.03 * lengths.sum()
    assert len(length_batches(np.array([], dtype=np.int64), 8)) == 0
