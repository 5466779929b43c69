"""clicks2intent: web clickstreams to session embeddings and intent labels, served through Feast.

The public API, one name per pipeline stage, importable from the top (``from clicks2intent import
validate_events``). Re-exports are lazy: ``import clicks2intent`` loads no torch, Feast or BentoML;
each name imports its stage on first use. Everything else is reachable at its stage path
(``clicks2intent.<stage>.<module>``, README "Layout").
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("clicks2intent")
except PackageNotFoundError:  # the sources without an install (e.g. a bento's src/plugin)
    __version__ = "0.1.0"

# public name -> the module defining it
_EXPORTS: dict[str, str] = {
    # errors and settings
    "Clicks2IntentError": "clicks2intent.errors",
    "ConfigError": "clicks2intent.errors",
    "ContractError": "clicks2intent.errors",
    "ArtifactError": "clicks2intent.errors",
    "Settings": "clicks2intent.common.settings",
    "ArtifactLayout": "clicks2intent.names.paths",
    # data: the clickstream contract, PII scrubbing, the simulator
    "validate_events": "clicks2intent.data.contract",
    "read_events": "clicks2intent.data.contract",
    "EVENT_SCHEMA": "clicks2intent.data.contract",
    "scrub": "clicks2intent.data.pii",
    "SimulatorConfig": "clicks2intent.data.simulator",
    "simulate": "clicks2intent.data.simulator",
    # encoder, intent
    "SessionEmbedder": "clicks2intent.encoder.embed",
    "IntentClassifier": "clicks2intent.intent.distill",
    # features: the Feast objects and the offline job
    "build_feast_objects": "clicks2intent.features.definitions:build",
    "file_sources": "clicks2intent.features.definitions",
    "build_feature_sources": "clicks2intent.features.build",
    # serving
    "ServingEngine": "clicks2intent.serving.engine",
}

__all__ = [  # a literal list (linters and IDEs read it); a test checks it matches _EXPORTS
    "__version__",
    "ArtifactError",
    "ArtifactLayout",
    "Clicks2IntentError",
    "ConfigError",
    "ContractError",
    "EVENT_SCHEMA",
    "IntentClassifier",
    "ServingEngine",
    "SessionEmbedder",
    "Settings",
    "SimulatorConfig",
    "build_feast_objects",
    "build_feature_sources",
    "file_sources",
    "read_events",
    "scrub",
    "simulate",
    "validate_events",
]

if TYPE_CHECKING:  # static checkers and IDEs see the real objects
    from clicks2intent.common.settings import Settings
    from clicks2intent.data.contract import EVENT_SCHEMA, read_events, validate_events
    from clicks2intent.data.pii import scrub
    from clicks2intent.data.simulator import SimulatorConfig, simulate
    from clicks2intent.encoder.embed import SessionEmbedder
    from clicks2intent.errors import ArtifactError, Clicks2IntentError, ConfigError, ContractError
    from clicks2intent.features.build import build_feature_sources
    from clicks2intent.features.definitions import build as build_feast_objects
    from clicks2intent.features.definitions import file_sources
    from clicks2intent.intent.distill import IntentClassifier
    from clicks2intent.names.paths import ArtifactLayout
    from clicks2intent.serving.engine import ServingEngine


def __getattr__(name: str) -> Any:
    """Import a public name's stage on first access (PEP 562)."""
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'clicks2intent' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
