"""Is the session embedding any good? Linear probes against simple baselines, on simulated and real data.

:func:`encoder_report` (``c2i encoder-report``) and :func:`write_report` give
``encoder_quality.json`` + ``encoder_quality.md`` (under ``artifacts/reports/`` by default) with two probes, each with the same classifier (multinomial
logistic regression on standardised features) for every feature set, and paired bootstrap intervals
for the differences that matter:

* **simulated** — predict the simulator's hidden ``true_intent`` of a session from its embedding, vs a
  TF-IDF bag of page types (the issue's baseline) and TF-IDF + the last three pages (an order-aware
  baseline). Sessions are split by time (session end): earliest 70 % train the probe, latest 30 % test.
* **MSNBC** (real, ``c2i encoder-report --dataset msnbc PATH``) — the protocol of
  :class:`MsnbcProtocol`: every prefix ``k = 1..n-1`` of every session, predict the category of event
  ``k+1``. Sessions are split by file position (arrival order): the first 70 % train the encoder (it
  never sees a test session) and the probes, the last 30 % are only tested. Baseline = XGBoost (the
  ablation's estimator) on bag-of-pages + last page + prefix length (the bar an encoder must beat); + 2nd/3rd-last
  pages (the hand-made order features to beat, printed beside the embedding in every run); baseline +
  the embedding (the published vector); baseline + the next-event distribution the encoder's own head
  reads from that vector (what ``session_affinity`` serves the conversion model); hand-made features +
  embedding; the embedding alone (logistic regression). Paired bootstrap intervals against the baseline
  and against the hand-made features; a PNG of those intervals. Measurements:
  ``docs/decisions/0003-order-features-distilled-inputs-seeds.md``.

Whichever wins is reported as measured.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.data.ingest import read_msnbc
from clicks2intent.encoder.config import EncoderConfig
from clicks2intent.encoder.embed import SessionEmbedder
from clicks2intent.encoder.train import TrainConfig, save_encoder_dir, train_encoder
from clicks2intent.errors import ConfigError, ContractError
from clicks2intent.evaluation import metrics as M
from clicks2intent.names import columns as C
from clicks2intent.names.paths import ARTIFACTS, CHECKPOINT_FILE

logger = logging.getLogger(__name__)

REPORT_NAME = "encoder_quality"


@dataclass
class ProbeResult:
    """One feature set's scores on the test sessions."""

    name: str
    n_features: int
    accuracy: float
    macro_recall_at_1: float
    macro_f1: float
    log_loss: float


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return (train - mean) / std, (test - mean) / std


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def fit_probe(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """Standardise, fit multinomial logistic regression, return test probabilities over ``classes``."""
    from sklearn.linear_model import LogisticRegression

    x_train, x_test = _standardise(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64))
    clf = LogisticRegression(max_iter=1000, C=1.0, random_state=seed)
    clf.fit(x_train, y_train)
    proba = np.full((x_test.shape[0], len(classes)), 1e-9)
    col = {c: i for i, c in enumerate(classes)}
    proba[:, [col[c] for c in clf.classes_]] = clf.predict_proba(x_test)
    return proba / proba.sum(axis=1, keepdims=True)


def _codes(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in y], dtype=np.int64)


def _scores(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Accuracy, macro recall@1 (mean per-class recall over classes present in ``y``), macro F1, log loss.

    The definitions of :mod:`clicks2intent.evaluation.metrics` (F1 over the classes present in ``y``)."""
    yi = _codes(y, classes)
    pred = proba.argmax(axis=1)
    return {
        "accuracy": float((pred == yi).mean()),
        "macro_recall_at_1": M.macro_recall_at_1(yi, proba),
        "macro_f1": M.macro_f1(yi, pred, labels=np.unique(yi)),
        "log_loss": M.log_loss(yi, proba),
    }


PROBE_METRICS: dict[str, M.MetricFn] = {
    "macro_recall_at_1": M.macro_recall_at_1,
    "log_loss": M.log_loss,
}


def paired_difference(
    y: np.ndarray,
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    classes: np.ndarray,
    n_boot: int = 300,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """95 % intervals of (a − b) for macro recall@1 and log loss, resampling test sessions.

    The ablation's :func:`clicks2intent.evaluation.metrics.paired_bootstrap` (same resamples for a and
    b), in this report's ``{"diff", "ci95_low", "ci95_high"}`` form."""
    boot = M.paired_bootstrap(
        _codes(y, classes), {"a": proba_a, "b": proba_b}, PROBE_METRICS, "b", n_boot, random_state=seed
    )
    return {
        m: {"diff": d.value, "ci95_low": d.low, "ci95_high": d.high} for m, d in boot["a"]["diff"].items()
    }


paired_bootstrap = paired_difference  # the name before metrics held the one bootstrap (old callers)


def _result(name: str, n_features: int, y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> ProbeResult:
    return ProbeResult(name=name, n_features=n_features, **_scores(y, proba, classes))


def _last_pages(sequences: list[list[str]], vocab: list[str], k: int) -> np.ndarray:
    """One-hot of the last ``k`` pages (slot j = j-th from the end; zeros when the session is shorter)."""
    index = {p: i for i, p in enumerate(vocab)}
    out = np.zeros((len(sequences), k * len(vocab)), dtype=np.float32)
    for r, seq in enumerate(sequences):
        for j in range(min(k, len(seq))):
            i = index.get(seq[-1 - j])
            if i is not None:
                out[r, j * len(vocab) + i] = 1.0
    return out


def _bag(sequences: list[list[str]], vocab: list[str]) -> np.ndarray:
    index = {p: i for i, p in enumerate(vocab)}
    out = np.zeros((len(sequences), len(vocab)), dtype=np.float32)
    for r, seq in enumerate(sequences):
        for p in seq:
            i = index.get(p)
            if i is not None:
                out[r, i] += 1.0
    return out


def _session_sequences(events: pd.DataFrame) -> pd.Series:
    """Page types per session in time order."""
    ev = events.sort_values([C.SESSION_ID, C.EVENT_TIMESTAMP], kind="stable")
    return ev.groupby(C.SESSION_ID, sort=False)[C.PAGE_TYPE].agg(list)


def _encoder_info(embedder: Any) -> dict[str, Any]:
    meta = embedder.checkpoint.metadata
    keys = ("n_train_sessions", "n_val_sessions", "n_holdout_sessions", "train_end", "holdout_start", "steps",
            "stop_reason", "initial_val_loss", "best_val_loss", "train_sessions_per_second")  # fmt: skip
    return {"config": embedder.config.to_dict(), **{k: meta.get(k) for k in keys}}


# --- simulated: linear probe to the hidden intent ------------------------------------------------


def simulated_probe(
    embedder: Any,
    events: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    test_fraction: float = 0.3,
    max_sessions: int | None = 30_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Embedding vs TF-IDF bag of page types (and + last 3 pages) → true intent, split by session end.

    ``max_sessions`` (a seeded uniform sample, drawn before the time split) bounds the probes' cost.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    ids = events[C.SESSION_ID].unique()
    if max_sessions is not None and len(ids) > max_sessions:
        keep = np.random.default_rng(seed).choice(ids, size=max_sessions, replace=False)
        events = events[events[C.SESSION_ID].isin(keep)]
    emb = embedder.embed_events(events)
    seqs = _session_sequences(events)
    data = emb.merge(truth[[C.SESSION_ID, C.TRUE_INTENT]], on=C.SESSION_ID, how="inner")
    if data.empty:
        raise ContractError("simulated probe: no session of the events has a row in the truth file")
    data = data.sort_values([C.EVENT_TIMESTAMP, C.SESSION_ID], kind="stable").reset_index(drop=True)
    n_test = int(round(test_fraction * len(data)))
    train, test = data.iloc[: len(data) - n_test], data.iloc[len(data) - n_test :]
    y_train = train[C.TRUE_INTENT].to_numpy(dtype=object)
    y_test = test[C.TRUE_INTENT].to_numpy(dtype=object)
    classes = np.array(sorted(data[C.TRUE_INTENT].unique()), dtype=object)

    seq_train = [seqs[s] for s in train[C.SESSION_ID]]
    seq_test = [seqs[s] for s in test[C.SESSION_ID]]
    tfidf = TfidfVectorizer(analyzer=_identity, lowercase=False)  # tokens = page types, in order
    tf_train, tf_test = tfidf.fit_transform(seq_train).toarray(), tfidf.transform(seq_test).toarray()
    vocab = list(tfidf.get_feature_names_out())
    e_train, e_test = np.stack(train[C.EMBEDDING].to_numpy()), np.stack(test[C.EMBEDDING].to_numpy())
    # A few dozen page types: dense features, standardised alike for every feature set.
    sets_train = {
        "tfidf_pages": tf_train,
        "tfidf_pages+last3": np.hstack([tf_train, _last_pages(seq_train, vocab, 3)]),
        "embedding": e_train,
        "tfidf_pages+embedding": np.hstack([tf_train, e_train]),
    }
    sets_test = {
        "tfidf_pages": tf_test,
        "tfidf_pages+last3": np.hstack([tf_test, _last_pages(seq_test, vocab, 3)]),
        "embedding": e_test,
        "tfidf_pages+embedding": np.hstack([tf_test, e_test]),
    }
    probas = {k: fit_probe(sets_train[k], y_train, sets_test[k], classes, seed=seed) for k in sets_train}
    n_features = {k: v.shape[1] for k, v in sets_train.items()}
    results = [asdict(_result(k, n_features[k], y_test, p, classes)) for k, p in probas.items()]
    test_start = pd.Timestamp(test[C.EVENT_TIMESTAMP].min()).isoformat() if n_test else None
    meta = embedder.checkpoint.metadata
    return {
        "task": "true_intent linear probe (simulated)",
        "n_train": len(train),
        "n_test": len(test),
        "classes": classes.tolist(),
        "test_start": test_start,
        "encoder_saw_test_sessions": _saw_test(meta, test_start),
        "results": results,
        "embedding_minus_tfidf": paired_difference(
            y_test, probas["embedding"], probas["tfidf_pages"], classes, seed=seed
        ),
        "embedding_minus_tfidf_last3": paired_difference(
            y_test, probas["embedding"], probas["tfidf_pages+last3"], classes, seed=seed
        ),
        "tfidf_plus_embedding_minus_tfidf": paired_difference(
            y_test, probas["tfidf_pages+embedding"], probas["tfidf_pages"], classes, seed=seed
        ),
    }


def _saw_test(meta: dict[str, Any], test_start: str | None) -> bool | None:
    """Whether the encoder's self-supervised training may have seen test sessions (no labels either way)."""
    if test_start is None:
        return None
    holdout = meta.get("holdout_start")
    if holdout is None:
        return True
    return pd.Timestamp(holdout) > pd.Timestamp(test_start)


# --- MSNBC: next category from a prefix ----------------------------------------------------------

MSNBC_BASELINE = "baseline"  # XGBoost on bag of pages + last page + prefix length (the bar)
MSNBC_LAST3 = "baseline+last3"  # + explicit 2nd/3rd-last pages: the hand-made order features to beat
MSNBC_BOTH = "baseline+embedding"  # XGBoost on the baseline + the prefix's embedding (the published vector)
MSNBC_NEXT = "baseline+next"  # + log P(next page) read from the vector by the encoder's next-event head
MSNBC_ALL = "baseline+last3+embedding"  # both order sources: what the embedding leaves to the hand-made ones
MSNBC_EMBEDDING = "embedding"  # the vector alone, multinomial logistic regression
MSNBC_BASELINE_LR = "baseline (logistic)"  # the baseline under the embedding's classifier: a reference
MSNBC_VARIANTS = (MSNBC_BASELINE, MSNBC_LAST3, MSNBC_BOTH, MSNBC_NEXT, MSNBC_ALL, MSNBC_EMBEDDING,
                  MSNBC_BASELINE_LR)  # fmt: skip


@dataclass
class MsnbcProtocol:
    """The real-data protocol: prefix → next category, sessions split by position, encoder never sees test.

    Every prefix ``k = 1..n-1`` of every session is an example (not one cut per session: each
    session's every position counts, as it would for a live session); examples are then sampled
    (seeded) to bound the probes' cost. Sessions — never prefixes — are split: the first
    ``train_fraction`` of the file (line order = arrival order) trains the encoder and the probes,
    the rest is only tested.
    """

    train_fraction: float = 0.7  # the issue's split: the earliest sessions train, the latest test
    max_train_rows: int | None = 40_000  # prefixes for the probes' training (bounds XGBoost's time)
    max_test_rows: int | None = 20_000  # test prefixes: narrow log-loss intervals on the difference
    # (the cost and interval width these bounds gave: docs/decisions/0011-evaluation.md)
    n_boot: int = 500  # paired bootstrap resamples of the test prefixes
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.train_fraction < 1.0:
            raise ConfigError(f"train_fraction={self.train_fraction} must be in (0, 1)")
        for name in ("max_train_rows", "max_test_rows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value} must be >= 1 when given")


def all_prefixes(sessions: Any, first: int, stop: int) -> pd.DataFrame:
    """``position, k, target_code`` for every prefix ``k = 1..n-1`` of sessions ``first..stop-1``."""
    lengths = np.array([len(s) for s in sessions.sequences[first:stop]], dtype=np.int64)
    cuts = np.maximum(lengths - 1, 0)
    position = np.repeat(np.arange(first, stop), cuts)
    k = np.arange(int(cuts.sum())) - np.repeat(np.cumsum(cuts) - cuts, cuts) + 1
    codes = np.concatenate([np.asarray(s) for s in sessions.sequences]) if sessions.sequences else np.zeros(0)
    target = codes[sessions.starts[position] + k] if len(position) else np.zeros(0, dtype=np.int64)
    return pd.DataFrame({"position": position, "k": k, "target_code": target.astype(np.int64)})


def _sample_rows(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or len(frame) <= n:
        return frame.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def prefix_features(sessions: Any, examples: pd.DataFrame, n_last: int = 1) -> np.ndarray:
    """Bag of pages (counts), one-hot of the last ``n_last`` pages, prefix length — vectorised."""
    n_cat = len(sessions.categories)
    codes = np.concatenate([np.asarray(s) for s in sessions.sequences])
    cum = np.zeros((len(codes) + 1, n_cat), dtype=np.float32)
    np.add.at(cum, (np.arange(1, len(codes) + 1), codes), 1.0)
    np.cumsum(cum, axis=0, out=cum)
    start = sessions.starts[examples["position"].to_numpy()]
    k = examples["k"].to_numpy()
    parts = [cum[start + k] - cum[start]]
    for j in range(n_last):  # j-th page from the end; zeros when the prefix is shorter
        onehot = np.zeros((len(k), n_cat), dtype=np.float32)
        has = k > j
        onehot[np.flatnonzero(has), codes[(start + k - 1 - j)[has]]] = 1.0
        parts.append(onehot)
    parts.append(k.astype(np.float32)[:, None])
    return np.hstack(parts)


def _xgb_proba(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int, seed: int
) -> np.ndarray:
    """The ablation's XGBoost (early stopping on the latest 15 % of training rows), fixed class list."""
    from clicks2intent.models.xgb import XGBMultiClassifier

    cols = [f"f{i}" for i in range(x_train.shape[1])]
    clf = XGBMultiClassifier(classes=list(range(n_classes)), random_state=seed)
    clf.fit(pd.DataFrame(x_train, columns=cols), y_train.tolist())
    return clf.predict_proba(pd.DataFrame(x_test, columns=cols))


def _prefix_embeddings(embedder: Any, sessions: Any, examples: pd.DataFrame) -> np.ndarray:
    """The encoder's vector of every prefix, each embedded as its own session (the encoder is a black box)."""
    from clicks2intent.evaluation.msnbc import PREFIX_ID, prefix_events

    ex = examples.assign(**{PREFIX_ID: [f"p{i:09d}" for i in range(len(examples))]})
    emb = embedder.embed_events(prefix_events(ex, sessions)).set_index(C.SESSION_ID)[C.EMBEDDING]
    return np.stack(emb.reindex(ex[PREFIX_ID]).to_numpy()).astype(np.float32)


def served_features(
    embedder: Any, published: np.ndarray, categories: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(session vector, log P(next page) per category) of published encoder outputs.

    The vector is the published ``vector`` part (all of it, or the first ``embedding_dim`` columns of
    ``vector+next``); the distribution is the encoder's own next-event head read from it, as
    ``features.transforms.next_page_logp`` serves it, in ``categories`` order (a category the encoder
    never learned gets the row's smallest log-probability)."""
    import torch

    cfg, model = embedder.config, embedder.model
    if cfg.output == "next":
        raise ConfigError(
            "the MSNBC probe needs the session vector: an encoder with output 'vector' or 'vector+next'"
        )
    vector = np.asarray(published[:, : cfg.embedding_dim], dtype=np.float32)
    with torch.no_grad():
        logits = model.next_page_logits(torch.from_numpy(vector).to(next(model.parameters()).device))
        logp = torch.log_softmax(logits[:, model.n_special :].double(), dim=-1).cpu().numpy()
    tokens = {t: i for i, t in enumerate(embedder.vocabularies[C.PAGE_TYPE].tokens)}
    out = np.repeat(logp.min(axis=1, keepdims=True), len(categories), axis=1)
    for j, c in enumerate(categories):
        if c in tokens:
            out[:, j] = logp[:, tokens[c]]
    return vector, out.astype(np.float32)


def msnbc_probe(embedder: Any, sessions: Any, protocol: MsnbcProtocol) -> dict[str, Any]:
    """Next category from a prefix: XGBoost baseline vs + hand-made order features vs + embedding.

    ``sessions`` (:func:`clicks2intent.evaluation.msnbc.sessions_from_events`) must be the same ones
    the encoder's training split was cut from; test sessions are the last ``1 - train_fraction``.
    """
    n_train_sessions = int(round(len(sessions.ids) * protocol.train_fraction))
    train = _sample_rows(all_prefixes(sessions, 0, n_train_sessions), protocol.max_train_rows, protocol.seed)
    test = _sample_rows(
        all_prefixes(sessions, n_train_sessions, len(sessions.ids)), protocol.max_test_rows, protocol.seed + 1
    )
    if train.empty or test.empty:
        raise ContractError(f"MSNBC probe: empty split (train {len(train)}, test {len(test)} prefixes)")
    n_cat, seed = len(sessions.categories), protocol.seed
    y_train, y_test = train["target_code"].to_numpy(), test["target_code"].to_numpy()
    base_tr, base_te = prefix_features(sessions, train), prefix_features(sessions, test)
    last3_tr, last3_te = prefix_features(sessions, train, 3), prefix_features(sessions, test, 3)
    categories = list(sessions.categories)
    pub_tr, pub_te = (
        _prefix_embeddings(embedder, sessions, train),
        _prefix_embeddings(embedder, sessions, test),
    )
    emb_tr, next_tr = served_features(embedder, pub_tr, categories)
    emb_te, next_te = served_features(embedder, pub_te, categories)
    sets = {  # (train, test) features of each XGBoost row
        MSNBC_BASELINE: (base_tr, base_te),
        MSNBC_LAST3: (last3_tr, last3_te),
        MSNBC_BOTH: (np.hstack([base_tr, pub_tr]), np.hstack([base_te, pub_te])),
        MSNBC_NEXT: (np.hstack([base_tr, next_tr]), np.hstack([base_te, next_te])),
        MSNBC_ALL: (np.hstack([last3_tr, pub_tr]), np.hstack([last3_te, pub_te])),
    }
    probas = {name: _xgb_proba(tr, y_train, te, n_cat, seed) for name, (tr, te) in sets.items()}
    probas[MSNBC_EMBEDDING] = fit_probe(emb_tr, y_train, emb_te, np.arange(n_cat), seed=seed)
    probas[MSNBC_BASELINE_LR] = fit_probe(base_tr, y_train, base_te, np.arange(n_cat), seed=seed)
    n_features = {name: tr.shape[1] for name, (tr, _) in sets.items()}
    n_features |= {MSNBC_EMBEDDING: emb_tr.shape[1], MSNBC_BASELINE_LR: base_tr.shape[1]}
    boot = M.paired_bootstrap(
        y_test, probas, PROBE_METRICS, MSNBC_BASELINE, protocol.n_boot, random_state=seed
    )
    against_last3 = M.paired_bootstrap(
        y_test, {k: probas[k] for k in (MSNBC_LAST3, MSNBC_BOTH, MSNBC_NEXT)}, PROBE_METRICS, MSNBC_LAST3,
        protocol.n_boot, random_state=seed,
    )  # fmt: skip
    classes = np.arange(n_cat)
    results = [asdict(_result(v, n_features[v], y_test, probas[v], classes)) for v in MSNBC_VARIANTS]

    def diff(variant: str, against: Any = boot) -> dict[str, dict[str, float]]:
        return {
            m: {"diff": d.value, "ci95_low": d.low, "ci95_high": d.high}
            for m, d in against[variant]["diff"].items()
        }

    return {
        "task": "next category after every prefix (MSNBC, real)",
        "protocol": asdict(protocol),
        "n_sessions": len(sessions.ids),
        "n_train_sessions": n_train_sessions,
        "n_train": len(train),
        "n_test": len(test),
        "classes": list(sessions.categories),
        "encoder_saw_test_sessions": False,
        "results": results,
        "baseline_plus_embedding_minus_baseline": diff(MSNBC_BOTH),
        "baseline_plus_next_minus_baseline": diff(MSNBC_NEXT),
        "last3_plus_embedding_minus_baseline": diff(MSNBC_ALL),
        "embedding_minus_baseline": diff(MSNBC_EMBEDDING),
        "last3_minus_baseline": diff(MSNBC_LAST3),
        "embedding_minus_last3": diff(MSNBC_BOTH, against_last3),
        "next_minus_last3": diff(MSNBC_NEXT, against_last3),
    }


def msnbc_train_config(epochs: int, seed: int) -> TrainConfig:
    """The MSNBC encoder's training settings: the defaults on every training session, none held out."""
    return TrainConfig(epochs=epochs, holdout_fraction=0.0, max_train_sessions=None, seed=seed)


def train_msnbc_encoder(train_events: pd.DataFrame, out_dir: Path, epochs: int, seed: int) -> Any:
    """An MSNBC encoder trained on the training sessions only (it never sees a test session)."""
    cfg = msnbc_train_config(epochs, seed)
    result = train_encoder(train_events, train_config=cfg, progress=False)
    save_encoder_dir(result.checkpoint, out_dir)
    return SessionEmbedder.load(out_dir)


# --- report -------------------------------------------------------------------------------------


def _fmt_diff(d: dict[str, float], digits: int = 4) -> str:
    return f"{d['diff']:+.{digits}f} [{d['ci95_low']:+.{digits}f}, {d['ci95_high']:+.{digits}f}]"


def conclusion(part: dict[str, Any]) -> list[str]:
    """The MSNBC section's verdict in words, from the measured intervals (what the report opens with)."""
    both, alone, last3 = (part[k] for k in ("baseline_plus_embedding_minus_baseline", "embedding_minus_baseline",
                                            "last3_minus_baseline"))  # fmt: skip
    scores = {r["name"]: r for r in part["results"]}
    ll, ll3 = both["log_loss"], last3["log_loss"]
    if ll["ci95_high"] < 0:
        verdict = f"adding the embedding to the XGBoost baseline cuts log loss by {-ll['diff']:.4f} (interval below 0)"
    elif ll["ci95_low"] > 0:
        verdict = f"adding the embedding to the XGBoost baseline makes log loss WORSE by {ll['diff']:.4f}"
    else:
        verdict = f"adding the embedding to the XGBoost baseline changes log loss by {ll['diff']:+.4f} (interval spans 0)"
    lines = [
        f"On real MSNBC sessions, {verdict}; the hand-made 2nd/3rd-last-page features: {ll3['diff']:+.4f}."
    ]
    versus = part.get("embedding_minus_last3", {}).get("log_loss")
    if versus is not None:
        side = (
            "better than"
            if versus["ci95_high"] < 0
            else "worse than"
            if versus["ci95_low"] > 0
            else "level with"
        )
        lines.append(
            f"Embedding − hand-made order features: log loss {_fmt_diff(versus)}: the embedding is {side} "
            "them (paired interval)."
        )
    r1_emb, r1_base = (
        scores[MSNBC_EMBEDDING]["macro_recall_at_1"],
        scores[MSNBC_BASELINE]["macro_recall_at_1"],
    )
    reach = "reaches" if alone["macro_recall_at_1"]["ci95_high"] >= 0 else "falls short of"
    lines.append(
        f"The embedding alone (logistic regression) {reach} the baseline's macro Recall@1: {r1_emb:.4f} vs "
        f"{r1_base:.4f} (difference {_fmt_diff(alone['macro_recall_at_1'])})."
    )
    return lines


ORDER_ROWS: tuple[tuple[str, str], ...] = (  # the MSNBC comparison table: hand-made beside the embedding
    ("+ 2nd/3rd-last pages (hand-made)", "last3_minus_baseline"),
    ("+ embedding", "baseline_plus_embedding_minus_baseline"),
    ("+ next-page head of the embedding", "baseline_plus_next_minus_baseline"),
    ("+ hand-made + embedding", "last3_plus_embedding_minus_baseline"),
    ("embedding − hand-made", "embedding_minus_last3"),
    ("next-page head − hand-made", "next_minus_last3"),
)


def order_table(part: dict[str, Any]) -> list[str]:
    """The hand-made order features' row beside the embedding's, every run: log loss and macro Recall@1
    differences with their paired 95 % intervals (rows of an older report that lacks them are left out)."""
    lines = [
        "| XGBoost features vs baseline | log loss Δ [95 %] | macro Recall@1 Δ [95 %] |",
        "|---|---:|---:|",
    ]
    for label, key in ORDER_ROWS:
        if key in part:
            d = part[key]
            lines.append(f"| {label} | {_fmt_diff(d['log_loss'])} | {_fmt_diff(d['macro_recall_at_1'])} |")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    """Human-readable version of the JSON report; opens with the conclusion."""
    lines = ["# Session encoder quality", ""]
    if report.get("msnbc"):
        lines += conclusion(report["msnbc"]) + [""]
    lines += [f"Generated {report['generated_at']}.", ""]
    for key, title in (("simulated", "Simulated data: linear probe to the hidden true intent"),
                       ("msnbc", "MSNBC (real): next category from a session prefix")):  # fmt: skip
        part = report.get(key)
        if not part:
            continue
        lines += [f"## {title}", "", f"Task: {part['task']}. Train {part['n_train']} / test {part['n_test']} "
                  f"(split by session, in time order). Encoder saw test sessions (unlabelled): "
                  f"{part['encoder_saw_test_sessions']}.", ""]  # fmt: skip
        if key == "msnbc":
            lines += [
                "XGBoost rows: bag of pages + last page + length (baseline) and what each adds; 'next-page "
                "head': log P(next page) read from the embedding by the encoder's own head (what "
                "session_affinity serves). 'embedding' alone: logistic regression.",
                "",
                *order_table(part),
                "",
            ]
        lines += [
            "| features | n features | accuracy | macro Recall@1 | macro F1 | log loss |",
            "|---|---|---|---|---|---|",
        ]
        for r in part["results"]:
            lines.append(
                f"| {r['name']} | {r['n_features']} | {r['accuracy']:.4f} | {r['macro_recall_at_1']:.4f} | "
                f"{r['macro_f1']:.4f} | {r['log_loss']:.4f} |"
            )
        lines += ["", "Paired bootstrap differences (a − b, 95 % interval over test examples):", ""]
        for name, diff in part.items():
            if isinstance(diff, dict) and "log_loss" in diff and "macro_recall_at_1" in diff:
                lines.append(
                    f"- {name}: macro Recall@1 {_fmt_diff(diff['macro_recall_at_1'])}; "
                    f"log loss {_fmt_diff(diff['log_loss'])}"
                )
        lines.append("")
    lines += ["## Encoders", ""]
    for key in ("simulated_encoder", "msnbc_encoder"):
        if key in report:
            lines.append(f"- {key}: `{json.dumps(report[key], default=str)}`")
    lines.append("")
    if report.get("msnbc"):
        lines += [f"![{REPORT_NAME}_msnbc]({REPORT_NAME}_msnbc.png)", ""]
    return "\n".join(lines)


def plot_msnbc(part: dict[str, Any], path: Path) -> Path:
    """Paired differences against the baseline (log loss, macro Recall@1) with their 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(label, part[key]) for label, key in ORDER_ROWS[:4] if key in part]
    rows.append(("embedding alone (LR)", part["embedding_minus_baseline"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 1.2 + 0.45 * len(rows)))
    for ax, metric, title in ((axes[0], "log_loss", "log loss − baseline (lower is better)"),
                              (axes[1], "macro_recall_at_1", "macro Recall@1 − baseline")):  # fmt: skip
        for i, (_, d) in enumerate(rows):
            m = d[metric]
            ax.errorbar(
                m["diff"], i, xerr=[[m["diff"] - m["ci95_low"]], [m["ci95_high"] - m["diff"]]], fmt="o"
            )
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.set_title(title, fontsize=9)
    axes[1].set_yticklabels([])
    fig.suptitle("MSNBC next category: XGBoost baseline = bag of pages + last page + length", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{REPORT_NAME}.json", out_dir / f"{REPORT_NAME}.md"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path.write_text(to_markdown(report))
    if report.get("msnbc"):
        plot_msnbc(report["msnbc"], out_dir / f"{REPORT_NAME}_msnbc.png")
    return json_path, md_path


@dataclass
class EncoderReportConfig:
    """What ``c2i encoder-report`` probes: simulated events with their truth, and/or an MSNBC file."""

    encoder: str | None = None  # encoder dir for the simulated events
    events: str | None = None  # simulated events parquet
    truth: str | None = None  # simulator truth: truth/session_truth.parquet
    channel: str | None = "web"  # sessions probed (None: all channels)
    msnbc: str | None = None  # MSNBC .seq file; an MSNBC encoder is trained unless given
    msnbc_limit: int | None = None  # first N MSNBC sessions (None: all)
    msnbc_encoder: str | None = None  # MSNBC encoder dir (used if it holds a checkpoint for this split)
    msnbc_epochs: int = 10  # fewer left the probe gain smaller (docs/decisions/0011-evaluation.md)
    retrain: bool = False  # train the MSNBC encoder even if the dir holds one
    test_fraction: float = 0.3  # latest share of sessions for testing
    max_sessions: int | None = 30_000  # simulated sessions probed (uniform sample)
    max_train_rows: int | None = MsnbcProtocol.max_train_rows  # MSNBC training prefixes (sampled)
    max_test_rows: int | None = MsnbcProtocol.max_test_rows  # MSNBC test prefixes (sampled)
    n_boot: int = MsnbcProtocol.n_boot
    seed: int = 0
    out: str = str(ARTIFACTS.reports)  # report directory (the MSNBC encoder's default home too)


SPLIT_FILE = "msnbc_split.json"  # beside an MSNBC encoder: which sessions it was trained on


def _msnbc_encoder(cfg: EncoderReportConfig, sessions: Any, n_train: int) -> tuple[Any, bool | None]:
    """(embedder, whether it may have seen test sessions): reused only when trained on this exact split."""
    split_key = {
        "first_session": sessions.ids[0],
        "n_train_sessions": n_train,
        "last_train": sessions.ids[n_train - 1],
        # and how it was trained: a changed default (objective, pooling) retrains instead of reusing
        "encoder_config": EncoderConfig().to_dict(),
        "train_config": asdict(msnbc_train_config(cfg.msnbc_epochs, cfg.seed)),
    }
    out = Path(cfg.msnbc_encoder or Path(cfg.out) / "msnbc_encoder")
    key_path = out / SPLIT_FILE
    if (out / CHECKPOINT_FILE).exists() and not cfg.retrain:
        same = key_path.is_file() and json.loads(key_path.read_text()) == json.loads(json.dumps(split_key))
        if same or cfg.msnbc_encoder:
            return SessionEmbedder.load(out), (False if same else None)
    logger.info("training the MSNBC encoder on %d sessions in %s", n_train, out)
    train_ids = set(sessions.ids[:n_train])
    train_events = sessions.events[sessions.events[C.SESSION_ID].isin(train_ids)]
    embedder = train_msnbc_encoder(train_events, out, cfg.msnbc_epochs, cfg.seed)
    key_path.write_text(json.dumps(split_key))
    return embedder, False


def encoder_report(cfg: EncoderReportConfig) -> dict[str, Any]:
    """Both probes (whichever inputs are given) → the report dict that :func:`write_report` writes."""
    if cfg.events and (not cfg.encoder or not cfg.truth):
        raise ConfigError("--events needs --encoder and --truth (the simulator's session_truth.parquet)")
    if not cfg.events and not cfg.msnbc:
        raise ConfigError("nothing to report: give --dataset msnbc PATH and/or --events/--truth/--encoder")
    report: dict[str, Any] = {"generated_at": pd.Timestamp.now(tz="UTC").isoformat(), "seed": cfg.seed}
    started = time.perf_counter()
    if cfg.events:
        events = pd.read_parquet(cfg.events)
        if cfg.channel:
            events = events[events[C.CHANNEL] == cfg.channel]
        embedder = SessionEmbedder.load(cfg.encoder)
        report["simulated_encoder"] = {"dir": str(cfg.encoder), **_encoder_info(embedder)}
        report["simulated"] = simulated_probe(
            embedder,
            events,
            pd.read_parquet(cfg.truth),
            test_fraction=cfg.test_fraction,
            max_sessions=cfg.max_sessions,
            seed=cfg.seed,
        )
    if cfg.msnbc:
        from clicks2intent.evaluation.msnbc import sessions_from_events

        protocol = MsnbcProtocol(
            1 - cfg.test_fraction, cfg.max_train_rows, cfg.max_test_rows, cfg.n_boot, cfg.seed
        )
        sessions = sessions_from_events(read_msnbc(cfg.msnbc, cfg.msnbc_limit))
        n_train = int(round(len(sessions.ids) * protocol.train_fraction))
        if n_train < 2 or n_train >= len(sessions.ids):
            raise ConfigError(
                f"MSNBC: {len(sessions.ids)} sessions are too few to split at {protocol.train_fraction}"
            )
        embedder, saw = _msnbc_encoder(cfg, sessions, n_train)
        report["msnbc_encoder"] = _encoder_info(embedder)
        report["msnbc"] = msnbc_probe(embedder, sessions, protocol)
        report["msnbc"]["encoder_saw_test_sessions"] = saw
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
