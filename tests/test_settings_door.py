"""Settings through one door: no module but ``clicks2intent.common.settings`` reads or writes the environment.

A variable read in a module of its own drifts from its documented default and escapes the README's table;
``bentoml serve`` workers, on-demand views and Ray tasks only see what the environment holds, so every
read goes through the one module (its ``Settings`` object or one of its small functions).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("plugin", "bento", "feature_repo", "training")
DOOR = ROOT / "plugin" / "clicks2intent" / "common" / "settings.py"
# What reads or writes the process environment in the standard library.
OS_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})
PATH_NAMES = frozenset({"expandvars"})  # os.path.expandvars: ``$NAME`` replaced by the variable's value
PATH_MODULES = frozenset({"os.path", "posixpath", "ntpath"})


def environment_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every use of the environment in ``source``: ``os.environ``, ``os.getenv``,
    ``os.environb``, ``os.putenv``/``unsetenv``, ``os.path.expandvars``, the same names imported
    ``from os`` / ``from os.path``, through an alias of the module (``import os as o``) or
    ``getattr(os, "environ")``."""
    tree = ast.parse(source)
    os_aliases, path_aliases = {"os"}, set()
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "os":
                    os_aliases.add(alias.asname or "os")
                elif alias.name in PATH_MODULES and alias.asname:
                    path_aliases.add(alias.asname)
                elif alias.name in PATH_MODULES:  # ``import os.path`` binds ``os``
                    os_aliases.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                if node.module == "os" and alias.name in OS_NAMES:
                    found.append((node.lineno, f"from os import {alias.name}"))
                elif node.module == "os" and alias.name == "path":
                    path_aliases.add(alias.asname or "path")
                elif node.module in PATH_MODULES and alias.name in PATH_NAMES:
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value
            if isinstance(base, ast.Name) and base.id in os_aliases and node.attr in OS_NAMES:
                found.append((node.lineno, f"{base.id}.{node.attr}"))
            elif node.attr in PATH_NAMES and (
                (isinstance(base, ast.Name) and base.id in path_aliases)
                or (
                    isinstance(base, ast.Attribute)
                    and base.attr == "path"
                    and isinstance(base.value, ast.Name)
                    and base.value.id in os_aliases
                )
            ):
                found.append((node.lineno, f"{ast.unparse(base)}.{node.attr}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in os_aliases
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in OS_NAMES
        ):
            found.append((node.lineno, f"getattr({node.args[0].id}, {node.args[1].value!r})"))
    return sorted(set(found))


def scanned_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py") if p != DOOR)


def test_the_environment_is_read_only_in_the_settings_module() -> None:
    files = scanned_files()
    assert len(files) > 100, "the scan found too few modules: did the layout move?"
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in files
        for line, what in environment_uses(path.read_text(encoding="utf-8"))
    ]
    assert not offences, (
        "the environment is read or written outside clicks2intent/common/settings.py (add a function "
        "there, or use Settings):\n" + "\n".join(offences)
    )


def test_the_settings_module_is_the_one_that_reads_it() -> None:
    """The door is where the reads went (the scan above would pass on an empty package too)."""
    assert any(what == "os.environ" for _, what in environment_uses(DOOR.read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import os\nx = os.environ['HOME']", "os.environ"),
        ("import os\nx = os.environ.get('HOME')", "os.environ"),
        ("import os\nos.environ.setdefault('A', '1')", "os.environ"),
        ("import os\nenv = dict(os.environ, A='1')", "os.environ"),
        ("import os\nx = os.getenv('HOME')", "os.getenv"),
        ("import os\nx = os.environb[b'HOME']", "os.environb"),
        ("import os\nx = os.getenvb(b'HOME')", "os.getenvb"),
        ("import os\nos.putenv('A', '1')", "os.putenv"),
        ("import os\nos.unsetenv('A')", "os.unsetenv"),
        ("from os import environ\n", "from os import environ"),
        ("from os import getenv as g\n", "from os import getenv"),
        ("from os import environb\n", "from os import environb"),
        ("from os import path, putenv\n", "from os import putenv"),
        ("import os as _os\nx = _os.environ", "_os.environ"),
        ("def f():\n    import os as o\n    return o.getenv('A')", "o.getenv"),
        ("import os\nx = getattr(os, 'environ')", "getattr(os, 'environ')"),
        ("import os\nx = os.path.expandvars('$HOME')", "os.path.expandvars"),
        ("from os import path\nx = path.expandvars('$HOME')", "path.expandvars"),
        ("import os.path as osp\nx = osp.expandvars('$HOME')", "osp.expandvars"),
        ("from os.path import expandvars\n", "from os.path import expandvars"),
        ("import posixpath\nfrom posixpath import expandvars\n", "from posixpath import expandvars"),
    ],
)
def test_every_form_of_reading_the_environment_is_found(source: str, what: str) -> None:
    assert [w for _, w in environment_uses(source)] == [what]


def test_the_line_of_each_use_is_given() -> None:
    source = "import os\n\n\ndef f():\n    return os.getenv('A')\n\n\nX = os.environ\n"
    assert environment_uses(source) == [(5, "os.getenv"), (8, "os.environ")]


@pytest.mark.parametrize(
    "source",
    [
        "import os\nx = os.path.join('a', 'b')",
        "import os\nx = os.cpu_count()",
        "import os\nos.close(3)",
        "from clicks2intent.common import settings\nx = settings.variable('HOME')",
        "environ = {}\nx = environ.get('A')",  # a local name, not os's
        "x = self.environ['A']",
        "import os\nx = 'os.environ'  # in a string or comment: os.getenv",
        "import os\nx = getattr(os, 'sep')",
    ],
)
def test_what_is_not_the_environment_is_not_flagged(source: str) -> None:
    assert environment_uses(source) == []
