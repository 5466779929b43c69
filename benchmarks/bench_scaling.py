"""Benchmark: the whole pipeline at 1x, 10x and 30x the demo, wall time and peak memory per step.

    nice -n 10 .venv/bin/python benchmarks/bench_scaling.py --root /tmp/q28/scale --scales 1 10
    .venv/bin/python benchmarks/bench_scaling.py --root /tmp/q28/scale --report   # table + plot only

Each scale gets its own directory (``ROOT/x<scale>``) with an ``artifacts/`` layout and a copy of
``feature_repo/`` whose definitions point at it; every step runs there as its own process, exactly the
command ``make demo`` runs (``c2i …``, ``feast …``), so nothing outside ``ROOT`` is read or written.
Steps, in order:

* ``simulate`` (``c2i simulate --customers 9000 x scale``), then ``split day``: the sessions that end
  on the last simulated day (and the links made that day) move to ``day/`` — the history the pipeline
  runs on, and a second day for the daily job;
* ``validate``, ``train encoder`` (a bounded sample: 50k sessions, ``--epochs 2``), ``embed``;
* ``taxonomy`` (the embedded LLM proposes labels; run at the smallest scale only and copied to the
  others: it reads a fixed-size sample), ``label`` (the keyword rule, the LLM where the rule is unsure,
  3,000 sessions), ``distill`` (train the classifier, label every session, its truth report);
* ``features build``, ``feast apply``, ``feast materialize`` (the history, to the day's start);
* ``evaluate`` (``c2i evaluate``: training sets from Feast, the XGBoost fits, the report; its own
  report gives the training-set and fit seconds, shown as ``evaluate: training sets`` / ``: fits``);
* ``daily`` (``c2i features daily``: embed and label the day with the trained models, append the
  features, ``materialize-incremental``) and ``daily re-run`` (the same call again: changes nothing).

Per step: wall seconds, the peak resident memory of the step's whole process tree (psutil, sampled
every 0.1 s: Ray, the LLM server and Feast children count) and of its largest single process
(``ru_maxrss``), the 1-minute load average before and after. A step is stopped, and the run with it,
when the machine's available memory drops under ``--min-free-gb`` (the box is shared). Results are
kept in ``ROOT/results.json`` (a re-run replaces the steps it runs); the table is printed and
``ROOT/scaling.png`` plots time and memory against events, log-log, one line per step: a step steeper
than the dashed n log n guide grows super-linearly (the table's last column flags it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
C2I = str(VENV_BIN / "c2i")
FEAST = str(VENV_BIN / "feast")
DEMO_CUSTOMERS = 9000
SEED = 7
LABEL_SAMPLE = 3000
DAY = "2024-06-29T00:00:00"  # the last simulated day (the window ends 2024-06-30): the daily job's day
HISTORY_START = "2000-01-01T00:00:00"
# A step counts as super-linear when it grew this much more than n log n between two scales (the box is
# shared: a few tens of percent is noise).
SUPERLINEAR_TOLERANCE = 1.3


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    smallest_only: bool = False  # scale-independent (a fixed-size sample): run once, copied to the others


def steps(scale: int) -> list[Step]:
    ev = "artifacts/data/events.parquet"
    split = (
        "from clicks2intent.features.daily import split_off_day; "
        f"r = split_off_day('artifacts/data', 'day', '{DAY}'); print(r)"
    )
    return [
        Step(
            "simulate",
            (
                C2I,
                "simulate",
                "--out",
                "artifacts/data",
                "--customers",
                str(DEMO_CUSTOMERS * scale),
                "--seed",
                str(SEED),
            ),
        ),  # fmt: skip
        Step("split day", (sys.executable, "-c", split)),
        Step("validate", (C2I, "validate", ev, "--world", "artifacts/data/world.yaml")),
        Step(
            "train encoder",
            (
                C2I,
                "train-encoder",
                "--events",
                ev,
                "--channel",
                "web",
                "--out",
                "artifacts/encoder",
                "--max-train-sessions",
                "50000",
                "--epochs",
                "2",
                "--quiet",
            ),
        ),  # fmt: skip
        Step(
            "embed",
            (
                C2I,
                "embed",
                "--encoder",
                "artifacts/encoder",
                "--events",
                ev,
                "--channel",
                "web",
                "--out",
                "artifacts/embeddings/session_embeddings.parquet",
                "--quiet",
            ),
        ),  # fmt: skip
        Step(
            "taxonomy",
            (C2I, "taxonomy", "generate", "--events", ev, "--out", "artifacts/taxonomy/taxonomy.yaml"),
            smallest_only=True,
        ),  # fmt: skip
        Step(
            "label",
            (
                C2I,
                "taxonomy",
                "label",
                "--events",
                ev,
                "--taxonomy",
                "artifacts/taxonomy/taxonomy.yaml",
                "--sample",
                str(LABEL_SAMPLE),
                "--out",
                "artifacts/taxonomy/llm_labels.parquet",
            ),
        ),  # fmt: skip
        Step(
            "distill",
            (
                C2I,
                "taxonomy",
                "distill",
                "--labels",
                "artifacts/taxonomy/llm_labels.parquet",
                "--out",
                "artifacts/intent",
                "--embeddings",
                "artifacts/embeddings/session_embeddings.parquet",
                "--truth",
                "artifacts/data/truth/session_truth.parquet",
                "--events",
                ev,
            ),
        ),  # fmt: skip
        Step("features build", (C2I, "features", "build")),
        Step("feast apply", (FEAST, "-c", "feature_repo", "apply")),
        Step("feast materialize", (FEAST, "-c", "feature_repo", "materialize", HISTORY_START, DAY)),
        Step("evaluate", (C2I, "evaluate", "--no-save")),
        Step("daily", (C2I, "features", "daily", "--day", "day")),
        Step("daily re-run", (C2I, "features", "daily", "--day", "day")),
    ]


STEP_NAMES = [s.name for s in steps(1)]


def prepare(scale_dir: Path) -> None:
    """An artifacts/ layout and a copy of the Feast repo whose definitions read this scale's features."""
    (scale_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    (scale_dir / "tmp").mkdir(exist_ok=True)
    repo = scale_dir / "feature_repo"
    (repo / "data").mkdir(parents=True, exist_ok=True)
    for name in ("feature_store.yaml", "feature_store.ray.yaml", "feature_definitions.py", ".feastignore"):
        shutil.copy2(REPO / "feature_repo" / name, repo / name)


def child_env(scale_dir: Path) -> dict[str, str]:
    art = str((scale_dir / "artifacts").resolve())
    return dict(
        os.environ,
        OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),  # the Makefile's
        C2I_ARTIFACTS=art,
        BENTOML_HOME=f"{art}/bentoml",
        TMPDIR=str((scale_dir / "tmp").resolve()),
        RAY_TMPDIR=str((scale_dir / "tmp").resolve()),
    )


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


class LowMemory(RuntimeError):
    pass


def run_step(step: Step, scale_dir: Path, log: Path, min_free_gb: float, timeout_s: float) -> dict:
    """Run one step as a child process; its wall seconds, peak tree RSS and largest process RSS."""
    load_before = os.getloadavg()[0]
    before = os.times()
    t0 = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(
            step.argv, cwd=scale_dir, env=child_env(scale_dir), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        proc = psutil.Process(child.pid)
        peak, min_avail, reason = 0, math.inf, None
        while True:
            try:
                rc = child.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            peak = max(peak, _tree_rss(proc))
            avail = psutil.virtual_memory().available
            min_avail = min(min_avail, avail)
            if avail < min_free_gb * 2**30:
                reason = f"available memory {avail / 2**30:.1f} GB < {min_free_gb} GB: step stopped"
            elif time.perf_counter() - t0 > timeout_s:
                reason = f"over {timeout_s:.0f} s: step stopped"
            if reason:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                rc = -9
                break
    seconds = time.perf_counter() - t0
    after = os.times()
    # ru_maxrss of the children waited for so far: the largest single process of this step (or of an
    # earlier, bigger one; each step's own peak is the tree figure)
    maxrss_kb = __import__("resource").getrusage(__import__("resource").RUSAGE_CHILDREN).ru_maxrss
    return {
        "step": step.name,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(
            (after.children_user + after.children_system) - (before.children_user + before.children_system), 2
        ),  # fmt: skip
        "peak_rss_mb": round(peak / 2**20, 1),
        "largest_process_rss_mb_so_far": round(maxrss_kb / 1024, 1),
        "min_available_gb": round(min_avail / 2**30, 2) if min_avail < math.inf else None,
        "load1_before": round(load_before, 2),
        "load1_after": round(os.getloadavg()[0], 2),
        "rc": rc,
        "stopped": reason,
        "log": str(log),
    }


def n_events(scale_dir: Path) -> int:
    """Events the pipeline ran on (the history) plus the day's."""
    total = 0
    for p in (scale_dir / "artifacts/data/events.parquet", scale_dir / "day/events.parquet"):
        if p.is_file():
            total += pq.ParquetFile(p).metadata.num_rows
    return total


def evaluate_phases(scale_dir: Path) -> dict[str, float]:
    """Training-set seconds (``c2i evaluate``'s log: "<task>: N rows from Feast … in S s") and the XGBoost
    fit seconds (its report's ``fit_seconds`` per variant), summed over the tasks."""
    phases: dict[str, float] = {}
    log = scale_dir / "logs" / "evaluate.log"
    if log.is_file():
        found = re.findall(r"rows from Feast \(.*?\) in ([0-9.]+)s", log.read_text(errors="replace"))
        phases["training sets"] = round(sum(float(x) for x in found), 2)
    path = scale_dir / "artifacts/reports/ablation.json"
    if path.is_file():
        report = json.loads(path.read_text())
        fits = 0.0
        for task in report.get("tasks", []):
            for variant in (report.get(task, {}).get("variants") or {}).values():
                fits += float(variant.get("fit_seconds", 0.0) or 0.0)
        phases["fits"] = round(fits, 2)
    return phases


def load_results(root: Path) -> dict:
    path = root / "results.json"
    return json.loads(path.read_text()) if path.is_file() else {"scales": {}}


def save_results(root: Path, results: dict) -> None:
    tmp = root / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(root / "results.json")


def run_scale(scale: int, args: argparse.Namespace, results: dict) -> bool:
    scale_dir = args.root / f"x{scale}"
    prepare(scale_dir)
    logs = scale_dir / "logs"
    logs.mkdir(exist_ok=True)
    entry = results["scales"].setdefault(str(scale), {"customers": DEMO_CUSTOMERS * scale, "steps": {}})
    smallest = min(args.all_scales)
    for step in steps(scale):
        if args.steps and step.name not in args.steps:
            continue
        if step.smallest_only and scale != smallest:
            src = args.root / f"x{smallest}" / "artifacts/taxonomy"
            shutil.copytree(src, scale_dir / "artifacts/taxonomy", dirs_exist_ok=True)
            print(f"x{scale} {step.name}: copied from x{smallest} (scale-independent)", flush=True)
            continue
        log = logs / f"{step.name.replace(' ', '_')}.log"
        print(f"x{scale} {step.name} ... (load {os.getloadavg()[0]:.2f}, free "
              f"{psutil.virtual_memory().available / 2**30:.1f} GB)", flush=True)  # fmt: skip
        rec = run_step(step, scale_dir, log, args.min_free_gb, args.step_timeout)
        entry["steps"][step.name] = rec
        if step.name == "evaluate":
            entry["evaluate_phases"] = evaluate_phases(scale_dir)
        entry["events"] = n_events(scale_dir)
        save_results(args.root, results)
        print(f"x{scale} {step.name}: {rec['seconds']:.1f} s, peak {rec['peak_rss_mb']:.0f} MB, rc {rec['rc']}"
              f"{' (' + rec['stopped'] + ')' if rec['stopped'] else ''}", flush=True)  # fmt: skip
        if rec["rc"] != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print("\n".join(tail), file=sys.stderr)
            return False
    return True


# --- the table and the plot ----------------------------------------------------------------------------
def _growth_flags(results: dict) -> dict[str, str]:
    """Per step: its time ratio between the two largest scales against n log n's."""
    scales = sorted(results["scales"], key=int)
    flags: dict[str, str] = {}
    if len(scales) < 2:
        return flags
    for name in STEP_NAMES + ["evaluate: training sets", "evaluate: fits"]:
        pts = [(results["scales"][s].get("events", 0), _seconds(results["scales"][s], name)) for s in scales]
        pts = [(n, t) for n, t in pts if n and t]
        if len(pts) < 2:
            continue
        (n1, t1), (n2, t2) = pts[-2], pts[-1]
        nlogn = (n2 * math.log(n2)) / (n1 * math.log(n1))
        flags[name] = f"{t2 / t1:.1f}x vs n log n {nlogn:.1f}x" + (
            " SUPER-LINEAR" if t2 / t1 > SUPERLINEAR_TOLERANCE * nlogn else ""
        )
    return flags


def _seconds(entry: dict, name: str) -> float | None:
    if name.startswith("evaluate: "):
        return entry.get("evaluate_phases", {}).get(name.split(": ", 1)[1])
    rec = entry["steps"].get(name)
    return rec["seconds"] if rec and rec["rc"] == 0 else None


def table(results: dict) -> str:
    scales = sorted(results["scales"], key=int)
    head = (
        "| step | "
        + " | ".join(
            f"x{s}: {results['scales'][s].get('events', 0):,} events — s / peak MB / load" for s in scales
        )
        + " | growth (last two scales) |"
    )
    lines = [head, "|---|" + "---|" * (len(scales) + 1)]
    flags = _growth_flags(results)
    for name in STEP_NAMES + ["evaluate: training sets", "evaluate: fits"]:
        cells = []
        for s in scales:
            entry = results["scales"][s]
            if name.startswith("evaluate: "):
                t = _seconds(entry, name)
                cells.append("" if t is None else f"{t:.1f} s (in evaluate)")
                continue
            rec = entry["steps"].get(name)
            if rec is None:
                cells.append("copied" if name == "taxonomy" and s != scales[0] else "")
            else:
                fail = "" if rec["rc"] == 0 else f" FAILED rc {rec['rc']}"
                cells.append(
                    f"{rec['seconds']:.1f} / {rec['peak_rss_mb']:,.0f} / {rec['load1_before']:.1f}{fail}"
                )
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {flags.get(name, '')} |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted(results["scales"], key=int)
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    for name in STEP_NAMES:
        xs, ts, ms = [], [], []
        for s in scales:
            entry = results["scales"][s]
            rec = entry["steps"].get(name)
            if rec and rec["rc"] == 0 and entry.get("events"):
                xs.append(entry["events"])
                ts.append(max(rec["seconds"], 0.05))
                ms.append(max(rec["peak_rss_mb"], 1.0))
        if len(xs) >= 1:
            axes[0].plot(xs, ts, marker="o", label=name)
            axes[1].plot(xs, ms, marker="o", label=name)
    all_x = [results["scales"][s].get("events", 0) for s in scales if results["scales"][s].get("events")]
    if len(all_x) >= 2:
        lo, hi = min(all_x), max(all_x)
        guide = [lo, hi]
        for ax, base in ((axes[0], 10.0), (axes[1], 1000.0)):
            ax.plot(
                guide, [base, base * hi * math.log(hi) / (lo * math.log(lo))], "k--", lw=1, label="n log n"
            )
    for ax, ylabel in ((axes[0], "wall seconds"), (axes[1], "peak RSS of the step's processes (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events (simulated day included)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].axhline(24 * 1024, color="red", lw=1, label="machine RAM (24 GB)")
    axes[0].legend(fontsize=7, ncol=2)
    shown = " / ".join(f"{s}x" for s in scales)
    fig.suptitle(f"clicks2intent pipeline at {shown} the demo (shared 2-core box)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/tmp/q28/scale"))
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--steps", nargs="+", choices=STEP_NAMES, help="run only these steps (default: all)")
    ap.add_argument("--min-free-gb", type=float, default=4.0, help="stop when available memory falls below")
    ap.add_argument("--step-timeout", type=float, default=4 * 3600.0)
    ap.add_argument("--report", action="store_true", help="print the table and write the plot only")
    args = ap.parse_args()
    args.root = args.root.resolve()
    args.root.mkdir(parents=True, exist_ok=True)
    results = load_results(args.root)
    args.all_scales = sorted({*args.scales, *(int(s) for s in results["scales"])})
    if not args.report:
        for scale in args.scales:
            if not run_scale(scale, args, results):
                print(f"x{scale}: stopped at a failed step", file=sys.stderr)
                break
    print(table(results))
    plot(results, args.root / "scaling.png")
    print(f"plot: {args.root / 'scaling.png'}; results: {args.root / 'results.json'}")


if __name__ == "__main__":
    main()
