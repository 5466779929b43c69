"""The built bento, used as a deployment uses it: ``bentoml build``, then ``bentoml serve`` of the built
tag with only documented settings, a fast one-line failure when a setting is missing (nothing written
into the bento), and the image build context ``bentoml containerize`` would send to Docker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from clicks2intent.common.settings import ARTIFACTS_MODEL_NAME
from clicks2intent.data.simulator import simulator_world
from clicks2intent.names import features as N
from clicks2intent.names import settings as ENV
from clicks2intent.serving import schemas

REPO_ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).with_name("bentoml"))
MODELS = {N.TILE_RANKER_V1, N.CONVERSION_V1, ARTIFACTS_MODEL_NAME}
pytestmark = pytest.mark.slow  # the tiny pipeline, a bento build, bentoml serve
EXAMPLES = schemas.examples(simulator_world())  # the pipeline's data are simulated


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A deployment's environment: the bento store and the given settings, no other C2I_* variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2I_")}
    return (
        env
        | {"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "OMP_WAIT_POLICY": "PASSIVE"}
        | extra
    )


@pytest.fixture(scope="module")
def bento(pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(BENTOML_HOME, the built bento's directory) of ``bentoml build -f bento/bentofile.yaml .``."""
    home = tmp_path_factory.mktemp("bento_home")
    shutil.copytree(
        pipeline / "bentoml" / "models", home / "models"
    )  # a store of its own: builds write there
    out = subprocess.run(
        [BENTOML, "build", "-f", "bento/bentofile.yaml", ".", "--output", "tag", "--version", "test"],
        cwd=REPO_ROOT, env=_clean_env(home), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return home, home / "bentos" / "clicks2intent" / "test"


def test_build_carries_service_plugin_repo_config_and_three_models(bento: tuple[Path, Path]) -> None:
    _, path = bento
    src = path / "src"
    for rel in ("bento/service.py", "plugin/clicks2intent/serving/engine.py", "plugin/clicks2intent/py.typed",
                "plugin/clicks2intent/feast_objects.py", "feature_repo/feature_definitions.py",
                "feature_repo/feature_store.yaml", "feature_repo/feature_store.production.yaml"):  # fmt: skip
        assert (src / rel).is_file(), rel
    assert not (src / "feature_repo" / "data").exists() and not (src / "artifacts").exists()
    manifest = yaml.safe_load((path / "bento.yaml").read_text())
    assert manifest["service"] == "bento.service:Clicks2Intent"
    assert {m["tag"].split(":")[0] for s in manifest["services"] for m in s["models"]} == MODELS


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_serve_without_a_registry_setting_fails_fast_with_one_line(bento: tuple[Path, Path]) -> None:
    home, path = bento
    before = _files(path)
    out = subprocess.run(
        [BENTOML, "serve", "clicks2intent:test", "--port", "0"],
        env=_clean_env(home), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    message = (out.stdout + out.stderr).strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message[-3000:]
    assert ENV.FEATURE_REPO in message and ENV.FEAST_CONFIG in message and "registry" in message
    assert _files(path) == before  # nothing written into the stored bento (no empty registry.db)


@pytest.fixture(scope="module")
def served(
    bento: tuple[Path, Path], pipeline: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``bentoml serve clicks2intent:test`` with only ``C2I_FEATURE_REPO`` (the demo's SQLite repo)."""
    from clicks2intent.common.net import LOOPBACK, free_port
    from clicks2intent.serving.launcher import stop_service, wait_ready

    home, _ = bento
    port = free_port(LOOPBACK)
    env = _clean_env(home, **{ENV.FEATURE_REPO: str(pipeline / "feature_repo"), ENV.WORKERS: "1"})
    log = tmp_path_factory.mktemp("bento_serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [BENTOML, "serve", "clicks2intent:test", "--host", LOOPBACK, "--port", str(port)],
            cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_ready(url, proc, timeout=300)
        yield url
    except Exception:
        print(log.read_text()[-3000:])
        raise
    finally:
        stop_service(proc)


def test_the_built_bento_answers_all_three_endpoints(served: str, ids: dict[str, str]) -> None:
    with httpx.Client(base_url=served, timeout=60) as http:
        r = http.post("/rank_tiles", json={"customer_id": ids["customer"], "session_events": EXAMPLES.events})
        assert r.status_code == 200, r.text
        assert r.json()["intent"]["source"] == "session"
        r = http.post("/predict_conversion", json={"visitor_id": ids["visitor"]})
        assert r.status_code == 200 and r.json()["intent"]["source"] == "visitor", r.text
        r = http.post("/intent", json=EXAMPLES.intent)
        assert r.status_code == 200 and len(r.json()["top3"]) == 3, r.text


def test_image_build_context_holds_the_bento_models_and_a_cpu_torch(bento: tuple[Path, Path]) -> None:
    """What ``bentoml containerize`` sends to Docker, generated without Docker."""
    from bentoml._internal.bento.bento import Bento
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.container import construct_containerfile
    from bentoml._internal.models.model import ModelStore

    home, path = bento
    info: Any = Bento.from_path(str(path))
    with (
        BentoMLContainer.model_store.patch(ModelStore(str(home / "models"))),
        construct_containerfile(info, enable_buildkit=False) as (context, dockerfile),
    ):
        ctx = Path(context)
        text = Path(dockerfile).read_text()
        assert (ctx / "src" / "bento" / "service.py").is_file()
        assert {p.name for p in (ctx / "models").iterdir()} == MODELS
        requirements = (ctx / "env" / "python" / "requirements.txt").read_text()
        assert "torch==2.13.0" in requirements and "download.pytorch.org/whl/cpu" in requirements
        assert "FROM " in text and "python" in text.lower() and "bentoml" in text
