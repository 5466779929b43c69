"""A command that needs an optional extra which is not installed says so in one line (exit 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from clicks2intent.errors import EXIT_USER, EXTRA_OF_MODULE


def test_train_encoder_without_torch_names_the_extra(tmp_path: Path, c2i_without_torch: list[str]) -> None:
    done = subprocess.run(
        [*c2i_without_torch, "train-encoder", "--events", str(tmp_path / "e.parquet"),
         "--out", str(tmp_path / "encoder")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == EXIT_USER, done.stderr
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("c2i train-encoder: error: this command needs torch, which is not installed")
    assert "torch==2.13.0" in line and "clicks2intent[torch]" in line
    assert not (tmp_path / "encoder").exists()


def test_every_extra_named_is_declared() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for module, extra in EXTRA_OF_MODULE.items():
        assert any(req.startswith(module) for req in extras[extra]), (module, extra)
    assert not any(req.startswith("torch") for req in pyproject["project"]["dependencies"])
