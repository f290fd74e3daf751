"""Delivery-service faults around every commit operation and around send.

For add_members, remove_members and set_conversation_name: a definite
rejection, a 5xx, a timeout after the server applied the Commit and a timeout
before it did. Each ends with every member agreeing on the epoch
authenticator and conversing (no fork, no generation reuse).
"""

from __future__ import annotations

from typing import Awaitable, Callable

import pytest

from ping_core.errors import StorageError, TransportError
from ping_core.ids import ConversationId
from ping_core.message import MessageKind
from ping_core.testing.memory import Fault

from .support import NOW, Device, World, assert_agree, converse, pair

Op = Callable[[], Awaitable[None]]


async def _setup() -> tuple[World, Device, Device, Device, ConversationId]:
    w = World()
    a, b, c = await w.device("alice"), await w.device("bob"), await w.device("carol")
    conv = await pair(w, a, b)
    return w, a, b, c, conv


def _commits(w: World, conv: ConversationId) -> list[int]:
    return [e.epoch for e in w.service.log(conv) if e.kind is MessageKind.COMMIT]


async def _op(kind: str, a: Device, c: Device, conv: ConversationId) -> None:
    if kind == "add":
        await a.client.add_members(conv, [(c.device_id, await c.claim())], NOW)
    elif kind == "name":
        await a.client.set_conversation_name(conv, "renamed", NOW)
    else:  # remove carol, who was added beforehand
        leaf = a.client._state.convs[conv].leaves[c.device_id]
        await a.client.remove_members(conv, [leaf], NOW)


async def _prepare(kind: str, w: World, a: Device, b: Device, c: Device, conv: ConversationId) -> list[Device]:
    if kind == "remove":
        await a.client.add_members(conv, [(c.device_id, await c.claim())], NOW)
        await c.join_welcomes()
        await b.sync()
    return [a, b, c] if kind == "add" else [a, b] if kind == "remove" else [a, b]


def _members_after(kind: str, a: Device, b: Device, c: Device, applied: bool) -> list[Device]:
    if kind == "add":
        return [a, b, c] if applied else [a, b]
    if kind == "remove":
        return [a, b] if applied else [a, b, c]
    return [a, b]


KINDS = ["add", "remove", "name"]


@pytest.mark.parametrize("kind", KINDS)
async def test_definite_rejection_rolls_back(kind: str) -> None:
    w, a, b, c, conv = await _setup()
    await _prepare(kind, w, a, b, c, conv)
    epoch = a.client._state.convs[conv].meta.epoch
    w.service.inject("send", Fault.REJECT, kind=MessageKind.COMMIT, status=400, code="invalid_request")
    with pytest.raises(TransportError) as info:
        await _op(kind, a, c, conv)
    assert info.value.is_definite_rejection
    group = a.client._state.convs[conv].group
    assert group is not None and group.epoch == epoch and group.pending_commit is None
    assert a.client._state.convs[conv].op is None
    assert w.service.inbox(c.device_id) == [] or kind == "remove"
    # Retry succeeds and everyone agrees.
    await _op(kind, a, c, conv)
    members = _members_after(kind, a, b, c, True)
    if kind == "add":
        await c.join_welcomes()
    for d in members[1:]:
        await d.sync()
    assert_agree(conv, members)
    await converse(conv, members)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", [Fault.SERVER_ERROR, Fault.TIMEOUT_BEFORE_APPLY])
async def test_ambiguous_failure_not_applied_is_resent(kind: str, fault: Fault) -> None:
    w, a, b, c, conv = await _setup()
    await _prepare(kind, w, a, b, c, conv)
    before = _commits(w, conv)
    w.service.inject("send", fault, kind=MessageKind.COMMIT)
    await _op(kind, a, c, conv)  # settled against the log: not there, re-sent, merged
    assert len(_commits(w, conv)) == len(before) + 1
    members = _members_after(kind, a, b, c, True)
    if kind == "add":
        await c.join_welcomes()
    for d in members[1:]:
        await d.sync()
    assert_agree(conv, members)
    await converse(conv, members)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", [Fault.TIMEOUT_AFTER_APPLY, Fault.SERVER_ERROR_AFTER_APPLY])
async def test_ambiguous_failure_applied_merges(kind: str, fault: Fault) -> None:
    w, a, b, c, conv = await _setup()
    await _prepare(kind, w, a, b, c, conv)
    before = _commits(w, conv)
    w.service.inject("send", fault, kind=MessageKind.COMMIT)
    await _op(kind, a, c, conv)  # the log shows our commit: merged, Welcome delivered
    assert len(_commits(w, conv)) == len(before) + 1
    members = _members_after(kind, a, b, c, True)
    if kind == "add":
        assert await c.join_welcomes() == [conv]
    for d in members[1:]:
        await d.sync()
    assert_agree(conv, members)
    await converse(conv, members)


@pytest.mark.parametrize("kind", KINDS)
async def test_ambiguous_failure_with_unreadable_log_stays_staged_then_sync_settles(kind: str) -> None:
    w, a, b, c, conv = await _setup()
    await _prepare(kind, w, a, b, c, conv)
    epoch = a.client._state.convs[conv].meta.epoch
    w.service.inject("send", Fault.TIMEOUT_AFTER_APPLY, kind=MessageKind.COMMIT)
    w.service.inject("fetch_since", Fault.TIMEOUT_BEFORE_APPLY, device=a.device_id)
    with pytest.raises(TransportError) as info:
        await _op(kind, a, c, conv)
    assert not info.value.is_definite_rejection
    group = a.client._state.convs[conv].group
    assert group is not None and group.epoch == epoch and group.pending_commit is not None  # staged, durable
    # A restart in between changes nothing: the staged commit is on disk.
    await a.restart()
    await a.sync()  # the echo merges it, and the Welcome goes out
    members = _members_after(kind, a, b, c, True)
    if kind == "add":
        assert await c.join_welcomes() == [conv]
    for d in members[1:]:
        await d.sync()
    assert_agree(conv, members)
    await converse(conv, members)


@pytest.mark.parametrize("kind", KINDS)
async def test_ambiguous_twice_not_applied_stays_staged_then_sync_resends(kind: str) -> None:
    w, a, b, c, conv = await _setup()
    await _prepare(kind, w, a, b, c, conv)
    w.service.inject("send", Fault.TIMEOUT_BEFORE_APPLY, kind=MessageKind.COMMIT, count=2)
    with pytest.raises(TransportError):
        await _op(kind, a, c, conv)
    assert a.client._state.convs[conv].group.pending_commit is not None  # type: ignore[union-attr]
    await a.restart()
    await a.sync()  # not in the log: re-sent, merged
    members = _members_after(kind, a, b, c, True)
    if kind == "add":
        assert await c.join_welcomes() == [conv]
    for d in members[1:]:
        await d.sync()
    assert_agree(conv, members)
    await converse(conv, members)


@pytest.mark.parametrize("kind", KINDS)
async def test_losing_the_race_to_another_commit(kind: str) -> None:
    w, a, b, c, conv = await _setup()
    await _prepare(kind, w, a, b, c, conv)
    await b.client.set_conversation_name(conv, "bob was first", NOW)  # alice has not seen it
    with pytest.raises(TransportError) as info:
        await _op(kind, a, c, conv)
    assert info.value.code == "epoch_advanced" and info.value.is_definite_rejection
    assert a.client._state.convs[conv].group.pending_commit is None  # type: ignore[union-attr]
    await a.sync()
    await _op(kind, a, c, conv)
    members = _members_after(kind, a, b, c, True)
    if kind == "add":
        await c.join_welcomes()
    for d in members[1:]:
        await d.sync()
    assert_agree(conv, members)
    await converse(conv, members)


async def test_welcome_failure_after_merge_raises_but_keeps_the_commit() -> None:
    w, a, b, c, conv = await _setup()
    w.service.inject("send", Fault.REJECT, kind=MessageKind.WELCOME, status=404, code="not_found")
    with pytest.raises(TransportError) as info:
        await a.client.add_members(conv, [(c.device_id, await c.claim())], NOW)
    assert info.value.status == 404
    assert c.device_id in a.client._state.convs[conv].leaves and a.client._state.convs[conv].op is None
    await b.sync()
    assert_agree(conv, [a, b])
    await converse(conv, [a, b])


async def test_staging_checkpoint_failure_sends_nothing() -> None:
    w, a, b, c, conv = await _setup()
    log_before = len(w.service.log(conv))
    disk = a.blobs.snapshot()
    a.blobs.fail_next_commits = 1
    with pytest.raises(StorageError):
        await a.client.add_members(conv, [(c.device_id, await c.claim())], NOW)
    assert len(w.service.log(conv)) == log_before and a.blobs.snapshot() == disk
    assert a.client._state.convs[conv].group.pending_commit is None  # type: ignore[union-attr]
    await converse(conv, [a, b])


@pytest.mark.parametrize("fault", [Fault.REJECT, Fault.SERVER_ERROR, Fault.TIMEOUT_BEFORE_APPLY])
async def test_send_fault_not_applied(fault: Fault) -> None:
    w, a, b, c, conv = await _setup()
    w.service.inject("send", fault, kind=MessageKind.APPLICATION)
    with pytest.raises(TransportError):
        await a.client.send(conv, b"lost", NOW)
    # The generation was consumed locally (durably) but never delivered: harmless.
    await a.restart()
    await a.client.send(conv, b"next", NOW)
    assert [m.plaintext for m in await b.sync()] == [b"next"]


@pytest.mark.parametrize("fault", [Fault.TIMEOUT_AFTER_APPLY, Fault.SERVER_ERROR_AFTER_APPLY])
async def test_send_fault_applied(fault: Fault) -> None:
    w, a, b, c, conv = await _setup()
    w.service.inject("send", fault, kind=MessageKind.APPLICATION)
    with pytest.raises(TransportError):
        await a.client.send(conv, b"arrived anyway", NOW)
    await a.restart()
    await a.client.send(conv, b"next", NOW)  # a new generation, not the one already on the wire
    assert [m.plaintext for m in await b.sync()] == [b"arrived anyway", b"next"]
