"""ping_core.clock.Hlc and ping_core.sync.SyncCursor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ping_core.clock import MAX_COUNTER, MAX_WALL_MS, Hlc
from ping_core.errors import InvalidInput
from ping_core.sync import SyncCursor

hlcs = st.builds(Hlc, st.integers(0, 2**40), st.integers(0, 1000))
nows = st.integers(0, 2**40)


def test_zero_and_order() -> None:
    assert Hlc(0, 0) == Hlc.ZERO and Hlc.ZERO < Hlc(0, 1) < Hlc(1, 0)
    with pytest.raises(InvalidInput):
        Hlc(-1, 0)
    with pytest.raises(InvalidInput):
        Hlc(0, MAX_COUNTER + 1)
    with pytest.raises(InvalidInput):
        Hlc(True, 0)


def test_tick_follows_wall_clock_and_never_goes_back() -> None:
    h = Hlc.ZERO.tick(1000)
    assert h == Hlc(1000, 0)
    assert h.tick(1000) == Hlc(1000, 1)
    assert h.tick(500) == Hlc(1000, 1)  # wall clock went backwards: logical part moves on
    assert h.tick(2000) == Hlc(2000, 0)
    assert Hlc(5, MAX_COUNTER).tick(5) == Hlc(6, 0)
    with pytest.raises(InvalidInput):
        Hlc(MAX_WALL_MS, MAX_COUNTER).tick(0)
    with pytest.raises(InvalidInput):
        h.tick(-1)


@given(local=hlcs, remote=hlcs, now=nows)
def test_receive_exceeds_both(local: Hlc, remote: Hlc, now: int) -> None:
    out = local.receive(remote, now)
    assert out > local and out > remote and out.wall_ms >= now


@given(local=hlcs, now=nows)
def test_tick_is_monotonic(local: Hlc, now: int) -> None:
    out = local.tick(now)
    assert out > local and out.wall_ms >= min(now, MAX_WALL_MS)


def test_receive_drift_guard() -> None:
    with pytest.raises(InvalidInput):
        Hlc(1000, 0).receive(Hlc(10_000_000, 0), 1000, max_drift_ms=60_000)
    assert Hlc(1000, 0).receive(Hlc(1500, 3), 1000, max_drift_ms=60_000) == Hlc(1500, 4)
    with pytest.raises(InvalidInput):
        Hlc.ZERO.receive((1, 2), 0)  # type: ignore[arg-type]


def test_hlc_codec() -> None:
    h = Hlc(123456789, 42)
    assert Hlc.decode(h.encode()) == h
    assert Hlc.from_value([1, 2]) == Hlc(1, 2)
    for bad in ([1], [1, 2, 3], [1, -2], [2**48, 0], "x", [1, True]):
        with pytest.raises(InvalidInput):
            Hlc.from_value(bad)


def test_cursor() -> None:
    c = SyncCursor()
    assert c.seq == 0 and c.advance(5) == SyncCursor(5)
    assert SyncCursor(5).advance(3) == SyncCursor(5)
    assert c.advance_past([3, 9, 4]) == SyncCursor(9)
    assert SyncCursor.decode(SyncCursor(77).encode()) == SyncCursor(77)
    with pytest.raises(InvalidInput):
        SyncCursor(-1)
    with pytest.raises(InvalidInput):
        c.advance(-1)
    with pytest.raises(InvalidInput):
        SyncCursor.decode(b"\xa1\x61v\x01")
