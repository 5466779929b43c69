"""Next-event targets weigh the same whichever batch holds them (``TrainConfig.next_weighting``)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see encoder/model.py)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from clicks2intent.encoder.config import N_SPECIAL, EncoderConfig, TrainConfig, Vocabulary  # noqa: E402
from clicks2intent.encoder.model import build_model  # noqa: E402
from clicks2intent.encoder.train import _causal_next_loss, train_encoder  # noqa: E402
from clicks2intent.errors import ConfigError  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402

CFG = EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, embedding_dim=8, max_len=12, query_buckets=64)


def _model() -> torch.nn.Module:
    vocab = {
        C.PAGE_TYPE: Vocabulary([f"p{i}" for i in range(6)]),
        C.CHANNEL: Vocabulary(["web"]),
        C.DEVICE: Vocabulary(["mobile"]),
    }
    return build_model(CFG, vocab).eval()


def _batch(lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    lengths_t = torch.tensor(lengths)
    valid = torch.arange(width).unsqueeze(0) < lengths_t.unsqueeze(1)
    page = (torch.randint(0, 6, (len(lengths), width), generator=g) + N_SPECIAL) * valid
    return {
        "page": page,
        "dwell": torch.full((len(lengths), width), float("nan")),
        "time": torch.arange(width, dtype=torch.float32).expand(len(lengths), width).clone(),
        "channel": valid.long() * N_SPECIAL,
        "device": valid.long() * N_SPECIAL,
        "query": torch.zeros(len(lengths), width, dtype=torch.long),
        "query_table": torch.zeros(1, 1, dtype=torch.long),
        "lengths": lengths_t,
    }


def _per_target(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of every next-event target of a batch, unaveraged."""
    states, padding = model.encode_events(**batch)
    vectors = model.prefix_vectors(states, padding)
    target = batch["page"][:, 1:]
    valid = torch.arange(target.shape[1]).unsqueeze(0) < (batch["lengths"] - 1).unsqueeze(1)
    return F.cross_entropy(model.next_page_logits(vectors[:, :-1][valid]), target[valid], reduction="none")


@torch.no_grad()
def test_event_weighting_sums_targets_over_a_fixed_norm_and_batch_weighting_averages() -> None:
    """ "event": each target's weight is 1 / (sessions x norm) in a batch of 2-event sessions and in one of
    10-event sessions alike; "batch" divides by the batch's own target count (4 vs 36 here)."""
    model = _model()
    cfg = TrainConfig(view_mask_prob=0.0)
    short, long = _batch([2, 2, 2, 2]), _batch([10, 10, 10, 10], seed=1)
    for batch in (short, long):
        ce = _per_target(model, batch)
        gen = torch.Generator().manual_seed(0)
        event, _ = _causal_next_loss(model, batch, cfg, gen, torch.device("cpu"), targets_per_session=5.0)
        per_batch, _ = _causal_next_loss(model, batch, cfg, gen, torch.device("cpu"))
        assert float(event) == pytest.approx(float(ce.sum()) / (4 * 5.0), rel=1e-5)
        assert float(per_batch) == pytest.approx(float(ce.mean()), rel=1e-5)


def test_training_records_the_norm_and_the_setting_is_checked() -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    rows = []
    for s in range(80):
        for j in range(int(rng.integers(1, 9))):
            rows.append(
                (f"s{s:03d}", t0 + pd.Timedelta(minutes=5 * s + j), f"p{int(rng.integers(0, 6))}", "web")
            )
    events = pd.DataFrame(rows, columns=[C.SESSION_ID, C.EVENT_TIMESTAMP, C.PAGE_TYPE, C.CHANNEL])
    meta = train_encoder(
        events, CFG, TrainConfig(max_steps=2, batch_size=16), progress=False
    ).checkpoint.metadata
    assert meta["train_config"]["next_weighting"] == "event"
    lengths = events.groupby(C.SESSION_ID).size()
    assert 0 < meta["next_targets_per_session"] <= float((lengths - 1).mean()) + 1.0
    with pytest.raises(ConfigError, match="next_weighting"):
        TrainConfig(next_weighting="token")
