"""``c2i summary``: where the demo's outputs are, with row counts, so a user knows what to open next."""

from __future__ import annotations

import argparse
from pathlib import Path


def describe_artifacts(root: Path) -> list[str]:
    """One line per artifact file: path, size and (for parquet) rows and columns."""
    import pyarrow.parquet as pq

    lines: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part in {"cache", "bentoml", "__pycache__"} for part in rel.parts[:-1]):
            continue
        size = path.stat().st_size
        detail = ""
        if path.suffix == ".parquet":
            meta = pq.read_metadata(path)
            detail = f"  {meta.num_rows:,} rows x {meta.num_columns} cols"
        lines.append(f"  {root / rel}  ({size / 1024:,.0f} KiB){detail}")
    return lines


def _summary_command(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if not root.exists():
        print(f"error: no artifacts at {root}: run `make demo` first")
        return 2
    print(f"== outputs under {root.resolve()}")
    print("\n".join(describe_artifacts(root)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i summary``."""
    p = subparsers.add_parser("summary", help="list the pipeline's outputs and where they are")
    p.add_argument("root", nargs="?", default="artifacts", help="artifact directory (default: artifacts)")
    p.set_defaults(func=_summary_command)
