"""The host's wall clock, the one place the SDK reads it for the MLS engine.

The engine (``ping_core.mls``) reads no clock: every group, public group and
KeyPackage call takes the time from its caller. The SDK gives it this one, in
seconds since the Unix epoch, to date KeyPackage lifetimes (RFC 9420 §7.2,
§10.1: a KeyPackage is valid from ``not_before`` to ``not_after``).
"""

from __future__ import annotations

import time

__all__ = ["wall_clock_s", "wall_now_s"]


def wall_clock_s() -> float:
    """The current wall-clock time in seconds since the Unix epoch (an engine ``Clock``)."""
    return time.time()


def wall_now_s() -> int:
    """:func:`wall_clock_s` in whole seconds (for ``generate_key_package``/``validate_key_package``)."""
    return int(time.time())
