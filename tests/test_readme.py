"""The README's quick-start: its two commands exist, and its Python example runs as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clicks2intent.cli import COMMANDS
from clicks2intent.data.world import World, write_world
from clicks2intent.names.paths import BUILD_REPORT_FILE, WORLD_FILE

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_two_commands_are_make_targets() -> None:
    makefile = (README.parent / "Makefile").read_text()
    text = README.read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in text
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile has no '{target}' target"


def test_every_c2i_command_in_the_readme_exists() -> None:
    used = set(re.findall(r"\bc2i ([a-z][a-z-]+)", README.read_text()))
    assert used, "the README shows no c2i command"
    assert used <= set(COMMANDS), f"README mentions unknown commands: {sorted(used - set(COMMANDS))}"


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
