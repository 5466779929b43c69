"""``c2i serve`` (run the BentoML service locally) and ``c2i demo-requests`` (call each endpoint once).

The process logic (environment, ``bentoml serve`` command line, start/stop, the demo calls) lives in
:mod:`clicks2intent.serving.launcher`; these handlers parse, call it and print.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from clicks2intent.common.net import LOOPBACK
from clicks2intent.errors import ServiceError
from clicks2intent.names.paths import DEFAULT_ROOT, ArtifactLayout
from clicks2intent.serving import launcher
from clicks2intent.serving.launcher import DEFAULT_PORT, SERVICE_IMPORT


def serve_command(args: argparse.Namespace) -> int:
    """Run the service in the foreground until Ctrl-C (``bentoml serve`` with our environment)."""
    target = args.bento or SERVICE_IMPORT
    artifacts = Path(args.artifacts).resolve()
    print(f"serving {target} on http://{args.host}:{args.port} (artifacts: {artifacts})", flush=True)
    return launcher.serve_foreground(
        target, args.host, args.port, args.artifacts, args.feature_repo, args.feast_config, args.workers
    )


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


def demo_requests_command(args: argparse.Namespace) -> int:
    """Start the service, call each endpoint once, print the answers, stop it (the end of ``make demo``)."""
    ids = launcher.demo_ids(args.artifacts)
    examples = launcher.demo_examples(args.artifacts)
    log = Path(args.log or ArtifactLayout(args.artifacts).root / "logs" / "demo-requests-service.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting the BentoML service (log: {log}) ...", flush=True)
    t0 = time.monotonic()
    status = 0
    try:
        with launcher.running_service(
            args.artifacts, port=args.port, feature_repo=args.feature_repo, log_path=log
        ) as (url, _):
            print(f"service ready at {url} in {time.monotonic() - t0:.1f}s", flush=True)
            for path, body, code, answer in launcher.demo_requests(url, examples, ids):
                shown = {k: (f"<{len(v)} events>" if k == "session_events" else v) for k, v in body.items()}
                print(f"\nPOST {path} {json.dumps(shown)}\n→ {code} {json.dumps(_compact(answer))}")
                status = status or (0 if code == 200 else 1)
    except ServiceError as err:
        tail = launcher.log_tail(log)
        print(f"the service did not start: {err}\n--- last lines of {log}:\n{tail}", file=sys.stderr)
        return 1
    print("\nservice stopped", flush=True)
    return status


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i serve`` and ``c2i demo-requests``."""
    s = subparsers.add_parser(
        "serve", help="run the BentoML service (rank_tiles, predict_conversion, intent)"
    )
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    s.add_argument("--host", default=LOOPBACK, help="bind address (default loopback; 0.0.0.0 to expose)")
    s.add_argument(
        "--artifacts", default=str(DEFAULT_ROOT), help="demo artifacts: model store, encoder, intent model"
    )
    s.add_argument("--feature-repo", default=None, help="Feast repository (default: ./feature_repo)")
    s.add_argument(
        "--feast-config", default=None, help="feature_store yaml inside the repo (e.g. the Redis one)"
    )
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: the service's)")
    s.add_argument("--bento", default=None, help="serve a built bento (tag) instead of the project source")
    s.set_defaults(func=serve_command)
    d = subparsers.add_parser("demo-requests", help="start the service, call each endpoint once, stop it")
    d.add_argument("--artifacts", default=str(DEFAULT_ROOT))
    d.add_argument("--feature-repo", default=None, help="Feast repository (default: ./feature_repo)")
    d.add_argument("--port", type=int, default=None, help="port (default: a free loopback port)")
    d.add_argument(
        "--log", default=None, help="service log (default <artifacts>/logs/demo-requests-service.log)"
    )
    d.set_defaults(func=demo_requests_command)
