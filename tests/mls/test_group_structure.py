"""The shape of ``ping_core.mls.group``: functions over a plain GroupState, the Group façade on top.

Checked on the source: no import inside a function or under ``TYPE_CHECKING``
(the ways an import cycle hides; the layers themselves are import-linter's
``mls-group-layers`` contract, tests/test_layers.py), no module reading another
object's private attribute (``x._name`` for any ``x`` but ``self``/``cls``), no
class over 500 lines, no function over 80 lines, and only the package itself
imports the façade module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ping_core.mls.group

PACKAGE = Path(ping_core.mls.group.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
MAX_CLASS_LINES = 500
MAX_FUNCTION_LINES = 80


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_hidden_imports(path: Path) -> None:
    tree = _tree(path)
    inner = [
        f"{path.name}:{node.lineno}"
        for fn in _functions(tree)
        for node in ast.walk(fn)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    guarded = [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
    ]
    assert inner == [] and guarded == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_private_attribute_of_another_object(path: Path) -> None:
    reads = [
        f"{path.name}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert reads == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_sizes(path: Path) -> None:
    tree = _tree(path)
    big = [
        f"class {n.name}: {n.end_lineno - n.lineno + 1} lines"
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef) and n.end_lineno - n.lineno + 1 > MAX_CLASS_LINES  # type: ignore[operator]
    ]
    big += [
        f"def {n.name}: {n.end_lineno - n.lineno + 1} lines"
        for n in _functions(tree)
        if n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES  # type: ignore[operator]
    ]
    assert big == []


def test_only_the_package_imports_the_facade() -> None:
    importers = []
    for path in MODULES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "group":
                importers.append(path.name)
    assert importers == ["__init__.py"]
