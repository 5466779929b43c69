"""``c2i taxonomy label --engine ray`` equals the single-process run: same labels, failures and
provenance; the same response cache and ledger, so a re-run costs 0 calls; bounded concurrency.

Runs on a local Ray (``ray.init(num_cpus=2)``) against the fault-injecting OpenAI-compatible server the
other labelling tests use (real HTTP, the production client path).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicks2intent.cli import main
from clicks2intent.intent.taxonomy import OTHER_ID, Label, Taxonomy

if importlib.util.find_spec("ray") is None:
    if os.environ.get("CI"):
        raise RuntimeError('CI must run the Ray tests, but ray is not installed (pip install -e ".[ray]")')
    pytest.skip('ray extra not installed (pip install -e ".[ray]")', allow_module_level=True)

pytestmark = pytest.mark.slow


def _taxonomy(path: Path) -> Path:
    labels = [
        Label("mortgage", "Mortgage", "Home loans and rates.", []),
        Label("credit_card", "Credit card", "Choosing or applying for a card.", []),
        Label("savings", "Savings", "Savings accounts and rates.", []),
        Label("security", "Security", "Fraud and account security.", []),
        Label(OTHER_ID, "Other", "Anything else.", []),
    ]
    return Taxonomy(version=1, status="draft", labels=labels, model="m").save(path)


def _label(tmp_path: Path, server: Any, events: Path, tax: Path, name: str, *extra: str) -> dict[str, Any]:
    code = main(["taxonomy", "label", "--events", str(events), "--taxonomy", str(tax), "--sample", "0",
                 "--out", str(tmp_path / f"{name}.parquet"), "--base-url", server.base_url, "--model",
                 server.model, "--cache", str(tmp_path / f"{name}.sqlite"), "--timeout", "0.3", "--backoff",
                 "0.01", "--max-retries", "3", "--concurrency", "2", *extra])  # fmt: skip
    assert code == 0
    return json.loads((tmp_path / f"{name}.report.json").read_text())


def test_ray_labelling_equals_single_process_and_reruns_free(
    ray_cluster: None, events_path: Path, fault_server: Any, tmp_path: Path
) -> None:
    tax = _taxonomy(tmp_path / "taxonomy.yaml")
    # Failures that end in a label after retries, and two that never do: both engines must agree.
    faults = {"s000": ["429", "500"], "s004": ["malformed"], "s005": ["offmenu*"], "s008": ["500*"]}
    fault_server.plan.faults = dict(faults)
    single = _label(tmp_path, fault_server, events_path, tax, "single")
    n_single = fault_server.n_requests
    fault_server.plan.faults = dict(faults)
    fault_server.plan._seen.clear()
    fault_server.plan.delay_s = 0.05  # answers overlap, so the in-flight bound is observable
    fault_server.plan.max_in_flight = 0
    on_ray = _label(tmp_path, fault_server, events_path, tax, "ray", "--engine", "ray")
    assert fault_server.n_requests - n_single == n_single  # a fresh cache: the same calls
    assert 1 <= fault_server.plan.max_in_flight <= 2  # --concurrency 2 over the whole actor pool
    single_labels, ray_labels = (
        pd.read_parquet(tmp_path / "single.parquet"),
        pd.read_parquet(tmp_path / "ray.parquet"),
    )
    pd.testing.assert_frame_equal(ray_labels, single_labels)
    assert sorted(ray_labels.query("status == 'failed'")["session_id"]) == ["s005", "s008"]
    assert on_ray["engine"] == "ray" and set(single) <= set(on_ray)
    for key in ("n_sessions", "n_ok", "n_failed", "n_llm", "label_distribution", "failure_reasons"):
        assert on_ray[key] == single[key], key
    for key in ("requests", "api_calls", "failures"):
        assert on_ray["ledger"][key] == single["ledger"][key], key

    before = fault_server.n_requests
    again = _label(tmp_path, fault_server, events_path, tax, "ray", "--ray", "--ray-actors", "2")
    assert fault_server.n_requests == before  # the same cache: nothing asked again
    assert again["ledger"]["api_calls"] == 0 and again["ledger"]["cache_hits"] == on_ray["n_sessions"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray.parquet"), single_labels)
    with sqlite3.connect(tmp_path / "ray.sqlite") as db:  # the per-call ledger holds the first run's calls
        logged = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    with sqlite3.connect(tmp_path / "single.sqlite") as db:
        assert logged == db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
