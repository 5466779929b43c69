"""One error base for everything a user can get wrong (Feast's ``errors.py`` lesson).

The CLI turns a :class:`Clicks2IntentError` into one line on stderr and exit code 2, never a
traceback. Each error names the field (or file, or setting) and the rule it broke.
"""

from __future__ import annotations


class Clicks2IntentError(Exception):
    """Bad input or configuration the user can fix; ``str(error)`` is the one-line message."""

    exit_code = 2


class ContractError(Clicks2IntentError, ValueError):
    """Input data that breaks the clickstream contract or a file that cannot be read as one."""


class ConfigError(Clicks2IntentError, ValueError):
    """A setting, a config file (taxonomy.yaml, feature_store.yaml) or a command option is wrong."""


class ArtifactError(Clicks2IntentError, FileNotFoundError):
    """An artifact a stage needs is missing or from an incompatible run (train or build it first)."""


class LLMError(Clicks2IntentError, RuntimeError):
    """The LLM endpoint could not give a usable answer (after retries)."""


class ServiceError(Clicks2IntentError, RuntimeError):
    """The serving side cannot start or answer (store unreachable, models missing)."""
