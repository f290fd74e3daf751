"""MessagingClient: every method's success and failure paths (in-memory delivery service)."""

from __future__ import annotations

import logging

import pytest

from ping_core import ClientConfig, MessagingClient
from ping_core.clock import Hlc
from ping_core.conversation import conversation_prefix
from ping_core.errors import IdentityError, InvalidInput, MlsError, StorageError, TransportError, UnknownConversation, MlsReason
from ping_core.identity import Identity
from ping_core.ids import ConversationId, DeviceId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.storage import MemoryBlobStore, MemoryStorage, StorageBackend
from ping_core.testing.memory import MemoryDeliveryService

from .support import NOW, World, assert_agree, converse, pair
from reasons import raises_reason


async def test_init_creates_device_and_device_group_and_reinit_keeps_them() -> None:
    w = World()
    a = await w.device("alice")
    c = a.client
    assert c.user_id() == a.identity.user_id
    assert c.device_id() == a.device_id
    info = c.device_info(NOW + 5)
    assert info.device_id == a.device_id and info.last_seen_ms == NOW + 5 and info.label == "alice"
    info.verify()
    metas = c.list_conversations()
    assert len(metas) == 1 and metas[0].is_device_group and metas[0].id == ConversationId.device_group(c.user_id())
    assert Identity.import_(c.export_identity()) == a.identity
    c2 = await a.restart()
    assert c2.device_id() == a.device_id
    assert [m.id for m in c2.list_conversations()] == [metas[0].id]


async def test_init_generates_a_device_without_a_secret_and_reuses_it() -> None:
    ident = Identity.generate()
    storage, blobs = MemoryStorage(), MemoryBlobStore()
    service = MemoryDeliveryService()
    cfg = ClientConfig(ident, "x", storage, service.transport(DeviceId(b"\x00" * 32)), NOW, StorageBackend.Custom(blobs))
    c1 = await MessagingClient.init(cfg)
    c2 = await MessagingClient.init(cfg)
    assert c1.device_id() == c2.device_id()
    # new_in_memory: a fresh memory backend each time (the spec's behaviour), same device from storage.
    c3 = await MessagingClient.init(ClientConfig.new_in_memory(ident, "x", storage, cfg.transport, NOW))
    assert c3.device_id() == c1.device_id()


async def test_init_refuses_another_account_and_a_corrupt_device_record() -> None:
    w = World()
    a = await w.device("alice")
    cfg = a.config()
    cfg.identity = Identity.generate()
    with pytest.raises(IdentityError):
        await MessagingClient.init(cfg)
    await a.storage.put("device", "local", b"\xa0")
    with pytest.raises(StorageError):
        await MessagingClient.init(a.config())
    with pytest.raises(InvalidInput):
        await MessagingClient.init("nope")  # type: ignore[arg-type]


async def test_init_skips_a_corrupt_conversation_and_logs_its_id(caplog: pytest.LogCaptureFixture) -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    good = await pair(w, a, b)
    bad = await a.client.create_conversation("doomed", NOW)
    key = conversation_prefix(bad) + "meta"
    await a.blobs.commit({key: b"\x00garbage"}, ())
    with caplog.at_level(logging.WARNING, logger="ping_core.client"):
        c = await a.restart()
    ids = [m.id for m in c.list_conversations()]
    assert good in ids and bad not in ids
    assert bad.as_hex() in caplog.text
    # The skipped conversation's records are left alone, the others work.
    assert key in a.blobs.snapshot()
    await converse(good, [a, b])


async def test_corrupt_group_records_are_found_on_first_use_and_quarantined(caplog: pytest.LogCaptureFixture) -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    await a.blobs.commit({conversation_prefix(conv) + "g/tree": b"\x01\x02"}, ())
    c = await a.restart()
    assert conv in [m.id for m in c.list_conversations()]  # lazy: only headers were read
    with caplog.at_level(logging.WARNING, logger="ping_core.client"), pytest.raises(StorageError):
        await c.send(conv, b"x", NOW)
    assert conv not in [m.id for m in c.list_conversations()]
    assert conv.as_hex() in caplog.text


async def test_device_signing_secret_fixes_the_device_id_on_first_init_only() -> None:
    w = World()
    a = await w.device("alice")
    cfg = a.config()
    cfg.device_signing_secret_key = b"\x07" * 32  # ignored: a device is already stored
    assert (await MessagingClient.init(cfg)).device_id() == a.device_id
    cfg2 = ClientConfig(Identity.generate(), "n", MemoryStorage(), a.transport, NOW, device_signing_secret_key=b"\x07" * 32)
    c = await MessagingClient.init(cfg2)
    assert c.device_id() == DeviceId.from_public_key(c.device_info(NOW).signing_public_key)
    cfg3 = ClientConfig(Identity.generate(), "n", MemoryStorage(), a.transport, NOW, device_signing_secret_key=b"\x07" * 31)
    with pytest.raises(InvalidInput):
        await MessagingClient.init(cfg3)


async def test_fresh_key_package_is_durable_before_it_is_returned() -> None:
    w = World()
    a = await w.device("alice")
    before = a.blobs.commits
    kp = await a.client.fresh_key_package()
    assert a.blobs.commits == before + 1
    assert any(k.startswith("kp/") for k in a.blobs.snapshot())
    # A failing disk: the KeyPackage is not returned and nothing is left in the working set.
    a.blobs.fail_next_commits = 1
    with pytest.raises(StorageError):
        await a.client.fresh_key_package()
    assert dict(a.client._state.store.items()) == a.blobs.snapshot()
    # The returned one works after a restart.
    b = await w.device("bob")
    await a.restart()
    conv = await b.client.create_conversation(None, NOW)
    await b.client.add_members(conv, [(a.device_id, kp)], NOW)
    assert await a.join_welcomes() == [conv]
    assert not any(k.startswith("kp/") for k in a.blobs.snapshot())  # used one-time keys are deleted


async def test_last_resort_key_package_survives_its_use() -> None:
    w = World()
    a, b, c = await w.device("alice"), await w.device("bob"), await w.device("carol")
    kp = await a.client.fresh_key_package(last_resort=True)
    for owner in (b, c):
        conv = await owner.client.create_conversation(None, NOW)
        await owner.client.add_members(conv, [(a.device_id, kp)], NOW)
    joined = await a.join_welcomes()
    assert len(joined) == 2
    assert any(k.startswith("kpl/") for k in a.blobs.snapshot())


async def test_create_conversation_and_its_failures() -> None:
    w = World()
    a = await w.device("alice")
    conv = await a.client.create_conversation("name", NOW)
    meta = [m for m in a.client.list_conversations() if m.id == conv][0]
    assert (meta.name, meta.epoch, meta.member_count, meta.is_device_group, meta.created_at_ms) == ("name", 0, 1, False, NOW)
    assert [m.device_id for m in a.client.members(conv)] == [a.device_id]
    assert a.client.members(conv)[0].user_id == a.identity.user_id
    with pytest.raises(InvalidInput):
        await a.client.create_conversation("x" * 5000, NOW)
    with pytest.raises(InvalidInput):
        await a.client.create_conversation(None, -1)
    a.blobs.fail_next_commits = 1
    n = len(a.client.list_conversations())
    with pytest.raises(StorageError):
        await a.client.create_conversation("lost", NOW)
    assert len(a.client.list_conversations()) == n


async def test_members_of_unknown_conversation_is_empty() -> None:
    w = World()
    a = await w.device("alice")
    assert a.client.members(ConversationId.new(NOW)) == []
    with pytest.raises(InvalidInput):
        a.client.members("nope")  # type: ignore[arg-type]


async def test_unknown_conversation_everywhere() -> None:
    w = World()
    a = await w.device("alice")
    unknown = ConversationId.new(NOW)
    with pytest.raises(UnknownConversation):
        await a.client.send(unknown, b"x", NOW)
    with pytest.raises(UnknownConversation):
        await a.client.set_conversation_name(unknown, "n", NOW)
    with pytest.raises(UnknownConversation):
        await a.client.remove_members(unknown, [1], NOW)
    with pytest.raises(UnknownConversation):
        a.client.export_conversation_secret(unknown, "l", b"", 16)
    with pytest.raises(UnknownConversation):
        a.client.export_conversation_state_snapshot(unknown, NOW)
    env = MessageEnvelope(unknown, 0, MessageKind.APPLICATION, a.device_id, 1, Hlc.ZERO, b"x")
    with pytest.raises(UnknownConversation):
        await a.client.process_envelope(env, NOW)


async def test_send_and_receive_by_push_and_by_sync() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    env = await a.client.send(conv, b"hello", NOW + 1)
    assert env.seq > 0 and env.kind is MessageKind.APPLICATION and env.sender_device == a.device_id
    msg = await b.client.process_envelope(env, NOW + 2)
    assert msg is not None
    assert (msg.plaintext, msg.sender_device, msg.sender_user_id, msg.seq) == (b"hello", a.device_id, a.identity.user_id, env.seq)
    assert msg.hlc == env.hlc
    # A duplicate (already consumed) is a no-op.
    assert await b.client.process_envelope(env, NOW) is None
    assert await b.sync() == []
    # Our own message echoed back is skipped.
    assert await a.client.process_envelope(env, NOW) is None
    # Sync delivers in log order.
    for i in range(3):
        await a.client.send(conv, b"m%d" % i, NOW)
    assert [m.plaintext for m in await b.sync()] == [b"m0", b"m1", b"m2"]
    assert await a.sync() == []


async def test_send_failure_paths() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    with pytest.raises(InvalidInput):
        await a.client.send(conv, "text", NOW)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await a.client.send(conv, b"x", -5)
    # The disk fails: nothing is sent, nothing changed.
    log_len = len(w.service.log(conv))
    a.blobs.fail_next_commits = 1
    before = a.blobs.snapshot()
    with pytest.raises(StorageError):
        await a.client.send(conv, b"x", NOW)
    assert len(w.service.log(conv)) == log_len and a.blobs.snapshot() == before
    assert dict(a.client._state.store.items()) == before
    await converse(conv, [a, b])


async def test_out_of_order_pushes_do_not_skip_the_gap() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    await a.client.send(conv, b"one", NOW)
    e2 = await a.client.send(conv, b"two", NOW)
    assert (await b.client.process_envelope(e2, NOW)).plaintext == b"two"  # type: ignore[union-attr]
    # The cursor waited for the gap: sync still brings "one", and does not deliver "two" again.
    assert [m.plaintext for m in await b.sync()] == [b"one"]
    assert b.client._state.convs[conv].cursor.seq == e2.seq


async def test_process_envelope_rejects_welcome_and_bad_arguments() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    env = await a.client.send(conv, b"x", NOW)
    with pytest.raises(InvalidInput):
        await b.client.process_envelope(MessageEnvelope(conv, 1, MessageKind.WELCOME, a.device_id, 0, Hlc.ZERO, b"w"), NOW)
    with pytest.raises(InvalidInput):
        await b.client.process_envelope(b"raw", NOW)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await b.client.process_envelope(env, None)  # type: ignore[arg-type]


async def test_join_conversation_failures_change_nothing() -> None:
    w = World()
    a, b, c = await w.device("alice"), await w.device("bob"), await w.device("carol")
    conv = await a.client.create_conversation("c", NOW)
    await a.client.add_members(conv, [(b.device_id, await b.claim())], NOW)
    (welcome,) = await b.raw_transport.fetch_welcomes()
    with pytest.raises(InvalidInput):
        await b.client.join_conversation(MessageEnvelope(conv, 1, MessageKind.APPLICATION, a.device_id, 0, Hlc.ZERO, welcome.payload), NOW)
    with pytest.raises(InvalidInput):
        await b.client.join_conversation(MessageEnvelope(conv, 1, MessageKind.WELCOME, a.device_id, 0, Hlc.ZERO, b"\x00\x01\x00\x03xx"), NOW)
    # A Welcome for another device's KeyPackage.
    snapshot = c.blobs.snapshot()
    with raises_reason(MlsReason.BAD_WELCOME):
        await c.client.join_conversation(welcome, NOW)
    assert c.blobs.snapshot() == snapshot
    # An envelope that names another conversation than its Welcome.
    with pytest.raises(InvalidInput):
        await b.client.join_conversation(MessageEnvelope(ConversationId.new(NOW), 1, MessageKind.WELCOME, a.device_id, 0, Hlc.ZERO, welcome.payload), NOW)
    # Storage fails: not joined, KeyPackage kept; the retry works.
    b.blobs.fail_next_commits = 1
    with pytest.raises(StorageError):
        await b.client.join_conversation(welcome, NOW)
    assert conv not in [m.id for m in b.client.list_conversations()]
    assert await b.client.join_conversation(welcome, NOW) == conv
    with pytest.raises((InvalidInput, MlsError)):  # already a member (and the one-time KeyPackage is gone)
        await b.client.join_conversation(welcome, NOW)
    await converse(conv, [a, b])


async def test_welcome_into_another_accounts_device_group_is_refused() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    dg = ConversationId.device_group(a.identity.user_id)
    sent: list[MessageEnvelope] = []
    send = a.raw_transport.send

    async def recording(env: MessageEnvelope) -> int:
        sent.append(env)
        return await send(env)

    a.raw_transport.send = recording  # type: ignore[method-assign,assignment]
    # alice adds bob (another account) to her DeviceGroup: the server refuses to route the Welcome ...
    with pytest.raises(TransportError) as info:
        await a.client.add_members(dg, [(b.device_id, await b.claim())], NOW)
    assert info.value.status == 403
    # ... and bob refuses it too when it reaches him some other way.
    (welcome,) = [e for e in sent if e.kind is MessageKind.WELCOME]
    before = b.blobs.snapshot()
    with pytest.raises(IdentityError):
        await b.client.join_conversation(welcome, NOW)
    assert b.blobs.snapshot() == before


async def test_export_conversation_secret() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    s1 = a.client.export_conversation_secret(conv, "call", b"ctx", 32)
    assert s1 == b.client.export_conversation_secret(conv, "call", b"ctx", 32) and len(s1) == 32
    assert s1 != a.client.export_conversation_secret(conv, "call", b"other", 32)
    for bad in [("call", b"", 0), ("call", b"", 10_000), (1, b"", 16), ("call", "ctx", 16), ("x" * 300, b"", 16)]:
        with pytest.raises(InvalidInput):
            a.client.export_conversation_secret(conv, *bad)  # type: ignore[arg-type]


async def test_members_and_leaves_follow_commits() -> None:
    w = World()
    a, b, c = await w.device("alice"), await w.device("bob"), await w.device("carol")
    conv = await pair(w, a, b)
    await a.client.add_members(conv, [(c.device_id, await c.claim())], NOW)
    await c.join_welcomes()
    await b.sync()
    for d in (a, b, c):
        assert {m.device_id for m in d.client.members(conv)} == {a.device_id, b.device_id, c.device_id}
        meta = [m for m in d.client.list_conversations() if m.id == conv][0]
        assert meta.member_count == 3 and meta.epoch == 2
    assert_agree(conv, [a, b, c])


async def test_add_members_input_checks() -> None:
    w = World()
    a, b, c = await w.device("alice"), await w.device("bob"), await w.device("carol")
    conv = await a.client.create_conversation(None, NOW)
    kp = await b.claim()
    for bad in ([], [(b.device_id,)], [("dev", kp)], [(b.device_id, "kp")], [(c.device_id, kp)], [(b.device_id, kp), (b.device_id, kp)]):
        with pytest.raises((InvalidInput, MlsError)):
            await a.client.add_members(conv, bad, NOW)  # type: ignore[arg-type]
    with raises_reason(MlsReason.MALFORMED):
        await a.client.add_members(conv, [(b.device_id, b"\x00\x01\x00\x05" + b"\x00" * 20)], NOW)
    assert w.service.log(conv) == []  # nothing was sent
    await a.client.add_members(conv, [(b.device_id, kp)], NOW)


async def test_remove_members_input_checks() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    for bad in ([], [0], [7], [-1], ["1"], [1, 1]):
        with pytest.raises(InvalidInput):
            await a.client.remove_members(conv, bad, NOW)  # type: ignore[arg-type]
    await a.client.remove_members(conv, [1], NOW)
    assert w.service.members(conv) == {a.device_id}  # the removal was announced to the server
    # The delivery service ended bob's membership with the Commit: he reads nothing new (at most
    # the Commit that removed him, if the service lets him see it) and cannot post.
    assert await b.sync() == []
    with pytest.raises((TransportError, MlsError)) as info:
        await b.client.send(conv, b"x", NOW)
    removed = b.client._state.convs[conv].group
    assert (isinstance(info.value, TransportError) and info.value.status == 403) or (removed is not None and removed.removed)
    await converse(conv, [a])


async def test_set_conversation_name_and_clear_it() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    await b.client.set_conversation_name(conv, "new", NOW)
    await a.sync()
    assert [m.name for m in a.client.list_conversations() if m.id == conv] == ["new"]
    await a.client.set_conversation_name(conv, None, NOW)
    await b.sync()
    assert [m.name for m in b.client.list_conversations() if m.id == conv] == [None]
    with pytest.raises(InvalidInput):
        await a.client.set_conversation_name(conv, 5, NOW)  # type: ignore[arg-type]
    assert_agree(conv, [a, b])


async def test_admit_device_to_chats_outcomes() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    c = await w.device("alice-tablet", a.identity)  # a new device of alice's account
    chat1 = await pair(w, a, b)
    chat2 = await a.client.create_conversation("two", NOW)
    dg = ConversationId.device_group(a.identity.user_id)
    unknown = ConversationId.new(NOW)
    kps = [await c.claim() for _ in range(4)]
    out = await a.client.admit_device_to_chats(c.device_id, [(chat1, kps[0]), (chat2, kps[1]), (dg, kps[2]), (unknown, kps[3])], NOW)
    status = {o.conversation_id: o.status for o in out}
    from ping_core import AdmitChatStatus

    assert isinstance(status[chat1], AdmitChatStatus.Admitted)
    assert isinstance(status[chat2], AdmitChatStatus.Admitted)
    assert status[dg] == AdmitChatStatus.Skipped("device_group")
    failed = status[unknown]
    assert isinstance(failed, AdmitChatStatus.Failed) and isinstance(failed.exception, UnknownConversation)
    assert sorted(await c.join_welcomes()) == sorted([chat1, chat2])
    again = await a.client.admit_device_to_chats(c.device_id, [(chat1, await c.claim())], NOW)
    assert again[0].status == AdmitChatStatus.Skipped("already_member")
    await b.sync()
    await converse(chat1, [a, b, c])
    with pytest.raises(InvalidInput):
        await a.client.admit_device_to_chats("c", [], NOW)  # type: ignore[arg-type]
    # A device of another account is never admitted as alice's.
    d = await w.device("dave")
    other = await a.client.admit_device_to_chats(d.device_id, [(chat2, await d.claim())], NOW)
    assert isinstance(other[0].status, AdmitChatStatus.Failed) and isinstance(other[0].status.exception, IdentityError)


async def test_concurrent_operations_on_one_conversation_do_not_interleave() -> None:
    import asyncio

    w = World()
    a, b, c = await w.device("alice"), await w.device("bob"), await w.device("carol")
    conv = await pair(w, a, b)
    kp = await c.claim()
    sends = [a.client.send(conv, b"m%d" % i, NOW) for i in range(5)]
    results = await asyncio.gather(a.client.add_members(conv, [(c.device_id, kp)], NOW), *sends, a.client.set_conversation_name(conv, "z", NOW))
    assert len(results) == 7
    await c.join_welcomes()
    got = await b.sync()
    assert sorted(m.plaintext for m in got) == [b"m%d" % i for i in range(5)]
    await c.sync()
    assert_agree(conv, [a, b, c])
    await converse(conv, [a, b, c])


async def test_process_envelope_storage_failure_leaves_conversation_unchanged() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    env = await a.client.send(conv, b"x", NOW)
    before_store = b.blobs.snapshot()
    before_cursor = b.client._state.convs[conv].cursor
    b.blobs.fail_next_commits = 1
    with pytest.raises(StorageError):
        await b.client.process_envelope(env, NOW)
    assert b.blobs.snapshot() == before_store and b.client._state.convs[conv].cursor == before_cursor
    assert dict(b.client._state.store.items()) == before_store
    msg = await b.client.process_envelope(env, NOW)  # the same envelope still decrypts
    assert msg is not None and msg.plaintext == b"x"


async def test_a_corrupt_device_group_is_not_recreated() -> None:
    w = World()
    a = await w.device("alice")
    dg = ConversationId.device_group(a.identity.user_id)
    key = conversation_prefix(dg) + "meta"
    await a.blobs.commit({key: b"junk"}, ())
    c = await a.restart()
    assert dg not in [m.id for m in c.list_conversations()]
    assert a.blobs.snapshot()[key] == b"junk"  # left for inspection, not overwritten by a fresh group


async def test_own_commit_echo_pushed_merges_and_delivers_the_welcome() -> None:
    from ping_core.testing.memory import Fault

    w = World()
    a, b, c = await w.device("alice"), await w.device("bob"), await w.device("carol")
    conv = await pair(w, a, b)
    w.service.inject("send", Fault.TIMEOUT_AFTER_APPLY, kind=MessageKind.COMMIT)
    w.service.inject("fetch_since", Fault.TIMEOUT_BEFORE_APPLY, device=a.device_id)
    with pytest.raises(TransportError):
        await a.client.add_members(conv, [(c.device_id, await c.claim())], NOW)
    echo = [e for e in w.service.log(conv) if e.kind is MessageKind.COMMIT][-1]
    assert await a.client.process_envelope(echo, NOW) is None  # our pending commit: merged
    assert c.device_id in a.client._state.convs[conv].leaves and a.client._state.convs[conv].op is None
    assert await c.join_welcomes() == [conv]  # its Welcome went out after the merge
    assert await a.client.process_envelope(echo, NOW) is None  # again: a duplicate, nothing happens
    await b.sync()
    assert_agree(conv, [a, b, c])


async def test_sync_position_follows_the_consumed_log() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    conv = await pair(w, a, b)
    with pytest.raises(UnknownConversation):
        b.client.sync_position(ConversationId.new(NOW))
    with pytest.raises(InvalidInput):
        b.client.sync_position(conv.as_hex())  # type: ignore[arg-type]
    start = b.client.sync_position(conv)
    assert start == b.client._state.convs[conv].cursor.seq and start <= w.service.log(conv)[-1].seq
    e1 = await a.client.send(conv, b"one", NOW)
    e2 = await a.client.send(conv, b"two", NOW)
    assert b.client.sync_position(conv) == start  # nothing consumed yet
    # Out of order: "two" is processed, but the position waits for the gap.
    await b.client.process_envelope(e2, NOW)
    assert b.client.sync_position(conv) == start
    await b.sync()
    assert b.client.sync_position(conv) == e2.seq > e1.seq
    # A failed checkpoint leaves the position where the disk has it.
    e3 = await a.client.send(conv, b"three", NOW)
    b.blobs.fail_next_commits = 1
    with pytest.raises(StorageError):
        await b.client.process_envelope(e3, NOW)
    assert b.client.sync_position(conv) == e2.seq
    await b.sync()
    assert b.client.sync_position(conv) == e3.seq
    # It is the durable cursor: a restarted client reads the same position.
    assert (await b.restart()).sync_position(conv) == e3.seq
    # The sender's own position moves when it syncs past its own messages.
    await a.sync()
    assert a.client.sync_position(conv) == e3.seq
