"""The public API: curated ``__all__``, lazy top-level re-exports, typing marker, version entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import clicks2intent

PACKAGE = Path(clicks2intent.__file__).parent


def test_all_lists_every_export_and_each_resolves() -> None:
    assert clicks2intent.__all__ == ["__version__", *sorted(clicks2intent._EXPORTS)]
    for name in clicks2intent.__all__:
        assert getattr(clicks2intent, name) is not None, name
    assert clicks2intent.build_feast_objects.__name__ == "build"


def test_import_is_light() -> None:
    """``import clicks2intent`` pays for no heavy stage: torch, Feast, BentoML load on first use."""
    code = "import sys, clicks2intent; print(sorted(m for m in ('torch', 'feast', 'bentoml', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_typed_marker_ships_with_the_package() -> None:
    assert (PACKAGE / "py.typed").is_file()


def test_version_from_the_cli_and_python_m() -> None:
    for cmd in (
        [str(Path(sys.executable).with_name("c2i")), "--version"],
        [sys.executable, "-m", "clicks2intent", "--version"],
    ):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and clicks2intent.__version__ in out.stdout, out.stdout + out.stderr
