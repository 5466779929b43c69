"""Offline job: events + embeddings + intents + identity links → the parquet sources of feature_repo/.

Thin on purpose (the logic lives in :mod:`clicks2intent.features.build`); the same as ``c2i features build``::

    python training/build_features.py [--data artifacts/data] \
        [--embeddings artifacts/embeddings/session_embeddings.parquet] \
        [--intents artifacts/intent/session_intents.parquet] [--intent-model artifacts/intent] \
        [--out artifacts/features] [--half-life-days 7] [--window-days 30] [--buckets N]

Then, from feature_repo/: ``feast apply`` and ``feast materialize START END``.
"""

from __future__ import annotations

import sys

from clicks2intent.cli import main as c2i


def run(argv: list[str]) -> int:
    """``c2i features build`` with the given options."""
    return c2i(["features", "build", *argv])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
