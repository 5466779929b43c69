"""Start and stop ``bentoml serve`` for this project, and call each endpoint once (the demo requests).

The service reads its settings from environment variables (:mod:`clicks2intent.names.settings`),
because ``bentoml serve`` starts the worker processes itself: the environment is the one channel that
reaches them, in a container as well as here. :func:`service_env` fills them in; ``c2i serve`` and
``c2i demo-requests`` (:mod:`clicks2intent.cli.serve`), the service tests and the load benchmark all
start the service through this module.

Production online store (Redis) and registry (PostgreSQL): the service reads features through whatever
feature_store YAML it is given, so a platform team changes configuration, not code:

    c2i serve --feast-config feature_store.production.yaml          # the repo's Redis + SQL registry YAML
    C2I_FEAST_CONFIG=/etc/c2i/feature_store.yaml bentoml serve clicks2intent:latest   # in a container

The YAML is Feast's own (``online_store: {type: redis, connection_string: host:6379,...}``);
``clicks2intent.features.store.production_config`` + ``write_config`` produce one for another Redis,
registry URL or project. Apply and materialize with the same YAML first (``feast -f … apply``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clicks2intent.common.net import LOOPBACK, free_port
from clicks2intent.common.settings import child_env
from clicks2intent.errors import ServiceError
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names import settings as ENV
from clicks2intent.names.paths import DEFAULT_ROOT, ArtifactLayout
from clicks2intent.serving.lifeline import parent_death_signal

if TYPE_CHECKING:  # pandas, httpx and pydantic are imported where used: `c2i serve` starts without them
    from clicks2intent.serving.schemas import Examples

logger = logging.getLogger(__name__)

SERVICE_IMPORT = "bento.service:Clicks2Intent"
DEFAULT_PORT = 3000
# Seconds an idle keep-alive connection stays open (uvicorn's, through `bentoml serve`); said explicitly
# so the bound is ours, not a default (a bento served directly: `bentoml serve ... --timeout-keep-alive`).
KEEP_ALIVE_S = 5
DemoCall = tuple[str, dict[str, Any], int, Any]  # (path, request body, status code, answer)


def project_root() -> Path:
    """The checkout that holds ``bento/service.py`` (the package lives in ``<root>/plugin/clicks2intent``)."""
    return Path(__file__).resolve().parents[3]


DEFAULT_REPO = Path("feature_repo")  # relative to the working directory, like every other c2i default


def service_env(
    artifacts: str | Path = DEFAULT_ROOT,
    feature_repo: str | Path | None = None,
    feast_config: str | None = None,
    workers: int | None = None,
    bentoml_home: str | Path | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a service process: model store, artifacts, Feast repo (absolute paths).

    The model store is ``bentoml_home``, else an explicit ``$BENTOML_HOME``, else ``<artifacts>/bentoml``
    (where the demo's training saved the models)."""
    env = child_env(base)
    layout = ArtifactLayout(Path(artifacts).resolve())
    if bentoml_home is not None:
        env[ENV.BENTOML_HOME] = str(Path(bentoml_home).resolve())
    env.setdefault(ENV.BENTOML_HOME, str(layout.bentoml_home))
    env[ENV.BENTOML_DO_NOT_TRACK] = "True"
    env[ENV.ARTIFACTS] = str(layout.root)
    # The working directory's repo by default, as `c2i features online` and `feast` itself read it.
    env[ENV.FEATURE_REPO] = str(Path(feature_repo or DEFAULT_REPO).resolve())
    if feast_config is not None:
        env[ENV.FEAST_CONFIG] = feast_config
    if workers is not None:
        env[ENV.WORKERS] = str(workers)
    # The plugin must be importable by the workers even when the package is not installed.
    plugin = str(project_root() / "plugin")
    env["PYTHONPATH"] = plugin + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def serve_command_line(target: str, host: str, port: int, keep_alive_s: int = KEEP_ALIVE_S) -> list[str]:
    """``bentoml serve`` of ``target`` (this venv's ``bentoml``, else ``python -m bentoml``)."""
    bentoml = Path(sys.executable).with_name("bentoml")
    exe = [str(bentoml)] if bentoml.exists() else [sys.executable, "-m", "bentoml"]
    return [*exe, "serve", target, "--host", host, "--port", str(port), "--working-dir", str(project_root()),
            "--timeout-keep-alive", str(keep_alive_s)]  # fmt: skip


def serve_foreground(
    target: str,
    host: str,
    port: int,
    artifacts: str | Path = DEFAULT_ROOT,
    feature_repo: str | Path | None = None,
    feast_config: str | None = None,
    workers: int | None = None,
) -> int:
    """Run ``bentoml serve`` with the service's environment until it exits, Ctrl-C or SIGTERM; its status.

    ``bentoml serve`` runs in its own process group, and SIGTERM / SIGINT / SIGHUP to this process stop
    that whole group (server and workers; SIGKILL after a grace period). Before, a SIGTERM to
    ``c2i serve`` (what a supervisor or ``docker stop`` sends) left the BentoML server and its workers
    running, still holding the port. A SIGKILL cannot be caught: then the kernel sends ``bentoml serve``
    SIGTERM (:func:`~clicks2intent.serving.lifeline.parent_death_signal`), and a worker whose
    supervisor is gone exits by itself (:func:`~clicks2intent.serving.lifeline.exit_when_orphaned`)."""
    env = service_env(artifacts, feature_repo, feast_config, workers)
    proc = subprocess.Popen(
        serve_command_line(target, host, port),
        env=env,
        cwd=str(project_root()),
        start_new_session=True,
        preexec_fn=parent_death_signal(),  # only prctl runs between fork and exec
    )
    stopping: list[int] = []

    def _stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        raise KeyboardInterrupt  # unwinds proc.wait() below

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_service(proc)


def wait_ready(url: str, process: subprocess.Popen[Any] | None = None, timeout: float = 120.0) -> None:
    """Poll ``/readyz`` until the service answers 200 (workers loaded their models and the store).

    Raises :class:`~clicks2intent.errors.ServiceError` when the process exits first or ``timeout``
    passes."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"the service exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise ServiceError(f"the service at {url} was not ready within {timeout:.0f}s")


@contextmanager
def running_service(
    artifacts: str | Path = DEFAULT_ROOT,
    port: int | None = None,
    host: str = LOOPBACK,
    target: str = SERVICE_IMPORT,
    feature_repo: str | Path | None = None,
    feast_config: str | None = None,
    workers: int | None = None,
    log_path: str | Path | None = None,
    timeout: float = 180.0,
    bentoml_home: str | Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """Start ``bentoml serve`` in a subprocess, yield ``(url, process)`` once ready, stop it after."""
    port = port or free_port(host)
    env = service_env(artifacts, feature_repo, feast_config, workers, bentoml_home) | dict(extra_env or {})
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        serve_command_line(target, host, port),
        env=env,
        cwd=str(project_root()),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it stops its workers too
        preexec_fn=parent_death_signal(),  # dies with this process, even SIGKILLed
    )
    url = f"http://{host}:{port}"
    logger.info("started %s (pid %d) on %s", target, proc.pid, url)
    try:
        try:
            wait_ready(url, proc, timeout)
        except ServiceError as err:
            if log_path is None:
                raise
            log.flush()
            tail = " | ".join(Path(log_path).read_text(errors="replace").strip().splitlines()[-8:])
            raise ServiceError(f"{err}; last lines of {log_path}: {tail}") from None
        yield url, proc
    finally:
        stop_service(proc)
        if log is not subprocess.DEVNULL:
            log.close()


def stop_service(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM the service's process group (BentoML shuts its workers down), SIGKILL if it hangs;
    workers left behind by a leader that already exited are killed too."""
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(grace)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)  # ProcessLookupError once the group is empty
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --- the demo requests -------------------------------------------------------------------------------
def demo_ids(artifacts: str | Path) -> dict[str, str]:
    """A customer with linked web intent and a visitor with web intent, from the demo's feature sources."""
    import pandas as pd

    from clicks2intent.features.store import default_customer

    layout = ArtifactLayout(artifacts)
    out: dict[str, str] = {}
    with suppress(FileNotFoundError, ValueError):  # no linked web intent yet: the example's id
        out["customer_id"] = default_customer(layout.features)
    path = layout.feature_file(N.VISITOR_WEB_INTENT)
    if path.is_file():
        vis = pd.read_parquet(
            path, columns=[C.VISITOR_ID, N.VISITOR_SESSIONS_30D, N.VISITOR_EMBEDDING_DECAYED]
        )
        vis = vis[vis[N.VISITOR_EMBEDDING_DECAYED].notna()]
        if not vis.empty:
            out["visitor_id"] = str(vis.sort_values(N.VISITOR_SESSIONS_30D)[C.VISITOR_ID].iloc[-1])
    return out


def _pick(ids: Mapping[str, str], key: str) -> dict[str, str]:
    return {key: ids[key]} if key in ids else {}


def demo_examples(artifacts: str | Path) -> Examples:
    """The request examples of the world the artifacts' features were built with."""
    from clicks2intent.features.transforms import load_artifact_world
    from clicks2intent.serving.schemas import examples

    return examples(load_artifact_world(Path(artifacts).resolve()))


def demo_requests(url: str, ex: Examples, ids: Mapping[str, str] | None = None) -> list[DemoCall]:
    """Call each endpoint once (the world's example bodies, with a real customer / visitor when given)."""
    import httpx

    ids = dict(ids or {})
    calls = [
        # The logged-in customer's stored web intent (the session path shows in /predict_conversion).
        (
            "/rank_tiles",
            {"customer_id": ex.rank_tiles["customer_id"], "k": ex.rank_tiles["k"], "explain": True}
            | _pick(ids, "customer_id"),
        ),
        ("/predict_conversion", ex.conversion | _pick(ids, "visitor_id")),
        ("/intent", ex.intent),
    ]
    out = []
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for path, body in calls:
            r = client.post(path, json=body)
            try:
                answer = r.json()
            except ValueError:
                answer = r.text
            out.append((path, body, r.status_code, answer))
    return out


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` of a service log (what to show when the service did not start)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
