"""Feast's and BentoML's underscore names are used in one module only (clicks2intent.common.framework_adapter).

Scanned with ``ast``: ``plugin/``, ``bento/`` and ``feature_repo/``. A use is any of

* an import from a private module or of a private name (``from feast.utils import _x``,
  ``import bentoml._internal.x``, ``from _bentoml_sdk import y``);
* an attribute ``obj._x`` where ``_x`` is a name Feast or BentoML define and this code base does not
  (``store._get_provider()``, ``online_store._get_conn(config)``); ``super()._x``; ``self._x`` in a
  subclass of a Feast or BentoML class that does not define ``_x`` itself;
* a method ``def _x`` overriding one of theirs in a subclass of a Feast or BentoML class;
* a keyword argument ``_x=`` to a Feast or BentoML callable; a string naming a private module
  (``"bentoml._internal.server"``, e.g. a logger name).

"Names Feast or BentoML define" are read from the installed packages' sources, so the newest-versions
run (``make test-newest``) scans against the newest releases.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "plugin", ROOT / "bento", ROOT / "feature_repo"]
ADAPTER = ROOT / "plugin" / "clicks2intent" / "common" / "framework_adapter.py"
FRAMEWORKS = ("feast", "bentoml", "_bentoml_sdk", "_bentoml_impl", "bentoml_cli")
PRIVATE_MODULE_STRING = re.compile(r"^(feast|bentoml)(\.\w+)*\._\w+")


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def framework_module(module: str) -> bool:
    return module.split(".", 1)[0] in FRAMEWORKS


def private_module(module: str) -> bool:
    return any(private(part) for part in module.split("."))


@functools.cache
def framework_private_names() -> frozenset[str]:
    """Every single-underscore name defined in the installed Feast and BentoML sources."""
    names: set[str] = set()
    for package in FRAMEWORKS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            for path in Path(location).rglob("*.py"):
                try:
                    tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
                except SyntaxError:
                    continue
                names.update(n for n in _defined_names(tree) if private(n))
    return frozenset(names)


def _defined_names(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            yield node.attr
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif isinstance(node, ast.arg):
            yield node.arg


def scanned_files() -> list[Path]:
    return sorted(
        p for d in SCANNED for p in d.rglob("*.py") if p != ADAPTER and "__pycache__" not in p.parts
    )


@functools.cache
def own_private_names() -> frozenset[str]:
    """Underscore names this code base defines itself (its own helpers and attributes)."""
    names: set[str] = set()
    for path in scanned_files():
        names.update(n for n in _defined_names(ast.parse(path.read_text())) if private(n))
    return frozenset(names)


def violations(source: str, own: frozenset[str] | None = None) -> list[str]:
    """Each use of a Feast or BentoML underscore name in ``source``, as ``line: what``."""
    tree = ast.parse(source)
    theirs = framework_private_names()
    own = own_private_names() if own is None else own
    bound: set[str] = set()  # local names bound to Feast / BentoML modules or objects
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if framework_module(alias.name):
                    bound.add((alias.asname or alias.name).split(".")[0])
                    if private_module(alias.name):
                        found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and framework_module(node.module):
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if private_module(node.module) or private(alias.name):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
    framework_classes = _framework_subclasses(tree, bound)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr) and node.attr in theirs:
            base = node.value
            if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                found.append(f"{node.lineno}: super().{node.attr}")
            elif isinstance(base, ast.Name) and base.id in ("self", "cls"):
                cls = _enclosing_class(tree, node)
                if cls is not None and cls.name in framework_classes and node.attr not in _members(cls):
                    found.append(f"{node.lineno}: {base.id}.{node.attr} (inherited from {cls.name}'s base)")
            elif _root(base) in bound or node.attr not in own:
                found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ClassDef) and node.name in framework_classes:
            for item in node.body:
                method = isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                if method and private(item.name) and item.name in theirs:
                    found.append(f"{item.lineno}: def {item.name} overrides a private hook of {node.name}")
        elif isinstance(node, ast.Call) and _root(node.func) in bound:
            found += [f"{node.lineno}: keyword {k.arg}=" for k in node.keywords if k.arg and private(k.arg)]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and PRIVATE_MODULE_STRING.match(node.value)
        ):
            found.append(f"{node.lineno}: string {node.value!r}")
    return found


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _framework_subclasses(tree: ast.AST, bound: set[str]) -> set[str]:
    """Classes whose bases (transitively, within the module) are Feast / BentoML classes."""
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for cls in classes:
            if cls.name not in found and any(_root(b) in bound or _root(b) in found for b in cls.bases):
                found.add(cls.name)
                changed = True
    return found


def _members(cls: ast.ClassDef) -> set[str]:
    return set(_defined_names(cls))


def _enclosing_class(tree: ast.AST, target: ast.AST) -> ast.ClassDef | None:
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        if any(n is target for n in ast.walk(cls)):
            inner = [c for c in ast.walk(cls) if isinstance(c, ast.ClassDef) and c is not cls]
            if not any(any(n is target for n in ast.walk(c)) for c in inner):
                return cls
    return None


def test_no_feast_or_bentoml_private_name_outside_the_adapter() -> None:
    found = {str(p.relative_to(ROOT)): v for p in scanned_files() if (v := violations(p.read_text()))}
    assert not found, "\n".join(f"{path}: {v}" for path, vs in found.items() for v in vs)


def test_the_adapter_is_where_they_are() -> None:
    """The adapter itself holds some (else the scan, or the adapter, is wrong)."""
    assert violations(ADAPTER.read_text())


@pytest.mark.parametrize(
    "source",
    [
        "from feast.utils import _get_column_names",
        "from feast.infra.online_stores.sqlite import _quote_id as q",
        "import bentoml._internal.models.model",
        "from bentoml._internal.models.model import ModelStore",
        "from _bentoml_sdk.service import set_current_service",
        "def f(store):\n    return store._get_provider()",
        "def f(store):\n    return store._get_conn(None)",
        "import feast\nx = feast.utils._convert_arrow_to_proto",
        "from feast.infra.online_stores.redis import RedisOnlineStore\n"
        "class S(RedisOnlineStore):\n    def f(self, c):\n        return self._get_client(c)",
        "from feast.infra.compute_engines.local.compute import LocalComputeEngine\n"
        "class E(LocalComputeEngine):\n    def _materialize_one(self, r, t):\n        return super()._materialize_one(r, t)",
        "import bentoml\nbentoml.models.get('x', _model_store=None)",
        "LOGGER = 'bentoml._internal.server.http_app'",
    ],
)
def test_the_scan_finds_each_kind_of_use(source: str) -> None:
    assert violations(source, own=frozenset()), source


@pytest.mark.parametrize(
    "source",
    [
        "from feast.infra.online_stores.helpers import compute_table_id",
        "from feast.infra.online_stores.redis import RedisOnlineStore\n"
        "class S(RedisOnlineStore):\n    def online_read(self, c, t, k, f=None):\n        return self._mine(c)\n"
        "    def _mine(self, c):\n        return c",
        "class Mine:\n    def __init__(self):\n        self._views = []\n    def f(self, other):\n        return other._views",
        "import bentoml\nbentoml.get_current_service()",
        "LOGGER = 'clicks2intent.serving.endpoints'",
    ],
)
def test_the_scan_passes_public_uses(source: str) -> None:
    assert not violations(source, own=frozenset({"_views", "_mine"})), source
