"""One error base for everything a user can get wrong (Feast's ``errors.py`` lesson), and the exit codes.

The CLI turns a :class:`Clicks2IntentError` into one line on stderr and its ``exit_code``, never a
traceback. Each error names the field (or file, or setting) and the rule it broke. :data:`EXIT_CODES` is
the one table of what every ``c2i`` command's exit status means (``c2i --help`` and the README show it).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REJECTED = 1  # the command's own "not all good" (validate: rows rejected), see EXIT_CODES
EXIT_USER = 2
EXIT_IO = 3
EXIT_BUSY = 4
EXIT_SERVICE = 5
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT (128 + 2)

# (code, meaning): the same for every command.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (
        EXIT_REJECTED,
        "`validate`: rows rejected (the rest written); `demo-requests`: a call failed; `llm serve`: exited",
    ),
    (EXIT_USER, "bad input, option, configuration or missing artifact: fix it and re-run"),
    (EXIT_IO, "I/O error: disk full, permission denied, read-only file system (old output left as it was)"),
    (EXIT_BUSY, "another job is writing the same output (its lock file is named): wait for it"),
    (
        EXIT_SERVICE,
        "`taxonomy label`/`generate`: over half the LLM calls failed; `--engine ray`: the Ray cluster could "
        "not finish the job (a node lost, actors not placed). Nothing written",
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)


def exit_codes_table() -> str:
    """:data:`EXIT_CODES` as the README's Markdown table."""
    return "\n".join(["| code | meaning |", "|---:|---|", *(f"| {c} | {m} |" for c, m in EXIT_CODES)])


# Modules of an optional extra (pyproject.toml), by top-level name: what needs one names the extra.
EXTRA_OF_MODULE = {"torch": "torch", "onnx": "torch"}
# torch first and explicitly: a plain resolve of the extra's range would pull a multi-GB CUDA build.
_INSTALL_FIRST = {
    "torch": "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu, then "
}


def missing_extra(error: ModuleNotFoundError) -> tuple[str, str] | None:
    """(the optional extra, how to install it) when ``error`` is a module of one; None otherwise."""
    extra = EXTRA_OF_MODULE.get((error.name or "").partition(".")[0])
    if extra is None:
        return None
    return extra, f"{_INSTALL_FIRST.get(extra, '')}pip install 'clicks2intent[{extra}]'"


class Clicks2IntentError(Exception):
    """Bad input or configuration the user can fix; ``str(error)`` is the one-line message."""

    exit_code = EXIT_USER


class ContractError(Clicks2IntentError, ValueError):
    """Input data that breaks the clickstream contract or a file that cannot be read as one."""


class ConfigError(Clicks2IntentError, ValueError):
    """A setting, a config file (taxonomy.yaml, feature_store.yaml) or a command option is wrong."""


class ArtifactError(Clicks2IntentError, FileNotFoundError):
    """An artifact a stage needs is missing or from an incompatible run (train or build it first)."""


class LLMError(Clicks2IntentError, RuntimeError):
    """The LLM endpoint could not give a usable answer (after retries)."""


class LLMUnavailableError(LLMError):
    """Every LLM call of a job, or more than its documented share, failed (endpoint down, wrong URL):
    the job writes nothing and says why in one line."""

    exit_code = EXIT_SERVICE


class ClusterError(Clicks2IntentError, RuntimeError):
    """A job on a Ray cluster that Ray could not finish (a node lost mid-job, actors that cannot be
    placed): the job wrote nothing; re-run it once the cluster is whole."""

    exit_code = EXIT_SERVICE


class ServiceError(Clicks2IntentError, RuntimeError):
    """The serving side cannot start or answer (store unreachable, models missing)."""


class OutputBusyError(Clicks2IntentError, BlockingIOError):
    """Another job holds the lock of the output this job would write (``clicks2intent.common.files``)."""

    exit_code = EXIT_BUSY


class OutputIOError(Clicks2IntentError, OSError):
    """Writing an output failed for a reason outside the job (disk full, read-only, permission): the
    message names the output; the previous output, if any, is left as it was."""

    exit_code = EXIT_IO
