"""The commit state machine (ping_core.commitflow): its table, the state read off the records, the
refusal of an illegal event before anything changes, and the stored kinds staying readable."""

from __future__ import annotations

import itertools

import pytest

from ping_core.cbor import encode_record
from ping_core.commitflow import (
    TRANSITIONS,
    CommitEvent,
    CommitState,
    IllegalCommitTransition,
    commit_state,
    transition,
)
from ping_core.conversation import CommitKind, PendingOp
from ping_core.errors import MlsError, MlsReason, TransportError
from ping_core.ids import DeviceId
from ping_core.message import MessageKind
from ping_core.testing.memory import Fault

from reasons import raises_reason

from .support import NOW, World, pair


def test_only_the_table_transitions_are_allowed() -> None:
    allowed = 0
    for state, event in itertools.product(CommitState, CommitEvent):
        target = TRANSITIONS[state].get(event)
        if target is None:
            with pytest.raises(IllegalCommitTransition) as info:
                transition(state, event)
            assert info.value.state is state and info.value.event is event
            assert state.name in str(info.value) and event.name in str(info.value)
        else:
            assert transition(state, event) is target
            allowed += 1
    assert allowed == 13  # the nine rows of the module docstring's table, plus RESET from each of the 4 states
    assert isinstance(IllegalCommitTransition(CommitState.STAGED, CommitEvent.STAGE), MlsError)


def test_every_state_is_reachable_and_left() -> None:
    targets = {t for row in TRANSITIONS.values() for t in row.values()}
    assert targets == {CommitState.IDLE, CommitState.STAGED, CommitState.MERGED}  # STRAY only comes from a crash
    assert all(TRANSITIONS[s] for s in CommitState)


async def test_state_is_read_off_the_records() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv_id = await pair(w, a, b)
    conv = a.client._state.convs[conv_id]
    group = conv.group
    assert group is not None
    assert commit_state(group, None) is CommitState.IDLE
    merged = PendingOp(CommitKind.ADD, group.epoch, b"w", (b.device_id,), (), True)
    assert commit_state(group, merged) is CommitState.MERGED
    unmerged = PendingOp(CommitKind.ADD, group.epoch, None, (), ())
    assert commit_state(group, unmerged) is CommitState.STRAY  # an op without its staged commit
    staged = group.commit()
    assert commit_state(group, None) is CommitState.STRAY  # a staged commit without its op
    assert commit_state(group, PendingOp(CommitKind.NAME, staged.base_epoch + 1, None, (), ())) is CommitState.STRAY
    assert commit_state(group, PendingOp(CommitKind.NAME, staged.base_epoch, None, (), ())) is CommitState.STAGED
    group.discard_staged_commit()


async def test_staging_while_a_commit_is_unresolved_is_refused_and_changes_nothing() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv_id = await pair(w, a, b)
    # An ambiguous failure with an unreadable log leaves our commit STAGED (durable).
    w.service.inject("send", Fault.TIMEOUT_BEFORE_APPLY, kind=MessageKind.COMMIT)
    w.service.inject("fetch_since", Fault.TIMEOUT_BEFORE_APPLY, device=a.device_id)
    with pytest.raises(TransportError):
        await a.client.set_conversation_name(conv_id, "one", NOW)
    conv = a.client._state.convs[conv_id]
    assert commit_state(conv.group, conv.op) is CommitState.STAGED
    op, staged = conv.op, conv.group.pending_commit if conv.group else None
    # The message's hint (sync and retry) is what a user reads, so its text is checked too.
    with raises_reason(MlsReason.WRONG_STATE, IllegalCommitTransition, match="still unresolved") as info:
        a.client._commits.step(conv, CommitEvent.STAGE)
    assert (info.value.state, info.value.event) == (CommitState.STAGED, CommitEvent.STAGE)
    with pytest.raises(IllegalCommitTransition):
        a.client._commits.step(conv, CommitEvent.DELIVERED)  # nothing merged: no Welcome to deliver
    assert conv.op is op and conv.group is not None and conv.group.pending_commit is staged
    # The next sync settles it (not in the log: re-sent once, then merged); back to IDLE.
    await a.sync()
    assert commit_state(conv.group, conv.op) is CommitState.IDLE
    await b.sync()
    assert [m.name for m in b.client.list_conversations() if m.id == conv_id] == ["one"]


def test_stored_kinds_keep_their_old_text() -> None:
    # The values earlier versions wrote as plain strings: old op records read unchanged.
    assert {k.value for k in CommitKind} == {"add", "remove", "name", "link", "proposals", "update", "resume"}
    dev = DeviceId(bytes(32))
    for kind in CommitKind:
        old = encode_record(
            1,
            {"kind": kind.value, "base_epoch": 3, "welcome": None, "welcome_to": [dev.value], "removals": [], "merged": False},
        )
        op = PendingOp.decode(old)
        assert op.kind is kind and op.kind == kind.value
        assert op.encode() == old  # written back byte for byte
    unknown = encode_record(
        1, {"kind": "rename", "base_epoch": 3, "welcome": None, "welcome_to": [], "removals": [], "merged": False}
    )
    assert PendingOp.decode(unknown).kind is CommitKind.RESUME  # descriptive only: never makes a record unreadable
