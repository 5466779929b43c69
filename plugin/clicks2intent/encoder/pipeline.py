"""The torch-free half of the embed job: featurisation, length batching and the streaming driver.

Everything here imports numpy and pyarrow only, so the ONNX batch runtime
(:mod:`clicks2intent.encoder.runtime`) runs ``c2i embed`` in a process that never loads torch or
pandas (their imports were a large share of the job: docs/decisions/0009-encoder-and-embedding.md). The torch
runtime (:mod:`clicks2intent.encoder.embed`, which re-exports every name here) uses the same code,
so both runtimes featurise, batch, order and write rows identically. The featurisation rules are
documented in :mod:`clicks2intent.encoder.embed`.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clicks2intent.common.files import atomic_output, job_temp_dir
from clicks2intent.encoder.config import MASK_ID, MISSING_ID, PAD_ID, EncoderConfig, Vocabulary
from clicks2intent.errors import ArtifactError, ConfigError, ContractError
from clicks2intent.names import columns as C

if TYPE_CHECKING:
    import pandas as pd
    import torch

logger = logging.getLogger(__name__)

ONLINE_SESSION_ID = "__online__"

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field(C.SESSION_ID, pa.string(), nullable=False),
        pa.field(C.EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(C.EMBEDDING, pa.list_(pa.float32()), nullable=False),
    ]
)
# Columns the encoder reads; everything else in an events file is never loaded.
INPUT_COLUMNS: tuple[str, ...] = (
    C.SESSION_ID,
    C.EVENT_TIMESTAMP,
    C.PAGE_TYPE,
    C.CHANNEL,
    C.DWELL_SECONDS,
    C.SEARCH_QUERY,
    C.DEVICE,
)
EMBED_CHUNK = 65_536  # sessions per model/writer hand-off in the embed job (length-bucketed within)
SPILL_PREFIX = ".embed-spill-"  # the embed job's scratch dirs beside its output (named after their owner)
_WORD = re.compile(r"[^\W_]+")
_US_PER_SECOND = 1_000_000

# --- query text ---------------------------------------------------------------------------------


def query_ngram_ids(text: str, config: EncoderConfig) -> list[int]:
    """Hashed ids (1..query_buckets-1; 0 is padding) of a query's words, then its words' char n-grams.

    Words come first so that a very long query truncated to ``max_query_ngrams`` keeps its words.
    """
    words = _WORD.findall(text.lower())
    grams = [f"w:{w}" for w in words]
    n = config.query_char_ngram
    for w in words:
        padded = f"<{w}>"
        grams.extend(f"c:{padded[i : i + n]}" for i in range(max(1, len(padded) - n + 1)))
    buckets = config.query_buckets - 1
    return [zlib.crc32(g.encode("utf-8")) % buckets + 1 for g in grams[: config.max_query_ngrams]]


class QueryHasher:
    """Caches n-gram ids per distinct query text: queries repeat a lot (templates, popular searches)."""

    def __init__(self, config: EncoderConfig, max_entries: int = 200_000) -> None:
        self.config = config
        self.max_entries = max_entries
        self._cache: dict[str, list[int]] = {}

    def __call__(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()  # bounded memory on endless streams; recomputing is cheap
            ids = self._cache[text] = query_ngram_ids(text, self.config)
        return ids

    def table(self, texts: Sequence[str | None]) -> np.ndarray:
        """``[1 + len(texts), K]`` int32 n-gram ids; row 0 (and rows of empty texts) all padding."""
        rows = [self(t) if t else [] for t in texts]
        width = max([1] + [len(r) for r in rows])
        out = np.zeros((len(rows) + 1, width), dtype=np.int32)
        for i, r in enumerate(rows, start=1):
            out[i, : len(r)] = r
        return out


# --- featurisation ------------------------------------------------------------------------------


@dataclass
class SessionArrays:
    """Featurised sessions in flat form: events of session ``s`` are ``offsets[s]:offsets[s + 1]``.

    Events are time-ordered and already truncated to ``max_len``. ``time`` is seconds since the
    session's first kept event (NaN without a timestamp); ``query`` indexes ``query_ngrams`` rows.
    """

    session_ids: np.ndarray  # object [S]
    session_start: np.ndarray  # int64 [S], µs since epoch (first event; used for time splits)
    session_end: np.ndarray  # int64 [S], µs since epoch (last event: the output timestamp)
    n_events: np.ndarray  # int64 [S], events before truncation
    offsets: np.ndarray  # int64 [S + 1]
    page: np.ndarray  # int64 [N]
    channel: np.ndarray  # int64 [N]
    device: np.ndarray  # int64 [N]
    dwell: np.ndarray  # float32 [N]
    time: np.ndarray  # float32 [N]
    query: np.ndarray  # int64 [N]
    query_ngrams: np.ndarray  # int32 [U + 1, K]

    def __len__(self) -> int:
        return len(self.session_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, idx: np.ndarray) -> SessionArrays:
        """The sessions ``idx`` (in that order), e.g. one side of a time split."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.lengths[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        src = _ragged_index(self.offsets[idx], lengths)
        return SessionArrays(
            session_ids=self.session_ids[idx],
            session_start=self.session_start[idx],
            session_end=self.session_end[idx],
            n_events=self.n_events[idx],
            offsets=offsets,
            page=self.page[src],
            channel=self.channel[src],
            device=self.device[src],
            dwell=self.dwell[src],
            time=self.time[src],
            query=self.query[src],
            query_ngrams=self.query_ngrams,
        )

    def slice(self, start: int, stop: int) -> SessionArrays:
        """Sessions ``start..stop-1`` as views (no copy): the embed job's chunks."""
        stop = min(stop, len(self))
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return SessionArrays(
            session_ids=self.session_ids[start:stop],
            session_start=self.session_start[start:stop],
            session_end=self.session_end[start:stop],
            n_events=self.n_events[start:stop],
            offsets=self.offsets[start : stop + 1] - lo,
            page=self.page[lo:hi],
            channel=self.channel[lo:hi],
            device=self.device[lo:hi],
            dwell=self.dwell[lo:hi],
            time=self.time[lo:hi],
            query=self.query[lo:hi],
            query_ngrams=self.query_ngrams,
        )

    def batch(self, idx: np.ndarray, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Padded ``[B, L]`` tensors for sessions ``idx``: the model's keyword arguments.

        ``L`` is the longest session in ``idx``; callers sort by length so padding stays small. Imports
        torch here: only the torch runtime, training and serving call it.
        """
        import torch

        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.lengths[idx]
        width = max(int(lengths.max()), 1) if len(idx) else 1
        pos = np.arange(width)
        padded = bool((lengths < width).any()) or not len(self.page)
        valid = pos[None, :] < lengths[:, None]
        src = self.offsets[idx][:, None] + pos[None, :]
        if padded:
            src = np.where(valid, src, 0)

        def take(values: np.ndarray, fill: float, dtype: type) -> np.ndarray:
            if not len(values):
                return np.full(src.shape, fill, dtype=dtype)
            out = values[src]
            return (np.where(valid, out, fill) if padded else out).astype(dtype, copy=False)

        query = take(self.query, 0, np.int64)
        if query.any():
            used, inverse = np.unique(query, return_inverse=True)
            if used[0] != 0:  # row 0 must stay "no query"
                used = np.concatenate([[0], used])
                inverse = inverse + 1
            table = self.query_ngrams[used]
            table = table[:, : max(int((table != 0).sum(axis=1).max()), 1)]
            query = inverse.reshape(src.shape)
        else:  # most sessions have no search: skip the remapping
            table = np.zeros((1, 1), dtype=np.int64)
        tensors = {
            "page": take(self.page, PAD_ID, np.int64),
            "dwell": take(self.dwell, np.nan, np.float32),
            "time": take(self.time, np.nan, np.float32),
            "channel": take(self.channel, PAD_ID, np.int64),
            "device": take(self.device, PAD_ID, np.int64),
            "query": query.astype(np.int64, copy=False),
            "query_table": table.astype(np.int64, copy=False),
            "lengths": lengths.astype(np.int64, copy=False),
        }
        device = torch.device(device)
        if device.type == "cpu":
            return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
        return {
            k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
            for k, v in tensors.items()
        }


# --- Arrow <-> numpy without pandas ---------------------------------------------------------------
# pyarrow imports pandas on its first to_numpy(), pa.array() or Python-scalar argument when
# pandas is installed; the ONNX runtime's process must not pay that, so the featurisation and the output
# go through the buffers instead (same values: tested against to_numpy / pa.array).

_NUMPY_TYPES = {
    pa.int8(): np.int8,
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.uint8(): np.uint8,
    pa.uint16(): np.uint16,
    pa.uint32(): np.uint32,
    pa.uint64(): np.uint64,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
}


def _valid(arr: pa.Array) -> np.ndarray:
    """bool ``[len(arr)]``: True where ``arr`` is not null."""
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    bits = np.frombuffer(arr.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[arr.offset : arr.offset + len(arr)].astype(bool)


def arrow_to_numpy(arr: pa.Array | pa.ChunkedArray, fill: float = 0) -> np.ndarray:
    """A fixed-width numeric Arrow array as numpy (a copy where it had nulls: those become ``fill``)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    dtype = np.dtype(_NUMPY_TYPES[arr.type])
    if len(arr) == 0:
        return np.zeros(0, dtype=dtype)
    values = np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))[arr.offset :]
    return np.where(_valid(arr), values, np.asarray(fill, dtype=dtype)) if arr.null_count else values


def numpy_to_arrow(values: np.ndarray, type: pa.DataType) -> pa.Array:
    """A 1-d numeric numpy array as an Arrow array of the same width (no nulls), sharing its memory."""
    values = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[type])
    return pa.Array.from_buffers(type, len(values), [None, pa.py_buffer(values)])


def strings_to_arrow(values: Sequence[str]) -> pa.Array:
    """Python strings as an Arrow ``string`` array."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    big = offsets[-1] >= 2**31
    offsets = offsets if big else offsets.astype(np.int32)
    data = pa.py_buffer(b"".join(encoded))
    arr = pa.Array.from_buffers(
        pa.large_string() if big else pa.string(), len(encoded), [None, pa.py_buffer(offsets), data]
    )
    return arr.cast(pa.string()) if big else arr


def _ragged_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for each pair, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    seg_start = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=seg_start[1:])
    return np.repeat(starts - seg_start, lengths) + np.arange(total, dtype=np.int64)


def _clean(value: Any) -> str | None:
    """A categorical/text value as both paths read it: stripped string, or None when blank or absent."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


@dataclass
class _Columns:
    """Stage 1 of featurisation: per-event numpy columns in input order (vocabulary ids already mapped).

    Two producers — :func:`_columns_from_table` (vectorised, for files and frames) and
    :func:`_columns_from_records` (plain Python, for one in-flight session) — feed the one shared
    stage 2, :func:`_assemble`; both map values through the same ``_clean`` + ``Vocabulary.lookup``.
    """

    session: np.ndarray  # int64 session code per event
    session_values: list[Any]  # session id per code
    ts: np.ndarray  # int64 µs since epoch (0 where missing)
    ts_valid: np.ndarray  # bool
    page: np.ndarray  # int64 ids
    channel: np.ndarray
    device: np.ndarray
    dwell: np.ndarray  # float64, NaN = missing
    query: np.ndarray  # int64 index into query_texts + 1 (0 = no query)
    query_texts: list[str | None]


def _dictionary(table: pa.Table, name: str) -> tuple[np.ndarray, list[Any]] | None:
    """(indices with -1 for null, dictionary values) of a string column; None when the column is absent."""
    if name not in table.column_names:
        return None
    col = table[name]
    if pa.types.is_dictionary(col.type) and col.num_chunks > 1:
        col = col.unify_dictionaries()
    arr = col.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = arr.cast(pa.string())
        arr = arr.dictionary_encode()
    indices = arrow_to_numpy(arr.indices, fill=-1).astype(np.int64)
    return indices, arr.dictionary.to_pylist()


def count_values(table: pa.Table, name: str) -> dict[str, int]:
    """Counts of a string column's cleaned values: what vocabularies are built from."""
    enc = _dictionary(table, name)
    if enc is None:
        return {}
    indices, values = enc
    counts = np.bincount(indices[indices >= 0], minlength=len(values))
    out: dict[str, int] = {}
    for v, n in zip(values, counts, strict=True):
        key = _clean(v)
        if key is not None and n:
            out[key] = out.get(key, 0) + int(n)
    return out


def _categorical_ids(table: pa.Table, name: str, vocab: Vocabulary, n: int) -> np.ndarray:
    """Vocabulary ids of a string column, mapping each distinct value once."""
    enc = _dictionary(table, name)
    if enc is None:
        return np.full(n, MISSING_ID, dtype=np.int64)
    indices, values = enc
    ids = np.append(vocab.lookup([_clean(v) for v in values]), MISSING_ID)
    return ids[indices]  # index -1 (null) picks the appended MISSING_ID


def _timestamps_us(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(µs since epoch, valid mask); naive timestamps are read as UTC (the contract's repair rule)."""
    name = C.EVENT_TIMESTAMP
    n = table.num_rows
    if name not in table.column_names:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    col = table[name].combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.timestamp("us", tz=col.type.tz), safe=False).cast(pa.int64())
    elif pa.types.is_null(col.type):
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    else:
        raise ContractError(
            f"column '{name}' must be a timestamp (the contract's UTC event time), got {col.type}; "
            "run the events through clicks2intent.data.contract.validate_events first"
        )
    return arrow_to_numpy(col, fill=0).astype(np.int64), _valid(col)


def _columns_from_table(table: pa.Table, vocabularies: Mapping[str, Vocabulary]) -> _Columns:
    for name in (C.SESSION_ID, C.PAGE_TYPE):
        if name not in table.column_names:
            raise ContractError(
                f"events: missing required column '{name}' (the clickstream contract needs it)"
            )
    n = table.num_rows
    sid_enc = _dictionary(table, C.SESSION_ID)
    assert sid_enc is not None
    codes, session_values = sid_enc
    if (codes < 0).any():
        raise ContractError(f"events: column '{C.SESSION_ID}' has nulls; every event needs a session id")
    present = np.bincount(codes, minlength=len(session_values)) > 0
    if not present.all():  # a parquet dictionary may hold ids with no rows: drop them, keep order
        codes = (np.cumsum(present) - 1)[codes]
        session_values = [v for v, keep in zip(session_values, present, strict=True) if keep]
    ts, ts_valid = _timestamps_us(table)
    if C.DWELL_SECONDS in table.column_names:
        dwell = arrow_to_numpy(table[C.DWELL_SECONDS].cast(pa.float64()), fill=np.nan)
    else:
        dwell = np.full(n, np.nan)
    query_enc = _dictionary(table, C.SEARCH_QUERY)
    if query_enc is None:
        query, texts = np.zeros(n, dtype=np.int64), []
    else:
        q_idx, q_values = query_enc
        query, texts = q_idx + 1, [_clean(v) for v in q_values]
    return _Columns(
        session=codes,
        session_values=session_values,
        ts=ts,
        ts_valid=ts_valid,
        page=_categorical_ids(table, C.PAGE_TYPE, vocabularies[C.PAGE_TYPE], n),
        channel=_categorical_ids(table, C.CHANNEL, vocabularies[C.CHANNEL], n),
        device=_categorical_ids(table, C.DEVICE, vocabularies[C.DEVICE], n),
        dwell=dwell,
        query=query,
        query_texts=texts,
    )


def _dwell_value(i: int, value: Any) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ContractError(
            f"event {i}: '{C.DWELL_SECONDS}' must be a number of seconds, got {value!r}"
        ) from None
    if v < 0 or math.isinf(v):
        raise ContractError(f"event {i}: '{C.DWELL_SECONDS}' must be finite and >= 0, got {value!r}")
    return v


def _columns_from_records(
    events: Sequence[Mapping[str, Any]], vocabularies: Mapping[str, Vocabulary]
) -> _Columns:
    """One in-flight session given as event dicts (contract columns; optional ones may be absent)."""
    n = len(events)
    pages, channels, devices, dwell, query, texts = [], [], [], [], [], []
    from clicks2intent.common.times import to_us  # pandas-backed: the online (torch) path only

    stamps: list[int | None] = []
    text_index: dict[str, int] = {}
    for i, e in enumerate(events):
        if not isinstance(e, Mapping):
            raise ContractError(f"event {i}: must be a mapping of contract columns, got {type(e).__name__}")
        page = _clean(e.get(C.PAGE_TYPE))
        if page is None:
            raise ContractError(
                f"event {i}: '{C.PAGE_TYPE}' is required and must be a non-empty string, got {e.get(C.PAGE_TYPE)!r}"
            )
        pages.append(page)
        channel = _clean(e.get(C.CHANNEL))
        if channel is not None:
            channel = channel.lower()
            if channel not in C.CHANNELS:
                raise ContractError(
                    f"event {i}: '{C.CHANNEL}' must be one of {list(C.CHANNELS)}, got {channel!r}"
                )
        channels.append(channel)
        devices.append(_clean(e.get(C.DEVICE)))
        dwell.append(_dwell_value(i, e.get(C.DWELL_SECONDS)))
        stamps.append(to_us(e.get(C.EVENT_TIMESTAMP)))
        text = _clean(e.get(C.SEARCH_QUERY))
        if text is None:
            query.append(0)
        else:
            if text not in text_index:
                text_index[text] = len(texts)
                texts.append(text)
            query.append(text_index[text] + 1)
    return _Columns(
        session=np.zeros(n, dtype=np.int64),
        session_values=[ONLINE_SESSION_ID],
        ts=np.array([s if s is not None else 0 for s in stamps], dtype=np.int64),
        ts_valid=np.array([s is not None for s in stamps], dtype=bool),
        page=vocabularies[C.PAGE_TYPE].lookup(pages),
        channel=vocabularies[C.CHANNEL].lookup(channels),
        device=vocabularies[C.DEVICE].lookup(devices),
        dwell=np.array(dwell, dtype=np.float64),
        query=np.array(query, dtype=np.int64),
        query_texts=texts,
    )


def _assemble(cols: _Columns, config: EncoderConfig, hasher: QueryHasher) -> SessionArrays:
    """Stage 2, shared by every path: order by time, keep the last max_len events, relative times."""
    n_sessions = len(cols.session_values)
    codes, ts = cols.session, cols.ts
    order = np.lexsort((ts, codes))  # stable: equal timestamps keep input order
    counts = np.bincount(codes, minlength=n_sessions).astype(np.int64)
    full_offsets = np.zeros(n_sessions + 1, dtype=np.int64)
    np.cumsum(counts, out=full_offsets[1:])
    lengths = np.minimum(counts, config.max_len)
    offsets = np.zeros(n_sessions + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    sel = order[_ragged_index(full_offsets[1:] - lengths, lengths)]  # the last max_len of each session

    if len(order):
        ts_sorted, valid_sorted = ts[order], cols.ts_valid[order]
        starts = full_offsets[:-1]
        session_end = np.maximum.reduceat(np.where(valid_sorted, ts_sorted, np.iinfo(np.int64).min), starts)
        session_start = np.minimum.reduceat(np.where(valid_sorted, ts_sorted, np.iinfo(np.int64).max), starts)
    else:
        session_end = session_start = np.zeros(0, dtype=np.int64)
    kept_ts = ts[sel]
    first_kept = np.repeat(kept_ts[offsets[:-1]] if len(sel) else kept_ts, lengths)
    rel = (kept_ts - first_kept).astype(np.float64) / _US_PER_SECOND
    return SessionArrays(
        session_ids=np.asarray(cols.session_values, dtype=object),
        session_start=session_start.astype(np.int64),
        session_end=session_end.astype(np.int64),
        n_events=counts,
        offsets=offsets,
        page=cols.page[sel],
        channel=cols.channel[sel],
        device=cols.device[sel],
        dwell=cols.dwell[sel].astype(np.float32),
        time=np.where(cols.ts_valid[sel], rel, np.nan).astype(np.float32),
        query=cols.query[sel],
        query_ngrams=hasher.table(cols.query_texts),
    )


def featurise(
    table: pa.Table,
    vocabularies: Mapping[str, Vocabulary],
    config: EncoderConfig,
    hasher: QueryHasher | None = None,
) -> SessionArrays:
    """Contract events (any row order) → :class:`SessionArrays`; see the module docstring for rules."""
    return _assemble(_columns_from_table(table, vocabularies), config, hasher or QueryHasher(config))


def featurise_records(
    events: Sequence[Mapping[str, Any]] | pd.DataFrame,
    vocabularies: Mapping[str, Vocabulary],
    config: EncoderConfig,
    hasher: QueryHasher | None = None,
) -> SessionArrays:
    """One in-flight session (event dicts or a frame) → :class:`SessionArrays` with one session."""
    if hasattr(events, "to_dict"):  # a pandas frame (checked without importing pandas)
        events = events.to_dict("records")
    return _assemble(_columns_from_records(events, vocabularies), config, hasher or QueryHasher(config))


def empty_session_arrays() -> SessionArrays:
    """An in-flight session with no events yet: one event about which nothing is known."""
    return SessionArrays(
        session_ids=np.asarray([ONLINE_SESSION_ID], dtype=object),
        session_start=np.zeros(1, dtype=np.int64),
        session_end=np.zeros(1, dtype=np.int64),
        n_events=np.zeros(1, dtype=np.int64),
        offsets=np.array([0, 1], dtype=np.int64),
        page=np.array([MASK_ID], dtype=np.int64),
        channel=np.array([MISSING_ID], dtype=np.int64),
        device=np.array([MISSING_ID], dtype=np.int64),
        dwell=np.array([np.nan], dtype=np.float32),
        time=np.array([np.nan], dtype=np.float32),
        query=np.zeros(1, dtype=np.int64),
        query_ngrams=np.zeros((1, 1), dtype=np.int32),
    )


# Length bucketing: a batch pads at most this share of its positions (unless it would hold fewer than
# MIN_BUCKET sessions); sorted batches of a fixed size padded far more, for a few more batches
# (docs/decisions/0009-encoder-and-embedding.md).
MAX_PADDING = 0.05
MIN_BUCKET = 64


def length_batches(
    lengths: np.ndarray, batch_size: int, max_padding: float = MAX_PADDING, min_sessions: int = MIN_BUCKET
) -> list[np.ndarray]:
    """Session index batches, shortest sessions first, at most ``batch_size`` each and little padding.

    Greedy over runs of equal length: a run joins the open batch unless that would pad more than
    ``max_padding`` of the batch's positions and the open batch already has ``min_sessions``.
    """
    order = np.argsort(lengths, kind="stable")
    values, firsts, counts = np.unique(lengths[order], return_index=True, return_counts=True)
    out: list[np.ndarray] = []
    first = size = tokens = 0
    for length, stop, left in zip(values.tolist(), firsts.tolist(), counts.tolist(), strict=True):
        while left:
            take = min(left, batch_size - size)
            if (
                size
                and size >= min_sessions
                and tokens + take * length < (1 - max_padding) * (size + take) * length
            ):
                out.append(order[first:stop])
                first, size, tokens = stop, 0, 0
                take = min(left, batch_size)
            size, tokens, left, stop = size + take, tokens + take * length, left - take, stop + take
            if size == batch_size:
                out.append(order[first:stop])
                first, size, tokens = stop, 0, 0
    if size:
        out.append(order[first:])
    return out


def embeddings_table(arrays: SessionArrays, vectors: np.ndarray) -> pa.Table:
    """Session ids, session end and vectors as an ``OUTPUT_SCHEMA`` table."""
    no_time = arrays.session_end == np.iinfo(np.int64).min
    if no_time.any():
        raise ContractError(
            f"'{C.EVENT_TIMESTAMP}': {int(no_time.sum())} session(s) have no event with a timestamp "
            f"(e.g. {arrays.session_ids[no_time][0]!r}); the output needs each session's end time"
        )
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    offsets = numpy_to_arrow(np.arange(0, len(arrays) * dim + 1, dim, dtype=np.int32), pa.int32())
    values = numpy_to_arrow(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    end = numpy_to_arrow(arrays.session_end, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(
        [strings_to_arrow(arrays.session_ids), end, pa.ListArray.from_arrays(offsets, values)],
        schema=OUTPUT_SCHEMA,
    )


# --- the streaming batch job --------------------------------------------------------------------


@dataclass
class EmbedStats:
    """What ``c2i embed`` did, for the log line and the benchmark."""

    n_events: int
    n_sessions: int
    n_partitions: int
    seconds: float
    batch_shapes: list[tuple[int, int]]  # (sessions, padded length) of every model batch
    phase_seconds: dict[str, float]  # read (incl. spill), featurise, model (incl. batching), write
    nodes: dict[str, int] = field(default_factory=dict)  # --engine ray: sessions embedded per Ray node

    @property
    def sessions_per_second(self) -> float:
        return self.n_sessions / self.seconds if self.seconds > 0 else float("nan")


def input_columns(path: str | Path) -> list[str]:
    """The encoder's columns present in an events parquet (raises when the file or a required one is missing)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"events file not found: {path}")
    names = pq.ParquetFile(path).schema_arrow.names
    if any(c not in names for c in C.REQUIRED_EVENT_COLUMNS):  # the contract's message (pandas only then)
        from clicks2intent.data.contract import require_columns

        require_columns(names, str(path))
    return [c for c in INPUT_COLUMNS if c in names]


def filter_channel(table: pa.Table, channel: str | None) -> pa.Table:
    """The events of one channel (all events when ``channel`` is None)."""
    if channel is None:
        return table
    if C.CHANNEL not in table.column_names:
        raise ContractError(f"channel={channel!r}: the events have no '{C.CHANNEL}' column")
    # is_in with an Arrow value set: nulls are not in it (False), and no Python scalar (see arrow_to_numpy)
    return table.filter(pc.is_in(table[C.CHANNEL], value_set=strings_to_arrow([channel])))


SLICE_EVENTS = 1 << 18  # events per slice of a session-sorted file: ~65k sessions, one EMBED_CHUNK


def _sorted_by_session(pf: pq.ParquetFile) -> bool:
    """Whether the file's rows are grouped by session id in ascending order (every contract writer's:
    validation sorts by session, then time), read from the session_id column alone."""
    ids = pf.read(columns=[C.SESSION_ID])[C.SESSION_ID]
    if ids.null_count or len(ids) < 2:
        return not ids.null_count
    ids = ids.combine_chunks()
    return bool(pc.all(pc.greater_equal(ids.slice(1), ids.slice(0, len(ids) - 1))).as_py())


def _session_slices(
    pf: pq.ParquetFile, columns: list[str], channel: str | None, slice_rows: int
) -> Iterator[pa.Table]:
    """Consecutive slices of ~``slice_rows`` events of a session-sorted file, each cut at a session
    boundary (the last session of a read waits for the next one): the model starts after the first
    slice instead of after the whole file is read and featurised."""
    carry: pa.Table | None = None
    for batch in pf.iter_batches(batch_size=slice_rows, columns=columns):
        table = pa.Table.from_batches([batch])
        if carry is not None:
            table = pa.concat_tables([carry, table])
        ids = table[C.SESSION_ID]
        cut = pc.index(ids, ids[table.num_rows - 1]).as_py()  # first row of the last session
        carry = table.slice(cut)
        if cut:
            yield filter_channel(table.slice(0, cut), channel)
    if carry is not None and carry.num_rows:
        yield filter_channel(carry, channel)


def _partitions(
    path: Path,
    columns: list[str],
    max_rows: int,
    channel: str | None,
    workdir: Path,
    slice_rows: int | None = None,
) -> Iterator[pa.Table]:
    """Tables holding whole sessions, each at most ~max_rows events.

    A file sorted by session (what validation writes) is read in slices of ``slice_rows`` events cut
    at session boundaries; any other file that fits is read at once, and a larger one is streamed once
    and spilled to hash partitions of session_id on disk, so memory stays bounded by one partition
    whatever the input size.
    """
    pf = pq.ParquetFile(path)
    total = pf.metadata.num_rows
    slice_rows = slice_rows or SLICE_EVENTS
    if total > slice_rows and _sorted_by_session(pf):
        yield from _session_slices(pf, columns, channel, slice_rows)
        return
    n_parts = max(1, math.ceil(total / max_rows))
    if n_parts == 1:
        # ParquetFile.read, not pq.read_table: the latter goes through pyarrow.dataset, which imports pandas
        yield filter_channel(pf.read(columns=columns), channel)
        return
    logger.info(
        "%s: %s events > %s in memory: spilling to %d session-hash partitions",
        path,
        f"{total:,}",
        f"{max_rows:,}",
        n_parts,
    )
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for rb in pf.iter_batches(batch_size=min(max_rows, 1 << 20), columns=columns):
            table = filter_channel(pa.Table.from_batches([rb]), channel)
            if table.num_rows == 0:
                continue
            sid = table[C.SESSION_ID].combine_chunks().dictionary_encode()
            uniq = sid.dictionary.to_numpy(zero_copy_only=False).astype(object)
            import pandas as pd  # the spill path only: its hash keeps the partitions of earlier releases

            part_of_unique = (pd.util.hash_array(uniq) % np.uint64(n_parts)).astype(np.int64)
            part = part_of_unique[sid.indices.to_numpy(zero_copy_only=False)]
            for p in np.unique(part):
                if p not in writers:
                    writers[p] = pq.ParquetWriter(workdir / f"part-{p:05d}.parquet", table.schema)
                writers[p].write_table(table.filter(pa.array(part == p)))
    finally:
        for w in writers.values():
            w.close()
    for p in sorted(writers):
        part_path = workdir / f"part-{p:05d}.parquet"
        yield pq.ParquetFile(part_path).read()
        part_path.unlink()


class BatchEmbedder(Protocol):
    """What the streaming driver needs of a runtime (torch's ``SessionEmbedder``, the ONNX one)."""

    def featurise(self, table: pa.Table) -> SessionArrays: ...

    def embed_arrays(
        self, arrays: SessionArrays, progress: Any = None, shapes: list[tuple[int, int]] | None = None
    ) -> np.ndarray: ...


def _featurised(embedder: BatchEmbedder, table: pa.Table) -> tuple[int, SessionArrays, float]:
    """(events, featurised sessions, seconds it took) of one partition: the embed job's prefetched item."""
    t0 = time.perf_counter()
    arrays = embedder.featurise(table)
    return table.num_rows, arrays, time.perf_counter() - t0


def prefetch(items: Iterator[Any], pool: ThreadPoolExecutor) -> Iterator[Any]:
    """Yield from ``items`` while a worker thread already makes the next one (Arrow and numpy drop the GIL)."""
    done = object()
    future = pool.submit(next, items, done)
    while True:
        item = future.result()
        if item is done:
            return
        future = pool.submit(next, items, done)
        yield item


def run_embed_job(
    load_embedder: Callable[[], BatchEmbedder],
    events_path: str | Path,
    out_path: str | Path,
    *,
    max_rows_in_memory: int = 5_000_000,
    chunk_sessions: int = EMBED_CHUNK,
    channel: str | None = None,
    progress: bool = True,
    start: float | None = None,
) -> EmbedStats:
    """Stream an events parquet into ``session_embeddings.parquet`` (written atomically, by one job at a
    time: :mod:`clicks2intent.common.files`).

    The one driver of both runtimes (``embed_file`` of :mod:`~clicks2intent.encoder.embed` and of
    :mod:`~clicks2intent.encoder.runtime`); ``load_embedder`` runs after the input file is checked.
    One pass, overlapped: a reader thread loads and featurises the next partition and a writer thread
    writes the previous chunk's vectors while the model runs on this one. Featurisation is vectorised per
    partition (no per-session Python); within each chunk of ``chunk_sessions`` sessions, batches are
    length-bucketed so padding stays small. Rows come out grouped by partition and chunk.
    """
    start = time.perf_counter() if start is None else start
    events_path, out_path = Path(events_path), Path(out_path)
    if max_rows_in_memory < 1:
        raise ConfigError(f"max_rows_in_memory must be >= 1, got {max_rows_in_memory}")
    if chunk_sessions < 1:
        raise ConfigError(f"chunk_sessions must be >= 1, got {chunk_sessions}")
    columns = input_columns(events_path)
    n_events = n_sessions = n_parts = 0
    shapes: list[tuple[int, int]] = []
    phases = {"read": 0.0, "featurise": 0.0, "model": 0.0, "write": 0.0}  # main-thread waits
    # One writer per output (a second job is refused), a temporary name of this job, renamed when complete.
    with atomic_output(out_path) as tmp_out:
        embedder = load_embedder()
        bar = progress_bar(progress, total=None, unit="session", desc="embed")
        workdir = job_temp_dir(out_path.parent, SPILL_PREFIX)  # a killed job's spill: removed by the next
        try:
            # No dictionary pages: session ids are unique and floats do not repeat (faster writes).
            with (
                pq.ParquetWriter(tmp_out, OUTPUT_SCHEMA, use_dictionary=False) as writer,
                ThreadPoolExecutor(max_workers=2, thread_name_prefix="c2i-embed-io") as pool,
            ):
                # The worker reads AND featurises the next partition while the model runs on this one.
                partitions = _partitions(events_path, columns, max_rows_in_memory, channel, workdir)
                parts = prefetch((_featurised(embedder, table) for table in partitions), pool)
                pending: Future[None] | None = None
                tick = time.perf_counter()
                for n_rows, arrays, featurise_s in parts:
                    waited = time.perf_counter() - tick  # read + featurise not hidden behind the model
                    phases["featurise"] += min(waited, featurise_s)
                    phases["read"] += waited - min(waited, featurise_s)
                    tick = time.perf_counter()
                    if bar is not None:
                        bar.total = (bar.total or 0) + len(arrays)
                        bar.refresh()
                    for first in range(0, len(arrays), chunk_sessions):
                        chunk = arrays.slice(first, first + chunk_sessions)
                        out = embeddings_table(chunk, embedder.embed_arrays(chunk, bar, shapes))
                        tick = _lap(phases, "model", tick)
                        if pending is not None:
                            pending.result()  # one chunk in flight: memory stays bounded
                        tick = _lap(phases, "write", tick)
                        pending = pool.submit(writer.write_table, out)
                    n_events += n_rows
                    n_sessions += len(arrays)
                    n_parts += 1
                if pending is not None:
                    pending.result()
                _lap(phases, "write", tick)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if bar is not None:
                bar.close()
    return EmbedStats(n_events, n_sessions, n_parts, time.perf_counter() - start, shapes, phases)


def _lap(phases: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    phases[name] += now - since
    return now


def progress_bar(enabled: bool, total: int | None, unit: str, desc: str) -> Any:
    """A tqdm bar on stderr, or None when ``enabled`` is False."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
