"""What every part of one :class:`~ping_core.client.MessagingClient` shares: its identity, its
stores and transport, its open conversations, and the primitives every flow uses on them.

The flows (``ping_core.commitflow``, ``receive``, ``syncer``, ``owed``, ``welcomes``,
``linking``, ``history``) each hold the one :class:`ClientState` of their client; none keeps
state of its own, so the client's behaviour is the same whichever flow runs.

Guarantees kept here, for every flow:

* :meth:`ClientState.checkpoint` either makes the working set durable or puts back what its
  ``StoreUndo`` recorded and raises: the working set never drifts from the disk.
* :meth:`ClientState.group` quarantines a conversation whose stored group is corrupt (it is
  closed, its records stay on disk untouched).
* A device that learns its account revoked it (:meth:`ClientState.lock_out`) wipes its state,
  leaves a tombstone and refuses every later call with ``DeviceRevoked``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, NoReturn

from ping_core.checks import check_bytes, check_conv_id, check_now
from ping_core.conversation import CONVERSATIONS_PREFIX, MAX_LEAF_LIFETIME_S, Conversation, MemberInfo, StoreUndo, conversation_prefix
from ping_core.conversation_name import PING_CAPABILITIES, check_extensions, with_name
from ping_core.device import LocalDevice
from ping_core.errors import DeviceRevoked, IdentityError, InvalidInput, PingError, StorageError, TransportError, UnknownConversation
from ping_core.identity import DeviceBinding, DeviceRevocation, Identity, credential_identity
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.unacked import INBOX_DIR
from ping_core.membership import AccountVerifier
from ping_core.meta import ConversationMeta
from ping_core.mls.crypto import CryptoProvider, default_provider
from ping_core.mls.group import Group, Signer
from ping_core.mls.structs import Credential
from ping_core.storage import MlsStateStore, Storage
from ping_core.transport import Transport
from ping_core.wallclock import wall_clock_s

if TYPE_CHECKING:
    from ping_core.client import ClientConfig

__all__ = ["ClientState", "DEVICE_GROUP_NAME", "REVOKED_KEY", "load_device"]

log = logging.getLogger("ping_core.client")

#: The name the DeviceGroup is created with (as in the spec).
DEVICE_GROUP_NAME = "device-group"
#: Host storage, namespace ``device``: this device's own revocation (a tombstone).
REVOKED_KEY = "revoked"
#: The delivery service's error code for a revoked device.
DEVICE_REVOKED_CODE = "device_revoked"


class ClientState:
    """The state of one client (identity, device, stores, transport, open conversations) and the
    primitives on it. Internal: apps hold a :class:`~ping_core.client.MessagingClient`."""

    def __init__(
        self,
        *,
        account: Identity | None,
        binding: DeviceBinding,
        device: LocalDevice,
        signer: Signer,
        crypto: CryptoProvider,
        store: MlsStateStore,
        storage: Storage,
        transport: Transport,
        explicit_ack: bool = False,
    ) -> None:
        self.account = account  # None: this device holds only its binding
        self.binding = binding
        self.verifier = AccountVerifier(store)
        # Set when this device learns its own revocation: the client then wipes and locks out.
        self.revoked_by: DeviceRevocation | None = None
        self.locked = False
        self.device = device
        self.signer = signer
        self.crypto = crypto
        self.store = store
        self.storage = storage
        self.transport = transport
        self.explicit_ack = explicit_ack
        self.convs: dict[ConversationId, Conversation] = {}
        self.dg_id = ConversationId.device_group(binding.user_id)
        # Serialises creating conversations (create / join / import) so an id is installed once.
        self.create_lock = asyncio.Lock()
        # wait_for_news: conversations the server said we may not read, at that sync position
        # (left out of later watches until the position moves or a Welcome arrives).
        self.unreadable: dict[ConversationId, int] = {}

    def user_id(self) -> UserId:
        return self.binding.user_id

    def device_id(self) -> DeviceId:
        return self.device.device_id

    def account_key(self, what: str) -> Identity:
        """The account key (``IdentityError`` on a device that holds only its binding)."""
        if self.account is None:
            raise IdentityError(f"{what} needs the account key, which this device does not hold")
        return self.account

    # -- opening ----------------------------------------------------------------

    @classmethod
    async def open(cls, cfg: ClientConfig) -> ClientState:
        """``MessagingClient.init``: open the MLS state store, load or create this device,
        rehydrate the conversations and make sure the DeviceGroup exists (no network call)."""
        if not isinstance(cfg.identity, (Identity, DeviceBinding)):
            raise InvalidInput("ClientConfig.identity must be an Identity or a DeviceBinding")
        now_ms = check_now(cfg.now_ms)
        crypto = cfg.crypto or default_provider()
        revoked = await cfg.storage.get("device", REVOKED_KEY)
        if revoked is not None:
            raise DeviceRevoked("this device was revoked by its account; its state was wiped")
        store = await MlsStateStore.open_backend(cfg.storage_backend)
        device = await load_device(cfg, now_ms)
        if isinstance(cfg.identity, Identity):
            account: Identity | None = cfg.identity
            binding = cfg.identity.device_binding(device.device_id)
        else:
            account, binding = None, cfg.identity
            binding.verify()
            if binding.device_id != device.device_id:
                raise IdentityError("ClientConfig.identity binds another device than this device's key")
        signer = Signer(Credential.basic(credential_identity(binding)), device.signing_secret, device.signing_public_key)
        state = cls(
            account=account,
            binding=binding,
            device=device,
            signer=signer,
            crypto=crypto,
            store=store,
            storage=cfg.storage,
            transport=cfg.transport,
            explicit_ack=bool(cfg.explicit_ack),
        )
        state.rehydrate()
        await state.ensure_device_group(now_ms)
        return state

    def rehydrate(self) -> None:
        """Open every stored conversation (header records only); a corrupt one is logged and skipped."""
        # One pass over the keys gives the conversation ids and their inbox names: listing each
        # conversation's inbox by prefix would scan the whole working set once per conversation.
        inboxes: dict[str, list[str]] = {}
        n = len(CONVERSATIONS_PREFIX)
        for key in self.store.keys(CONVERSATIONS_PREFIX):
            slash = key.find("/", n)
            if slash > n:
                names = inboxes.setdefault(key[n:slash], [])
                if key.startswith(INBOX_DIR, slash + 1):
                    names.append(key[slash + 1 + len(INBOX_DIR) :])
        for hex_id, names in sorted(inboxes.items()):
            try:
                conv_id = ConversationId.from_hex(hex_id)
                conv = Conversation.open(self.store, self.crypto, conv_id, names, verifier=self.verifier)
                conv.adopt = self.adopt
            except PingError as exc:
                log.warning("skipping stored conversation %s: %s: %s", hex_id, type(exc).__name__, exc)
                continue
            self.convs[conv_id] = conv

    async def ensure_device_group(self, now_ms: int) -> None:
        """Create the one-member DeviceGroup unless it exists (the spec's ``ensure_device_group``).

        A DeviceGroup whose records exist but could not be loaded is NOT
        recreated (a fresh one would fork the account's DeviceGroup)."""
        if self.dg_id in self.convs or self.store.keys(conversation_prefix(self.dg_id)):
            return
        await self.create(self.dg_id, DEVICE_GROUP_NAME, now_ms, is_device_group=True)

    async def create(self, conv_id: ConversationId, name: str | None, now_ms: int, *, is_device_group: bool = False) -> Conversation:
        """A new one-member conversation, durable on return (``InvalidInput`` if the id is open)."""
        async with self.create_lock:
            if conv_id in self.convs:
                raise InvalidInput(f"conversation {conv_id.as_hex()} already exists")
            group = Group.create(
                self.crypto,
                self.signer,
                clock=wall_clock_s,
                group_id=conv_id.value,
                extensions=with_name((), name),
                capabilities=PING_CAPABILITIES,
                max_lifetime_s=MAX_LEAF_LIFETIME_S,
                leaf_check=self.verifier.check_leaf,
                extensions_check=check_extensions,
            )
            self.adopt(group)
            meta = ConversationMeta(conv_id, name, group.epoch, 1, is_device_group, now_ms)
            undo = StoreUndo(self.store)
            conv = Conversation.create(self.store, self.crypto, group, meta, undo, verifier=self.verifier)
            self.install(conv)
            await self.checkpoint(undo)
            self.convs[conv_id] = conv
            return conv

    def install(self, conv: Conversation) -> None:
        """Give a new conversation this client's policy on the groups it loads (see :meth:`adopt`)."""
        conv.adopt = self.adopt

    # -- conversations and groups ---------------------------------------------------

    def conv(self, conv_id: object) -> Conversation:
        """The open conversation ``conv_id`` (``UnknownConversation``; ``DeviceRevoked`` once locked out)."""
        if self.locked:
            raise DeviceRevoked("this device was revoked by its account")
        conv = self.convs.get(check_conv_id(conv_id))
        if conv is None:
            raise UnknownConversation(f"conversation {conv_id} is not open on this client")
        return conv

    def roster(self, conv_id: ConversationId) -> list[MemberInfo]:
        """The members of ``conv_id`` recovered from its tree; empty for an unknown or corrupt one."""
        conv = self.convs.get(conv_id)
        if conv is None:
            return []
        try:
            self.group(conv)
        except StorageError:
            return []
        return conv.members()

    def group(self, conv: Conversation) -> Group | None:
        """The conversation's group (parsed on first use); a corrupt one quarantines the conversation."""
        try:
            group = conv.group
        except StorageError:
            log.warning("conversation %s has corrupt stored state; it is closed", conv.id.as_hex())
            self.convs.pop(conv.id, None)
            raise
        if group is not None:
            self.adopt(group)
        return group

    def adopt(self, group: Group) -> None:
        """This client's policy on a loaded group: our current credential (a group stored before
        account bindings: our next path carries the binding), and handshake messages as MLS
        PublicMessages (the delivery service verifies commits and proposals, see
        ``ping_core.transport.handshake``; application messages stay PrivateMessages)."""
        if group.signer.credential != self.signer.credential and group.signer.public_key == self.signer.public_key:
            group.signer = self.signer
        if group.config.encrypt_handshake:
            group.config = dataclasses.replace(group.config, encrypt_handshake=False)

    def live(self, conv: Conversation) -> Group:
        """The conversation's live group (``InvalidInput`` for a history-only one)."""
        g = self.group(conv)
        if g is None:
            return conv.live_group()  # raises: history-only
        return g

    # -- durability -------------------------------------------------------------

    def checkpoints_durable(self) -> bool:
        """False while the blob store buffers its commits (it says so with a true ``deferring``
        attribute, as pyodide_app's IndexedDB store does during a sync): a checkpoint then does
        not make anything durable, so no new commit may be sent."""
        return not getattr(self.store.blob_store, "deferring", False)

    async def checkpoint(self, undo: StoreUndo) -> None:
        """Checkpoint the working set; if that fails, put back what ``undo`` recorded (so the
        working set again matches the disk) and raise the ``StorageError``."""
        try:
            await self.store.checkpoint()
        except StorageError:
            undo.revert()
            raise

    async def persist(self, conv: Conversation, undo: StoreUndo | None = None) -> None:
        """Save the conversation's changes to the working set and checkpoint them. On a failed
        checkpoint the working set and the cached conversation are put back as they were."""
        undo = undo if undo is not None else StoreUndo(self.store)
        conv.save(undo)
        try:
            await self.checkpoint(undo)
        except StorageError:
            conv.reload()
            raise

    # -- revocation of this device --------------------------------------------------

    def learn_revocation(self, rev: DeviceRevocation, undo: StoreUndo) -> None:
        """Remember an account's verified revocation of a device (durable with the commit that
        carried it); when it is this device's own, the client locks out after the checkpoint."""
        self.verifier.remember(rev, undo.put)
        if rev.device_id == self.device_id() and rev.user_id == self.user_id():
            self.revoked_by = rev

    async def raise_if_revoked(self, exc: PingError) -> None:
        """``DeviceRevoked`` (settled by :meth:`revoked_at_server`) when ``exc`` is the delivery
        service refusing this device as revoked (403 ``device_revoked``); else return."""
        if isinstance(exc, TransportError) and exc.code == DEVICE_REVOKED_CODE:
            await self.revoked_at_server()

    async def revoked_at_server(self) -> NoReturn:
        """The delivery service refused this device as revoked. The state is wiped only on the
        account's own signed statement (the server cannot wipe a device by saying so)."""
        try:
            statements = await self.transport.list_revocations(self.user_id())
        except (PingError, AttributeError):
            statements = []
        for rev in statements:
            if isinstance(rev, DeviceRevocation) and rev.device_id == self.device_id() and rev.user_id == self.user_id():
                try:
                    rev.verify()
                except IdentityError:
                    continue
                self.revoked_by = rev
                await self.lock_out()
        raise DeviceRevoked("the delivery service refuses this device as revoked (no statement of the account seen: state kept)")

    async def lock_out(self) -> NoReturn:
        """This device saw its account's revocation of it: wipe every conversation, KeyPackage and
        the device key, leave a tombstone (``init`` raises ``DeviceRevoked`` from then on), raise."""
        rev = self.revoked_by
        assert rev is not None
        self.locked = True
        self.convs.clear()
        try:
            await self.storage.put("device", REVOKED_KEY, rev.encode())
            self.store.delete_prefix("")
            await self.store.checkpoint()
            await self.storage.delete("device", "local")
        except PingError as exc:  # the tombstone or the wipe may be incomplete; init still refuses
            log.warning("revoked: wiping the local state failed: %s", type(exc).__name__)
        raise DeviceRevoked("this device was revoked by its account; its local state is wiped")


async def load_device(cfg: ClientConfig, now_ms: int) -> LocalDevice:
    """This device's record from ``cfg.storage`` (namespace ``device``, key ``local``), created on
    first use (from ``cfg.device_signing_secret_key`` when given) and stored with the account it
    belongs to (key ``user_id``): ``IdentityError`` when the storage belongs to another account,
    ``StorageError`` when the record is corrupt."""
    user_id = cfg.identity.user_id
    raw = await cfg.storage.get("device", "local")
    stored_user = await cfg.storage.get("device", "user_id")
    if stored_user is not None and stored_user != user_id.value:
        raise IdentityError("this storage belongs to another account than ClientConfig.identity")
    if raw is not None:
        try:
            device = LocalDevice.decode(raw, user_id)
        except InvalidInput as exc:
            raise StorageError(f"the stored device record is corrupt: {exc}") from None
    else:
        secret = cfg.device_signing_secret_key
        if secret is not None:
            device = LocalDevice.from_signing_secret(user_id, cfg.device_label, now_ms, check_bytes(secret, "device_signing_secret_key"))
        else:
            device = LocalDevice.generate(user_id, cfg.device_label, now_ms)
        await cfg.storage.put("device", "local", device.encode())
    if stored_user is None:
        await cfg.storage.put("device", "user_id", user_id.value)
    return device
