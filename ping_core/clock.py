"""Hybrid logical clock (Kulkarni et al., 2014) for ordering messages across devices.

An :class:`Hlc` is ``(wall_ms, counter)``, ordered lexicographically. It stays
close to wall-clock time yet never goes backwards on a device and always
exceeds every timestamp the device has seen, so "happened before" implies
"smaller HLC" even with skewed clocks. Ties between devices are broken by the
caller (e.g. by sender ``DeviceId``).

All operations are pure: they return a new ``Hlc``. The time source is an
argument (``now_ms``), never read here, so tests can drive a synthetic clock.

CBOR (inside an envelope, see ``docs/formats.md``): ``[wall_ms, counter]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ping_core.cbor import CborValue, as_list, as_uint, decode_record, encode_record
from ping_core.errors import InvalidInput

__all__ = ["Hlc", "MAX_WALL_MS", "MAX_COUNTER"]

# 2^48 ms is the year 10889: far beyond any clock, small enough to keep the
# pair inside the 64-bit range other implementations use.
MAX_WALL_MS = (1 << 48) - 1
MAX_COUNTER = (1 << 32) - 1
_HLC_VERSION = 1


@dataclass(frozen=True, order=True, slots=True)
class Hlc:
    """A hybrid logical timestamp. ``Hlc.ZERO`` precedes every other."""

    wall_ms: int = 0
    counter: int = 0

    ZERO: ClassVar["Hlc"]

    def __post_init__(self) -> None:
        if type(self.wall_ms) is not int or not 0 <= self.wall_ms <= MAX_WALL_MS:
            raise InvalidInput("Hlc.wall_ms out of range")
        if type(self.counter) is not int or not 0 <= self.counter <= MAX_COUNTER:
            raise InvalidInput("Hlc.counter out of range")

    def tick(self, now_ms: int) -> "Hlc":
        """The timestamp of a local event (a send) after ``self``, at wall time ``now_ms``.

        Guarantees ``result > self`` and ``result.wall_ms >= now_ms`` (clamped to the range).
        """
        now = _clamp_now(now_ms)
        if now > self.wall_ms:
            return Hlc(now, 0)
        return self._next_after(self.wall_ms, self.counter)

    def receive(self, remote: "Hlc", now_ms: int, *, max_drift_ms: int | None = None) -> "Hlc":
        """The timestamp after observing ``remote`` (a received message) at wall time ``now_ms``.

        Guarantees ``result > self`` and ``result > remote``. With
        ``max_drift_ms``, a ``remote`` more than that far ahead of ``now_ms``
        raises ``InvalidInput`` and nothing changes (one device with a wild
        clock must not drag every other clock into the future).
        """
        if not isinstance(remote, Hlc):
            raise InvalidInput("remote must be an Hlc")
        now = _clamp_now(now_ms)
        if max_drift_ms is not None and remote.wall_ms > now + max_drift_ms:
            raise InvalidInput("remote clock is too far ahead")
        wall = max(self.wall_ms, remote.wall_ms, now)
        if wall == self.wall_ms and wall == remote.wall_ms:
            return self._next_after(wall, max(self.counter, remote.counter))
        if wall == self.wall_ms:
            return self._next_after(wall, self.counter)
        if wall == remote.wall_ms:
            return self._next_after(wall, remote.counter)
        return Hlc(wall, 0)

    @staticmethod
    def _next_after(wall: int, counter: int) -> "Hlc":
        if counter < MAX_COUNTER:
            return Hlc(wall, counter + 1)
        # Counter exhausted within one millisecond: borrow the next one.
        if wall >= MAX_WALL_MS:
            raise InvalidInput("Hlc exhausted")
        return Hlc(wall + 1, 0)

    def to_value(self) -> CborValue:
        """``[wall_ms, counter]``, for embedding in another record."""
        return [self.wall_ms, self.counter]

    @classmethod
    def from_value(cls, value: object, what: str = "hlc") -> "Hlc":
        """Parse :meth:`to_value` output; ``InvalidInput`` on anything else."""
        items = as_list(value, what, max_items=2)
        if len(items) != 2:
            raise InvalidInput(f"{what}: expected [wall_ms, counter]")
        return cls(as_uint(items[0], f"{what}.wall_ms", max_value=MAX_WALL_MS), as_uint(items[1], f"{what}.counter", max_value=MAX_COUNTER))

    def encode(self) -> bytes:
        """Standalone record ``{"v": 1, "hlc": [wall_ms, counter]}`` (to persist a clock)."""
        return encode_record(_HLC_VERSION, {"hlc": self.to_value()})

    @classmethod
    def decode(cls, data: bytes) -> "Hlc":
        rec = decode_record(data, what="Hlc", version=_HLC_VERSION, keys=("hlc",), max_size=64)
        return cls.from_value(rec["hlc"], "Hlc.hlc")


Hlc.ZERO = Hlc(0, 0)


def _clamp_now(now_ms: int) -> int:
    if type(now_ms) is not int or now_ms < 0:
        raise InvalidInput("now_ms must be a non-negative integer")
    return min(now_ms, MAX_WALL_MS)
