"""``c2i evaluate`` (the four-variant ablation on a data directory, or the MSNBC protocol) and
``c2i encoder-report``.

Each handler turns its flags into the library's config dataclasses (:class:`AblationConfig`,
:class:`FeastRun`, :class:`MsnbcRun`, :class:`EncoderReportConfig`), runs it and prints the tables.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from clicks2intent.cli.flags import given
from clicks2intent.errors import ArtifactError, ConfigError
from clicks2intent.names import columns as C
from clicks2intent.names.paths import ARTIFACTS

if TYPE_CHECKING:  # the stages (torch, pandas, scikit-learn, XGBoost) are imported by the handlers
    from clicks2intent.evaluation.ablation import AblationConfig, FeastRun
    from clicks2intent.evaluation.encoder_probe import EncoderReportConfig
    from clicks2intent.evaluation.msnbc import MsnbcRun

# The library's choice lists, repeated so that --help imports no stage (tests/test_cli_help.py checks them).
PREFIX_MODES = ("every", "one")  # clicks2intent.evaluation.msnbc.PREFIX_MODES
TASKS = ("tile_ranking", "conversion")  # clicks2intent.models.training_sets.TILE_RANKING, CONVERSION
THRESHOLD_RULES = ("pooled", "per_model")  # clicks2intent.evaluation.ablation.THRESHOLD_RULES


# --- c2i evaluate ----------------------------------------------------------------------------------
def _ablation_config(args: argparse.Namespace) -> AblationConfig:
    from clicks2intent.evaluation.ablation import AblationConfig

    return AblationConfig(
        **given(
            n_estimators=args.n_estimators,
            learning_rate=args.learning_rate,
            max_depth=args.max_depth,
            class_weight_power=args.class_weight_power,
            n_jobs=args.n_jobs,
            none_sample_rate=args.none_sample_rate,
            n_boot=args.n_boot,
            random_state=args.seed,
            model_seeds=args.model_seeds,
            threshold=args.threshold,
        )
    )


def ablation_inputs(args: argparse.Namespace) -> tuple[FeastRun | MsnbcRun, AblationConfig]:
    """The run (a data directory through Feast, or MSNBC) and the model settings ``c2i evaluate``'s flags
    describe."""
    from clicks2intent.evaluation.ablation import FeastRun
    from clicks2intent.evaluation.msnbc import MsnbcRun

    config = _ablation_config(args)
    if args.dataset == "msnbc":
        if not args.path:
            raise ConfigError("--dataset msnbc needs the .seq PATH")
        msnbc = MsnbcRun(
            path=args.path,
            limit=args.limit,
            encoder_dir=args.encoder,
            intent_dir=args.intent,
            work_dir=args.work_dir,
            **given(prefixes=args.prefixes, max_train_rows=args.max_rows, max_eval_rows=args.max_eval_rows),
        )
        return msnbc, config
    sim = FeastRun(
        repo_path=args.repo,
        data_dir=args.data,
        features_dir=args.features,
        reports_dir=args.reports,
        encoder_dir=args.encoder or str(ARTIFACTS.encoder),
        intent_dir=args.intent or str(ARTIFACTS.intent),
        taxonomy_path=args.taxonomy,
        max_rows=args.max_rows,
        save_models=not args.no_save,
        tasks=tuple(args.tasks),
        **given(conversion_embargo_days=args.conversion_embargo_days),
    )
    return sim, config


def evaluate_command(args: argparse.Namespace) -> int:
    """``c2i evaluate [--data DIR] [--dataset msnbc PATH]``."""
    from clicks2intent.evaluation import reports
    from clicks2intent.evaluation.ablation import FeastRun
    from clicks2intent.models.store import use_default_home

    run, config = ablation_inputs(args)
    home = use_default_home(args.bentoml_home) if isinstance(run, FeastRun) else None
    report, paths = reports.evaluate(run, config, args.reports)
    if report.get("saved_models"):
        print(f"saved to the BentoML store at {home}: " + ", ".join(report["saved_models"].values()))
    print(reports.tables_markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``c2i evaluate`` (``training/train_models.py`` takes the same)."""
    p.add_argument(
        "--dataset",
        choices=("data", "simulated", "msnbc"),
        default="data",
        help="data (default; 'simulated' is the same): the --data directory through Feast, oracle rows "
        "where it holds truth/; msnbc: the real-data protocol on PATH",
    )
    p.add_argument("path", nargs="?", help="msnbc: the .seq file (e.g. ../shared/data/real/msnbc/*.seq)")
    p.add_argument("--repo", default="feature_repo", help="Feast repository")
    p.add_argument(
        "--data",
        default=str(ARTIFACTS.data),
        help="task logs: tile_impressions/conversions parquet (+ truth/)",
    )
    p.add_argument(
        "--features",
        default=str(ARTIFACTS.features),
        help="c2i features build's output (its world.yaml names the tiles, products and Feast prefix)",
    )
    p.add_argument("--reports", default=str(ARTIFACTS.reports), help="report directory")
    p.add_argument(
        "--encoder",
        default=None,
        help="encoder dir (simulated: version stamp; msnbc: a trained MSNBC encoder)",
    )
    p.add_argument(
        "--intent", default=None, help="distilled intent classifier dir (msnbc: its labels, else a proxy)"
    )
    p.add_argument("--taxonomy", default=str(ARTIFACTS.taxonomy))
    p.add_argument(
        "--bentoml-home", default=None, help="model store (default: $BENTOML_HOME or artifacts/bentoml)"
    )
    p.add_argument("--no-save", action="store_true", help="do not write models to the BentoML store")
    p.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="rows per task before the split (default: all); msnbc: training examples per task "
        "(default: MsnbcRun.max_train_rows)",
    )
    p.add_argument(
        "--prefixes",
        choices=PREFIX_MODES,
        default=None,
        help="msnbc: every prefix of each session is an example, or one random cut per session "
        "(default: MsnbcRun.prefixes)",
    )
    p.add_argument(
        "--max-eval-rows",
        type=int,
        default=None,
        help="msnbc: validation and test examples per task, each, sampled (default: MsnbcRun.max_eval_rows)",
    )
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--limit", type=int, default=None, help="msnbc: read only the first N sessions")
    p.add_argument(
        "--work-dir", default=str(ARTIFACTS.msnbc_eval), help="msnbc: where the MSNBC encoder is trained"
    )
    p.add_argument(
        "--conversion-embargo-days",
        type=float,
        default=None,
        help="default: FeastRun.conversion_embargo_days",
    )
    p.add_argument("--n-estimators", type=int, default=None, help="default: AblationConfig.n_estimators")
    p.add_argument("--learning-rate", type=float, default=None, help="default: AblationConfig.learning_rate")
    p.add_argument("--max-depth", type=int, default=None, help="default: AblationConfig.max_depth")
    p.add_argument(
        "--class-weight-power",
        type=float,
        default=None,
        help="0 unweighted … 1 balanced (default: AblationConfig.class_weight_power)",
    )
    p.add_argument("--n-jobs", type=int, default=None, help="default: AblationConfig.n_jobs")
    p.add_argument(
        "--none-sample-rate",
        type=float,
        default=None,
        help="conversion: share of 'none' training rows kept (inverse-weighted); 1 keeps all "
        "(default: AblationConfig.none_sample_rate)",
    )
    p.add_argument("--n-boot", type=int, default=None, help="default: AblationConfig.n_boot")
    p.add_argument("--seed", type=int, default=None, help="default: AblationConfig.random_state")
    p.add_argument(
        "--model-seeds",
        type=int,
        default=None,
        help="model seeds per variant (seed, seed+1, ...) for the conversion task: each variant's spread and "
        "each gap's mean and sign per seed (default: AblationConfig.model_seeds)",
    )
    p.add_argument(
        "--threshold",
        choices=THRESHOLD_RULES,
        default=None,
        help="conversion F1 threshold per variant: pooled = tuned once on validation with the probabilities "
        "averaged over its seeds; per_model = each model's own (default: AblationConfig.threshold)",
    )


# --- c2i encoder-report ----------------------------------------------------------------------------
def encoder_report_command(args: argparse.Namespace) -> int:
    """``c2i encoder-report``: probe the embedding, write the JSON + Markdown, print the Markdown."""
    if args.dataset == "msnbc" and not (args.path or args.msnbc):
        raise ConfigError("--dataset msnbc needs the .seq PATH")
    if args.path and args.dataset != "msnbc":
        raise ConfigError(f"PATH {args.path!r} is only read with --dataset msnbc")
    from clicks2intent.evaluation import encoder_probe

    cfg = encoder_report_config(args)
    try:
        report = encoder_probe.encoder_report(cfg)
    except FileNotFoundError as err:  # a missing events/truth/encoder path given on the command line
        raise ArtifactError(str(err)) from err
    json_path, md_path = encoder_probe.write_report(report, args.out)
    print(encoder_probe.to_markdown(report))
    print(f"report: {json_path} {md_path}")
    return 0


def encoder_report_config(args: argparse.Namespace) -> EncoderReportConfig:
    """The parsed ``encoder-report`` flags as the probe's config (flags not given: its defaults)."""
    from clicks2intent.evaluation.encoder_probe import EncoderReportConfig

    return EncoderReportConfig(
        encoder=args.encoder,
        events=args.events,
        truth=args.truth,
        msnbc=args.path or args.msnbc,
        msnbc_limit=args.msnbc_limit,
        msnbc_encoder=args.msnbc_encoder,
        retrain=args.retrain,
        out=args.out,
        **given(
            channel=args.channel,
            msnbc_epochs=args.msnbc_epochs,
            test_fraction=args.test_fraction,
            max_sessions=args.max_sessions,
            max_train_rows=args.max_train_rows,
            max_test_rows=args.max_test_rows,
            n_boot=args.n_boot,
            seed=args.seed,
        ),
    )


def _register_encoder_report(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("encoder-report", help="probe the session embedding against simple baselines")
    p.add_argument(
        "--dataset",
        choices=("simulated", "msnbc"),
        default=None,
        help="msnbc: the real-data protocol on PATH (prefix -> next category, XGBoost baseline, paired intervals)",
    )
    p.add_argument("path", nargs="?", help="msnbc: the .seq file (e.g. ../shared/data/real/msnbc/*.seq)")
    p.add_argument("--encoder", help="encoder dir for the simulated events")
    p.add_argument("--events", help="simulated events parquet")
    p.add_argument("--truth", help="simulator truth: truth/session_truth.parquet")
    p.add_argument(
        "--channel",
        choices=list(C.CHANNELS),
        default=None,
        help="sessions probed (default: EncoderReportConfig.channel)",
    )
    p.add_argument("--msnbc", help="same as --dataset msnbc PATH (kept for old scripts)")
    p.add_argument("--msnbc-limit", type=int, default=None, help="first N MSNBC sessions (default all)")
    p.add_argument("--msnbc-encoder", help="MSNBC encoder dir (used if it exists, else trained there)")
    p.add_argument(
        "--msnbc-epochs",
        type=int,
        default=None,
        help="epochs for the MSNBC encoder (default: EncoderReportConfig.msnbc_epochs)",
    )
    p.add_argument("--retrain", action="store_true", help="train the MSNBC encoder even if the dir exists")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        help="latest share of sessions for testing (default: EncoderReportConfig.test_fraction)",
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help="simulated sessions probed, a uniform sample (default: EncoderReportConfig.max_sessions)",
    )
    p.add_argument(
        "--max-train-rows",
        type=int,
        default=None,
        help="msnbc: training prefixes, sampled (default: EncoderReportConfig.max_train_rows)",
    )
    p.add_argument(
        "--max-test-rows",
        type=int,
        default=None,
        help="msnbc: test prefixes, sampled (default: EncoderReportConfig.max_test_rows)",
    )
    p.add_argument(
        "--n-boot",
        type=int,
        default=None,
        help="paired bootstrap resamples (default: EncoderReportConfig.n_boot)",
    )
    p.add_argument("--seed", type=int, default=None, help="default: EncoderReportConfig.seed")
    p.add_argument("--out", default=str(ARTIFACTS.reports), help="report directory")
    p.set_defaults(func=encoder_report_command)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i evaluate`` and ``c2i encoder-report``."""
    p = subparsers.add_parser(
        "evaluate",
        help="four-variant ablation (baseline/labels/embedding/both) per task; saves the v1 models",
    )
    add_evaluate_arguments(p)
    p.set_defaults(func=evaluate_command)
    _register_encoder_report(subparsers)
