"""``encoder.onnx``: the batch job's whole inference graph for the torch-free runtime.

From per-position table row ids (the ids of :class:`~clicks2intent.encoder.model.FusedInputs`) to the
published output, so :mod:`clicks2intent.encoder.runtime` runs ``c2i embed`` without torch. Inputs:
``rows`` int64 ``[B, L, K]`` (padding positions point at the zero row), ``lengths`` int64 ``[B]``,
``query_ngrams`` int64 ``[U, Kq]`` (hashed n-grams per distinct query, 0 = padding, row 0 = no query);
output ``[B, output_dim]``. B, L, U and Kq are dynamic.

The graph is written here with the model's own weights rather than traced through
``nn.TransformerEncoder``: ``nn.MultiheadAttention`` exports with the example's shapes baked into its
reshapes (other batch sizes fail), so attention is spelled out with dynamic reshapes. The legacy
TorchScript exporter (``dynamo=False``, opset 17) needs the ``onnx`` package only (no onnxscript);
``onnx`` also writes the metadata the runtime reads.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from clicks2intent.encoder.model import N_SPECIAL, FusedInputs, SessionEncoder, Vocabulary
from clicks2intent.encoder.runtime import (
    INPUT_NAMES,
    META_CHECKPOINT,
    META_CONFIG,
    META_FORMAT,
    META_LAYOUT,
    META_VOCABULARIES,
    ONNX_FORMAT,
    checkpoint_fingerprint,
)

OPSET = 17
# Column order of ``rows`` (FusedInputs.event_ids: the sum order of SessionEncoder.embed_inputs).
ID_ORDER = ("page", "dwell", "gap", "channel", "device", "query", "position", "position_from_end")


class InferenceGraph(nn.Module):
    """:meth:`SessionEncoder.forward` from fused row ids, in exportable ops (tested equal to it)."""

    def __init__(self, model: SessionEncoder) -> None:
        super().__init__()
        if model.training:
            raise ValueError("InferenceGraph: the model must be in eval mode")
        self.model = model
        fused = FusedInputs(model)
        self.register_buffer("static", fused.static.clone())
        self.n_heads = model.config.n_heads

    def attention_layer(
        self, layer: nn.TransformerEncoderLayer, x: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """One pre-norm layer: ``x + attn(norm1(x))`` then ``x + ff(norm2(x))`` (GELU), bias added to scores."""
        b, length, d = x.shape[0], x.shape[1], x.shape[2]
        heads = self.n_heads
        dh = d // heads
        attn = layer.self_attn
        qkv = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)
        qkv = qkv.reshape(b, length, 3, heads, dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q * (dh**-0.5), k.transpose(-1, -2)) + bias
        o = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, length, d)
        x = x + attn.out_proj(o)
        return x + layer.linear2(F.gelu(layer.linear1(layer.norm2(x))))

    def finish(self, pooled: torch.Tensor) -> torch.Tensor:
        z = self.model.proj(pooled)
        if self.model.normalize:
            z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min(1e-12)
        return z

    def forward(self, rows: torch.Tensor, lengths: torch.Tensor, query_ngrams: torch.Tensor) -> torch.Tensor:
        m = self.model
        bag = F.embedding(query_ngrams, m.query_bag.weight)  # EmbeddingBag mean, padding id 0 excluded
        keep = (query_ngrams != 0).unsqueeze(-1).to(bag.dtype)
        query_vectors = (bag * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)  # all padding -> 0
        table = torch.cat([self.static, query_vectors], dim=0)
        x = m.input_norm(F.embedding(rows, table).sum(dim=2))
        positions = torch.arange(x.shape[1], device=x.device)
        padding = positions.unsqueeze(0) >= lengths.unsqueeze(1)  # [B, L]
        neg = torch.tensor(float("-inf"), dtype=x.dtype)
        zero = torch.tensor(0.0, dtype=x.dtype)
        if m.causal:  # [L, L]: event i sees j <= i (right padding needs no key mask)
            bias = torch.where(positions.unsqueeze(0) > positions.unsqueeze(1), neg, zero)
        else:  # [B, 1, 1, L]: padding keys hidden
            bias = torch.where(padding, neg, zero).unsqueeze(1).unsqueeze(1)
        for layer in m.transformer.layers:
            x = self.attention_layer(layer, x, bias)
        states = m.final_norm(x)
        d = states.shape[2]
        last = torch.gather(states, 1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, d)).squeeze(1)
        parts = []
        if m.pooling in ("last", "last+attention"):
            parts.append(last)
        if m.pooling == "mean":
            real = (~padding).unsqueeze(-1).to(states.dtype)
            parts.append((states * real).sum(dim=1) / real.sum(dim=1).clamp_min(1.0))
        if m.pooling in ("attention", "last+attention"):
            scores = m.attn_score(states).squeeze(-1).clamp(-30.0, 30.0).masked_fill(padding, float("-inf"))
            parts.append((torch.softmax(scores, dim=1).unsqueeze(-1) * states).sum(dim=1))
        vectors = self.finish(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))
        if m.output == "vector":
            return vectors
        next_logp = torch.log_softmax(m.next_page_logits(vectors), dim=-1)[:, N_SPECIAL:]
        if m.output == "next":
            return next_logp
        return torch.cat([vectors, next_logp], dim=-1)


def _example(graph: InferenceGraph, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs of sizes that broadcast nowhere (B 3, L 5, U 2, Kq 3), so no axis is traced as a constant."""
    rows = torch.zeros(3, 5, width, dtype=torch.long)
    rows[:, :, 0] = 1
    return rows, torch.tensor([5, 3, 1]), torch.tensor([[0, 0, 0], [1, 2, 0]])


def export_onnx(
    model: SessionEncoder,
    path: str | Path,
    vocabularies: dict[str, Vocabulary],
    checkpoint_path: str | Path,
) -> Path:
    """Write ``encoder.onnx`` for the eval-mode ``model`` saved at ``checkpoint_path`` (its fingerprint)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    graph = InferenceGraph(model).eval()
    fused = FusedInputs(model)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch >= 2.9 nudges towards the dynamo exporter
        torch.onnx.export(
            graph,
            _example(graph, fused.width),
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=["output"],
            dynamic_axes={
                "rows": {0: "batch", 1: "length"},
                "lengths": {0: "batch"},
                "query_ngrams": {0: "queries", 1: "ngrams"},
                "output": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    proto = onnx.load(str(tmp))
    layout = {
        "starts": fused.starts,
        "query_start": fused.query_start,
        "width": fused.width,
        "order": list(ID_ORDER[: fused.width]),
        "dwell_edges": model.dwell_edges.tolist(),
        "gap_edges": model.gap_edges.tolist(),
        "output_dim": int(model.output_dim),
    }
    meta = {
        META_FORMAT: str(ONNX_FORMAT),
        META_CONFIG: json.dumps(model.config.to_dict()),
        META_VOCABULARIES: json.dumps({name: list(v.tokens) for name, v in vocabularies.items()}),
        META_LAYOUT: json.dumps(layout),
        META_CHECKPOINT: checkpoint_fingerprint(checkpoint_path),
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path
