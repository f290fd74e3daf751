"""Runners for the official RFC 9420 test vectors (mlswg/mls-implementations).

Each family of vector files has a module here that registers a function
``run(case, provider)``: it returns when the case passes and raises
:class:`VectorMismatch` (or any ``PingError``) when it does not. The command
line (``python -m ping_core.testing.vectors FILE...``) and the pytest suite both
go through :func:`run_case`, so they can never disagree.
"""

from __future__ import annotations

from ping_core.testing.vectors.registry import (
    FAMILIES,
    NOT_APPLICABLE,
    PASSED,
    CaseResult,
    Family,
    VectorMismatch,
    detect_family,
    expect_equal,
    run_case,
    run_file,
)

__all__ = [
    "FAMILIES",
    "PASSED",
    "NOT_APPLICABLE",
    "CaseResult",
    "Family",
    "VectorMismatch",
    "detect_family",
    "expect_equal",
    "run_case",
    "run_file",
]
