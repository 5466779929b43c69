"""``c2i <command> --help`` and a mistyped flag import no pipeline stage, and the flags whose defaults the
handlers resolve (clicks2intent.cli.flags) still give the library's defaults."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from clicks2intent.cli import COMMANDS, build_parser

HEAVY = ("torch", "feast", "bentoml", "pandas")

# In a fresh interpreter: every command's --help, each sub-command's --help and an unknown flag, noting
# after each which heavy modules are loaded so far (the first command that pulls one in is named).
PROBE = """
import argparse, contextlib, io, json, sys
from clicks2intent.cli import COMMANDS, build_parser, main

HEAVY = {heavy!r}
found = {{}}
def run(argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
    loaded = [m for m in HEAVY if m in sys.modules]
    if loaded and not found:
        found[" ".join(argv)] = loaded
def subcommands(command):
    for action in build_parser(command)._actions:  # the registration `run` just did, no new imports
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            for sub in action.choices[command]._actions:
                if isinstance(sub, argparse._SubParsersAction):
                    yield from sub.choices
runs = 0
for command in COMMANDS:
    for argv in ([command, "--help"], [command, "--no-such-flag"]):
        run(argv)
        runs += 1
    for name in subcommands(command):
        run([command, name, "--help"])
        runs += 1
print(json.dumps({{"runs": runs, "first_heavy": found}}))
"""


def test_help_and_argument_errors_import_no_stage() -> None:
    """``--help`` of every command in ``COMMANDS`` (and of their sub-commands) loads neither torch, Feast,
    BentoML nor pandas: only the handlers import the stages."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["runs"] >= 2 * len(COMMANDS)
    assert result["first_heavy"] == {}, f"the first command importing a stage: {result['first_heavy']}"


def _args(*argv: str) -> argparse.Namespace:
    return build_parser(argv[0]).parse_args(list(argv))


def test_repeated_choice_lists_equal_the_librarys() -> None:
    from clicks2intent.cli import evaluate, features, intent
    from clicks2intent.evaluation.msnbc import PREFIX_MODES
    from clicks2intent.features.ray_jobs import ENGINES
    from clicks2intent.intent.labelling import SHORTLIST_MODES
    from clicks2intent.intent.taxonomy import PROPOSAL_AUTO, PROPOSAL_MODES
    from clicks2intent.models.training_sets import CONVERSION, TILE_RANKING

    assert evaluate.PREFIX_MODES == PREFIX_MODES
    assert evaluate.TASKS == (TILE_RANKING, CONVERSION)
    assert features.ENGINES == ENGINES
    assert intent.SHORTLIST_MODES == SHORTLIST_MODES
    assert intent.PROPOSAL_MODES == PROPOSAL_MODES
    assert intent.PROPOSAL_AUTO == PROPOSAL_AUTO


def test_evaluate_flags_not_given_are_the_librarys_defaults() -> None:
    from clicks2intent.cli.evaluate import ablation_inputs, encoder_report_config
    from clicks2intent.evaluation.ablation import AblationConfig, FeastRun
    from clicks2intent.evaluation.encoder_probe import EncoderReportConfig
    from clicks2intent.evaluation.msnbc import MsnbcRun

    run, config = ablation_inputs(_args("evaluate"))
    assert config == AblationConfig()
    assert run == FeastRun()  # the parser's path defaults are the run's own
    run, config = ablation_inputs(_args("evaluate", "--n-estimators", "7", "--seed", "3", "--max-rows", "9"))
    assert (config.n_estimators, config.random_state, config.max_depth) == (7, 3, AblationConfig.max_depth)
    assert run.max_rows == 9
    msnbc, _ = ablation_inputs(_args("evaluate", "--dataset", "msnbc", "x.seq"))
    assert msnbc == MsnbcRun(path="x.seq")
    msnbc, _ = ablation_inputs(_args("evaluate", "--dataset", "msnbc", "x.seq", "--max-rows", "5"))
    assert msnbc.max_train_rows == 5
    assert encoder_report_config(_args("encoder-report")) == EncoderReportConfig()
    assert encoder_report_config(_args("encoder-report", "--n-boot", "4")).n_boot == 4


def test_stage_flags_not_given_are_the_librarys_defaults() -> None:
    from clicks2intent.cli.data import simulator_config
    from clicks2intent.cli.features import build_options, ray_options
    from clicks2intent.cli.intent import from_args, llm_options
    from clicks2intent.data.simulator import SimulatorConfig
    from clicks2intent.evaluation.sweep import SweepRun
    from clicks2intent.features.build import FeatureBuildConfig
    from clicks2intent.features.ray_jobs import RayOptions
    from clicks2intent.intent.distill import DistillConfig
    from clicks2intent.intent.labelling import LabellingConfig

    assert simulator_config(_args("simulate")) == SimulatorConfig()
    assert simulator_config(_args("simulate", "--customers", "12")).n_customers == 12
    assert build_options(_args("features", "build"))[1] == FeatureBuildConfig()
    assert build_options(_args("features", "build", "--half-life-days", "2"))[1].half_life_days == 2.0
    label = _args("taxonomy", "label", "--events", "e.parquet")
    assert ray_options(label) == RayOptions()
    llm = llm_options(label)
    assert from_args(LabellingConfig, label, llm=llm) == LabellingConfig(events=label.events, llm=llm)
    distill = _args("taxonomy", "distill")
    assert from_args(DistillConfig, distill, lr_C=distill.C) == DistillConfig()
    assert _args("sweep").artifacts == SweepRun().root


@pytest.mark.parametrize("argv", [["evaluate", "--n-estimators", "many"], ["simulate", "--days", "x"]])
def test_a_bad_flag_value_is_still_an_argparse_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _args(*argv)
    assert exit_.value.code == 2
