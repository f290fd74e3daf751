"""Pending invitations: joining a conversation is the recipient's decision (issue 10)."""

from __future__ import annotations

import pytest

from ping_core.account import take_welcomes
from ping_core.errors import DeviceRevoked, TransportError, UnknownConversation
from ping_core.sync import SyncCursor

from .support import NOW, World, converse


async def _invite(w: World, name: str = "chat") -> tuple[object, object, object]:
    a, b = await w.device("alice"), await w.device("bob")
    conv = await a.client.create_conversation(name, NOW)
    await a.client.add_members(conv, [(b.device_id, await b.claim())], NOW, for_user=b.identity.user_id)
    return a, b, conv


async def test_an_invitation_waits_for_the_user_then_joins() -> None:
    w = World()
    a, b, conv = await _invite(w, "lunch")
    done = await take_welcomes(b.client, NOW)
    assert done.joined == () and [i.conversation_id for i in done.pending] == [conv]
    (inv,) = b.client.invitations()
    assert (inv.inviter_user_id, inv.inviter_device, inv.name, inv.member_count) == (a.identity.user_id, a.device_id, "lunch", 2)
    assert conv not in {m.id for m in b.client.list_conversations()}
    await b.restart()  # durable
    assert [i.conversation_id for i in b.client.invitations()] == [conv]
    assert await b.client.accept_invitation(conv, NOW) == conv
    assert b.client.invitations() == []
    await converse(conv, [a, b])
    with pytest.raises(UnknownConversation):
        await b.client.accept_invitation(conv, NOW)


async def test_declining_ends_the_membership_and_burns_the_key_package() -> None:
    w = World()
    a, b, conv = await _invite(w)
    await take_welcomes(b.client, NOW)
    kp_records = set(b.client._state.store.keys("kp/"))
    await b.client.decline_invitation(conv)
    assert b.client.invitations() == [] and conv not in {m.id for m in b.client.list_conversations()}
    assert len(set(b.client._state.store.keys("kp/")) - kp_records) == 0 and len(kp_records - set(b.client._state.store.keys("kp/"))) == 1
    await a.client.send(conv, b"are you there?", NOW)
    with pytest.raises(TransportError) as info:
        await b.raw_transport.fetch_since(conv, SyncCursor(), 10)
    assert info.value.status == 403
    with pytest.raises(UnknownConversation):
        await b.client.decline_invitation(conv)


async def test_auto_join_and_this_accounts_own_devices() -> None:
    w = World()
    a, b, conv = await _invite(w)
    done = await take_welcomes(b.client, NOW, auto_join=True)
    assert done.joined == (conv,) and done.pending == ()
    # A Welcome from another device of this same account is joined without asking.
    tablet = await w.device("bob-tablet", b.identity)
    await b.client.add_members(conv, [(tablet.device_id, await tablet.claim())], NOW, for_user=b.identity.user_id)
    done = await take_welcomes(tablet.client, NOW)
    assert done.joined == (conv,) and done.pending == ()
    await a.sync()
    await converse(conv, [a, b, tablet])


async def test_a_welcome_for_a_conversation_already_joined_is_not_an_invitation() -> None:
    w = World()
    a, b, conv = await _invite(w)
    welcomes = await b.raw_transport.fetch_welcomes()
    await b.client.join_conversation(welcomes[0], NOW)
    assert await b.client.add_invitations(welcomes, NOW) == [] and b.client.invitations() == []


async def test_a_revoked_device_is_told_so_by_its_welcome_inbox() -> None:
    """The Welcome round is a host's first call of a sync: a revoked device gets DeviceRevoked
    there too (not the server's bare 403), and its state is wiped on the account's statement."""
    w = World()
    b = await w.device("bob")
    tablet = await w.device("bob-tablet", b.identity)
    await b.client.revoke_device(tablet.device_id, NOW)
    with pytest.raises(DeviceRevoked):
        await take_welcomes(tablet.client, NOW)
    assert tablet.client.list_conversations() == []
