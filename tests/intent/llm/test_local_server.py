"""The real embedded endpoint: a llama.cpp server (xllamacpp by default) with SmolLM2-135M.

Skipped with a reason where the ``llm`` extra is not installed; an error in CI (``CI`` set), where
these tests must run. The tests comparing the two runtimes also need the ``llm-llamacpp`` extra and
skip without it (CI does not install it: it compiles llama.cpp).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clicks2intent.common.net import free_port
from clicks2intent.intent.labelling import label_messages, label_schema, label_sessions
from clicks2intent.intent.llm.client import LLMClient, LLMSettings, check_schema, json_schema_grammar
from clicks2intent.intent.llm.server import (
    CHILD_MODULE,
    LLAMA_CPP_PYTHON,
    RUNTIMES,
    XLLAMACPP,
    LocalLLMServer,
    ServerConfig,
    find_default_gguf,
    local_servers,
    resolve_runtime,
    runtime_installed,
)
from clicks2intent.intent.summaries import summarize_sessions
from clicks2intent.intent.taxonomy import (
    OTHER_ID,
    PROPOSE_SCHEMA,
    Label,
    Taxonomy,
    grounded_messages,
    grounded_schema,
    propose_messages,
)

pytestmark = [pytest.mark.llm, pytest.mark.slow]

try:
    DEFAULT_RUNTIME = resolve_runtime()
    find_default_gguf()
except FileNotFoundError as missing:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the real-LLM tests, but: {missing}") from None
    pytest.skip(f"llm extra not installed ({missing})", allow_module_level=True)

TAXONOMY = Taxonomy(
    version=1,
    status="draft",
    labels=[
        Label("mortgage", "Mortgage", "Home loans, mortgage rates and calculators.", []),
        Label("credit_card", "Credit card", "Comparing or applying for credit cards.", []),
        Label("savings", "Savings", "Savings accounts and interest rates.", []),
        Label(OTHER_ID, "Other", "Anything else.", []),
    ],
)


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
        assert srv.runtime == DEFAULT_RUNTIME
        models = httpx.get(f"{srv.base_url}/models", timeout=5).json()
        assert [m["id"] for m in models["data"]] == [server.alias]
    assert servers[0].port != servers[1].port
    summaries = summarize_sessions(make_session_events(n_per_topic=1)).head(3)
    settings = LLMSettings(
        model=server.alias,
        base_url=server.base_url,
        replica_urls=(servers[1].base_url,),
        api_key="x",
        response_format="grammar",  # what llm_settings gives the pipeline for the embedded server
        cache_path=tmp_path / "c.sqlite",
    )
    with LLMClient(settings) as client:
        labels = label_sessions(summaries, TAXONOMY, client, progress=False)
        ledger = client.ledger.to_dict()
    assert len(labels) == 3 and set(labels["status"]) == {"ok"}, labels["error"].tolist()
    assert set(labels["label_id"]) <= set(TAXONOMY.ids)
    assert ledger["outcomes"] == {"ok": 3}  # every first answer valid: nothing retried, no fallback
    assert ledger["prompt_tokens"] > 0 and ledger["completion_tokens"] > 0


@pytest.mark.parametrize("style", ["grammar", "json_schema"])
def test_the_server_itself_keeps_answers_on_the_menu(server: LocalLLMServer, style: str) -> None:
    """The prompt begs for an answer outside the enum; only the server's constraint can refuse it
    (no retry: the first answer must already be one of the options)."""
    options = ["zebra_xq", "quux_banana"]
    schema = label_schema(options)
    messages = [
        {"role": "system", "content": "You answer with one word."},
        {"role": "user", "content": "Visit: mortgage rates > mortgage calculator. Answer: mortgage."},
    ]
    settings = LLMSettings(
        model=server.alias, base_url=server.base_url, api_key="x", response_format=style, max_retries=0
    )
    with LLMClient(settings) as client:
        res = client.complete_json(messages, schema)
        ledger = client.ledger.to_dict()
    assert res.status == "ok", res.error
    assert res.data["label_id"] in options and ledger["outcomes"] == {"ok": 1}
    # The raw answer too, without the client's validation in between:
    body = {"model": server.alias, "messages": messages, "temperature": 0, "max_tokens": 40}
    body |= {"grammar": json_schema_grammar(schema)} if style == "grammar" else {}
    if style == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    content = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=60).json()
    assert json.loads(content["choices"][0]["message"]["content"])["label_id"] in options


def test_grammar_of_every_supported_shape_is_parsed_and_obeyed(server: LocalLLMServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 2, "maxLength": 12},
            "score": {"type": "number"},
            "count": {"type": "integer"},
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 8},
                "minItems": 1,
                "maxItems": 2,
            },
            "ok": {"type": "boolean"},
            "kind": {"enum": ['a "quoted" one', "b\\c", 3]},
            "nested": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": []},
        },
        "required": ["name", "tags", "kind"],
        "additionalProperties": False,
    }
    messages = [{"role": "user", "content": "Describe a savings account as JSON."}]
    settings = LLMSettings(
        model=server.alias, base_url=server.base_url, api_key="x", response_format="grammar", max_retries=0
    )
    with LLMClient(settings) as client:
        res = client.complete_json(messages, schema)
    assert res.status == "ok", res.error
    check_schema(res.data, schema)


def test_real_model_proposes_a_structured_goal(server: LocalLLMServer) -> None:
    settings = LLMSettings(
        model=server.alias, base_url=server.base_url, api_key="x", response_format="grammar"
    )
    summary = 'channel web; 3 pages: home 4s > mortgage rates 60s > mortgage calculator 3m; searches: "30 year fixed"'
    with LLMClient(settings) as client:
        res = client.complete_json(propose_messages(summary, []), PROPOSE_SCHEMA)
    assert res.status == "ok", res.error
    assert 3 <= len(res.data["name"]) <= 40 and res.data["description"]


def _probes(make_session_events: Callable[..., Any]) -> list[tuple[list[dict[str, str]], dict[str, Any]]]:
    """Prompts as the pipeline writes them: labels, grounded interests, free goal names."""
    summaries = summarize_sessions(make_session_events(n_per_topic=1))
    out = []
    for rec in summaries.to_dict("records"):
        options = list(dict.fromkeys(p.lower() for p in rec["phrases"])) or ["home"]
        out.append((label_messages(TAXONOMY, rec["summary"]), label_schema(TAXONOMY.ids)))
        out.append((grounded_messages(rec["summary"], options), grounded_schema(options)))
        out.append((propose_messages(rec["summary"], ["Mortgage"]), PROPOSE_SCHEMA))
    return out


def _answers(server: LocalLLMServer, probes: list[tuple[list[dict[str, str]], dict[str, Any]]]) -> list[Any]:
    """Each probe's first greedy answer: its JSON, or the error (a 135M model without a repeat penalty
    sometimes loops until max_tokens; the pipeline re-samples those, here both runtimes must agree)."""
    settings = LLMSettings(
        model=server.alias, base_url=server.base_url, api_key="x", response_format="grammar", max_retries=0
    )
    with LLMClient(settings) as client:
        results = [client.complete_json(m, s) for m, s in probes]
    return [r.data if r.status == "ok" else r.error for r in results]


@pytest.mark.skipif(
    not all(runtime_installed(r) for r in RUNTIMES), reason="needs both runtimes (the llm-llamacpp extra too)"
)
def test_both_runtimes_give_the_same_greedy_answers(
    server: LocalLLMServer, make_session_events: Callable[..., Any], tmp_path: Path
) -> None:
    """Same grammar, no repeat penalty, flash attention off, no host prompt cache: the runtimes agree
    (their own defaults agreed on 19 of 36 probes), and in either order of the requests."""
    probes = _probes(make_session_events)
    other = LLAMA_CPP_PYTHON if server.runtime == XLLAMACPP else XLLAMACPP
    with LocalLLMServer(ServerConfig(runtime=other, n_threads=1, log_path=tmp_path / "other.log")) as srv:
        theirs = _answers(srv, probes)
    ours = _answers(server, probes)
    ours_reversed = _answers(server, probes[::-1])[::-1]
    assert sum(isinstance(a, dict) for a in ours) >= len(probes) // 2
    assert ours == theirs
    assert ours_reversed == ours  # an answer depends on its prompt only, not on the request before it


def _serve_command(port: int, log: Path) -> list[str]:
    return [sys.executable, "-m", "clicks2intent.cli", "llm", "serve", "--port", str(port), "--log", str(log)]


def test_llm_serve_command_runs_and_stops_on_interrupt(
    tmp_path: Path, as_from_a_terminal: Callable[[], None]
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        _serve_command(port, tmp_path / "s.log"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once the server answers
        assert first.startswith("serving SmolLM2-135M") and f"127.0.0.1:{port}" in first, first
        assert f"({DEFAULT_RUNTIME}," in first
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_interrupt_during_startup_leaves_no_server_behind(
    tmp_path: Path, as_from_a_terminal: Callable[[], None]
) -> None:
    """Ctrl-C while the model loads must not orphan the child (it runs in its own session)."""
    port = free_port()
    proc = subprocess.Popen(
        _serve_command(port, tmp_path / "s.log"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=as_from_a_terminal,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "s.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the log file appears when the child is spawned
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert _servers_on_port(port) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_server_dies_with_its_sigkilled_parent(runtime: str, tmp_path: Path) -> None:
    """A parent killed with SIGKILL runs no cleanup at all; the kernel must take the server down."""
    if not runtime_installed(runtime):
        pytest.skip(f"{runtime} is not installed")
    port = free_port()
    parent_code = textwrap.dedent(
        f"""
        import sys, time
        from clicks2intent.intent.llm.server import LocalLLMServer, ServerConfig
        server = LocalLLMServer(ServerConfig(runtime={runtime!r}, port={port}, n_threads=1)).start()
        print(server.process.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())  # printed once the server answers
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200
        assert _servers_on_port(port) == [child]
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(child), f"server {child} outlived its SIGKILLed parent"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stop_is_a_prompt_clean_shutdown(runtime: str, tmp_path: Path) -> None:
    """SIGTERM reaches the server (the parent's blocked signals are not inherited) and it shuts down
    (uvicorn re-raises the signal once it has), instead of being SIGKILLed after stop()'s timeout."""
    if not runtime_installed(runtime):
        pytest.skip(f"{runtime} is not installed")
    server = LocalLLMServer(ServerConfig(runtime=runtime, n_threads=1, log_path=tmp_path / "s.log")).start()
    proc = server.process
    assert proc is not None
    t0 = time.monotonic()
    server.stop(timeout_s=8.0)
    assert proc.returncode in (0, -signal.SIGTERM), server.log_tail()
    assert time.monotonic() - t0 < 5.0


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie holds no memory and no port; init reaps it when it can)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _servers_on_port(port: int) -> list[int]:
    """Pids of running embedded servers started for ``port`` (their command line names both)."""
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if CHILD_MODULE.encode() in args and str(port).encode() in args and _running(int(proc_dir.name)):
            found.append(int(proc_dir.name))
    return found
