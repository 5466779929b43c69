"""Without the model: the grammar the embedded servers get, how a runtime is chosen, and the child's
tie to its parent (real processes, a real HTTP server and the real openai client; no model needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from clicks2intent.errors import ConfigError
from clicks2intent.intent.labelling import label_schema
from clicks2intent.intent.llm.client import LLMClient, LLMConfigError, LLMSettings, json_schema_grammar
from clicks2intent.intent.llm.server import RUNTIMES, resolve_runtime, runtime_installed
from clicks2intent.intent.taxonomy import PROPOSE_SCHEMA
from clicks2intent.names.settings import LLM_RUNTIME


def _rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.splitlines())


def test_label_grammar_allows_exactly_the_options_with_llamacpp_python_whitespace() -> None:
    rules = _rules(json_schema_grammar(label_schema(["mortgage", "savings"])))
    assert rules["root"] == '"{" space obj0-0-a "}" space'
    assert rules["obj0-0-a"] == '"\\"label_id\\"" space ":" space ("\\"mortgage\\"" | "\\"savings\\"")'
    assert rules["space"] == '" "?'  # one optional space, never a newline: short answers


def test_strings_have_their_length_bounds_and_no_raw_control_characters() -> None:
    rules = _rules(json_schema_grammar(PROPOSE_SCHEMA))
    assert '"\\"" (char){3,40} "\\"" space' in rules["obj0-0-a"]
    assert '"," space "\\"description\\"" space ":" space "\\"" (char){3,140}' in rules["obj0-1-b"]
    assert rules["char"].startswith('[^"\\\\\\x7F\\x00-\\x1F]')  # JSON forbids raw control characters


def test_enum_values_are_escaped_as_json_then_as_gbnf() -> None:
    rules = _rules(json_schema_grammar({"enum": ['say "hi"', "a\\b", "line\nbreak", 3, None]}))
    assert rules["root"] == (
        '("\\"say \\\\\\"hi\\\\\\"\\"" | "\\"a\\\\\\\\b\\"" | "\\"line\\\\nbreak\\"" | "3" | "null")'
    )


def test_optional_properties_keep_commas_right() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "integer"}},
        "required": ["b"],
    }
    rules = _rules(json_schema_grammar(schema))
    # a present: b after a comma; a absent: b first, without one. c optional after b.
    first, second = rules["obj0-0-a"].rsplit(" | ", 1)
    assert first.startswith('"\\"a\\"" space ":" space') and first.endswith("obj0-1-b")
    assert second == "obj0-1-a"
    assert rules["obj0-1-a"].startswith('"\\"b\\""') and rules["obj0-1-b"].startswith('"," space "\\"b\\""')
    assert (
        rules["obj0-2-b"] == '("," space "\\"c\\"" space ":" space ("-"? ("0" | [1-9] [0-9]{0,15})) space)?'
    )


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "null"}, "not supported"),
        ({"oneOf": [{"type": "string"}]}, "not supported"),
        ({"enum": []}, "empty enum"),
        ({"type": "object", "properties": {}, "required": ["x"]}, "not among the properties"),
    ],
)
def test_a_schema_outside_the_subset_is_a_configuration_error(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(LLMConfigError, match=message):
        json_schema_grammar(schema)


class _Capture(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that records each request body and answers one label."""

    bodies: list[dict[str, Any]]

    def do_POST(self) -> None:
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        content = json.dumps({"label_id": "savings"})
        answer = {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Capture,), {"bodies": bodies}))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", bodies
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_grammar_style_sends_llamacpp_fields_and_no_response_format(
    capture: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = capture
    schema = label_schema(["mortgage", "savings"])
    with LLMClient(LLMSettings(model="m", base_url=url, api_key="x", response_format="grammar")) as client:
        res = client.complete_json([{"role": "user", "content": "hi"}], schema)
    assert res.status == "ok" and res.data == {"label_id": "savings"}
    (body,) = bodies
    assert "response_format" not in body
    assert body["grammar"] == json_schema_grammar(schema) and body["repeat_penalty"] == 1.0
    assert body["temperature"] == 0.0 and body["seed"] == 0


def test_runtime_is_the_one_asked_for_when_installed() -> None:
    for runtime in RUNTIMES:
        if runtime_installed(runtime):
            assert resolve_runtime(runtime) == runtime
        else:
            with pytest.raises(FileNotFoundError, match=r"pip install 'clicks2intent\[llm"):
                resolve_runtime(runtime)
    installed = [r for r in RUNTIMES if runtime_installed(r)]
    if installed:
        assert resolve_runtime("auto") == installed[0]  # xllamacpp first: the prebuilt one


def test_runtime_setting_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LLM_RUNTIME, "ollama")
    with pytest.raises(ConfigError, match=LLM_RUNTIME):
        resolve_runtime()
    monkeypatch.setenv(LLM_RUNTIME, RUNTIMES[0])
    if runtime_installed(RUNTIMES[0]):
        assert resolve_runtime() == RUNTIMES[0]


def _child_code(parent_pid: str) -> str:
    return textwrap.dedent(
        f"""
        import os, time
        from clicks2intent.intent.llm.server import die_with_parent
        die_with_parent({parent_pid})
        print(os.getpid(), flush=True)
        time.sleep(600)
        """
    )


def test_a_child_whose_parent_is_already_gone_exits_at_once() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _child_code("os.getppid() + 1")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and proc.stdout == ""


def test_a_child_dies_with_its_sigkilled_parent() -> None:
    """The mechanism of the real server's test (tests/intent/llm/test_local_server.py), without a model."""
    parent_code = textwrap.dedent(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {_child_code("os.getppid()")!r}], stdout=sys.stdout)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _running(child)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(child)
    finally:
        if parent.poll() is None:
            parent.kill()


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
