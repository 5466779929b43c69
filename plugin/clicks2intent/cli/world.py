"""``c2i world propose`` and ``c2i world check``: a bank's first declaration from its data, and a
declaration checked against a data directory (:mod:`clicks2intent.data.propose`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i world propose`` and ``c2i world check``."""
    p = subparsers.add_parser(
        "world", help="propose a bank's world.yaml from its data; check one against data"
    )
    commands = p.add_subparsers(dest="world_command", required=True)
    pr = commands.add_parser(
        "propose", help="a first world.yaml (every guess marked '# check:') from a data directory"
    )
    pr.add_argument(
        "sources",
        nargs="+",
        metavar="DATA",
        help="data directories or files: a GA4 export (or events with raw page_type), customers.parquet, "
        "tile_impressions.parquet, conversions.parquet",
    )
    pr.add_argument("--name", help="the bank's name (default: the first data directory's name)")
    pr.add_argument("--out", help="write the declaration here instead of printing it")
    pr.set_defaults(func=_propose_command)
    ch = commands.add_parser(
        "check", help="check a world.yaml against a data directory (exit 2 when inconsistent)"
    )
    ch.add_argument("world", help="the declaration to check")
    ch.add_argument("--data", required=True, nargs="+", help="data directory (or files) to check it against")
    ch.set_defaults(func=_check_command)


def _propose_command(args: argparse.Namespace) -> int:
    from clicks2intent.data.propose import propose_world

    text = propose_world(args.sources, name=args.name)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(
            f"proposed declaration written to {args.out}: edit every '# check:' line, then `c2i world check`"
        )
    else:
        print(text, end="")
    return 0


def _check_command(args: argparse.Namespace) -> int:
    from clicks2intent.data.propose import check_world
    from clicks2intent.data.world import load_world

    result = check_world(load_world(args.world), args.data)
    for line in result.lines():
        print(line)
    verdict = "consistent with" if result.ok else f"NOT consistent ({len(result.errors)} error(s)) with"
    print(f"{args.world} is {verdict} {', '.join(args.data)}")
    return 0 if result.ok else 2
