"""Live updates in the worker: sync rounds, woken early by a long poll on the focused conversation.

Two asyncio tasks:

* **rounds**: ``round()`` (the SDK's sync: Welcome inbox, every conversation,
  events to the page) every ``interval`` seconds, or at once when woken. A
  failure makes the status offline and backs off (1 s doubling to 30 s).
* **watch**: a long poll (``fetch_since(..., wait_ms=...)``, no lock, no
  state) on the conversation the page shows. When something is appended,
  it wakes the rounds and waits for a round that began after the news, so
  the message is decrypted and shown within a round trip. A 403 there means
  this device was removed (the server ends a removed device's access with the
  removing Commit, so the device never reads that Commit): ``on_access(conv, False)``;
  a later answer: ``on_access(conv, True)``.

Only one conversation is long-polled, and only by one tab of the account at a
time (the holder of the Web Lock ``watch_lock``; the lock passes on when that
tab closes): a browser keeps about six HTTP/1.1 connections per origin, shared
by every tab, and each long poll holds one. The other conversations, the other
tabs and the Welcome inbox are read by the rounds (the server has no "any of
my conversations" long poll). A long poll is never
cancelled half-way (an abandoned fetch would keep its connection until its
deadline); a new focus takes effect when the current poll returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ping_core.errors import PingError, TransportError
from ping_core.ids import ConversationId
from ping_core.sync import SyncCursor
from ping_core.transport import Transport

__all__ = ["LiveSync", "WATCH_WAIT_MS"]

log = logging.getLogger("pyodide_app.live")

WATCH_WAIT_MS = 20_000
_MAX_BACKOFF = 30.0


class LiveSync:
    """Runs ``round`` periodically and on news; reports online/offline through ``on_status``."""

    def __init__(
        self,
        round: Callable[[], Awaitable[None]],
        transport: Callable[[], Transport | None],
        cursor_of: Callable[[ConversationId], int],
        on_status: Callable[[bool, str | None], None],
        *,
        on_access: Callable[[ConversationId, bool], None] | None = None,
        watch_lock: str | None = None,
        interval: float = 2.0,
    ) -> None:
        self._round = round
        self._transport = transport
        self._cursor_of = cursor_of
        self._on_status = on_status
        self._on_access = on_access
        self._watch_lock = watch_lock
        self.interval = interval
        self.focus: ConversationId | None = None
        self.online: bool | None = None
        self._wake = asyncio.Event()
        self._done = asyncio.Condition()
        self._started = 0
        self._finished = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    def start(self) -> None:
        """Start both tasks (no-op when running)."""
        if self.running:
            return
        self._tasks = [asyncio.ensure_future(self._rounds()), asyncio.ensure_future(self._watch())]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    def kick(self) -> None:
        """Run a round now (e.g. the page came back to the foreground)."""
        self._wake.set()

    async def wait_round(self, after: int) -> None:
        """Wait until at least ``after`` rounds have finished."""
        async with self._done:
            await self._done.wait_for(lambda: self._finished >= after)

    def _status(self, online: bool, error: str | None) -> None:
        if online != self.online or error is not None:
            self.online = online
            self._on_status(online, error)

    async def _rounds(self) -> None:
        backoff = 1.0
        while True:
            self._wake.clear()
            self._started += 1
            delay = self.interval
            try:
                await self._round()
                self._status(True, None)
                backoff = 1.0
            except TransportError as exc:
                self._status(False, f"{exc}")
                delay, backoff = backoff, min(backoff * 2, _MAX_BACKOFF)
            except PingError as exc:
                log.warning("live: sync round failed: %s: %s", type(exc).__name__, exc)
                self._status(bool(self.online), f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a bug must not end live updates silently
                log.exception("live: sync round crashed")
                self._status(bool(self.online), f"{type(exc).__name__}: {exc}")
            async with self._done:
                self._finished += 1
                self._done.notify_all()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    async def _watch(self) -> None:
        if self._watch_lock is None:
            await self._watch_loop()
            return
        from .locks import WebLock

        async with WebLock(self._watch_lock):  # held while this tab lives; a waiting request costs nothing
            await self._watch_loop()

    async def _watch_loop(self) -> None:
        while True:
            conv, transport = self.focus, self._transport()
            if conv is None or transport is None or not self.online:
                await asyncio.sleep(1.0)
                continue
            cursor = self._cursor_of(conv)
            try:
                envelopes = await transport.fetch_since(conv, SyncCursor(cursor), 1, wait_ms=WATCH_WAIT_MS)
            except TransportError as exc:
                if exc.status == 403 and self._on_access is not None:
                    self._on_access(conv, False)  # removed from it: the server no longer lets us read it
                await asyncio.sleep(2.0)  # offline, or a history-only chat: the rounds report it
                continue
            except PingError:
                await asyncio.sleep(2.0)
                continue
            if self._on_access is not None:
                self._on_access(conv, True)
            if envelopes and conv == self.focus:
                # A round that STARTS after this point sees the news: wake it and wait for it.
                target = self._started + 1
                self._wake.set()
                await self.wait_round(target)
                if self._cursor_of(conv) <= cursor:
                    # The round could not consume it (e.g. a chat waiting for its Welcome):
                    # do not spin on the same envelope.
                    await asyncio.sleep(self.interval)
