"""Self-supervised training of the session encoder (no labels): what ``c2i train-encoder`` runs.

Three objectives, weighted by :class:`TrainConfig` (defaults chosen on MSNBC, see its comments):

* **next-event prediction** (the main one): with the causal encoder, the page type of the event after
  EVERY prefix, predicted from that prefix's session vector, in one pass over a lightly masked view
  (the last event is never hidden) — this is what puts order and recency into the embedding
  (bag-of-pages + last page is the bar to beat). A bidirectional encoder predicts the page after
  one random strict prefix per session instead (lightly masked, locally reordered);
* **contrastive (InfoNCE)** between two views' vectors, in-batch negatives; identical sessions in a
  batch are not used as each other's negatives (short sessions repeat a lot on real sites). The
  causal encoder's views keep order: one drops a random share of the OLDEST events (the end stays),
  both hide a few events;
* **masked-event modelling** (off by default: it diluted the next-event signal on MSNBC): predict each
  hidden event's page type and dwell bucket from its state.

Sessions are split by time: the latest ``holdout_fraction`` is left out entirely (for evaluation), the
latest ``val_fraction`` of the rest drives early stopping, training uses the earlier ones. Seeds are
fixed; validation augmentations are drawn from a fixed seed, so validation losses are comparable.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clicks2intent.common.settings import passive_openmp

passive_openmp()  # before torch loads OpenMP (common.settings says why)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from clicks2intent.data.contract import require_columns  # noqa: E402
from clicks2intent.data.splits import SessionSplit, split_sessions_by_time  # noqa: E402
from clicks2intent.data.world import World, check_page_types  # noqa: E402
from clicks2intent.encoder.config import TrainConfig  # noqa: E402, F401  (defined torch-free; re-exported)
from clicks2intent.encoder.embed import (  # noqa: E402
    CHECKPOINT_FILE,
    INPUT_COLUMNS,
    SERVING_FILE,
    SessionArrays,
    count_values,
    export_torchscript,
    featurise,
    filter_channel,
    input_columns,
    pick_device,
    progress_bar,
)
from clicks2intent.encoder.export import export_onnx  # noqa: E402
from clicks2intent.encoder.model import (  # noqa: E402
    N_SPECIAL,
    EncoderCheckpoint,
    EncoderConfig,
    SessionEncoder,
    Vocabulary,
    build_model,
    save_checkpoint,
)
from clicks2intent.errors import ContractError  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402
from clicks2intent.names.paths import ONNX_FILE  # noqa: E402

logger = logging.getLogger(__name__)

IGNORE = -100  # cross-entropy target for "no target here"


class SSLHeads(nn.Module):
    """Training-only prediction heads; not part of the served encoder (the next-event head is)."""

    def __init__(self, encoder: SessionEncoder) -> None:
        super().__init__()
        d = encoder.config.d_model
        self.masked_page = nn.Linear(d, encoder.n_pages)
        self.masked_dwell = nn.Linear(d, encoder.config.n_time_buckets)


# --- time split ---------------------------------------------------------------------------------


TimeSplit = SessionSplit  # the encoder's split: session ids of train / validation / holdout


def time_split(table: pa.Table, val_fraction: float, holdout_fraction: float) -> TimeSplit:
    """Split sessions by their first event's time: train < validation < holdout (never row-random)."""
    return split_sessions_by_time(table, val_fraction, holdout_fraction)


def _rows_of(table: pa.Table, session_ids: np.ndarray) -> pa.Table:
    return table.filter(pc.is_in(table[C.SESSION_ID], value_set=pa.array(session_ids, pa.string())))


def build_vocabularies(table: pa.Table, config: TrainConfig) -> dict[str, Vocabulary]:
    """Page/channel/device vocabularies from the training rows only."""
    return {
        C.PAGE_TYPE: Vocabulary.from_counts(
            count_values(table, C.PAGE_TYPE), min_count=config.min_page_count, max_size=config.max_page_vocab
        ),
        C.CHANNEL: Vocabulary.from_counts(count_values(table, C.CHANNEL)),
        C.DEVICE: Vocabulary.from_counts(count_values(table, C.DEVICE), max_size=1000),
    }


# --- augmentations (vectorised over a padded batch) ---------------------------------------------

_PER_EVENT = ("page", "dwell", "time", "channel", "device", "query")


def _gather(
    batch: dict[str, torch.Tensor], index: torch.Tensor, lengths: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Re-index every per-event tensor by ``index`` [B, L] and set new lengths."""
    out = dict(batch)
    for k in _PER_EVENT:
        out[k] = torch.gather(batch[k], 1, index)
    out["lengths"] = lengths
    return out


def crop_view(
    batch: dict[str, torch.Tensor], min_fraction: float, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """A random contiguous crop keeping between ``min_fraction`` and all of each session."""
    lengths = batch["lengths"]
    frac = min_fraction + (1 - min_fraction) * torch.rand(lengths.shape, generator=gen)
    new_len = torch.clamp(torch.ceil(frac * lengths).long(), 1)
    start = (torch.rand(lengths.shape, generator=gen) * (lengths - new_len + 1)).long()
    width = batch["page"].shape[1]
    index = (start.unsqueeze(1) + torch.arange(width).unsqueeze(0)).clamp(max=width - 1)
    return _gather(batch, index, new_len)


def tail_crop_view(
    batch: dict[str, torch.Tensor], min_fraction: float, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """Drop a random number of the EARLIEST events, keeping between ``min_fraction`` and all of each session.

    An order-keeping augmentation: the end of the session (what recency features read) and the order
    of what is kept never change, so two views differ only in how much older history they show.
    """
    lengths = batch["lengths"]
    frac = min_fraction + (1 - min_fraction) * torch.rand(lengths.shape, generator=gen)
    new_len = torch.clamp(torch.ceil(frac * lengths).long(), 1)
    width = batch["page"].shape[1]
    index = ((lengths - new_len).unsqueeze(1) + torch.arange(width).unsqueeze(0)).clamp(max=width - 1)
    return _gather(batch, index, new_len)


def random_mask(lengths: torch.Tensor, width: int, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Bernoulli mask over real events, with at least one hidden event per session."""
    valid = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
    mask = (torch.rand((len(lengths), width), generator=gen) < prob) & valid
    none = ~mask.any(dim=1)
    forced = (torch.rand(lengths.shape, generator=gen) * lengths).long()
    mask[none, forced[none]] = True
    return mask


def prefix_view(
    batch: dict[str, torch.Tensor], config: TrainConfig, gen: torch.Generator
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A random strict prefix of each session (whole one-event sessions), its next page, and a light mask.

    The prefix is lightly masked and some adjacent events swap content (timestamps stay in place), but
    its last event is never hidden or moved: recency is what the next-event target rewards.
    """
    lengths = batch["lengths"]
    width = batch["page"].shape[1]
    cut = 1 + (torch.rand(lengths.shape, generator=gen) * (lengths - 1).clamp(min=0)).long()
    cut = torch.where(lengths >= 2, cut.clamp(max=lengths - 1), lengths)
    rows = torch.arange(len(lengths))
    target = batch["page"][rows, cut.clamp(max=width - 1)]
    target = torch.where(lengths >= 2, target, torch.full_like(target, IGNORE))

    pos = torch.arange(width).unsqueeze(0)
    # Swap i <-> i+1 where chosen, for i < cut-2 (the last kept event stays put); no overlapping swaps.
    swap = (torch.rand((len(lengths), width), generator=gen) < config.swap_prob) & (
        pos < (cut - 2).unsqueeze(1)
    )
    swap[:, 1:] &= ~swap[:, :-1]
    index = pos.expand(len(lengths), width).clone()
    index[swap] += 1
    shifted = torch.zeros_like(swap)
    shifted[:, 1:] = swap[:, :-1]
    index[shifted] -= 1
    view = dict(batch)
    for k in ("page", "dwell", "channel", "device", "query"):  # content moves, the timeline does not
        view[k] = torch.gather(batch[k], 1, index)
    view["lengths"] = cut
    mask = (torch.rand((len(lengths), width), generator=gen) < config.view_mask_prob) & (
        pos < (cut - 1).unsqueeze(1)
    )
    return view, target, mask


def _session_keys(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """A hash of each session's page sequence, to keep duplicates out of each other's negatives."""
    width = batch["page"].shape[1]
    weights = torch.tensor(
        [(1_000_003**i) % (2**61 - 1) for i in range(1, width + 1)], dtype=torch.int64
    ).unsqueeze(0)
    pos = torch.arange(width).unsqueeze(0)
    pages = batch["page"].masked_fill(pos >= batch["lengths"].unsqueeze(1), 0)
    return (pages * weights).sum(dim=1) * 31 + batch["lengths"]


def _masked_losses(
    model: SessionEncoder,
    heads: SSLHeads,
    states: torch.Tensor,
    view: dict[str, torch.Tensor],
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-event page and dwell losses at the hidden events (dwell only where the data has it)."""
    hidden = states[mask]
    page_loss = F.cross_entropy(heads.masked_page(hidden), view["page"][mask])
    dwell_target = model.dwell_bucket(view["dwell"][mask]) - N_SPECIAL
    dwell_target = torch.where(dwell_target >= 0, dwell_target, torch.full_like(dwell_target, IGNORE))
    if (dwell_target != IGNORE).any():
        dwell_loss = F.cross_entropy(heads.masked_dwell(hidden), dwell_target, ignore_index=IGNORE)
    else:  # e.g. MSNBC: no dwell at all
        dwell_loss = hidden.sum() * 0.0
    return page_loss, dwell_loss


def _contrastive(
    z_a: torch.Tensor, z_b: torch.Tensor, keys: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Symmetric InfoNCE with in-batch negatives; identical sessions are not each other's negatives."""
    logits = F.normalize(z_a, dim=-1) @ F.normalize(z_b, dim=-1).T / temperature
    duplicate = (keys.unsqueeze(0) == keys.unsqueeze(1)) & ~torch.eye(
        len(keys), dtype=torch.bool, device=keys.device
    )
    logits = logits.masked_fill(duplicate, float("-inf"))
    labels = torch.arange(len(keys), device=keys.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def _causal_next_loss(
    model: SessionEncoder,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    gen: torch.Generator,
    device: torch.device,
    targets_per_session: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next page after EVERY prefix in one causal pass (view: light masking, the last event kept).

    Returns the loss and the whole-session vectors (the contrastive term's second view). With
    ``targets_per_session`` (``next_weighting="event"``) the targets' cross-entropies are summed and
    divided by the batch's sessions x that mean, so each target weighs the same in every batch.
    """
    lengths = batch["lengths"]
    width = batch["page"].shape[1]
    pos = torch.arange(width).unsqueeze(0)
    mask = (torch.rand((len(lengths), width), generator=gen) < config.view_mask_prob) & (
        pos < (lengths - 1).unsqueeze(1)
    )
    target = torch.full_like(batch["page"], IGNORE)
    target[:, :-1] = batch["page"][:, 1:]
    target = target.masked_fill(pos >= (lengths - 1).unsqueeze(1), IGNORE)
    view = {k: v.to(device) for k, v in batch.items()}
    mask, target = mask.to(device), target.to(device)
    states, padding = model.encode_events(**view, mask=mask)
    vectors = model.prefix_vectors(states, padding)
    rows = torch.arange(len(lengths), device=device)
    z = vectors[rows, view["lengths"] - 1]
    valid = target != IGNORE
    if not valid.any():
        loss = z.sum() * 0.0
    elif targets_per_session:
        logits = model.next_page_logits(vectors[valid])
        total = F.cross_entropy(logits, target[valid], reduction="sum")
        loss = total / (len(lengths) * targets_per_session)
    else:
        loss = F.cross_entropy(model.next_page_logits(vectors[valid]), target[valid])
    return loss, z


def _prefix_next_loss(
    model: SessionEncoder,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    gen: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bidirectional encoders: the next page after one random strict prefix per session."""
    view, target, mask = prefix_view(batch, config, gen)
    view = {k: v.to(device) for k, v in view.items()}
    mask, target = mask.to(device), target.to(device)
    states, padding = model.encode_events(**view, mask=mask)
    z = model.pool(states, padding, view["lengths"])
    if (target != IGNORE).any():
        loss = F.cross_entropy(model.next_page_logits(z), target, ignore_index=IGNORE)
    else:
        loss = z.sum() * 0.0
    return loss, z


def ssl_losses(
    model: SessionEncoder,
    heads: SSLHeads,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    gen: torch.Generator,
    device: torch.device,
    targets_per_session: float | None = None,
) -> dict[str, torch.Tensor]:
    """The three objectives on one batch (augmentations drawn on CPU from ``gen``, then moved).

    View A: the session with its oldest events cropped (causal) or a random contiguous crop
    (bidirectional), ``mask_prob`` of it hidden → masked-event losses and one contrastive vector. View B: next-event
    prediction (every prefix when causal) → the other contrastive vector.
    """
    if model.causal:
        view_a = tail_crop_view(batch, config.crop_min_fraction, gen)
    else:
        view_a = crop_view(batch, config.crop_min_fraction, gen)
    width = view_a["page"].shape[1]
    mask_a = random_mask(view_a["lengths"], width, config.mask_prob, gen)
    if model.causal:
        next_loss, z_b = _causal_next_loss(model, batch, config, gen, device, targets_per_session)
    else:
        next_loss, z_b = _prefix_next_loss(model, batch, config, gen, device)
    keys = _session_keys(batch).to(device)

    view_a = {k: v.to(device) for k, v in view_a.items()}
    mask_a = mask_a.to(device)
    states_a, pad_a = model.encode_events(**view_a, mask=mask_a)
    z_a = model.pool(states_a, pad_a, view_a["lengths"])
    if config.w_masked_page > 0 or config.w_masked_dwell > 0:
        page_loss, dwell_loss = _masked_losses(model, heads, states_a, view_a, mask_a)
    else:  # off by default (see TrainConfig): no head work
        page_loss = dwell_loss = z_a.sum() * 0.0
    if config.w_contrastive > 0:
        contrastive = _contrastive(z_a, z_b, keys, config.temperature)
    else:
        contrastive = z_a.sum() * 0.0

    total = (
        config.w_masked_page * page_loss
        + config.w_masked_dwell * dwell_loss
        + config.w_next_page * next_loss
        + config.w_contrastive * contrastive
    )
    return {
        "loss": total,
        "masked_page": page_loss,
        "masked_dwell": dwell_loss,
        "next_page": next_loss,
        "contrastive": contrastive,
    }


# --- the loop -----------------------------------------------------------------------------------


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Length-bucketed batches: shuffle, sort within windows of 50 batches, shuffle the batch order."""
    n = len(lengths)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    window = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, n, window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    batches = [b for b in batches if len(b) >= 2]  # InfoNCE needs a negative
    if rng is not None:
        rng.shuffle(batches)
    return batches


@torch.no_grad()
def evaluate(
    model: SessionEncoder,
    heads: SSLHeads,
    arrays: SessionArrays,
    config: TrainConfig,
    device: torch.device,
    targets_per_session: float | None = None,
) -> dict[str, float]:
    """Mean SSL losses over a fixed set of augmentations (same seed every call, so comparable)."""
    model.eval()
    gen = torch.Generator().manual_seed(config.seed + 1)
    totals: dict[str, float] = {}
    weight = 0
    for idx in _batches(arrays.lengths, config.batch_size, None):
        losses = ssl_losses(model, heads, arrays.batch(idx), config, gen, device, targets_per_session)
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + float(v) * len(idx)
        weight += len(idx)
    model.train()
    return {k: v / max(weight, 1) for k, v in totals.items()}


@dataclass
class TrainResult:
    checkpoint: EncoderCheckpoint
    history: list[dict[str, Any]]
    train_sessions_per_second: float


def _as_table(events: pa.Table | pd.DataFrame, channel: str | None) -> pa.Table:
    if isinstance(events, pd.DataFrame):
        require_columns(events.columns, "events")
        events = pa.Table.from_pandas(
            events[[c for c in INPUT_COLUMNS if c in events.columns]], preserve_index=False
        )
    require_columns(events.column_names, "events")
    events = filter_channel(events, channel)
    if events.num_rows == 0:
        raise ContractError("events: no rows to train on")
    return events


def train_encoder(
    events: pa.Table | pd.DataFrame,
    encoder_config: EncoderConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    channel: str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Build vocabularies, split by time, train with early stopping, return the best checkpoint."""
    encoder_config = encoder_config or EncoderConfig()
    cfg = train_config or TrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = pick_device(cfg.device)

    table = _as_table(events, channel)
    split = time_split(table, cfg.val_fraction, cfg.holdout_fraction)
    train_ids = split.train
    if cfg.max_train_sessions is not None and len(train_ids) > cfg.max_train_sessions:
        train_ids = train_ids[-cfg.max_train_sessions :]  # the most recent: closest to what gets embedded
    train_rows = _rows_of(table, train_ids)
    vocabularies = build_vocabularies(train_rows, cfg)
    train = featurise(train_rows, vocabularies, encoder_config)
    val = featurise(_rows_of(table, split.val), vocabularies, encoder_config)

    model = build_model(encoder_config, vocabularies).to(device)
    heads = SSLHeads(model).to(device)
    # Next-event targets per training session (each session's events after its first, within max_len).
    mean_targets = float(np.maximum(train.lengths - 1, 0).mean()) if len(train) else 0.0
    per_session = mean_targets if cfg.next_weighting == "event" and mean_targets > 0 else None
    params = list(model.parameters()) + list(heads.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates the hashed-query weights (most of the parameters) far faster than the
    # per-tensor loop on CPU (docs/decisions/0009-encoder-and-embedding.md).
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    steps_per_epoch = len(_batches(train.lengths, cfg.batch_size, None))
    if steps_per_epoch == 0:
        raise ContractError(f"events: {len(train)} training session(s) make no batch of >= 2 sessions")
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    eval_every = max(1, steps_per_epoch // cfg.evals_per_epoch)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress_frac = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_frac))))

    history: list[dict[str, Any]] = []
    initial = evaluate(model, heads, val, cfg, device, per_session)
    history.append({"step": 0, "epoch": 0.0, "val": initial})
    best_loss, best_step = initial["loss"], 0
    best_state = copy.deepcopy(model.state_dict())
    stale = 0
    step = 0
    train_seconds = 0.0
    sessions_seen = 0
    started = time.perf_counter()
    bar = progress_bar(progress, total=total_steps, unit="step", desc="train-encoder")
    stop_reason: str | None = None
    model.train()
    try:
        for _epoch in range(cfg.epochs):
            for idx in _batches(train.lengths, cfg.batch_size, rng):
                t0 = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                losses = ssl_losses(model, heads, train.batch(idx), cfg, gen, device, per_session)
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                train_seconds += time.perf_counter() - t0
                sessions_seen += len(idx)
                step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses['loss'].item():.3f}", best_val=f"{best_loss:.3f}")
                if step % eval_every == 0 or step == total_steps:
                    val_losses = evaluate(model, heads, val, cfg, device, per_session)
                    history.append(
                        {"step": step, "epoch": round(step / steps_per_epoch, 3), "val": val_losses}
                    )
                    if val_losses["loss"] < best_loss - 1e-4:
                        best_loss, best_step, stale = val_losses["loss"], step, 0
                        best_state = copy.deepcopy(model.state_dict())
                    else:
                        stale += 1
                        if stale >= cfg.patience:
                            stop_reason = "early_stopping"
                if stop_reason is None and step >= total_steps:
                    stop_reason = (
                        "max_steps" if cfg.max_steps is not None and step >= cfg.max_steps else "epochs"
                    )
                if (
                    stop_reason is None
                    and cfg.max_minutes is not None
                    and time.perf_counter() - started > 60 * cfg.max_minutes
                ):
                    stop_reason = "max_minutes"
                if stop_reason is not None:
                    break
            if stop_reason is not None:
                break
    finally:
        if bar is not None:
            bar.close()
    stop_reason = stop_reason or "epochs"
    if history[-1]["step"] != step:  # stopped by the clock between evaluations: judge the last weights too
        val_losses = evaluate(model, heads, val, cfg, device, per_session)
        history.append({"step": step, "epoch": round(step / steps_per_epoch, 3), "val": val_losses})
        if val_losses["loss"] < best_loss - 1e-4:
            best_loss, best_step = val_losses["loss"], step
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    speed = sessions_seen / train_seconds if train_seconds > 0 else float("nan")
    metadata = {
        "train_config": asdict(cfg),
        "channel": channel,
        "n_train_sessions": len(train),
        "n_val_sessions": len(val),
        "n_holdout_sessions": len(split.holdout),
        "next_targets_per_session": mean_targets,
        "train_end": split.train_end,
        "holdout_start": split.holdout_start,
        "holdout_first_session": split.holdout_first_session,
        "steps": step,
        "best_step": best_step,
        "best_val_loss": best_loss,
        "initial_val_loss": initial["loss"],
        "stop_reason": stop_reason,
        "train_sessions_per_second": speed,
        "device": str(device),
        "history": history,
    }
    checkpoint = EncoderCheckpoint(encoder_config, vocabularies, model.cpu(), metadata)
    logger.info(
        "encoder: %d steps (%s), validation loss %.3f -> %.3f (best at step %d)",
        step,
        stop_reason,
        initial["loss"],
        best_loss,
        best_step,
    )
    return TrainResult(checkpoint, history, speed)


TRAINING_FILE = "training.json"  # the training metadata beside the checkpoint (config, split, history)


def save_encoder_dir(checkpoint: EncoderCheckpoint, out_dir: str | Path, export: bool = True) -> Path:
    """``checkpoint.pt`` (config + vocab + weights), the exports, ``training.json``.

    Exports: TorchScript (``encoder.ts``, online serving) and ONNX (``encoder.onnx``, the torch-free
    batch runtime of ``c2i embed``; it records the checkpoint's fingerprint, so it is written after it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint, out_dir / CHECKPOINT_FILE)
    if export:
        export_torchscript(checkpoint.model, out_dir / SERVING_FILE)
        export_onnx(checkpoint.model, out_dir / ONNX_FILE, checkpoint.vocabularies, out_dir / CHECKPOINT_FILE)
    (out_dir / TRAINING_FILE).write_text(json.dumps(checkpoint.metadata, indent=2, default=str))
    return out_dir


def read_training_events(path: str | Path) -> pa.Table:
    """The columns the encoder uses from an events parquet (others are never loaded)."""
    from clicks2intent.data.contract import readable_file

    with readable_file(path):  # an empty or corrupt file: one clear error, not an Arrow traceback
        return pq.read_table(path, columns=input_columns(path))


def train_encoder_file(
    events_path: str | Path,
    out_dir: str | Path,
    encoder_config: EncoderConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    channel: str | None = None,
    progress: bool = True,
    threads: int | None = None,
    world: World | None = None,
) -> TrainResult:
    """Train on an events parquet and write the encoder directory (what ``c2i train-encoder`` does).

    ``threads`` sets torch's CPU threads (None: torch's choice). ``world``: the events must hold its page
    types (mapped by ``c2i validate --world``): a vocabulary of raw URLs would not match what serving maps.
    """
    if threads:
        torch.set_num_threads(threads)
    table = read_training_events(events_path)
    if world is not None:
        import pyarrow.compute as pc

        check_page_types(pc.unique(table[C.PAGE_TYPE]).to_pylist(), world, f"events ({events_path})")
    result = train_encoder(table, encoder_config, train_config, channel=channel, progress=progress)
    save_encoder_dir(result.checkpoint, out_dir)
    return result
