"""Pytest settings of the interop tests: the ``ping_interop`` marker.

Tests that need Ping's driver (`python -m ping_core.mls.interop`) carry ``ping_interop``;
``pytest tests/interop -m "not ping_interop"`` runs only the ts-mls x ts-mls rig checks.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ping_interop: needs Ping's interop driver (python -m ping_core.mls.interop); "
        'deselect with -m "not ping_interop"',
    )
