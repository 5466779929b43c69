"""clicks2intent BentoML service: tile ranking, conversion and intent over Feast online features.

Thin on purpose: models are resolved from the BentoML store as class attributes, each worker builds
one :class:`clicks2intent.serving.engine.ServingEngine` (its own Feast ``FeatureStore``), and every endpoint
hands its validated request to the engine. Request logic and fallbacks live in
``clicks2intent.serving.engine``, validation in ``clicks2intent.serving.schemas``, so tests and the
benchmark run the same code.

Settings come from the environment because ``bentoml serve`` starts the workers itself:
``C2I_ARTIFACTS`` (encoder, intent classifier, tile prototypes), ``C2I_FEATURE_REPO`` and
``C2I_FEAST_CONFIG`` (e.g. ``feature_store.production.yaml`` for Redis), ``C2I_TILE_MODEL`` /
``C2I_CONVERSION_MODEL`` (model tags), ``C2I_WORKERS``, ``C2I_ACCESS_LOG`` / ``C2I_METRICS`` /
``C2I_TRACING`` (0/1),
``C2I_FEAST_ODFV=1`` (run the tile_affinity on-demand view inside Feast instead of in-process).
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import ServiceUnavailable
from bentoml.models import BentoModel
from pydantic import BaseModel
from starlette.responses import Response

try:  # installed package (the project's venv) or the plugin sources a bento carries
    import clicks2intent  # noqa: F401
except ImportError:  # inside a built bento: src/plugin/clicks2intent
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))

from clicks2intent.names import features as N  # noqa: E402
from clicks2intent.names import settings as ENV  # noqa: E402
from clicks2intent.serving import schemas  # noqa: E402
from clicks2intent.serving.edge import RequestEdge  # noqa: E402
from clicks2intent.serving.engine import (  # noqa: E402
    FeatureStoreUnavailable,
    ServedModel,
    ServingEngine,
    ServingSettings,
)

# libuv (uvloop) accepts every pending connection in one go, so with keep-alive clients one worker
# took all the connections and the other sat idle (measured: 2 workers served like 1). One accept per
# wake-up spreads them. Read by libuv when the worker starts listening, i.e. after this import.
os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")

TILE_MODEL = os.environ.get(ENV.TILE_MODEL, f"{N.TILE_RANKER_V1}:latest")
CONVERSION_MODEL = os.environ.get(ENV.CONVERSION_MODEL, f"{N.CONVERSION_V1}:latest")
FEATURE_REPO = Path(__file__).resolve().parents[1] / "feature_repo"  # the repo config this bento carries

EXAMPLE_INPUT = schemas.EXAMPLE_RANK_TILES


def one_body_json(model: type[BaseModel]) -> type[bentoml.IODescriptor]:
    """Output spec for ``model``: the JSON as ONE body with a Content-Length.

    BentoML's default sends a pydantic output as a chunked stream (headers, the JSON chunk, an empty
    terminator: three socket writes per response); on 2 shared cores those writes were the largest
    cost outside our own code in the profile. Schema and OpenAPI docs stay those of ``model``."""

    class OneBody(bentoml.IODescriptor, model):  # type: ignore[misc, valid-type]
        @classmethod
        async def to_http_response(cls, obj: Any, serde: Any) -> Response:
            return Response(obj.model_dump_json(), media_type="application/json")

    OneBody.__name__ = OneBody.__qualname__ = model.__name__
    return OneBody


@bentoml.service(
    name="clicks2intent",
    # A request is ~1-2 ms of CPU-bound Python: worker processes, not threads, use the cores.
    workers=int(os.environ.get(ENV.WORKERS, "2")),
    traffic={"timeout": 10},
    # Per-request access logs cost about as much as the model call at these latencies (opt in).
    logging={"access": {"enabled": os.environ.get(ENV.ACCESS_LOG, "0") == "1"}},
    # BentoML's per-request Prometheus middleware (multiprocess mode) was ~12% of the CPU of a request
    # in the profile; request rate/latency usually come from the ingress or mesh. C2I_METRICS=1 opts in.
    metrics={"enabled": os.environ.get(ENV.METRICS, "0") == "1"},
    # OpenTelemetry's ASGI middleware builds spans for every request, receive and send even when no
    # exporter is configured (BentoML's default): that was ~2/3 of BentoML's own CPU per request here.
    # C2I_TRACING=1 (with a tracing exporter in the BentoML config) turns it back on.
    tracing={} if os.environ.get(ENV.TRACING, "0") == "1" else {"excluded_urls": [".*"]},
)
class Clicks2Intent:
    tile_model_ref = BentoModel(TILE_MODEL)
    conversion_model_ref = BentoModel(CONVERSION_MODEL)

    def __init__(self) -> None:
        import torch

        # One short session per call: intra-op threads only contend with the other workers.
        torch.set_num_threads(1)
        settings = ServingSettings.from_env(default_repo=FEATURE_REPO)
        self.engine = ServingEngine.load(
            ServedModel.from_store(self.tile_model_ref),
            ServedModel.from_store(self.conversion_model_ref),
            settings,
        )
        # Everything loaded so far (torch, Feast, models: ~400k objects) lives as long as the worker.
        # Left to the collector, each full collection walks all of it: a 100-400 ms pause (measured)
        # that lands on some request's latency. Frozen objects are never scanned.
        gc.collect()
        gc.freeze()

    def _run(self, fn: Any, request: Any) -> Any:
        try:
            return fn(request)
        except FeatureStoreUnavailable as err:
            raise ServiceUnavailable(str(err)) from err

    # async + no await: the work is CPU-bound and short, so running it on the event loop skips a
    # thread hop per request; concurrency comes from the worker processes.
    @bentoml.api(input_spec=schemas.RankTilesRequest, output_spec=one_body_json(schemas.RankTilesResponse))
    async def rank_tiles(self, **request: Any) -> schemas.RankTilesResponse:
        """Order the homepage tiles for a customer (fresher web intent first: session > visitor > customer)."""
        return self._run(self.engine.rank_tiles, schemas.RankTilesRequest.model_construct(**request))

    @bentoml.api(input_spec=schemas.ConversionRequest, output_spec=one_body_json(schemas.ConversionResponse))
    async def predict_conversion(self, **request: Any) -> schemas.ConversionResponse:
        """Probability that the visitor applies for each product (or none)."""
        return self._run(self.engine.predict_conversion, schemas.ConversionRequest.model_construct(**request))

    @bentoml.api(input_spec=schemas.IntentRequest, output_spec=one_body_json(schemas.IntentResponse))
    async def intent(self, **request: Any) -> schemas.IntentResponse:
        """Embedding, distilled intent label, confidence and top-3 labels of one in-flight session."""
        return self._run(self.engine.intent, schemas.IntentRequest.model_construct(**request))


# Non-JSON bodies (multipart without a boundary was a 500) are a 400; 400 ``detail`` is a string, as the
# OpenAPI document says (clicks2intent.serving.edge).
Clicks2Intent.add_asgi_middleware(RequestEdge)
