"""Events → tensors → session embeddings, for the batch job and for one in-flight session alike.

Featurisation turns contract events into :class:`SessionArrays` (flat, ragged per-session arrays) and
:meth:`SessionArrays.batch` cuts padded tensors out of them. Events arrive either as an Arrow table
(:func:`featurise`: files, frames, training — vectorised per distinct value) or as one in-flight
session's event dicts (:func:`featurise_records`: a plain-Python reader, far cheaper than building
an Arrow table for five events); both readers map values through the same cleaning and vocabulary
lookup and hand over to one shared stage (ordering, truncation, times, query hashing), so a session
gets the same vector whichever path embeds it (tested).

Rules the featuriser applies (documented once, here):

* events are ordered by ``event_timestamp`` within a session (ties keep input order);
* a session longer than ``max_len`` keeps its LAST ``max_len`` events (recency carries the signal);
  its ``event_timestamp`` output is still the end of the whole session;
* unknown page types / channels / devices map to the OOV id, missing or blank ones to the MISSING id;
* search queries are lower-cased, split into words, and hashed (word + character n-grams) into
  ``query_buckets`` ids with CRC32 (stable across processes, unlike ``hash()``);
* an empty session (online only: a request with no events yet) is embedded as one event about which
  nothing is known (masked page type, missing modalities).

Serving export: TorchScript (``encoder.ts``). Online serving is a torch process anyway (the service
loads the model class-free export), and for one short session TorchScript runs the graph without
per-op Python dispatch, faster than eager at batch size 1 (docs/decisions/0009-encoder-and-embedding.md).
Caveat: torch 2.13 marks ``torch.jit.script`` deprecated in favour of ``torch.export``; the export is one
function (:func:`export_torchscript`) and the parity test, so moving to ``torch.export`` later is local.

Batch job: on CPU ``c2i embed`` runs ``encoder.onnx`` in ONNX Runtime by default
(:mod:`clicks2intent.encoder.runtime`: no torch or pandas in the process, and a faster model than
eager); this module's :func:`embed_file` is the torch runtime (``--runtime torch``, and every CUDA
run), the eager model with :class:`FusedInputs`. Both share :mod:`clicks2intent.encoder.pipeline`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from clicks2intent.common.settings import passive_openmp

passive_openmp()  # before torch loads OpenMP (common.settings says why)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from clicks2intent.data.contract import require_columns  # noqa: E402
from clicks2intent.encoder.model import (  # noqa: E402
    EncoderCheckpoint,
    FusedInputs,
    SessionEncoder,
    load_checkpoint,
)

# The torch-free half (featurisation, batching, the streaming driver) lives in pipeline.py, shared with
# the ONNX runtime; every name stays importable from here.
from clicks2intent.encoder.pipeline import (  # noqa: E402, F401  (re-exported)
    EMBED_CHUNK,
    INPUT_COLUMNS,
    MAX_PADDING,
    MIN_BUCKET,
    ONLINE_SESSION_ID,
    OUTPUT_SCHEMA,
    EmbedStats,
    QueryHasher,
    SessionArrays,
    count_values,
    embeddings_table,
    empty_session_arrays,
    featurise,
    featurise_records,
    filter_channel,
    input_columns,
    length_batches,
    progress_bar,
    query_ngram_ids,
    run_embed_job,
)
from clicks2intent.errors import ArtifactError, ConfigError  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402
from clicks2intent.names.paths import CHECKPOINT_FILE, SERVING_FILE  # noqa: E402, F401  (re-exported)

logger = logging.getLogger(__name__)


def pick_device(name: str | None = None) -> torch.device:
    """``auto``/None → CUDA when present (training and embedding run there), else CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# --- serving export -----------------------------------------------------------------------------

_EXPORT_KEYS = ("page", "dwell", "time", "channel", "device", "query", "query_table", "lengths")


def export_torchscript(model: SessionEncoder, path: str | Path) -> Path:
    """Script the eval-mode encoder and save it; the model's ``forward`` is the serving signature."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 nudges towards torch.export
        scripted = torch.jit.script(model)
    torch.jit.save(scripted, str(path))
    return path


def load_torchscript(path: str | Path, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """Load the serving export (no Python model class needed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location=device)
    return module.eval()


# Length bucketing: a batch pads at most this share of its positions (unless it would hold fewer than
# --- the embedder -------------------------------------------------------------------------------


class SessionEmbedder:
    """Load once, then embed whole event files (batched) or one in-flight session (low latency).

    ``embed_events`` runs the eager model in length-bucketed batches (PyTorch's fused Transformer fast
    path; on CUDA when present); ``embed_session`` runs the TorchScript export on CPU when the encoder
    dir has one (else the eager model). Both share the featurisation's stage 2 and the vocabularies,
    and the vectors agree to float rounding (tested).
    """

    def __init__(
        self,
        checkpoint: EncoderCheckpoint,
        serving: torch.jit.ScriptModule | None = None,
        device: torch.device | str | None = None,
        batch_size: int = 1024,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.vocabularies = checkpoint.vocabularies
        self.device = pick_device(str(device) if device is not None else None)
        self.model = checkpoint.model.to(self.device).eval()
        self.serving = serving
        self.batch_size = batch_size
        self.hasher = QueryHasher(self.config)
        self._fused: FusedInputs | None = None

    @classmethod
    def load(
        cls, encoder_dir: str | Path, device: str | None = None, batch_size: int = 1024, online: bool = True
    ) -> SessionEmbedder:
        """Read ``checkpoint.pt`` (+ ``encoder.ts`` when present and ``online``) from an encoder directory.

        Batch-only jobs pass ``online=False``: they never run the export, so they skip loading it.
        """
        encoder_dir = Path(encoder_dir)
        if not (encoder_dir / CHECKPOINT_FILE).exists():
            raise ArtifactError(
                f"encoder checkpoint not found: {encoder_dir / CHECKPOINT_FILE} (train one with c2i train-encoder)"
            )
        checkpoint = load_checkpoint(encoder_dir / CHECKPOINT_FILE)
        serving_path = encoder_dir / SERVING_FILE
        serving = load_torchscript(serving_path) if online and serving_path.exists() else None
        return cls(checkpoint, serving=serving, device=device, batch_size=batch_size)

    @property
    def dim(self) -> int:
        """Length of the published vector (``embedding_dim``, or the next-page distribution's size)."""
        return int(self.model.output_dim)

    def featurise(self, table: pa.Table) -> SessionArrays:
        return featurise(table, self.vocabularies, self.config, self.hasher)

    def batches(self, arrays: SessionArrays) -> Iterator[np.ndarray]:
        """Session index batches, shortest sessions first (see :func:`length_batches`)."""
        yield from length_batches(arrays.lengths, self.batch_size)

    def fused_inputs(self) -> FusedInputs:
        """The batch job's input embedding (:class:`FusedInputs`), rebuilt if the weights changed."""
        if self._fused is None or not self._fused.current():
            self._fused = FusedInputs(self.model)
        return self._fused

    @torch.inference_mode()
    def embed_arrays(
        self, arrays: SessionArrays, progress: Any = None, shapes: list[tuple[int, int]] | None = None
    ) -> np.ndarray:
        """``[S, dim]`` float32 embeddings in the order of ``arrays`` (length-bucketed internally).

        Runs :class:`FusedInputs` + :meth:`SessionEncoder.publish`: the numbers of the model's
        ``forward`` on :meth:`SessionArrays.batch` (tested), with each event's ids computed once here
        instead of once per padded batch. ``shapes`` collects ``(sessions, padded length)`` per batch.
        """
        out = np.empty((len(arrays), self.dim), dtype=np.float32)
        if not len(arrays):
            return out
        fused, dev = self.fused_inputs(), self.device
        used = np.unique(arrays.query)
        if used[0] != 0:  # row 0 must stay "no query"
            used = np.concatenate([[0], used])
        ngrams = arrays.query_ngrams[used]
        ngrams = ngrams[:, : max(int((ngrams != 0).sum(axis=1).max()), 1)]
        table = fused.table(torch.from_numpy(ngrams.astype(np.int64)).to(dev))

        def put(values: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(values)).to(dev)

        offsets, lengths = put(arrays.offsets), put(arrays.lengths)
        ids = fused.event_ids(
            put(arrays.page),
            put(arrays.dwell),
            put(arrays.time),
            put(arrays.channel),
            put(arrays.device),
            put(np.searchsorted(used, arrays.query)),
            offsets,
        )
        all_lengths = arrays.lengths
        for idx in self.batches(arrays):
            width = int(all_lengths[idx].max())
            rows = put(idx)
            batch_lengths = lengths[rows]
            x, padding = fused(ids, table, offsets[rows], batch_lengths, width)
            out[idx] = self.model.publish(x, padding, batch_lengths).float().cpu().numpy()
            if shapes is not None:
                shapes.append((len(idx), width))
            if progress is not None:
                progress.update(len(idx))
        return out

    def embed_table(self, table: pa.Table, progress: Any = None) -> pa.Table:
        """Events table → ``OUTPUT_SCHEMA`` table (one row per session, event_timestamp = session end)."""
        arrays = self.featurise(table)
        vectors = self.embed_arrays(arrays, progress)
        return embeddings_table(arrays, vectors)

    def embed_events(self, events: pd.DataFrame) -> pd.DataFrame:
        """Contract events frame → ``session_id, event_timestamp (session end), embedding`` frame."""
        require_columns(events.columns, "events")
        present = [c for c in INPUT_COLUMNS if c in events.columns]
        table = pa.Table.from_pandas(events[present], preserve_index=False)
        out = self.embed_table(table)
        frame = out.select([C.SESSION_ID, C.EVENT_TIMESTAMP]).to_pandas()
        flat = out[C.EMBEDDING].combine_chunks().flatten().to_numpy().reshape(-1, self.dim)
        frame[C.EMBEDDING] = list(flat)
        return frame

    @torch.inference_mode()
    def embed_session(self, events: Sequence[Mapping[str, Any]] | pd.DataFrame) -> np.ndarray:
        """One in-flight session (event dicts or a frame in contract columns) → ``(dim,)`` float32."""
        if len(events) == 0:
            arrays = empty_session_arrays()
        else:
            arrays = featurise_records(events, self.vocabularies, self.config, self.hasher)
        if self.serving is not None:  # the export is loaded on CPU: one short session is a CPU job
            batch = arrays.batch(np.zeros(1, dtype=np.int64))
            return self.serving(*(batch[k] for k in _EXPORT_KEYS))[0].float().numpy()
        batch = arrays.batch(np.zeros(1, dtype=np.int64), self.device)
        return self.model(**batch)[0].float().cpu().numpy()


# --- the streaming batch job (torch runtime) -------------------------------------------------------


def embed_file(
    encoder_dir: str | Path,
    events_path: str | Path,
    out_path: str | Path,
    *,
    batch_size: int = 1024,
    max_rows_in_memory: int = 5_000_000,
    chunk_sessions: int = EMBED_CHUNK,
    channel: str | None = None,
    device: str | None = None,
    progress: bool = True,
    embedder: SessionEmbedder | None = None,
) -> EmbedStats:
    """Stream an events parquet into ``session_embeddings.parquet`` with the eager torch model.

    :func:`~clicks2intent.encoder.pipeline.run_embed_job` drives it (the driver the ONNX runtime
    shares: same rows, order and phases). ``c2i embed`` uses the ONNX runtime on CPU when the encoder
    dir has a current ``encoder.onnx`` (:mod:`clicks2intent.encoder.runtime`).
    """

    def load() -> SessionEmbedder:
        return embedder or SessionEmbedder.load(
            encoder_dir, device=device, batch_size=batch_size, online=False
        )

    return run_embed_job(
        load,
        events_path,
        out_path,
        max_rows_in_memory=max_rows_in_memory,
        chunk_sessions=chunk_sessions,
        channel=channel,
        progress=progress,
    )
