"""``c2i summary``: where the demo's outputs are, with row counts, so a user knows what to open next."""

from __future__ import annotations

import argparse
from pathlib import Path

from clicks2intent.errors import ArtifactError
from clicks2intent.evaluation.reports import describe_artifacts
from clicks2intent.names.paths import DEFAULT_ROOT


def _summary_command(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if not root.exists():
        raise ArtifactError(f"no artifacts at {root}: run `make demo` first")
    print(f"== outputs under {root.resolve()}")
    print("\n".join(describe_artifacts(root)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i summary``."""
    p = subparsers.add_parser("summary", help="list the pipeline's outputs and where they are")
    p.add_argument(
        "root", nargs="?", default=str(DEFAULT_ROOT), help="artifact directory (default: artifacts)"
    )
    p.set_defaults(func=_summary_command)
