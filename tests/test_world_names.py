"""No module outside the simulator names the simulated bank's world: a bank's world comes from its declaration.

Every string literal of the library, the Feast repo, the service and the training scripts is checked
against the simulator's own declaration: its tiles, products, page types and profile columns. A
multi-word name (``product_mortgage``, ``tenure_months``) is caught anywhere inside a literal; a plain
English one (``home``, ``rates``) only when it is the whole literal, i.e. used as a name. A hit means a
stage would silently assume the simulated bank (empty features, wrong enums) when another bank's data
comes in.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from clicks2intent.data.simulator import simulator_world

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "plugin" / "clicks2intent", ROOT / "feature_repo", ROOT / "bento", ROOT / "training"]
ALLOWED = {ROOT / "plugin" / "clicks2intent" / "data" / "simulator.py"}  # the simulator is the world's owner
# Plain words that are also simulator names but mean something generic where the library uses them.
GENERIC = {
    "search",  # a request's search_query, the word-match rule, LLM prompts
    "settings",  # the C2I_* settings object
    "messages",  # LLM chat messages
    "about",  # a stop word of the taxonomy's summaries
    "home",  # a site's root path, in any bank's URLs (the world proposal's name for "/")
}
TOKEN = re.compile(r"[a-z][a-z0-9_]*")


def world_names() -> set[str]:
    w = simulator_world()
    names = set(w.tiles) | set(w.products) | set(w.known_page_types) | set(w.profile)
    return names - GENERIC


def string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def named(text: str, names: set[str]) -> list[str]:
    """The world names ``text`` uses (see the module docstring for the rule)."""
    whole = text.strip().lower()
    found = {whole} & names
    found |= {w for w in TOKEN.findall(text.lower()) if "_" in w and w in names}
    return sorted(found)


def test_the_simulated_world_is_named_only_by_the_simulator() -> None:
    names = world_names()
    hits = []
    for base in SCANNED:
        for path in sorted(base.rglob("*.py")):
            if path in ALLOWED:
                continue
            for line, text in string_literals(path):
                found = named(text, names)
                if found:
                    hits.append(f"{path.relative_to(ROOT)}:{line}: {found} in {text[:60]!r}")
    assert not hits, "library code names the simulated bank's world:\n" + "\n".join(hits)


def test_the_check_sees_a_planted_name(tmp_path: Path) -> None:
    """The scan is not vacuous: a module naming a simulator tile is caught."""
    tile = sorted(world_names() & set(simulator_world().tiles))[0]
    page = sorted(p for p in simulator_world().page_types if "_" in p)[0]
    planted = tmp_path / "planted.py"
    planted.write_text(f"TILES = ({tile!r}, 'x')\nPAGE = 'a {page} view'\n", encoding="utf-8")
    found = [named(t, world_names()) for _, t in string_literals(planted)]
    assert [tile] in found and [page] in found
