"""Fixtures for the LLM pipeline: a fault-injecting OpenAI-compatible server and tiny session data.

The fault server is a real HTTP server speaking the OpenAI chat-completions API (both structured-output
styles), so the production client path — openai SDK, HTTP, retries, cache — runs unchanged. It answers
sensibly (a label whose words appear in the visit; a goal name from the visited pages) and injects, per
session marker and attempt, the failures real endpoints produce: 429 with Retry-After, 500, a response
slower than the client timeout, malformed JSON, an out-of-taxonomy label, and 401.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicks2intent.names import columns as C

MODEL = "fault-test-model"


@dataclass
class FaultPlan:
    """What the server does. ``faults[marker]`` lists faults for successive requests whose prompt
    contains ``marker``; once exhausted it answers correctly. A fault ending in ``*`` repeats forever."""

    faults: dict[str, list[str]] = field(default_factory=dict)
    accept_json_schema: bool = True  # False: reject json_schema as llama-cpp-python does
    reject_code: int = 500  # llama-cpp-python wraps its validation error in a 500; others use 400/422
    delay_s: float = 0.0  # added to every answer (to observe concurrency)
    timeout_sleep_s: float = 1.0  # how long a "timeout" fault stalls
    requests: list[dict[str, Any]] = field(default_factory=list)
    served: Counter = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: Counter = field(default_factory=Counter)

    def next_fault(self, prompt: str) -> str | None:
        with self.lock:
            for marker, seq in self.faults.items():
                if marker in prompt:
                    i = self._seen[marker]
                    self._seen[marker] += 1
                    if i < len(seq):
                        return seq[i]
                    if seq and seq[-1].endswith("*"):
                        return seq[-1]
            return None


def _visit(prompt: str) -> str:
    m = re.search(r"Visit: (.*)", prompt)
    return m.group(1) if m else prompt


def sensible_answer(prompt: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A deterministic, plausible answer: what a competent model would say for our prompts."""
    props = schema.get("properties", {})
    visit = _visit(prompt).lower()
    if "label_id" in props:
        ids = props["label_id"]["enum"]
        scores = {i: sum(w in visit for w in i.split("_") if w != "other") for i in ids}
        best = max(ids, key=lambda i: (scores[i], -ids.index(i)))
        return {"label_id": best if scores[best] > 0 else ("other" if "other" in ids else ids[0])}
    if "interest" in props:  # grounded proposal: the first salient option is the visit's topic here
        return {"interest": props["interest"]["enum"][0]}
    path = visit.split("pages:")[-1].split(";")[0]
    pages = [re.sub(r"\s+(x\d+|\d+[sm])\b", "", p).strip() for p in path.split(" > ")]
    pages = [p for p in pages if p and p != "home"]
    topic = Counter(pages).most_common(1)[0][0] if pages else "browsing"
    return {"name": f"{topic.title()} research", "description": f"The visitor studies {topic}."}


class _Handler(BaseHTTPRequestHandler):
    plan: FaultPlan

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._finish_in_flight()  # before the bytes leave: the client may send its next request at once
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout fault): nothing to do

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(
                200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]}
            )
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        plan = self.plan
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with plan.lock:
            plan.requests.append(body)
            plan.in_flight += 1
            plan.max_in_flight = max(plan.max_in_flight, plan.in_flight)
        self._counted = True
        try:
            self._answer(plan, body)
        finally:
            self._finish_in_flight()

    def _finish_in_flight(self) -> None:
        """End this request's in-flight count once (at the answer, or when no answer is sent)."""
        if getattr(self, "_counted", False):
            self._counted = False
            with self.plan.lock:
                self.plan.in_flight -= 1

    def _answer(self, plan: FaultPlan, body: dict[str, Any]) -> None:
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            if not plan.accept_json_schema:
                plan.served["rejected_json_schema"] += 1
                msg = "1 validation error: ('body', 'response_format', 'type') Input should be 'text' or 'json_object'"
                self._send(plan.reject_code, {"error": {"message": msg, "type": "internal_server_error"}})
                return
            schema = rf["json_schema"]["schema"]
        elif rf.get("type") == "json_object":
            schema = rf.get("schema") or {}
        else:
            self._send(400, {"error": {"message": "response_format required by this test server"}})
            return
        prompt = "\n".join(m["content"] for m in body["messages"])
        fault = (plan.next_fault(prompt) or "").rstrip("*")
        if plan.delay_s:
            time.sleep(plan.delay_s)
        plan.served[fault or "ok"] += 1
        if fault == "429":
            self._send(
                429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"Retry-After": "0.01"}
            )
            return
        if fault == "500":
            self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
            return
        if fault == "401":
            self._send(401, {"error": {"message": "invalid api key", "type": "auth"}})
            return
        if fault == "timeout":
            time.sleep(plan.timeout_sleep_s)
            self._send(200, self._completion(body, json.dumps(sensible_answer(prompt, schema)), prompt))
            return
        if fault == "malformed":
            content = '{"label_id": "unterminated'
        elif fault == "offmenu":
            props = schema.get("properties", {})
            key = "label_id" if "label_id" in props else "interest" if "interest" in props else "name"
            content = json.dumps({key: "wire money to mars"})
        else:
            content = json.dumps(sensible_answer(prompt, schema))
        self._send(200, self._completion(body, content, prompt))

    @staticmethod
    def _completion(body: dict[str, Any], content: str, prompt: str) -> dict[str, Any]:
        pt, ct = len(prompt.split()), len(content.split())
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", MODEL),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }


@dataclass
class FaultServer:
    plan: FaultPlan
    base_url: str
    model: str = MODEL

    @property
    def n_requests(self) -> int:
        return len(self.plan.requests)


@contextmanager
def _running_fault_server() -> Iterator[FaultServer]:
    plan = FaultPlan()
    handler = type("Handler", (_Handler,), {"plan": plan})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield FaultServer(plan, f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    with _running_fault_server() as server:
        yield server


@pytest.fixture
def replica_fault_server() -> Iterator[FaultServer]:
    """A second, independent server: a replica of the same "model"."""
    with _running_fault_server() as server:
        yield server


# Tiny web sessions with an obvious topic each, plus one app session (must be ignored) and one session
# with no channel (kept: data such as MSNBC has none).
TOPICS = {
    "mortgage": ["mortgages", "mortgage_rates", "mortgage_calculator"],
    "credit_card": ["credit_cards", "card_compare", "credit_card_apply"],
    "savings": ["savings_accounts", "savings_rates", "open_savings"],
    "security": ["fraud_help", "security_center", "report_fraud"],
}


def make_events(n_per_topic: int = 3, start: str = "2024-03-01") -> pd.DataFrame:
    """Events in the clickstream contract: ``n_per_topic`` web sessions per topic."""
    rows = []
    t0 = pd.Timestamp(start, tz="UTC")
    k = 0
    for topic, pages in TOPICS.items():
        for j in range(n_per_topic):
            sid = f"s{k:03d}"
            k += 1
            seq = ["home", *pages[: 2 + (j % 2)]]
            for i, page in enumerate(seq):
                rows.append(
                    {
                        C.SESSION_ID: sid,
                        C.EVENT_TIMESTAMP: t0 + pd.Timedelta(minutes=10 * k + i),
                        C.PAGE_TYPE: page,
                        C.CHANNEL: "web",
                        C.DWELL_SECONDS: float(5 + 20 * i),
                        C.SEARCH_QUERY: f"{topic.replace('_', ' ')} help {sid}" if i == 1 else None,
                        C.VISITOR_ID: f"v{k:03d}",
                    }
                )
    rows.append({C.SESSION_ID: "app001", C.EVENT_TIMESTAMP: t0, C.PAGE_TYPE: "app_home", C.CHANNEL: "app"})
    rows.append({C.SESSION_ID: "nochan", C.EVENT_TIMESTAMP: t0, C.PAGE_TYPE: "mortgages", C.CHANNEL: None})
    df = pd.DataFrame(rows)
    for col in C.EVENT_COLUMNS:
        if col not in df.columns:
            df[col] = None
    return df[list(C.EVENT_COLUMNS)]


@pytest.fixture
def events() -> pd.DataFrame:
    return make_events()


@pytest.fixture
def make_session_events() -> Callable[..., pd.DataFrame]:
    """The factory itself, for tests that need another size (fixtures, not imports: import-mode safe)."""
    return make_events


@pytest.fixture
def events_path(tmp_path: Path) -> Path:
    """The tiny events validated and written as the contract's parquet."""
    from clicks2intent.data.contract import validate_events, write_events

    return write_events(validate_events(make_events()).events, tmp_path / "events.parquet")
