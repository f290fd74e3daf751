"""Every cipher-suite-1 case of the official RFC 9420 test vectors.

The cases live in tests/vectors (see SOURCE.md there). Each case is its own
test, run through the same ``run_case`` as ``python -m ping_core.testing.vectors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pytest

from ping_core.mls.crypto import default_provider
from ping_core.testing.vectors import PASSED, detect_family, run_case
from ping_core.testing.vectors.registry import Case, Family

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def _cases() -> Sequence[object]:
    params = []
    for path in sorted(VECTORS.glob("*.json")):
        cases = json.loads(path.read_text())
        family = detect_family(cases)
        assert family is not None, f"{path.name}: unknown vector family"
        for i, case in enumerate(cases):
            params.append(pytest.param(family, case, id=f"{path.stem}-{i}"))
    return params


@pytest.mark.parametrize(("family", "case"), _cases())
def test_vector(family: Family, case: Case) -> None:
    result = run_case(family, case, default_provider())
    assert result.status == PASSED, result.detail
