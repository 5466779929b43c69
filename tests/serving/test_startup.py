"""What the service's start-up pays for, and only once: the `bentoml serve` process imports no model stack,
``c2i serve`` starts without pandas, Feast's typeguard instrumentation is off only where it is asked to be."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _fresh(code: str) -> dict:
    """Run ``code`` (it prints one JSON line) in a new interpreter: nothing imported yet."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


LOADED = "json.dumps(sorted(m for m in {mods!r} if m in sys.modules))"


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        # the `bentoml serve` process imports these (bento/service.py); only workers load the models
        (
            ["clicks2intent.serving.engine", "clicks2intent.serving.deployment"],
            ("torch", "sklearn", "xgboost", "feast"),
        ),
        # `c2i serve` only starts `bentoml serve`
        (
            ["clicks2intent.cli.serve", "clicks2intent.serving.launcher"],
            ("pandas", "httpx", "pydantic", "torch"),
        ),
    ],
)
def test_serving_modules_import_no_model_stack(modules: list[str], absent: tuple[str, ...]) -> None:
    code = f"import json, sys\nimport {', '.join(modules)}\nprint({LOADED.format(mods=absent)})"
    assert _fresh(code) == []


def test_feast_imported_after_skip_has_no_typeguard_instrumentation() -> None:
    code = (
        "import json\n"
        "from clicks2intent.features.store import skip_feast_typechecks\n"
        "skipped = skip_feast_typechecks()\n"
        "import feast\n"
        "print(json.dumps([skipped, 'TypeCheckMemo' in feast.Entity.__init__.__code__.co_names,"
        " 'TypeCheckMemo' in feast.FeatureView.__init__.__code__.co_names]))"
    )
    assert _fresh(code) == [True, False, False]


def test_skip_is_a_no_op_once_feast_is_imported() -> None:
    """A process that imported Feast first (a test session, `feast apply`) keeps its checks."""
    code = (
        "import json, typeguard, feast\n"
        "from clicks2intent.features.store import skip_feast_typechecks\n"
        "decorator = typeguard.typechecked\n"
        "skipped = skip_feast_typechecks()\n"
        "print(json.dumps([skipped, typeguard.typechecked is decorator,"
        " 'TypeCheckMemo' in feast.Entity.__init__.__code__.co_names]))"
    )
    assert _fresh(code) == [False, True, True]
