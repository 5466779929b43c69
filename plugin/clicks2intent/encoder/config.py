"""The encoder's torch-free definitions: config, vocabulary and special ids.

They live here, not in :mod:`clicks2intent.encoder.model` (which re-exports every name), because
the ONNX batch runtime (:mod:`clicks2intent.encoder.runtime`) featurises with them in a process that
never imports torch (``import torch`` is a large share of the embed job's time:
docs/decisions/0009-encoder-and-embedding.md). :class:`TrainConfig` (re-exported by ``train.py``) is
here so that ``c2i embed`` registers ``c2i train-encoder``'s flags without torch. The model itself, its
checkpoint format and the fused inputs stay in ``model.py``, the one readable model file.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from clicks2intent.errors import ConfigError
from clicks2intent.names import columns as C

# Special ids shared by every categorical input (page type, channel, device) and by the dwell/gap
# buckets, so masking and padding mean the same thing everywhere.
PAD_ID = 0  # padding position (never attended to)
MASK_ID = 1  # hidden by the masked-event objective
MISSING_ID = 2  # the event has no value for this modality (e.g. MSNBC has no dwell)
OOV_ID = 3  # a value never seen in training (categoricals) / the first event's gap (time buckets)
FIRST_GAP_ID = OOV_ID  # the first event of a session has no previous event: its own gap bucket
N_SPECIAL = 4
POOLINGS = ("last", "mean", "attention", "last+attention")
NEXT_WEIGHTINGS = ("event", "batch")  # TrainConfig.next_weighting
OUTPUTS = ("vector", "next", "vector+next")


@dataclass
class EncoderConfig:
    """Model hyper-parameters; each default says why it is what it is."""

    d_model: int = 64  # events have ~20-200 page types and few modalities: 64 is enough, keeps CPU fast
    n_heads: int = 4  # 16-d heads; an even count keeps PyTorch's fused CPU Transformer fast path
    n_layers: int = 2  # sessions are short (median < 10 events); two layers see every pair twice
    d_ff: int = 128  # twice d_model: the feed-forward dominates FLOPs; wider bought nothing on MSNBC
    dropout: float = 0.0  # SSL masking/cropping regularise already; dropout costs CPU time per step
    max_len: int = 64  # longer sessions keep their LAST max_len events: recency carries the signal
    # Causal attention and the last event's state: on MSNBC's prefix -> next category probe they beat a
    # bidirectional encoder, attention pooling and the 2nd/3rd-last-page features (the figures are in
    # docs/decisions/0009-encoder-and-embedding.md and
    # docs/decisions/0003-order-features-distilled-inputs-seeds.md).
    causal: bool = True  # event i sees only events <= i: its state IS the prefix's vector (see above)
    pooling: str = "last"  # the last event's state; also "last+attention", "mean", "attention"
    embedding_dim: int = 32  # the published vector (Feast Array(Float32)): compact, few columns for trees
    normalize: bool = True  # unit-length session vector: cosine-ready for aggregation and neighbours
    # What is published: "vector" (embedding_dim), "next" (log P(next page) per page type) or both.
    # "next" scored better on MSNBC (docs/decisions/0009-encoder-and-embedding.md), but its size follows
    # the page vocabulary and it is not unit length, so the vector stays the default.
    output: str = "vector"
    n_time_buckets: int = 16  # dwell and gap are log-bucketed: seconds span 5 orders of magnitude
    dwell_max_seconds: float = 1800.0  # a page read longer than 30 min is "long"; one top bucket
    gap_max_seconds: float = 3600.0  # sessions end after 30 min idle; longer gaps share the top bucket
    query_buckets: int = 16384  # hashed word + char-trigram ids; no model download, collisions rare
    query_char_ngram: int = 3  # trigrams make "mortage"/"mortgage" overlap (typos, plurals)
    max_query_ngrams: int = 48  # bound per query: a pasted paragraph must not blow up a batch

    def __post_init__(self) -> None:
        rules = [
            (
                "d_model",
                self.d_model > 0 and self.d_model % self.n_heads == 0,
                "a positive multiple of n_heads",
            ),
            ("n_heads", self.n_heads > 0, "positive"),
            ("n_layers", self.n_layers > 0, "positive"),
            ("d_ff", self.d_ff > 0, "positive"),
            ("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)"),
            ("max_len", self.max_len >= 2, "at least 2"),
            ("pooling", self.pooling in POOLINGS, f"one of {list(POOLINGS)}"),
            ("output", self.output in OUTPUTS, f"one of {list(OUTPUTS)}"),
            ("embedding_dim", self.embedding_dim > 0, "positive"),
            ("n_time_buckets", self.n_time_buckets >= 2, "at least 2"),
            ("dwell_max_seconds", self.dwell_max_seconds > 0, "positive"),
            ("gap_max_seconds", self.gap_max_seconds > 0, "positive"),
            ("query_buckets", self.query_buckets > 1, "greater than 1"),
            ("query_char_ngram", self.query_char_ngram >= 2, "at least 2"),
            ("max_query_ngrams", self.max_query_ngrams >= 1, "at least 1"),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise ValueError(f"EncoderConfig.{name}={getattr(self, name)!r} must be {rule}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """Rebuild from a checkpoint; unknown keys are an error (a newer format, not silently dropped)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"EncoderConfig: unknown field(s) {unknown} in checkpoint config")
        return cls(**data)


@dataclass
class Vocabulary:
    """A categorical vocabulary: token ``i`` has id ``N_SPECIAL + i``; unseen values map to ``OOV_ID``."""

    tokens: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {t: i + N_SPECIAL for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise ValueError("Vocabulary.tokens must be unique")

    def __contains__(self, token: object) -> bool:
        """Whether ``token`` has its own id (else it maps to OOV)."""
        return token in self._index

    def __len__(self) -> int:
        """Number of ids, specials included: the embedding table size."""
        return N_SPECIAL + len(self.tokens)

    @classmethod
    def build(cls, values: Iterable[Any], *, min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """Most frequent first (ties by name, so builds are deterministic); nulls are not tokens.

        The contract's own OOV token (``columns.OOV_PAGE_TYPE``) is never a token: it must share the
        OOV id with values unseen at training time.
        """
        counts = Counter(v for v in values if isinstance(v, str) and v and v != C.OOV_PAGE_TYPE)
        ranked = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        return cls(ranked[:max_size] if max_size is not None else ranked)

    @classmethod
    def from_counts(
        cls, counts: dict[str, int], *, min_count: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Same ranking as :meth:`build` from precomputed counts (a streaming pass over a big file)."""
        ranked = sorted(
            (t for t, n in counts.items() if n >= min_count and t and t != C.OOV_PAGE_TYPE),
            key=lambda t: (-counts[t], t),
        )
        return cls(ranked[:max_size] if max_size is not None else ranked)

    def lookup(self, values: np.ndarray | list[Any]) -> np.ndarray:
        """Ids for an array of values: None/NaN → MISSING_ID, unseen → OOV_ID (never an error)."""
        out = np.empty(len(values), dtype=np.int64)
        index = self._index
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                out[i] = MISSING_ID
            else:
                out[i] = index.get(v, OOV_ID)
        return out


@dataclass
class TrainConfig:
    """Training hyper-parameters; each default says why."""

    # Fewer epochs left part of the MSNBC probe's gain (docs/decisions/0009-encoder-and-embedding.md).
    epochs: int = 10
    max_steps: int | None = None  # hard bound for quick runs and tests
    max_minutes: float | None = None  # wall-clock bound (breaks step-for-step determinism; off by default)
    batch_size: int = 256  # 255 in-batch negatives for InfoNCE; bigger means fewer, slower CPU steps
    lr: float = 2e-3  # small pre-norm Transformer + AdamW: tolerates a high rate after a short warm-up
    weight_decay: float = 0.01  # AdamW's usual light decay, on weight matrices only (not norms/biases)
    warmup_steps: int = 50  # a few dozen steps stabilise Adam's moments before the full rate
    val_fraction: float = 0.1  # latest 10 % of (non-holdout) sessions: early stopping on later data
    holdout_fraction: float = 0.0  # latest sessions never seen in training (set for honest evaluation)
    max_train_sessions: int | None = 50_000  # most recent ones: bounds a demo run's training time
    patience: int = 3  # evaluations without a better validation loss before stopping
    evals_per_epoch: int = 2  # early stopping needs more than one look per epoch when epochs are few
    min_page_count: int = 2  # a page type seen once cannot be learned; it shares the OOV embedding
    max_page_vocab: int = 5000  # bounds the softmax of the masked/next-page heads
    mask_prob: float = 0.15  # BERT's rate: enough targets per batch, enough context left
    view_mask_prob: float = 0.1  # light masking of the prefix view (the last event is never hidden)
    swap_prob: float = 0.1  # adjacent swaps in the prefix view: order matters, but not every detail
    crop_min_fraction: float = 0.6  # the masked view keeps a contiguous share of the session, at least this
    # Objective weights: chosen on MSNBC's prefix -> next category probe, next-event first, a light
    # contrastive term, no masking (docs/decisions/0009-encoder-and-embedding.md).
    w_masked_page: float = 0.0  # masking diluted the next-event signal (above); kept as an option
    w_masked_dwell: float = 0.0  # dwell buckets are noisy targets; only with the masked objective
    w_next_page: float = 1.0  # the main signal: the page after every prefix, from the prefix's vector
    w_contrastive: float = 0.1  # a light session-identity term (order-keeping views); heavier cost log loss
    # How next-event targets are averaged. "event": every target counts once, whichever batch holds it
    # (summed, divided by batch size x the training sessions' mean targets per session); "batch": the mean
    # per batch, which length-bucketed batches make a per-SESSION average: a target of a long session
    # weighed far less than one of a short session, while a prefix model is used on every prefix.
    # "event" scored better on MSNBC (docs/decisions/0003-order-features-distilled-inputs-seeds.md).
    next_weighting: str = "event"
    temperature: float = 0.1  # InfoNCE temperature on unit vectors (SimCLR range)
    seed: int = 0  # numpy (batches), torch (init) and the augmentation generator all derive from it
    device: str = "auto"  # CUDA when present

    def __post_init__(self) -> None:
        rules = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("batch_size", self.batch_size >= 2, "at least 2 (in-batch negatives)"),
            ("lr", self.lr > 0, "positive"),
            ("val_fraction", 0.0 < self.val_fraction < 1.0, "in (0, 1)"),
            ("holdout_fraction", 0.0 <= self.holdout_fraction < 1.0, "in [0, 1)"),
            ("mask_prob", 0.0 < self.mask_prob < 1.0, "in (0, 1)"),
            ("view_mask_prob", 0.0 <= self.view_mask_prob < 1.0, "in [0, 1)"),
            ("swap_prob", 0.0 <= self.swap_prob <= 1.0, "in [0, 1]"),
            ("crop_min_fraction", 0.0 < self.crop_min_fraction <= 1.0, "in (0, 1]"),
            ("temperature", self.temperature > 0, "positive"),
            ("patience", self.patience >= 1, "at least 1"),
            ("evals_per_epoch", self.evals_per_epoch >= 1, "at least 1"),
            ("next_weighting", self.next_weighting in NEXT_WEIGHTINGS, f"one of {list(NEXT_WEIGHTINGS)}"),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise ConfigError(f"TrainConfig.{name}={getattr(self, name)!r} must be {rule}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"TrainConfig.max_steps={self.max_steps} must be >= 1 when given")
