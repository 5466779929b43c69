"""``c2i summary``: where the demo's outputs are, with row counts, so a user knows what to open next."""

from __future__ import annotations

import argparse
from pathlib import Path

from clicks2intent.cli.step import read_steps, steps_table
from clicks2intent.errors import ArtifactError
from clicks2intent.names.paths import DEFAULT_ROOT, ArtifactLayout


def _summary_command(args: argparse.Namespace) -> int:
    from clicks2intent.evaluation.reports import describe_artifacts, describe_directories

    root = Path(args.root)
    if not root.exists():
        raise ArtifactError(f"no artifacts at {root}: run `make demo` first")
    layout = ArtifactLayout(root)
    print(f"== outputs under {root.resolve()}")
    print("\n".join(describe_artifacts(root) if args.all else describe_directories(root)))
    steps = read_steps(root / "logs")
    if steps:
        print(f"\n== time per step (logs in {root / 'logs'})")
        print(steps_table(steps))
    print("\n== where to look next")
    for name in ("ablation.md", "ablation_msnbc.md", "taxonomy_review.md"):
        if (layout.reports / name).is_file():
            print(f"  report: {layout.reports / name}")
    print(
        f"  serve:  c2i serve --port 3000 --artifacts {root}   (POST /rank_tiles, /predict_conversion, /intent)"
    )
    print("  docs:   http://127.0.0.1:3000/docs once it runs; README.md 'Serving' for a built bento")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i summary``."""
    p = subparsers.add_parser("summary", help="list the pipeline's outputs and where they are")
    p.add_argument(
        "root", nargs="?", default=str(DEFAULT_ROOT), help="artifact directory (default: artifacts)"
    )
    p.add_argument("--all", action="store_true", help="one line per file (rows and columns of parquet files)")
    p.set_defaults(func=_summary_command)
