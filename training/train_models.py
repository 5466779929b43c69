"""Offline job: train the tile ranker and the conversion model from Feast, evaluate, store them.

Thin on purpose (the logic lives in :mod:`clicks2intent.evaluation.ablation` and the modules it uses): runs the
four-variant ablation on the Feast training sets, writes ``reports/ablation.{json,md,png}`` and saves
the deployable ``tile_ranker_v1`` / ``conversion_v1`` models (and their ``*_baseline`` fallbacks) to
the BentoML store (``$BENTOML_HOME``, default ``artifacts/bentoml``)::

    python training/train_models.py [--repo feature_repo] [--data artifacts/data] [any c2i evaluate option]
    python training/train_models.py --dataset msnbc ../shared/data/real/msnbc/msnbc990928_sessions_000001-060000.seq
"""

from __future__ import annotations

import argparse
import logging
import sys

from clicks2intent.cli.evaluate import ablation_inputs, add_evaluate_arguments
from clicks2intent.evaluation.ablation import FeastRun
from clicks2intent.evaluation.reports import evaluate, tables_markdown
from clicks2intent.models.store import use_default_home


def run(argv: list[str]) -> int:
    """The ablation of ``c2i evaluate`` with the given options (same flags), through the library."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_evaluate_arguments(parser)
    args = parser.parse_args(argv)
    ablation, config = ablation_inputs(args)
    if isinstance(ablation, FeastRun):
        print(f"model store: {use_default_home(args.bentoml_home)}")
    report, paths = evaluate(ablation, config, args.reports)
    print(tables_markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(run(sys.argv[1:]))
