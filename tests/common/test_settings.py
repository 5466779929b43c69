"""One settings object for every ``C2I_*`` variable, and the README's table generated from it."""

from __future__ import annotations

import re
import subprocess
import sys
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


def test_importing_the_settings_module_loads_no_pydantic() -> None:
    """``c2i --help`` and the torch-free ONNX runtime import it: ``Settings`` is built on first use."""
    code = (
        "import pickle, sys\n"
        "from clicks2intent.common import settings as S\n"
        "print('pydantic' in sys.modules)\n"
        "s = S.Settings.load()\n"
        "print('pydantic' in sys.modules, type(s).__qualname__, pickle.loads(pickle.dumps(s)) == s)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "Settings", "True"]


def test_settings_is_one_class() -> None:
    from clicks2intent.common.settings import Settings

    assert Settings is S.Settings and Settings.__module__ == S.__name__
    with pytest.raises(AttributeError):
        S.NoSuchName  # noqa: B018


def test_variables_read_set_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("C2I_TEST_VAR", raising=False)
    assert S.variable("C2I_TEST_VAR") is None and S.variable("C2I_TEST_VAR", "d") == "d"
    assert S.set_default("C2I_TEST_VAR", "first") == "first"
    assert S.set_default("C2I_TEST_VAR", "second") == "first"  # an explicit setting wins
    S.set_variable("C2I_TEST_VAR", "third")
    assert S.variable("C2I_TEST_VAR") == "third" and S.environment()["C2I_TEST_VAR"] == "third"
    monkeypatch.setenv("C2I_TEST_VAR", "")
    assert S.variable("C2I_TEST_VAR", "d") == ""  # set but empty is what it is


def test_child_env_copies_drops_and_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2I_TEST_VAR", "mine")
    monkeypatch.setenv("PORT", "1234")
    env = S.child_env(drop=("PORT",), EXTRA="1")
    assert env["C2I_TEST_VAR"] == "mine" and "PORT" not in env and env["EXTRA"] == "1"
    env["C2I_TEST_VAR"] = "changed"  # a copy: this process keeps its own
    assert S.variable("C2I_TEST_VAR") == "mine"
    assert S.child_env({"A": "1", "B": "2"}, drop=["B"], C="3") == {"A": "1", "C": "3"}


def test_expand_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2I_TEST_VAR", "x")
    monkeypatch.delenv("C2I_TEST_UNSET", raising=False)
    assert S.expand_variables("a/$C2I_TEST_VAR/${C2I_TEST_VAR}/$C2I_TEST_UNSET") == "a/x/x/$C2I_TEST_UNSET"


def test_openmp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV.OMP_WAIT_POLICY, raising=False)
    assert S.omp_wait_policy() == "PASSIVE"
    S.passive_openmp()
    assert S.variable(ENV.OMP_WAIT_POLICY) == "PASSIVE"
    monkeypatch.setenv(ENV.OMP_WAIT_POLICY, " active ")
    S.passive_openmp()  # an explicit setting wins
    assert S.omp_wait_policy() == "ACTIVE"
    for value, threads in (("4", 4), ("0", None), ("-2", None), ("two", None), ("", None)):
        monkeypatch.setenv(ENV.OMP_NUM_THREADS, value)
        assert S.omp_num_threads() == threads, value
    monkeypatch.delenv(ENV.OMP_NUM_THREADS)
    assert S.omp_num_threads() is None


def test_cuda_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV.CUDA_VISIBLE_DEVICES, raising=False)
    assert not S.cuda_hidden()
    for value, hidden in (("", True), ("-1", True), ("0", False), ("0,1", False)):
        monkeypatch.setenv(ENV.CUDA_VISIBLE_DEVICES, value)
        assert S.cuda_hidden() is hidden, value


def test_single_c2i_reads_keep_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV.ARTIFACTS, ENV.REDIS, ENV.REGISTRY_URL, ENV.LOG_LEVEL, ENV.LLM_MODEL):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(ENV.OPENAI_BASE_URL, raising=False)
    monkeypatch.delenv(ENV.OPENAI_API_KEY, raising=False)
    assert S.artifacts_dir() is None and S.llm_model() is None
    assert S.openai_base_url() is None and S.openai_api_key() is None
    assert (S.redis(), S.registry_url(), S.log_level()) == (
        S.DEFAULT_REDIS,
        S.DEFAULT_REGISTRY_URL,
        S.DEFAULT_LOG_LEVEL,
    )
    # The same defaults as the Settings object's fields (defined once).
    fields = S.Settings.model_fields
    assert (fields["redis"].default, fields["registry_url"].default, fields["log_level"].default) == (
        S.redis(),
        S.registry_url(),
        S.log_level(),
    )
    monkeypatch.setenv(ENV.ARTIFACTS, "")
    monkeypatch.setenv(ENV.REDIS, "")
    assert S.artifacts_dir() is None and S.redis() == S.DEFAULT_REDIS  # empty = unset
    monkeypatch.setenv(ENV.ARTIFACTS, "/srv/artifacts")
    monkeypatch.setenv(ENV.REDIS, "redis:6380")
    monkeypatch.setenv(ENV.REGISTRY_URL, "postgresql://db/x")
    monkeypatch.setenv(ENV.LOG_LEVEL, "debug")
    monkeypatch.setenv(ENV.LLM_MODEL, "m")
    monkeypatch.setenv(ENV.OPENAI_BASE_URL, "http://llm:8000/v1")
    monkeypatch.setenv(ENV.OPENAI_API_KEY, "k")
    assert (S.artifacts_dir(), S.redis(), S.registry_url(), S.log_level()) == (
        "/srv/artifacts",
        "redis:6380",
        "postgresql://db/x",
        "DEBUG",
    )
    assert (S.llm_model(), S.openai_base_url(), S.openai_api_key()) == ("m", "http://llm:8000/v1", "k")
