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

# Other programs' variables this package reads or sets (through clicks2intent.common.settings only);
# not C2I_* settings, so not in ALL nor in the README's table.
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"  # OpenMP: PASSIVE (set by default) or ACTIVE (spin while waiting)
OMP_NUM_THREADS = "OMP_NUM_THREADS"  # OpenMP: threads of a job (torch, ONNX Runtime batches)
CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"  # "" or "-1": no GPU for this process
BENTOML_HOME = "BENTOML_HOME"  # BentoML's own variable: its model and bento store
BENTOML_DO_NOT_TRACK = "BENTOML_DO_NOT_TRACK"  # "True": no BentoML usage analytics
UV_TCP_SINGLE_ACCEPT = "UV_TCP_SINGLE_ACCEPT"  # libuv: one accepted connection per wake-up
RAY_ENABLE_UV_RUN_RUNTIME_ENV = "RAY_ENABLE_UV_RUN_RUNTIME_ENV"  # "0": Ray starts no worker through `uv run`
OPENAI_BASE_URL = "OPENAI_BASE_URL"  # OpenAI's SDK: the endpoint of the offline LLM steps
OPENAI_API_KEY = "OPENAI_API_KEY"  # OpenAI's SDK: its key
