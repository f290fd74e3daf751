"""Live updates in the worker: sync rounds, woken at once by a long poll over every conversation.

Two asyncio tasks:

* **rounds**: ``round()`` (the SDK's sync: Welcome inbox, every conversation,
  events to the page) at once when woken, else every ``interval`` seconds
  (every ``max(interval, FALLBACK_INTERVAL)`` while the watch below works: the
  rounds are then only a fallback). A failure makes the status offline and
  backs off (1 s doubling to 30 s).
* **watch**: one long poll (``MessagingClient.wait_for_news``: the server's
  ``POST /v1/watch`` over every open conversation at its sync position and
  the Welcome inbox; no lock, no state) through ``news(wait_ms)``. When
  something is new anywhere, it wakes the rounds and waits for a round that
  began after the news, so the message is decrypted and shown within a round
  trip whichever conversation is on screen. A conversation the server says
  this device may no longer read (removed: the server ends its access at the
  removing Commit) is reported with ``on_access(conv, False)``; one with news
  with ``on_access(conv, True)``.

Only one tab of the account watches at a time (the holder of the Web Lock
``watch_lock``; the lock passes on when that tab closes): a browser keeps
about six HTTP/1.1 connections per origin, shared by every tab, and the long
poll holds one. The other tabs keep their rounds every ``interval``. A long
poll is cancelled only by ``rewatch`` (the set of conversations changed: an
invitation was accepted), and the cancellation aborts its fetch, so no
abandoned request keeps a connection until its deadline. ``focus`` (the conversation on screen) no
longer decides what is watched; setting it runs a round (``kick``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ping_core.errors import PingError, TransportError
from ping_core.ids import ConversationId
from ping_core.sync import News

__all__ = ["LiveSync", "WATCH_WAIT_MS", "FALLBACK_INTERVAL"]

log = logging.getLogger("pyodide_app.live")

WATCH_WAIT_MS = 20_000
# Seconds between rounds while the watch works (news wakes them at once anyway).
FALLBACK_INTERVAL = 30.0
_MAX_BACKOFF = 30.0


class LiveSync:
    """Runs ``round`` periodically and on news; reports online/offline through ``on_status``."""

    def __init__(
        self,
        round: Callable[[], Awaitable[None]],
        news: Callable[[int], Awaitable[News | None]],
        cursor_of: Callable[[ConversationId], int],
        on_status: Callable[[bool, str | None], None],
        *,
        on_access: Callable[[ConversationId, bool], None] | None = None,
        watch_lock: str | None = None,
        interval: float = 2.0,
    ) -> None:
        self._round = round
        self._news = news
        self._cursor_of = cursor_of
        self._on_status = on_status
        self._on_access = on_access
        self._watch_lock = watch_lock
        self.interval = interval
        self.focus: ConversationId | None = None
        self.online: bool | None = None
        self.watching = False  # this tab's watch is answering (then the rounds are only a fallback)
        # Conversations whose news a round could not consume, at that position (see _watch_loop).
        self._stuck: dict[ConversationId, int] = {}
        self._wake = asyncio.Event()
        self._done = asyncio.Condition()
        self._started = 0
        self._finished = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: asyncio.Future[News | None] | None = None  # the watch request in flight

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

    def rewatch(self) -> None:
        """Start the watch again at once (the set of conversations changed, e.g. an invitation
        was accepted): the request in flight would wait on the old set until it times out."""
        if self._waiting is not None and not self._waiting.done():
            self._waiting.cancel()

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
            if self.watching and delay == self.interval:
                delay = max(delay, FALLBACK_INTERVAL)
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

    @staticmethod
    def _cancelling() -> bool:
        """Whether this task itself is being cancelled (stop()), not only its watch request."""
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    async def _watch_loop(self) -> None:
        try:
            while True:
                await self._watch_once()
        finally:
            self.watching = False

    async def _watch_once(self) -> None:
        if not self.online:
            self.watching = False
            await asyncio.sleep(1.0)
            return
        self._waiting = asyncio.ensure_future(self._news(WATCH_WAIT_MS))
        try:
            news = await asyncio.shield(self._waiting)
        except asyncio.CancelledError:
            if self._waiting.cancelled() and not self._cancelling():
                return  # rewatch(): the next turn watches the current conversations
            self._waiting.cancel()
            raise
        except PingError as exc:  # offline, or refused: the rounds report it (and run at their interval)
            self.watching = False
            if not isinstance(exc, TransportError):
                log.warning("live: watch failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(2.0)
            return
        if news is None:  # no client loaded yet: the next round loads it
            self.watching = False
            await asyncio.sleep(1.0)
            return
        self.watching = True
        if self._on_access is not None:
            for conv in news.forbidden:
                self._on_access(conv, False)  # removed from it: the server no longer lets us read it
            for conv in news.conversations:
                self._on_access(conv, True)
        before = {conv: self._cursor_of(conv) for conv in news.conversations}
        fresh = [conv for conv in news.conversations if self._stuck.get(conv) != before[conv]]
        if not (fresh or news.welcomes):
            if news.conversations:
                # Only news a round could not consume (e.g. a broken conversation, logged by the
                # sync): do not spin on it; the rounds retry it, this waits like the old rounds.
                await asyncio.sleep(min(self.interval, 2.0))
            return
        # A round that STARTS after this point sees the news: wake it and wait for it.
        target = self._started + 1
        self._wake.set()
        await self.wait_round(target)
        for conv, cursor in before.items():
            if self._cursor_of(conv) <= cursor:
                self._stuck[conv] = cursor
            else:
                self._stuck.pop(conv, None)
