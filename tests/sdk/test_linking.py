"""Device linking, catch-up snapshots and revocation: the three-device story and its failure paths."""

from __future__ import annotations

import pytest

from ping_core import AdmitChatStatus
from ping_core.device import GroupStateSnapshot, LinkingTicket
from ping_core.errors import DeviceRevoked, IdentityError, InvalidInput, PingError, TransportError
from ping_core.identity import Identity
from ping_core.ids import ConversationId
from ping_core.link import LinkKeyPair, LinkRequest, open_ticket, seal_ticket
from ping_core.message import MessageKind
from ping_core.storage import STATE_STORE_VERSION

from .support import NOW, Device, World, assert_agree, converse, pair


async def _link(w: World, phone: Device, label: str = "laptop") -> tuple[Device, LinkingTicket]:
    """A new device of phone's account, linked by a sealed ticket; it imports the catch-up snapshot."""
    new = await w.device(label, Identity.import_(phone.client.export_identity()))
    keys = LinkKeyPair.generate()
    request = LinkRequest(new.device_id, keys.public_key, await new.client.fresh_key_package())
    request = LinkRequest.decode(request.encode())  # as shown in a QR code
    ticket = await phone.client.build_linking_ticket(request.device_id, request.key_package, [], NOW)
    sealed = seal_ticket(ticket, request.link_public_key)
    opened = open_ticket(sealed, keys, new.device_id)
    await new.client.consume_linking_ticket(opened, NOW)
    catchup = opened.catchup()
    if catchup is not None:
        for entry in catchup.conversation_metas:
            await new.client.import_state_snapshot(entry.group_state_bytes, NOW)
    return new, opened


async def test_three_device_story() -> None:
    w = World()
    phone = await w.device("phone")
    bob = await w.device("bob")
    chat1 = await pair(w, phone, bob, "one")
    chat2 = await pair(w, phone, bob, "two")
    await converse(chat1, [phone, bob], b"early")
    # bob writes something the phone has not synced yet: the laptop will read it from history.
    await bob.client.send(chat1, b"while you were linking", NOW)

    laptop, ticket = await _link(w, phone)
    assert ticket.user_id == phone.identity.user_id
    dg = ConversationId.device_group(phone.identity.user_id)
    assert_agree(dg, [phone, laptop])
    assert {m.device_id for m in laptop.client.members(dg)} == {phone.device_id, laptop.device_id}
    # History-only: listed, with the roster, readable, but it cannot send yet.
    ids = {m.id for m in laptop.client.list_conversations()}
    assert {chat1, chat2, dg} <= ids
    assert {m.device_id for m in laptop.client.members(chat1)} == {phone.device_id, bob.device_id}
    with pytest.raises(InvalidInput):
        await laptop.client.send(chat1, b"too early", NOW)
    # Not a member of the chats on the delivery service yet: nothing to read, nothing moves.
    cursor = laptop.client._state.convs[chat1].cursor
    assert [m for m in await laptop.sync() if m.conversation_id != dg] == []
    assert laptop.client._state.convs[chat1].cursor == cursor

    # The phone admits the laptop to the chats with KeyPackages from the directory.
    await laptop.publish(2)
    kps = await phone.raw_transport.claim_device_key_packages(laptop.device_id, 2)
    outcomes = await phone.client.admit_device_to_chats(laptop.device_id, [(chat1, kps[0]), (chat2, kps[1]), (dg, kps[0])], NOW)
    assert [type(o.status) for o in outcomes[:2]] == [AdmitChatStatus.Admitted, AdmitChatStatus.Admitted]
    assert outcomes[2].status == AdmitChatStatus.Skipped("device_group")
    assert sorted(await laptop.join_welcomes()) == sorted([chat1, chat2])
    # From the phone's cursor on, the laptop reads what was sent before it joined, with the
    # history-only keys of the snapshot (an epoch its own leaf never was in).
    got = await laptop.sync()
    assert [(m.conversation_id, m.plaintext) for m in got] == [(chat1, b"while you were linking")]
    assert got[0].sender_user_id == bob.identity.user_id and got[0].epoch < laptop.client._state.convs[chat1].joined_epoch
    await phone.sync()
    await bob.sync()
    for chat in (chat1, chat2):
        assert_agree(chat, [phone, bob, laptop])
        await converse(chat, [phone, bob, laptop], b"three of us")
    # The laptop's own messages carry alice's account.
    await laptop.client.send(chat2, b"from the laptop", NOW)
    (m,) = [m for m in await bob.sync() if m.plaintext == b"from the laptop"]
    assert m.sender_user_id == phone.identity.user_id and m.sender_device == laptop.device_id

    # Revocation: the laptop's leaves go from every conversation, the server refuses it.
    envelopes = await phone.client.revoke_device(laptop.device_id, NOW)
    assert {e.conversation_id for e in envelopes} == {chat1, chat2, dg}
    assert all(e.kind is MessageKind.COMMIT for e in envelopes)
    assert w.service.is_revoked(laptop.device_id)
    await bob.sync()
    for chat in (chat1, chat2):
        assert_agree(chat, [phone, bob])
        assert laptop.device_id not in {x.device_id for x in bob.client.members(chat)}
        await converse(chat, [phone, bob], b"after revocation")
    # The laptop can no longer read anything new: the service refuses it as revoked (it is told:
    # DeviceRevoked), and even handed the envelopes directly it cannot decrypt them.
    with pytest.raises(DeviceRevoked):
        await laptop.sync()
    new_envelopes = [e for chat in (chat1, chat2) for e in w.service.log(chat) if e.epoch > envelopes[0].epoch or e.kind is MessageKind.APPLICATION]
    fresh = [e for e in new_envelopes if e.kind is MessageKind.APPLICATION and e.seq > max(x.seq for x in w.service.log(e.conversation_id) if x.kind is MessageKind.COMMIT)]
    assert fresh
    for env in fresh:
        try:  # refused, or held for an epoch the laptop will never reach: never decrypted
            out = await laptop.client.process_envelope(env, NOW)
        except PingError:
            out = None
        assert out is None
    assert await laptop.client.pending_messages() == []
    with pytest.raises((TransportError, DeviceRevoked)):
        await laptop.client.send(chat1, b"still there?", NOW)


async def test_history_only_waits_for_the_welcome_and_keeps_older_epochs() -> None:
    w = World()
    phone, bob = await w.device("phone"), await w.device("bob")
    chat = await pair(w, phone, bob)
    laptop, _ = await _link(w, phone)
    conv = laptop.client._state.convs[chat]
    assert conv.group is None and conv.history is not None
    # A commit before the laptop's Welcome, and a message in the epoch it starts.
    await bob.client.set_conversation_name(chat, "renamed", NOW)
    await bob.client.send(chat, b"new epoch", NOW)
    # A history-only conversation cannot process a commit: handed one, it refuses and nothing moves.
    commit = [e for e in w.service.log(chat) if e.kind is MessageKind.COMMIT][-1]
    cursor = conv.cursor
    with pytest.raises(InvalidInput):
        await laptop.client.process_envelope(commit, NOW)
    assert laptop.client._state.convs[chat].cursor == cursor
    # A message of a later epoch pushed before the Welcome is refused, not consumed.
    later = [e for e in w.service.log(chat) if e.kind is MessageKind.APPLICATION][-1]
    with pytest.raises(InvalidInput):
        await laptop.client.process_envelope(later, NOW)
    assert laptop.client._state.convs[chat].cursor == cursor and later.seq not in laptop.client._state.convs[chat].seen_above_cursor
    # Admitted later: the live group takes over and reads from there on.
    await phone.sync()
    kp = await laptop.claim()
    await phone.client.add_members(chat, [(laptop.device_id, kp)], NOW)
    await laptop.join_welcomes()
    await bob.sync()
    await bob.client.send(chat, b"welcome laptop", NOW)
    got = [m.plaintext for m in await laptop.sync()]
    assert got == [b"welcome laptop"]  # "new epoch" was in an epoch the laptop never had keys for
    await bob.sync()
    assert_agree(chat, [phone, bob, laptop])


async def test_snapshot_is_history_only_and_carries_no_device_secret() -> None:
    w = World()
    phone, bob = await w.device("phone"), await w.device("bob")
    chat = await pair(w, phone, bob)
    raw = phone.client.export_conversation_state_snapshot(chat, NOW)
    snap = GroupStateSnapshot.decode(raw)
    assert snap.group_id == chat and snap.storage_version == STATE_STORE_VERSION
    keys = {k for k, _ in snap.entries}
    assert {"meta", "cursor", "h/roster"} <= keys and all(k in ("meta", "cursor") or k.startswith("h/") for k in keys)
    assert phone.secret not in raw  # the device signing key never leaves
    assert not any(k.startswith("g/") for k in keys)


async def test_import_state_snapshot_refusals_change_nothing() -> None:
    w = World()
    phone, bob = await w.device("phone"), await w.device("bob")
    chat = await pair(w, phone, bob)
    raw = phone.client.export_conversation_state_snapshot(chat, NOW)
    other = await w.device("other", Identity.import_(phone.client.export_identity()))
    before = other.blobs.snapshot()
    snap = GroupStateSnapshot.decode(raw)

    def variant(**kw: object) -> bytes:
        fields = {"group_id": snap.group_id, "storage_version": snap.storage_version, "exported_at_ms": snap.exported_at_ms, "entries": snap.entries}
        fields.update(kw)
        return GroupStateSnapshot(**fields).encode()  # type: ignore[arg-type]

    entries = dict(snap.entries)
    bad = [
        b"",
        b"\xa0",
        raw[:-1],
        variant(storage_version=STATE_STORE_VERSION + 1),
        variant(group_id=ConversationId.new(NOW)),
        variant(group_id=ConversationId.device_group(phone.identity.user_id)),
        variant(entries=tuple(snap.entries) + (("g/state", b"x"),)),
        variant(entries=tuple((k, v) for k, v in snap.entries if k != "h/roster")),
        variant(entries=tuple((k, v) for k, v in snap.entries if k != "meta")),
        variant(entries=tuple((k, (v[:-1] if k.startswith("h/past") else v)) for k, v in snap.entries)),
        variant(entries=tuple((k, (b"\x01" + v[1:] if k.startswith("h/st") else v)) for k, v in snap.entries)),
    ]
    assert entries
    for blob in bad:
        with pytest.raises(InvalidInput):
            await other.client.import_state_snapshot(blob, NOW)
        assert other.blobs.snapshot() == before
        assert chat not in {m.id for m in other.client.list_conversations()}
    # The good one imports once; a second import is refused.
    assert await other.client.import_state_snapshot(raw, NOW) == chat
    with pytest.raises(InvalidInput):
        await other.client.import_state_snapshot(raw, NOW)
    # It survives a restart.
    await other.restart()
    assert chat in {m.id for m in other.client.list_conversations()}


async def test_consume_linking_ticket_refusals() -> None:
    w = World()
    phone = await w.device("phone")
    laptop = await w.device("laptop", Identity.import_(phone.client.export_identity()))
    stranger = await w.device("stranger")
    ticket = await phone.client.build_linking_ticket(laptop.device_id, await laptop.client.fresh_key_package(), [], NOW)
    dg = ConversationId.device_group(phone.identity.user_id)
    before = laptop.blobs.snapshot()
    with pytest.raises(InvalidInput):  # addressed to another device
        forged = LinkingTicket.new(phone.identity, stranger.device_id, ticket.device_group_welcome, ticket.catchup_snapshot)
        await laptop.client.consume_linking_ticket(forged, NOW)
    with pytest.raises(IdentityError):  # the binding does not verify
        broken = LinkingTicket(1, ticket.user_id, ticket.user_pubkey, ticket.new_device_id, bytes(64), ticket.device_group_welcome, b"")
        await laptop.client.consume_linking_ticket(broken, NOW)
    with pytest.raises(IdentityError):  # another account's ticket
        await stranger.client.consume_linking_ticket(
            LinkingTicket.new(phone.identity, stranger.device_id, ticket.device_group_welcome, b""), NOW
        )
    with pytest.raises(InvalidInput):
        await laptop.client.consume_linking_ticket(b"ticket", NOW)  # type: ignore[arg-type]
    assert laptop.blobs.snapshot() == before
    await laptop.client.consume_linking_ticket(ticket, NOW)
    assert_agree(dg, [phone, laptop])
    with pytest.raises(InvalidInput):  # consumed twice
        await laptop.client.consume_linking_ticket(ticket, NOW)


async def test_build_linking_ticket_refusals() -> None:
    w = World()
    phone = await w.device("phone")
    stranger = await w.device("stranger")
    laptop = await w.device("laptop", Identity.import_(phone.client.export_identity()))
    kp = await laptop.client.fresh_key_package()
    with pytest.raises(InvalidInput):  # the KeyPackage is not the named device's
        await phone.client.build_linking_ticket(stranger.device_id, kp, [], NOW)
    with pytest.raises(IdentityError):  # a device of another account
        await phone.client.build_linking_ticket(stranger.device_id, await stranger.client.fresh_key_package(), [], NOW)
    with pytest.raises(InvalidInput):
        await phone.client.build_linking_ticket(laptop.device_id, kp, "events", NOW)  # type: ignore[arg-type]
    chat = await phone.client.create_conversation("c", NOW)
    ticket = await phone.client.build_linking_ticket(laptop.device_id, kp, [(chat, b"last event")], NOW)
    catchup = ticket.catchup()
    assert catchup is not None and [e.conversation_id for e in catchup.last_app_events_per_conv] == [chat]
    assert [e.conversation_id for e in catchup.conversation_metas] == [chat]
    with pytest.raises(InvalidInput):  # already linked
        await phone.client.build_linking_ticket(laptop.device_id, await laptop.client.fresh_key_package(), [], NOW)


async def test_revoke_device_refusals_and_remote_failure() -> None:
    w = World()
    phone, bob = await w.device("phone"), await w.device("bob")
    chat = await pair(w, phone, bob)
    with pytest.raises(InvalidInput):
        await phone.client.revoke_device(phone.device_id, NOW)
    with pytest.raises(InvalidInput):
        await phone.client.revoke_device(b"x", NOW)  # type: ignore[arg-type]
    # Revoking another account's device: removed from the chat, then the service refuses (403).
    with pytest.raises(TransportError) as info:
        await phone.client.revoke_device(bob.device_id, NOW)
    assert info.value.status == 403
    assert bob.device_id not in phone.client._state.convs[chat].leaves
    # A device in no conversation: no envelope, only the remote call.
    laptop = await w.device("laptop", Identity.import_(phone.client.export_identity()))
    assert await phone.client.revoke_device(laptop.device_id, NOW) == []
    assert w.service.is_revoked(laptop.device_id)


async def test_imported_history_is_dropped_once_the_live_group_moved_on() -> None:
    w = World()
    phone, bob = await w.device("phone"), await w.device("bob")
    chat = await pair(w, phone, bob)
    laptop, _ = await _link(w, phone)
    await phone.client.add_members(chat, [(laptop.device_id, await laptop.claim())], NOW)
    await laptop.join_welcomes()
    conv = laptop.client._state.convs[chat]
    assert conv.history is not None  # kept for the epochs before the join
    for i in range(3):
        await bob.sync()
        await bob.client.set_conversation_name(chat, f"n{i}", NOW)
        await laptop.sync()
    assert conv.history is None
    assert not laptop.client._state.store.keys(f"c/{chat.as_hex()}/h/")
    await laptop.restart()
    await phone.sync()
    assert_agree(chat, [phone, bob, laptop])
