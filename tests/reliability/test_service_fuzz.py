"""A real ``c2i serve`` (BentoML) under schemathesis, a bounded soak, and SIGTERM.

* schemathesis from the service's own OpenAPI document, every check, a fixed seed, bounded by
  ``C2I_FUZZ_S`` (default 60 s). Before the fixes: 1,127 requests in 90 s, 132 answered 5xx
  (timestamps out of range, multipart without a boundary, control characters in ids), 17 distinct
  failures (400 ``detail`` a list, null fields the schema did not allow, "12" accepted as a number);
  then 3 ST202 (a bodiless POST, which the document allowed, rejected): every request body is now
  marked required, and no ST202 is excused.
* soak: 8 connections for ``C2I_SOAK_S`` (default 60 s), 5 % unknown ids and 5 % malformed bodies:
  no 5xx and the server's memory flat.
* SIGTERM to ``c2i serve`` stops the BentoML server and its workers (before: they kept running).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clicks2intent.data.simulator import simulator_world
from clicks2intent.serving import schemas

pytestmark = pytest.mark.slow
FUZZ_S = int(os.environ.get("C2I_FUZZ_S", "60"))
SOAK_S = float(os.environ.get("C2I_SOAK_S", "60"))
SEED = 15
EXAMPLES = schemas.examples(simulator_world())  # the tiny pipeline's data are simulated
# Failures that belong to BentoML itself, not to this service's schemas (each says why it is allowed).
FRAMEWORK_FAILURES = {
    # BentoML documents GET /metrics even when its Prometheus middleware is off (C2I_METRICS=0).
    ("ST103", "GET /metrics"),
    ("ST204", "TRACE /metrics"),
}


def _group(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(stat.parent.name))
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


@pytest.fixture(scope="module")
def served(pipeline: Path, tmp_path_factory: pytest.TempPathFactory, serve_c2i: Any) -> Iterator[dict]:
    """``c2i serve`` on a free loopback port, one worker, the tiny deployment."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve_c2i(pipeline, log) as (url, proc):
        (leader,) = _children(proc.pid)  # bentoml serve, leader of its own process group
        yield {"url": url, "proc": proc, "pgid": os.getpgid(leader), "log": log}


def _failures(stdout: str) -> set[tuple[str, str]]:
    """(code, "METHOD /path") of every failure in schemathesis' report."""
    found, operation = set(), ""
    for line in stdout.splitlines():
        stripped = line.strip("_ ").strip()
        if line.startswith("___") and " /" in stripped:
            operation = stripped
        elif line.startswith("- ST") and operation:
            found.add((line[2:7], operation))
    return found


def test_schemathesis_all_checks_no_5xx(served: dict, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(st), "run", f"{served['url']}/docs.json", "--checks", "all", "--seed", str(SEED),
         "--max-time", str(FUZZ_S), "--continue-on-failure", "--report", "har", "--report-dir", str(tmp_path),
         "--request-timeout", "30", "--no-color", "--workers", "1"],
        capture_output=True, text=True, timeout=FUZZ_S + 240,
    )  # fmt: skip
    (har,) = tmp_path.glob("har-*.json")
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = Counter(e["response"]["status"] for e in entries)
    server_errors = sum(n for s, n in statuses.items() if s >= 500)
    print(f"schemathesis: {len(entries)} requests, statuses {dict(sorted(statuses.items()))}")
    assert len(entries) > 100, run.stdout[-3000:]
    assert server_errors == 0, run.stdout[-6000:]
    failures = _failures(run.stdout)
    print(f"schemathesis failures: {sorted(failures)} (allowed: {sorted(FRAMEWORK_FAILURES)})")
    unexpected = failures - FRAMEWORK_FAILURES
    assert not unexpected, f"{unexpected}\n{run.stdout[-6000:]}"
    assert not [f for f in failures if f[0] == "ST202"]  # schema-valid requests are never rejected


def _soak_body(rng: random.Random, ids: dict[str, str]) -> tuple[str, bytes, str]:
    """(path, body, kind): 90 % valid, 5 % unknown ids, 5 % malformed."""
    r = rng.random()
    if r < 0.05:
        return (
            "/rank_tiles",
            rng.choice([b"{not json", b'{"customer_id": 7}', b"[]", b'{"customer_id": "c\\u0000"}']),
            "malformed",
        )
    customer = "no-such-customer" if r < 0.10 else ids["customer"]
    path = rng.choice(["/rank_tiles", "/predict_conversion", "/intent"])
    body = {
        "/rank_tiles": {"customer_id": customer, "k": 3},
        "/predict_conversion": {"visitor_id": "no-such-visitor" if r < 0.10 else ids["visitor"]},
        "/intent": EXAMPLES.intent,
    }[path]
    return path, json.dumps(body).encode(), "unknown" if r < 0.10 else "valid"


def test_soak_8_connections_no_5xx_memory_flat(served: dict, ids: dict[str, str]) -> None:
    stop_at = time.monotonic() + SOAK_S
    counts: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    memory: list[float] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=served["url"], timeout=30) as http:
            while time.monotonic() < stop_at:
                path, body, kind = _soak_body(rng, ids)
                try:
                    code = http.post(
                        path, content=body, headers={"content-type": "application/json"}
                    ).status_code
                except httpx.HTTPError:
                    code = -1
                with lock:
                    counts[(kind, code)] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        memory.append(_rss_mb(_group(served["pgid"])))
        time.sleep(1.0)
    for t in threads:
        t.join()
    total = sum(counts.values())
    print(
        f"soak: {total} requests in {SOAK_S:.0f}s, {dict(counts)}, server RSS MB {memory[1]:.0f} → {memory[-1]:.0f}"
    )
    assert not [k for k in counts if k[1] >= 500 or k[1] < 0], counts
    assert counts[("valid", 200)] > 0 and counts[("unknown", 200)] > 0
    assert all(code == 400 for kind, code in counts if kind == "malformed")
    warm = memory[len(memory) // 4]  # after the first requests have filled caches
    assert memory[-1] <= warm * 1.10 + 20, memory  # flat: < 10 % (+20 MB noise) growth


def test_sigterm_stops_the_whole_process_group(served: dict) -> None:
    assert _group(served["pgid"]), "the BentoML server should be running"
    served["proc"].send_signal(signal.SIGTERM)
    served["proc"].wait(30)
    deadline = time.monotonic() + 30
    while _group(served["pgid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group(served["pgid"]), f"left running: {_group(served['pgid'])}"
