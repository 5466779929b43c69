"""Every read and write of the process environment: the ``C2I_*`` settings as one typed object
(pydantic-settings), the README's table of them, and small functions for the rest.

Why one object: ``bentoml serve`` starts its worker processes itself, so the environment is the one
channel that reaches them (in a container as well as here); read in four places, settings drifted
apart and half of them were documented nowhere. The variable names are declared once in
:mod:`clicks2intent.names.settings`; each field here says its type, default and purpose, the README's
settings table is generated from these fields (:func:`settings_table`, checked by a test), and a bad
value is one :class:`~clicks2intent.errors.ConfigError` line naming the variable.

Why one module: no other module reads or writes ``os.environ`` (``tests/test_settings_door.py``). Code
that needs one variable on a hot path (a request's on-demand view) or before a library loads (OpenMP's
wait policy) calls the small functions below; the variables of other programs (OpenMP, CUDA, BentoML,
OpenAI's SDK) are read here too. Importing this module is cheap (no pydantic): :class:`Settings` is
built on first use, so ``c2i --help`` and the torch-free ONNX runtime do not pay for it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from clicks2intent.errors import ConfigError
from clicks2intent.names import settings as ENV
from clicks2intent.names.features import CONVERSION_V1, TILE_RANKER_V1

ARTIFACTS_MODEL_NAME = (
    "clicks2intent_artifacts"  # the BentoML model holding encoder/, intent/, tile prototypes
)
DEFAULT_REDIS = "127.0.0.1:6379"
DEFAULT_REGISTRY_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_LOG_LEVEL = "INFO"
TABLE_BEGIN = (
    "<!-- settings table: generated from clicks2intent.common.settings (c2i settings --markdown) -->"
)
TABLE_END = "<!-- end of settings table -->"


# --- the environment, one variable at a time --------------------------------------------------------
def variable(name: str, default: str | None = None) -> str | None:
    """The value of the variable ``name`` as set (an empty string too); ``default`` when unset."""
    return os.environ.get(name, default)


def set_variable(name: str, value: str) -> None:
    """Set ``name`` for this process and the children and libraries it starts afterwards."""
    os.environ[name] = value


def set_default(name: str, value: str) -> str:
    """Set ``name`` to ``value`` unless it is set already (an explicit setting wins); the value in force."""
    return os.environ.setdefault(name, value)


def expand_variables(text: str) -> str:
    """``text`` with ``$NAME`` and ``${NAME}`` replaced by the variables' values (unset ones stay as written)."""
    return os.path.expandvars(text)


def environment() -> dict[str, str]:
    """A copy of this process's environment (for checks that look at several variables at once)."""
    return dict(os.environ)


def child_env(
    base: Mapping[str, str] | None = None, drop: Iterable[str] = (), **extra: str
) -> dict[str, str]:
    """The environment of a child process: this process's (or ``base``), without ``drop``, plus ``extra``."""
    dropped = set(drop)
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in dropped}
    env.update(extra)
    return env


def passive_openmp() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set: call before torch or XGBoost loads OpenMP.

    OpenMP's workers spin while they wait by default; on a machine whose cores are shared (other
    workers, a benchmark, the CI box) the spinning threads take the cores the working ones need
    (docs/decisions/0007-openmp-wait-policy.md). Passive waiting only adds a wake-up latency when the
    cores are free; an explicit setting wins."""
    os.environ.setdefault(ENV.OMP_WAIT_POLICY, "PASSIVE")


def omp_wait_policy() -> str:
    """``OMP_WAIT_POLICY`` in upper case, ``PASSIVE`` when unset (as :func:`passive_openmp` sets it)."""
    return os.environ.get(ENV.OMP_WAIT_POLICY, "PASSIVE").strip().upper()


def omp_num_threads() -> int | None:
    """``OMP_NUM_THREADS`` when it is a positive whole number (as torch reads it), else None."""
    value = os.environ.get(ENV.OMP_NUM_THREADS, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def cuda_hidden() -> bool:
    """Whether ``CUDA_VISIBLE_DEVICES`` hides every GPU (set to ``""`` or ``-1``)."""
    return os.environ.get(ENV.CUDA_VISIBLE_DEVICES, None) in ("", "-1")


def artifacts_dir() -> str | None:
    """``C2I_ARTIFACTS`` as set, None when unset or empty.

    Read at every call without validation: the on-demand views ask on each request, where building
    :class:`Settings` would cost more than the request's own work."""
    return os.environ.get(ENV.ARTIFACTS) or None


def redis() -> str:
    """``C2I_REDIS``, else :data:`DEFAULT_REDIS` (``production_config``'s online store)."""
    return os.environ.get(ENV.REDIS) or DEFAULT_REDIS


def registry_url() -> str:
    """``C2I_REGISTRY_URL``, else :data:`DEFAULT_REGISTRY_URL` (``production_config``'s registry)."""
    return os.environ.get(ENV.REGISTRY_URL) or DEFAULT_REGISTRY_URL


def log_level() -> str:
    """``C2I_LOG_LEVEL`` in upper case, ``INFO`` when unset (read before any command's settings)."""
    return os.environ.get(ENV.LOG_LEVEL, DEFAULT_LOG_LEVEL).upper()


def llm_model() -> str | None:
    """``C2I_LLM_MODEL``: the model name at the OpenAI-compatible endpoint, as set."""
    return os.environ.get(ENV.LLM_MODEL)


def openai_base_url() -> str | None:
    """``OPENAI_BASE_URL`` (OpenAI's SDK's own variable): the endpoint of the offline LLM steps."""
    return os.environ.get(ENV.OPENAI_BASE_URL)


def openai_api_key() -> str | None:
    """``OPENAI_API_KEY`` (OpenAI's SDK's own variable)."""
    return os.environ.get(ENV.OPENAI_API_KEY)


# --- every C2I_* setting as one object ------------------------------------------------------------
def _env(name: str, description: str, default: Any = None, **kwargs: Any) -> Any:
    """A field read from the variable ``name`` only (``validation_alias``), documented by ``description``."""
    from pydantic import Field

    return Field(default, validation_alias=name, description=description, **kwargs)


@functools.cache
def _settings_class() -> Any:
    """Build :class:`Settings`: pydantic-settings is imported here, on first use, not with this module."""
    from pydantic import ValidationError
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Settings(BaseSettings):
        """The ``C2I_*`` settings of every process (service workers, on-demand views, CLI, offline jobs).

        Unset or empty variables keep the defaults below; ``Settings.load()`` reads the environment."""

        model_config = SettingsConfigDict(
            extra="ignore", env_ignore_empty=True, populate_by_name=True, frozen=True
        )
        # --- where things are ---
        artifacts: Path | None = _env(
            ENV.ARTIFACTS,
            "Artifacts root the on-demand views and `c2i serve` load the encoder, intent classifier and tile "
            "prototypes from. Unset: the bento's `clicks2intent_artifacts` model in a bento, else `artifacts/`.",
        )
        world: Path | None = _env(
            ENV.WORLD,
            "The bank's world declaration (tiles, products, page types, profile columns; docs/world.md) the "
            "commands read when `--world` is not given. Unset: `world.yaml` in the command's data directory.",
        )
        feature_repo: Path | None = _env(
            ENV.FEATURE_REPO,
            "Feast repository the service reads (its `feature_store.yaml`, registry and online store). Unset: "
            "the repo the service carries, which needs `C2I_FEAST_CONFIG` naming a reachable registry.",
        )
        feast_config: str | None = _env(
            ENV.FEAST_CONFIG,
            "Feature store YAML used instead of the repo's own: a file name in the repo "
            "(`feature_store.production.yaml`: Redis + SQL registry) or an absolute path.",
        )
        redis: str = _env(
            ENV.REDIS,
            "Redis connection string of the production online store (`production_config`).",
            DEFAULT_REDIS,
        )
        registry_url: str = _env(
            ENV.REGISTRY_URL,
            "SQLAlchemy URL of the production SQL registry (`production_config`).",
            DEFAULT_REGISTRY_URL,
        )
        # --- the service ---
        tile_model: str | None = _env(
            ENV.TILE_MODEL,
            f"BentoML model tag of the tile ranker served. Unset: `<feast prefix>{TILE_RANKER_V1}:latest` of the "
            "world the served artifacts were built with.",
        )
        conversion_model: str | None = _env(
            ENV.CONVERSION_MODEL,
            f"BentoML model tag of the conversion model served. Unset: `<feast prefix>{CONVERSION_V1}:latest`.",
        )
        artifacts_model: str = _env(
            ENV.ARTIFACTS_MODEL,
            "BentoML model tag of the encoder + intent classifier + tile prototypes a bento carries.",
            f"{ARTIFACTS_MODEL_NAME}:latest",
        )
        workers: int = _env(ENV.WORKERS, "Service worker processes (one per core).", 2, ge=1, le=64)
        feast_odfv: bool = _env(
            ENV.FEAST_ODFV,
            "1: Feast runs the tile_affinity on-demand view; 0: the service computes it in-process (faster).",
            False,
        )
        direct_reads: bool = _env(
            ENV.DIRECT_READS,
            "1: stored views are read with the online store's online_read; 0: through get_online_features.",
            True,
        )
        metrics: bool = _env(
            ENV.METRICS,
            "1: BentoML's Prometheus `/metrics` endpoint (off by default: its per-request CPU cost: docs/decisions/0013-serving-path.md).",
            False,
        )
        tracing: bool = _env(ENV.TRACING, "1: BentoML's OpenTelemetry tracing middleware.", False)
        access_log: bool = _env(ENV.ACCESS_LOG, "1: one access-log line per request.", False)
        # --- offline jobs ---
        llm_model: str | None = _env(
            ENV.LLM_MODEL,
            "Model name at the OpenAI-compatible endpoint (`OPENAI_BASE_URL`); unset: the embedded SmolLM2.",
        )
        llm_runtime: Literal["auto", "xllamacpp", "llama-cpp-python"] = _env(
            ENV.LLM_RUNTIME,
            "Runtime of the embedded LLM server: `xllamacpp` (prebuilt, the `llm` extra), `llama-cpp-python` "
            "(compiled, the `llm-llamacpp` extra); `auto`: the first of these that is installed.",
            "auto",
        )
        log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _env(
            ENV.LOG_LEVEL, "Log level of the `c2i` commands.", DEFAULT_LOG_LEVEL
        )

        @classmethod
        def load(cls, **overrides: Any) -> Settings:
            """The environment's settings (``overrides`` by field name win); a bad value is one ConfigError."""
            try:
                return cls(**overrides)
            except ValidationError as err:
                first = err.errors()[0]
                field = str(first["loc"][0]) if first.get("loc") else "?"
                name = _variable(field)
                raise ConfigError(f"{name}: {first['msg']} (got {first.get('input')!r})") from None

    Settings.__module__, Settings.__qualname__ = __name__, "Settings"  # pickles as this module's name
    return Settings


def __getattr__(name: str) -> Any:
    """``Settings`` on first access (PEP 562): the class, built once by :func:`_settings_class`."""
    if name == "Settings":
        globals()[name] = cls = _settings_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _variable(field_or_alias: str) -> str:
    fields = _settings_class().model_fields
    if field_or_alias in fields:
        return str(fields[field_or_alias].validation_alias)
    return field_or_alias


def _default_text(field: Any) -> str:
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"`{value}`"


def settings_table() -> str:
    """The README's settings table (Markdown), one row per field of :class:`Settings`."""
    lines = ["| variable | default | what it does |", "|---|---|---|"]
    for field in _settings_class().model_fields.values():
        lines.append(f"| `{field.validation_alias}` | {_default_text(field)} | {field.description} |")
    return "\n".join(lines)


def readme_block() -> str:
    """The table between its markers, as the README holds it."""
    return f"{TABLE_BEGIN}\n{settings_table()}\n{TABLE_END}"
