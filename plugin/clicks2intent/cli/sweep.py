"""``c2i sweep``: the value of identity resolution (tile ranking re-run at several link rates)."""

from __future__ import annotations

import argparse

from clicks2intent.evaluation.ablation import AblationConfig
from clicks2intent.evaluation.sweep import SweepRun, run_sweep, sweep_markdown, sweep_values, write_sweep
from clicks2intent.names.paths import ARTIFACTS


def _sweep_command(args: argparse.Namespace) -> int:
    parameter, values = sweep_values(args.spec)
    run = SweepRun(
        parameter=parameter,
        values=values,
        root=args.artifacts,
        reports_dir=args.reports or str(ARTIFACTS.reports),
        max_rows=args.max_rows,
    )
    config = AblationConfig(n_boot=args.n_boot, n_jobs=args.n_jobs, random_state=args.seed)
    report = run_sweep(run, config)
    paths = write_sweep(report, run.reports_dir)
    print(sweep_markdown(report))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i sweep``."""
    d = SweepRun()
    p = subparsers.add_parser("sweep", help="re-simulate at several link rates and re-run the tile ablation")
    p.add_argument(
        "spec",
        nargs="?",
        default=f"{d.parameter}=" + ",".join(f"{v:g}" for v in d.values),
        help="PARAMETER=V1,V2,... (default %(default)s; link_rate or link_moment_odds)",
    )
    p.add_argument(
        "--artifacts",
        default=d.root,
        help="the main run's artifacts root (data, embeddings, intent, features)",
    )
    p.add_argument("--reports", default=None, help=f"report directory (default {ARTIFACTS.reports})")
    p.add_argument("--max-rows", type=int, default=d.max_rows, help="clicked impressions per value")
    p.add_argument("--n-boot", type=int, default=AblationConfig.n_boot)
    p.add_argument("--n-jobs", type=int, default=AblationConfig.n_jobs)
    p.add_argument("--seed", type=int, default=AblationConfig.random_state)
    p.set_defaults(func=_sweep_command)
