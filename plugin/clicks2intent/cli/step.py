"""``c2i step NAME -- COMMAND …``: run one step of a pipeline (``make demo``), time it, keep its log.

The step's standard output (its results: tables, summaries) reaches the terminal; its standard error
(progress bars, library log lines, third-party warnings) goes to ``LOG_DIR/<step>.log``, and one line
says how long the step took and where its log is. ``--quiet`` sends the standard output to the log as
well (after the standard error) and shows only its last line. Each step appends ``name, seconds, exit status, log`` to
``LOG_DIR/steps.tsv``, which ``c2i summary`` prints as the time table at the end of the demo. A failing
step shows the end of its log and passes its exit status on.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from clicks2intent.names.paths import DEFAULT_ROOT

STEPS_FILE = "steps.tsv"
TAIL_LINES = 25  # of a failed step's log


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "step"


def run_step(name: str, command: list[str], log_dir: Path, quiet: bool = False) -> int:
    """Run ``command`` as the step ``name`` (see the module docstring); returns its exit status."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{_slug(name)}.log"
    print(f"== {name}", flush=True)
    t0 = time.perf_counter()
    with log.open("w", encoding="utf-8") as err:
        proc = subprocess.run(command, stderr=err, stdout=subprocess.PIPE if quiet else None, text=True)
        if quiet:
            err.write(proc.stdout)  # after the step's stderr: its results stay in one piece
    seconds = time.perf_counter() - t0
    with (log_dir / STEPS_FILE).open("a", encoding="utf-8") as f:
        f.write(f"{name}\t{seconds:.1f}\t{proc.returncode}\t{log}\n")
    if proc.returncode:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        print("\n".join(lines[-TAIL_LINES:]), file=sys.stderr)
        print(f"-- {name}: failed (exit {proc.returncode}) after {seconds:.1f} s; log {log}", flush=True)
        return proc.returncode
    results = proc.stdout.splitlines() if quiet else []
    last = next((s.strip() for s in reversed(results) if s.strip()), "")
    print(f"-- {name}: {seconds:.1f} s{f' ({last[:120]})' if last else ''}; log {log}", flush=True)
    return 0


def read_steps(log_dir: Path) -> list[tuple[str, float, int]]:
    """The steps recorded in ``LOG_DIR/steps.tsv``: (name, seconds, exit status)."""
    path = log_dir / STEPS_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            out.append((parts[0], float(parts[1]), int(parts[2])))
    return out


def steps_table(steps: list[tuple[str, float, int]]) -> str:
    """The per-step time table (Markdown), slowest share first in a column."""
    total = sum(s for _, s, _ in steps) or 1.0
    lines = ["| step | seconds | share |", "|---|---:|---:|"]
    lines += [f"| {n}{'' if rc == 0 else ' (failed)'} | {s:.1f} | {s / total:.0%} |" for n, s, rc in steps]
    lines.append(f"| total | {sum(s for _, s, _ in steps):.1f} | |")
    return "\n".join(lines)


def _step_command(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("c2i step: error: no command given after --", file=sys.stderr)
        return 2
    return run_step(args.name, command, Path(args.log_dir), quiet=args.quiet)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i step``."""
    p = subparsers.add_parser("step", help="run one pipeline step: time it, keep its log, one line out")
    p.add_argument("name", help="the step's name, as the time table shows it")
    p.add_argument("--log-dir", default=str(DEFAULT_ROOT / "logs"), help="where logs and steps.tsv go")
    p.add_argument(
        "--quiet", action="store_true", help="its standard output to the log too (last line shown)"
    )
    p.add_argument("command", nargs="+", help="the command and its arguments, after --")
    p.set_defaults(func=_step_command)
