"""Self-supervised training: time split, augmentations, loss goes down, determinism, the CLI."""

from __future__ import annotations

import os

# Before torch loads OpenMP (see clicks2intent/encoder.py): spinning workers crawl on a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from clicks2intent.cli import main as cli_main  # noqa: E402
from clicks2intent.encoder.embed import CHECKPOINT_FILE, SERVING_FILE, SessionEmbedder  # noqa: E402
from clicks2intent.encoder.model import EncoderConfig  # noqa: E402
from clicks2intent.encoder.train import (  # noqa: E402
    IGNORE,
    TrainConfig,
    crop_view,
    prefix_view,
    random_mask,
    time_split,
    train_encoder,
)
from clicks2intent.names import columns as C  # noqa: E402

TINY = EncoderConfig(
    d_model=32, n_heads=4, n_layers=1, d_ff=64, embedding_dim=16, max_len=12, query_buckets=256
)
FUNNELS = {
    "mortgage": ["home", "mortgages", "rates", "mortgage_calculator", "apply_start"],
    "card": ["home", "credit_cards", "card_compare", "rewards", "apply_start"],
    "fraud": ["login", "security", "report_fraud", "contact", "contact"],
}


def _events(n_sessions: int = 240, seed: int = 0) -> pd.DataFrame:
    """Sessions that walk an intent's funnel (with noise): next pages are predictable from order."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    names = list(FUNNELS)
    rows = []
    for s in range(n_sessions):
        funnel = FUNNELS[names[s % 3]]
        n = int(rng.integers(1, 8))
        t = t0 + pd.Timedelta(minutes=5 * s)
        for j in range(n):
            page = funnel[min(j, len(funnel) - 1)] if rng.random() > 0.15 else "blog"
            rows.append((f"s{s:04d}", t, page, "web", float(rng.lognormal(3, 1)), "mobile" if s % 2 else "desktop",
                         "mortgage rates" if page == "rates" else None))  # fmt: skip
            t = t + pd.Timedelta(seconds=float(rng.exponential(30)))
    cols = [
        C.SESSION_ID,
        C.EVENT_TIMESTAMP,
        C.PAGE_TYPE,
        C.CHANNEL,
        C.DWELL_SECONDS,
        C.DEVICE,
        C.SEARCH_QUERY,
    ]
    return pd.DataFrame(rows, columns=cols)


def _batch(lengths: list[int]) -> dict[str, torch.Tensor]:
    width = max(lengths)
    lengths_t = torch.tensor(lengths)
    valid = torch.arange(width).unsqueeze(0) < lengths_t.unsqueeze(1)
    page = (torch.arange(width).unsqueeze(0) + 10 + 100 * torch.arange(len(lengths)).unsqueeze(1)) * valid
    return {
        "page": page,
        "dwell": torch.rand(len(lengths), width),
        "time": torch.arange(width, dtype=torch.float32).expand(len(lengths), width).clone(),
        "channel": valid.long() * 4,
        "device": valid.long() * 4,
        "query": torch.zeros(len(lengths), width, dtype=torch.long),
        "query_table": torch.zeros(1, 1, dtype=torch.long),
        "lengths": lengths_t,
    }


def test_time_split_orders_train_before_validation_before_holdout() -> None:
    import pyarrow as pa

    events = _events(100).sample(frac=1.0, random_state=1)
    split = time_split(
        pa.Table.from_pandas(events, preserve_index=False), val_fraction=0.2, holdout_fraction=0.1
    )
    assert (len(split.train), len(split.val), len(split.holdout)) == (72, 18, 10)
    start = events.groupby(C.SESSION_ID)[C.EVENT_TIMESTAMP].min()
    assert start.loc[split.train].max() <= start.loc[split.val].min()
    assert start.loc[split.val].max() <= start.loc[split.holdout].min()
    assert split.holdout_first_session == "s0090"


def test_holdout_sessions_are_never_trained_on() -> None:
    events = _events(100)
    late = events[C.SESSION_ID] >= "s0090"
    events.loc[late, C.PAGE_TYPE] = "only_in_holdout"
    cfg = TrainConfig(max_steps=1, batch_size=16, holdout_fraction=0.1, min_page_count=1)
    meta = train_encoder(events, TINY, cfg, progress=False).checkpoint
    assert "only_in_holdout" not in meta.vocabularies[C.PAGE_TYPE].tokens
    assert meta.metadata["n_holdout_sessions"] == 10 and meta.metadata["holdout_first_session"] == "s0090"


def test_crop_keeps_a_contiguous_part() -> None:
    gen = torch.Generator().manual_seed(0)
    batch = _batch([1, 5, 10])
    view = crop_view(batch, 0.6, gen)
    assert view["lengths"].tolist()[0] == 1
    for b, n in enumerate(batch["lengths"].tolist()):
        k = int(view["lengths"][b])
        assert int(np.ceil(0.6 * n)) <= k <= n
        pages = view["page"][b, :k]
        assert (pages.diff() == 1).all()  # contiguous run of the original events
        assert int(pages[0]) >= int(batch["page"][b, 0])


def test_prefix_view_targets_the_next_event_and_keeps_the_last_one_in_place() -> None:
    gen = torch.Generator().manual_seed(0)
    batch = _batch([1, 2, 6, 9] * 8)
    view, target, mask = prefix_view(batch, TrainConfig(swap_prob=0.5, view_mask_prob=0.5), gen)
    for b, n in enumerate(batch["lengths"].tolist()):
        k = int(view["lengths"][b])
        if n == 1:
            assert k == 1 and int(target[b]) == IGNORE
            continue
        assert 1 <= k <= n - 1
        assert int(target[b]) == int(batch["page"][b, k])  # the event right after the prefix
        assert int(view["page"][b, k - 1]) == int(batch["page"][b, k - 1])  # last event never moved
        assert not mask[b, k - 1 :].any()  # ...nor masked, and padding is never masked
        assert sorted(view["page"][b, :k].tolist()) == batch["page"][b, :k].tolist()  # a permutation
        assert torch.equal(view["time"][b], batch["time"][b])  # the timeline stays


def test_random_mask_hides_at_least_one_real_event_and_no_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1, 2, 7, 30])
    for _ in range(20):
        mask = random_mask(lengths, 30, 0.15, gen)
        assert mask.any(dim=1).all()
        assert not (mask & (torch.arange(30).unsqueeze(0) >= lengths.unsqueeze(1))).any()
    rate = random_mask(torch.full((400,), 30), 30, 0.15, gen).float().mean()
    assert 0.12 < rate < 0.18


def test_training_lowers_the_validation_loss() -> None:
    cfg = TrainConfig(
        epochs=6,
        batch_size=32,
        lr=3e-3,
        warmup_steps=5,
        patience=10,
        evals_per_epoch=1,
        w_masked_page=1.0,
        w_masked_dwell=0.5,
    )  # fmt: skip  (the optional masked objective too)
    result = train_encoder(_events(), TINY, cfg, progress=False)
    meta = result.checkpoint.metadata
    assert meta["best_val_loss"] < 0.9 * meta["initial_val_loss"]
    first, best = result.history[0]["val"], min(result.history, key=lambda h: h["val"]["loss"])["val"]
    assert best["next_page"] < first["next_page"] and best["masked_page"] < first["masked_page"]
    assert meta["n_train_sessions"] + meta["n_val_sessions"] == 240 and meta["stop_reason"] == "epochs"
    assert meta["train_sessions_per_second"] > 0


def test_default_objectives_are_next_event_and_contrastive() -> None:
    cfg = TrainConfig(epochs=1, batch_size=32, max_steps=3)
    result = train_encoder(_events(), TINY, cfg, progress=False)
    val = result.history[-1]["val"]
    assert val["masked_page"] == 0.0 and val["next_page"] > 0 and val["contrastive"] > 0


def test_training_is_deterministic_for_a_seed() -> None:
    cfg = TrainConfig(max_steps=3, batch_size=32, seed=7)
    a = train_encoder(_events(90), TINY, cfg, progress=False).checkpoint.model.state_dict()
    b = train_encoder(_events(90), TINY, cfg, progress=False).checkpoint.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_restores_the_best_weights() -> None:
    cfg = TrainConfig(epochs=50, batch_size=32, lr=5e-2, warmup_steps=1, patience=1, evals_per_epoch=1)
    meta = train_encoder(_events(120), TINY, cfg, progress=False).checkpoint.metadata
    assert meta["stop_reason"] == "early_stopping"
    assert meta["best_val_loss"] == min(h["val"]["loss"] for h in meta["history"])


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="too few"):
        train_encoder(_events(1), TINY, TrainConfig(), progress=False)
    with pytest.raises(ValueError, match="page_type"):
        train_encoder(_events(10).drop(columns=[C.PAGE_TYPE]), TINY, progress=False)


def test_train_encoder_command_writes_a_usable_encoder_dir(tmp_path, capsys) -> None:
    path = tmp_path / "events.parquet"
    _events(120).to_parquet(path)
    out = tmp_path / "enc"
    args = ["train-encoder", "--events", str(path), "--out", str(out), "--max-steps", "2", "--batch-size", "32",
            "--d-model", "32", "--n-layers", "1", "--embedding-dim", "16", "--holdout-fraction", "0.2", "--quiet"]  # fmt: skip
    assert cli_main(args) == 0
    assert "training sessions/s" in capsys.readouterr().out
    assert (out / CHECKPOINT_FILE).exists() and (out / SERVING_FILE).exists()
    meta = json.loads((out / "training.json").read_text())
    assert meta["n_holdout_sessions"] == 24 and meta["steps"] == 2
    embedder = SessionEmbedder.load(out)
    assert embedder.dim == 16
    assert embedder.embed_session([{C.PAGE_TYPE: "home"}, {C.PAGE_TYPE: "rates"}]).shape == (16,)
    assert cli_main(["train-encoder", "--events", str(tmp_path / "nope.parquet"), "--out", str(out)]) == 2


def test_probe_scores_and_paired_bootstrap() -> None:
    from clicks2intent.evaluation.encoder_probe import _scores, paired_bootstrap

    classes = np.array(["a", "b", "c"], dtype=object)
    y = np.array(["a", "a", "a", "b", "c"], dtype=object)
    proba = np.array([[0.8, 0.1, 0.1]] * 4 + [[0.1, 0.1, 0.8]])  # "b" is never predicted
    s = _scores(y, proba, classes)
    assert s["accuracy"] == pytest.approx(0.8) and s["macro_recall_at_1"] == pytest.approx(2 / 3)
    diff = paired_bootstrap(y, proba, proba, classes, n_boot=20)
    assert diff["log_loss"]["diff"] == 0 and diff["macro_recall_at_1"]["ci95_low"] == 0


def test_encoder_report_command_on_simulated_truth(tmp_path, capsys) -> None:
    events = _events(150)
    truth = pd.DataFrame({C.SESSION_ID: events[C.SESSION_ID].unique()})
    truth[C.TRUE_INTENT] = [list(FUNNELS)[int(s[1:]) % 3] for s in truth[C.SESSION_ID]]
    events.to_parquet(tmp_path / "events.parquet")
    truth.to_parquet(tmp_path / "truth.parquet")
    enc = tmp_path / "enc"
    args = ["train-encoder", "--events", str(tmp_path / "events.parquet"), "--out", str(enc), "--max-steps", "3",
            "--batch-size", "32", "--d-model", "32", "--n-layers", "1", "--embedding-dim", "16", "--quiet"]  # fmt: skip
    assert cli_main(args) == 0
    report_args = ["encoder-report", "--encoder", str(enc), "--events", str(tmp_path / "events.parquet"),
                   "--truth", str(tmp_path / "truth.parquet"), "--out", str(tmp_path / "reports")]  # fmt: skip
    assert cli_main(report_args) == 0
    report = json.loads((tmp_path / "reports" / "encoder_quality.json").read_text())
    names = [r["name"] for r in report["simulated"]["results"]]
    assert names == ["tfidf_pages", "tfidf_pages+last3", "embedding", "tfidf_pages+embedding"]
    assert report["simulated"]["n_test"] == 45 and report["simulated"]["encoder_saw_test_sessions"] is True
    assert "| embedding |" in (tmp_path / "reports" / "encoder_quality.md").read_text()
    assert cli_main(["encoder-report", "--out", str(tmp_path / "r2")]) == 2
