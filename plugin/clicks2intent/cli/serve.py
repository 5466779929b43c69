"""``c2i serve`` (run the BentoML service locally) and ``c2i demo-requests`` (call each endpoint once).

The service reads its settings from environment variables (:data:`ENV_*`), because ``bentoml serve``
starts the worker processes itself: the environment is the one channel that reaches them, in a
container as well as here. ``c2i serve`` only fills them in from its options and runs ``bentoml serve``.

Production online store (Redis) and registry (PostgreSQL): the service reads features through whatever
feature_store YAML it is given, so a platform team changes configuration, not code:

    c2i serve --feast-config feature_store.production.yaml          # the repo's Redis + SQL registry YAML
    C2I_FEAST_CONFIG=/etc/c2i/feature_store.yaml bentoml serve clicks2intent:latest   # in a container

The YAML is Feast's own (``online_store: {type: redis, connection_string: host:6379,...}``);
``clicks2intent.features.store.production_config`` + ``write_config`` produce one for another Redis,
registry URL or project. Apply and materialize with the same YAML first (``feast -f … apply``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from clicks2intent.names import columns as C

# Settings the service reads (bento/service.py → clicks2intent.serving.engine.ServingSettings).
ENV_ARTIFACTS = "C2I_ARTIFACTS"
ENV_FEATURE_REPO = "C2I_FEATURE_REPO"
ENV_FEAST_CONFIG = "C2I_FEAST_CONFIG"
ENV_WORKERS = "C2I_WORKERS"
SERVICE_IMPORT = "bento.service:Clicks2Intent"
DEFAULT_PORT = 3000


def project_root() -> Path:
    """The checkout that holds ``bento/service.py`` (the package lives in ``<root>/plugin/clicks2intent``)."""
    return Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def service_env(
    artifacts: str | Path = "artifacts",
    feature_repo: str | Path | None = None,
    feast_config: str | None = None,
    workers: int | None = None,
    bentoml_home: str | Path | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a service process: model store, artifacts, Feast repo (absolute paths).

    The model store is ``bentoml_home``, else an explicit ``$BENTOML_HOME``, else ``<artifacts>/bentoml``
    (where the demo's training saved the models)."""
    env = dict(os.environ if base is None else base)
    artifacts = Path(artifacts).resolve()
    if bentoml_home is not None:
        env["BENTOML_HOME"] = str(Path(bentoml_home).resolve())
    env.setdefault("BENTOML_HOME", str(artifacts / "bentoml"))
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env[ENV_ARTIFACTS] = str(artifacts)
    # The project's repo by default: a built bento carries only the repo's config, not its data/.
    env[ENV_FEATURE_REPO] = str(Path(feature_repo or project_root() / "feature_repo").resolve())
    if feast_config is not None:
        env[ENV_FEAST_CONFIG] = feast_config
    if workers is not None:
        env[ENV_WORKERS] = str(workers)
    # The plugin must be importable by the workers even when the package is not installed.
    plugin = str(project_root() / "plugin")
    env["PYTHONPATH"] = plugin + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def serve_command_line(target: str, host: str, port: int) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    exe = [str(bentoml)] if bentoml.exists() else [sys.executable, "-m", "bentoml"]
    return [*exe, "serve", target, "--host", host, "--port", str(port), "--working-dir", str(project_root())]


def wait_ready(url: str, process: subprocess.Popen[Any] | None = None, timeout: float = 120.0) -> None:
    """Poll ``/readyz`` until the service answers 200 (workers loaded their models and the store)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the service at {url} was not ready within {timeout:.0f}s")


@contextmanager
def running_service(
    artifacts: str | Path = "artifacts",
    port: int | None = None,
    host: str = "127.0.0.1",
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
    )
    url = f"http://{host}:{port}"
    try:
        wait_ready(url, proc, timeout)
        yield url, proc
    finally:
        stop_service(proc)
        if log is not subprocess.DEVNULL:
            log.close()


def stop_service(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM the service's process group (BentoML shuts its workers down), SIGKILL if it hangs."""
    import signal

    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace)
    except ProcessLookupError:
        pass


# --- commands -----------------------------------------------------------------------------------
def serve_command(args: argparse.Namespace) -> int:
    """Run the service in the foreground until Ctrl-C (``bentoml serve`` with our environment)."""
    target = args.bento or SERVICE_IMPORT
    env = service_env(args.artifacts, args.feature_repo, args.feast_config, args.workers)
    cmd = serve_command_line(target, args.host, args.port)
    print(f"serving {target} on http://{args.host}:{args.port} (artifacts: {env[ENV_ARTIFACTS]})", flush=True)
    try:
        return subprocess.call(cmd, env=env, cwd=str(project_root()))
    except KeyboardInterrupt:
        return 0


def demo_requests(
    url: str, ids: Mapping[str, str] | None = None
) -> list[tuple[str, dict[str, Any], int, Any]]:
    """Call each endpoint once (the example bodies, with a real customer / visitor when given)."""
    import httpx

    from clicks2intent.serving import engine

    ids = dict(ids or {})
    calls = [
        # The logged-in customer's stored web intent (the session path shows in /predict_conversion).
        (
            "/rank_tiles",
            {"customer_id": serving.EXAMPLE_RANK_TILES["customer_id"], "k": 3, "explain": True}
            | _pick(ids, "customer_id"),
        ),
        ("/predict_conversion", serving.EXAMPLE_CONVERSION | _pick(ids, "visitor_id")),
        ("/intent", serving.EXAMPLE_INTENT),
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


def _compact(answer: Any) -> Any:
    """Shorten what a terminal cannot read anyway: the embedding and the long contribution lists."""
    if not isinstance(answer, dict):
        return answer
    out = dict(answer)
    if isinstance(out.get("embedding"), list):
        emb = out["embedding"]
        out["embedding"] = [round(x, 3) for x in emb[:4]] + [f"... {len(emb)} dims"]
    if isinstance(out.get("explanation"), dict):
        expl = dict(out["explanation"])
        expl["groups"] = {g: round(v, 3) for g, v in expl.get("groups", {}).items()}
        expl["top_features"] = [
            f"{f['feature']} ({f['group']}) {f['contribution']:+.3f}"
            for f in expl.get("top_features", [])[:3]
        ]
        out["explanation"] = expl
    return out


def _pick(ids: Mapping[str, str], key: str) -> dict[str, str]:
    return {key: ids[key]} if key in ids else {}


def demo_ids(artifacts: Path) -> dict[str, str]:
    """A customer with linked web intent and a visitor with web intent, from the demo's feature sources."""
    import pandas as pd

    from clicks2intent.features import build as F
    from clicks2intent.features.store import default_customer

    features_dir = artifacts / "features"
    out: dict[str, str] = {}
    with suppress(FileNotFoundError, ValueError):  # no linked web intent yet: the example's id
        out["customer_id"] = default_customer(features_dir)
    path = features_dir / F.FEATURE_FILES["visitor_web_intent"]
    if path.is_file():
        vis = pd.read_parquet(
            path, columns=[C.VISITOR_ID, F.VISITOR_SESSIONS_30D, F.VISITOR_EMBEDDING_DECAYED]
        )
        vis = vis[vis[F.VISITOR_EMBEDDING_DECAYED].notna()]
        if not vis.empty:
            out["visitor_id"] = str(vis.sort_values(F.VISITOR_SESSIONS_30D)[C.VISITOR_ID].iloc[-1])
    return out


def demo_requests_command(args: argparse.Namespace) -> int:
    """Start the service, call each endpoint once, print the answers, stop it (the end of ``make demo``)."""
    ids = demo_ids(Path(args.artifacts))
    log = Path(args.log or Path(args.artifacts) / "logs" / "demo-requests-service.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting the BentoML service (log: {log}) ...", flush=True)
    t0 = time.monotonic()
    status = 0
    try:
        with running_service(
            args.artifacts, port=args.port, feature_repo=args.feature_repo, log_path=log
        ) as (url, _):
            print(f"service ready at {url} in {time.monotonic() - t0:.1f}s", flush=True)
            for path, body, code, answer in demo_requests(url, ids):
                shown = {k: (f"<{len(v)} events>" if k == "session_events" else v) for k, v in body.items()}
                print(f"\nPOST {path} {json.dumps(shown)}\n→ {code} {json.dumps(_compact(answer))}")
                status = status or (0 if code == 200 else 1)
    except (RuntimeError, TimeoutError) as err:
        print(f"the service did not start: {err}\n--- last lines of {log}:\n{_tail(log)}", file=sys.stderr)
        return 1
    print("\nservice stopped", flush=True)
    return status


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def register(subparsers: argparse._SubParsersAction) -> None:
    s = subparsers.add_parser(
        "serve", help="run the BentoML service (rank_tiles, predict_conversion, intent)"
    )
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default loopback; 0.0.0.0 to expose)")
    s.add_argument(
        "--artifacts", default="artifacts", help="demo artifacts: model store, encoder, intent model"
    )
    s.add_argument(
        "--feature-repo", default=None, help="Feast repository (default: feature_repo/ of the project)"
    )
    s.add_argument(
        "--feast-config", default=None, help="feature_store yaml inside the repo (e.g. the Redis one)"
    )
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: the service's)")
    s.add_argument("--bento", default=None, help="serve a built bento (tag) instead of the project source")
    s.set_defaults(func=serve_command)
    d = subparsers.add_parser("demo-requests", help="start the service, call each endpoint once, stop it")
    d.add_argument("--artifacts", default="artifacts")
    d.add_argument(
        "--feature-repo", default=None, help="Feast repository (default: feature_repo/ of the project)"
    )
    d.add_argument("--port", type=int, default=None, help="port (default: a free loopback port)")
    d.add_argument(
        "--log", default=None, help="service log (default <artifacts>/logs/demo-requests-service.log)"
    )
    d.set_defaults(func=demo_requests_command)
