"""The ``c2i`` command line: one sub-command per job, one file per pipeline stage under ``cli/``.

Each handler parses its flags, makes one library call and prints the result. Only the file of the
command being run is imported, so ``c2i validate`` does not pay for torch, scikit-learn or Feast
imports that other commands need. A :class:`~clicks2intent.errors.Clicks2IntentError` (bad input or
configuration) ends the command with one line on stderr and its exit code, never a traceback; so does any
other ``OSError`` (exit code 3) and Ctrl-C (130). The codes: :data:`clicks2intent.errors.EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
from collections.abc import Sequence

from clicks2intent.common.settings import log_level
from clicks2intent.errors import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_USER,
    Clicks2IntentError,
    missing_extra,
)

# command -> (cli module exposing ``register(subparsers)``, one-line help for ``c2i --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("clicks2intent.cli.data", "check an events file against the clickstream contract"),
    "simulate": ("clicks2intent.cli.data", "generate a simulated bank clickstream with hidden truth"),
    "ingest": ("clicks2intent.cli.data", "convert a public clickstream data set into the contract"),
    "world": ("clicks2intent.cli.world", "propose a bank's world.yaml from its data; check one against data"),
    "train-encoder": ("clicks2intent.cli.encoder", "self-supervised training of the session encoder"),
    "embed": ("clicks2intent.cli.encoder", "embed every session of an events file with a trained encoder"),
    "encoder-report": ("clicks2intent.cli.evaluate", "probe the session embedding against baselines"),
    "llm": ("clicks2intent.cli.intent", "the embedded local LLM endpoint (llama.cpp + SmolLM2)"),
    "taxonomy": ("clicks2intent.cli.intent", "LLM intent taxonomy, LLM labels, distilled classifier"),
    "features": ("clicks2intent.cli.features", "build the Feast feature sources; read online features"),
    "evaluate": ("clicks2intent.cli.evaluate", "train the XGBoost models and write the ablation report"),
    "sweep": (
        "clicks2intent.cli.sweep",
        "what identity resolution is worth: the tile ablation per link rate",
    ),
    "serve": ("clicks2intent.cli.serve", "run the BentoML service locally against artifacts/"),
    "demo-requests": ("clicks2intent.cli.serve", "start the service, call each endpoint once, stop it"),
    "summary": ("clicks2intent.cli.summary", "list the pipeline's outputs, time per step, what to do next"),
    "step": ("clicks2intent.cli.step", "run one pipeline step: time it, keep its log, print one line"),
    "settings": ("clicks2intent.cli.settings", "show the C2I_* settings in effect (or the README table)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command``'s module registered, or a help-only entry for every command."""
    from clicks2intent import __version__

    codes = "\n".join(f"  {code:>3}  {meaning.replace('`', '')}" for code, meaning in EXIT_CODES)
    parser = argparse.ArgumentParser(
        prog="c2i",
        description=__doc__.splitlines()[0],
        epilog=f"exit codes (every command):\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"c2i (clicks2intent) {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command][0]).register(subparsers)
    else:
        for name, (_, help_text) in COMMANDS.items():
            subparsers.add_parser(name, help=help_text)
    return parser


# Libraries whose INFO lines are their own bookkeeping, not the command's progress (Feast logs one
# "Registry cache expired, so refreshing" per registry read; httpx one line per HTTP request).
QUIET_LOGGERS = ("httpx", "httpcore", "openai", "feast", "bentoml", "ray")
_OLD_NEWS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
    line: str | None = None,
) -> None:  # fmt: skip
    """Third-party deprecation notices are for their maintainers: DEBUG lines; other warnings: WARNING."""
    text = f"{category.__name__}: {message} ({filename}:{lineno})"
    if issubclass(category, _OLD_NEWS) and "clicks2intent" not in filename:
        logging.getLogger("py.warnings").debug(text)
    else:
        logging.getLogger("py.warnings").warning(text)


def configure_logging() -> None:
    """Library progress goes through ``logging``; the CLI shows INFO and above on stderr.

    Below DEBUG, other libraries' bookkeeping lines and deprecation notices stay out of the user's
    terminal (``C2I_LOG_LEVEL=DEBUG`` shows them)."""
    import warnings

    level = log_level()
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    if level != "DEBUG":
        for chatty in QUIET_LOGGERS:
            logging.getLogger(chatty).setLevel(logging.WARNING)
    # A hook, not a filter: Feast's modules reset the filters when they are imported (mid-command).
    warnings.showwarning = _show_warning


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its return value is the process exit status.

    Run as the program (``argv`` None: ``c2i``, ``python -m clicks2intent``), the garbage collector is
    off while the command's modules import and those objects are then frozen (``gc.freeze``): they
    live as long as the process, and the collector walking torch's objects cost start-up and exit time
    (docs/decisions/0013-serving-path.md). In-process callers (tests) keep the collector untouched.
    """
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if as_program:
        gc.disable()
    try:
        parser = build_parser(command)
    finally:
        if as_program:
            gc.freeze()
            gc.enable()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):  # a bare group such as ``c2i taxonomy``
        build_parser(command).parse_args([*argv, "--help"])
    configure_logging()
    try:
        return int(args.func(args) or 0)
    except Clicks2IntentError as error:
        print(f"c2i {command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # outside our checks (an input we may not read, a pipe closed): one line
        print(f"c2i {command}: error: {os_error_line(error)}", file=sys.stderr)
        return EXIT_IO
    except ModuleNotFoundError as error:  # an optional extra the command needs: one line naming it
        extra = missing_extra(error)
        if extra is None:
            raise
        print(
            f"c2i {command}: error: this command needs {error.name}, which is not installed: {extra[1]}",
            file=sys.stderr,
        )
        return EXIT_USER
    except KeyboardInterrupt:
        print(f"c2i {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _forget_caught_interrupt()


def _forget_caught_interrupt() -> None:
    """CPython 3.11 under ``python -m`` kills the process with SIGINT at exit once a Ctrl-C escaped code
    run by ``exec`` of a string (dataclasses and namedtuple build their methods that way), even after a
    handler here caught it (``c2i llm serve`` then exits -2, not 0); running any string clears that mark.
    An interrupt that leaves ``main`` uncaught sets it again."""
    exec("pass")


def os_error_line(error: OSError) -> str:
    """``<path>: <reason> (<ERRNO>)`` where the error names a path, else its first line."""
    import errno

    code = f" ({errno.errorcode[error.errno]})" if error.errno in errno.errorcode else ""
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}{code}"
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return first if code.strip(" ()") in first else f"{first}{code}"
