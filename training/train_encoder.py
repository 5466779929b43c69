"""Offline job: self-supervised training of the session encoder, then embedding every session.

Thin on purpose (the logic lives in :mod:`clicks2intent.encoder.train` and
:mod:`clicks2intent.encoder.embed`):

    python training/train_encoder.py --events artifacts/data/events.parquet --out artifacts/encoder \
        [--embed-out artifacts/embeddings/session_embeddings.parquet] [any c2i train-encoder option]
"""

from __future__ import annotations

import argparse
import sys

from clicks2intent.cli import main as c2i


def run(argv: list[str]) -> int:
    """``c2i train-encoder`` with the given options, then ``c2i embed`` when ``--embed-out`` is set."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--embed-out")
    pre.add_argument("--events", required=True)
    pre.add_argument("--out", required=True)
    known, _ = pre.parse_known_args(argv)
    train_args = [
        a for i, a in enumerate(argv) if a != "--embed-out" and (i == 0 or argv[i - 1] != "--embed-out")
    ]
    code = c2i(["train-encoder", *train_args])
    if code or not known.embed_out:
        return code
    return c2i(["embed", "--encoder", known.out, "--events", known.events, "--out", known.embed_out])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
