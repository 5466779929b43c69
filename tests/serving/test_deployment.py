"""The path settings the service refuses before anything is resolved (``check_environment``).

``bentoml serve <bento>`` imports the service, and runs its workers, in the bento's ``src/``: there a
relative path names the bento's own files or nothing (``BENTOML_HOME=artifacts/bentoml`` crashed every
worker on a missing ``.yatai.yaml``; ``C2I_FEATURE_REPO=feature_repo`` named the bento's carried repo
config, where Feast wrote an empty registry). The built-bento path itself runs in
``tests/test_readme.py`` and ``tests/serving/test_bento.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clicks2intent.common.settings import Settings
from clicks2intent.errors import ConfigError
from clicks2intent.names import settings as ENV
from clicks2intent.serving.deployment import BENTO_MANIFEST, check_environment


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test's values only, not from the shell that runs it."""
    for name in ENV.ALL:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bento_src(tmp_path: Path) -> Path:
    """A built bento's layout: ``bento.yaml`` beside ``src/``, the carried ``feature_repo/`` in ``src/``."""
    (tmp_path / BENTO_MANIFEST).write_text("service: bento.service:Clicks2Intent\n")
    (tmp_path / "src" / "feature_repo").mkdir(parents=True)
    return tmp_path / "src"


def _settings(**values: str) -> Settings:
    return Settings.model_validate(values)


@pytest.mark.parametrize(
    ("name", "value"),
    [("BENTOML_HOME", "artifacts/bentoml"), (ENV.FEATURE_REPO, "feature_repo"), (ENV.ARTIFACTS, "artifacts")],
)
def test_in_a_bento_every_relative_path_is_refused_naming_it(bento_src: Path, name: str, value: str) -> None:
    env = {"BENTOML_HOME": value} if name == "BENTOML_HOME" else {}
    settings = _settings(**({} if name == "BENTOML_HOME" else {name: value}))
    # feature_repo exists there (the bento carries its config): relative is refused all the same
    with pytest.raises(ConfigError) as err:
        check_environment(settings, env, cwd=bento_src)
    message = str(err.value)
    assert message.startswith(f"{name}={value} is a relative path") and str(bento_src) in message
    assert f"{name}=$PWD/{value}" in message and "\n" not in message


def test_in_a_bento_absolute_paths_and_a_config_file_name_pass(bento_src: Path, tmp_path: Path) -> None:
    settings = _settings(
        **{ENV.FEATURE_REPO: str(tmp_path), ENV.FEAST_CONFIG: "feature_store.production.yaml"}
    )
    check_environment(settings, {"BENTOML_HOME": str(tmp_path / "home")}, cwd=bento_src)
    with pytest.raises(ConfigError, match=f"{ENV.FEAST_CONFIG}=config/fs.yaml is a relative path"):
        check_environment(_settings(**{ENV.FEAST_CONFIG: "config/fs.yaml"}), {}, cwd=bento_src)


def test_from_sources_a_relative_path_must_name_a_directory(tmp_path: Path) -> None:
    (tmp_path / "artifacts" / "bentoml").mkdir(parents=True)
    check_environment(
        _settings(**{ENV.ARTIFACTS: "artifacts"}), {"BENTOML_HOME": "artifacts/bentoml"}, tmp_path
    )
    with pytest.raises(ConfigError, match="BENTOML_HOME=elsewhere/bentoml is a relative path and names no"):
        check_environment(_settings(), {"BENTOML_HOME": "elsewhere/bentoml"}, cwd=tmp_path)
