"""``c2i sweep``: the value of identity resolution (tile ranking re-run at several link rates)."""

from __future__ import annotations

import argparse

from clicks2intent.cli.flags import given
from clicks2intent.names.paths import ARTIFACTS


def _sweep_command(args: argparse.Namespace) -> int:
    from clicks2intent.evaluation.ablation import AblationConfig
    from clicks2intent.evaluation.sweep import SweepRun, run_sweep, sweep_markdown, sweep_values, write_sweep

    parameter, values = sweep_values(args.spec)  # no spec: the library's link-rate sweep
    run = SweepRun(
        parameter=parameter,
        values=values,
        root=args.artifacts,
        reports_dir=args.reports or str(ARTIFACTS.reports),
        **given(max_rows=args.max_rows),
    )
    config = AblationConfig(**given(n_boot=args.n_boot, n_jobs=args.n_jobs, random_state=args.seed))
    report = run_sweep(run, config)
    paths = write_sweep(report, run.reports_dir)
    print(sweep_markdown(report))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i sweep``."""
    p = subparsers.add_parser("sweep", help="re-simulate at several link rates and re-run the tile ablation")
    p.add_argument(
        "spec",
        nargs="?",
        help="PARAMETER=V1,V2,... (link_rate or link_moment_odds; default: link_rate at SweepRun.values)",
    )
    p.add_argument(
        "--artifacts",
        default=str(ARTIFACTS.root),
        help="the main run's artifacts root (data, embeddings, intent, features)",
    )
    p.add_argument("--reports", default=None, help=f"report directory (default {ARTIFACTS.reports})")
    p.add_argument("--max-rows", type=int, help="clicked impressions per value (default: SweepRun.max_rows)")
    p.add_argument("--n-boot", type=int, help="default: AblationConfig.n_boot")
    p.add_argument("--n-jobs", type=int, help="default: AblationConfig.n_jobs")
    p.add_argument("--seed", type=int, help="default: AblationConfig.random_state")
    p.set_defaults(func=_sweep_command)
