"""One settings object for every ``C2I_*`` variable, and the README's table generated from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clicks2intent.common import settings as S
from clicks2intent.errors import ConfigError
from clicks2intent.names import settings as ENV

ROOT = Path(__file__).resolve().parents[2]


def test_every_declared_name_is_one_field_of_settings() -> None:
    aliases = [f.validation_alias for f in S.Settings.model_fields.values()]
    assert sorted(aliases) == sorted(ENV.ALL) and len(set(aliases)) == len(aliases)
    assert all(f.description for f in S.Settings.model_fields.values())


def test_no_c2i_variable_is_spelled_outside_names_settings() -> None:
    """Code reads settings through the names, never a retyped string (the docs may spell them)."""
    found: dict[str, set[str]] = {}
    for folder in ("plugin", "bento", "feature_repo", "training"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "settings.py" and path.parent.name == "names":
                continue
            code = re.sub(r'""".*?"""', "", path.read_text(), flags=re.S)  # docstrings may name them
            code = "\n".join(line.split("#", 1)[0] for line in code.splitlines())  # and comments
            for name in re.findall(r"[\"'](C2I_[A-Z_]+)[\"']", code):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert not found, f"C2I_* strings outside clicks2intent.names.settings: {found}"


def test_environment_values_are_typed_and_a_bad_one_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV.WORKERS, "3")
    monkeypatch.setenv(ENV.METRICS, "1")
    monkeypatch.setenv(ENV.FEAST_CONFIG, "")  # empty = unset
    s = S.Settings.load()
    assert (s.workers, s.metrics, s.feast_config, s.tracing) == (3, True, None, False)
    monkeypatch.setenv(ENV.WORKERS, "many")
    with pytest.raises(ConfigError, match=ENV.WORKERS):
        S.Settings.load()


def test_readme_settings_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert S.readme_block() in readme, "README settings table is stale: paste `c2i settings --markdown`"
