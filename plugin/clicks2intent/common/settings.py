"""Every ``C2I_*`` environment setting as one typed object (pydantic-settings), and the README's table of them.

Why one object: ``bentoml serve`` starts its worker processes itself, so the environment is the one
channel that reaches them (in a container as well as here); read in four places, settings drifted
apart and half of them were documented nowhere. The variable names are declared once in
:mod:`clicks2intent.names.settings`; each field here says its type, default and purpose, the README's
settings table is generated from these fields (:func:`settings_table`, checked by a test), and a bad
value is one :class:`~clicks2intent.errors.ConfigError` line naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from clicks2intent.errors import ConfigError
from clicks2intent.names import settings as ENV
from clicks2intent.names.features import CONVERSION_V1, TILE_RANKER_V1

ARTIFACTS_MODEL_NAME = (
    "clicks2intent_artifacts"  # the BentoML model holding encoder/, intent/, tile prototypes
)
DEFAULT_REDIS = "127.0.0.1:6379"
DEFAULT_REGISTRY_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLE_BEGIN = (
    "<!-- settings table: generated from clicks2intent.common.settings (c2i settings --markdown) -->"
)
TABLE_END = "<!-- end of settings table -->"


def _env(name: str, description: str, default: Any = None, **kwargs: Any) -> Any:
    """A field read from the variable ``name`` only (``validation_alias``), documented by ``description``."""
    return Field(default, validation_alias=name, description=description, **kwargs)


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
        ENV.METRICS, "1: BentoML's Prometheus `/metrics` endpoint (about 12% CPU per request).", False
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
        ENV.LOG_LEVEL, "Log level of the `c2i` commands.", "INFO"
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


def _variable(field_or_alias: str) -> str:
    if field_or_alias in Settings.model_fields:
        return str(Settings.model_fields[field_or_alias].validation_alias)
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
    for field in Settings.model_fields.values():
        lines.append(f"| `{field.validation_alias}` | {_default_text(field)} | {field.description} |")
    return "\n".join(lines)


def readme_block() -> str:
    """The table between its markers, as the README holds it."""
    return f"{TABLE_BEGIN}\n{settings_table()}\n{TABLE_END}"
