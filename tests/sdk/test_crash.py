"""Crash tests: the process dies at every step boundary of an operation, restarts, and carries on.

For add_members, remove_members, set_conversation_name, send, fresh_key_package
and process_envelope (an application message and a commit), a fault injector
(``CrashPlan``) raises ``Crash`` just before or just after each blob-store
commit and each transport call the operation makes (that is: after stage,
after send, before and after merge, before and after each checkpoint). Then a
new ``MessagingClient`` is initialised over the same blob store and host
storage, everyone syncs, the operation is redone if it did not happen, and:

* no fork: every member has the same epoch authenticator;
* no reuse of a ratchet generation: every message sent after the restart is
  decrypted by every receiver (a reused generation is refused at the receiver);
* no lost KeyPackage private key: a KeyPackage returned before the crash still
  joins a group after it;
* process_envelope: a message is delivered at most once, and exactly once when
  the crash came before its checkpoint (the default: returning a message
  acknowledges it; with ``explicit_ack`` it is exactly once, see test_inbox.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from ping_core.ids import ConversationId
from ping_core.message import MessageKind

from .support import NOW, Crash, Device, World, assert_agree, converse, pair

OPS = ["add", "remove", "name", "send", "fresh_key_package", "process_app", "process_commit"]


async def _world(op: str) -> tuple[World, Device, Device, Device, ConversationId, dict[str, Any]]:
    w = World()
    a = await w.device("alice", crashable=True)
    b = await w.device("bob", crashable=True)
    c = await w.device("carol")
    conv = await pair(w, a, b)
    ctx: dict[str, Any] = {}
    if op == "remove":
        await a.client.add_members(conv, [(c.device_id, await c.claim())], NOW)
        await c.join_welcomes()
        await b.sync()
    if op == "add":
        ctx["kp"] = await c.claim()
    if op == "fresh_key_package":
        ctx["kp0"] = await a.client.fresh_key_package()  # returned before the crash: must stay usable
    if op == "process_app":
        ctx["env"] = await a.client.send(conv, b"pushed", NOW)
    if op == "process_commit":
        await a.client.set_conversation_name(conv, "pushed", NOW)
        ctx["env"] = [e for e in w.service.log(conv) if e.kind is MessageKind.COMMIT][-1]
    return w, a, b, c, conv, ctx


def _crasher(op: str, a: Device, b: Device) -> Device:
    return b if op.startswith("process") else a


async def _run(op: str, a: Device, b: Device, c: Device, conv: ConversationId, ctx: dict[str, Any]) -> None:
    if op == "add":
        await a.client.add_members(conv, [(c.device_id, ctx["kp"])], NOW)
    elif op == "remove":
        await a.client.remove_members(conv, [a.client._state.convs[conv].leaves[c.device_id]], NOW)
    elif op == "name":
        await a.client.set_conversation_name(conv, "renamed", NOW)
    elif op == "send":
        await a.client.send(conv, b"crash-send", NOW)
    elif op == "fresh_key_package":
        ctx["kp1"] = await a.client.fresh_key_package()
    else:
        ctx["delivered"] = await b.client.process_envelope(ctx["env"], NOW)


async def _count_steps(op: str) -> list[str]:
    w, a, b, c, conv, ctx = await _world(op)
    d = _crasher(op, a, b)
    assert d.plan is not None
    d.plan.mark()
    await _run(op, a, b, c, conv, ctx)
    return d.plan.since_mark()


async def _recover_and_check(op: str, w: World, a: Device, b: Device, c: Device, conv: ConversationId, ctx: dict[str, Any]) -> None:
    crashed = _crasher(op, a, b)
    await crashed.restart()
    got_b = await b.sync() if crashed is b else []
    await a.sync()
    if crashed is not b:
        got_b = await b.sync()
    await c.join_welcomes()
    client = a.client
    # Once the staged commit was checkpointed (every crash but the very first boundary), the
    # operation completes by itself after the restart: no redo.
    durable = ctx.get("durable", False)
    if op == "add":
        assert not durable or c.device_id in client._state.convs[conv].leaves
        if c.device_id not in client._state.convs[conv].leaves:
            await client.add_members(conv, [(c.device_id, await c.claim())], NOW)
            await c.join_welcomes()
        await b.sync()
        await c.sync()
        members = [a, b, c]
    elif op == "remove":
        assert not durable or c.device_id not in client._state.convs[conv].leaves
        if c.device_id in client._state.convs[conv].leaves:
            await client.remove_members(conv, [client._state.convs[conv].leaves[c.device_id]], NOW)
        await b.sync()
        members = [a, b]
        assert c.device_id not in b.client._state.convs[conv].leaves
    elif op == "name":
        assert not durable or client._state.convs[conv].meta.name == "renamed"
        if client._state.convs[conv].meta.name != "renamed":
            await client.set_conversation_name(conv, "renamed", NOW)
        await b.sync()
        assert b.client._state.convs[conv].meta.name == "renamed"
        members = [a, b]
    elif op == "send":
        in_log = any(e.kind is MessageKind.APPLICATION and e.sender_device == a.device_id for e in w.service.log(conv))
        assert [m.plaintext for m in got_b] == ([b"crash-send"] if in_log else [])
        members = [a, b]
    elif op == "fresh_key_package":
        # The KeyPackage returned before the crash still has its private keys.
        other = await b.client.create_conversation("kp0", NOW)
        await b.client.add_members(other, [(a.device_id, ctx["kp0"])], NOW)
        assert other in await a.join_welcomes()
        await converse(other, [a, b])
        members = [a, b]
    else:
        before_checkpoint = b.plan is not None and b.plan.crashed == "before blob.commit"
        delivered = [m for m in got_b if m.conversation_id == conv]
        if op == "process_app":
            # At most once; exactly once when the crash came before the checkpoint.
            assert [m.plaintext for m in delivered] == ([b"pushed"] if before_checkpoint else [])
        else:
            assert b.client._state.convs[conv].meta.name == "pushed"
        members = [a, b]
    assert_agree(conv, members)
    await converse(conv, members, b"after crash")
    await converse(conv, members, b"and again")
    assert_agree(conv, members)


_STEPS: dict[str, list[str]] = {}


def _cases() -> list[tuple[str, int, str]]:
    # Step counts are fixed by the code path; they are asserted in test_step_boundaries.
    counts = {"add": 6, "remove": 4, "name": 3, "send": 2, "fresh_key_package": 1, "process_app": 1, "process_commit": 1}
    return [(op, i, when) for op in OPS for i in range(counts[op]) for when in ("before", "after")]


async def test_step_boundaries() -> None:
    """The crash matrix below covers every step boundary each operation has."""
    expected = {
        "add": ["blob.commit", "set_next_commit_group_info", "send.commit", "blob.commit", "set_next_welcome_recipients", "send.welcome", "blob.commit"],
        "remove": ["blob.commit", "set_next_commit_removals", "set_next_commit_group_info", "send.commit", "blob.commit"],
        "name": ["blob.commit", "set_next_commit_group_info", "send.commit", "blob.commit"],
        "send": ["blob.commit", "send.application"],
        "fresh_key_package": ["blob.commit"],
        "process_app": ["blob.commit"],
        "process_commit": ["blob.commit"],
    }
    for op in OPS:
        steps = await _count_steps(op)
        assert steps == expected[op], (op, steps)


@pytest.mark.parametrize("op,index,when", _cases())
async def test_crash_and_continue(op: str, index: int, when: str) -> None:
    w, a, b, c, conv, ctx = await _world(op)
    d = _crasher(op, a, b)
    assert d.plan is not None
    d.plan.arm(index, when)
    ctx["durable"] = not (index == 0 and when == "before")
    with pytest.raises(Crash):
        await _run(op, a, b, c, conv, ctx)
    await _recover_and_check(op, w, a, b, c, conv, ctx)
