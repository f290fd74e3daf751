"""Rate limiting (token buckets), the bound on requests pending authentication, and long-poll
wake-ups. In-process state only."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Hashable, Iterable

__all__ = ["RateLimiter", "Admission", "Notifier", "Subscription"]


class RateLimiter:
    """A token bucket per key (a device id, a client address): ``rate`` requests per second
    sustained, bursts up to ``burst``.

    ``rate <= 0`` disables limiting. State is per server process: with several
    processes behind one database each enforces its own bucket. At most
    ``_MAX_KEYS`` buckets are kept (full ones are dropped first: they carry no
    information).
    """

    _MAX_KEYS = 100_000

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)

    def wait(self, key: Hashable, now: float) -> float | None:
        """Without spending: None when ``key`` has a token, else the seconds until it has one."""
        if self.rate <= 0:
            return None
        entry = self._buckets.get(key)
        if entry is None:
            return None
        tokens = min(self.burst, entry[0] + (now - entry[1]) * self.rate)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: Hashable, now: float) -> float | None:
        """Spend one token; None when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return None
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self._buckets) >= self._MAX_KEYS and key not in self._buckets:
            self._prune(now)
            if len(self._buckets) >= self._MAX_KEYS:
                self._buckets.clear()  # all busy (a flood of keys): start over rather than grow
        self._buckets[key] = (tokens - 1.0, now)
        return None

    def _prune(self, now: float) -> None:
        # Buckets that have refilled completely carry no information.
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))


class Admission:
    """Counts the requests that are not authenticated yet (reading their body, being verified):
    at most ``total`` at once, and ``per_address`` from one client address (0: no bound)."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.pending = 0
        self._by_address: dict[str, int] = {}

    def enter(self, address: str) -> bool:
        """Count one more for ``address``; False (nothing counted) when a bound is reached."""
        held = self._by_address.get(address, 0)
        if (self.total and self.pending >= self.total) or (self.per_address and held >= self.per_address):
            return False
        self.pending += 1
        self._by_address[address] = held + 1
        return True

    def leave(self, address: str) -> None:
        self.pending -= 1
        held = self._by_address[address] - 1
        if held:
            self._by_address[address] = held
        else:
            del self._by_address[address]


class Subscription:
    """One long poll's wake-up: ``event`` is set by a notification of any of its keys, and
    :meth:`take_fired` says which keys fired since it was last asked."""

    __slots__ = ("keys", "event", "_fired")

    def __init__(self, keys: Iterable[bytes]) -> None:
        self.keys = tuple(keys)
        self.event = asyncio.Event()
        self._fired: set[bytes] = set()

    def fire(self, key: bytes | None) -> None:
        if key is not None:
            self._fired.add(key)
        self.event.set()

    def take_fired(self) -> set[bytes]:
        fired, self._fired = self._fired, set()
        return fired


class Notifier:
    """Wakes long polls of a conversation when this process appends to it (and watches of a
    device's Welcome inbox when a Welcome is delivered to it: any ``bytes`` key works).

    A waiter subscribes BEFORE it reads, so an append that commits between its
    read and its wait still wakes it. Appends made by another process sharing
    the database arrive through ``Database.on_append`` (PostgreSQL's NOTIFY) or
    are seen by the waiters' periodic re-read (the server's ``poll_interval``).
    """

    def __init__(self) -> None:
        self._waiters: dict[bytes, set[Subscription]] = {}

    def subscribe(self, keys: Iterable[bytes]) -> Subscription:
        """One subscription, woken by a notification of any of ``keys`` (a watch names several conversations)."""
        sub = Subscription(keys)
        for key in sub.keys:
            self._waiters.setdefault(key, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        for key in sub.keys:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(sub)
                if not waiters:
                    del self._waiters[key]

    def notify(self, key: bytes) -> None:
        for sub in self._waiters.get(key, ()):
            sub.fire(key)

    def notify_all(self) -> None:
        """Wake every waiter (the server is shutting down)."""
        for waiters in self._waiters.values():
            for sub in waiters:
                sub.fire(None)

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())
