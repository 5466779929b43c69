"""Offline job: train the tile ranker and the conversion model from Feast, evaluate, store them.

Thin on purpose (the logic lives in :mod:`clicks2intent.evaluation.ablation` and the modules it uses): runs the
four-variant ablation on the Feast training sets, writes ``reports/ablation.{json,md,png}`` and saves
the deployable ``tile_ranker_v1`` / ``conversion_v1`` models (and their ``*_baseline`` fallbacks) to
the BentoML store (``$BENTOML_HOME``, default ``artifacts/bentoml``)::

    python training/train_models.py [--repo feature_repo] [--data artifacts/data] [any c2i evaluate option]
    python training/train_models.py --dataset msnbc ../shared/data/real/msnbc/msnbc990928_sessions_000001-060000.seq
"""

from __future__ import annotations

import sys

from clicks2intent.cli import main as c2i


def run(argv: list[str]) -> int:
    """``c2i evaluate`` with the given options."""
    return c2i(["evaluate", *argv])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
