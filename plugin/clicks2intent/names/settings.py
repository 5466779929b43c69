"""The names of every ``C2I_*`` environment setting, declared once.

Read them through these constants (never retype the string). Their types, defaults and meaning live in
:class:`clicks2intent.common.settings.Settings`, which the README's settings table is generated from.
"""

from __future__ import annotations

ARTIFACTS = "C2I_ARTIFACTS"  # root of the artifacts the service and on-demand views load
WORLD = "C2I_WORLD"  # the bank's world declaration (world.yaml) the commands read by default
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
REDIS = "C2I_REDIS"  # host:port of the production Redis online store
REGISTRY_URL = "C2I_REGISTRY_URL"  # SQLAlchemy URL of the production SQL registry
LLM_MODEL = "C2I_LLM_MODEL"  # model name at an OpenAI-compatible endpoint
LLM_RUNTIME = "C2I_LLM_RUNTIME"  # runtime of the embedded LLM server: auto, xllamacpp, llama-cpp-python
ARTIFACTS_MODEL = (
    "C2I_ARTIFACTS_MODEL"  # model-store tag of the encoder + classifier + prototypes a bento carries
)
LOG_LEVEL = "C2I_LOG_LEVEL"  # log level of the c2i commands

ALL: tuple[str, ...] = (
    ARTIFACTS,
    WORLD,
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
    REDIS,
    REGISTRY_URL,
    LLM_MODEL,
    LLM_RUNTIME,
    ARTIFACTS_MODEL,
    LOG_LEVEL,
)
