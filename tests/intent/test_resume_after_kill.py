"""Labelling SIGKILLed mid-run and run again: nothing lost, nothing duplicated, nothing re-asked.

``c2i taxonomy label`` runs in a subprocess against the fault server (a real OpenAI-compatible HTTP
endpoint, slowed down so the kill lands mid-run); the second run resumes from the response cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicks2intent.data.contract import validate_events, write_events
from clicks2intent.intent.taxonomy import OTHER_ID, Label, Taxonomy
from clicks2intent.names import columns as C

pytestmark = pytest.mark.slow


def _prompts(server: Any) -> list[str]:
    return ["\n".join(m["content"] for m in r["messages"]) for r in server.plan.requests]


def test_sigkill_mid_run_then_resume(
    fault_server: Any, make_session_events: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    events = write_events(validate_events(make_session_events(8)).events, tmp_path / "events.parquet")
    tax = Taxonomy(
        version=1, status="draft", model="m",
        labels=[Label("mortgage", "Mortgage", "Home loans.", []), Label("credit_card", "Credit card", "Cards.", []),
                Label("savings", "Savings", "Savings.", []), Label("security", "Security", "Fraud.", []),
                Label(OTHER_ID, "Other", "Anything else.", [])],
    ).save(tmp_path / "taxonomy.yaml")  # fmt: skip
    out, cache = tmp_path / "llm_labels.parquet", tmp_path / "cache.sqlite"
    argv = [str(Path(sys.executable).with_name("c2i")), "taxonomy", "label", "--events", str(events),
            "--taxonomy", str(tax), "--sample", "0", "--out", str(out), "--base-url", fault_server.base_url,
            "--model", fault_server.model, "--cache", str(cache), "--concurrency", "1", "--max-retries", "2",
            "--timeout", "5", "--backoff", "0.01"]  # fmt: skip
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}

    fault_server.plan.delay_s = 0.3  # slow answers: the kill lands mid-run
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while fault_server.n_requests < 4 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert first.poll() is None, first.stderr.read().decode()[-2000:] if first.stderr else ""
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    asked_before = _prompts(fault_server)
    assert not out.exists()  # killed before it could write a partial result

    fault_server.plan.delay_s = 0.0
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    asked_after = _prompts(fault_server)[len(asked_before) :]
    labels = pd.read_parquet(out)
    web = pd.read_parquet(events)
    web_sessions = set(web.loc[web[C.CHANNEL].isin(["web"]) | web[C.CHANNEL].isna(), C.SESSION_ID])
    assert labels[C.SESSION_ID].is_unique  # nothing duplicated
    assert set(labels[C.SESSION_ID]) == web_sessions  # nothing lost
    # nothing re-asked: only the request in flight at the kill (concurrency 1) may be asked again
    assert len(set(asked_after) & set(asked_before)) <= 1
    print(f"killed after {len(asked_before)} requests; resumed with {len(asked_after)} more")
