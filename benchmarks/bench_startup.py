"""Start-up benchmark: how long the commands and the service take before they answer, beside references.

For each case, wall seconds over ``--runs`` runs (median, min, max), with the 1-minute load average
before and after each run (medians), so a reader sees how loaded the shared machine was:

* ``c2i --help``, ``c2i evaluate --help``, ``c2i serve --help``
* ``c2i features online`` (one customer's online features from ``--feature-repo``)
* ``c2i serve``: seconds to the first 200 on ``/readyz`` and to the first 200 on ``POST /rank_tiles``
* the built bento (``bentoml serve clicks2intent:latest``, its carried artifacts model, ``--feature-repo``
  for the registry and online store): the same two figures. The bento is built once per benchmark into
  ``<work-dir>[/<label>]/bentoml``, a copy of ``<artifacts>/bentoml/models`` (the trained models stay as
  they are)
* references measured in the same run: ``python -c "import bentoml"`` and a bare ``bentoml serve`` of a
  one-endpoint hello service (BentoML's own floor: what is not ours)

Runs are interleaved (round r runs every case once) so a load that drifts during the benchmark hits
every case alike. ``--root`` measures another checkout's code with the same venv (its ``plugin/`` first
on ``PYTHONPATH``, its ``bento/``); given more than once (``--root before=/tmp/before --root
after=/tmp/after``) every case runs for each checkout in the same rounds, an A/B on the same load::

    python benchmarks/bench_startup.py --artifacts /tmp/startup/artifacts --feature-repo /tmp/startup/feature_repo
    git archive HEAD~2 | tar -x -C /tmp/before
    python benchmarks/bench_startup.py --root before=/tmp/before --root after=. --artifacts … --feature-repo …

The artifacts dir needs the trained pipeline (``c2i features build``, ``feast apply`` + ``materialize``
in the feature repo, ``c2i evaluate``'s models in ``<artifacts>/bentoml``); ``make demo`` makes one, and
the decision record docs/decisions/0002-startup.md lists a small, quick one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugin"))  # runnable from a checkout without installing

from clicks2intent.common.net import LOOPBACK, free_port  # noqa: E402
from clicks2intent.names import settings as ENV  # noqa: E402

HELLO_SERVICE = """
import bentoml


@bentoml.service
class Hello:
    @bentoml.api
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"
"""
POLL_S = 0.05  # readiness polling interval: the resolution of the service figures


def load1() -> float:
    """The 1-minute load average (runnable processes, averaged): how busy the shared cores were."""
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").is_file() else -1.0


@dataclass
class Case:
    """One measured thing: ``run()`` returns {figure name: seconds} for one run."""

    name: str
    run: Callable[[], dict[str, float]]
    figures: dict[str, list[float]] = field(default_factory=dict)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def timed_command(cmd: Sequence[str], env: Mapping[str, str], cwd: Path) -> dict[str, float]:
    """Wall seconds of a command that must exit 0."""
    t0 = time.perf_counter()
    out = subprocess.run(list(cmd), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(cmd[:3])} … exited {out.returncode}: {' | '.join(tail)}")
    return {"exit": seconds}


def stop_group(proc: subprocess.Popen[Any], grace: float = 30.0) -> None:
    """SIGTERM the process group we started (``c2i serve`` stops its own bentoml group), SIGKILL if stuck."""
    from clicks2intent.serving.launcher import stop_service

    stop_service(proc, grace)


def timed_service(
    cmd: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    port: int,
    log: Path,
    rank_body: Mapping[str, Any] | None,
    timeout: float,
) -> dict[str, float]:
    """Seconds from the start of ``cmd`` to the first 200 on /readyz, then to the first 200 /rank_tiles."""
    url = f"http://{LOOPBACK}:{port}"
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        figures: dict[str, float] = {}
        with httpx.Client(base_url=url, timeout=5.0) as client:
            while "ready" not in figures:
                if proc.poll() is not None:
                    raise RuntimeError(f"exited {proc.returncode} before it was ready (log: {log})")
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"not ready within {timeout:.0f} s (log: {log})")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/readyz", timeout=1.0).status_code == 200:
                        figures["ready"] = time.perf_counter() - t0
                        break
                time.sleep(POLL_S)
            if rank_body is not None:
                r = client.post("/rank_tiles", json=dict(rank_body), timeout=30.0)
                if r.status_code != 200:
                    raise RuntimeError(f"/rank_tiles answered {r.status_code}: {r.text[:200]} (log: {log})")
                figures["first /rank_tiles"] = time.perf_counter() - t0
        return figures
    finally:
        stop_group(proc)


# --- the set-up: a bento of the artifacts' models, the hello service ------------------------------
def build_bento(root: Path, artifacts: Path, home: Path, env: Mapping[str, str]) -> float:
    """``bentoml build`` of ``root``'s bentofile into ``home`` (a copy of the artifacts' model store)."""
    models = artifacts / "bentoml" / "models"
    if not models.is_dir():
        raise SystemExit(f"{models} not found: run `c2i evaluate` on these artifacts first")
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(models, home / "models", symlinks=True)
    t0 = time.perf_counter()
    cmd = [bentoml_exe(), "build", "-f", str(root / "bento" / "bentofile.yaml"), str(root)]
    out = subprocess.run(cmd, env=dict(env), cwd=root, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"bentoml build failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def bentoml_exe() -> str:
    exe = Path(sys.executable).with_name("bentoml")
    return str(exe) if exe.exists() else "bentoml"


def c2i_exe() -> str:
    exe = Path(sys.executable).with_name("c2i")
    return str(exe) if exe.exists() else "c2i"


def rank_body(artifacts: Path) -> dict[str, Any]:
    """A customer with linked web intent (the demo's choice), so the first answer reads real features."""
    from clicks2intent.features.store import default_customer

    with contextlib.suppress(Exception):
        return {"customer_id": default_customer(artifacts / "features"), "k": 3}
    return {"customer_id": "c00001", "k": 3}


def base_env(root: Path) -> dict[str, str]:
    """This environment without C2I_* settings, ``root``'s sources first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2I_") and k != "BENTOML_HOME"}
    env["PYTHONPATH"] = str(root / "plugin")
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def roots(values: Sequence[str] | None) -> dict[str, Path]:
    """``--root [LABEL=]PATH`` values → {label: checkout}; none given: this checkout, unlabelled."""
    out: dict[str, Path] = {}
    for value in values or [str(REPO)]:
        label, _, path = value.rpartition("=")
        out[label if label else ("" if len(values or []) <= 1 else Path(path).name)] = Path(path).resolve()
    return out


def cases(args: argparse.Namespace, work: Path, label: str, root: Path) -> Iterator[Case]:
    """Every case of one checkout; names carry ``label`` when several checkouts are compared."""
    artifacts, repo = args.artifacts.resolve(), args.feature_repo.resolve()
    env = base_env(root)
    c2i = c2i_exe()
    body = rank_body(artifacts)
    work = work / label if label else work
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    only = set(args.only or [])

    def wanted(name: str) -> bool:
        return not only or any(o in name for o in only)

    def command(name: str, cmd: list[str], cwd: Path = work) -> Case:
        return Case(f"{label}: {name}" if label else name, lambda: timed_command(cmd, env, cwd))

    def service(name: str, cmd: list[str], service_env: Mapping[str, str], port: int, rank: bool) -> Case:
        log = logs / (name.replace(" ", "_").replace("/", "_").replace(":", "") + ".log")
        return Case(f"{label}: {name}" if label else name,
                    lambda: timed_service(cmd, service_env, work, port, log, body if rank else None, args.timeout))  # fmt: skip

    for name, cmd in (
        ("c2i --help", [c2i, "--help"]),
        ("c2i evaluate --help", [c2i, "evaluate", "--help"]),
        ("c2i serve --help", [c2i, "serve", "--help"]),
        ("c2i features online", [c2i, "features", "online", "--repo", str(repo), "--features",
                                 str(artifacts / "features")]),
    ):  # fmt: skip
        if wanted(name):
            yield command(name, cmd)
    if wanted("c2i serve"):
        port = free_port()
        cmd = [c2i, "serve", "--port", str(port), "--artifacts", str(artifacts), "--feature-repo", str(repo)]
        yield service("c2i serve", cmd, env, port, rank=True)
    if wanted("bentoml serve clicks2intent:latest (built bento)"):
        home = work / "bentoml"
        bento_env = env | {"BENTOML_HOME": str(home), ENV.FEATURE_REPO: str(repo)}
        seconds = build_bento(root, artifacts, home, bento_env)
        print(f"built the bento into {home} in {seconds:.1f} s", flush=True)
        port = free_port()
        cmd = [bentoml_exe(), "serve", "clicks2intent:latest", "--port", str(port)]
        yield service("bentoml serve clicks2intent:latest (built bento)", cmd, bento_env, port, rank=True)


def reference_cases(args: argparse.Namespace, work: Path) -> Iterator[Case]:
    """BentoML's own floor in this venv: its import, and a one-endpoint service to its first /readyz."""
    env = base_env(REPO)
    only = set(args.only or [])
    if not only or any(o in "reference: import bentoml" for o in only):
        cmd = [sys.executable, "-c", "import bentoml"]
        yield Case("reference: import bentoml", lambda: timed_command(cmd, env, work))
    if not only or any(o in "reference: bentoml serve hello" for o in only):
        (work / "hello.py").write_text(HELLO_SERVICE)
        port = free_port()
        serve = [bentoml_exe(), "serve", "hello:Hello", "--port", str(port), "--working-dir", str(work)]
        log = work / "hello.log"
        yield Case("reference: bentoml serve hello", lambda: timed_service(serve, env, work, port, log, None, args.timeout))  # fmt: skip


def table(done: Sequence[Case], runs: int) -> str:
    lines = [
        f"| case ({runs} runs) | figure | median s | min s | max s | load1 before | load1 after |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for case in done:
        lb = f"{statistics.median(case.load_before):.2f}" if case.load_before else "-"
        la = f"{statistics.median(case.load_after):.2f}" if case.load_after else "-"
        for figure, values in case.figures.items():
            lines.append(
                f"| {case.name} | {figure} | {statistics.median(values):.2f} | {min(values):.2f} | "
                f"{max(values):.2f} | {lb} | {la} |"
            )
        for failure in case.failures:
            lines.append(f"| {case.name} | FAILED | {failure} | | | | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, default=REPO / "artifacts", help="trained artifacts dir")
    ap.add_argument("--feature-repo", type=Path, default=REPO / "feature_repo", help="its Feast repository")
    ap.add_argument("--runs", type=int, default=3, help="runs per case (interleaved)")
    ap.add_argument(
        "--root",
        action="append",
        metavar="[LABEL=]PATH",
        help="checkout whose code is measured (default: this one); again to compare checkouts",
    )
    ap.add_argument(
        "--work-dir", type=Path, default=None, help="logs, hello service, bento home (default: temp)"
    )
    ap.add_argument("--only", nargs="+", help="cases whose name contains one of these")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds a service may take to be ready")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_startup_"))
    work.mkdir(parents=True, exist_ok=True)
    checkouts = roots(args.root)
    shown_roots = ", ".join(f"{k or 'root'} {v}" for k, v in checkouts.items())
    print(f"{shown_roots}; artifacts {args.artifacts.resolve()}, work dir {work}", flush=True)
    print(f"{os.cpu_count()} CPUs, load average at start {Path('/proc/loadavg').read_text().split()[:3]}")
    start_load = load1()
    per_root = [list(cases(args, work, label, root)) for label, root in checkouts.items()]
    # each case of every checkout next to each other: an A/B sees the same load
    todo = list(reference_cases(args, work)) + [
        case for group in zip(*per_root, strict=True) for case in group
    ]
    for r in range(args.runs):
        for case in todo:
            case.load_before.append(load1())
            try:
                for figure, seconds in case.run().items():
                    case.figures.setdefault(figure, []).append(seconds)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                case.failures.append(str(err))
            case.load_after.append(load1())
            shown = ", ".join(f"{k} {v[-1]:.2f} s" for k, v in case.figures.items())
            print(f"run {r + 1}/{args.runs} {case.name}: {shown or case.failures[-1]}", flush=True)
    print(f"\nload average (1 min): {start_load:.2f} at the start, {load1():.2f} at the end\n")
    print(table(todo, args.runs))
    if args.json:
        figures = {
            c.name: {"figures": c.figures, "load_before": c.load_before, "load_after": c.load_after,
                     "failures": c.failures}
            for c in todo
        }  # fmt: skip
        roots_json = {k: str(v) for k, v in checkouts.items()}
        args.json.write_text(json.dumps({"roots": roots_json, "cases": figures}, indent=2))
    return 1 if any(c.failures for c in todo) else 0


if __name__ == "__main__":
    sys.exit(main())
