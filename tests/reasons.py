"""``raises_reason``: the test form of "this call is refused, for this reason".

Tests check an ``MlsError``'s :class:`~ping_core.errors.MlsReason`, not its
message text (the message is for people and may change). Importable from every
test folder: pytest puts ``tests/`` on ``sys.path`` for the root conftest.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest

from ping_core.errors import MlsError, MlsReason


@contextmanager
def raises_reason(
    reason: MlsReason, cls: type[MlsError] = MlsError, *, match: str | None = None
) -> Iterator[pytest.ExceptionInfo[MlsError]]:
    """Like ``pytest.raises(cls)``, and the error's ``reason`` must be ``reason``.

    ``match`` only where the message text itself is the guarantee (say why at the call),
    e.g. that it names which leaf was refused."""
    with pytest.raises(cls, match=match) as info:
        yield info
    got = info.value.reason
    assert got is reason, f"{type(info.value).__name__}({str(info.value)!r}) has reason {got.name}, expected {reason.name}"
