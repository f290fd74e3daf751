"""Durable delivery: decrypted messages wait in the inbox (written with the state that consumed
them) until they are acknowledged; the crash harness kills the process at every step boundary of
a sync and of process_envelope, and nothing is lost.

* default (``explicit_ack=False``): returning a message acknowledges it; a crash before the
  sync's last checkpoint (between pages, between conversations) loses nothing;
* ``explicit_ack=True``: ``ack_messages`` acknowledges; a crash anywhere loses nothing, and a
  message comes back only across a crash, with the same (conversation_id, seq).
"""

from __future__ import annotations

from typing import Any

import pytest

import ping_core.sync as sync_module
from ping_core.ids import ConversationId
from ping_core.message import IncomingMessage

from .support import NOW, Crash, Device, World, pair

TEXTS = {0: [b"c1-1", b"c1-2", b"c1-3"], 1: [b"c2-1", b"c2-2"]}


def _keys(msgs: list[IncomingMessage]) -> list[tuple[ConversationId, int]]:
    return [(m.conversation_id, m.seq) for m in msgs]


def _inbox_records(d: Device) -> list[str]:
    return [k for k in d.blobs.snapshot() if "/i/" in k]


async def _scenario(explicit_ack: bool) -> tuple[World, Device, Device, list[ConversationId]]:
    """alice and bob share two conversations; alice sent 3 + 2 messages bob has not synced."""
    w = World()
    a = await w.device("alice")
    b = await w.device("bob", crashable=True, explicit_ack=explicit_ack)
    convs = [await pair(w, a, b, "one"), await pair(w, a, b, "two")]
    await b.sync()
    for i, conv in enumerate(convs):
        for text in TEXTS[i]:
            await a.client.send(conv, text, NOW)
    return w, a, b, convs


def _all_texts() -> list[bytes]:
    return TEXTS[0] + TEXTS[1]


async def _sync_steps(explicit_ack: bool, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(sync_module, "SYNC_PAGE", 2)  # conversation one takes two pages
    w, a, b, convs = await _scenario(explicit_ack)
    assert b.plan is not None
    b.plan.mark()
    got = await b.sync()
    assert sorted(m.plaintext for m in got) == sorted(_all_texts())
    return b.plan.since_mark()


@pytest.mark.parametrize("explicit_ack", [False, True], ids=["ack-on-return", "explicit-ack"])
async def test_sync_crash_at_every_boundary_loses_nothing(explicit_ack: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = await _sync_steps(explicit_ack, monkeypatch)
    commits = [i for i, s in enumerate(steps) if s == "blob.commit"]
    # Pages: one (2 messages), one (1), the other conversation (2); then (default) the acknowledgement.
    assert len(commits) == (3 if explicit_ack else 4), steps
    for index in range(len(steps)):
        for when in ("before", "after"):
            w, a, b, convs = await _scenario(explicit_ack)
            assert b.plan is not None
            b.plan.arm(index, when)
            with pytest.raises(Crash):
                await b.sync()
            await b.restart()
            got = await b.sync()
            acknowledged_at_return = not explicit_ack and index == commits[-1] and when == "after"
            if acknowledged_at_return:
                # The crash came after the acknowledging checkpoint: the messages had been returned.
                assert got == [], (index, when)
                continue
            texts = sorted(m.plaintext for m in got)
            assert texts == sorted(_all_texts()), (steps[index], when, texts)
            assert len(set(_keys(got))) == len(got)  # no duplicate within one delivery
            for conv, i in zip(convs, (0, 1)):
                assert [m.plaintext for m in got if m.conversation_id == conv] == TEXTS[i]  # log order
            again = await b.sync()
            assert again == []  # this client does not return them twice
            if explicit_ack:
                await b.client.ack_messages(got)
            assert _inbox_records(b) == []


async def test_default_mode_returns_and_forgets() -> None:
    w, a, b, convs = await _scenario(False)
    got = await b.sync()
    assert sorted(m.plaintext for m in got) == sorted(_all_texts())
    assert _inbox_records(b) == []  # acknowledged by returning them
    await b.restart()
    assert await b.sync() == []
    # process_envelope in the default mode writes no inbox record at all.
    env = await a.client.send(convs[0], b"pushed", NOW)
    msg = await b.client.process_envelope(env, NOW)
    assert msg is not None and msg.plaintext == b"pushed" and _inbox_records(b) == []


async def test_explicit_ack_duplicates_only_across_a_restart() -> None:
    w, a, b, convs = await _scenario(True)
    got = await b.sync()
    assert len(got) == 5 and len(_inbox_records(b)) == 5
    assert await b.sync() == [] and await b.client.pending_messages() == []
    # The app acknowledged two when the process died: the other three come back, same ids.
    await b.client.ack_messages(got[:2])
    assert len(_inbox_records(b)) == 3
    await b.restart()
    calls = len(w.service.calls)
    pending = await b.client.pending_messages()
    assert sorted(_keys(pending)) == sorted(_keys(got[2:]))
    assert w.service.calls[calls:] == []  # no network
    assert await b.sync() == []  # handed out by pending_messages
    await b.client.ack_messages(pending + got[:1])  # acknowledging twice is harmless
    await b.restart()
    assert await b.sync() == [] and _inbox_records(b) == []


@pytest.mark.parametrize("when", ["before", "after"])
async def test_explicit_ack_process_envelope_crash(when: str) -> None:
    w, a, b, convs = await _scenario(True)
    await b.client.ack_messages(await b.sync())
    env = await a.client.send(convs[1], b"pushed", NOW)
    assert b.plan is not None
    b.plan.arm(0, when)
    with pytest.raises(Crash):
        await b.client.process_envelope(env, NOW)
    await b.restart()
    got = await b.sync()
    assert [(m.plaintext, m.seq) for m in got] == [(b"pushed", env.seq)]  # exactly once
    msg = await b.client.process_envelope(env, NOW)
    assert msg is None  # consumed


async def test_explicit_ack_process_envelope_then_restart() -> None:
    """A pushed message returned but not acknowledged is delivered again after a restart."""
    w, a, b, convs = await _scenario(True)
    await b.client.ack_messages(await b.sync())
    env = await a.client.send(convs[0], b"pushed", NOW)
    msg = await b.client.process_envelope(env, NOW)
    assert msg is not None
    assert await b.sync() == []
    await b.restart()
    again = await b.sync()
    assert _keys(again) == [(msg.conversation_id, msg.seq)] and again[0].plaintext == b"pushed"
    assert again[0] == msg  # the same message, field for field


async def test_unreadable_inbox_record_is_dropped(caplog: Any) -> None:
    w, a, b, convs = await _scenario(True)
    got = await b.sync()
    key = next(k for k in b.blobs.snapshot() if "/i/" in k)
    await b.blobs.commit({key: b"\xa1\x61v\x63bad"}, [])
    await b.restart()
    again = await b.sync()
    assert len(again) == len(got) - 1
    assert "inbox record" in caplog.text
    assert b.client._state.store.get(key) is None  # dropped (the next checkpoint deletes it from disk)


async def test_ack_messages_input() -> None:
    from ping_core.errors import InvalidInput

    w, a, b, convs = await _scenario(True)
    got = await b.sync()
    with pytest.raises(InvalidInput):
        await b.client.ack_messages(got[0])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await b.client.ack_messages([b"x"])  # type: ignore[list-item]
    await b.client.ack_messages([])
    assert len(_inbox_records(b)) == 5
