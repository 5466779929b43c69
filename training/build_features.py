"""Offline job: events + embeddings + intents + identity links → the parquet sources of feature_repo/.

Thin on purpose (the logic lives in :mod:`clicks2intent.features.build`); the same flags as
``c2i features build``::

    python training/build_features.py [--data artifacts/data] \
        [--embeddings artifacts/embeddings/session_embeddings.parquet] \
        [--intents artifacts/intent/session_intents.parquet] [--intent-model artifacts/intent] \
        [--out artifacts/features] [--half-life-days 7] [--window-days 30] [--buckets N]

Then, from feature_repo/: ``feast apply`` and ``feast materialize START END``.
"""

from __future__ import annotations

import sys

from clicks2intent.cli import build_parser, configure_logging
from clicks2intent.cli.features import build_options, report_lines
from clicks2intent.errors import Clicks2IntentError
from clicks2intent.features.build import (
    BuildReport,
    FeatureBuildConfig,
    FeatureBuildPaths,
    build_feature_sources,
)


def run(paths: FeatureBuildPaths | None = None, config: FeatureBuildConfig | None = None) -> BuildReport:
    """Build the feature sources (defaults: the ``artifacts/`` layout and :class:`FeatureBuildConfig`)."""
    return build_feature_sources(paths, config)


def main(argv: list[str]) -> int:
    """Parse the ``c2i features build`` flags, run the job, print what it wrote."""
    args = build_parser("features").parse_args(["features", "build", *argv])
    configure_logging()
    try:
        report = run(*build_options(args))
    except Clicks2IntentError as error:
        print(f"build_features: error: {error}", file=sys.stderr)
        return error.exit_code
    print("\n".join(report_lines(report, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
