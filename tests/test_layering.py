"""The package's layering: imports only point down the pipeline, no cycles, argparse only in ``cli/``.

Imports inside functions count too: a lazy import that points up is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plugin" / "clicks2intent"

# Bottom to top. A module may import its own stage and the stages below it.
STAGES = [
    "names",
    "errors",
    "common",
    "data",
    "encoder",
    "intent",
    "features",
    "models",
    "serving",
    "evaluation",
    "cli",
]
# Top-level re-export shims kept for users (README paths, applied Feast registries): above the library.
SHIMS = {"clicks2intent", "clicks2intent.events", "clicks2intent.feast_objects", "clicks2intent.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every clicks2intent module ``path`` imports, at any depth of its code."""
    found: set[str] = set()
    me = module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            if not name.startswith("clicks2intent"):
                continue
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules and name != me and name != "clicks2intent":
                found.add(name)
    # ``from clicks2intent.pkg.mod import x`` also runs ``pkg/__init__``: that edge is real but a
    # package's own __init__ only re-exports, so it is not counted as an edge from inside the package.
    return found


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {m: imports_of(p, modules) for m, p in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if colour.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(edges):
        if colour.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_belongs_to_a_stage() -> None:
    strays = [m for m in all_modules() if m not in SHIMS and stage(m) not in STAGES]
    assert not strays, f"modules outside the stage packages {STAGES}: {strays}"


def test_no_import_cycles() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_only_point_down() -> None:
    upward = []
    for module, deps in graph().items():
        if module in SHIMS:
            continue
        for dep in deps:
            if dep in SHIMS:
                upward.append(f"{module} imports the compatibility shim {dep}")
            elif STAGES.index(stage(dep)) > STAGES.index(stage(module)):
                upward.append(f"{module} ({stage(module)}) imports {dep} ({stage(dep)})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_argparse_only_in_cli() -> None:
    users = [
        m
        for m, p in all_modules().items()
        if stage(m) != "cli"
        and any(
            isinstance(n, ast.Import | ast.ImportFrom)
            and any(a.name == "argparse" for a in n.names)
            | ((getattr(n, "module", None) or "") == "argparse")
            for n in ast.walk(ast.parse(p.read_text()))
        )
    ]
    assert not users, f"argparse outside cli/: {users}"


@pytest.mark.parametrize("limit", [150])
def test_no_function_over_limit(limit: int) -> None:
    long = [
        f"{module_name(p)}.{n.name}: {n.end_lineno - n.lineno + 1} lines"
        for p in PACKAGE.rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno - n.lineno + 1 > limit
    ]
    assert not long, f"functions over {limit} lines: {long}"


def test_the_checker_sees_a_cycle() -> None:
    """The cycle finder itself must be able to fail."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
