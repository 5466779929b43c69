"""``c2i step``: a step's results reach the terminal, its noise goes to its log, one line says its time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clicks2intent.cli.step import read_steps, run_step, steps_table

NOISY = [sys.executable, "-c", "import sys; print('the result'); print('progress 50%', file=sys.stderr)"]


def test_results_on_stdout_noise_in_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_step("1/2 noisy", NOISY, tmp_path) == 0
    out = capsys.readouterr().out
    assert "progress" not in out and out.splitlines()[0] == "== 1/2 noisy"
    assert "-- 1/2 noisy: " in out and "log " in out
    assert "progress 50%" in (tmp_path / "1-2-noisy.log").read_text()


def test_quiet_shows_the_last_line_and_a_failure_shows_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_step("quiet", NOISY, tmp_path, quiet=True) == 0
    assert "(the result)" in capsys.readouterr().out
    failing = [sys.executable, "-c", "import sys; print('why it broke', file=sys.stderr); sys.exit(3)"]
    assert run_step("broken", failing, tmp_path) == 3
    captured = capsys.readouterr()
    assert "why it broke" in captured.err and "failed (exit 3)" in captured.out
    steps = read_steps(tmp_path)
    assert [(n, rc) for n, _, rc in steps] == [("quiet", 0), ("broken", 3)]
    table = steps_table(steps)
    assert "| broken (failed) |" in table and table.splitlines()[-1].startswith("| total |")
