"""Sync: follow every conversation's log from its cursor, hand the messages out, acknowledge them.

Guarantees:

* **Page by page, durable.** Each page of ``SYNC_PAGE`` envelopes is processed into the working
  set and checkpointed with its cursor (and its messages in the inbox) before its messages are
  handed on; the cursor advances between pages.
* **The log must continue the cursor exactly** (it is append-only and numbered 1, 2, 3...): a
  gap, a reorder, a duplicate is the transport's fault; nothing past it is consumed and it is
  reported (``LOG_DISCONTINUITY``); the next sync asks again.
* **Isolation.** A failing conversation is logged and skipped; a bad envelope is logged,
  reported UNREADABLE and skipped for good (a retry would refuse it again).
* **Acknowledgement.** Returned messages leave the inbox when returned (default) or when the
  app acknowledges them (``explicit_ack``); a crash before that repeats them, never loses them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Iterable

from ping_core import sync as sync_types
from ping_core.clientstate import ClientState
from ping_core.commitflow import CommitFlow
from ping_core.conversation import Conversation, StoreUndo
from ping_core.errors import InvalidInput, PingError, StorageError, TransportError
from ping_core.ids import ConversationId
from ping_core.unacked import inbox_name
from ping_core.message import IncomingMessage, MessageEnvelope, MessageKind
from ping_core.receive import Receiver, WaitForWelcome, report, report_refused
from ping_core.sync import News, SyncProblem, SyncProblemKind, SyncResult
from ping_core.transport import MAX_WATCH_CONVERSATIONS, WatchResult
from ping_core.transport.base import MAX_FETCH_WAIT_MS

__all__ = ["Syncer", "OwedCommits"]

log = logging.getLogger("ping_core.client")

#: What a sync runs per conversation after reading its log (caller holds ``conv.lock``).
OwedCommits = Callable[[Conversation, int, list[IncomingMessage]], Awaitable[bool]]


class Syncer:
    """Sync, pending messages, acknowledgements and watching for one client."""

    def __init__(self, state: ClientState, receiver: Receiver, commits: CommitFlow) -> None:
        self.st = state
        self.receiver = receiver
        self.commits = commits

    async def sync(self, now_ms: int, owed: OwedCommits | None) -> SyncResult:
        """``MessagingClient.sync``: every conversation's undelivered inbox messages, then its log
        (and ``owed`` after it, when given), each conversation isolated from the others."""
        st = self.st
        convs = list(st.convs.values())
        delivered: list[tuple[Conversation, IncomingMessage]] = []
        for conv in convs:
            async with conv.lock:
                delivered += ((conv, m) for m in self.undelivered(conv))
        for conv in convs:
            fresh: list[IncomingMessage] = []
            try:
                async with conv.lock:
                    await self.sync_one(conv, now_ms, fresh)
                    if owed is not None:
                        await owed(conv, now_ms, fresh)
            except PingError as exc:
                await st.raise_if_revoked(exc)
                # A history-only conversation is normally not readable before its Welcome (403).
                quiet = isinstance(exc, TransportError) and exc.status == 403 and conv.loaded and conv.group is None
                (log.debug if quiet else log.warning)(
                    "sync: conversation %s skipped: %s: %s", conv.id.as_hex(), type(exc).__name__, exc
                )
            delivered += ((conv, m) for m in fresh)  # durable: sync_one checkpointed their pages
            if st.revoked_by is not None:
                await st.lock_out()
        problems: list[SyncProblem] = []
        for conv in convs:
            problems += conv.problems
            conv.problems.clear()
        return SyncResult(tuple(await self.hand_out(delivered)), tuple(problems))

    async def pending_messages(self) -> list[IncomingMessage]:
        """``MessagingClient.pending_messages``: the inbox's messages not returned yet, no network."""
        delivered: list[tuple[Conversation, IncomingMessage]] = []
        for conv in list(self.st.convs.values()):
            async with conv.lock:
                delivered += ((conv, m) for m in self.undelivered(conv))
        return await self.hand_out(delivered)

    async def ack_messages(self, messages: Iterable[IncomingMessage]) -> None:
        """``MessagingClient.ack_messages`` (``InvalidInput`` for anything but IncomingMessages)."""
        if isinstance(messages, IncomingMessage) or not isinstance(messages, Iterable):
            raise InvalidInput("ack_messages needs an iterable of IncomingMessage")
        by_conv: dict[ConversationId, list[str]] = {}
        for msg in messages:
            if not isinstance(msg, IncomingMessage):
                raise InvalidInput("ack_messages needs an iterable of IncomingMessage")
            by_conv.setdefault(msg.conversation_id, []).append(inbox_name(msg))
        for conv_id, names in by_conv.items():
            conv = self.st.convs.get(conv_id)
            if conv is None:
                continue
            async with conv.lock:
                for name in names:
                    if name in conv.inbox:
                        conv.drop_incoming(name)
        if self.st.store.pending:
            await self.st.store.checkpoint()

    @staticmethod
    def undelivered(conv: Conversation) -> list[IncomingMessage]:
        """The inbox's messages not yet returned by this client (caller holds ``conv.lock``)."""
        out = []
        for name in conv.inbox.undelivered():
            msg = conv.read_incoming(name)
            if msg is not None:
                out.append(msg)
        return out

    async def hand_out(self, delivered: list[tuple[Conversation, IncomingMessage]]) -> list[IncomingMessage]:
        """Hand ``delivered`` (durable in the inbox) to the app: with explicit acks they wait for
        ``ack_messages``; otherwise returning them acknowledges them, so their records are
        deleted in one last checkpoint (if it fails they are returned all the same and the next
        checkpoint writes the deletions: a crash before that repeats them, never loses them)."""
        explicit = self.st.explicit_ack
        for conv, msg in delivered:
            name = inbox_name(msg)
            if explicit:
                conv.inbox.hand_out(name)
            elif name in conv.inbox:
                conv.drop_incoming(name)
        if not explicit and self.st.store.pending:
            try:
                await self.st.store.checkpoint()
            except StorageError as exc:
                log.warning("inbox: acknowledgements not written yet (%s); the next checkpoint writes them", type(exc).__name__)
        return [msg for _, msg in delivered]

    async def sync_one(self, conv: Conversation, now_ms: int, delivered: list[IncomingMessage]) -> None:
        """Catch ``conv`` up on its log, page by page (caller holds its lock): each page is
        checkpointed with its cursor (and its messages in the inbox) before its messages are
        appended to ``delivered``; then an interrupted commit of ours is settled."""
        page_size = sync_types.SYNC_PAGE
        while True:
            start = conv.cursor
            batch = await self.st.transport.fetch_since(conv.id, start, page_size)
            if not batch:
                break
            undo = StoreUndo(self.st.store)
            page, waiting = self._process_page(conv, batch, now_ms, undo)
            await self.st.persist(conv, undo)
            delivered.extend(page)
            if conv.op is not None and conv.op.merged:
                await self.commits.finish(conv, raise_errors=False)
            if waiting or len(batch) < page_size or conv.cursor == start:
                break
        group = conv.group
        if group is not None and (group.pending_commit is not None or conv.op is not None):
            await self.commits.settle(conv)

    def _process_page(
        self, conv: Conversation, batch: list[MessageEnvelope], now_ms: int, undo: StoreUndo
    ) -> tuple[list[IncomingMessage], bool]:
        """Process one fetched page into the working set: its messages, and whether processing
        stopped at an envelope that must wait for this device's Welcome. A refused envelope is
        logged and skipped for good (the cursor moves past it: a retry would refuse it again)."""
        page: list[IncomingMessage] = []
        expected = conv.cursor.seq + 1
        for env in batch:
            if env.conversation_id != conv.id or env.seq != expected:
                what = "another conversation's envelope" if env.conversation_id != conv.id else f"seq {env.seq}"
                report(conv, SyncProblemKind.LOG_DISCONTINUITY, None, f"the server sent {what} where seq {expected} was due")
                log.warning("sync: conversation %s: the log does not continue at seq %d (%s)", conv.id.as_hex(), expected, what)
                return page, True
            expected += 1  # (the cursor may be ahead: envelopes pushed live were consumed already)
            try:
                msg = self.receiver.process_one(conv, env, now_ms, undo, in_order=True)
            except WaitForWelcome:
                return page, True
            except StorageError:
                raise
            except PingError as exc:
                self._skip(conv, env, exc, undo)
                continue
            if msg is not None:
                page.append(msg)
            if env.kind is MessageKind.COMMIT:
                page.extend(self.receiver.release_held(conv, now_ms, undo, keep=True))
        return page, False

    @staticmethod
    def _skip(conv: Conversation, env: MessageEnvelope, exc: PingError, undo: StoreUndo) -> None:
        """Skip a refused envelope for good: reported UNREADABLE (and DESYNCED when it was a commit
        of our current epoch: nobody else's commit can take that epoch), the cursor moves past it."""
        log.warning("sync: conversation %s envelope seq=%d skipped: %s: %s", conv.id.as_hex(), env.seq, type(exc).__name__, exc)
        report_refused(conv, env, exc)
        group = conv.group
        if env.kind is MessageKind.COMMIT and group is not None and group.active and env.epoch == group.epoch:
            report(conv, SyncProblemKind.DESYNCED, env, "a commit of our epoch could not be processed")
        conv.set_cursor(conv.cursor.advance(env.seq))
        conv.save(undo)

    # -- watching ------------------------------------------------------------------

    async def wait_for_news(self, timeout_ms: int) -> News:
        """``MessagingClient.wait_for_news`` (``InvalidInput`` for a ``timeout_ms`` out of 0..``MAX_FETCH_WAIT_MS``)."""
        if type(timeout_ms) is not int or not 0 <= timeout_ms <= MAX_FETCH_WAIT_MS:
            raise InvalidInput(f"timeout_ms must be 0..{MAX_FETCH_WAIT_MS}")
        st = self.st
        st.unreadable = {c: at for c, at in st.unreadable.items() if c in st.convs}
        positions = {cid: conv.cursor.seq for cid, conv in st.convs.items() if st.unreadable.get(cid) != conv.cursor.seq}
        items = list(positions.items())
        chunks = [dict(items[i : i + MAX_WATCH_CONVERSATIONS]) for i in range(0, len(items), MAX_WATCH_CONVERSATIONS)]
        results = await self._watch_all(chunks or [{}], timeout_ms)
        heads = {c: h for r in results for c, h in r.heads.items()}
        forbidden = {c for r in results for c in r.forbidden}
        welcomes = any(r.welcomes for r in results)
        if welcomes:
            st.unreadable.clear()
        for cid in forbidden:
            st.unreadable[cid] = positions[cid]
        return News(tuple(c for c in positions if c in heads), tuple(c for c in positions if c in forbidden), welcomes)

    async def _watch_all(self, chunks: list[dict[ConversationId, int]], timeout_ms: int) -> list[WatchResult]:
        """One watch per chunk; with several, the answers of those done when the first one is (the others are cancelled)."""
        transport = self.st.transport
        if len(chunks) == 1:
            return [await transport.watch(chunks[0], wait_ms=timeout_ms)]
        tasks = [asyncio.ensure_future(transport.watch(chunk, wait_ms=timeout_ms)) for chunk in chunks]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        return [task.result() for task in tasks if task in done]
