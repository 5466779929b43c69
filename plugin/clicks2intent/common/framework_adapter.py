"""The one module that names Feast's and BentoML's private (underscore) APIs.

Everything else in ``plugin/``, ``bento/`` and ``feature_repo/`` uses their public APIs only:
Feast's extension points (an ``OnlineStore`` or compute-engine class named by class path in
``feature_store.yaml``, ``ComputeEngine.materialize``, ``OnlineStore.online_read``) and BentoML's
(``@bentoml.service``, ``@bentoml.api``, ``@bentoml.asgi_app``, ``bentoml.get_current_service``).
``tests/test_private_names.py`` fails on an underscore name of either library used anywhere else, and
the ``make test-newest`` run puts this module in front of the newest releases, so a rename upstream
breaks one function here, loudly, instead of serving or materialisation silently.

What is left here has no public equivalent in the pinned releases:

* BentoML's logger of request exceptions (a logger name: where the request-log filter goes);
* a model store at an explicit directory (training jobs write into ``artifacts/bentoml``);
* four steps of Feast's Ray offline store that :class:`clicks2intent.features.engines.RayOfflineStore`
  reuses for the two reads Feast 0.67's own fails;
* a deadline for a request's headers in uvicorn's HTTP protocol (:func:`install_header_deadline`):
  BentoML's workers build ``uvicorn.Config`` themselves and uvicorn has no header time-out, so a
  connection that never finishes its headers was held for ever (slowloris).

Feast and BentoML are imported inside the functions: the serving processes import this module before
they may import either.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

# BentoML's ``log_exception`` logs through this logger (bentoml._internal.server.http_app); the
# service's client-error filter is installed on it (clicks2intent.serving.edge).
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"


def bentoml_model_store(home: str | Path) -> dict[str, Any]:
    """``bentoml.models.create/get(..., **this)`` against the model store under ``home``/models."""
    from bentoml._internal.models.model import ModelStore

    base = Path(home) / "models"
    base.mkdir(parents=True, exist_ok=True)
    return {"_model_store": ModelStore(str(base))}


# --- Feast's Ray offline store (feast.infra.offline_stores.contrib.ray_offline_store.ray) --------------
def ray_init(store: Any, config: Any) -> None:
    """Start or join Ray as the store would before a read."""
    store._init_ray(config)


def ray_source_path(store: Any, data_source: Any, config: Any) -> str:
    """The path the store reads ``data_source`` from (repo-relative paths resolved)."""
    return str(store._get_source_path(data_source, config))


def ray_filter_dataset(
    store_class: Any,
    data_source: Any,
    join_keys: list[str],
    features: list[str],
    timestamp_field: str,
    created_timestamp_column: str | None,
    start: Any,
    end: Any,
    dataset: Any,
) -> Any:
    """The store's window filter over an already loaded Ray dataset (its pandas path: NaT never in range)."""
    return store_class._load_and_filter_dataset_ray(
        None, data_source, join_keys, features, timestamp_field, created_timestamp_column, start, end,
        pre_loaded_ds=dataset,
    )  # fmt: skip


def ray_latest_rows(
    store_class: Any, dataset: Any, join_keys: list[str], timestamp_field: str, created: str | None
) -> Any:
    """The store's latest-row-per-entity step over a filtered dataset."""
    return store_class._pull_latest_processing_ray(dataset, join_keys, timestamp_field, created, None)


def install_header_deadline(timeout_s: float, answer: bytes, linger_s: float) -> type[asyncio.Protocol]:
    """Make uvicorn's default HTTP protocol (``http="auto"``: what BentoML's workers run) close a connection
    whose request headers are not complete ``timeout_s`` after its first byte (or after the connection
    opened): with ``answer`` (a whole HTTP response, e.g. a 408) when part of a request came, silently
    when nothing did (a pre-opened connection, like an idle keep-alive one). After ``answer`` the close
    lingers: the write side is shut and what the client still sends is read and dropped for up to
    ``linger_s`` (or until it closes), so a header line crossing the close does not make the kernel answer
    it with a reset that throws away the unread 408. Call it before the worker builds its
    ``uvicorn.Config``: importing the service is early enough. Returns the protocol class.

    uvicorn names its protocols in ``uvicorn.config.HTTP_PROTOCOLS``; the subclass reads two attributes of
    its protocols (``cycle``, the request being answered, and its ``response_complete``) that hold in
    both the httptools and the h11 implementation."""
    import uvicorn.config
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol
    log = logging.getLogger("clicks2intent.serving.edge")

    class HeaderDeadlineProtocol(base):  # type: ignore[misc, valid-type]
        header_timeout_s = timeout_s

        def connection_made(self, transport: Any) -> None:
            self.c2i_timer: asyncio.TimerHandle | None = None
            self.c2i_partial = False  # part of a request's headers came
            self.c2i_lingering = False  # answered and half-closed: what comes is dropped
            super().connection_made(transport)
            self.c2i_arm()

        def data_received(self, data: bytes) -> None:
            if self.c2i_lingering:
                return
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:  # a request's headers are complete
                self.c2i_disarm()
            elif self.cycle is None or self.cycle.response_complete:  # between requests: headers pending
                self.c2i_partial = True
                if self.c2i_timer is None:
                    self.c2i_arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self.c2i_disarm()
            super().connection_lost(exc)

        def c2i_arm(self) -> None:
            self.c2i_timer = asyncio.get_running_loop().call_later(self.header_timeout_s, self.c2i_expire)

        def c2i_disarm(self) -> None:
            if self.c2i_timer is not None:
                self.c2i_timer.cancel()
                self.c2i_timer = None
            self.c2i_partial = False

        def c2i_expire(self) -> None:
            self.c2i_timer = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return
            if not self.c2i_partial:
                self.transport.close()
                return
            log.warning("closed a connection whose request headers did not arrive within %.0f s (408)",
                        self.header_timeout_s)  # fmt: skip
            self.transport.write(answer)
            if not self.transport.can_write_eof():
                self.transport.close()
                return
            self.transport.write_eof()  # FIN after the answer; the client's EOF then closes (eof_received)
            self.c2i_lingering = True
            self.c2i_timer = asyncio.get_running_loop().call_later(linger_s, self.transport.close)

    uvicorn.config.HTTP_PROTOCOLS["auto"] = HeaderDeadlineProtocol  # type: ignore[assignment]
    return HeaderDeadlineProtocol
