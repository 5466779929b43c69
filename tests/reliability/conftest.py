"""Fixtures of the reliability suite: the serving tests' tiny real deployment, an own Redis, and the LLM
tests' fault server and session events.

The deployment is the one ``tests/serving/conftest.py`` builds (loaded by path: two ``conftest``
modules cannot import each other by name); its builder caches it under pytest's base temp, so a
session that runs both suites builds it once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clicks2intent.common.net import LOOPBACK, free_port

_SERVING_CONFTEST = Path(__file__).resolve().parents[1] / "serving" / "conftest.py"
_INTENT_CONFTEST = Path(__file__).resolve().parents[1] / "intent" / "conftest.py"


def _load(name: str, path: Path):  # noqa: ANN202 - a module
    if name in sys.modules:  # once: its dataclasses look their module up by name
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _serving_fixtures():  # noqa: ANN202 - a module
    return _load("c2i_serving_conftest", _SERVING_CONFTEST)


@pytest.fixture
def fault_server() -> Iterator[object]:
    """The LLM tests' fault-injecting OpenAI-compatible server (tests/intent/conftest.py)."""
    with _load("c2i_intent_conftest", _INTENT_CONFTEST)._running_fault_server() as server:
        yield server


@pytest.fixture
def make_session_events():  # noqa: ANN201 - the factory of tests/intent/conftest.py
    return _load("c2i_intent_conftest", _INTENT_CONFTEST).make_events


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny deployment's root (artifacts layout + feature_repo/), shared with tests/serving."""
    return _serving_fixtures().shared_pipeline_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def embedding_dim() -> int:
    """The tiny deployment's embedding size."""
    return int(_serving_fixtures().PIPELINE_EMBEDDING_DIM)


@pytest.fixture(scope="session")
def ids(pipeline: Path) -> dict[str, str]:
    return _serving_fixtures().pipeline_ids(pipeline)


@contextlib.contextmanager
def c2i_serve(pipeline: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``c2i serve`` of the tiny deployment on a free loopback port, one worker, output to ``log``:
    its URL once ready and its process; SIGTERMed at the end if still running."""
    from clicks2intent.serving.launcher import wait_ready

    port = free_port()
    env = os.environ | {"BENTOML_HOME": str(pipeline / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    c2i = Path(sys.executable).with_name("c2i")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(c2i), "serve", "--artifacts", str(pipeline), "--feature-repo", str(pipeline / "feature_repo"),
             "--port", str(port), "--workers", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_ready(url, proc, timeout=240)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


@pytest.fixture(scope="session")
def serve_c2i():  # noqa: ANN201 - the context manager above
    """:func:`c2i_serve`, for the module-scoped ``served`` fixtures of the service tests."""
    return c2i_serve


@dataclass
class OwnRedis:
    """A redis-server of this test on its own loopback port (SIGSTOP / SIGKILL it freely)."""

    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--bind", LOOPBACK, "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir), "--dbfilename", "dump.rdb"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL after saving a snapshot, so a restart comes back with the same data."""
        import redis

        redis.Redis(host=LOOPBACK, port=self.port).save()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server not installed (CI must run the outage tests)")
        pytest.skip("redis-server not installed")
    server = OwnRedis(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
