"""Offline job: self-supervised training of the session encoder, then embedding every session.

Thin on purpose (the logic lives in :mod:`clicks2intent.encoder.train` and
:mod:`clicks2intent.encoder.embed`; the flags are those of ``c2i train-encoder``):

    python training/train_encoder.py --events artifacts/data/events.parquet --out artifacts/encoder \
        [--embed-out artifacts/embeddings/session_embeddings.parquet] [any c2i train-encoder option]
"""

from __future__ import annotations

import argparse
import sys

from clicks2intent.cli import configure_logging
from clicks2intent.cli.encoder import embed_summary, register, train_from_args, training_summary
from clicks2intent.encoder.embed import embed_file
from clicks2intent.errors import Clicks2IntentError


def _train_args(argv: list[str]) -> tuple[argparse.Namespace, str | None]:
    """The ``c2i train-encoder`` flags (same parser) and ``--embed-out``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--embed-out")
    known, rest = pre.parse_known_args(argv)
    parser = argparse.ArgumentParser(prog="train_encoder.py", description=__doc__.splitlines()[0])
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["train-encoder", *rest]), known.embed_out


def run(argv: list[str]) -> int:
    """Train the encoder with the given options, then embed the events when ``--embed-out`` is set."""
    args, embed_out = _train_args(argv)
    configure_logging()
    try:
        print(training_summary(train_from_args(args), args.out))
        if embed_out:
            print(embed_summary(embed_file(args.out, args.events, embed_out), embed_out))
    except Clicks2IntentError as error:
        print(f"train_encoder.py: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
