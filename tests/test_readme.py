"""The README, run: each bash block that can run here runs as written, the others are listed with why.

Every bash block is named in :data:`RUN` or :data:`SKIPPED` by the text it starts with, and
``test_every_bash_block_is_run_or_skipped_with_a_reason`` fails on a block in neither. The blocks that
need a trained deployment (marked ``slow``) run in a copy of a checkout after ``make demo``: the tiny
deployment of ``tests/serving/conftest.py`` as ``artifacts/``, this repo's ``feature_repo/`` (without
its data), ``bento/``, ``plugin/`` and ``pyproject.toml``. The only substitution is the ports (free
ones instead of 3000, 6566 and 8888); a server block runs in the background until its server answers,
then the request block after it runs against it.

Not bash blocks, not run: the inline ``bentoml containerize`` / ``docker run`` (they need Docker; the
image's build context is checked by ``tests/serving/test_bento.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from clicks2intent.cli import COMMANDS
from clicks2intent.common.net import LOOPBACK, free_port
from clicks2intent.data.world import World, write_world
from clicks2intent.names.paths import BUILD_REPORT_FILE, WORLD_FILE

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PORTS = (3000, 6566, 8888)  # the README's service, feature server and UI ports

# Blocks that run here, by the text they start with (what each test checks of them).
RUN: dict[str, str] = {
    "c2i validate events.csv": "test_validate_block_rejects_and_writes_as_its_comment_says",
    "c2i features build": "test_feast_block_runs_as_written",
    "cd feature_repo\nfeast ui": "test_feast_servers_score_the_inflight_curl",
    "curl -s localhost:6566": "test_feast_servers_score_the_inflight_curl",
    "c2i serve --port 3000": "test_c2i_serve_answers_the_endpoint_requests",
    "BENTOML_HOME=$PWD/artifacts/bentoml bentoml build": "test_the_built_bento_answers_the_endpoint_requests",
    "curl -s localhost:3000/rank_tiles": "test_*_answers_the_endpoint_requests",
}
# Blocks that cannot run here, and why.
SKIPPED: dict[str, str] = {
    "make demo": "the whole pipeline and the whole suite; test_two_commands_are_make_targets checks them",
    "python tests/fixtures/harbor_bank/make_bank.py": "run as written by tests/test_your_own_data.py",
    "pip install torch==2.13.0 && pip install -e '.[llm,torch]'": "installs into the venv from the package registry",
    "export OPENAI_BASE_URL=": "needs a real LLM endpoint and its key",
    ".venv/bin/python benchmarks/": "benchmarks: minutes of full-size work whose figures are read, not "
    "asserted; test_benchmark_commands_parse runs each script's --help",
    "make runtime": "builds a second venv; tests/features/test_feature_repo.py builds it with `make runtime` "
    "and runs this materialisation from it, under PYTHONOPTIMIZE=1",
    "c2i features daily": "needs a trained deployment and a day of events: tests/features/test_daily.py runs "
    "the same job on a simulated day, materialisation included",
}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _block(start: str) -> str:
    (block,) = [b for b in _blocks("bash") if b.startswith(start)]
    return block


def _with_ports(block: str, ports: dict[int, int]) -> str:
    for old, new in ports.items():
        block = re.sub(rf"\b{old}\b", str(new), block)
    return block


def _env(**extra: str) -> dict[str, str]:
    """A user's shell: this venv first on PATH, no C2I_* or BENTOML_* setting of the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("C2I_", "BENTOML_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | {"OMP_WAIT_POLICY": "PASSIVE", "BENTOML_DO_NOT_TRACK": "True"} | extra


def _run(block: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _json_answers(stdout: str) -> list[dict[str, Any]]:
    """Every JSON object the block's curls printed (one after the other, without a newline)."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while (i := stdout.find("{", i)) >= 0:
        try:
            obj, i = decoder.raw_decode(stdout, i)
        except json.JSONDecodeError:
            i += 1
            continue
        out.append(obj)
    return out


# --- every block accounted for (fast) ------------------------------------------------------------
def test_every_bash_block_is_run_or_skipped_with_a_reason() -> None:
    blocks = _blocks("bash")
    for block in blocks:
        keys = [k for k in (*RUN, *SKIPPED) if block.startswith(k)]
        assert len(keys) == 1, f"README bash block not in RUN or SKIPPED (or in both): {block[:200]!r}"
    for key in (*RUN, *SKIPPED):
        assert sum(b.startswith(key) for b in blocks) == 1, f"no single README block starts with {key!r}"


def test_two_commands_are_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    text = README.read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in text
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile has no '{target}' target"


def test_every_c2i_command_in_the_readme_exists() -> None:
    used = set(re.findall(r"\bc2i ([a-z][a-z-]+)", README.read_text()))
    assert used, "the README shows no c2i command"
    assert used <= set(COMMANDS), f"README mentions unknown commands: {sorted(used - set(COMMANDS))}"


def test_servers_are_shown_on_loopback_and_with_absolute_paths() -> None:
    text = README.read_text()
    assert all("-h 127.0.0.1" in line for line in text.splitlines() if "feast ui" in line and "`" not in line)
    for line in (ln for b in _blocks("bash") for ln in b.splitlines()):
        for name, value in re.findall(r"\b(BENTOML_HOME|C2I_[A-Z_]+)=(\S+)", line):
            if name in ("BENTOML_HOME", "C2I_FEATURE_REPO", "C2I_ARTIFACTS"):
                assert value.startswith(("$PWD/", "/")), (
                    f"{name}={value}: bentoml serve needs an absolute path"
                )


def test_figures_match_the_code() -> None:
    import feast

    from clicks2intent.encoder.config import EncoderConfig

    text = README.read_text()
    dims = set(re.findall(r"`embedding_dim` floats, (\d+) by default", text))
    assert dims == {str(EncoderConfig().embedding_dim)}, dims
    versions = set(re.findall(r"Feast (\d+\.\d+)", text))
    assert versions == {".".join(feast.__version__.split(".")[:2])}, versions


def test_benchmark_scripts_exist() -> None:
    for script in re.findall(r"benchmarks/(\S+\.py)", _block(".venv/bin/python benchmarks/")):
        assert (ROOT / "benchmarks" / script).is_file(), script


@pytest.mark.slow
def test_benchmark_commands_parse() -> None:
    for line in _block(".venv/bin/python benchmarks/").splitlines():
        script = re.search(r"benchmarks/\S+\.py", line)
        assert script, line
        out = subprocess.run(
            [sys.executable, script.group(0), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0 and "usage" in out.stdout, out.stderr[-2000:]
        flags = set(re.findall(r"(--[a-z][a-z-]+)", line.split("#")[0]))
        assert flags <= set(re.findall(r"--[a-z][a-z-]+", out.stdout)), (line, out.stdout)


# --- the Python example -----------------------------------------------------------------------------
def test_feast_adoption_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim_world: World
) -> None:
    (example,) = [b for b in _blocks("python") if "feast_objects" in b]
    # What `c2i features build` leaves beside the sources the example names: the world and the build report.
    (features,) = re.findall(r'build_from_features\("([^"]+)"', example)
    write_world(sim_world, tmp_path / features / WORLD_FILE)
    (tmp_path / features / BUILD_REPORT_FILE).write_text(json.dumps({"embedding_dim": 64}))
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    assert scope["tile_ranker_v1"].name == "c2i_tile_ranker_v1"
    assert scope["customer_web_intent"].name == "c2i_customer_web_intent"
    fields = {f.name for f in scope["c2i"].session_activity.features}
    assert set(sim_world.page_count_fields) <= fields  # the fields are the world's


# --- the contract block -----------------------------------------------------------------------------
def test_validate_block_rejects_and_writes_as_its_comment_says(
    tmp_path: Path, tiny_events: pd.DataFrame
) -> None:
    bad = tiny_events.iloc[[0]].assign(dwell_seconds=-3.0)  # one row that breaks `negative_dwell`
    pd.concat([tiny_events, bad]).to_csv(tmp_path / "events.csv", index=False)
    out = _run(_block("c2i validate events.csv"), tmp_path, timeout=300)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]  # "exit 1 when rows were rejected"
    assert "negative_dwell" in (tmp_path / "rejects.csv").read_text()
    assert len(pd.read_parquet(tmp_path / "clean.parquet")) == len(tiny_events)


# --- a checkout after `make demo` (slow) ------------------------------------------------------------
def _serving_fixtures() -> Any:
    """tests/serving/conftest.py, loaded by path (two conftest modules cannot import each other)."""
    spec = importlib.util.spec_from_file_location("c2i_serving_conftest", ROOT / "tests/serving/conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working copy whose ``artifacts/`` is the tiny deployment (data, encoder, classifier, features
    and the models in ``artifacts/bentoml``) and whose ``feature_repo/`` was never applied."""
    pipeline = _serving_fixtures().shared_pipeline_dir(tmp_path_factory)
    ws = tmp_path_factory.mktemp("readme_checkout")
    shutil.copytree(pipeline, ws / "artifacts", ignore=shutil.ignore_patterns("feature_repo", "DONE"))
    skip = shutil.ignore_patterns("data", "__pycache__", "*.egg-info")
    for name in ("feature_repo", "bento", "plugin"):
        shutil.copytree(ROOT / name, ws / name, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", ws / "pyproject.toml")
    return ws


@pytest.fixture(scope="module")
def feast_block(checkout: Path) -> subprocess.CompletedProcess[str]:
    """The Feast block as written: build, apply, materialize, plan, one customer's online features."""
    return _run(_block("c2i features build"), checkout)


def _stop(proc: subprocess.Popen[Any]) -> None:
    from clicks2intent.serving.launcher import stop_service

    stop_service(proc)


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:] if Path(table).exists() else []:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@contextmanager
def _serving(
    block: str, cwd: Path, urls: list[str], log: Path, timeout: float = 400, **env: str
) -> Iterator[None]:
    """``block`` in the background (its own process group) until every URL answers; stopped after."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["bash", "-e", "-c", block],
            cwd=cwd, env=_env(**env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline, waiting = time.monotonic() + timeout, list(urls)
        while waiting:
            assert proc.poll() is None, f"the block exited ({proc.returncode}): {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"{waiting} not up in {timeout:.0f} s: {log.read_text()[-3000:]}"
            )
            try:
                if httpx.get(waiting[0], timeout=2).status_code == 200:
                    waiting.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield
    finally:
        _stop(proc)


@pytest.mark.slow
def test_feast_block_runs_as_written(feast_block: subprocess.CompletedProcess[str]) -> None:
    out = feast_block.stdout + feast_block.stderr
    assert feast_block.returncode == 0, out[-4000:]
    assert "No changes to registry" in out  # feast plan right after apply
    assert "online features of customer c0000012 (service tile_ranker_v1" in out


@pytest.mark.slow
def test_feast_servers_score_the_inflight_curl(
    feast_block: subprocess.CompletedProcess[str], checkout: Path, tmp_path: Path
) -> None:
    assert feast_block.returncode == 0, feast_block.stderr[-3000:]
    ports = {p: free_port(LOOPBACK) for p in PORTS}
    servers = _with_ports(_block("cd feature_repo\nfeast ui"), ports)
    urls = [f"http://{LOOPBACK}:{ports[6566]}/health", f"http://{LOOPBACK}:{ports[8888]}/"]
    with _serving(servers, checkout, urls, tmp_path / "feast.log"):
        assert _listening(ports[8888]) == {"0100007F"}, "feast ui must listen on 127.0.0.1 only"
        out = _run(_with_ports(_block("curl -s localhost:6566"), ports), checkout, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (answer,) = _json_answers(out.stdout)
    names = answer["metadata"]["feature_names"]
    values = {n: r["values"][0] for n, r in zip(names, answer["results"], strict=True)}
    # The README names what comes back, in this order.
    listed = re.search(r"`metadata.feature_names` are (.*?), and `results`", README.read_text(), flags=re.S)
    assert listed and names == re.findall(r"`(\w+)`", listed.group(1))
    # The in-flight session was scored: a label with its confidence, every page readable.
    assert isinstance(values["inflight_intent_label"], str) and values["inflight_intent_label"]
    assert 0.0 < values["inflight_intent_confidence"] <= 1.0
    assert values["inflight_unknown_page_share"] == 0.0
    assert values["visitor_intent_label"] is not None


def _check_endpoint_answers(stdout: str, embedding_dim: int) -> None:
    from clicks2intent.data.simulator import simulator_world

    world = simulator_world()  # the tiny deployment's data are the simulated bank's
    block = _block("curl -s localhost:3000/rank_tiles")
    rank, conversion, intent = _json_answers(stdout)
    listed = re.search(r'"candidate_tiles": (\[[^\]]*\])', block)
    assert listed, block
    candidates = json.loads(listed.group(1))
    assert len(rank["tiles"]) == 3 and {t["tile_id"] for t in rank["tiles"]} <= set(candidates), rank
    assert rank["intent"]["source"] == "session" and rank["model"]["name"] == "tile_ranker_v1", rank
    assert set(conversion["probabilities"]) == {*world.products, "none"}, conversion
    assert conversion["intent"]["source"] == "session" and conversion["model"]["name"] == "conversion_v1"
    assert len(intent["embedding"]) == embedding_dim and intent["label"] and len(intent["top3"]) == 3, intent


@pytest.mark.slow
def test_c2i_serve_answers_the_endpoint_requests(
    feast_block: subprocess.CompletedProcess[str], checkout: Path, tmp_path: Path
) -> None:
    assert feast_block.returncode == 0, feast_block.stderr[-3000:]
    ports = {3000: free_port(LOOPBACK)}
    serve = _with_ports(_block("c2i serve --port 3000"), ports)
    with _serving(serve, checkout, [f"http://{LOOPBACK}:{ports[3000]}/readyz"], tmp_path / "serve.log"):
        out = _run(_with_ports(_block("curl -s localhost:3000/rank_tiles"), ports), checkout, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    _check_endpoint_answers(out.stdout, _serving_fixtures().PIPELINE_EMBEDDING_DIM)


@pytest.mark.slow
def test_the_built_bento_answers_the_endpoint_requests(
    feast_block: subprocess.CompletedProcess[str], checkout: Path, tmp_path: Path
) -> None:
    assert feast_block.returncode == 0, feast_block.stderr[-3000:]
    ports = {3000: free_port(LOOPBACK)}
    bento = _block("BENTOML_HOME=$PWD/artifacts/bentoml bentoml build")
    url = f"http://{LOOPBACK}:{ports[3000]}/readyz"
    # 3000 is bentoml serve's default port; its own variable moves it without touching the block.
    with _serving(bento, checkout, [url], tmp_path / "bento.log", BENTOML_PORT=str(ports[3000])):
        out = _run(_with_ports(_block("curl -s localhost:3000/rank_tiles"), ports), checkout, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    _check_endpoint_answers(out.stdout, _serving_fixtures().PIPELINE_EMBEDDING_DIM)


@pytest.mark.slow
def test_the_bento_block_with_a_relative_home_stops_with_one_line(
    feast_block: subprocess.CompletedProcess[str], checkout: Path
) -> None:
    """The block as it was (``BENTOML_HOME=artifacts/bentoml``): one line and an exit, no restart loop."""
    assert feast_block.returncode == 0, feast_block.stderr[-3000:]
    block = _block("BENTOML_HOME=$PWD/artifacts/bentoml bentoml build").replace("$PWD/artifacts", "artifacts")
    build, serve = block.strip().splitlines()
    assert _run(build, checkout).returncode == 0
    out = _run(serve, checkout, timeout=300, BENTOML_PORT=str(free_port(LOOPBACK)))
    message = (out.stdout + out.stderr).strip()
    assert out.returncode != 0 and len(message.splitlines()) == 1, message[-3000:]
    assert "BENTOML_HOME=artifacts/bentoml is a relative path" in message and "absolute" in message
