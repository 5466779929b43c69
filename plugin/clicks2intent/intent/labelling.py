"""LLM labelling of a session sample against a taxonomy → ``llm_labels.parquet``.

Why a sample: the LLM is slow and costly per session; the distilled classifier labels everyone else.
Guarantees: every sampled session ends with exactly one row — a label from the taxonomy with status
``ok``, or status ``failed`` with the reason (transport errors and invalid answers exhausted the retries).
None is lost, none gets a label outside the taxonomy (the answer schema enumerates the allowed ids, and
the answer is checked again, because not every endpoint enforces schemas). Each row carries provenance:
taxonomy version, model (or ``rule:single-option``, see below) and the sha256 of the exact prompt (also
the response cache key).

**Shortlist** (on by default for the embedded 135M model): a tiny model shown all labels mostly answers
with the first ones listed (measured on simulated data: 3 labels took 100 % of 60 sessions). So each
session's options are narrowed to the labels whose words its salient pages/searches share — retrieve,
then let the model choose, as large-label-set classifiers do. ``other`` is offered only when no label
relates: offered next to related labels, SmolLM2-135M picked it for 42 % of the non-browsing and 44 % of
the browsing sessions (n=195), i.e. at random, and that halved AMI against the hidden truth (0.10 vs
0.18). A session with a single option gets it without a call, and its row says
``model = "rule:single-option"``. A capable endpoint takes the whole list (``--shortlist off``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clicks2intent.names import columns as C
from clicks2intent.intent.llm.client import InvalidAnswer, request_key
from clicks2intent.intent.taxonomy import (
    OTHER_ID,
    STATUS_APPROVED,
    Label,
    Taxonomy,
    name_tokens,
    sample_ids,
    template_sha256,
)

LABEL_ID = "label_id"
STATUS = "status"
ERROR = "error"
MODEL = "model"
PROMPT_SHA256 = "prompt_sha256"
LABEL_COLUMNS = (C.SESSION_ID, LABEL_ID, STATUS, ERROR, C.TAXONOMY_VERSION, MODEL, PROMPT_SHA256)
LABELS_SCHEMA = pa.schema([pa.field(c, pa.string()) for c in LABEL_COLUMNS])
RULE_MODEL = "rule:single-option"  # provenance of rows decided without a call (one allowed answer)

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
    best first: shared words weighted by rarity across labels, ties in taxonomy order; words found in
    more than a third of the labels are ignored."""
    session = set().union(*(name_tokens(p) for p in phrases)) if phrases else set()
    if not session:
        return []
    words = {
        lab.id: set(name_tokens(f"{lab.name} {lab.description}")) - _DESCRIPTION_WORDS
        for lab in taxonomy.labels
        if lab.id != OTHER_ID
    }
    df = Counter(w for ws in words.values() for w in ws)
    # A word in many labels ("product" of product_mortgage, product_savings…) relates everything to
    # everything: ignore it, as a search engine ignores stop words.
    common = {w for w, n in df.items() if n > max(2, len(words) // 3)}
    scored = []
    for order, (lid, ws) in enumerate(words.items()):
        score = sum(1.0 / df[w] for w in (ws & session) - common)
        if score > 0:
            scored.append((-score, order, lid))
    return [lid for _, _, lid in sorted(scored)[:k]]


def label_sessions(
    summaries: pd.DataFrame,
    taxonomy: Taxonomy,
    client: Any,
    shortlist_k: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per session of ``summaries`` (see :data:`LABEL_COLUMNS`), in the same order.

    ``shortlist_k``: None offers every label; an int offers the :func:`shortlist` (``other`` when it is
    empty) and needs the summaries' ``phrases`` column.
    """
    from clicks2intent.intent.llm.client import JsonRequest
    from clicks2intent.intent.summaries import PHRASES, SUMMARY

    if shortlist_k is not None and PHRASES not in summaries.columns:
        raise ValueError(f"summaries: a shortlist needs the {PHRASES!r} column (summarize_sessions)")
    by_id = {lab.id: lab for lab in taxonomy.labels}
    model = client.settings.model
    rows: list[dict[str, Any]] = []
    asks: list[tuple[int, JsonRequest, list[str]]] = []
    for i, rec in enumerate(summaries.to_dict("records")):
        if shortlist_k is None:
            ids = taxonomy.ids
        else:
            # "other" only when no label relates: the small model's label-vs-other choice was noise
            # (it said "other" for 42 % of non-browsing and 44 % of browsing sessions; see module doc).
            ids = shortlist(list(rec[PHRASES]), taxonomy, shortlist_k)
            ids = ids or ([OTHER_ID] if OTHER_ID in by_id else taxonomy.ids)
        messages = label_messages([by_id[x] for x in ids], rec[SUMMARY])
        schema = label_schema(ids)
        row = {C.SESSION_ID: str(rec[C.SESSION_ID]), C.TAXONOMY_VERSION: taxonomy.version_string}
        if len(ids) == 1:  # one allowed answer: asking would only cost time
            row.update({LABEL_ID: ids[0], STATUS: "ok", ERROR: None, MODEL: RULE_MODEL})
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


def write_labels(labels: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(labels[list(LABEL_COLUMNS)], schema=LABELS_SCHEMA, preserve_index=False)
    pq.write_table(table, path)
    return path


def label_command(args: argparse.Namespace) -> int:
    """``c2i taxonomy label``: sample web sessions, label them, write parquet + a JSON run report."""
    from clicks2intent.data.contract import read_events
    from clicks2intent.intent.llm.client import LLMClient
    from clicks2intent.intent.llm.server import llm_settings_from_args, uses_embedded_server
    from clicks2intent.intent.summaries import common_prefixes, generic_pages, summarize_sessions, web_session_ids

    taxonomy = Taxonomy.load(args.taxonomy)
    if args.require_approved and taxonomy.status != STATUS_APPROVED:
        print(f"{args.taxonomy} is {taxonomy.status}, and --require-approved was given: approve it first")
        return 2
    if taxonomy.status != STATUS_APPROVED:
        print(f"note: labelling with a {taxonomy.status} taxonomy ({taxonomy.version_string})")
    if args.sample < 0:
        raise ValueError(f"--sample: must be >= 0, got {args.sample}")
    use_shortlist = args.shortlist == "on" or (args.shortlist == "auto" and uses_embedded_server(args))
    events = read_events(args.events)
    ids = web_session_ids(events)
    chosen = ids if args.sample == 0 else sample_ids(ids, args.sample, args.seed)
    # The generic pages the taxonomy was built with, so a session's phrases mean the same thing here.
    stored = taxonomy.generation.get("generic_pages")
    generic = frozenset(stored) if stored is not None else generic_pages(events)
    stored = taxonomy.generation.get("generic_prefixes")
    prefixes = frozenset(stored) if stored is not None else common_prefixes(events[C.PAGE_TYPE].unique())
    summaries = summarize_sessions(
        events, session_ids=chosen, web_only=False, generic=generic, prefixes=prefixes
    )
    with (
        llm_settings_from_args(args) as settings,
        LLMClient(settings, retry_failed=args.retry_failed) as client,
    ):
        t0 = time.perf_counter()
        labels = label_sessions(summaries, taxonomy, client, args.shortlist_k if use_shortlist else None)
        seconds = time.perf_counter() - t0
        ledger = client.ledger.to_dict()
    write_labels(labels, args.out)
    n = len(labels)
    failed = labels[labels[STATUS] != "ok"]
    dist = labels.loc[labels[STATUS] == "ok", LABEL_ID].value_counts()
    report = {
        "taxonomy": str(args.taxonomy),
        "taxonomy_version": taxonomy.version_string,
        "model": settings.model,
        "shortlist_k": args.shortlist_k if use_shortlist else None,
        "n_sessions": n,
        "n_ok": n - len(failed),
        "n_failed": len(failed),
        "n_single_option": int((labels[MODEL] == RULE_MODEL).sum()),
        "failure_reasons": failed[ERROR].str.split(" \\(attempt").str[0].value_counts().to_dict(),
        "seconds": round(seconds, 2),
        "sessions_per_s": round(n / seconds, 3) if seconds > 0 else None,
        "label_distribution": {str(k): int(v) for k, v in dist.items()},
        "ledger": ledger,
    }
    report_path = Path(args.out).with_suffix(".report.json")
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    names = taxonomy.names
    print(
        f"labelled {n} sessions in {seconds:.1f}s ({report['sessions_per_s']} sessions/s): {report['n_ok']} ok "
        f"({report['n_single_option']} with a single option, no call), {report['n_failed']} failed; "
        f"api calls {ledger['api_calls']}, cache hits {ledger['cache_hits']}, tokens {ledger['total_tokens']}"
    )
    print("label distribution:")
    for lid, count in dist.items():
        print(f"  {lid:<32} {names.get(lid, lid):<36} {count:>5}  {count / max(n, 1):6.1%}")
    for reason, count in report["failure_reasons"].items():
        print(f"  failed: {count} x {reason}")
    print(f"wrote {args.out} and {report_path}")
    return 0
