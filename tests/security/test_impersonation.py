"""Posing as another account (issue 10, item 1) against a real ``ping_server`` and unmodified clients.

Eve is a registered user whose client is modified: her MLS leaf's credential
names Bob instead of her own account. Before account bindings, a credential
was the bare user id the device asserted, so Alice's roster showed Bob and
Alice received Eve's messages as Bob's. Now every leaf must carry the
account's signature over its device key (``ping_core.membership``); each
forgery below is refused where it enters, and the conversation is unchanged.
"""

from __future__ import annotations

import time

from pathlib import Path

import pytest

from ping_core.client import MessagingClient
from ping_core.connect import connect
from ping_core.errors import IdentityError, PingError, TransportError
from ping_core.identity import credential_identity
from ping_core.ids import ConversationId
from ping_core.membership import AccountVerifier
from ping_core.mls.group import Signer
from ping_core.mls.structs import Credential, LeafNode

from .support import ClientFactory, Server


class _TrustsAnything(AccountVerifier):
    """Eve's modified client: it checks no leaf (so it builds and accepts forged ones)."""

    __slots__ = ()

    def check_leaf(self, new: LeafNode, previous: LeafNode | None) -> None:
        return None

    def check_joined_leaf(self, new: LeafNode, previous: LeafNode | None) -> None:
        return None


def _forgeries(eve: MessagingClient, bob: MessagingClient) -> dict[str, bytes]:
    """Credential identities naming Bob, as Eve can make them from public data and her own keys."""
    eve_binding, bob_binding = eve.device_binding(), bob.device_binding()
    bob_id = bob.user_id().value
    return {
        # What every Ping leaf carried before: the bare account id, asserted by the device.
        "legacy bare id": bob_id,
        # Bob's id with Eve's own account key and signature.
        "bob id, eve key": bob_id + eve_binding.user_public_key + eve_binding.signature,
        # Bob's id and public key (public: the directory serves it) with Eve's signature.
        "bob key, eve signature": bob_id + bob_binding.user_public_key + eve_binding.signature,
        # Bob's real binding of Bob's device (public), replayed in Eve's leaf.
        "replayed bob binding": credential_identity(bob_binding),
    }


def _pose_as(eve: MessagingClient, identity: bytes, *, hide_group_info: bool = False) -> None:
    """Eve's client puts ``identity`` in her leaves; with ``hide_group_info`` it never uploads a
    GroupInfo either, so the server cannot verify her conversations' commits (only the members
    then stand between her and Alice)."""
    signer = eve._state.signer
    eve._state.signer = Signer(Credential.basic(identity), signer.private_key, signer.public_key)
    eve._state.verifier = _TrustsAnything(eve._state.store)
    if hide_group_info:

        async def upload_nothing(conversation_id: ConversationId, group_info: bytes | None) -> None:
            return None

        eve.transport.set_next_commit_group_info = upload_nothing  # type: ignore[method-assign]


async def _trio(server: Server, clients: ClientFactory, **eve_kwargs: object) -> tuple[MessagingClient, MessagingClient, MessagingClient]:
    alice = await clients(server, "alice")
    bob = await clients(server, "bob")
    eve = await clients(server, "eve", **eve_kwargs)
    return alice, bob, eve


def _state(client: MessagingClient, conv: ConversationId) -> tuple[int, list[object]]:
    conv_state = client._state.convs[conv]
    return conv_state.meta.epoch, [(m.leaf_index, m.user_id, m.device_id) for m in client.members(conv)]


@pytest.mark.parametrize("forgery", ["legacy bare id", "bob id, eve key", "bob key, eve signature", "replayed bob binding"])
async def test_a_key_package_naming_another_account_is_never_added(server: Server, clients: ClientFactory, forgery: str) -> None:
    """Eve publishes a KeyPackage whose leaf names Bob; Alice invites Eve (as `ping invite` does):
    before, Alice's roster showed Bob. Now the KeyPackage is refused and the chat is unchanged."""
    alice, bob, eve = await _trio(server, clients, key_packages=0)
    _pose_as(eve, _forgeries(eve, bob)[forgery])
    await eve.transport.publish_key_packages([await eve.fresh_key_package()])  # type: ignore[attr-defined]
    chat = await alice.create_conversation("chat", 1)
    before = _state(alice, chat)
    claimed = await alice.transport.claim_key_packages(eve.user_id())  # type: ignore[attr-defined]
    assert [d for d, _ in claimed] == [eve.device_id()]
    for for_user in (eve.user_id(), bob.user_id(), None):
        with pytest.raises(IdentityError):
            await alice.add_members(chat, claimed, 1, for_user=for_user)
        assert _state(alice, chat) == before
    assert bob.user_id() not in {m.user_id for m in alice.members(chat)}


async def test_a_server_cannot_hand_out_another_accounts_key_package_for_a_user(server: Server, clients: ClientFactory) -> None:
    """A hostile directory answers a claim for Bob with Eve's (valid) KeyPackage: inviting Bob
    with ``for_user=bob`` refuses it, so Eve never joins under Bob's name."""
    alice, bob, eve = await _trio(server, clients)
    chat = await alice.create_conversation("chat", 1)
    eves = await alice.transport.claim_key_packages(eve.user_id())  # type: ignore[attr-defined]
    with pytest.raises(IdentityError, match="another account"):
        await alice.add_members(chat, eves, 1, for_user=bob.user_id())
    assert [m.user_id for m in alice.members(chat)] == [alice.user_id()]
    # Invited as herself, Eve is shown as herself.
    await alice.add_members(chat, eves, 1, for_user=eve.user_id())
    assert {m.user_id for m in alice.members(chat)} == {alice.user_id(), eve.user_id()}


async def _eve_invites_alice(alice: MessagingClient, eve: MessagingClient) -> tuple[ConversationId, list[object]]:
    chat = await eve.create_conversation("from eve", 1)
    await eve.add_members(chat, await eve.transport.claim_key_packages(alice.user_id()), 1)  # type: ignore[attr-defined]
    welcomes = await alice.transport.fetch_welcomes()  # type: ignore[attr-defined]
    return chat, welcomes


FORGED = ["bob id, eve key", "bob key, eve signature", "replayed bob binding"]


@pytest.mark.parametrize("forgery", FORGED)
async def test_the_server_refuses_a_conversation_with_a_forged_leaf(server: Server, clients: ClientFactory, forgery: str) -> None:
    """Eve's commit that would invite Alice into a chat where Eve's leaf names Bob: the server
    checks the bindings of the tree it verifies the conversation from, and refuses it
    (400 invalid_commit); no Welcome reaches Alice."""
    alice, bob, eve = await _trio(server, clients)
    _pose_as(eve, _forgeries(eve, bob)[forgery])
    with pytest.raises(TransportError) as refused:
        await _eve_invites_alice(alice, eve)
    assert refused.value.code == "invalid_commit"
    assert await alice.transport.fetch_welcomes() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("forgery", FORGED)
async def test_a_welcome_whose_tree_has_a_forged_leaf_is_refused(server: Server, clients: ClientFactory, forgery: str) -> None:
    """Eve creates a chat with her own leaf naming Bob, hides it from the server's checks (no
    GroupInfo) and invites Alice: before, Alice joined and saw Bob. Now the join is refused
    (IdentityError) and Alice holds nothing of that chat."""
    alice, bob, eve = await _trio(server, clients)
    _pose_as(eve, _forgeries(eve, bob)[forgery], hide_group_info=True)
    chat, welcomes = await _eve_invites_alice(alice, eve)
    (welcome,) = [w for w in welcomes if w.conversation_id == chat]
    with pytest.raises(IdentityError):
        await alice.join_conversation(welcome, 1)
    assert chat not in {m.id for m in alice.list_conversations()}
    assert alice.members(chat) == []


async def test_a_legacy_leaf_naming_bob_is_an_unverified_member_whose_messages_are_refused(
    server: Server, clients: ClientFactory
) -> None:
    """A leaf with the pre-binding credential (a bare id) is tolerated on join, as old Ping
    clients made them, but it is never attributed: the roster shows no account for it and
    nothing it sends is delivered, let alone as Bob's."""
    alice, bob, eve = await _trio(server, clients)
    _pose_as(eve, _forgeries(eve, bob)["legacy bare id"])
    chat, welcomes = await _eve_invites_alice(alice, eve)
    (welcome,) = [w for w in welcomes if w.conversation_id == chat]
    await alice.join_conversation(welcome, 1)
    roster = {m.device_id: m.user_id for m in alice.members(chat)}
    assert roster == {alice.device_id(): alice.user_id(), eve.device_id(): None}
    await eve.send(chat, b"hi alice, it's bob", 2)
    got = await alice.sync_conversations(3)
    assert [m for m in got if m.conversation_id == chat] == []
    assert all(m.sender_user_id != bob.user_id() for m in got)


async def test_honest_members_are_shown_as_their_verified_accounts(server: Server, clients: ClientFactory) -> None:
    """The control: unmodified clients see each other as who they are, messages attributed."""
    alice, bob, _ = await _trio(server, clients)
    chat = await alice.create_conversation("chat", 1)
    await alice.add_members(chat, await alice.transport.claim_key_packages(bob.user_id()), 1, for_user=bob.user_id())  # type: ignore[attr-defined]
    for env in await bob.transport.fetch_welcomes():  # type: ignore[attr-defined]
        await bob.join_conversation(env, 1)
    await bob.send(chat, b"hello", 2)
    (msg,) = await alice.sync_conversations(3)
    assert (msg.sender_user_id, msg.sender_device, msg.plaintext) == (bob.user_id(), bob.device_id(), b"hello")
    assert all(m.verified for m in alice.members(chat)) and all(m.verified for m in bob.members(chat))


async def test_key_packages_made_before_bindings_are_replaced_on_the_server(server: Server, tmp_path: Path) -> None:
    """A device upgraded from a Ping without bindings has KeyPackages on the server that peers
    now refuse; its next connect retires them and replaces the server's pool (one-time and last
    resort), so it can be invited again at once."""
    folder = tmp_path / "bob"
    bob = await connect(server.url, folder, "bob", key_packages=0)
    old = bob._state.signer
    bob._state.signer = Signer(Credential.basic(bob.user_id().value), old.private_key, old.public_key)  # an old Ping
    await bob.transport.publish_key_packages(  # type: ignore[attr-defined]
        [await bob.fresh_key_package() for _ in range(3)], last_resort=await bob.fresh_key_package(last_resort=True)
    )
    await bob.transport.aclose()  # type: ignore[attr-defined]
    alice = await connect(server.url, tmp_path / "alice", "alice")
    try:
        chat = await alice.create_conversation("chat", 1)
        with pytest.raises(IdentityError):  # what Alice gets from the old pool
            await alice.add_members(chat, await alice.transport.claim_key_packages(bob.user_id()), 1)  # type: ignore[attr-defined]
        bob = await connect(server.url, folder, "bob")  # the upgraded device
        await bob.transport.aclose()  # type: ignore[attr-defined]
        claimed = await alice.transport.claim_key_packages(bob.user_id())  # type: ignore[attr-defined]
        await alice.add_members(chat, claimed, 1, for_user=bob.user_id())
        assert {m.user_id for m in alice.members(chat)} == {alice.user_id(), bob.user_id()}
    finally:
        await alice.transport.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("as_alice", [False, True])
async def test_nobody_else_gets_into_an_accounts_device_group(server: Server, clients: ClientFactory, as_alice: bool) -> None:
    """Eve tries to become one of Alice's devices: the server refuses her posts and Welcomes to
    Alice's DeviceGroup (implicit membership: Alice's devices only); a DeviceGroup Welcome that
    reaches Alice another way with Eve's device in its tree is refused by Alice's client; and
    Alice's linking refuses Eve's KeyPackage as a new device of hers."""
    from ping_core.clock import Hlc
    from ping_core.message import MessageEnvelope, MessageKind
    from ping_core.mls.crypto import default_provider
    from ping_core.mls.group import Group

    alice, eve = await clients(server, "alice"), await clients(server, "eve")
    dg = ConversationId.device_group(alice.user_id())
    if as_alice:  # Eve's leaf names Alice the old way (a bare id)
        _pose_as(eve, alice.user_id().value)
    # Eve's own group under Alice's DeviceGroup id, with Alice's device added.
    group = Group.create(default_provider(), eve._state.signer, group_id=dg.value, clock=time.time)
    (alice_kp,) = [kp for d, kp in await eve.transport.claim_key_packages(alice.user_id()) if d == alice.device_id()]  # type: ignore[attr-defined]
    staged = group.commit(add=[alice_kp])
    commit = MessageEnvelope(dg, 0, MessageKind.COMMIT, eve.device_id(), 0, Hlc(1, 0), staged.message)
    welcome = MessageEnvelope(dg, 0, MessageKind.WELCOME, eve.device_id(), 0, Hlc(1, 0), staged.welcome)
    for env in (commit, welcome):
        with pytest.raises(TransportError) as refused:
            if env.kind is MessageKind.WELCOME:
                await eve.transport.set_next_welcome_recipients(dg, [alice.device_id()])  # type: ignore[attr-defined]
            await eve.transport.send(env)  # type: ignore[attr-defined]
        assert refused.value.status == 403
    with pytest.raises(PingError):  # another account's device, or (named as Alice's) not a linking ticket
        await alice.join_conversation(welcome, 1)
    assert [m.device_id for m in alice.members(dg)] == [alice.device_id()]
    # Linking Eve's device as Alice's: refused before anything is committed.
    (eve_kp,) = [kp for d, kp in await alice.transport.claim_key_packages(eve.user_id()) if d == eve.device_id()]  # type: ignore[attr-defined]
    with pytest.raises(IdentityError):
        await alice.build_linking_ticket(eve.device_id(), eve_kp, [], 1)
    assert alice._state.convs[dg].meta.epoch == 0
