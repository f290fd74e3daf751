"""Account bindings in MLS leaves: devices without the account key, migration of leaves made
before bindings, and revocation that reaches the revoked device (ping_core.membership)."""

from __future__ import annotations

import pytest

from ping_core.client import ClientConfig, MessagingClient
from ping_core.errors import DeviceRevoked, IdentityError, TransportError
from ping_core.identity import DeviceRevocation, Identity, claimed_user_of_credential, credential_identity
from ping_core.ids import UserId
from ping_core.membership import AccountVerifier, HasCredential
from ping_core.clock import Hlc
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.mls.group import Signer
from ping_core.mls.structs import Credential, LeafNode

from .support import NOW, Device, World, assert_agree, converse, pair


class _OldPing(AccountVerifier):
    """What a Ping before account bindings checked: nothing; the credential's id was believed."""

    __slots__ = ()

    def check_leaf(self, new: LeafNode, previous: LeafNode | None) -> None:
        return None

    def check_joined_leaf(self, new: LeafNode, previous: LeafNode | None) -> None:
        return None

    def user_of(self, leaf: HasCredential) -> UserId | None:
        return claimed_user_of_credential(leaf.credential.identity)


def _as_old_ping(dev: Device) -> None:
    """Make ``dev``'s client behave as a Ping release before bindings: a bare user id in its leaves."""
    c = dev.client
    c._state.signer = Signer(Credential.basic(c.user_id().value), c._state.signer.private_key, c._state.signer.public_key)
    c._state.verifier = _OldPing(c._state.store)


async def test_leaves_made_before_bindings_migrate_after_the_upgrade() -> None:
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    _as_old_ping(a)
    _as_old_ping(b)
    chat = await pair(w, a, b)
    await converse(chat, [a, b], b"old ping")
    # The upgrade: both restart on the same state with the new code.
    await a.restart()
    await b.restart()
    assert {m.user_id for m in b.client.members(chat)} == {None}  # nobody's leaf proves its account yet
    # Alice's first send commits her path with her binding first; Bob's sync verifies it.
    await a.client.send(chat, b"after the upgrade", NOW)
    got = await b.sync()
    assert [(m.sender_user_id, m.plaintext) for m in got] == [(a.identity.user_id, b"after the upgrade")]
    # Bob's sync migrated his leaf too (a commit of his path).
    await a.sync()
    assert_agree(chat, [a, b])
    for dev in (a, b):
        assert {(m.device_id, m.user_id) for m in dev.client.members(chat)} == {
            (a.device_id, a.identity.user_id),
            (b.device_id, b.identity.user_id),
        }
    await converse(chat, [a, b], b"verified")


async def test_a_legacy_leaf_cannot_migrate_to_another_account() -> None:
    """The migration rule is the account named before: Eve's old leaf (naming Eve) cannot become
    Mallory's, even with Mallory's valid binding of Eve's device key."""
    w = World()
    a, e = await w.device("alice"), await w.device("eve")
    _as_old_ping(a)
    _as_old_ping(e)
    chat = await pair(w, a, e)
    await a.restart()
    mallory = await w.device("mallory")
    stolen = mallory.identity.device_binding(e.device_id)  # Mallory's account binds Eve's device
    e.client._state.signer = Signer(Credential.basic(credential_identity(stolen)), e.client._state.signer.private_key, e.client._state.signer.public_key)
    group = e.client._state.convs[chat].group
    assert group is not None
    group.signer = e.client._state.signer
    # The delivery service refuses the commit (it checks bindings in the trees it follows) ...
    with pytest.raises(TransportError) as refused:
        await e.client._owed.refresh_own_leaf(e.client._state.convs[chat], NOW, [])
    assert refused.value.code == "invalid_commit"
    # ... and so does Alice when it reaches her another way: her chat is unchanged.
    staged = group.commit(force_path=True)
    assert staged.message is not None
    env = MessageEnvelope(chat, staged.base_epoch, MessageKind.COMMIT, e.device_id, 0, Hlc.ZERO, staged.message)
    epoch = a.client._state.convs[chat].meta.epoch
    with pytest.raises(IdentityError, match="another account"):
        await a.client.process_envelope(env, NOW)
    assert a.client._state.convs[chat].meta.epoch == epoch
    assert {m.user_id for m in a.client.members(chat) if m.device_id == e.device_id} == {None}


async def test_a_device_with_only_its_binding() -> None:
    """Linked without the account key: it chats as the account, but cannot link, grant or revoke."""
    w = World()
    phone, bob = await w.device("phone"), await w.device("bob")
    tablet = Device(w, phone.identity, "tablet", None)
    await w.service.connect(phone.identity, tablet.local, NOW)
    binding = phone.client.grant_device(tablet.device_id).account
    cfg = tablet.config()
    tablet.client = await MessagingClient.init(
        ClientConfig(binding, cfg.device_label, cfg.storage, cfg.transport, NOW, cfg.storage_backend, device_signing_secret_key=tablet.secret)
    )
    c = tablet.client
    assert not c.holds_account_key() and phone.client.holds_account_key()
    assert c.user_id() == phone.identity.user_id and c.device_binding() == binding
    for call in (c.export_identity, lambda: c.grant_device(bob.device_id)):
        with pytest.raises(IdentityError, match="account key"):
            call()
    with pytest.raises(IdentityError, match="account key"):
        await c.revoke_device(phone.device_id, NOW)
    chat = await pair(w, bob, tablet)
    await tablet.client.send(chat, b"from the tablet", NOW)
    (m,) = await bob.sync()
    assert (m.sender_user_id, m.sender_device) == (phone.identity.user_id, tablet.device_id)
    # A binding of another device is refused at init.
    other = phone.client.grant_device(bob.device_id).account
    with pytest.raises(IdentityError):
        await MessagingClient.init(
            ClientConfig(other, "x", cfg.storage, cfg.transport, NOW, cfg.storage_backend, device_signing_secret_key=tablet.secret)
        )


async def test_revocation_reaches_the_revoked_device_and_every_member() -> None:
    w = World()
    phone, bob = await w.device("phone"), await w.device("bob")
    laptop = await w.device("laptop", phone.identity)
    chat = await pair(w, bob, phone)
    await bob.client.add_members(chat, [(laptop.device_id, await laptop.claim())], NOW, for_user=phone.identity.user_id)
    assert await laptop.join_welcomes() == [chat]
    await phone.sync()
    envelopes = await phone.client.revoke_device(laptop.device_id, NOW)
    removal = [e for e in envelopes if e.conversation_id == chat]
    assert [e.kind for e in removal] == [MessageKind.COMMIT]
    # Bob learns the account's statement from the commit and refuses the device from then on,
    # whatever the delivery service says: its KeyPackages are never added again.
    await bob.sync()
    assert bob.client._state.verifier.is_revoked(laptop.device_id)
    kp = await laptop.client.fresh_key_package()
    await bob.restart()  # remembered durably
    with pytest.raises(IdentityError, match="revoked"):
        await bob.client.add_members(chat, [(laptop.device_id, kp)], NOW)
    # The laptop, handed the removing commit, sees its own revocation: wiped and locked for good.
    with pytest.raises(DeviceRevoked):
        await laptop.client.process_envelope(removal[0].with_seq(removal[0].seq or 1), NOW)
    assert laptop.client.list_conversations() == [] and laptop.client._state.store.keys("") == []
    with pytest.raises(DeviceRevoked):
        await laptop.restart()


class _SaysRevoked:
    """Fault injection (a fake): a hostile delivery service that refuses the device as revoked
    and serves ``statements`` as the account's revocations; everything else passes through."""

    def __init__(self, inner: object, statements: list[DeviceRevocation]) -> None:
        self._inner, self._statements = inner, statements

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def fetch_since(self, *args: object, **kwargs: object) -> object:
        raise TransportError("device is revoked", status=403, code="device_revoked")

    async def list_revocations(self, user_id: UserId) -> list[DeviceRevocation]:
        return self._statements


async def test_a_server_saying_revoked_without_the_accounts_statement_wipes_nothing() -> None:
    """The delivery service cannot make a device wipe itself: without a valid statement of the
    account the client raises DeviceRevoked but keeps its state (and works again afterwards)."""
    w = World()
    a, b = await w.device("alice"), await w.device("bob")
    chat = await pair(w, a, b)
    eve = Identity.generate()
    forged = [
        eve.revoke(b.device_id),  # another account's statement about Bob's device
        b.identity.revoke(a.device_id),  # Bob's account, but about another device
        DeviceRevocation(b.identity.user_id, eve.device_binding(b.device_id).user_public_key, b.device_id, bytes(64)),
    ]
    real = b.client._state.transport
    b.client._state.transport = _SaysRevoked(real, forged)  # type: ignore[assignment]
    with pytest.raises(DeviceRevoked, match="state kept"):
        await b.sync()
    assert chat in {m.id for m in b.client.list_conversations()} and b.client._state.store.keys("")
    b.client._state.transport = real
    await converse(chat, [a, b], b"still here")
    await b.restart()
    # With the account's real statement, the same answer wipes it.
    b.client._state.transport = _SaysRevoked(b.client._state.transport, [b.identity.revoke(b.device_id)])  # type: ignore[assignment]
    with pytest.raises(DeviceRevoked, match="wiped"):
        await b.sync()
    assert b.client._state.store.keys("") == []
    with pytest.raises(DeviceRevoked):
        await b.restart()
