"""Is the session embedding any good? Linear probes against simple baselines, on simulated and real data.

:func:`encoder_report` (``c2i encoder-report``) and :func:`write_report` give
``encoder_quality.json`` + ``encoder_quality.md`` (under ``artifacts/reports/`` by default) with two probes, each with the same classifier (multinomial
logistic regression on standardised features) for every feature set, and paired bootstrap intervals
for the differences that matter:

* **simulated** — predict the simulator's hidden ``true_intent`` of a session from its embedding, vs a
  TF-IDF bag of page types (the issue's baseline) and TF-IDF + the last three pages (an order-aware
  baseline). Sessions are split by time (session end): earliest 70 % train the probe, latest 30 % test.
* **MSNBC** (real) — cut each session of >= 2 events after ``k`` events (``k`` uniform in 1..n-1, one
  cut per session), predict the category of event ``k+1`` from the embedding of the prefix, vs
  bag-of-pages + last page + prefix length (DESIGN.md's bar) and that + 2nd/3rd-last pages. Sessions
  split by file (arrival) order; the MSNBC encoder is trained only on the earliest sessions
  (``holdout_fraction``), so test sessions are never seen by it.

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


def next_category_prefixes(events: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(prefix events, one row per prefix: session_id, k, target, position) for sessions of >= 2 events."""
    ev = events.sort_values([C.SESSION_ID, C.EVENT_TIMESTAMP], kind="stable").reset_index(drop=True)
    sizes = ev.groupby(C.SESSION_ID, sort=False).size()
    order = ev.groupby(C.SESSION_ID, sort=False)[C.EVENT_TIMESTAMP].min().sort_values(kind="stable")
    sizes = sizes.loc[order.index]
    eligible = sizes[sizes >= 2]
    rng = np.random.default_rng(seed)
    k = rng.integers(1, eligible.to_numpy())  # uniform in 1..n-1
    cut = pd.Series(k, index=eligible.index)
    rank = ev.groupby(C.SESSION_ID, sort=False).cumcount().to_numpy()
    k_of_event = ev[C.SESSION_ID].map(cut).to_numpy()
    in_prefix = ~np.isnan(k_of_event) & (rank < np.nan_to_num(k_of_event))
    target_rows = ~np.isnan(k_of_event) & (rank == np.nan_to_num(k_of_event, nan=-1))
    targets = ev.loc[target_rows, [C.SESSION_ID, C.PAGE_TYPE]].rename(columns={C.PAGE_TYPE: "target"})
    prefixes = pd.DataFrame(
        {
            C.SESSION_ID: eligible.index,
            "k": k,
            "start": order.loc[eligible.index].to_numpy(),
            "position": np.arange(len(eligible)),
        }
    )
    prefixes = prefixes.merge(targets, on=C.SESSION_ID, how="left")
    return ev.loc[in_prefix].reset_index(drop=True), prefixes


def msnbc_probe(
    embedder: Any,
    events: pd.DataFrame,
    *,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> dict[str, Any]:
    """Next category from the first k events: embedding vs bag-of-pages + last page (+ length)."""
    prefix_events, prefixes = next_category_prefixes(events, seed)
    emb = embedder.embed_events(prefix_events).set_index(C.SESSION_ID)[C.EMBEDDING]
    seqs = _session_sequences(prefix_events)
    meta = embedder.checkpoint.metadata
    if meta.get("holdout_start") is not None:  # test = exactly the sessions the encoder never saw
        start, first = pd.Timestamp(meta["holdout_start"]), meta.get("holdout_first_session") or ""
        is_test = (
            (prefixes["start"] > start) | ((prefixes["start"] == start) & (prefixes[C.SESSION_ID] >= first))
        ).to_numpy()
        saw = False
    else:
        is_test = np.arange(len(prefixes)) >= len(prefixes) - int(round(test_fraction * len(prefixes)))
        saw = True
    train, test = prefixes[~is_test], prefixes[is_test]
    if train.empty or test.empty:
        raise ContractError(f"MSNBC probe: empty split (train {len(train)}, test {len(test)} prefixes)")
    vocab = sorted(events[C.PAGE_TYPE].unique())
    classes = np.array(vocab, dtype=object)

    def features(part: pd.DataFrame) -> dict[str, np.ndarray]:
        s = [seqs[i] for i in part[C.SESSION_ID]]
        bag = _bag(s, vocab)
        length = np.log1p(part["k"].to_numpy(np.float32))[:, None]
        last3 = _last_pages(s, vocab, 3)
        base = np.hstack([bag, last3[:, : len(vocab)], length])
        e = np.stack(emb.loc[part[C.SESSION_ID]].to_numpy())
        return {
            "bag+last+length": base,
            "bag+last3+length": np.hstack([bag, last3, length]),
            "embedding": e,
            "bag+last+length+embedding": np.hstack([base, e]),
        }

    f_train, f_test = features(train), features(test)
    y_train = train["target"].to_numpy(dtype=object)
    y_test = test["target"].to_numpy(dtype=object)
    probas = {name: fit_probe(f_train[name], y_train, f_test[name], classes, seed=seed) for name in f_train}
    results = [asdict(_result(k, f_train[k].shape[1], y_test, p, classes)) for k, p in probas.items()]
    return {
        "task": "next category from the first k events (MSNBC, real)",
        "n_sessions": int(events[C.SESSION_ID].nunique()),
        "n_train": len(train),
        "n_test": len(test),
        "classes": vocab,
        "encoder_saw_test_sessions": saw,
        "results": results,
        "embedding_minus_baseline": paired_difference(
            y_test, probas["embedding"], probas["bag+last+length"], classes, seed=seed
        ),
        "baseline_plus_embedding_minus_baseline": paired_difference(
            y_test, probas["bag+last+length+embedding"], probas["bag+last+length"], classes, seed=seed
        ),
        "last3_minus_baseline": paired_difference(
            y_test, probas["bag+last3+length"], probas["bag+last+length"], classes, seed=seed
        ),
    }


def train_msnbc_encoder(
    events: pd.DataFrame, out_dir: Path, test_fraction: float, epochs: int, seed: int
) -> Any:
    """An MSNBC encoder that never sees the test (latest) sessions: ``holdout_fraction = test_fraction``."""
    cfg = TrainConfig(epochs=epochs, holdout_fraction=test_fraction, seed=seed)
    result = train_encoder(events, train_config=cfg, progress=True)
    save_encoder_dir(result.checkpoint, out_dir)
    return SessionEmbedder.load(out_dir)


# --- report -------------------------------------------------------------------------------------


def _fmt_diff(d: dict[str, float], digits: int = 4) -> str:
    return f"{d['diff']:+.{digits}f} [{d['ci95_low']:+.{digits}f}, {d['ci95_high']:+.{digits}f}]"


def to_markdown(report: dict[str, Any]) -> str:
    """Human-readable version of the JSON report."""
    lines = ["# Session encoder quality", "", f"Generated {report['generated_at']}.", ""]
    for key, title in (("simulated", "Simulated data: linear probe to the hidden true intent"),
                       ("msnbc", "MSNBC (real): next category from a session prefix")):  # fmt: skip
        part = report.get(key)
        if not part:
            continue
        lines += [f"## {title}", "", f"Task: {part['task']}. Train {part['n_train']} / test {part['n_test']} sessions "
                  f"(split by time). Encoder saw test sessions (unlabelled): {part['encoder_saw_test_sessions']}.", ""]  # fmt: skip
        lines += [
            "| features | n features | accuracy | macro Recall@1 | macro F1 | log loss |",
            "|---|---|---|---|---|---|",
        ]
        for r in part["results"]:
            lines.append(
                f"| {r['name']} | {r['n_features']} | {r['accuracy']:.4f} | {r['macro_recall_at_1']:.4f} | "
                f"{r['macro_f1']:.4f} | {r['log_loss']:.4f} |"
            )
        lines += ["", "Paired bootstrap differences (a − b, 95 % interval over test sessions):", ""]
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
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{REPORT_NAME}.json", out_dir / f"{REPORT_NAME}.md"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path.write_text(to_markdown(report))
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
    msnbc_encoder: str | None = None  # MSNBC encoder dir (used if it holds a checkpoint, else trained there)
    msnbc_epochs: int = 3
    retrain: bool = False  # train the MSNBC encoder even if the dir holds one
    test_fraction: float = 0.3  # latest share of sessions for testing
    max_sessions: int | None = 30_000  # simulated sessions probed (uniform sample)
    seed: int = 0
    out: str = str(ARTIFACTS.reports)  # report directory (the MSNBC encoder's default home too)


def encoder_report(cfg: EncoderReportConfig) -> dict[str, Any]:
    """Both probes (whichever inputs are given) → the report dict that :func:`write_report` writes."""
    if cfg.events and (not cfg.encoder or not cfg.truth):
        raise ConfigError("--events needs --encoder and --truth (the simulator's session_truth.parquet)")
    if not cfg.events and not cfg.msnbc:
        raise ConfigError("nothing to report: give --events/--truth/--encoder and/or --msnbc")
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
        events = read_msnbc(cfg.msnbc, cfg.msnbc_limit)
        if cfg.msnbc_encoder and (Path(cfg.msnbc_encoder) / CHECKPOINT_FILE).exists() and not cfg.retrain:
            embedder = SessionEmbedder.load(cfg.msnbc_encoder)
        else:
            out = Path(cfg.msnbc_encoder or Path(cfg.out) / "msnbc_encoder")
            logger.info("training the MSNBC encoder in %s", out)
            embedder = train_msnbc_encoder(events, out, cfg.test_fraction, cfg.msnbc_epochs, cfg.seed)
        report["msnbc_encoder"] = _encoder_info(embedder)
        report["msnbc"] = msnbc_probe(embedder, events, test_fraction=cfg.test_fraction, seed=cfg.seed)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
