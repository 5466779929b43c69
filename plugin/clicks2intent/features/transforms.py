"""Request-time transforms: what the on-demand views (and serving's in-process path) run per request.

The Feast on-demand views of :mod:`clicks2intent.features.definitions` store a two-line UDF in the
registry that imports its implementation from THIS module (``from clicks2intent.features.transforms
import inflight_intent_transform``) and passes its parameters as literals; Feast re-executes that
text at every request. Registries applied before the package was split say
``from clicks2intent.feast_objects import …`` instead; :mod:`clicks2intent.feast_objects` re-exports
these functions so both keep working. Renaming or moving a function here breaks applied registries.

Python mode: a dict of equal-length lists in, a dict of lists out. ``feast apply`` calls each UDF once
on synthetic inputs (``"hello world"``, ``[1.0]``), so unknown tiles, channels and short vectors are
"unknown" (NaN / OOV) rather than errors. The models and prototypes are loaded once per process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clicks2intent.common.settings import artifacts_dir
from clicks2intent.data.world import World, load_world
from clicks2intent.errors import ArtifactError, missing_extra
from clicks2intent.names import columns as C
from clicks2intent.names.features import (
    CANDIDATE_TILES,
    CUSTOMER_WEB_EMBEDDING,
    INFLIGHT_CHANNEL,
    INFLIGHT_DEVICE,
    INFLIGHT_DWELL_SECONDS,
    INFLIGHT_EMBEDDING,
    INFLIGHT_EVENT_TIMES_US,
    INFLIGHT_INTENT_CONFIDENCE,
    INFLIGHT_INTENT_LABEL,
    INFLIGHT_PAGE_TYPES,
    INFLIGHT_SEARCH_QUERIES,
    INFLIGHT_SESSION_INTENT,
    INFLIGHT_UNKNOWN_PAGE_SHARE,
    SESSION_AFFINITY_VIEW,
    SESSION_NEXT_PAGE,
    SESSION_TILE_AFFINITY,
    TILE_AFFINITY,
    TILE_AFFINITY_VIEW,
    VISITOR_EMBEDDING_DECAYED,
    VISITOR_NEXT_PAGE,
    VISITOR_TILE_AFFINITY,
)
from clicks2intent.names.paths import ARTIFACTS, ArtifactLayout
from clicks2intent.names.settings import ARTIFACTS as ARTIFACTS_ENV

# Sub-directories of an artifacts root the views read (the layout's names, relative to its root).
ENCODER_SUBDIR = str(ARTIFACTS.encoder.relative_to(ARTIFACTS.root))
INTENT_SUBDIR = str(ARTIFACTS.intent.relative_to(ARTIFACTS.root))
FEATURES_SUBDIR = str(ARTIFACTS.features.relative_to(ARTIFACTS.root))

# Columns of the tile-prototype file (written by ``c2i features build``, not a Feast source).
TILE_ID = "tile_id"
PROTOTYPE = "prototype"
PROTOTYPE_SESSIONS = "n_sessions"
# Schema metadata of that file: the mean of every session embedding, the point prototypes start from.
CENTRE_KEY = "c2i.centre"


# --- Artifacts loaded by the on-demand views (once per process) ------------------------------------
def resolve_artifacts_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Where the on-demand views find the encoder, classifier, tile prototypes and world declaration.

    ``$C2I_ARTIFACTS`` (a deployment's setting: the service sets it to the artifacts it carries), else
    ``override`` (a view's ``artifacts_dir``: the artifacts the repo's features were built from), else
    ``<repo>/artifacts`` when the package runs from a checkout, else ``./artifacts``. Cached per
    (override, env) so the per-request path makes no filesystem calls."""
    return _resolve(str(override) if override else None, artifacts_dir(), os.getcwd())


@functools.lru_cache(maxsize=64)
def _resolve(override: str | None, env: str | None, cwd: str) -> Path:
    if env:
        return Path(env).resolve()
    if override:
        return Path(override).resolve()
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "artifacts"
    return Path(cwd).resolve() / "artifacts"


_LOCK = threading.Lock()
_MODELS: dict[Path, tuple[Any, Any]] = {}
_PROTOTYPES: dict[Path, Prototypes] = {}
_HEADS: dict[Path, NextPageHead] = {}
_WORLDS: dict[Path, World] = {}


def load_artifact_world(root: Path) -> World:
    """The world declaration the features under ``root`` were built with (``features/world.yaml``), cached."""
    with _LOCK:
        if root not in _WORLDS:
            path = ArtifactLayout(root).features_world
            if not path.is_file():
                raise ArtifactError(
                    f"{path} not found: run `c2i features build` (it writes the world declaration beside the "
                    f"features), or point ${ARTIFACTS_ENV} at the artifacts directory"
                )
            _WORLDS[root] = load_world(path)
        return _WORLDS[root]


@contextlib.contextmanager
def _encoder_imports(view: str) -> Iterator[None]:
    """Around the imports of the PyTorch encoder for an on-demand view's transform: a feature-store runtime
    without the torch extra (README "A scheduled `feast materialize`") materialises, but cannot run it (nor
    Feast's inference of it at ``feast apply``): one error naming the view and the extra."""
    try:
        yield
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        raise ArtifactError(
            f"on-demand view {view}: the encoder needs {exc.name}, which is not installed (the `{extra[0]}` "
            "extra): run `feast apply` and serving from an install with it"
        ) from exc


def load_models(root: Path) -> tuple[Any, Any]:
    """(SessionEmbedder, IntentClassifier) from ``root``/encoder and ``root``/intent, cached per process."""
    with _LOCK:
        if root not in _MODELS:
            with _encoder_imports(INFLIGHT_SESSION_INTENT):
                from clicks2intent.encoder.embed import SessionEmbedder
            from clicks2intent.intent.distill import IntentClassifier

            layout = ArtifactLayout(root)
            for path in (layout.encoder, layout.intent):
                if not path.is_dir():
                    raise ArtifactError(
                        f"on-demand view {INFLIGHT_SESSION_INTENT}: {path} not found; train the encoder and "
                        f"the intent classifier first, or point ${ARTIFACTS_ENV} at the artifacts directory"
                    )
            embedder = SessionEmbedder.load(layout.encoder, device="cpu")
            warm_up(embedder)
            _MODELS[root] = (embedder, IntentClassifier.load(layout.intent))
        return _MODELS[root]


WARM_UP_LENGTHS = (1, 2, 3, 5, 8)  # session lengths run twice at load


def warm_up(embedder: Any) -> None:
    """Run a few synthetic sessions through the encoder once per process, before the first request.

    TorchScript's profiling executor specialises a graph over its first two runs per input shape: the
    first in-flight requests were orders of magnitude slower than the next ones, which is what ``feast
    serve`` showed as a slow on-demand view "warm"; the same cost is paid at load instead
    (docs/decisions/0012-features-and-feast.md)."""
    import pandas as pd

    start = pd.Timestamp("2024-01-01", tz="UTC")
    page = next(iter(embedder.vocabularies[C.PAGE_TYPE].tokens), C.OOV_PAGE_TYPE)  # any page it knows
    for _ in range(2):
        for n in WARM_UP_LENGTHS:
            step = pd.Timedelta(seconds=10)
            events = [
                {C.PAGE_TYPE: page, C.EVENT_TIMESTAMP: start + i * step, C.DWELL_SECONDS: 5.0}
                for i in range(n)
            ]
            embedder.embed_session(events)


@dataclass(frozen=True)
class Prototypes:
    """Unit prototype vectors of the tiles that have one, stacked for one matrix product per request."""

    index: dict[str, int]  # tile id → row of ``matrix``
    matrix: np.ndarray  # [n_tiles_with_prototype, dim] float64
    # The mean session embedding the prototypes are offsets from; a scored embedding is centred on it
    # too. None (prototype files written before it was stored): raw cosine, as those models were trained.
    centre: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1]) if self.matrix.ndim == 2 else 0

    @classmethod
    def from_dict(
        cls, prototypes: Mapping[str, Sequence[float]], centre: Sequence[float] | None = None
    ) -> Prototypes:
        tiles = list(prototypes)
        dims = {len(v) for v in prototypes.values()}
        if len(dims) > 1:
            raise ValueError(f"prototypes: tiles have different dimensions {sorted(dims)}")
        matrix = np.asarray([prototypes[t] for t in tiles], dtype=np.float64).reshape(
            len(tiles), dims.pop() if dims else 0
        )
        centre_vec = None if centre is None else np.asarray(centre, dtype=np.float64)
        if centre_vec is not None and tiles and centre_vec.shape != (matrix.shape[1],):
            raise ValueError(
                f"prototypes: centre has shape {centre_vec.shape}, prototypes {matrix.shape[1]}-d"
            )
        return cls({t: i for i, t in enumerate(tiles)}, matrix, centre_vec)


def load_prototypes(root: Path) -> tuple[Prototypes, int]:
    """(tile prototypes of ``c2i features build`` under ``root``/features, their dimension), cached."""
    with _LOCK:
        if root not in _PROTOTYPES:
            import pyarrow.parquet as pq

            path = ArtifactLayout(root).feature_file("tile_prototypes")
            if not path.is_file():
                raise ArtifactError(
                    f"on-demand view {TILE_AFFINITY_VIEW}: {path} not found; run `c2i features build` first, "
                    f"or point ${ARTIFACTS_ENV} at the artifacts directory"
                )
            arrow = pq.read_table(path)
            centre_json = (arrow.schema.metadata or {}).get(CENTRE_KEY.encode())
            centre = None if centre_json is None else json.loads(centre_json)
            table = arrow.to_pydict()
            pairs = zip(table[TILE_ID], table[PROTOTYPE], strict=True)
            _PROTOTYPES[root] = Prototypes.from_dict({str(t): v for t, v in pairs if v is not None}, centre)
        prototypes = _PROTOTYPES[root]
        return prototypes, prototypes.dim


@dataclass(frozen=True)
class NextPageHead:
    """The encoder's next-event head as numpy: ``log_softmax(scale · v @ weight.T + bias)`` over page ids.

    ``columns[i]`` is the head's row of the world's ``i``-th web page type (-1: a page type the encoder
    never saw, NaN)."""

    weight: np.ndarray  # [n_page_ids, dim] float64
    bias: np.ndarray  # [n_page_ids]
    scale: float
    columns: np.ndarray  # [len(world.page_types)] int64

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    @classmethod
    def from_model(
        cls, model: Any, page_tokens: Sequence[str], n_special: int, page_types: Sequence[str]
    ) -> NextPageHead:
        """From a ``SessionEncoder``, its page vocabulary (token ``i`` is id ``n_special + i``) and the
        page types to report, in order (the world's web pages)."""
        index = {t: n_special + i for i, t in enumerate(page_tokens)}
        return cls(
            weight=model.next_page.weight.detach().double().numpy(),
            bias=model.next_page.bias.detach().double().numpy(),
            scale=float(model.next_scale.detach()),
            columns=np.asarray([index.get(p, -1) for p in page_types], dtype=np.int64),
        )

    def logp(self, vectors: np.ndarray) -> np.ndarray:
        """``[n, len(columns)]`` log P(next page) of ``[n, dim]`` vectors (NaN: unknown page type)."""
        logits = (self.scale * np.asarray(vectors, dtype=np.float64)) @ self.weight.T + self.bias
        top = logits.max(axis=1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        out = logp[:, np.maximum(self.columns, 0)]
        out[:, self.columns < 0] = np.nan
        return out


def load_next_page_head(root: Path) -> NextPageHead:
    """The next-event head of the encoder under ``root``/encoder over the world's web pages, cached."""
    world = load_artifact_world(root)
    with _LOCK:
        if root not in _HEADS:
            from clicks2intent.names.paths import CHECKPOINT_FILE

            with _encoder_imports(SESSION_AFFINITY_VIEW):
                from clicks2intent.encoder.model import N_SPECIAL, load_checkpoint

            path = ArtifactLayout(root).encoder / CHECKPOINT_FILE
            if not path.is_file():
                raise ArtifactError(
                    f"on-demand view {SESSION_AFFINITY_VIEW}: {path} not found; train the encoder first, "
                    f"or point ${ARTIFACTS_ENV} at the artifacts directory"
                )
            loaded = _MODELS.get(root)  # serving loaded the encoder already: no second read of the file
            if loaded is not None:
                model, vocabularies = loaded[0].model, loaded[0].vocabularies
            else:
                ckpt = load_checkpoint(path)
                model, vocabularies = ckpt.model, ckpt.vocabularies
            _HEADS[root] = NextPageHead.from_model(
                model, vocabularies[C.PAGE_TYPE].tokens, N_SPECIAL, world.page_types
            )
        return _HEADS[root]


# --- On-demand transforms (python mode: dict of equal-length lists in, dict of lists out) ----------
def inflight_events(
    page_types: Sequence[str] | None,
    times_us: Sequence[int] | None,
    dwell: Sequence[float] | None,
    queries: Sequence[str] | None,
    channel: str | None,
    device: str | None,
) -> list[dict[str, Any]]:
    """Request arrays of one in-flight session → contract event dicts (``SessionEmbedder.embed_session``).

    Arrays are aligned by event; ``times``/``dwell``/``queries`` may be empty (unknown) but not of
    another length. Unknown channels become missing (like OOV page types: serving never crashes on a
    value the batch data never had)."""
    pages = list(page_types or [])
    n = len(pages)
    cols: dict[str, list[Any]] = {}
    for name, values in (
        (INFLIGHT_EVENT_TIMES_US, times_us),
        (INFLIGHT_DWELL_SECONDS, dwell),
        (INFLIGHT_SEARCH_QUERIES, queries),
    ):
        values = list(values or [])
        if values and len(values) != n:
            raise ValueError(
                f"{name}: {len(values)} values for {n} page types; arrays must align by event (or be empty)"
            )
        cols[name] = values or [None] * n
    chan = channel.strip().lower() if isinstance(channel, str) else ""
    chan = chan if chan in C.CHANNELS else None
    dev = device.strip() if isinstance(device, str) and device.strip() else None
    events = []
    for i, page in enumerate(pages):
        t = cols[INFLIGHT_EVENT_TIMES_US][i]
        d = cols[INFLIGHT_DWELL_SECONDS][i]
        q = cols[INFLIGHT_SEARCH_QUERIES][i]
        events.append(
            {
                C.PAGE_TYPE: page,
                C.EVENT_TIMESTAMP: None if t is None else _us_to_datetime(int(t)),
                C.DWELL_SECONDS: request_dwell(d),
                C.SEARCH_QUERY: q if isinstance(q, str) and q.strip() else None,
                C.CHANNEL: chan,
                C.DEVICE: dev,
            }
        )
    return events


def request_dwell(value: Any) -> float | None:
    """One event's dwell from a request array → seconds, or ``None`` when unknown.

    Feast request arrays hold no null and JSON has no NaN, so a strict-JSON client cannot send
    ``[12.6, null]`` (Feast 0.67 rejects it, and a mix of ``12`` and ``12.6``, while inferring the array
    type, before any on-demand view runs). What it can send: strings (``["12.6", ""]``: empty, ``"nan"``
    or any non-number is unknown) or numbers where a negative one is unknown (the contract's dwell is
    never negative). In-process callers send ``NaN``."""
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


def _us_to_datetime(us: int) -> Any:
    import pandas as pd

    return pd.Timestamp(us, unit="us", tz="UTC")


def unknown_page_share(events: Sequence[Mapping[str, Any]], embedder: Any) -> float:
    """Share of a session's events whose page type the encoder cannot read (OOV or never learned)."""
    if not events:
        return 1.0
    vocab = embedder.vocabularies[C.PAGE_TYPE]
    return sum(e.get(C.PAGE_TYPE) not in vocab for e in events) / len(events)


def map_pages(events: list[dict[str, Any]], world: World) -> list[dict[str, Any]]:
    """Raw page names / URLs of request events → the world's page types (in place; already mapped ones stay)."""
    mapper = world.mapper
    for e in events:
        e[C.PAGE_TYPE] = mapper(e.get(C.PAGE_TYPE))
    return events


def inflight_text(events: Sequence[Mapping[str, Any]]) -> Any:
    """What the distilled classifier reads of an in-flight session beside its embedding: its page types
    (already mapped through the world, in request order = time order) and its search queries."""
    from clicks2intent.intent.inputs import SessionText

    return SessionText.from_events(events)


def request_text(request: Mapping[str, Any], world: World) -> Any:
    """:func:`inflight_text` of one session's request fields (``inflight_request``), pages mapped through
    the world: what :func:`inflight_intent_transform` hands the classifier for that session."""
    pages = list(request.get(INFLIGHT_PAGE_TYPES) or [])
    queries = list(request.get(INFLIGHT_SEARCH_QUERIES) or []) or [None] * len(pages)
    events = [{C.PAGE_TYPE: p, C.SEARCH_QUERY: q} for p, q in zip(pages, queries, strict=True)]
    return inflight_text(map_pages(events, world))


def inflight_intent_transform(
    inputs: Mapping[str, list[Any]], artifacts_dir: str | None = None
) -> dict[str, list[Any]]:
    """Embed each in-flight session with the exported encoder and label it with the distilled classifier.

    Raw pages map through the world first; a session none of whose pages the encoder can read gets no
    label (``columns.NO_LABEL``, confidence NaN): an answer would be the classifier's prior, not the
    session's intent. The classifier reads the embedding and the session's mapped pages and queries
    (:func:`inflight_text`), as ``c2i taxonomy distill`` read the finished sessions'."""
    root = resolve_artifacts_dir(artifacts_dir)
    embedder, classifier = load_models(root)
    world = load_artifact_world(root)
    pages = inputs[INFLIGHT_PAGE_TYPES]
    n = len(pages)

    def col(name: str) -> list[Any]:
        values = inputs.get(name)
        return list(values) if values is not None else [None] * n

    times, dwell, queries = (
        col(INFLIGHT_EVENT_TIMES_US),
        col(INFLIGHT_DWELL_SECONDS),
        col(INFLIGHT_SEARCH_QUERIES),
    )
    channels, devices = col(INFLIGHT_CHANNEL), col(INFLIGHT_DEVICE)
    out_emb: list[list[float]] = []
    out_label: list[str] = []
    out_conf: list[float] = []
    out_unknown: list[float] = []
    for i in range(n):
        events = map_pages(
            inflight_events(pages[i], times[i], dwell[i], queries[i], channels[i], devices[i]), world
        )
        vector = embedder.embed_session(events)
        unknown = unknown_page_share(events, embedder)
        label, confidence, _ = classifier.predict_one(vector, text=inflight_text(events))
        out_emb.append([float(x) for x in vector])
        out_label.append(label if unknown < 1.0 else C.NO_LABEL)
        out_conf.append(float(confidence) if unknown < 1.0 else math.nan)
        out_unknown.append(float(unknown))
    return {
        INFLIGHT_EMBEDDING: out_emb,
        INFLIGHT_INTENT_LABEL: out_label,
        INFLIGHT_INTENT_CONFIDENCE: out_conf,
        INFLIGHT_UNKNOWN_PAGE_SHARE: out_unknown,
    }


def tile_affinity(
    embedding: Sequence[float] | None,
    tiles: Sequence[str],
    prototypes: Prototypes | Mapping[str, Sequence[float]],
    dim: int,
) -> list[float]:
    """Cosine between a web-intent embedding and each candidate tile's prototype (NaN = unknown: no
    web intent, a tile without a prototype, or an embedding of another dimension than ``dim``).

    The embedding is centred on the prototypes' centre first, so the cosine is taken in the space the
    prototypes live in (offsets from the sessions' mean) rather than mixing in the direction every
    embedding shares. On the demo's data the choice is within noise
    (docs/decisions/0012-features-and-feast.md).

    Serving calls it too (for a fresher embedding than the customer's), so both paths score alike."""
    if not isinstance(prototypes, Prototypes):
        prototypes = Prototypes.from_dict(prototypes)
    if prototypes.index and prototypes.dim != dim:
        raise ValueError(f"dim: {dim} does not match the prototypes' dimension {prototypes.dim}")
    if embedding is None or len(embedding) != dim or dim == 0:
        return [math.nan] * len(tiles)
    x = np.asarray(embedding, dtype=np.float64)
    if prototypes.centre is not None:
        x = x - prototypes.centre
    norm = float(np.sqrt(x @ x))
    if not math.isfinite(norm) or norm == 0:
        return [math.nan] * len(tiles)
    scores = (prototypes.matrix @ x / norm).tolist()
    return [scores[prototypes.index[t]] if t in prototypes.index else math.nan for t in tiles]


def next_page_logp(embedding: Sequence[float] | None, head: NextPageHead) -> list[float]:
    """log P(next page) for each web page type of the world, read by the encoder's own next-event head
    from a session's (or a visitor's decayed) embedding; all NaN when there is no embedding of the head's
    dimension, NaN for a page type the encoder never saw.

    Why it is a feature: the head is what the encoder was trained for, and it reads the END of the session
    (the last event's state), which a bag of pages and a topic label cannot: on the demo's data it beat
    the labels beside the tile affinities on conversion (docs/decisions/0012-features-and-feast.md).
    Serving calls it for the in-flight embedding too."""
    n = len(head.columns)
    if embedding is None or len(embedding) != head.dim:
        return [math.nan] * n
    x = np.asarray(embedding, dtype=np.float64)
    if not np.isfinite(x).all():
        return [math.nan] * n
    return head.logp(x[None, :])[0].tolist()


def tile_affinity_transform(
    inputs: Mapping[str, list[Any]], artifacts_dir: str | None = None
) -> dict[str, list[Any]]:
    """Affinity of the customer's web embedding to each tile of the request's ``candidate_tiles``."""
    prototypes, dim = load_prototypes(resolve_artifacts_dir(artifacts_dir))
    embeddings = inputs[CUSTOMER_WEB_EMBEDDING]
    candidates = inputs[CANDIDATE_TILES]
    return {
        TILE_AFFINITY: [
            tile_affinity(e, t or [], prototypes, dim) for e, t in zip(embeddings, candidates, strict=True)
        ]
    }


def session_affinity_transform(
    inputs: Mapping[str, list[Any]], artifacts_dir: str | None = None
) -> dict[str, list[Any]]:
    """The conversion model's compact views of the session's and the visitor's web embeddings.

    Affinity to every tile (the world's tile order; the same function as ``tile_affinity``, so a tile's
    prototype means one thing) and the next-page distribution of the encoder's head (``next_page_logp``):
    2 × (tiles + web page types) values instead of 2 × d raw dimensions."""
    root = resolve_artifacts_dir(artifacts_dir)
    prototypes, dim = load_prototypes(root)
    head = load_next_page_head(root)
    tiles = list(load_artifact_world(root).tiles)
    sessions, visitors = inputs[C.EMBEDDING], inputs[VISITOR_EMBEDDING_DECAYED]
    return {
        SESSION_TILE_AFFINITY: [tile_affinity(e, tiles, prototypes, dim) for e in sessions],
        VISITOR_TILE_AFFINITY: [tile_affinity(e, tiles, prototypes, dim) for e in visitors],
        SESSION_NEXT_PAGE: [next_page_logp(e, head) for e in sessions],
        VISITOR_NEXT_PAGE: [next_page_logp(e, head) for e in visitors],
    }
