"""The four-variant ablation on real clickstreams: MSNBC.com page-category sessions (UCI).

MSNBC has no tiles and no conversions, so both tasks get real-data proxies from a session prefix:

* **ranking proxy — next category**: cut a session (≥ 2 events) after ``k`` events, ``k`` in
  ``1..n-1``; predict the category of event ``k+1``. Macro Recall@1, log loss, NDCG@3. This is the
  bar a good encoder must beat: XGBoost on bag-of-pages + last page + length (its scores:
  docs/decisions/0011-evaluation.md).
* **conversion proxy — will the session later visit a new category, and which first**: cut after
  ``k`` events, ``k`` in ``3..n`` (sessions ≥ 3 events; a 2-event prefix is fully pinned
  down by the baseline features, so no representation could add anything); the target is the first
  category after the prefix that the prefix did not contain, or ``none`` when the session ends
  without one — "which product (or none) does the visitor go on to". Micro F1 / macro F1 over the
  categories (``none`` left out, as for conversions) and log loss.

Sessions are split by their position in the file (the data's only clock: line order is arrival
order) — earliest 70 % train, next 10 % validation (early stopping), latest 20 % test — so no session
is on both sides. Within each split, **every** prefix of every session is an example (``prefixes =
"every"``, the default, as ``c2i encoder-report`` does: a live session is scored at each of its
events), sampled (seeded) to ``max_train_rows`` / ``max_eval_rows``; the bootstrap then resamples test
*sessions*, not prefixes, since the prefixes of one session are correlated. ``prefixes = "one"`` keeps
one random cut per session (the earlier protocol): it left too few training rows for XGBoost to use
the embedding, while the same encoder beat the baseline on every prefix
(docs/decisions/0011-evaluation.md).

Variants: ``baseline`` = bag of pages (counts per category) + last page + prefix length;
``embedding`` = + the session encoder's vector of the prefix, from an encoder trained with
:func:`clicks2intent.encoder.train.train_encoder` on the TRAINING sessions only (test sessions and
their futures are never seen); ``labels`` = + an intent label and confidence. No LLM taxonomy exists
for MSNBC, so by default the label is a documented proxy of what the distilled classifier provides —
a discrete intent fitted on the embedding: k-means (``n_label_clusters``) on the training prefixes'
embeddings, label = nearest centroid, confidence = softmax over negative squared distances. With
``intent_dir`` (a :class:`clicks2intent.intent.distill.IntentClassifier` trained on this encoder's MSNBC
embeddings) its labels are used instead; the report says which.
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
from clicks2intent.errors import ConfigError
from clicks2intent.evaluation.ablation import (
    BASELINE,
    BOTH,
    VARIANTS,
    AblationConfig,
    run_task_ablation,
    threshold_note,
    variant_features,
)
from clicks2intent.intent.distill import IntentClassifier
from clicks2intent.intent.inputs import SessionText
from clicks2intent.models.training_sets import CONVERSION, TILE_RANKING
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names.paths import ARTIFACTS, CHECKPOINT_FILE

logger = logging.getLogger(__name__)

NEXT_CATEGORY, LATER_CATEGORY = "next_category", "later_category"
PREFIX_LENGTH, LAST_PAGE = "prefix_length", "last_page"
COUNT_PREFIX = "page_count_"
PREFIX_ID = "prefix_id"


@dataclass
class MsnbcRun:
    """Inputs and bounds of the MSNBC ablation."""

    path: str
    limit: int | None = None  # first N sessions of the file (None: all)
    prefixes: str = "every"  # "every" prefix of each session is an example, or "one" random cut per session
    max_train_rows: int | None = 40_000  # per task, training examples kept (seeded sample): bounds XGBoost
    max_eval_rows: int | None = 20_000  # per task, validation and test examples kept, each
    # "every": cuts kept per session (seeded sample). Without a cap the few longest sessions gave a large
    # share of the prefixes and dominated the session bootstrap's variance (docs/decisions/0011-evaluation.md).
    max_prefixes_per_session: int | None = 20
    encoder_dir: str | None = None  # a trained MSNBC encoder; None: train one on the training sessions
    intent_dir: str | None = None  # distilled classifier for MSNBC embeddings; None: k-means proxy
    work_dir: str = str(ARTIFACTS.msnbc_eval)  # the trained encoder is cached here (reused if split matches)
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    min_conversion_prefix: int = 3
    n_label_clusters: int = 10  # about the size of an intent taxonomy
    encoder_epochs: int = 10  # TrainConfig's default (fewer left part of the probe gain)
    encoder_max_minutes: float | None = 6.0  # bounds the encoder's time on a small, shared machine
    encoder_max_steps: int | None = None  # hard bound (tests, smoke runs)
    max_session_events: int = 2000
    random_state: int = 0


@dataclass
class Sessions:
    """MSNBC sessions in file order, with their events' row offsets for fast prefix slicing."""

    events: pd.DataFrame  # sorted by session id (zero-padded line number = file order), then time
    ids: list[str]
    sequences: list[np.ndarray]  # page codes per session
    starts: np.ndarray  # first row of each session in ``events``
    categories: list[str]


def sessions_from_events(events: pd.DataFrame) -> Sessions:
    """Group contract events into sessions; session ids of the MSNBC reader sort in file order."""
    ev = events.sort_values([C.SESSION_ID, C.EVENT_TIMESTAMP], kind="stable").reset_index(drop=True)
    categories = sorted(ev[C.PAGE_TYPE].unique().tolist())
    codes = pd.Categorical(ev[C.PAGE_TYPE], categories=categories).codes.astype(np.int64)
    ids, starts = np.unique(ev[C.SESSION_ID].to_numpy(dtype=str), return_index=True)
    sequences = np.split(codes, starts[1:]) if len(starts) else []
    return Sessions(ev, [str(i) for i in ids], list(sequences), starts.astype(np.int64), categories)


PREFIX_MODES = ("every", "one")


def _later_targets(seq: np.ndarray, ks: np.ndarray) -> list[int]:
    """Per cut ``k``: the first category after ``seq[:k]`` that the prefix did not contain (-1: none)."""
    out = []
    for k in ks.tolist():
        seen = set(seq[:k].tolist())
        out.append(next((int(c) for c in seq[k:] if int(c) not in seen), -1))
    return out


def make_examples(
    session_ids: list[str],
    sequences: list[np.ndarray],
    task: str,
    rng: np.random.Generator,
    min_prefix: int = 3,
    prefixes: str = "one",
    max_per_session: int | None = None,
) -> pd.DataFrame:
    """Prefixes of eligible sessions: ``session_id, position, k, target_code`` (-1 = none).

    ``prefixes="one"``: one random cut per session; ``"every"``: every cut of every session, at most
    ``max_per_session`` of them (a seeded sample of its cuts)."""
    if prefixes not in PREFIX_MODES:
        raise ConfigError(f"prefixes={prefixes!r} must be one of {list(PREFIX_MODES)}")
    if task not in (NEXT_CATEGORY, LATER_CATEGORY):
        raise ValueError(f"unknown MSNBC task {task!r}")
    lo = 1 if task == NEXT_CATEGORY else min_prefix
    rows: list[tuple[str, int, int, int]] = []
    for pos, (sid, seq) in enumerate(zip(session_ids, sequences, strict=True)):
        n = len(seq)
        hi = n - 1 if task == NEXT_CATEGORY else n  # last admissible cut
        if hi < lo:
            continue
        ks = np.arange(lo, hi + 1) if prefixes == "every" else np.array([int(rng.integers(lo, hi + 1))])
        if max_per_session is not None and len(ks) > max_per_session:
            ks = np.sort(rng.choice(ks, size=max_per_session, replace=False))
        targets = seq[ks].tolist() if task == NEXT_CATEGORY else _later_targets(seq, ks)
        rows.extend((sid, pos, int(k), int(t)) for k, t in zip(ks.tolist(), targets, strict=True))
    return pd.DataFrame(rows, columns=[C.SESSION_ID, "position", "k", "target_code"])


def _sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A seeded sample of at most ``n`` rows, kept in file order."""
    if n is None or len(frame) <= n:
        return frame
    return frame.sample(n=n, random_state=seed).sort_values(["position", "k"], kind="stable")


def baseline_features(
    examples: pd.DataFrame, sequences_by_id: dict[str, np.ndarray], categories: list[str]
) -> pd.DataFrame:
    """Bag of pages (counts per category), last page (a label feature), prefix length."""
    counts = np.zeros((len(examples), len(categories)), dtype=np.float32)
    last = np.empty(len(examples), dtype=object)
    for i, (sid, k) in enumerate(zip(examples[C.SESSION_ID], examples["k"], strict=True)):
        prefix = sequences_by_id[sid][:k]
        counts[i] = np.bincount(prefix, minlength=len(categories))
        last[i] = categories[prefix[-1]]
    out = pd.DataFrame(counts, columns=[COUNT_PREFIX + c for c in categories], index=examples.index)
    out[LAST_PAGE] = last
    out[PREFIX_LENGTH] = examples["k"].astype(np.float32).to_numpy()
    return out


def prefix_events(examples: pd.DataFrame, sessions: Sessions) -> pd.DataFrame:
    """The events of every prefix as its own session (``<session>#<k>``), in the clickstream contract."""
    starts = sessions.starts[examples["position"].to_numpy()]
    k = examples["k"].to_numpy()
    rows = np.repeat(starts, k) + (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k))
    out = sessions.events.iloc[rows].reset_index(drop=True)
    out[C.SESSION_ID] = np.repeat(examples[PREFIX_ID].to_numpy(dtype=object), k)
    return out


def group_of_msnbc(name: str) -> str:
    """Feature groups of the MSNBC proxies (the Feast grouping's counterpart)."""
    if name == C.EMBEDDING:
        return N.EMBEDDING
    if name in (C.INTENT_LABEL, C.INTENT_CONFIDENCE):
        return N.LABELS
    return N.BASELINE


def _split_positions(n_sessions: int, valid_fraction: float, test_fraction: float) -> tuple[int, int]:
    """File positions where validation and test start (line order = arrival order)."""
    v = int(round(n_sessions * (1 - valid_fraction - test_fraction)))
    t = int(round(n_sessions * (1 - test_fraction)))
    return v, t


def _train_or_load_encoder(
    run: MsnbcRun, train_events: pd.DataFrame, split_key: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """The MSNBC encoder: given, cached for this exact split, or trained on the training sessions."""
    if run.encoder_dir:
        return SessionEmbedder.load(run.encoder_dir), {"source": "given", "dir": run.encoder_dir}
    enc_dir = Path(run.work_dir) / "encoder"
    key_path = enc_dir / "msnbc_split.json"
    if (
        key_path.is_file()
        and json.loads(key_path.read_text()) == split_key
        and (enc_dir / CHECKPOINT_FILE).is_file()
    ):
        return SessionEmbedder.load(enc_dir), {"source": "cached", "dir": str(enc_dir)}
    t0 = time.perf_counter()
    result = train_encoder(
        train_events,
        train_config=TrainConfig(
            epochs=run.encoder_epochs,
            max_minutes=run.encoder_max_minutes,
            max_steps=run.encoder_max_steps,
            seed=run.random_state,
        ),
        progress=False,
    )
    save_encoder_dir(result.checkpoint, enc_dir)
    key_path.write_text(json.dumps(split_key))
    meta = result.checkpoint.metadata
    info = {
        "source": "trained on the training sessions",
        "dir": str(enc_dir),
        "seconds": round(time.perf_counter() - t0, 1),
        "stop_reason": meta.get("stop_reason"),
        "best_val_loss": meta.get("best_val_loss"),
        "initial_val_loss": meta.get("initial_val_loss"),
    }
    return SessionEmbedder(result.checkpoint), info


def _label_features(
    run: MsnbcRun, emb_train: np.ndarray, emb_all: np.ndarray, texts: list[SessionText] | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[str]]:
    """Intent label + confidence for every prefix (see module docstring for the two sources); ``texts``:
    each prefix's pages, for a classifier that reads them beside the embedding (MSNBC has no searches)."""
    if run.intent_dir:
        clf = IntentClassifier.load(run.intent_dir)
        if clf.n_features_in_ != emb_all.shape[1]:
            raise ConfigError(
                f"intent classifier expects {clf.n_features_in_}-d embeddings, the MSNBC encoder gives {emb_all.shape[1]}"
            )
        p = clf.predict_proba(emb_all, texts if clf.reads_text else None)
        labels = np.asarray(clf.classes_)[p.argmax(axis=1)].astype(object)
        info = {
            "source": "distilled intent classifier",
            "dir": run.intent_dir,
            "taxonomy_version": clf.taxonomy_version,
        }
        return labels, p.max(axis=1), info, [str(c) for c in clf.classes_]
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=run.n_label_clusters, n_init=3, random_state=run.random_state).fit(emb_train)
    d2 = ((emb_all[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
    scale = float(np.median(d2.min(axis=1))) or 1.0
    logits = -d2 / scale
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    vocab = [f"cluster_{i:02d}" for i in range(run.n_label_clusters)]
    labels = np.array(vocab, dtype=object)[p.argmax(axis=1)]
    info = {
        "source": "proxy: k-means on the training prefixes' embeddings (no MSNBC LLM taxonomy)",
        "n_clusters": run.n_label_clusters,
    }
    return labels, p.max(axis=1), info, vocab


def run_msnbc(run: MsnbcRun, config: AblationConfig) -> dict[str, Any]:
    """Build both proxy tasks, embed and label the prefixes, run the four variants, return the report."""
    t_start = time.perf_counter()
    rng = np.random.default_rng(run.random_state)
    events = read_msnbc(run.path, run.limit, max_session_events=run.max_session_events)
    sessions = sessions_from_events(events)
    session_ids, sequences, categories = sessions.ids, sessions.sequences, sessions.categories
    seq_by_id = dict(zip(session_ids, sequences, strict=True))
    v_pos, t_pos = _split_positions(len(session_ids), run.valid_fraction, run.test_fraction)

    train_ids = set(session_ids[:v_pos])
    train_events = sessions.events[sessions.events[C.SESSION_ID].isin(train_ids)]
    split_key = {"path": str(Path(run.path).resolve()), "limit": run.limit, "n_train_sessions": len(train_ids),
                 "seed": run.random_state, "epochs": run.encoder_epochs, "max_steps": run.encoder_max_steps}  # fmt: skip
    logger.info(f"msnbc: {len(session_ids)} sessions read; encoder from {run.encoder_dir or run.work_dir}")
    embedder, encoder_info = _train_or_load_encoder(run, train_events, split_key)
    logger.info(f"msnbc: encoder {encoder_info['source']} ({encoder_info.get('seconds', 0)}s)")

    report: dict[str, Any] = {
        "dataset": "msnbc",
        "tasks": [TILE_RANKING, CONVERSION],
        "source": str(run.path),
        "n_sessions": len(session_ids),
        "split_positions": {"valid_start": v_pos, "test_start": t_pos},
        "run": asdict(run),
        "config": asdict(config),
        "encoder": encoder_info,
        "notes": [
            "Real data: MSNBC.com page categories (UCI). Sessions split by file order (arrival order): 70/10/20.",
            f"Examples: {'every prefix of every session' if run.prefixes == 'every' else 'one random cut per session'}"
            f" (at most {run.max_prefixes_per_session} per session, {run.max_train_rows} training and "
            f"{run.max_eval_rows} validation/test examples per task); "
            "bootstrap intervals resample test sessions.",
            "tile_ranking = next_category proxy: prefix of k events (1..n-1), predict the next category.",
            f"conversion = later_category proxy: prefixes of >= {run.min_conversion_prefix} events; target = first NEW category "
            "after the prefix, or 'none'. F1 over categories ('none' excluded).",
            "baseline = bag of pages + last page + prefix length; embedding = encoder trained on the training "
            "sessions only.",
            "Same estimator settings as the simulated run: sample weights (n/(K n_c))^"
            f"{config.class_weight_power} with prior-corrected probabilities; the conversion proxy trains on "
            f"{config.none_sample_rate:.0%} of its 'none' rows (inverse-weighted) and decides F1 with a "
            f"product-probability {threshold_note(config)}.",
        ],
    }
    for task, proxy in ((TILE_RANKING, NEXT_CATEGORY), (CONVERSION, LATER_CATEGORY)):
        t0 = time.perf_counter()
        ex = make_examples(
            session_ids,
            sequences,
            proxy,
            rng,
            run.min_conversion_prefix,
            run.prefixes,
            run.max_prefixes_per_session,
        )
        split = np.where(ex["position"] < v_pos, 0, np.where(ex["position"] < t_pos, 1, 2))
        caps = (run.max_train_rows, run.max_eval_rows, run.max_eval_rows)
        ex = pd.concat(
            [_sample(ex[split == i], cap, run.random_state + i) for i, cap in enumerate(caps)]
        ).reset_index(drop=True)
        ex[PREFIX_ID] = ex[C.SESSION_ID] + "#" + ex["k"].astype(str)
        classes = list(categories) + ([C.NO_CONVERSION] if proxy == LATER_CATEGORY else [])
        ex["label"] = [classes[c] if c >= 0 else C.NO_CONVERSION for c in ex["target_code"]]
        frame = pd.concat([ex, baseline_features(ex, seq_by_id, categories)], axis=1)
        emb = embedder.embed_events(prefix_events(ex, sessions)).set_index(C.SESSION_ID)[C.EMBEDDING]
        frame[C.EMBEDDING] = emb.reindex(frame[PREFIX_ID]).to_list()
        part = np.where(
            frame["position"] < v_pos, "train", np.where(frame["position"] < t_pos, "valid", "test")
        )
        emb_matrix = np.stack(frame[C.EMBEDDING].to_numpy())
        texts = (
            [
                SessionText(tuple(categories[c] for c in seq_by_id[sid][:k]))
                for sid, k in zip(frame[C.SESSION_ID], frame["k"], strict=True)
            ]
            if run.intent_dir
            else None
        )
        labels, conf, label_info, label_vocab = _label_features(
            run, emb_matrix[part == "train"], emb_matrix, texts
        )
        frame[C.INTENT_LABEL] = labels
        frame[C.INTENT_CONFIDENCE] = conf.astype(np.float32)
        base = [COUNT_PREFIX + c for c in categories] + [LAST_PAGE, PREFIX_LENGTH]
        full = base + [C.EMBEDDING, C.INTENT_LABEL, C.INTENT_CONFIDENCE]
        lists = {v: variant_features(base, full, v, group_of_msnbc) for v in VARIANTS}
        section, _ = run_task_ablation(
            task,
            frame[part == "train"].reset_index(drop=True),
            frame[part == "valid"].reset_index(drop=True),
            frame[part == "test"].reset_index(drop=True),
            lists,
            classes,
            group_of_msnbc,
            config,
            vocabularies={LAST_PAGE: list(categories), C.INTENT_LABEL: label_vocab},
            services={BASELINE: "msnbc_baseline", BOTH: "msnbc_v1"},
            test_groups=frame.loc[part == "test", C.SESSION_ID].to_numpy(),
        )
        section["proxy"] = proxy
        section["labels"] = label_info
        section["n_examples"] = len(frame)
        section["seconds"] = round(time.perf_counter() - t0, 1)
        report[task] = section
    labels_source = report[TILE_RANKING]["labels"]
    report["distillation"] = {"status": "not measured on MSNBC (no LLM labels)", "labels": labels_source}
    report["taxonomy"] = {"version": labels_source.get("taxonomy_version"), "source": labels_source["source"]}
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    return report
