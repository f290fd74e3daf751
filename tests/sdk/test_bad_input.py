"""Bad input: malformed or foreign envelopes, payloads, snapshots and records raise
``ping_core.errors`` exceptions and change nothing (hypothesis on every decoder the SDK adds)."""

from __future__ import annotations

import dataclasses
from typing import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ping_core.clock import MAX_WALL_MS, Hlc
from ping_core.conversation import (
    HistoryReader,
    PendingOp,
    hlc_aad,
    hlc_from_aad,
    peek_mls,
)
from ping_core.conversation import _decode_info, _decode_leaves, _decode_roster  # the record decoders
from ping_core.errors import InvalidInput, PingError
from ping_core.ids import ConversationId, DeviceId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.mls.crypto import default_provider

from .support import NOW, Device, World, assert_agree, converse, pair


@dataclasses.dataclass
class Setup:
    w: World
    a: Device
    b: Device
    c: Device
    conv: ConversationId
    other: ConversationId


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    w = World()
    a, b, c = await w.device("alice"), await w.device("bob"), await w.device("carol")
    conv = await pair(w, a, b)
    other = await pair(w, a, c)
    yield Setup(w, a, b, c, conv, other)


def _state(d: Device, conv: ConversationId) -> tuple[object, ...]:
    c = d.client._state.convs[conv]
    g = c.group
    return (dict(d.client._state.store.items()), d.blobs.snapshot(), c.cursor, c.hlc, c.meta, g.epoch if g else None, g.epoch_authenticator if g else None)


async def _refused(d: Device, env: MessageEnvelope) -> None:
    before = _state(d, env.conversation_id)
    group = d.client._state.convs[env.conversation_id].group
    with pytest.raises(PingError):
        await d.client.process_envelope(env, NOW)
    assert _state(d, env.conversation_id) == before
    # Refused before anything changed (the engine's check_sender hook): the group was not rebuilt.
    assert d.client._state.convs[env.conversation_id].group is group


async def test_foreign_and_forged_envelopes_change_nothing(setup: Setup) -> None:
    s = setup
    env = await s.a.client.send(s.conv, b"genuine", NOW)
    # carol (not in the conversation) claims to have sent it; bob claims it is his own (not echo:
    # it is an application message from alice's leaf); the envelope names the other conversation.
    await _refused(s.b, dataclasses.replace(env, sender_device=s.c.device_id))
    await _refused(s.c, dataclasses.replace(env, conversation_id=s.other))
    await _refused(s.b, dataclasses.replace(env, epoch=env.epoch + 1))
    await _refused(s.b, dataclasses.replace(env, kind=MessageKind.COMMIT))
    await _refused(s.b, dataclasses.replace(env, kind=MessageKind.PROPOSAL))
    await _refused(s.b, dataclasses.replace(env, hlc=Hlc(env.hlc.wall_ms + 1, 0)))  # not the authenticated HLC
    await _refused(s.b, dataclasses.replace(env, payload=env.payload[:-1]))
    await _refused(s.b, dataclasses.replace(env, payload=env.payload[:-1] + bytes([env.payload[-1] ^ 1])))
    # A message of another conversation (carol's) pushed into this one.
    foreign = await s.a.client.send(s.other, b"for carol", NOW)
    await _refused(s.b, dataclasses.replace(foreign, conversation_id=s.conv))
    # After all that, the genuine envelope still processes (the ratchet did not move).
    msg = await s.b.client.process_envelope(env, NOW)
    assert msg is not None and msg.plaintext == b"genuine"


async def test_forged_commit_sender_changes_nothing(setup: Setup) -> None:
    s = setup
    await s.a.client.set_conversation_name(s.conv, "new", NOW)
    commit = [e for e in s.w.service.log(s.conv) if e.kind is MessageKind.COMMIT][-1]
    await _refused(s.b, dataclasses.replace(commit, sender_device=s.c.device_id))
    await _refused(s.b, dataclasses.replace(commit, sender_device=s.b.device_id))
    assert await s.b.client.process_envelope(commit, NOW) is None
    assert_agree(s.conv, [s.a, s.b])
    await converse(s.conv, [s.a, s.b])


async def test_sync_skips_bad_envelopes_and_keeps_going(setup: Setup) -> None:
    s = setup
    await s.a.client.send(s.conv, b"one", NOW)
    # A malformed application envelope in the log (posted by alice's device with junk).
    junk = MessageEnvelope(s.conv, 1, MessageKind.APPLICATION, s.a.device_id, 0, Hlc(NOW, 9), b"\x00\x01\x00\x02junk")
    await s.a.raw_transport.send(junk)
    await s.a.client.send(s.conv, b"two", NOW)
    got = await s.b.sync()
    assert [m.plaintext for m in got] == [b"one", b"two"]
    assert s.b.client._state.convs[s.conv].cursor.seq == len(s.w.service.log(s.conv))


async def test_sync_pages_with_an_advancing_cursor(setup: Setup) -> None:
    s = setup
    for i in range(600):
        await s.a.client.send(s.conv, b"%d" % i, NOW)
    calls_before = len(s.w.service.calls)
    got = await s.b.sync()
    assert [m.plaintext for m in got] == [b"%d" % i for i in range(600)]
    fetches = [c for c in s.w.service.calls[calls_before:] if c[0] == "fetch_since" and c[1] == s.b.device_id]
    # three pages for this conversation (256 + 256 + 90) + one each for the two others
    assert len(fetches) <= 5
    await s.b.restart()
    assert await s.b.sync() == []  # the cursor was persisted with the processed state


# The fixture is shared by every example on purpose: no example may change its state.
_SHARED = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], max_examples=60)


@_SHARED
@given(payload=st.binary(max_size=300))
async def test_random_payloads_change_nothing(setup: Setup, payload: bytes) -> None:
    s = setup
    for kind in (MessageKind.APPLICATION, MessageKind.COMMIT, MessageKind.PROPOSAL):
        env = MessageEnvelope(s.conv, 1, kind, s.a.device_id, 0, Hlc(NOW, 0), payload)
        await _refused(s.b, env)


@_SHARED
@given(data=st.binary(max_size=400))
async def test_random_snapshots_welcomes_and_tickets_change_nothing(setup: Setup, data: bytes) -> None:
    s = setup
    before = _state(s.b, s.conv), len(s.b.client.list_conversations())
    with pytest.raises(InvalidInput):
        await s.b.client.import_state_snapshot(data, NOW)
    with pytest.raises(PingError):
        await s.b.client.join_conversation(MessageEnvelope(s.conv, 1, MessageKind.WELCOME, s.a.device_id, 0, Hlc.ZERO, data), NOW)
    assert (_state(s.b, s.conv), len(s.b.client.list_conversations())) == before


# -- the decoders this SDK adds ---------------------------------------------------------


@given(st.binary(max_size=200))
def test_peek_mls_is_strict(data: bytes) -> None:
    try:
        peek = peek_mls(data)
    except InvalidInput:
        return
    assert isinstance(peek.kind, MessageKind) and peek.epoch >= 0


@given(st.binary(max_size=200))
def test_record_decoders_raise_only_invalid_input(data: bytes) -> None:
    for decode in (PendingOp.decode, _decode_info, _decode_leaves, _decode_roster):
        try:
            decode(data)
        except InvalidInput:
            pass


@given(
    kind=st.sampled_from(["add", "remove", "name", "link"]),
    epoch=st.integers(0, 2**64 - 1),
    welcome=st.none() | st.binary(max_size=50),
    devices=st.lists(st.binary(min_size=32, max_size=32), max_size=3),
    merged=st.booleans(),
)
def test_pending_op_round_trip(kind: str, epoch: int, welcome: bytes | None, devices: list[bytes], merged: bool) -> None:
    op = PendingOp(kind, epoch, welcome, tuple(DeviceId(d) for d in devices), tuple(DeviceId(d) for d in reversed(devices)), merged)
    assert PendingOp.decode(op.encode()) == op
    assert "welcome=yes" in repr(op) if welcome is not None else "welcome=no" in repr(op)


@given(wall=st.integers(0, 2**48 - 1), counter=st.integers(0, 2**32 - 1), junk=st.binary(max_size=20))
def test_hlc_aad(wall: int, counter: int, junk: bytes) -> None:
    hlc = Hlc(wall, counter)
    assert hlc_from_aad(hlc_aad(hlc)) == hlc
    try:
        parsed = hlc_from_aad(junk)
    except InvalidInput:  # the HLC layout with a clock out of range: refused, never read as "no clock"
        assert len(junk) == len(hlc_aad(hlc)) and junk[0] == hlc_aad(hlc)[0]
        assert int.from_bytes(junk[1:9], "big") > MAX_WALL_MS
        return
    assert parsed is None or hlc_aad(parsed) == junk


def test_hlc_aad_out_of_range_is_refused() -> None:
    aad = bytearray(hlc_aad(Hlc(1, 2)))
    aad[1:9] = (MAX_WALL_MS + 1).to_bytes(8, "big")
    with pytest.raises(InvalidInput, match="authenticated HLC"):
        hlc_from_aad(bytes(aad))


@given(st.dictionaries(st.sampled_from(["roster", "past:0", "past:1", "st:0:meta", "st:0:leaf:0", "st:1:node:1", "past:x", "other"]), st.binary(max_size=80), max_size=5))
def test_history_records_decoder_raises_only_ping_errors(records: dict[str, bytes]) -> None:
    try:
        HistoryReader.from_records(default_provider(), records)
    except PingError:
        pass


@_SHARED
@given(pos=st.integers(0, 10_000), flip=st.integers(1, 255))
async def test_mutated_genuine_messages_change_nothing(setup: Setup, pos: int, flip: int) -> None:
    s = setup
    if not hasattr(s, "genuine"):
        s.genuine = await s.a.client.send(s.conv, b"genuine", NOW)  # type: ignore[attr-defined]
        await s.a.client.set_conversation_name(s.conv, "x", NOW)
        s.commit = [e for e in s.w.service.log(s.conv) if e.kind is MessageKind.COMMIT][-1]  # type: ignore[attr-defined]
    for env in (s.genuine, s.commit):  # type: ignore[attr-defined]
        payload = bytearray(env.payload)
        payload[pos % len(payload)] ^= flip
        await _refused(s.b, dataclasses.replace(env, payload=bytes(payload)))
