"""Pyodide under Node: one interpreter for the whole pytest session.

The ``pyodide`` fixture builds dist/ (``build.py --test``, a no-op when up to
date), starts ``node pyodide_host.mjs`` once and hands out the
:class:`PyodideNode` that runs pytest inside it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyodide_node import PyodideNode, build_for_tests  # noqa: E402


@pytest.fixture(scope="session")
def pyodide() -> Iterator[PyodideNode]:
    wheels = build_for_tests()
    host = PyodideNode(wheels=wheels)
    try:
        yield host
    finally:
        host.close()
