"""clicks2intent BentoML service: tile ranking, conversion and intent over Feast online features.

Thin on purpose: the models are ``BentoModel`` class attributes (so ``bentoml build`` carries them: the
tile ranker, the conversion model and ``clicks2intent_artifacts`` = encoder + intent classifier + tile
prototypes), each worker builds one :class:`clicks2intent.serving.engine.ServingEngine` (its own Feast
``FeatureStore``), and every endpoint hands its validated request to the engine. Request logic and
fallbacks live in ``clicks2intent.serving.engine``, validation in ``clicks2intent.serving.schemas``, the
deployment checks in ``clicks2intent.serving.deployment``, so tests and the benchmark run the same code.

The routes, each declared once, all on the one service class below:

* ``POST /rank_tiles`` (the homepage call, latency-bound): the service owns this route outright, so it is
  an ASGI app mounted with ``@bentoml.asgi_app`` (:data:`ROUTES`, clicks2intent.serving.endpoints), and
  :meth:`Clicks2Intent.rank_tiles` answers it inline on the worker's event loop: 200, 400, 503 and 500
  all from that one path (docs/decisions/0004-request-path.md says why not ``@bentoml.api``);
* ``POST /predict_conversion`` and ``POST /intent``: ``@bentoml.api`` methods (BentoML's thread pool:
  they embed a session, milliseconds of CPU);
* BentoML's own: ``/readyz``, ``/livez``, ``/healthz``, ``/docs.json`` (corrected by
  clicks2intent.serving.openapi), ``/metrics`` when on.

Settings come from the environment (``bentoml serve`` starts the workers itself), read once into
:class:`clicks2intent.common.settings.Settings`; the README's settings table lists every one. The
``on_deployment`` hook checks them before any worker starts: a missing registry or online store ends
``bentoml serve`` with one line, never a restart loop, and nothing is ever written into the bento.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Imports and loads allocate ~10^6 objects that live as long as the process: collections walking them
# while they are built cost start-up CPU (docs/decisions/0002-startup.md). Back on at this module's end.
_GC_ENABLED = gc.isenabled()
gc.disable()

import bentoml  # noqa: E402
from bentoml.exceptions import ServiceUnavailable  # noqa: E402
from bentoml.models import BentoModel  # noqa: E402

try:  # installed package (the project's venv) or the plugin sources a bento carries
    import clicks2intent  # noqa: F401, E402
except ImportError:  # inside a built bento: src/plugin/clicks2intent
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))

from clicks2intent.features.store import skip_feast_typechecks  # noqa: E402

# Before anything imports Feast (the deployment check, each worker's store): its typeguard decorators
# recompiled its classes at every import, most of a worker's start-up (clicks2intent.features.store).
skip_feast_typechecks()

from clicks2intent.common.settings import Settings, set_default, set_variable  # noqa: E402
from clicks2intent.errors import Clicks2IntentError  # noqa: E402
from clicks2intent.names import settings as ENV  # noqa: E402
from clicks2intent.names.features import CONVERSION_V1, TILE_RANKER_V1  # noqa: E402
from clicks2intent.serving import schemas  # noqa: E402
from clicks2intent.serving.balance import ConnectionBalance  # noqa: E402
from clicks2intent.serving.deployment import (  # noqa: E402
    check_deployment,
    serving_settings,
    world_of_artifacts,
)
from clicks2intent.serving.edge import RequestEdge, install_header_deadline  # noqa: E402
from clicks2intent.serving.endpoints import JSONEndpoint, routes_app  # noqa: E402
from clicks2intent.serving.engine import (  # noqa: E402
    FeatureStoreUnavailable,
    ServedModel,
    ServingEngine,
    ServingSettings,
)
from clicks2intent.serving.lifeline import exit_when_orphaned  # noqa: E402
from clicks2intent.serving.openapi import OpenAPIDocument, example_responses, json_route  # noqa: E402

# libuv (uvloop) accepts every pending connection in one go, so with keep-alive clients one worker
# took all the connections and the other sat idle (docs/decisions/0013-serving-path.md). One accept per
# wake-up spreads them. Read by libuv when the worker starts listening, i.e. after this import.
set_default(ENV.UV_TCP_SINGLE_ACCEPT, "1")
# A request whose headers trickle in for ever held a connection (slowloris): uvicorn gets a header
# deadline before BentoML's worker builds its server (clicks2intent.serving.edge).
install_header_deadline()

try:
    SETTINGS = Settings.load()
except Clicks2IntentError as err:  # a bad value: one line, not a traceback per worker
    raise SystemExit(f"clicks2intent service: {err}") from None
FEATURE_REPO = Path(__file__).resolve().parents[1] / "feature_repo"  # the repo config this bento carries
ARTIFACTS_MODEL = BentoModel(SETTINGS.artifacts_model)  # encoder/, intent/, features/ (prototypes, world)
try:  # the bank's world: its tile enum, bounds and examples are the request schemas' own
    WORLD, LABELS = world_of_artifacts(SETTINGS, ARTIFACTS_MODEL)
except Clicks2IntentError as err:
    raise SystemExit(f"clicks2intent service: {err}") from None
# The models trained on that world's features (their names carry its Feast prefix), unless named.
TILE_MODEL = BentoModel(SETTINGS.tile_model or f"{WORLD.feast_name(TILE_RANKER_V1)}:latest")
CONVERSION_MODEL = BentoModel(SETTINGS.conversion_model or f"{WORLD.feast_name(CONVERSION_V1)}:latest")
API = schemas.service_schemas(WORLD)
EXAMPLE_INPUT = API.examples.rank_tiles
RANK_TILES_DOC = (
    "Order the homepage tiles for a customer (fresher web intent first: session > visitor > customer)."
)


def _answered_by(method: str) -> Any:
    """The running service instance's ``method`` (BentoML's public handle on it from a mounted app)."""

    def call(request: Any) -> Any:
        return getattr(bentoml.get_current_service(), method)(request)

    return call


# The routes Clicks2Intent owns outright (mounted below with @bentoml.asgi_app): path → its request
# model, the service method that answers it, the store failure that makes a 503.
ROUTES = {
    "/rank_tiles": JSONEndpoint(
        API.rank_tiles,
        schemas.RankTilesResponse,
        _answered_by("rank_tiles"),
        description=RANK_TILES_DOC,
        unavailable=(FeatureStoreUnavailable,),
        headers=[(b"server", b"BentoML Service/clicks2intent")],
    )
}


@bentoml.service(
    name="clicks2intent",
    # A request is CPU-bound Python: worker processes, not threads, use the cores.
    workers=SETTINGS.workers,
    # The endpoints are sync: a Feast read blocks (a remote Redis for milliseconds), so BentoML runs them
    # in this many threads per worker while the event loop keeps accepting and answering health checks.
    threads=4,
    traffic={"timeout": 10},
    # Per-request access logs cost about as much as the model call at these latencies (opt in).
    logging={"access": {"enabled": SETTINGS.access_log}},
    # BentoML's per-request Prometheus middleware (multiprocess mode) was a noticeable share of a request's
    # CPU (docs/decisions/0013-serving-path.md); request rate/latency usually come from the ingress or mesh. C2I_METRICS=1 opts in.
    metrics={"enabled": SETTINGS.metrics},
    # OpenTelemetry's ASGI middleware builds spans for every request, receive and send even when no
    # exporter is configured (BentoML's default): most of BentoML's own CPU per request (docs/decisions/0013-serving-path.md).
    # C2I_TRACING=1 (with a tracing exporter in the BentoML config) turns it back on.
    tracing={} if SETTINGS.tracing else {"excluded_urls": [".*"]},
)
@bentoml.asgi_app(routes_app(ROUTES), name="clicks2intent_routes")  # POST /rank_tiles → rank_tiles below
class Clicks2Intent:
    tile_model_ref = TILE_MODEL
    conversion_model_ref = CONVERSION_MODEL
    artifacts_model_ref = ARTIFACTS_MODEL

    @bentoml.on_deployment
    def check_settings() -> None:
        """Once per ``bentoml serve``, before any worker: a wrong or missing setting is one line and exit."""
        try:
            services = [m.resolve().info.metadata["feature_service"] for m in (TILE_MODEL, CONVERSION_MODEL)]
            with _collector_paused():  # the check imports Feast
                check_deployment(_serving_settings(), services)
        except Clicks2IntentError as err:
            raise SystemExit(f"clicks2intent service: {err}") from None

    def __init__(self) -> None:
        with _collector_paused():  # torch, Feast and the models load here
            import torch

            # One short session per call: intra-op threads only contend with the other workers.
            torch.set_num_threads(1)
            settings = _serving_settings()
            # Feast's in-flight on-demand view finds the encoder and classifier through this variable.
            set_variable(ENV.ARTIFACTS, str(settings.artifacts))
            self.engine = ServingEngine.load(
                ServedModel.from_store(self.tile_model_ref),
                ServedModel.from_store(self.conversion_model_ref),
                settings,
            )
            # Everything loaded so far (torch, Feast, models) lives as long as the worker. Left to the
            # collector, each full collection walks all of it: a pause that lands on some request's
            # latency (docs/decisions/0013-serving-path.md). Frozen objects are never scanned.
            gc.collect()
            gc.freeze()
        if bentoml.server_context.worker_index is not None:  # a worker of `bentoml serve`, not a test
            exit_when_orphaned()  # its supervisor SIGKILLed: nobody else would stop it (serving/lifeline.py)

    def _run(self, fn: Any, request: Any) -> Any:
        try:
            return fn(request)
        except FeatureStoreUnavailable as err:
            raise ServiceUnavailable(str(err)) from err

    # POST /rank_tiles (ROUTES, mounted above), on the worker's event loop: a Redis read is awaited (the
    # loop serves other requests meanwhile; client time-outs and the engine's outage gate bound it), a
    # SQLite read is a local file's, the in-flight session's embedding a few milliseconds of CPU.
    async def rank_tiles(self, request: schemas.RankTilesRequest) -> schemas.RankTilesResponse:
        """Order the homepage tiles for a customer (fresher web intent first: session > visitor > customer)."""
        return await self.engine.rank_tiles_async(request)

    # Sync on purpose: BentoML runs sync endpoints in its thread pool (they embed a session: ms of CPU).
    @bentoml.api(input_spec=API.conversion, output_spec=schemas.ConversionResponse)
    def predict_conversion(self, **request: Any) -> schemas.ConversionResponse:
        """Probability that the visitor applies for each product (or none)."""
        return self._run(self.engine.predict_conversion, API.conversion.model_construct(**request))

    @bentoml.api(input_spec=API.intent, output_spec=schemas.IntentResponse)
    def intent(self, **request: Any) -> schemas.IntentResponse:
        """Embedding, distilled intent label, confidence and top-3 labels of one in-flight session."""
        return self._run(self.engine.intent, API.intent.model_construct(**request))


# Non-JSON bodies (multipart without a boundary was a 500) are a 400; 400 ``detail`` is a string, as the
# OpenAPI document says (clicks2intent.serving.edge).
Clicks2Intent.add_asgi_middleware(RequestEdge)
# Keep-alive connections spread over the workers: one holding more than its share closes one
# (clicks2intent.serving.balance; a burst of connections could all land on one worker).
Clicks2Intent.add_asgi_middleware(
    ConnectionBalance, workers=SETTINGS.workers, worker_index=lambda: bentoml.server_context.worker_index
)
# /docs.json says what this service does: the mounted routes, /metrics only when on, the 408 and 503,
# required bodies, real answer examples.
Clicks2Intent.add_asgi_middleware(
    OpenAPIDocument,
    metrics=SETTINGS.metrics,
    examples=example_responses(WORLD, *LABELS),
    routes={
        path: json_route(path.strip("/"), e.request_model, e.response_model, e.description)
        for path, e in ROUTES.items()
    },
)
if _GC_ENABLED:  # paused at the top of this module
    gc.enable()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The garbage collector off while start-up builds long-lived objects, then as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _serving_settings() -> ServingSettings:
    """``C2I_ARTIFACTS`` when set, else the carried ``clicks2intent_artifacts`` model (resolved only then).

    Read when called (each worker, the deployment check), not at import: the environment decides."""
    settings = Settings.load()
    carried = None if settings.artifacts else Path(ARTIFACTS_MODEL.resolve().path)
    return serving_settings(settings, FEATURE_REPO, carried)
