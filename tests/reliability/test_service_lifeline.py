"""The service's processes die with the process that started them, even SIGKILLed (clicks2intent.serving.lifeline).

* ``c2i serve`` SIGKILLed: ``bentoml serve`` (its child, in its own process group) gets SIGTERM from the
  kernel (``PR_SET_PDEATHSIG``) and stops its workers; before, both kept running and held the port.
* ``bentoml serve`` SIGKILLed: each worker sees its supervisor gone and shuts itself down.

Bounded: each service is given 30 s to be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clicks2intent.common.net import LOOPBACK, free_port
from clicks2intent.serving.launcher import wait_ready

pytestmark = pytest.mark.slow
GONE_WITHIN_S = 30.0


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: list[int]) -> float:
    t0 = time.monotonic()
    while any(_alive(p) for p in pids) and time.monotonic() - t0 < GONE_WITHIN_S:
        time.sleep(0.1)
    return time.monotonic() - t0


@pytest.fixture
def serve(pipeline: Path, tmp_path: Path) -> Iterator[dict]:
    """``c2i serve`` with one worker: its process, the ``bentoml serve`` child and the worker."""
    port = free_port()
    env = os.environ | {"BENTOML_HOME": str(pipeline / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    c2i = Path(sys.executable).with_name("c2i")
    with (tmp_path / "serve.log").open("w") as out:
        proc = subprocess.Popen(
            [str(c2i), "serve", "--artifacts", str(pipeline), "--feature-repo", str(pipeline / "feature_repo"),
             "--port", str(port), "--workers", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    leader = workers = None
    try:
        wait_ready(f"http://{LOOPBACK}:{port}", proc, timeout=240)
        (leader,) = _children(proc.pid)
        workers = _children(leader)
        assert workers, "bentoml serve should have a worker"
        yield {"c2i": proc, "leader": leader, "workers": workers, "log": tmp_path / "serve.log"}
    finally:
        for pid in [proc.pid, *([leader] if leader else []), *(workers or [])]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)


def test_sigkilled_c2i_serve_takes_bentoml_and_its_workers_along(serve: dict) -> None:
    os.kill(serve["c2i"].pid, signal.SIGKILL)
    serve["c2i"].wait(10)
    took = _wait_gone([serve["leader"], *serve["workers"]])
    print(f"c2i serve SIGKILLed: bentoml serve and its worker gone after {took:.1f}s")
    assert not [p for p in [serve["leader"], *serve["workers"]] if _alive(p)], serve["log"].read_text()[
        -2000:
    ]


def test_a_worker_whose_supervisor_is_sigkilled_exits(serve: dict) -> None:
    os.kill(serve["leader"], signal.SIGKILL)
    took = _wait_gone(serve["workers"])
    print(f"bentoml serve SIGKILLed: its worker gone after {took:.1f}s")
    assert not [p for p in serve["workers"] if _alive(p)], serve["log"].read_text()[-2000:]
    assert "its supervisor" in serve["log"].read_text()
