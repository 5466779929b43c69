"""The ``c2i`` command line: one sub-command per job, each registered by the module that owns it.

Only the module of the command being run is imported, so ``c2i validate`` does not pay for torch,
scikit-learn or Feast imports that other commands need.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command -> (module exposing ``register(subparsers)``, one-line help for ``c2i --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("clicks2intent.events", "check an events file against the clickstream contract"),
    "simulate": ("clicks2intent.simulator", "generate a simulated bank clickstream with hidden truth"),
    "ingest": ("clicks2intent.ingest", "convert a public clickstream data set into the contract"),
    "train-encoder": ("clicks2intent.encoder_training", "self-supervised training of the session encoder"),
    "embed": ("clicks2intent.embedding", "embed every session of an events file with a trained encoder"),
    "encoder-report": ("clicks2intent.encoder_quality", "probe the session embedding against baselines"),
    "llm": ("clicks2intent.llm.server", "the embedded local LLM endpoint (llama.cpp + SmolLM2)"),
    "taxonomy": ("clicks2intent.taxonomy", "LLM intent taxonomy, LLM labels, distilled classifier"),
    "features": ("clicks2intent.features", "build the Feast feature sources; read online features"),
    "evaluate": ("clicks2intent.ablation", "train the XGBoost models and write the ablation report"),
    "serve": ("clicks2intent.serve_cli", "run the BentoML service locally against artifacts/"),
    "demo-requests": ("clicks2intent.serve_cli", "start the service, call each endpoint once, stop it"),
    "summary": ("clicks2intent.summary", "list the pipeline's outputs and where they are"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command``'s module registered, or a help-only entry for every command."""
    parser = argparse.ArgumentParser(prog="c2i", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command][0]).register(subparsers)
    else:
        for name, (_, help_text) in COMMANDS.items():
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its return value is the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    if not hasattr(args, "func"):  # a bare group such as ``c2i taxonomy``
        build_parser(command).parse_args([*argv, "--help"])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
