"""The torch-free batch runtime: ``c2i embed`` on CPU through ONNX Runtime and ``encoder.onnx``.

Why: the torch job spent a large share of its time importing torch and pandas before the first batch,
and its model phase was slower than a bare ``nn.TransformerEncoder``. This module imports numpy,
pyarrow and (when a model is loaded) onnxruntime only, and ONNX Runtime runs the whole inference graph
(input embeddings, Transformer, pooling, head) faster than PyTorch eager on CPU (the figures:
docs/decisions/0009-encoder-and-embedding.md). Featurisation,
length batching, the output schema and the streaming driver are the torch runtime's own
(:mod:`clicks2intent.encoder.pipeline`), so both write the same rows in the same order; the per-event
row ids are :meth:`clicks2intent.encoder.model.FusedInputs.event_ids` in numpy (tested equal).

``encoder.onnx`` is written beside ``checkpoint.pt`` by ``save_encoder_dir``
(:func:`clicks2intent.encoder.export.export_onnx`); its metadata carry the config, vocabularies,
table layout and the SHA-256 of the checkpoint file it was exported from, so an export left behind by
a retrained or replaced checkpoint is refused (``--runtime onnx``) or skipped (``--runtime auto``),
never used. CUDA stays on torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clicks2intent.common.settings import cuda_hidden, omp_num_threads, omp_wait_policy
from clicks2intent.encoder.config import FIRST_GAP_ID, MISSING_ID, N_SPECIAL, EncoderConfig, Vocabulary
from clicks2intent.encoder.pipeline import (
    EMBED_CHUNK,
    EmbedStats,
    QueryHasher,
    SessionArrays,
    featurise,
    length_batches,
    run_embed_job,
)
from clicks2intent.errors import ArtifactError, ConfigError
from clicks2intent.names.paths import CHECKPOINT_FILE, ONNX_FILE

logger = logging.getLogger(__name__)

ONNX_FORMAT = 1  # bump when the graph's inputs/outputs or the metadata change meaning
RUNTIMES = ("auto", "onnx", "torch")
# metadata_props keys of encoder.onnx
META_FORMAT = "c2i.format"
META_CONFIG = "c2i.config"
META_VOCABULARIES = "c2i.vocabularies"
META_LAYOUT = "c2i.layout"
META_CHECKPOINT = "c2i.checkpoint_sha256"
INPUT_NAMES = ("rows", "lengths", "query_ngrams")


def checkpoint_fingerprint(path: str | Path) -> str:
    """SHA-256 of the checkpoint file (config + vocabularies + weights): what an export must match."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def job_threads() -> int:
    """The job's CPU threads: ``OMP_NUM_THREADS`` when set (as torch reads it), else the usable cores."""
    threads = omp_num_threads()
    if threads is not None:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def spin_wait() -> bool:
    """Whether ONNX Runtime's threads may spin while they wait: only under ``OMP_WAIT_POLICY=ACTIVE``.

    torch and XGBoost wait passively unless told otherwise (``common.settings.passive_openmp``); one
    variable rules both runtimes.
    """
    return omp_wait_policy() == "ACTIVE"


def bucket_ids(seconds: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``SessionEncoder.time_bucket`` in numpy: log1p of seconds (negative = 0) → N_SPECIAL.., NaN → MISSING.

    float32 like the model; ``searchsorted(side="left")`` is ``torch.bucketize`` (right=False).
    """
    with np.errstate(invalid="ignore"):
        logs = np.log1p(np.maximum(seconds.astype(np.float32), np.float32(0.0)))
    ids = np.searchsorted(edges, logs, side="left").astype(np.int64) + N_SPECIAL
    return np.where(np.isnan(seconds), MISSING_ID, ids)


class OnnxEmbedder:
    """``encoder.onnx`` in one ``onnxruntime.InferenceSession``: the batch half of ``SessionEmbedder``."""

    def __init__(
        self, session: Any, metadata: dict[str, str], batch_size: int = 1024, streams: int = 1
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.session = session
        self.streams = max(1, streams)  # batches run at once, one thread each (see load)
        self.config = EncoderConfig.from_dict(json.loads(metadata[META_CONFIG]))
        vocabs = json.loads(metadata[META_VOCABULARIES])
        self.vocabularies = {name: Vocabulary(list(tokens)) for name, tokens in vocabs.items()}
        layout = json.loads(metadata[META_LAYOUT])
        self.starts = np.asarray(layout["starts"], dtype=np.int64)
        self.query_start = int(layout["query_start"])
        self.width = int(layout["width"])
        self.dwell_edges = np.asarray(layout["dwell_edges"], dtype=np.float32)
        self.gap_edges = np.asarray(layout["gap_edges"], dtype=np.float32)
        self.dim = int(layout["output_dim"])
        self.batch_size = batch_size
        self.hasher = QueryHasher(self.config)

    @classmethod
    def load(
        cls, encoder_dir: str | Path, batch_size: int = 1024, threads: int | None = None
    ) -> OnnxEmbedder:
        """Open ``encoder.onnx``; an :class:`ArtifactError` when it is missing, of another format or stale.

        ``threads`` (default :func:`job_threads`): that many batches run at once, each on one thread,
        rather than one batch at a time on that many threads. The graph's operators are small (a batch
        of short sessions through a small encoder): ONNX Runtime's intra-op threads spent more time
        handing work over than working, and were no faster (docs/decisions/0009-encoder-and-embedding.md),
        so whole batches are the unit of parallelism."""
        encoder_dir = Path(encoder_dir)
        path, checkpoint = encoder_dir / ONNX_FILE, encoder_dir / CHECKPOINT_FILE
        if not path.exists():
            raise ArtifactError(
                f"{path}: no ONNX export (save_encoder_dir writes it; or use --runtime torch)"
            )
        if not checkpoint.exists():
            raise ArtifactError(
                f"encoder checkpoint not found: {checkpoint} (train one with c2i train-encoder)"
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        streams = threads or job_threads()
        options.intra_op_num_threads = 1  # parallel over batches (embed_arrays), not inside one
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Threads spin between ops only where OMP_WAIT_POLICY=ACTIVE asks (torch's rule here): spinning
        # threads lost badly beside another job and won little alone (docs/decisions/0007-openmp-wait-policy.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait() else "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        fmt = metadata.get(META_FORMAT)
        if fmt != str(ONNX_FORMAT):
            raise ArtifactError(f"{path}: ONNX export format {fmt!r} is not the supported {ONNX_FORMAT}")
        if metadata.get(META_CHECKPOINT) != checkpoint_fingerprint(checkpoint):
            raise ArtifactError(
                f"{path}: stale export, {CHECKPOINT_FILE} changed since it was written "
                "(re-export with save_encoder_dir, or use --runtime torch)"
            )
        return cls(session, metadata, batch_size, streams)

    def featurise(self, table: pa.Table) -> SessionArrays:
        return featurise(table, self.vocabularies, self.config, self.hasher)

    def event_ids(self, arrays: SessionArrays, query_rows: np.ndarray) -> np.ndarray:
        """``[N + 1, width]`` row ids of the flat events, exactly ``FusedInputs.event_ids`` (last row: padding)."""
        offsets, lengths = arrays.offsets, arrays.lengths
        n, max_len = len(arrays.page), self.config.max_len
        position = np.arange(n, dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        t = arrays.time.astype(np.float32, copy=False)
        gaps = bucket_ids(t - np.concatenate([t[:1], t[:-1]]), self.gap_edges)
        gap_ids = np.where(position == 0, FIRST_GAP_ID, gaps)
        values = [arrays.page, bucket_ids(arrays.dwell, self.dwell_edges), gap_ids, arrays.channel]
        values += [arrays.device, np.minimum(position, max_len - 1)]
        if not self.config.causal:
            values.append(np.clip(np.repeat(lengths, lengths) - 1 - position, 0, max_len - 1))
        cols = [v + start for v, start in zip(values, self.starts, strict=True)]
        cols.insert(5, query_rows + self.query_start)  # the sum order of embed_inputs (see FusedInputs)
        ids = np.zeros((n + 1, self.width), dtype=np.int64)
        ids[:n] = np.stack(cols, axis=1)
        return ids

    def batch_feeds(self, arrays: SessionArrays) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(session indices, graph inputs) per length-bucketed batch of ``arrays`` (non-empty)."""
        used = np.unique(arrays.query)
        if used[0] != 0:  # row 0 must stay "no query"
            used = np.concatenate([[0], used])
        ngrams = arrays.query_ngrams[used]
        ngrams = np.ascontiguousarray(
            ngrams[:, : max(int((ngrams != 0).sum(axis=1).max()), 1)], dtype=np.int64
        )
        ids = self.event_ids(arrays, np.searchsorted(used, arrays.query))
        pad_row, offsets, all_lengths = len(ids) - 1, arrays.offsets, arrays.lengths
        for idx in length_batches(all_lengths, self.batch_size):
            lengths = all_lengths[idx]
            positions = np.arange(int(lengths.max()), dtype=np.int64)
            src = np.where(positions < lengths[:, None], offsets[idx][:, None] + positions, pad_row)
            yield idx, {"rows": ids[src], "lengths": lengths, "query_ngrams": ngrams}

    def embed_arrays(
        self, arrays: SessionArrays, progress: Any = None, shapes: list[tuple[int, int]] | None = None
    ) -> np.ndarray:
        """``[S, dim]`` float32 vectors in the order of ``arrays``, the batches of :func:`length_batches`."""
        out = np.empty((len(arrays), self.dim), dtype=np.float32)
        if not len(arrays):
            return out
        run = self.session.run

        def one(idx: np.ndarray, feeds: dict[str, np.ndarray]) -> np.ndarray:
            out[idx] = run(None, feeds)[0]  # ONNX Runtime releases the GIL: the batches run in parallel
            return idx

        # ``streams`` batches run at once (one thread each); this thread gathers the next batches' inputs
        # meanwhile, at most two per stream ahead (memory stays bounded).
        pending: list[Future[np.ndarray]] = []
        with ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="c2i-embed-run") as pool:
            for idx, feeds in self.batch_feeds(arrays):
                if shapes is not None:
                    shapes.append(feeds["rows"].shape[:2])
                pending.append(pool.submit(one, idx, feeds))
                while len(pending) > 2 * self.streams:
                    self._done(pending.pop(0), progress)
            while pending:
                self._done(pending.pop(0), progress)
        return out

    @staticmethod
    def _done(future: Future[np.ndarray], progress: Any) -> None:
        idx = future.result()
        if progress is not None:
            progress.update(len(idx))


def _cuda_visible() -> bool:
    """An NVIDIA GPU this process may use, checked without torch (device nodes, CUDA_VISIBLE_DEVICES)."""
    if cuda_hidden():
        return False
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def select_runtime(
    encoder_dir: str | Path,
    runtime: str = "auto",
    device: str | None = "auto",
    batch_size: int = 1024,
    threads: int | None = None,
) -> OnnxEmbedder | None:
    """The loaded ONNX embedder, or None for the torch runtime (``auto`` logs one line saying why).

    ``auto``: ONNX when the device is the CPU, ``encoder.onnx`` exists and matches the checkpoint and
    onnxruntime is installed. ``onnx``: the same checks, each failure a one-line error.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime={runtime!r} must be one of {list(RUNTIMES)}")
    if runtime == "torch":
        return None
    device = device or "auto"
    if device not in ("auto", "cpu") or (device == "auto" and _cuda_visible()):
        reason = f"device {device!r} may be CUDA, which runs on torch"
    elif importlib.util.find_spec("onnxruntime") is None:
        reason = "onnxruntime is not installed"
    else:
        try:
            return OnnxEmbedder.load(encoder_dir, batch_size=batch_size, threads=threads)
        except ArtifactError as error:
            if runtime == "onnx":
                raise
            reason = str(error)
    if runtime == "onnx":
        raise ConfigError(f"--runtime onnx: {reason}")
    logger.info("c2i embed: torch runtime (%s)", reason)
    return None


def embed_file(
    encoder_dir: str | Path,
    events_path: str | Path,
    out_path: str | Path,
    *,
    batch_size: int = 1024,
    max_rows_in_memory: int = 5_000_000,
    chunk_sessions: int = EMBED_CHUNK,
    channel: str | None = None,
    progress: bool = True,
    threads: int | None = None,
    embedder: OnnxEmbedder | None = None,
    start: float | None = None,
) -> EmbedStats:
    """:func:`clicks2intent.encoder.embed.embed_file` through ONNX Runtime: same driver, rows and stats."""
    start = time.perf_counter() if start is None else start

    def load() -> OnnxEmbedder:
        return embedder or OnnxEmbedder.load(encoder_dir, batch_size=batch_size, threads=threads)

    return run_embed_job(
        load,
        events_path,
        out_path,
        max_rows_in_memory=max_rows_in_memory,
        chunk_sessions=chunk_sessions,
        channel=channel,
        progress=progress,
        start=start,
    )
