"""LLM labelling of a session sample against a taxonomy → ``llm_labels.parquet``.

Why a sample: the LLM is slow and costly per session; the distilled classifier labels everyone else.
Guarantees: every sampled session ends with exactly one row — a label from the taxonomy with status
``ok``, or status ``failed`` with the reason (transport errors and invalid answers exhausted the retries).
None is lost, none gets a label outside the taxonomy (the answer schema enumerates the allowed ids, and
the answer is checked again, because not every endpoint enforces schemas). Each row carries provenance:
taxonomy version, model (or ``rule:single-option``, see below) and the sha256 of the exact prompt (also
the response cache key). A run where more than half of the LLM calls failed (every one, for an endpoint
that is down or a wrong URL) writes nothing and exits 5 with the commonest reason
(:func:`check_llm_failures`).

**Shortlist** (on by default for the embedded 135M model): a tiny model shown all labels mostly answers
with the first ones listed. So each session's options are narrowed to the labels whose words its
salient pages/searches share — retrieve, then let the model choose, as large-label-set classifiers do.
``other`` is offered only when no label relates: offered next to related labels, SmolLM2-135M picked it
about as often for browsing as for non-browsing sessions, i.e. at random, and that lowered AMI against
the hidden truth. A session with a single option gets it without a call, and its row says
``model = "rule:single-option"``. A capable endpoint takes the whole list (``--shortlist off``).

**The LLM only where the cheap rule is unsure.** The shortlist's scores are a rule in their own right
(the taxonomy's keywords against every view and search of the session, later views weighing more):
when its best label outscores the runner-up by ``sure_ratio`` the row is decided without a call
(``model = "rule:clear-margin"``). On the demo's simulated data SmolLM2-135M lowered AMI against the
hidden intents wherever it overrode the rule, so by default it is asked only on exact ties; few-shot
examples and self-consistency sampling were not built, as a model consulted that rarely cannot move the
figures. A capable endpoint (``--sure-ratio 0``, ``--shortlist off``) is where they would matter. The
measurements behind each choice: docs/decisions/0010-intent-labelling.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clicks2intent.common.files import atomic_output, exclusive, write_text
from clicks2intent.errors import ConfigError, LLMUnavailableError
from clicks2intent.intent.llm.client import InvalidAnswer, failure_reason, request_key
from clicks2intent.intent.llm.server import LLMOptions
from clicks2intent.intent.taxonomy import (
    MAX_FAILED_SHARE,
    OTHER_ID,
    STATUS_APPROVED,
    Label,
    Taxonomy,
    name_tokens,
    sample_ids,
    template_sha256,
)
from clicks2intent.names import columns as C
from clicks2intent.names.paths import ARTIFACTS

logger = logging.getLogger(__name__)

LABEL_ID = "label_id"
STATUS = "status"
ERROR = "error"
MODEL = "model"
PROMPT_SHA256 = "prompt_sha256"
LABEL_COLUMNS = (C.SESSION_ID, LABEL_ID, STATUS, ERROR, C.TAXONOMY_VERSION, MODEL, PROMPT_SHA256)
LABELS_SCHEMA = pa.schema([pa.field(c, pa.string()) for c in LABEL_COLUMNS])
RULE_MODEL = "rule:single-option"  # provenance of rows decided without a call (one allowed answer)
MARGIN_MODEL = "rule:clear-margin"  # provenance of rows the shortlist's scores decided (LLM not needed)

LABEL_SYSTEM = "You classify visits to a bank's website by the visitor's goal. Answer with one label id."
LABEL_USER = "Labels:\n{labels}\n\nVisit: {summary}\nWhich label fits this visit best?"
# Words of generated descriptions that carry no topic (kept out of the shortlist match).
_DESCRIPTION_WORDS = frozenset({"visit", "mainly", "typical", "search", "searche"})


def label_schema(ids: list[str]) -> dict[str, Any]:
    """Answer schema: the label id is an enum, so a grammar-constrained server cannot go off-menu."""
    return {
        "type": "object",
        "properties": {LABEL_ID: {"type": "string", "enum": list(ids)}},
        "required": [LABEL_ID],
        "additionalProperties": False,
    }


LABEL_PROMPT_SHA256 = template_sha256(LABEL_SYSTEM, LABEL_USER)


def label_messages(labels: list[Label] | Taxonomy, summary: str) -> list[dict[str, str]]:
    """Label list first, session last (a shared prefix when the list is the same for every session)."""
    items = labels.labels if isinstance(labels, Taxonomy) else labels
    listing = "\n".join(f"- {lab.id}: {lab.name}. {lab.description}".rstrip(". ") + "." for lab in items)
    return [
        {"role": "system", "content": LABEL_SYSTEM},
        {"role": "user", "content": LABEL_USER.format(labels=listing, summary=summary)},
    ]


def make_validator(allowed_ids: list[str], taxonomy: Taxonomy) -> Any:
    allowed = frozenset(allowed_ids)

    def validate(data: Any) -> None:
        lid = data.get(LABEL_ID) if isinstance(data, dict) else None
        if lid not in allowed:
            raise InvalidAnswer(
                f"label_id {lid!r} is not an allowed label of taxonomy {taxonomy.version_string}"
            )

    return validate


def shortlist(phrases: list[str], taxonomy: Taxonomy, k: int = 4) -> list[str]:
    """Ids of up to ``k`` labels (not ``other``) sharing content words with the session's phrases,
    best first (see :func:`shortlist_scores`)."""
    return [lid for lid, _ in shortlist_scores(phrases, taxonomy)[:k]]


def shortlist_scores(phrases: list[str], taxonomy: Taxonomy, recency: float = 0.0) -> list[tuple[str, float]]:
    """(label id, score) of every label (not ``other``) related to the session's phrases, best first,
    ties in taxonomy order. A session phrase that *is* one of a label's keywords (or its name) adds 1,
    shared by the labels that list it; otherwise it adds half the rarity-weighted share of its words
    that the label's name, description and keywords hold (words in more than half of the labels are
    ignored). So a session showing two of a goal's pages outscores one showing one, and an exact
    page match ("loan calculator") outweighs a shared word ("loan"). ``recency`` weighs the i-th of n
    phrases by ``1 + recency * i / (n - 1)``: later pages say more about the purpose of a visit (a
    visitor lands anywhere and ends where the goal is)."""
    if not phrases:
        return []
    labs = [lab for lab in taxonomy.labels if lab.id != OTHER_ID]
    exact = {lab.id: {" ".join(k.lower().split()) for k in [lab.name, *lab.keywords]} for lab in labs}
    words = {
        lab.id: set(name_tokens(" ".join([lab.name, lab.description, *lab.keywords]))) - _DESCRIPTION_WORDS
        for lab in labs
    }
    df = Counter(w for ws in words.values() for w in ws)
    pf = Counter(k for ks in exact.values() for k in ks)
    common = {w for w, n in df.items() if n > max(2, len(words) // 2)}
    session = [(" ".join(p.lower().split()), name_tokens(p) - common) for p in phrases]
    last = max(len(session) - 1, 1)
    weight = [1.0 + recency * i / last for i in range(len(session))]
    scored = []
    for order, lab in enumerate(labs):
        score = 0.0
        for w, (text, toks) in zip(weight, session, strict=True):
            if text in exact[lab.id]:
                score += w / pf[text]
            elif toks:
                score += 0.5 * w * sum(1.0 / df[x] for x in toks & words[lab.id]) / len(toks)
        if score > 0:
            scored.append((-score, order, lab.id))
    return [(lid, -neg) for neg, _, lid in sorted(scored)]


def label_sessions(
    summaries: pd.DataFrame,
    taxonomy: Taxonomy,
    client: Any,
    shortlist_k: int | None = None,
    progress: bool = True,
    sure_ratio: float | None = None,
    recency: float = 0.0,
) -> pd.DataFrame:
    """One row per session of ``summaries`` (see :data:`LABEL_COLUMNS`), in the same order.

    ``shortlist_k``: None offers every label; an int offers the :func:`shortlist` (``other`` when it is
    empty) and needs the summaries' ``phrases`` column. ``sure_ratio`` (with a shortlist): when the
    best label's score is at least this many times the runner-up's, the cheap rule is sure and the
    session gets that label without a call (``model = rule:clear-margin``); None: always ask when
    there are several options; 1.0: ask only on exact ties (where the rule has no basis). Scores use
    the summaries' ``evidence`` column when present (every view, see
    :func:`~clicks2intent.intent.summaries.session_evidence`), else ``phrases``, weighted by ``recency``.
    """
    from clicks2intent.intent.llm.client import JsonRequest
    from clicks2intent.intent.summaries import EVIDENCE, PHRASES, SUMMARY

    if shortlist_k is not None and PHRASES not in summaries.columns:
        raise ValueError(f"summaries: a shortlist needs the {PHRASES!r} column (summarize_sessions)")
    by_id = {lab.id: lab for lab in taxonomy.labels}
    model = client.settings.model
    rows: list[dict[str, Any]] = []
    asks: list[tuple[int, JsonRequest, list[str]]] = []
    for i, rec in enumerate(summaries.to_dict("records")):
        sure = False
        if shortlist_k is None:
            ids = taxonomy.ids
        else:
            # "other" only when no label relates: the small model's label-vs-other choice was noise
            # (see the module doc).
            seen = rec[EVIDENCE] if EVIDENCE in rec else rec[PHRASES]
            scored = shortlist_scores(list(seen), taxonomy, recency)[:shortlist_k]
            ids = [lid for lid, _ in scored] or ([OTHER_ID] if OTHER_ID in by_id else taxonomy.ids)
            top, second = (scored[0][1], scored[1][1]) if len(scored) >= 2 else (0.0, 0.0)
            if sure_ratio is not None and len(scored) >= 2 and top > second and top >= sure_ratio * second:
                ids, sure = ids[:1], True
        messages = label_messages([by_id[x] for x in ids], rec[SUMMARY])
        schema = label_schema(ids)
        row = {C.SESSION_ID: str(rec[C.SESSION_ID]), C.TAXONOMY_VERSION: taxonomy.version_string}
        if len(ids) == 1:  # one allowed answer (or a sure rule): asking would only cost time
            row.update(
                {LABEL_ID: ids[0], STATUS: "ok", ERROR: None, MODEL: MARGIN_MODEL if sure else RULE_MODEL}
            )
            row[PROMPT_SHA256] = request_key(model, messages, schema)
        else:
            asks.append(
                (i, JsonRequest(messages, schema, make_validator(ids, taxonomy), name="intent_label"), ids)
            )
        rows.append(row)
    results = (
        client.map_json([a[1] for a in asks], progress="labelling" if progress else None) if asks else []
    )
    for (i, _, ids), res in zip(asks, results, strict=True):
        ok = res.status == "ok" and res.data.get(LABEL_ID) in ids  # belt and braces
        rows[i].update(
            {
                LABEL_ID: res.data[LABEL_ID] if ok else None,
                STATUS: "ok" if ok else "failed",
                ERROR: None if ok else (res.error or "answer outside the allowed labels"),
                MODEL: model,
                PROMPT_SHA256: res.prompt_sha256,
            }
        )
    return pd.DataFrame(rows, columns=list(LABEL_COLUMNS))


def write_labels(labels: pd.DataFrame, path: str | Path, *, lock: bool = True) -> Path:
    """``llm_labels.parquet``, atomically (``lock=False``: the caller holds the output's lock)."""
    table = pa.Table.from_pandas(labels[list(LABEL_COLUMNS)], schema=LABELS_SCHEMA, preserve_index=False)
    with atomic_output(path, lock=lock) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def check_llm_failures(labels: pd.DataFrame, what: str = "label") -> None:
    """Raise :class:`~clicks2intent.errors.LLMUnavailableError` when more than :data:`MAX_FAILED_SHARE`
    of the rows that asked the LLM failed (rows the rule decided asked nothing)."""
    asked = ~labels[MODEL].astype(str).str.startswith("rule:")
    failed = asked & (labels[STATUS] != "ok")
    n_asked, n_failed = int(asked.sum()), int(failed.sum())
    if n_asked and n_failed > MAX_FAILED_SHARE * n_asked:
        raise LLMUnavailableError(
            f"{what}: {n_failed} of {n_asked} LLM calls failed (more than {MAX_FAILED_SHARE:.0%}), "
            f"commonest reason: {top_reason(labels.loc[failed, ERROR])}; nothing written"
        )


def top_reason(errors: pd.Series | list[str | None]) -> str:
    """The commonest failure reason of ``errors`` (attempt counts dropped), cut to one short line."""
    reasons = Counter(failure_reason(e) for e in errors)
    if not reasons:
        return "unknown"
    reason, n = reasons.most_common(1)[0]
    line = " ".join(str(reason).split())
    return f"{line[:200]} (x{n})"


SHORTLIST_MODES = ("auto", "on", "off")  # auto: on for the embedded small model, off for an endpoint


@dataclass(frozen=True)
class LabellingConfig:
    """One ``c2i taxonomy label`` run: which sessions, against which taxonomy, written where."""

    events: Path  # events parquet/CSV (clickstream contract)
    taxonomy: Path = ARTIFACTS.taxonomy
    out: Path = ARTIFACTS.llm_labels  # the report goes beside it as ``<stem>.report.json``
    sample: int = 300  # web sessions to label (0 = all): the distilled classifier labels the rest
    seed: int = 1  # sampling seed (not the taxonomy's, so labels are not only its own sample)
    require_approved: bool = False  # refuse a draft taxonomy
    shortlist: str = "auto"  # see SHORTLIST_MODES and the module docstring
    shortlist_k: int = 4  # labels in a shortlist (before other)
    # With a shortlist: the cheap rule decides when its best label scores this many times the
    # runner-up; the LLM only sees the sessions it is unsure about (0: always ask; see label_sessions).
    sure_ratio: float = 1.0  # SmolLM2 lowered AMI wherever it overrode the rule (see the module doc)
    recency: float = 1.0  # later views weigh up to 1 + recency times the first (see the module doc)
    llm: LLMOptions = field(default_factory=LLMOptions)

    def __post_init__(self) -> None:
        if self.sample < 0:
            raise ConfigError(f"--sample: must be >= 0, got {self.sample}")
        if self.shortlist not in SHORTLIST_MODES:
            raise ConfigError(f"--shortlist: must be one of {SHORTLIST_MODES}, got {self.shortlist!r}")
        if self.sure_ratio != 0 and self.sure_ratio < 1:
            raise ConfigError(f"--sure-ratio: must be 0 (always ask) or >= 1, got {self.sure_ratio}")

    @property
    def report_path(self) -> Path:
        return Path(self.out).with_suffix(".report.json")


@dataclass
class LabellingRun:
    """What :func:`run_labelling` wrote: the labels, the run report (also on disk) and the taxonomy."""

    labels: pd.DataFrame
    report: dict[str, Any]
    taxonomy: Taxonomy
    seconds: float


def summaries_to_label(events: pd.DataFrame, taxonomy: Taxonomy, sample: int, seed: int) -> pd.DataFrame:
    """Summaries of the sampled web sessions, with the generic pages and prefixes the taxonomy was
    built with, so a session's phrases mean the same thing here."""
    from clicks2intent.intent.summaries import (
        common_prefixes,
        generic_pages,
        summarize_sessions,
        web_session_ids,
    )

    ids = web_session_ids(events)
    chosen = ids if sample == 0 else sample_ids(ids, sample, seed)
    stored = taxonomy.generation.get("generic_pages")
    generic = frozenset(stored) if stored is not None else generic_pages(events)
    stored = taxonomy.generation.get("generic_prefixes")
    prefixes = frozenset(stored) if stored is not None else common_prefixes(events[C.PAGE_TYPE].unique())
    return summarize_sessions(events, session_ids=chosen, web_only=False, generic=generic, prefixes=prefixes)


def run_labelling(config: LabellingConfig) -> LabellingRun:
    """``c2i taxonomy label``: sample web sessions, label them, write parquet + a JSON run report."""
    from clicks2intent.data.contract import read_events
    from clicks2intent.intent.llm.server import llm_client

    taxonomy = Taxonomy.load(config.taxonomy)
    if config.require_approved and taxonomy.status != STATUS_APPROVED:
        raise ConfigError(
            f"{config.taxonomy} is {taxonomy.status}, and --require-approved was given: approve it first"
        )
    if taxonomy.status != STATUS_APPROVED:
        logger.info("note: labelling with a %s taxonomy (%s)", taxonomy.status, taxonomy.version_string)
    use_shortlist = config.shortlist == "on" or (
        config.shortlist == "auto" and config.llm.uses_embedded_server
    )
    shortlist_k = config.shortlist_k if use_shortlist else None
    summaries = summaries_to_label(read_events(config.events), taxonomy, config.sample, config.seed)
    with exclusive(config.out):  # one labelling job per output, held while the LLM works
        with llm_client(config.llm) as client:
            t0 = time.perf_counter()
            labels = label_sessions(
                summaries,
                taxonomy,
                client,
                shortlist_k,
                sure_ratio=config.sure_ratio or None,
                recency=config.recency,
            )
            seconds = time.perf_counter() - t0
            ledger = client.ledger.to_dict()
            model = client.settings.model
        report = labelling_report(labels, config, taxonomy, model, shortlist_k, seconds, ledger)
        write_run(labels, report, config)
    return LabellingRun(labels, report, taxonomy, seconds)


def write_run(labels: pd.DataFrame, report: dict[str, Any], config: LabellingConfig) -> None:
    """The labels and their run report, each atomically, unless too many LLM calls failed
    (:func:`check_llm_failures`: then nothing is written). The caller holds ``config.out``'s lock."""
    check_llm_failures(labels)
    write_labels(labels, config.out, lock=False)
    write_text(config.report_path, json.dumps(report, indent=2) + "\n")


def labelling_report(
    labels: pd.DataFrame,
    config: LabellingConfig,
    taxonomy: Taxonomy,
    model: str,
    shortlist_k: int | None,
    seconds: float,
    ledger: dict[str, Any],
) -> dict[str, Any]:
    """The run report ``c2i taxonomy label`` writes, whichever engine labelled (one place for its keys)."""
    n = len(labels)
    failed = labels[labels[STATUS] != "ok"]
    dist = labels.loc[labels[STATUS] == "ok", LABEL_ID].value_counts()
    return {
        "taxonomy": str(config.taxonomy),
        "taxonomy_version": taxonomy.version_string,
        "model": model,
        "shortlist_k": shortlist_k,
        "n_sessions": n,
        "n_ok": n - len(failed),
        "n_failed": len(failed),
        "n_single_option": int((labels[MODEL] == RULE_MODEL).sum()),
        "n_rule_sure": int((labels[MODEL] == MARGIN_MODEL).sum()),
        "n_llm": int((~labels[MODEL].astype(str).str.startswith("rule:")).sum()),
        "sure_ratio": config.sure_ratio if shortlist_k is not None else None,
        "recency": config.recency,
        "failure_reasons": failed[ERROR].map(failure_reason).value_counts().to_dict(),
        "seconds": round(seconds, 2),
        "sessions_per_s": round(n / seconds, 3) if seconds > 0 else None,
        "label_distribution": {str(k): int(v) for k, v in dist.items()},
        "ledger": ledger,
    }
