"""The names of every ``C2I_*`` environment setting, declared once.

Read them through these constants (never retype the string); the README's settings table lists them.
"""

from __future__ import annotations

ARTIFACTS = "C2I_ARTIFACTS"  # root of the artifacts the service and on-demand views load
FEATURE_REPO = "C2I_FEATURE_REPO"  # the Feast repository directory the service reads
FEAST_CONFIG = "C2I_FEAST_CONFIG"  # a feature_store.yaml to use instead of the repo's own
FEAST_ODFV = "C2I_FEAST_ODFV"  # "1": let Feast run the on-demand views instead of the in-process path
DIRECT_READS = "C2I_DIRECT_READS"  # "0": read through get_online_features, not the online store's online_read
WORKERS = "C2I_WORKERS"  # BentoML worker processes of `c2i serve`
TILE_MODEL = "C2I_TILE_MODEL"  # model-store tag of the tile ranker to serve
CONVERSION_MODEL = "C2I_CONVERSION_MODEL"  # model-store tag of the conversion model to serve
METRICS = "C2I_METRICS"  # "1": expose Prometheus /metrics
TRACING = "C2I_TRACING"  # "1": BentoML tracing
ACCESS_LOG = "C2I_ACCESS_LOG"  # "1": BentoML access log
JSON = "C2I_JSON"  # JSON encoder choice of the service
REDIS = "C2I_REDIS"  # host:port of the production Redis online store
REGISTRY_URL = "C2I_REGISTRY_URL"  # SQLAlchemy URL of the production SQL registry
LLM_MODEL = "C2I_LLM_MODEL"  # model name at an OpenAI-compatible endpoint

ALL: tuple[str, ...] = (
    ARTIFACTS,
    FEATURE_REPO,
    FEAST_CONFIG,
    FEAST_ODFV,
    DIRECT_READS,
    WORKERS,
    TILE_MODEL,
    CONVERSION_MODEL,
    METRICS,
    TRACING,
    ACCESS_LOG,
    JSON,
    REDIS,
    REGISTRY_URL,
    LLM_MODEL,
)
