"""A delivery service that lies about its log (issue 10, item 4): withheld envelopes, reordered
pages, absurd sequence numbers, a message of the next epoch before its commit.

Before, the client trusted the server's seq numbers: one withheld Commit or one envelope with
seq 2^63-1 moved the cursor past messages it never read, skipped them "for good" and no error
reached the app. Now a page must continue the cursor exactly (``seq == cursor + 1``), a break is
reported (``SyncProblemKind.LOG_DISCONTINUITY``) and retried, never skipped; an envelope of a
later epoch is held durably until its commit. ``_LyingServer`` is fault injection (a fake): it
rewrites what the real in-memory delivery service returns to one client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ping_core.errors import MlsOrigin, MlsReason
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncProblemKind

from .support import NOW, Device, World, assert_agree, converse, pair

Page = list[MessageEnvelope]


class _LyingServer:
    """Fault injection (a fake): passes every call through, but ``fetch_since`` pages go through
    ``lie`` while it is set."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.lie: Callable[[Page], Page] | None = None
        self.hide_group_info = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def fetch_since(self, *args: object, **kwargs: object) -> Page:
        page: Page = await self._inner.fetch_since(*args, **kwargs)  # type: ignore[attr-defined]
        return self.lie(page) if self.lie is not None and page else page

    async def fetch_group_info(self, *args: object, **kwargs: object) -> bytes | None:
        if self.hide_group_info:
            return None
        return await self._inner.fetch_group_info(*args, **kwargs)  # type: ignore[attr-defined, no-any-return]


async def _setup() -> tuple[World, Device, Device, object, _LyingServer]:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    await converse(conv, [a, b])
    lying = _LyingServer(b.client._state.transport)
    b.client._state.transport = lying  # type: ignore[assignment]
    return w, a, b, conv, lying


def _kinds(result: object) -> list[SyncProblemKind]:
    return [p.kind for p in result.problems]  # type: ignore[attr-defined]


async def test_a_withheld_commit_is_a_reported_gap_and_nothing_is_skipped() -> None:
    w, a, b, conv, lying = await _setup()
    await a.client.send(conv, b"before", NOW)
    await a.client.set_conversation_name(conv, "renamed", NOW)  # a commit
    await a.client.send(conv, b"after", NOW)
    commit_seq = next(e.seq for e in reversed(w.service.log(conv)) if e.kind is MessageKind.COMMIT)
    cursor = b.client.sync_position(conv)
    lying.lie = lambda page: [e for e in page if e.seq != commit_seq]
    result = await b.client.sync(NOW)
    assert [m.plaintext for m in result.messages] == [b"before"]
    assert SyncProblemKind.LOG_DISCONTINUITY in _kinds(result)
    assert b.client.sync_position(conv) == commit_seq - 1 > cursor  # up to the gap, not past it
    # Honest again: the commit and the message after it arrive; nothing was lost.
    lying.lie = None
    result = await b.client.sync(NOW)
    assert [m.plaintext for m in result.messages] == [b"after"] and result.problems == ()
    assert_agree(conv, [a, b])


async def test_a_reordered_page_or_a_duplicate_is_a_gap() -> None:
    w, a, b, conv, lying = await _setup()
    for text in (b"1", b"2", b"3"):
        await a.client.send(conv, text, NOW)
    lying.lie = lambda page: [page[1], page[0], *page[2:]]
    result = await b.client.sync(NOW)
    assert result.messages == () and _kinds(result) == [SyncProblemKind.LOG_DISCONTINUITY]
    lying.lie = lambda page: [page[0], page[0], *page[1:]]
    result = await b.client.sync(NOW)
    assert [m.plaintext for m in result.messages] == [b"1"] and _kinds(result) == [SyncProblemKind.LOG_DISCONTINUITY]
    lying.lie = None
    assert [m.plaintext for m in await b.sync()] == [b"2", b"3"]


async def test_an_absurd_seq_does_not_move_the_cursor() -> None:
    """Before: one envelope numbered 2^63-1 moved the cursor there, and every later message
    of the conversation was skipped for good."""
    w, a, b, conv, lying = await _setup()
    await a.client.send(conv, b"lost before", NOW)
    cursor = b.client.sync_position(conv)
    lying.lie = lambda page: [dataclasses.replace(page[0], seq=(1 << 63) - 1), *page[1:]]
    result = await b.client.sync(NOW)
    assert result.messages == () and _kinds(result) == [SyncProblemKind.LOG_DISCONTINUITY]
    assert b.client.sync_position(conv) == cursor
    lying.lie = None
    await a.client.send(conv, b"later", NOW)
    assert [m.plaintext for m in await b.sync()] == [b"lost before", b"later"]


def _swap_commit_and_next(commit_seq: int) -> Callable[[Page], Page]:
    """A consistent lie: the message after the commit is served (renumbered) before it."""

    def lie(page: Page) -> Page:
        i = next(i for i, e in enumerate(page) if e.seq == commit_seq)
        commit, after = page[i], page[i + 1]
        return [*page[:i], dataclasses.replace(after, seq=commit.seq), dataclasses.replace(commit, seq=after.seq), *page[i + 2 :]]

    return lie


async def test_a_message_of_the_next_epoch_before_its_commit_is_held_then_delivered() -> None:
    """Before: "an application message for future epoch" was skipped for good."""
    w, a, b, conv, lying = await _setup()
    await a.client.set_conversation_name(conv, "renamed", NOW)
    await a.client.send(conv, b"first of the new epoch", NOW)
    commit_seq = w.service.log(conv)[-2].seq
    lying.lie = _swap_commit_and_next(commit_seq)
    result = await b.client.sync(NOW)
    assert [m.plaintext for m in result.messages] == [b"first of the new epoch"]
    assert SyncProblemKind.HELD in _kinds(result) and SyncProblemKind.UNREADABLE not in _kinds(result)
    assert b.client._state.convs[conv].held_count() == 0
    lying.lie = None
    assert_agree(conv, [a, b])
    await converse(conv, [a, b], b"still in step")


async def test_a_held_message_survives_a_restart() -> None:
    w, a, b, conv, lying = await _setup()
    await a.client.set_conversation_name(conv, "renamed", NOW)
    await a.client.send(conv, b"held across a restart", NOW)
    commit, message = w.service.log(conv)[-2:]
    # The message is served (at the commit's position) and the page ends there...
    lying.lie = lambda page: [dataclasses.replace(message, seq=commit.seq)] if page[0].seq == commit.seq else page
    lying.hide_group_info = True  # so Bob cannot rejoin instead: he keeps what he holds
    result = await b.client.sync(NOW)
    assert result.messages == () and SyncProblemKind.HELD in _kinds(result) and SyncProblemKind.HEALED not in _kinds(result)
    assert b.client._state.convs[conv].held_count() == 1
    # ... the process restarts; then the commit comes (at the message's position).
    await b.restart()
    lying = _LyingServer(b.client._state.transport)
    b.client._state.transport = lying  # type: ignore[assignment]
    lying.lie = lambda page: [dataclasses.replace(commit, seq=message.seq)] if page[0].seq == message.seq else page
    assert [m.plaintext for m in await b.sync()] == [b"held across a restart"]
    assert b.client._state.convs[conv].held_count() == 0
    assert_agree(conv, [a, b])


async def test_a_commit_this_device_cannot_process_is_healed_by_rejoining() -> None:
    """Bob is served a commit he cannot process (here: altered on its way to him): before, he
    skipped it and every later message "for good", silently. Now he reports it, rejoins by an
    external commit from the GroupInfo the server keeps, learns which messages he lost, and the
    conversation goes on with everyone in step."""
    w, a, b, conv, lying = await _setup()
    await a.client.set_conversation_name(conv, "renamed", NOW)
    await a.client.send(conv, b"lost to bob", NOW)
    commit_seq = w.service.log(conv)[-2].seq

    def spoil(page: Page) -> Page:
        return [dataclasses.replace(e, payload=e.payload[:-1] + bytes([e.payload[-1] ^ 1])) if e.seq == commit_seq else e for e in page]

    lying.lie = spoil
    result = await b.client.sync(NOW)
    lying.lie = None
    kinds = _kinds(result)
    assert SyncProblemKind.DESYNCED in kinds and SyncProblemKind.HEALED in kinds
    lost = [p for p in result.problems if p.kind is SyncProblemKind.UNREADABLE]
    assert {p.seq for p in lost} >= {commit_seq + 1}  # the message of the epoch he missed
    assert b"lost to bob" not in [m.plaintext for m in result.messages]
    await a.sync()  # alice processes bob's external commit
    assert_agree(conv, [a, b])
    await converse(conv, [a, b], b"healed")
    assert {m.device_id for m in a.client.members(conv)} == {a.device_id, b.device_id}


async def test_a_refused_envelope_is_reported_with_the_engines_reason() -> None:
    """A tampered application message is skipped as UNREADABLE, and the problem says why as data:
    the engine's reason (a peer's fault, not this device's), beside the error's class name."""
    w, a, b, conv, lying = await _setup()
    await a.client.send(conv, b"tampered on its way", NOW)
    seq = w.service.log(conv)[-1].seq

    def spoil(page: Page) -> Page:
        return [dataclasses.replace(e, payload=e.payload[:-1] + bytes([e.payload[-1] ^ 1])) if e.seq == seq else e for e in page]

    lying.lie = spoil
    result = await b.client.sync(NOW)
    lying.lie = None
    [problem] = [p for p in result.problems if p.seq == seq]
    assert problem.kind is SyncProblemKind.UNREADABLE and problem.detail == "DecryptionFailed"
    assert problem.reason is MlsReason.DECRYPTION_FAILED and problem.reason.origin is MlsOrigin.PEER
    await converse(conv, [a, b], b"still talking")
