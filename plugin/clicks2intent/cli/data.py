"""``c2i validate``, ``c2i simulate`` and ``c2i ingest``: the data stage's commands.

Each handler parses its flags, makes one library call (:mod:`clicks2intent.data`) and prints the result;
bad input raises a :class:`~clicks2intent.errors.Clicks2IntentError` that ``c2i`` turns into one line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from clicks2intent.cli.flags import given
from clicks2intent.names import columns as C
from clicks2intent.names.paths import ARTIFACTS

if TYPE_CHECKING:  # the data stage (pandas) is imported by the handlers
    from clicks2intent.data.simulator import SimulatorConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i validate``, ``c2i simulate`` and ``c2i ingest``."""
    _register_validate(subparsers)
    _register_simulate(subparsers)
    _register_ingest(subparsers)


# --- c2i validate -------------------------------------------------------------------------------


def _validate_command(args: argparse.Namespace) -> int:
    from clicks2intent.common.settings import Settings
    from clicks2intent.data.contract import read_page_types, validate_file
    from clicks2intent.data.world import load_world, resolve_world_path

    known = read_page_types(args.known_page_types) if args.known_page_types else None
    world = None
    if args.world or (known is None and Settings.load().world):
        world = load_world(resolve_world_path(args.world, None))
    result = validate_file(
        args.path,
        known_page_types=known,
        max_session_events=args.max_session_events,
        rejects_path=args.rejects,
        out_path=args.out,
        world=world,
    )
    print(json.dumps(result.report.to_dict(), indent=2) if args.json else result.report.to_text())
    if args.rejects and len(result.rejected):
        print(f"rejected rows and their rules: {args.rejects}")
    if args.out:
        print(f"valid events: {args.out}")
    return 1 if result.report.n_rejected else 0


def _register_validate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("validate", help="check an events file against the clickstream contract")
    p.add_argument("path", help="events as parquet or CSV")
    p.add_argument(
        "--world",
        help="the bank's world.yaml: raw page names/URLs map to its page types (unmatched: OOV, share reported)",
    )
    p.add_argument("--known-page-types", help="file with one known page type per line; others become OOV")
    p.add_argument("--max-session-events", type=int, default=2000, help="longer sessions are rejected")
    p.add_argument("--rejects", help="write rejected row positions and rules to this CSV")
    p.add_argument("--out", help="write the valid (repaired, scrubbed) events to this parquet file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_validate_command)


# --- c2i simulate -------------------------------------------------------------------------------


def simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    """The parsed ``simulate`` flags as the simulator's config (flags not given: its defaults)."""
    from clicks2intent.data.simulator import SimulatorConfig

    return SimulatorConfig(
        **given(n_customers=args.customers, seed=args.seed, days=args.days, pii_rate=args.pii_rate)
    )


def _simulate_command(args: argparse.Namespace) -> int:
    from clicks2intent.data.simulator import generate, summary

    result, paths = generate(simulator_config(args), args.out)
    print(summary(result, paths))
    print(f"its world declaration (tiles, products, pages, profile): {paths['world']}")
    print(f"written in {result.stats['seconds_write']:.1f} s to {Path(args.out).resolve()}")
    return 0


def _register_simulate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("simulate", help="generate a simulated bank clickstream with hidden truth")
    p.add_argument("--out", default=str(ARTIFACTS.data), help=f"output directory (default: {ARTIFACTS.data})")
    p.add_argument("--customers", type=int, help="number of customers (default: SimulatorConfig.n_customers)")
    p.add_argument(
        "--seed", type=int, help="random seed: same seed, identical files (default: SimulatorConfig.seed)"
    )
    p.add_argument("--days", type=int, help="window length in days (default: SimulatorConfig.days)")
    p.add_argument(
        "--pii-rate",
        type=float,
        help="share of search queries with pasted PII (default: SimulatorConfig.pii_rate)",
    )
    p.set_defaults(func=_simulate_command)


# --- c2i ingest ---------------------------------------------------------------------------------


def _ingest_msnbc_command(args: argparse.Namespace) -> int:
    from clicks2intent.data.ingest import ingest_msnbc

    result = ingest_msnbc(args.path, args.limit, max_session_events=args.max_session_events, out=args.out)
    print(result.report.to_text())
    n_sessions = result.events[C.SESSION_ID].nunique()
    print(f"{len(result.events):,} events in {n_sessions:,} sessions written to {Path(args.out).resolve()}")
    return 0


def _ingest_ga4_command(args: argparse.Namespace) -> int:
    from clicks2intent.data.ingest import ingest_ga4
    from clicks2intent.data.world import load_world, resolve_world_path

    world = load_world(resolve_world_path(args.world, None))
    result = ingest_ga4(args.paths, world, args.out, max_session_events=args.max_session_events)
    print(json.dumps(result.report.to_dict(), indent=2) if args.json else result.report.to_text())
    print(
        f"written to {Path(args.out).resolve()}: {', '.join(Path(p).name for p in result.report.outputs.values())}"
    )
    return 0


def _ingest_applications_command(args: argparse.Namespace) -> int:
    from clicks2intent.data.conversions import write_conversions
    from clicks2intent.data.world import load_world, resolve_world_path

    path, report = write_conversions(
        args.data, args.path, load_world(resolve_world_path(args.world, args.data))
    )
    print(report.to_text())
    print(f"written to {path}")
    return 0


def _register_ingest(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest", help="convert a raw data set (GA4 export, MSNBC, applications) into the contracts"
    )
    sources = p.add_subparsers(dest="source", required=True)
    m = sources.add_parser("msnbc", help="UCI MSNBC.com page-category sequences (synthetic clock, see docs)")
    m.add_argument("path", help="the .seq file (e.g. ../shared/data/real/msnbc/msnbc990928_sessions_*.seq)")
    m.add_argument("--out", default=str(ARTIFACTS.msnbc_events), help="output parquet path")
    m.add_argument("--limit", type=int, default=None, help="read only the first N sessions")
    m.add_argument(
        "--max-session-events", type=int, default=2000, help="longer sessions are rejected (reported)"
    )
    m.set_defaults(func=_ingest_msnbc_command)
    g = sources.add_parser(
        "ga4", help="a GA4 BigQuery export (events_* tables as NDJSON or parquet; docs/ga4.md)"
    )
    g.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="export files or directories (.json/.jsonl/.ndjson[.gz], .parquet)",
    )
    g.add_argument(
        "--world", help="the bank's world.yaml (default: $C2I_WORLD): page URLs map to its page types"
    )
    g.add_argument(
        "--out",
        default=str(ARTIFACTS.data),
        help=f"data directory for events.parquet, identity_links.parquet, world.yaml (default: {ARTIFACTS.data})",
    )
    g.add_argument(
        "--max-session-events", type=int, default=2000, help="longer sessions are rejected (reported)"
    )
    g.add_argument("--json", action="store_true", help="print the report as JSON")
    g.set_defaults(func=_ingest_ga4_command)
    a = sources.add_parser(
        "applications",
        help="a bank's applications table -> conversions.parquet (per web session, within the world's horizon)",
    )
    a.add_argument(
        "path", help="applications parquet/CSV: event_timestamp, product, visitor_id and/or customer_id"
    )
    a.add_argument(
        "--data",
        default=str(ARTIFACTS.data),
        help="data directory with events.parquet (+ identity_links.parquet)",
    )
    a.add_argument("--world", help="the bank's world.yaml (default: $C2I_WORLD, else DATA/world.yaml)")
    a.set_defaults(func=_ingest_applications_command)
