"""``c2i taxonomy label`` / ``generate`` when the LLM calls fail: exit code 5 and one line saying why.

Before: ``label`` against an unreachable endpoint exited 0 with every session ``failed``, and
``generate`` against a wrong URL exited 0 after every minibatch (74 s in the hostile probe) and wrote a
taxonomy of only "other", the reason only inside the LLM cache. Now more than half of the calls failing
(every one, for a dead endpoint) writes nothing, a previous output stays as it was, and ``generate``
stops after the first round that asked; a few failures still end in exit 0 (tests/intent).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicks2intent.common.net import LOOPBACK, free_port
from clicks2intent.data.contract import validate_events, write_events
from clicks2intent.errors import EXIT_SERVICE
from clicks2intent.intent.taxonomy import OTHER_ID, Label, Taxonomy

C2I = str(Path(sys.executable).with_name("c2i"))
LLM_FLAGS = ["--max-retries", "1", "--timeout", "2", "--backoff", "0.01", "--concurrency", "2"]


@pytest.fixture
def inputs(make_session_events: Callable[..., pd.DataFrame], tmp_path: Path) -> tuple[Path, Path]:
    events = write_events(validate_events(make_session_events(3)).events, tmp_path / "events.parquet")
    tax = Taxonomy(
        version=1, status="draft", model="m",
        labels=[Label("mortgage", "Mortgage", "Home loans.", []), Label("savings", "Savings", "Savings.", []),
                Label(OTHER_ID, "Other", "Anything else.", [])],
    ).save(tmp_path / "taxonomy.yaml")  # fmt: skip
    return events, tax


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([C2I, *argv], capture_output=True, text=True, timeout=240, check=False)


def _one_error_line(done: subprocess.CompletedProcess[str], command: str) -> str:
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"c2i {command}: error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


def _dead_endpoint() -> str:
    return f"http://{LOOPBACK}:{free_port()}/v1"  # nothing listens there: connection refused


def test_label_against_a_dead_endpoint_exits_5_and_writes_nothing(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    events, tax = inputs
    out = tmp_path / "llm_labels.parquet"
    out.write_bytes(b"an earlier run's labels")
    done = _run("taxonomy", "label", "--events", str(events), "--taxonomy", str(tax), "--sample", "0",
                "--out", str(out), "--base-url", _dead_endpoint(), "--model", "m", "--shortlist", "off",
                "--cache", str(tmp_path / "cache.sqlite"), *LLM_FLAGS)  # fmt: skip
    assert done.returncode == EXIT_SERVICE, done.stderr[-3000:]
    line = _one_error_line(done, "taxonomy")
    assert "LLM calls failed" in line and "onnection" in line, line  # the endpoint's own reason
    assert out.read_bytes() == b"an earlier run's labels"  # the earlier output is left as it was
    assert not (tmp_path / "llm_labels.report.json").exists()


def test_label_with_most_calls_failing_exits_5(
    inputs: tuple[Path, Path], fault_server: Any, tmp_path: Path
) -> None:
    events, tax = inputs
    fault_server.plan.faults = {"s00": ["500*"], "s01": ["500*"]}  # 12 of the 13 web sessions
    out = tmp_path / "llm_labels.parquet"
    done = _run("taxonomy", "label", "--events", str(events), "--taxonomy", str(tax), "--sample", "0",
                "--out", str(out), "--base-url", fault_server.base_url, "--model", fault_server.model,
                "--shortlist", "off", "--cache", str(tmp_path / "cache.sqlite"), *LLM_FLAGS)  # fmt: skip
    assert done.returncode == EXIT_SERVICE, done.stderr[-3000:]
    line = _one_error_line(done, "taxonomy")
    assert "HTTP 500" in line, line
    assert not out.exists()


def test_generate_against_a_dead_endpoint_stops_after_one_round(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    events, _ = inputs
    out = tmp_path / "generated.yaml"
    t0 = time.monotonic()
    done = _run("taxonomy", "generate", "--events", str(events), "--out", str(out), "--proposal", "free",
                "--minibatch", "4", "--base-url", _dead_endpoint(), "--model", "m",
                "--cache", str(tmp_path / "cache.sqlite"), *LLM_FLAGS)  # fmt: skip
    seconds = time.monotonic() - t0
    assert done.returncode == EXIT_SERVICE, done.stderr[-3000:]
    line = _one_error_line(done, "taxonomy")
    assert "4 of 4 LLM calls failed" in line and "onnection" in line, line  # one minibatch asked, not 4
    assert not out.exists()
    print(f"generate against a dead endpoint: exit {done.returncode} in {seconds:.1f} s: {line}")
