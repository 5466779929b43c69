"""The session encoder: one readable file with its config, vocabulary, model and checkpoint format.

A web session is a short sequence of events. Each event is embedded from every modality the clickstream
contract has (page type, dwell time, time gap to the previous event, search query text, channel,
device, position from the start), a small pre-norm Transformer mixes the events, and the state of the
session's last event, projected to ``embedding_dim`` and L2-normalised, is the session vector.

Why causal attention and the last event's state, not a bidirectional encoder with a mean: on real
MSNBC sessions a mean-pooled masked+contrastive encoder added nothing over bag-of-pages + last-page
features, while the 2nd/3rd-last pages did carry signal. With causal attention the state at event ``i``
depends only on events ``<= i``, so it is exactly the vector of the prefix ending there: next-event
prediction from that vector trains on every position of every session in one pass (several targets per
session instead of one cut), and what the vector is trained on is what it is used for — a summary of
where the visitor is heading. On MSNBC (prefix → next category, XGBoost baseline; see ``c2i
encoder-report --dataset msnbc``) this is what turned the embedding from a loss into a gain; the
figures are in docs/decisions/0009-encoder-and-embedding.md, the design in docs/architecture.md.

The config dataclass, the vocabulary and the special ids are defined in :mod:`clicks2intent.encoder.config`
(re-exported here): the ONNX batch runtime featurises with them without importing torch.
Featurisation (strings → the integer/float tensors below) lives in :mod:`clicks2intent.encoder.embed` and
is shared by training, the batch job and online serving. Self-supervised objectives live in
:mod:`clicks2intent.encoder.train`. Checkpoints store config + vocabularies + weights, so any job
rebuilds the model without guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clicks2intent.common.settings import passive_openmp

passive_openmp()  # before torch loads OpenMP: its spinning workers starve shared cores

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

# Config, vocabulary and special ids are defined in config.py so that the torch-free ONNX batch runtime
# can featurise without importing this module (and torch); they are re-exported here unchanged.
from clicks2intent.encoder.config import (  # noqa: E402, F401  (re-exported)
    FIRST_GAP_ID,
    MASK_ID,
    MISSING_ID,
    N_SPECIAL,
    OOV_ID,
    OUTPUTS,
    PAD_ID,
    POOLINGS,
    EncoderConfig,
    Vocabulary,
)
from clicks2intent.names import columns as C  # noqa: E402

CHECKPOINT_FORMAT = 2  # 2: causal encoder, next-event head inside the model


class SessionEncoder(nn.Module):
    """Events → contextual event states → one session vector per prefix (the last one is the session's).

    Inputs are padded ``[B, L]`` tensors (events left-aligned, ``lengths`` real events per row):
    ``page``, ``channel``, ``device`` (vocabulary ids), ``dwell`` and ``time`` (float seconds, NaN =
    missing; ``time`` is relative to the session start), ``query`` (row of ``query_table`` per event, 0 =
    no query) and ``query_table`` ``[U, K]`` (hashed n-gram ids per distinct query, 0 = padding).

    With ``causal`` (the default) event ``i`` attends only to events ``<= i``: the state at ``i`` is
    exactly what the encoder would give the prefix that ends at ``i``, so one forward pass yields the
    embedding of every prefix (:meth:`prefix_vectors`) and next-event prediction trains on every
    position, not one cut per session. Right padding then needs no key mask (nothing attends forward).
    The bidirectional variant (``causal=False``) adds a position-from-the-end embedding instead.
    """

    # Plain int/bool/str attributes: the TorchScript export can read neither dataclasses nor globals.
    __constants__ = ["max_len", "n_special", "mask_id", "missing_id", "first_gap_id", "pad_id", "causal",
                     "pooling", "normalize", "n_layers", "output"]  # fmt: skip

    def __init__(self, config: EncoderConfig, n_pages: int, n_channels: int, n_devices: int) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.n_pages = n_pages
        self.max_len = config.max_len
        self.n_special = N_SPECIAL
        self.mask_id = MASK_ID
        self.missing_id = MISSING_ID
        self.first_gap_id = FIRST_GAP_ID
        self.pad_id = PAD_ID
        self.causal = config.causal
        self.n_layers = config.n_layers
        self.pooling = config.pooling
        self.normalize = config.normalize
        self.output = config.output
        n_next = n_pages - N_SPECIAL  # the published next-page distribution covers real page types only
        self.output_dim = {"vector": config.embedding_dim, "next": n_next}.get(
            config.output, config.embedding_dim + n_next
        )
        n_time_ids = N_SPECIAL + config.n_time_buckets
        self.page_emb = nn.Embedding(n_pages, d, padding_idx=PAD_ID)
        self.channel_emb = nn.Embedding(n_channels, d, padding_idx=PAD_ID)
        self.device_emb = nn.Embedding(n_devices, d, padding_idx=PAD_ID)
        self.dwell_emb = nn.Embedding(n_time_ids, d, padding_idx=PAD_ID)
        self.gap_emb = nn.Embedding(n_time_ids, d, padding_idx=PAD_ID)
        # Query text: mean of hashed word/char-n-gram vectors (padding id 0 is excluded from the mean,
        # and an all-padding row — "no query" — gives a zero vector).
        self.query_bag = nn.EmbeddingBag(config.query_buckets, d, mode="mean", padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, d)  # position from the start
        # Position from the end (recency) only without causal attention: in a causal pass the distance
        # to the session's end would tell every prefix how much of the session is still to come.
        self.rev_pos_emb = nn.Embedding(config.max_len, d) if not config.causal else None
        self.input_norm = nn.LayerNorm(d)
        self.input_drop = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d,
            config.n_heads,
            config.d_ff,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,  # pre-norm: stable without warm-up tricks at this size
        )
        # Nested tensors are unavailable with pre-norm; length-bucketed batches keep padding small anyway.
        self.transformer = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d)
        self.attn_score = nn.Linear(d, 1)  # attention pooling's scores (used by the *attention poolings)
        width = 2 * d if config.pooling == "last+attention" else d
        self.proj = nn.Linear(width, config.embedding_dim)
        # The next-event head reads the published vector: training it there is what makes the vector
        # carry order and recency (see train.py); a learnable scale lets the softmax get sharp.
        self.next_page = nn.Linear(config.embedding_dim, n_pages)
        self.next_scale = nn.Parameter(torch.tensor(1.0 if not config.normalize else 4.0))
        # Log-spaced bucket edges in log1p(seconds); buffers so they travel with the weights.
        self.register_buffer(
            "dwell_edges",
            torch.linspace(0.0, math.log1p(config.dwell_max_seconds), config.n_time_buckets - 1),
            persistent=False,
        )
        self.register_buffer(
            "gap_edges",
            torch.linspace(0.0, math.log1p(config.gap_max_seconds), config.n_time_buckets - 1),
            persistent=False,
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """Small normal init (GPT-style) so the sum of eight embeddings starts at a sane scale."""
        if isinstance(module, nn.Embedding | nn.EmbeddingBag):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def time_bucket(self, seconds: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """Seconds → bucket id (N_SPECIAL..); NaN → MISSING_ID. Negative values count as 0 s."""
        ids = torch.bucketize(torch.log1p(seconds.clamp(min=0.0)), edges) + self.n_special
        return torch.where(torch.isnan(seconds), torch.full_like(ids, self.missing_id), ids)

    def dwell_bucket(self, dwell: torch.Tensor) -> torch.Tensor:
        """Dwell-time bucket ids; also the masked-event dwell target."""
        return self.time_bucket(dwell, self.dwell_edges)

    def embed_inputs(
        self,
        page: torch.Tensor,
        dwell: torch.Tensor,
        time: torch.Tensor,
        channel: torch.Tensor,
        device: torch.Tensor,
        query: torch.Tensor,
        query_table: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed event embeddings ``[B, L, d]`` (before the Transformer) and the padding mask.

        ``mask`` (True = hidden) is the masked-event objective's input: a hidden event loses its page
        type, dwell and query, and the gap into the next event is hidden too (otherwise that gap would
        give the dwell away).
        """
        batch, length = page.shape
        positions = torch.arange(length, device=page.device).unsqueeze(0)
        padding = positions >= lengths.unsqueeze(1)

        dwell_ids = self.dwell_bucket(dwell)
        gaps = time[:, 1:] - time[:, :-1]
        gap_ids = torch.cat(
            [torch.full_like(page[:, :1], self.first_gap_id), self.time_bucket(gaps, self.gap_edges)], dim=1
        )
        if mask is not None:
            hidden_gap = mask.clone()
            hidden_gap[:, 1:] |= mask[:, :-1]
            page = page.masked_fill(mask, self.mask_id)
            dwell_ids = dwell_ids.masked_fill(mask, self.mask_id)
            gap_ids = gap_ids.masked_fill(hidden_gap, self.mask_id)
            query = query.masked_fill(mask, 0)
        dwell_ids = dwell_ids.masked_fill(padding, self.pad_id)
        gap_ids = gap_ids.masked_fill(padding, self.pad_id)

        query_vectors = self.query_bag(query_table)  # [U, d]; row 0 is "no query" (all padding → 0)
        # Summed in place: one [B, L, d] buffer instead of seven temporaries (embedding backward
        # needs only the indices, so this is autograd-safe).
        x = self.page_emb(page)
        x += self.dwell_emb(dwell_ids)
        x += self.gap_emb(gap_ids)
        x += self.channel_emb(channel)
        x += self.device_emb(device)
        x += query_vectors[query]
        x += self.pos_emb(positions.clamp(max=self.max_len - 1))
        if self.rev_pos_emb is not None:
            rev = (lengths.unsqueeze(1) - 1 - positions).clamp(0, self.max_len - 1)
            x += self.rev_pos_emb(rev)
        return self.input_drop(self.input_norm(x)), padding

    def _future(self, length: int, device: torch.device) -> torch.Tensor:
        """Causal attention mask: True above the diagonal (event i may not see j > i)."""
        return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)

    def encode_events(
        self,
        page: torch.Tensor,
        dwell: torch.Tensor,
        time: torch.Tensor,
        channel: torch.Tensor,
        device: torch.Tensor,
        query: torch.Tensor,
        query_table: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Contextual event states ``[B, L, d]`` and the padding mask ``[B, L]`` (True = padding)."""
        x, padding = self.embed_inputs(page, dwell, time, channel, device, query, query_table, lengths, mask)
        return self.contextualise(x, padding), padding

    def contextualise(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Event states ``[B, L, d]`` from summed, normalised input embeddings (the Transformer + final norm)."""
        if self.causal:  # right padding: no real event attends to a later (padding) position
            h = self.transformer(x, mask=self._future(x.shape[1], x.device), is_causal=True)
        else:
            h = self.transformer(x, src_key_padding_mask=padding)
        return self.final_norm(h)

    def last_states(self, x: torch.Tensor, padding: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` final states of each session's last event, computing only what they need.

        Causal attention means no event's state depends on a later one, so the last layer runs its
        attention query and feed-forward for the last event only (the earlier layers run in full): the
        same numbers as :meth:`encode_events` (tested), for about half the last layer's work.
        """
        future = self._future(x.shape[1], x.device)
        rows = torch.arange(x.shape[0], device=x.device)
        h = x[rows, lengths - 1].unsqueeze(1)
        for i, layer in enumerate(self.transformer.layers):  # unrolled by TorchScript
            if i < self.n_layers - 1:
                x = layer(x, src_mask=future, is_causal=True)
            else:  # the top layer: the last event's query only; it attends to every real event
                h = x[rows, lengths - 1].unsqueeze(1)
                kv = layer.norm1(x)
                attn = layer.self_attn(layer.norm1(h), kv, kv, key_padding_mask=padding, need_weights=False)[
                    0
                ]
                h = h + layer.dropout1(attn)
                h = h + layer.dropout2(layer.linear2(layer.dropout(F.gelu(layer.linear1(layer.norm2(h))))))
        return self.final_norm(h.squeeze(1))

    def _finish(self, pooled: torch.Tensor) -> torch.Tensor:
        z = self.proj(pooled)
        return F.normalize(z, dim=-1) if self.normalize else z

    def prefix_vectors(self, states: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``[B, L, embedding_dim]``: the vector of every prefix (causal encoders only).

        Mean and attention pooling are cumulative (over events ``<= i``), so entry ``i`` equals the
        vector of the session cut after event ``i``.
        """
        parts: list[torch.Tensor] = []
        if self.pooling == "last" or self.pooling == "last+attention":
            parts.append(states)
        if self.pooling == "mean":
            count = torch.arange(1, states.shape[1] + 1, device=states.device, dtype=states.dtype)
            parts.append(states.cumsum(dim=1) / count.view(1, -1, 1))
        if self.pooling == "attention" or self.pooling == "last+attention":
            # Scores bounded to ±30 so one global shift keeps every prefix's exp() in float range.
            scores = self.attn_score(states).clamp(-30.0, 30.0).masked_fill(padding.unsqueeze(-1), -30.0)
            weights = torch.exp(scores - scores.amax(dim=1, keepdim=True))
            parts.append((weights * states).cumsum(dim=1) / weights.cumsum(dim=1).clamp_min(1e-30))
        return self._finish(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))

    def pool(self, states: torch.Tensor, padding: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The session vector ``[B, embedding_dim]`` (the vector of the whole session).

        Pooled over the real events only, which for a causal encoder is exactly the last entry of
        :meth:`prefix_vectors` (same score clamp), without computing every prefix.
        """
        rows = torch.arange(states.shape[0], device=states.device)
        last = states[rows, lengths - 1]
        if self.pooling == "last":
            return self._finish(last)
        parts: list[torch.Tensor] = []
        if self.pooling == "last+attention":
            parts.append(last)
        if self.pooling == "mean":
            keep = (~padding).unsqueeze(-1).to(states.dtype)
            parts.append((states * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0))
        if self.pooling == "attention" or self.pooling == "last+attention":
            scores = (
                self.attn_score(states).squeeze(-1).clamp(-30.0, 30.0).masked_fill(padding, float("-inf"))
            )
            parts.append((torch.softmax(scores, dim=1).unsqueeze(-1) * states).sum(dim=1))
        return self._finish(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))

    def next_page_logits(self, vectors: torch.Tensor) -> torch.Tensor:
        """Logits over page ids of the event after each vector's session (prefix)."""
        return self.next_page(vectors * self.next_scale)

    def forward(
        self,
        page: torch.Tensor,
        dwell: torch.Tensor,
        time: torch.Tensor,
        channel: torch.Tensor,
        device: torch.Tensor,
        query: torch.Tensor,
        query_table: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Published session features ``[B, output_dim]`` (see ``EncoderConfig.output``)."""
        x, padding = self.embed_inputs(page, dwell, time, channel, device, query, query_table, lengths)
        return self.publish(x, padding, lengths)

    def publish(self, x: torch.Tensor, padding: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` after the input embeddings: what :class:`FusedInputs` hands its output to."""
        if self.causal and self.pooling == "last":
            vectors = self._finish(self.last_states(x, padding, lengths))
        else:
            vectors = self.pool(self.contextualise(x, padding), padding, lengths)
        if self.output == "vector":
            return vectors
        next_logp = torch.log_softmax(self.next_page_logits(vectors), dim=-1)[:, self.n_special :]
        if self.output == "next":
            return next_logp
        return torch.cat([vectors, next_logp], dim=-1)


class FusedInputs:
    """Inference only: :meth:`SessionEncoder.embed_inputs` as one gather and one ``embedding_bag``.

    ``embed_inputs`` builds each batch from seven lookups, each a ``[B, L, d]`` temporary added into
    the sum, after bucketing dwell and gaps per batch: with the pooling, a third of the embed job's
    model time on top of the Transformer. Here every table is one concatenated ``[rows, d]`` table
    (a zero row first, then page, dwell, gap, channel, device, position[, position from the end], then
    one row per distinct query of the chunk), each event's row ids are computed once per chunk on the
    flat, unpadded events (:meth:`event_ids`), and a batch is ``embedding_bag(mode="sum")`` over its
    events' ids — the same rows summed in the same order — then the input LayerNorm. Padding positions
    sum the zero row: with causal attention and right padding no real event attends to them, and the
    bidirectional variant masks them as keys, so real events' outputs are :meth:`SessionEncoder.forward`'s
    (tested to 1e-5). The tables are a snapshot of the weights: for an eval-mode model that no longer
    trains (:class:`clicks2intent.encoder.embed.SessionEmbedder`).
    """

    def __init__(self, model: SessionEncoder) -> None:
        if model.training:
            raise ValueError("FusedInputs: the model must be in eval mode (a snapshot of its weights)")
        self.model = model
        embeddings = [model.page_emb, model.dwell_emb, model.gap_emb, model.channel_emb, model.device_emb]
        embeddings.append(model.pos_emb)
        if model.rev_pos_emb is not None:
            embeddings.append(model.rev_pos_emb)
        weight = model.page_emb.weight
        with torch.no_grad():
            parts = [torch.zeros(1, weight.shape[1], dtype=weight.dtype, device=weight.device)]
            parts += [e.weight.detach() for e in embeddings]
            self.static = torch.cat(parts)  # [1 + sum of table sizes, d]
        self._versions = [(e.weight, e.weight._version) for e in embeddings]
        sizes = [e.num_embeddings for e in embeddings]
        self.starts = [1 + sum(sizes[:i]) for i in range(len(sizes))]  # first row of each table
        self.query_start = 1 + sum(sizes)  # query rows follow (see table())
        self.width = len(sizes) + 1  # ids per event (the query id is one of them)

    def current(self) -> bool:
        """False once a snapshotted weight was written to (trained further, or a state dict loaded)."""
        return all(w._version == v for w, v in self._versions)

    def table(self, query_ngrams: torch.Tensor) -> torch.Tensor:
        """The static rows + one query vector per row of ``query_ngrams`` (row 0: "no query", zero)."""
        return torch.cat([self.static, self.model.query_bag(query_ngrams)])

    def event_ids(
        self,
        page: torch.Tensor,
        dwell: torch.Tensor,
        time: torch.Tensor,
        channel: torch.Tensor,
        device: torch.Tensor,
        query: torch.Tensor,
        offsets: torch.Tensor,
    ) -> torch.Tensor:
        """``[N + 1, width]`` table row ids of flat events (sessions ``offsets[s]:offsets[s + 1]``).

        Same buckets as ``embed_inputs`` (gap = time minus the previous event's in the session, the
        first event's own id); the last row is all zero rows, the padding positions' ids.
        """
        m = self.model
        lengths = offsets[1:] - offsets[:-1]
        n = page.shape[0]
        position = torch.arange(n, device=page.device) - torch.repeat_interleave(offsets[:-1], lengths)
        gaps = m.time_bucket(time - torch.cat([time[:1], time[:-1]]), m.gap_edges)
        gap_ids = torch.where(position == 0, torch.full_like(gaps, m.first_gap_id), gaps)
        values = [page, m.dwell_bucket(dwell), gap_ids, channel, device, position.clamp(max=m.max_len - 1)]
        if m.rev_pos_emb is not None:
            values.append((torch.repeat_interleave(lengths, lengths) - 1 - position).clamp(0, m.max_len - 1))
        # Sum order of embed_inputs: page, dwell, gap, channel, device, query, position(s).
        cols = [v + start for v, start in zip(values, self.starts, strict=True)]
        cols.insert(5, query + self.query_start)
        ids = torch.stack(cols, dim=1)
        return torch.cat([ids, ids.new_zeros(1, self.width)])

    def __call__(
        self, ids: torch.Tensor, table: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised input embeddings ``[B, width, d]`` and the padding mask of sessions starting at ``starts``."""
        positions = torch.arange(width, device=ids.device).unsqueeze(0)
        padding = positions >= lengths.unsqueeze(1)
        src = torch.where(padding, ids.shape[0] - 1, starts.unsqueeze(1) + positions)
        rows = ids.index_select(0, src.reshape(-1))
        x = F.embedding_bag(rows, table, mode="sum").view(src.shape[0], width, table.shape[1])
        m = self.model
        return m.input_drop(m.input_norm(x)), padding


# --- checkpoint ---------------------------------------------------------------------------------

VOCAB_NAMES: tuple[str, ...] = (C.PAGE_TYPE, C.CHANNEL, C.DEVICE)


@dataclass
class EncoderCheckpoint:
    """Everything a job needs to rebuild and use the encoder: config, vocabularies, weights, metadata."""

    config: EncoderConfig
    vocabularies: dict[str, Vocabulary]
    model: SessionEncoder
    metadata: dict[str, Any] = field(default_factory=dict)  # training summary: split, losses, data


def build_model(config: EncoderConfig, vocabularies: dict[str, Vocabulary]) -> SessionEncoder:
    """The model whose embedding tables match these vocabularies."""
    missing = [n for n in VOCAB_NAMES if n not in vocabularies]
    if missing:
        raise ValueError(f"vocabularies: missing {missing}; expected {list(VOCAB_NAMES)}")
    return SessionEncoder(
        config,
        n_pages=len(vocabularies[C.PAGE_TYPE]),
        n_channels=len(vocabularies[C.CHANNEL]),
        n_devices=len(vocabularies[C.DEVICE]),
    )


def save_checkpoint(checkpoint: EncoderCheckpoint, path: str | Path) -> Path:
    """Write config + vocabularies + weights + metadata as one ``torch.save`` file of plain types."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": checkpoint.config.to_dict(),
        "vocabularies": {name: list(v.tokens) for name, v in checkpoint.vocabularies.items()},
        "state_dict": {k: v.detach().cpu() for k, v in checkpoint.model.state_dict().items()},
        "metadata": checkpoint.metadata,
    }
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> EncoderCheckpoint:
    """Rebuild the model from a checkpoint (``weights_only``: loading never runs pickled code)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"encoder checkpoint not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    fmt = payload.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {fmt!r} is not the supported {CHECKPOINT_FORMAT}")
    config = EncoderConfig.from_dict(payload["config"])
    vocabularies = {name: Vocabulary(list(tokens)) for name, tokens in payload["vocabularies"].items()}
    model = build_model(config, vocabularies)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return EncoderCheckpoint(config, vocabularies, model, dict(payload.get("metadata") or {}))
