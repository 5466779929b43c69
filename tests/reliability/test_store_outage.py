"""Store outages on the production config: Redis paused and killed under load → 503 within 1 s and
automatic recovery; the PostgreSQL registry down at start-up → one clear error.

Before the Redis client options (clicks2intent.features.store.REDIS_CLIENT_OPTIONS): Redis frozen made
requests hang past 15 s, never a 503; Redis killed cost 8-9 s per request before the 503.
The Redis here is this test's own redis-server on another loopback port (SIGSTOP/SIGKILL are safe).
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicks2intent.common.net import LOOPBACK, free_port
from clicks2intent.errors import ServiceError
from clicks2intent.features import store as FS
from clicks2intent.names import settings as ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTAGE_BOUND_S = 1.0


@pytest.fixture
def redis_yaml(pipeline: Path, own_redis: Any, tmp_path: Path, embedding_dim: int) -> Iterator[Path]:
    """The production config on the own Redis (file registry: this test is about the online store),
    applied and materialized."""
    from feast import FeatureStore

    from clicks2intent.data.world import load_world
    from clicks2intent.features.definitions import build, file_sources
    from clicks2intent.names.paths import ArtifactLayout

    dim = embedding_dim
    cfg = FS.production_config(project="c2i_outage", redis=own_redis.address)
    cfg["registry"] = str(tmp_path / "registry.db")
    path = FS.write_config(tmp_path / "feature_store.outage.yaml", cfg)
    store = FeatureStore(repo_path=str(pipeline / "feature_repo"), fs_yaml_file=path)
    world = load_world(ArtifactLayout(pipeline).features_world)  # the one the features were built with
    store.apply(
        build(file_sources(str(pipeline / "features")), dim, world=world, artifacts_dir=str(pipeline)).all()
    )
    store.materialize(pd.Timestamp("2000-01-01", tz="UTC"), pd.Timestamp.now(tz="UTC"))
    yield path


@pytest.fixture
def client(pipeline: Path, redis_yaml: Path) -> Iterator[Any]:
    """The BentoML service's ASGI app reading features through ``redis_yaml``."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore
    from starlette.testclient import TestClient

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV.ARTIFACTS, str(pipeline))
        mp.setenv(ENV.FEATURE_REPO, str(pipeline / "feature_repo"))
        mp.setenv(ENV.FEAST_CONFIG, str(redis_yaml))
        mp.setenv(ENV.METRICS, "0")
        mp.setenv("BENTOML_DO_NOT_TRACK", "True")
        mp.syspath_prepend(str(REPO_ROOT))
        with BentoMLContainer.model_store.patch(ModelStore(str(pipeline / "bentoml" / "models"))):
            sys.modules.pop("bento.service", None)
            service = importlib.import_module("bento.service").Clicks2Intent
            with TestClient(service.to_asgi()) as c:
                yield c
            sys.modules.pop("bento.service", None)


class Load:
    """Threads posting /rank_tiles back to back; each answer's (time, status, seconds) is kept."""

    def __init__(self, client: Any, customer: str, n_threads: int = 4) -> None:
        self.client, self.customer = client, customer
        self.results: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(n_threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            code = self.client.post("/rank_tiles", json={"customer_id": self.customer}).status_code
            self.results.append((t0, code, time.monotonic() - t0))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def between(self, start: float, end: float) -> list[tuple[float, int, float]]:
        return [r for r in self.results if start <= r[0] < end]


def _phase(load: Load, seconds: float) -> tuple[float, float]:
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


def _first_ok_after(load: Load, start: float, timeout: float = 5.0) -> float:
    deadline = start + timeout
    while time.monotonic() < deadline:
        ok = [r for r in load.between(start, deadline) if r[1] == 200]
        if ok:
            return ok[0][0] - start
        time.sleep(0.05)
    raise AssertionError(f"no 200 within {timeout}s after recovery: {load.between(start, deadline)[-5:]}")


@pytest.mark.slow
def test_redis_paused_and_killed_under_load_is_a_fast_503_then_recovers(
    client: Any, own_redis: Any, ids: dict[str, str]
) -> None:
    r = client.post("/rank_tiles", json={"customer_id": ids["customer"]})
    assert r.status_code == 200 and r.json()["intent"]["source"] == "customer", r.text
    with Load(client, ids["customer"]) as load:
        healthy = _phase(load, 2.0)
        own_redis.pause()
        paused = _phase(load, 2.5)
        own_redis.resume()
        recovered_after_pause = _first_ok_after(load, time.monotonic())
        own_redis.kill()
        killed = _phase(load, 2.0)
        own_redis.start()  # same port, same snapshot
        restart = time.monotonic()
        recovered_after_kill = _first_ok_after(load, restart)
        time.sleep(0.5)
    # requests started in the last second before SIGSTOP may be caught by it (a 503 is right for them)
    assert {c for _, c, _ in load.between(healthy[0], healthy[1] - OUTAGE_BOUND_S)} == {200}
    for name, (start, end) in (("paused", paused), ("killed", killed)):
        # requests started once the outage had begun (the first in-flight one may still succeed)
        during = [x for x in load.between(start + 0.1, end - OUTAGE_BOUND_S)]
        assert during, name
        assert {c for _, c, _ in during} == {503}, (name, during[:5])
        slowest = max(s for _, _, s in during)
        print(f"{name}: {len(during)} requests, all 503, slowest {slowest:.3f}s")
        assert slowest < OUTAGE_BOUND_S, (name, slowest)
    print(f"recovered {recovered_after_pause:.2f}s after SIGCONT, {recovered_after_kill:.2f}s after restart")
    r = client.post("/rank_tiles", json={"customer_id": ids["customer"]})
    assert r.status_code == 200 and r.json()["intent"]["source"] == "customer"  # same data back


def test_registry_down_at_start_up_is_one_clear_error(pipeline: Path, tmp_path: Path) -> None:
    dead = f"postgresql+psycopg://postgres@{LOOPBACK}:{free_port()}/test"
    yaml = FS.write_config(
        tmp_path / "dead.yaml", FS.production_config(project="c2i_dead", registry_url=dead)
    )
    t0 = time.monotonic()
    with pytest.raises(ServiceError, match="registry") as err:
        FS.ping_registry(FS.open_store(pipeline / "feature_repo", yaml))
    assert time.monotonic() - t0 < 30 and "\n" not in str(err.value)
    assert "Traceback" not in str(err.value)


def test_registry_down_through_the_cli(
    pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clicks2intent.cli import main

    dead = f"postgresql+psycopg://postgres@{LOOPBACK}:{free_port()}/test"
    yaml = FS.write_config(
        tmp_path / "dead.yaml", FS.production_config(project="c2i_dead", registry_url=dead)
    )
    # --features: the world declaration (tiles, Feast prefix) is read before the registry is reached.
    code = main(["features", "online", "--repo", str(pipeline / "feature_repo"), "--config", str(yaml),
                 "--features", str(pipeline / "features"), "--customer-id", "c1"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "registry" in err, err
