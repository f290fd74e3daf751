"""The shape of ``pyodide_app`` and its SDK package ``pyodide_app.sdk``, checked on the source.

- No class over 500 lines and no function over 80 in ``pyodide_app`` (the layers of
  ``pyodide_app.sdk`` are import-linter's ``pyodide-sdk-layers`` contract, tests/test_layers.py).
- The SDK goes through ``MessagingClient`` and ``ping_core.account``'s host flows: it builds
  no envelope by hand, and reads the transport only where no client operation or shared flow
  exists (the new device's KeyPackages ``claim_new_device`` waits for), named in
  :data:`TRANSPORT_READS`; the directory's device lists go through ``ping_core.account.list_devices``.
- Each RPC name is declared by one handler group only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pyodide_app
from pyodide_app import rpc
from pyodide_app.sdk import HANDLERS

ROOT = Path(pyodide_app.__file__).parent
MODULES = sorted(ROOT.rglob("*.py"))
SDK_MODULES = sorted((ROOT / "sdk").glob("*.py"))
MAX_CLASS_LINES = 500
MAX_FUNCTION_LINES = 80
#: module -> how many ``<x>.transport`` reads it may make (each one a transport call).
TRANSPORT_READS = {"linking.py": 1}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_long_class_or_function(path: Path) -> None:
    long = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > limit:
                long.append(f"{node.name}: {size} lines (at most {limit})")
    assert long == []


@pytest.mark.parametrize("path", SDK_MODULES, ids=lambda p: p.name)
def test_sdk_uses_the_client_not_the_transport(path: Path) -> None:
    tree = _tree(path)
    reads = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "transport"]
    assert len(reads) == TRANSPORT_READS.get(path.name, 0), f"transport read at lines {reads}"
    built = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "MessageEnvelope"
    ]
    assert built == [], f"an envelope built by hand at lines {built}"


def test_each_rpc_name_declared_once() -> None:
    names = [name for group in HANDLERS for name, _ in rpc.declared(group, dev=True)]
    assert names and len(names) == len(set(names))
