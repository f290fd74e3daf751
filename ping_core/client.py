"""``MessagingClient``: the asyncio SDK an app (or the browser worker) holds.

It re-creates ``spec/client.rs`` method by method (same names, arguments as
Python types, same order of effects) on Ping's own MLS engine, and keeps the
invariants of DESIGN.md. Where this module does better than the spec, the
method docstring says so under "Beyond the spec"; the list:

* **Atomic state.** Each conversation's MLS records, meta, cursor, clock,
  device->leaf map and in-flight commit live under one prefix of the MLS
  state store and are checkpointed together (see ``ping_core.conversation``);
  the spec writes meta/cursor to the host Storage separately. A send's
  checkpoint writes only the sender ratchet record and the clock record.
* **Send durability.** ``send`` checkpoints the advanced ratchet BEFORE it
  hands the envelope to the transport (the spec checkpoints after, so a crash
  in between lets a reload re-use a generation). A lost generation is
  harmless; a reused one is not.
* **Commits are resolved against the log.** Stage, checkpoint the staged
  commit, send, merge. A definite rejection drops it. An ambiguous failure
  (timeout, 5xx, network) does not merge blindly — that forks the group when
  the server did NOT apply it; the SDK reads the conversation's log: our
  commit there -> merge; another commit at that epoch -> drop ours (409);
  none -> re-send the same commit once (the server takes at most one commit
  per epoch, so a re-send is safe). If the log cannot be read, the commit
  stays staged and durable, and the next sync or commit settles it the same
  way. A crash anywhere is settled the same way after restart. No fork, no
  stranding, in every case.
* **Welcomes and removals drive the delivery service's membership**: Welcome
  recipients are primed with device ids before each Welcome; removed devices
  are announced before each (re)send of a removing commit. Both are read off
  the staged commit, so proposals of others it includes are served too. An
  interrupted add re-delivers its Welcome after the restart.
* **Sender checks.** ``process_envelope`` refuses an envelope whose
  ``sender_device`` is not the MLS sender (DeviceId = SHA-256 of the leaf
  signature key) or whose routing fields (conversation, epoch, kind) disagree
  with the MLS message, an application message whose envelope HLC is not
  the HLC authenticated inside the message, and proposals this SDK could not
  commit. The checks run in the engine's ``check_sender`` hook, before the
  group changes, so a failed ``process_envelope`` leaves the conversation
  exactly as it was, in memory and in storage, without rebuilding anything.
* **Pending proposals never stall a conversation**: ``send`` commits other
  members' proposals first; ``sync_conversations`` commits them by a policy
  that lets the group converge (``commit_pending_proposals``).
* **Leaf lifetimes are bounded** (RFC 9420 §7.2 leaves the maximum to the
  application): ``MAX_LEAF_LIFETIME_S`` (``ping_core.conversation``) is 90
  days plus the 1-hour backdating, exactly what every KeyPackage Ping makes
  spans (one-time and last-resort). A KeyPackage spanning longer is refused
  like any other invalid one (``MlsError``: by ``add_members``, so by
  ``admit_device_to_chats`` as a ``Failed`` chat, and by
  ``build_linking_ticket``); a received proposal or commit that would add one is
  refused with the conversation unchanged; a Welcome whose tree holds one is
  refused. Every group the SDK creates, joins or loads carries the limit.
  With the clock check on claimed KeyPackages and Adds (``not_before <= now``)
  it also bounds how far ahead a KeyPackage may be valid.
* **Device ids are verified**: ``add_members`` checks each claimed DeviceId
  against the KeyPackage's leaf key; device->leaf maps are derived from the
  tree, so ``revoke_device`` finds peer-admitted devices too.
* **Sync** advances its cursor page by page (the spec re-fetched a full page
  with an unchanged cursor), persists the cursor with the processed state,
  and isolates failures per conversation and per envelope.
* **Durable delivery**: a decrypted message is stored in the conversation's
  inbox in the same checkpoint as the state that consumed it, and leaves it
  once acknowledged (when returned, or with ``ClientConfig.explicit_ack`` by
  ``ack_messages``): no crash or cancellation loses it
  (``sync_conversations``, ``pending_messages``).
* **Linking** hands over history-only state (no leaf keys, cannot send or
  follow the group; see ``HistoryReader``) and verifies that every member of
  the DeviceGroup it joins belongs to the account.
* **Cold start** reads only small header records; groups parse on first use.
* Errors are ``ping_core.errors`` classes with structured fields; secrets are
  never logged (only conversation ids, sequence numbers and error classes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable, NoReturn, Sequence

from ping_core.clock import Hlc
from ping_core.conversation import (
    CONVERSATIONS_PREFIX,
    MAX_LEAF_LIFETIME_S,
    Conversation,
    MemberInfo,
    PendingOp,
    StoreUndo,
    conversation_prefix,
    decode_history_snapshot,
    encode_history_snapshot,
    hlc_aad,
    hlc_from_aad,
    peek_mls,
)
from ping_core.device import (
    CatchupAppEventEntry,
    CatchupConversationEntry,
    CatchupSnapshot,
    DeviceInfo,
    LinkingTicket,
    LocalDevice,
)
from ping_core.errors import (
    DeviceRevoked,
    IdentityError,
    InvalidInput,
    MlsError,
    PingError,
    StorageError,
    TransportError,
    UnknownConversation,
)
from ping_core.identity import (
    LEGACY_CREDENTIAL_IDENTITY_LEN,
    DeviceBinding,
    DeviceRevocation,
    Identity,
    claimed_user_of_credential,
    credential_identity,
)
from ping_core.link import AccountGrant
from ping_core.membership import AccountVerifier
from ping_core.inbox import INBOX_DIR, inbox_name
from ping_core.invitation import INVITATIONS_PREFIX, MAX_INVITATIONS, Invitation, decode_invitation, encode_invitation
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import IncomingMessage, MessageEnvelope, MessageKind
from ping_core.meta import MAX_NAME_LEN, ConversationMeta
from ping_core.conversation_name import PING_CAPABILITIES, check_extensions, name_of, with_name
from ping_core.mls.crypto import CryptoProvider, default_provider
from ping_core.mls.group import (
    ApplicationMessage,
    Group,
    KeyPackageBundle,
    SenderCheck,
    SenderInfo,
    Signer,
    StagedCommit,
    generate_key_package,
    validate_key_package,
    welcome_key_package_refs,
)
from ping_core.mls.structs import (
    Add,
    ContentType,
    Credential,
    GroupContextExtensions,
    KeyPackage,
    Remove,
    SenderType,
    Update,
)
from ping_core.storage import BlobStore, MlsStateStore, Storage, StorageBackend
from ping_core.wallclock import wall_clock_s, wall_now_s
from ping_core.sync import News, SyncCursor, SyncProblem, SyncProblemKind, SyncResult
from ping_core.transport import MAX_WATCH_CONVERSATIONS, Transport, WatchResult
from ping_core.transport.base import MAX_FETCH_WAIT_MS

__all__ = [
    "MessagingClient",
    "ClientConfig",
    "AdmitChatOutcome",
    "AdmitChatStatus",
    "MemberInfo",
    "SYNC_PAGE",
    "DEVICE_GROUP_NAME",
    "COMMITTABLE_PROPOSALS",
    "PROPOSAL_COMMIT_DELAY_MS",
    "MAX_LEAF_LIFETIME_S",
]

log = logging.getLogger("ping_core.client")

#: Envelopes per ``fetch_since`` page during sync.
SYNC_PAGE = 256
#: The name the DeviceGroup is created with (as in the spec).
DEVICE_GROUP_NAME = "device-group"
_DEVICE_REVOKED = "device_revoked"
_MAX_EPOCHS_AHEAD = 1000  # an envelope further ahead of our epoch is not held  # the delivery service's error code for a revoked device
_REVOKED_KEY = "revoked"  # host storage, namespace "device": this device's own revocation (a tombstone)
_KP_PREFIX = "kp/"  # one-time KeyPackage bundles (deleted once used)
_KPL_PREFIX = "kpl/"  # last-resort KeyPackage bundles (kept)
_KPO_PREFIX = "kpo/"  # retired bundles with an outdated credential (usable once more, deleted once used)
_MAX_EXPORT_LEN = 255 * 32  # HKDF-Expand limit of the MLS exporter (SHA-256)
#: Proposals accepted from other members: the ones this SDK can commit. A ReInit (this SDK
#: cannot move a conversation to a new group), a PreSharedKey (external PSKs are not
#: distributed) or any other kind is refused when it arrives, so it can never stall sending.
COMMITTABLE_PROPOSALS = (Add, Remove, Update, GroupContextExtensions)
#: How long a member that is not the designated committer lets proposals of others stay pending
#: before its sync commits them (see :meth:`MessagingClient.commit_pending_proposals`).
PROPOSAL_COMMIT_DELAY_MS = 10_000
#: Attempts to commit pending proposals when other commits keep winning the epoch.
_PROPOSAL_COMMIT_ATTEMPTS = 3


# ---------------------------------------------------------------------------
# Configuration and results


@dataclass
class ClientConfig:
    """What :meth:`MessagingClient.init` needs (the spec's ``ClientConfig``).

    ``storage`` is the host's namespaced store (it keeps the LocalDevice
    record); ``storage_backend`` is where the MLS state store lives
    (``StorageBackend.Memory()`` by default; ``Sqlite(path, key)``,
    ``IndexedDb(name)``, ``Custom(blob_store)``, or a blob store itself).
    ``device_signing_secret_key`` (32-byte Ed25519 seed) fixes the device key
    on FIRST init only. ``crypto`` overrides the crypto provider (default:
    ``default_provider()``).

    ``identity`` (beyond the spec) is the account as this device holds it:
    the account key (:class:`~ping_core.identity.Identity`: this device can
    link and revoke devices) or only the account's
    :class:`~ping_core.identity.DeviceBinding` of this device (it can do
    everything else; the binding's device must be this device's key, so give
    ``device_signing_secret_key`` on first init). Either way every MLS leaf of
    this device carries the binding (see ``ping_core.membership``).

    ``explicit_ack`` (beyond the spec) chooses when a decrypted message leaves
    the durable inbox (see :meth:`MessagingClient.sync_conversations`):
    ``False`` (the spec's contract): when the call that returns it returns;
    ``True``: when the app calls :meth:`MessagingClient.ack_messages` — at
    least once across crashes.
    """

    identity: Identity | DeviceBinding
    device_label: str
    storage: Storage
    transport: Transport
    now_ms: int
    storage_backend: StorageBackend | BlobStore = field(default_factory=StorageBackend.Memory)
    device_signing_secret_key: bytes | None = field(default=None, repr=False)
    crypto: CryptoProvider | None = field(default=None, repr=False)
    explicit_ack: bool = False

    @classmethod
    def new_in_memory(
        cls, identity: Identity | DeviceBinding, device_label: str, storage: Storage, transport: Transport, now_ms: int
    ) -> ClientConfig:
        """A config with ``StorageBackend.Memory()`` (tests, ephemeral clients)."""
        return cls(identity, device_label, storage, transport, now_ms)


class AdmitChatStatus:
    """Per-chat result of :meth:`MessagingClient.admit_device_to_chats`:
    ``AdmitChatStatus.Admitted()``, ``.Skipped(reason)`` or ``.Failed(error, exception)``."""

    __slots__ = ()
    Admitted: ClassVar[type[_Admitted]]
    Skipped: ClassVar[type[_Skipped]]
    Failed: ClassVar[type[_Failed]]


@dataclass(frozen=True, slots=True)
class _Admitted(AdmitChatStatus):
    """The device is now an MLS leaf of the chat; the Commit and its Welcome were sent."""


@dataclass(frozen=True, slots=True)
class _Skipped(AdmitChatStatus):
    """Not admitted on purpose (``"device_group"``, ``"already_member"``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class _Failed(AdmitChatStatus):
    """MLS, storage or transport refused; ``exception`` is the structured error."""

    error: str
    exception: PingError | None = field(default=None, compare=False)


AdmitChatStatus.Admitted = _Admitted
AdmitChatStatus.Skipped = _Skipped
AdmitChatStatus.Failed = _Failed
for _variant, _name in ((_Admitted, "Admitted"), (_Skipped, "Skipped"), (_Failed, "Failed")):
    _variant.__name__ = _name
    _variant.__qualname__ = f"AdmitChatStatus.{_name}"


@dataclass(frozen=True, slots=True)
class AdmitChatOutcome:
    conversation_id: ConversationId
    status: AdmitChatStatus


def _pending_op(kind: str, conv: Conversation, group: Group, staged: StagedCommit, *, deliver_welcome: bool) -> PendingOp:
    """The PendingOp of our ``staged`` commit in ``group``: its Welcome goes to the devices it adds
    (device id = SHA-256 of the new leaf's key), and the devices whose leaves it removes are
    announced to the delivery service before each send."""
    welcome_to: tuple[DeviceId, ...] = ()
    if deliver_welcome and staged.welcome is not None:
        welcome_to = tuple(conv.device_of_key(m.signature_key) for m in staged.added_members())
    removals = []
    for leaf in staged.result.removed:
        key = group.signature_key(leaf)
        if key is not None:
            removals.append(conv.device_of_key(key))
    return PendingOp(kind, staged.base_epoch, staged.welcome, welcome_to, tuple(removals))


def _commit_pending(group: Group) -> StagedCommit:
    """A commit of the pending proposals. If the engine refuses them (one this device cannot
    commit, e.g. a KeyPackage that expired since it was proposed), an empty commit instead: the
    epoch change drops them all, as RFC 9420 lets a committer leave proposals out."""
    try:
        return group.commit()
    except MlsError as exc:
        log.warning("pending proposals cannot be committed (%s); committing without them", exc)
        return group.commit(include_pending=False)


def _designated_committer(group: Group) -> bool:
    """Whether we are the member that commits pending proposals at once: the lowest leaf index
    that no pending Remove proposal removes."""
    removed = {p.proposal.removed for p in group.pending_proposals if isinstance(p.proposal, Remove)}
    for member in group.members():
        if member.leaf_index not in removed:
            return member.leaf_index == group.own_leaf_index
    return False


def _remove_leaf(leaf: int, authenticated_data: bytes = b"") -> Callable[[Group], StagedCommit]:
    # A function, not a lambda in the caller's loop: the lambda would see the loop's last leaf.
    return lambda g: g.commit(remove=[leaf], authenticated_data=authenticated_data)


class _WaitForWelcome(InvalidInput):
    """A history-only conversation met a handshake message: it must wait for its own Welcome."""


def _check_now(now_ms: object) -> int:
    if type(now_ms) is not int or now_ms < 0:
        raise InvalidInput("now_ms must be a non-negative int")
    return now_ms


def _check_bytes(value: object, what: str) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if type(value) is not bytes:
        raise InvalidInput(f"{what} must be bytes")
    return value


def _check_conv_id(value: object) -> ConversationId:
    if not isinstance(value, ConversationId):
        raise InvalidInput("a conversation id must be a ConversationId")
    return value


def _check_name(name: object) -> str | None:
    if name is None:
        return None
    if type(name) is not str:
        raise InvalidInput("a conversation name must be a str or None")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("a conversation name must be valid Unicode") from None
    if len(raw) > MAX_NAME_LEN:
        raise InvalidInput(f"a conversation name is at most {MAX_NAME_LEN} bytes of UTF-8")
    return name


# ---------------------------------------------------------------------------
# The client


class MessagingClient:
    """The top-level handle: identity, this device, and its open conversations.

    Create with :meth:`init`. Every conversation has one ``asyncio.Lock``;
    no two operations on one conversation interleave. All errors are
    ``ping_core.errors`` exceptions.
    """

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
        """Internal: use :meth:`init`."""
        self._account = account  # None: this device holds only its binding
        self._binding = binding
        self._verifier = AccountVerifier(store)
        # Set when this device learns its own revocation: the client then wipes and locks out.
        self._revoked_by: DeviceRevocation | None = None
        self._locked = False
        self._device = device
        self._signer = signer
        self._crypto = crypto
        self._store = store
        self._storage = storage
        self._transport = transport
        self._explicit_ack = explicit_ack
        self._convs: dict[ConversationId, Conversation] = {}
        self._dg_id = ConversationId.device_group(binding.user_id)
        # Serialises creating conversations (create / join / import) so an id is installed once.
        self._create_lock = asyncio.Lock()
        # wait_for_news: conversations the server said we may not read, at that sync position
        # (left out of later watches until the position moves or a Welcome arrives).
        self._unreadable: dict[ConversationId, int] = {}

    def __repr__(self) -> str:
        return (
            f"MessagingClient(user_id={self.user_id().as_hex()}, device_id={self.device_id().as_hex()}, "
            f"conversations={len(self._convs)})"
        )

    # -- init ------------------------------------------------------------------

    @classmethod
    async def init(cls, cfg: ClientConfig) -> MessagingClient:
        """Open the MLS state store, load or create this device, rehydrate the conversations
        and make sure the DeviceGroup exists.

        The device record lives in ``cfg.storage`` (namespace ``device``, key
        ``local``, as in the spec) with the account it belongs to (key
        ``user_id``): re-initialising with another identity raises
        ``IdentityError``. A corrupt conversation record is logged with the
        conversation id and skipped (its records stay on disk untouched).
        No network call.

        Beyond the spec: only small header records are decoded here; each
        group is parsed on first use, so a cold start with many conversations
        is fast and ``list_conversations`` works at once.
        """
        if not isinstance(cfg, ClientConfig):
            raise InvalidInput("init needs a ClientConfig")
        if not isinstance(cfg.identity, (Identity, DeviceBinding)):
            raise InvalidInput("ClientConfig.identity must be an Identity or a DeviceBinding")
        now_ms = _check_now(cfg.now_ms)
        crypto = cfg.crypto or default_provider()
        revoked = await cfg.storage.get("device", _REVOKED_KEY)
        if revoked is not None:
            raise DeviceRevoked("this device was revoked by its account; its state was wiped")
        store = await MlsStateStore.open_backend(cfg.storage_backend)
        device = await cls._load_device(cfg, now_ms)
        if isinstance(cfg.identity, Identity):
            account: Identity | None = cfg.identity
            binding = cfg.identity.device_binding(device.device_id)
        else:
            account, binding = None, cfg.identity
            binding.verify()
            if binding.device_id != device.device_id:
                raise IdentityError("ClientConfig.identity binds another device than this device's key")
        signer = Signer(Credential.basic(credential_identity(binding)), device.signing_secret, device.signing_public_key)
        client = cls(
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
        client._rehydrate()
        await client._ensure_device_group(now_ms)
        return client

    @staticmethod
    async def _load_device(cfg: ClientConfig, now_ms: int) -> LocalDevice:
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
                device = LocalDevice.from_signing_secret(user_id, cfg.device_label, now_ms, _check_bytes(secret, "device_signing_secret_key"))
            else:
                device = LocalDevice.generate(user_id, cfg.device_label, now_ms)
            await cfg.storage.put("device", "local", device.encode())
        if stored_user is None:
            await cfg.storage.put("device", "user_id", user_id.value)
        return device

    def _rehydrate(self) -> None:
        # One pass over the keys gives the conversation ids and their inbox names: listing each
        # conversation's inbox by prefix would scan the whole working set once per conversation.
        inboxes: dict[str, list[str]] = {}
        n = len(CONVERSATIONS_PREFIX)
        for key in self._store.keys(CONVERSATIONS_PREFIX):
            slash = key.find("/", n)
            if slash > n:
                names = inboxes.setdefault(key[n:slash], [])
                if key.startswith(INBOX_DIR, slash + 1):
                    names.append(key[slash + 1 + len(INBOX_DIR) :])
        for hex_id, names in sorted(inboxes.items()):
            try:
                conv_id = ConversationId.from_hex(hex_id)
                conv = Conversation.open(self._store, self._crypto, conv_id, names, verifier=self._verifier)
                conv.adopt = self._adopt
            except PingError as exc:
                log.warning("skipping stored conversation %s: %s: %s", hex_id, type(exc).__name__, exc)
                continue
            self._convs[conv_id] = conv

    async def _ensure_device_group(self, now_ms: int) -> None:
        """Create the one-member DeviceGroup unless it exists (the spec's ``ensure_device_group``).

        A DeviceGroup whose records exist but could not be loaded is NOT
        recreated (a fresh one would fork the account's DeviceGroup)."""
        if self._dg_id in self._convs or self._store.keys(conversation_prefix(self._dg_id)):
            return
        await self._create(self._dg_id, DEVICE_GROUP_NAME, now_ms, is_device_group=True)

    # -- identity --------------------------------------------------------------

    def user_id(self) -> UserId:
        return self._binding.user_id

    def holds_account_key(self) -> bool:
        """Beyond the spec: whether this device holds the account key (it can link and revoke
        devices); otherwise it holds only the account's binding of itself."""
        return self._account is not None

    def device_binding(self) -> DeviceBinding:
        """Beyond the spec: the account's binding of this device (public; what registration
        presents and every MLS leaf of this device carries)."""
        return self._binding

    def _account_key(self, what: str) -> Identity:
        if self._account is None:
            raise IdentityError(f"{what} needs the account key, which this device does not hold")
        return self._account

    def export_identity(self) -> bytes:
        """SECRET: the account identity export (``Identity.import_`` reads it). Hosts move it to a
        newly linked device over the sealed linking channel; never log or store it in clear.
        ``IdentityError`` on a device that does not hold the account key."""
        return self._account_key("export_identity").export()

    def grant_device(self, device_id: DeviceId, *, with_account_key: bool = False) -> AccountGrant:
        """Beyond the spec: what a new device of this account receives when it is linked (seal it
        with ``ping_core.link.seal_grant``): the account's binding of ``device_id`` and, only
        with ``with_account_key``, the account key itself. Needs the account key."""
        if not isinstance(device_id, DeviceId):
            raise InvalidInput("device_id must be a DeviceId")
        account = self._account_key("grant_device")
        return AccountGrant(account.device_binding(device_id), account if with_account_key else None)

    def device_id(self) -> DeviceId:
        return self._device.device_id

    def device_info(self, now_ms: int) -> DeviceInfo:
        return self._device.info(_check_now(now_ms))

    @property
    def transport(self) -> Transport:
        return self._transport

    # -- KeyPackages -----------------------------------------------------------

    async def fresh_key_package(self, *, last_resort: bool = False) -> bytes:
        """A fresh KeyPackage (MLSMessage bytes) to publish.

        Its private keys are checkpointed BEFORE the bytes are returned, so a
        published KeyPackage always has its keys on disk. A one-time
        KeyPackage's keys are deleted when a Welcome uses it; with
        ``last_resort=True`` (beyond the spec) they are kept for reuse, for the
        directory's last-resort slot.
        """
        bundle = generate_key_package(self._crypto, self._signer, now=wall_now_s(), capabilities=PING_CAPABILITIES)
        key = (_KPL_PREFIX if last_resort else _KP_PREFIX) + bundle.ref.hex()
        undo = StoreUndo(self._store)
        undo.put(key, bundle.to_bytes())
        await self._checkpoint(undo)
        return bundle.message()

    async def retire_outdated_key_packages(self) -> int:
        """Beyond the spec: retire the stored KeyPackages whose leaf carries another credential than
        this client's (made before account bindings: peers refuse them). Returns how many; the
        host then publishes fresh ones with ``replace=True`` and a new last-resort KeyPackage
        (``ping_core.connect.top_up_key_packages`` does). A retired KeyPackage can still be joined
        with once (a peer may have claimed it just before) and is deleted then."""
        undo = StoreUndo(self._store)
        retired = 0
        for prefix in (_KP_PREFIX, _KPL_PREFIX):
            for key, raw in self._store.items(prefix):
                try:
                    bundle = KeyPackageBundle.from_bytes(self._crypto, raw)
                except PingError:
                    continue
                if bundle.key_package.leaf_node.credential != self._signer.credential:
                    undo.delete(key)
                    undo.put(_KPO_PREFIX + key[len(prefix) :], raw)
                    retired += 1
        if retired:
            await self._checkpoint(undo)
        return retired

    def _bundles_for(self, refs: Iterable[bytes]) -> dict[bytes, tuple[str, KeyPackageBundle]]:
        out: dict[bytes, tuple[str, KeyPackageBundle]] = {}
        for ref in refs:
            for prefix in (_KP_PREFIX, _KPL_PREFIX, _KPO_PREFIX):
                key = prefix + ref.hex()
                raw = self._store.get(key)
                if raw is not None:
                    try:
                        out[ref] = (key, KeyPackageBundle.from_bytes(self._crypto, raw))
                    except PingError:
                        log.warning("stored KeyPackage %s is corrupt; ignored", ref.hex()[:16])
                    break
        return out

    # -- conversations ---------------------------------------------------------

    # -- revocation of this device --------------------------------------------------

    async def raise_if_revoked(self, exc: PingError) -> None:
        """If ``exc`` is the delivery service refusing this device as revoked (403
        ``device_revoked``), settle it as :meth:`sync` does (the state is wiped on the account's
        signed statement only) and raise ``DeviceRevoked``; for any other error, return.

        For hosts that call the transport themselves (the Welcome inbox: ``ping_core.account``)."""
        if isinstance(exc, TransportError) and exc.code == _DEVICE_REVOKED:
            await self._revoked_at_server()

    async def _revoked_at_server(self) -> NoReturn:
        """The delivery service refused this device as revoked. The state is wiped only on the
        account's own signed statement (the server cannot wipe a device by saying so)."""
        try:
            statements = await self._transport.list_revocations(self.user_id())
        except (PingError, AttributeError):
            statements = []
        for rev in statements:
            if isinstance(rev, DeviceRevocation) and rev.device_id == self.device_id() and rev.user_id == self.user_id():
                try:
                    rev.verify()
                except IdentityError:
                    continue
                self._revoked_by = rev
                await self._lock_out()
        raise DeviceRevoked("the delivery service refuses this device as revoked (no statement of the account seen: state kept)")

    async def _lock_out(self) -> NoReturn:
        """This device saw its account's revocation of it: wipe every conversation, KeyPackage and
        the device key, leave a tombstone (``init`` raises ``DeviceRevoked`` from then on), raise."""
        rev = self._revoked_by
        assert rev is not None
        self._locked = True
        self._convs.clear()
        try:
            await self._storage.put("device", _REVOKED_KEY, rev.encode())
            self._store.delete_prefix("")
            await self._store.checkpoint()
            await self._storage.delete("device", "local")
        except PingError as exc:  # the tombstone or the wipe may be incomplete; init still refuses
            log.warning("revoked: wiping the local state failed: %s", type(exc).__name__)
        raise DeviceRevoked("this device was revoked by its account; its local state is wiped")

    def _conv(self, conv_id: object) -> Conversation:
        if self._locked:
            raise DeviceRevoked("this device was revoked by its account")
        conv = self._convs.get(_check_conv_id(conv_id))
        if conv is None:
            raise UnknownConversation(f"conversation {conv_id} is not open on this client")
        return conv

    def _group(self, conv: Conversation) -> Group | None:
        """The conversation's group (parsed on first use); a corrupt one quarantines the conversation."""
        try:
            group = conv.group
        except StorageError:
            log.warning("conversation %s has corrupt stored state; it is closed", conv.id.as_hex())
            self._convs.pop(conv.id, None)
            raise
        if group is not None:
            self._adopt(group)
        return group

    def _adopt(self, group: Group) -> None:
        """This client's policy on a loaded group: our current credential (a group stored before
        account bindings: our next path carries the binding), and handshake messages as MLS
        PublicMessages (the delivery service verifies commits and proposals, see
        ``ping_core.transport.handshake``; application messages stay PrivateMessages)."""
        if group.signer.credential != self._signer.credential and group.signer.public_key == self._signer.public_key:
            group.signer = self._signer
        if group.config.encrypt_handshake:
            group.config = dataclasses.replace(group.config, encrypt_handshake=False)

    def _live(self, conv: Conversation) -> Group:
        g = self._group(conv)
        if g is None:
            return conv.live_group()  # raises: history-only
        return g

    def _checkpoints_durable(self) -> bool:
        """False while the blob store buffers its commits (it says so with a true ``deferring``
        attribute, as pyodide_app's IndexedDB store does during a sync): a checkpoint then does
        not make anything durable, so no new commit may be sent."""
        return not getattr(self._store.blob_store, "deferring", False)

    async def _checkpoint(self, undo: StoreUndo) -> None:
        """Checkpoint the working set; if that fails, put back what ``undo`` recorded (so the
        working set again matches the disk) and raise the ``StorageError``."""
        try:
            await self._store.checkpoint()
        except StorageError:
            undo.revert()
            raise

    async def _persist(self, conv: Conversation, undo: StoreUndo | None = None) -> None:
        """Save the conversation's changes to the working set and checkpoint them. On a failed
        checkpoint the working set and the cached conversation are put back as they were."""
        undo = undo if undo is not None else StoreUndo(self._store)
        conv.save(undo)
        try:
            await self._checkpoint(undo)
        except StorageError:
            conv.reload()
            raise

    async def _create(
        self, conv_id: ConversationId, name: str | None, now_ms: int, *, is_device_group: bool = False
    ) -> Conversation:
        async with self._create_lock:
            if conv_id in self._convs:
                raise InvalidInput(f"conversation {conv_id.as_hex()} already exists")
            group = Group.create(
                self._crypto,
                self._signer,
                clock=wall_clock_s,
                group_id=conv_id.value,
                extensions=with_name((), name),
                capabilities=PING_CAPABILITIES,
                max_lifetime_s=MAX_LEAF_LIFETIME_S,
                leaf_check=self._verifier.check_leaf,
                extensions_check=check_extensions,
            )
            self._adopt(group)
            meta = ConversationMeta(conv_id, name, group.epoch, 1, is_device_group, now_ms)
            undo = StoreUndo(self._store)
            conv = Conversation.create(self._store, self._crypto, group, meta, undo, verifier=self._verifier)
            conv.adopt = self._adopt
            await self._checkpoint(undo)
            self._convs[conv_id] = conv
            return conv

    async def create_conversation(self, name: str | None, now_ms: int) -> ConversationId:
        """A new conversation with this device as its only member (epoch 0), durable on return.

        The delivery service learns of it with its first envelope."""
        name = _check_name(name)
        now_ms = _check_now(now_ms)
        conv = await self._create(ConversationId.new(now_ms), name, now_ms)
        return conv.id

    async def join_conversation(self, welcome_envelope: MessageEnvelope, now_ms: int) -> ConversationId:
        """Join from a Welcome envelope (from this device's Welcome inbox).

        The Welcome must use a KeyPackage of this device; the joined group's id
        must be the envelope's conversation id. The one-time KeyPackage's
        private keys are deleted in the same checkpoint that stores the group
        (a last-resort one is kept).

        Beyond the spec: a Welcome into a DeviceGroup is accepted only for this
        account's own DeviceGroup and only when every member belongs to this
        account (``IdentityError`` otherwise). A Welcome for a conversation
        held as history-only (imported from a catch-up snapshot) upgrades it:
        the live group takes over, the history stays for older epochs. A
        Welcome for a conversation we are an active member of is refused
        (``InvalidInput``); one after we were removed rejoins.
        """
        return await self._join(welcome_envelope, now_ms, relink=False)

    async def _join(self, welcome_envelope: MessageEnvelope, now_ms: int, *, relink: bool) -> ConversationId:
        now_ms = _check_now(now_ms)
        group, used = self._group_from_welcome(welcome_envelope)
        conv_id = ConversationId(group.group_id)
        if self._store.get(INVITATIONS_PREFIX + conv_id.as_hex()) is not None:
            used = [*used, INVITATIONS_PREFIX + conv_id.as_hex()]  # accepted: forgotten with the join
        async with self._create_lock:
            existing = self._convs.get(conv_id)
            if existing is None:
                meta = ConversationMeta(
                    conv_id, name_of(group.extensions), group.epoch, group.member_count, conv_id.is_device_group_id, now_ms
                )
                undo = StoreUndo(self._store)
                conv = Conversation.create(
                    self._store, self._crypto, group, meta, undo, joined_epoch=group.epoch, verifier=self._verifier
                )
                conv.adopt = self._adopt
                for key in used:
                    undo.delete(key)
                await self._checkpoint(undo)
                self._convs[conv_id] = conv
                return conv_id
        async with existing.lock:
            await self._rejoin(existing, group, used, relink=relink)
        return conv_id

    def _group_from_welcome(self, env: MessageEnvelope) -> tuple[Group, list[str]]:
        """The group a Welcome envelope joins with one of this device's KeyPackages, checked
        against the envelope (and, for a DeviceGroup, against this account), and the records of
        the one-time KeyPackages it used (to delete with the join). Nothing is stored."""
        if not isinstance(env, MessageEnvelope):
            raise InvalidInput("join_conversation needs a MessageEnvelope")
        if env.kind is not MessageKind.WELCOME:
            raise InvalidInput("expected a Welcome envelope")
        try:
            refs = welcome_key_package_refs(env.payload)
        except MlsError:
            raise InvalidInput("the envelope's payload is not an MLS Welcome") from None
        bundles = self._bundles_for(refs)
        if not bundles:
            raise MlsError("no KeyPackage of this device matches the Welcome")
        # No check of the received tree's lifetimes against the clock: a member who only chats
        # keeps its KeyPackage's 90-day lifetime in its leaf, and one such member would make the
        # conversation unjoinable (§7.3 only recommends the check). Members are authenticated by
        # their device bindings. Their spans are checked: none may exceed Ping's maximum (§7.2).
        # Every leaf of the tree must carry its account's binding (a leaf made before bindings
        # existed is tolerated as an unverified member); every later change is checked strictly.
        group = Group.join(
            self._crypto,
            env.payload,
            {ref: b for ref, (_, b) in bundles.items()},
            self._signer,
            clock=wall_clock_s,
            check_lifetimes=False,
            max_lifetime_s=MAX_LEAF_LIFETIME_S,
            leaf_check=self._verifier.check_joined_leaf,
            extensions_check=check_extensions,
        )
        group.leaf_check = self._verifier.check_leaf
        self._adopt(group)
        if len(group.group_id) != ConversationId.LENGTH:
            raise InvalidInput("the Welcome's group id is not a Ping conversation id")
        conv_id = ConversationId(group.group_id)
        if conv_id != env.conversation_id:
            raise InvalidInput("the envelope names another conversation than its Welcome")
        if conv_id.is_device_group_id:
            self._check_device_group(conv_id, group)
        return group, [key for key, _ in bundles.values() if not key.startswith(_KPL_PREFIX)]

    # -- invitations ---------------------------------------------------------------

    async def add_invitations(self, welcomes: Iterable[MessageEnvelope], now_ms: int) -> list[Invitation]:
        """Beyond the spec: keep Welcome envelopes (from the Welcome inbox) as pending invitations,
        durable on return; the new ones are returned. Joining is the user's decision:
        :meth:`accept_invitation` or :meth:`decline_invitation`.

        Each Welcome is checked as :meth:`join_conversation` checks it (one of this device's
        KeyPackages, every leaf of the tree bound to its account, ...) without joining; one that
        fails is logged and left out, as are a DeviceGroup's (linking tickets), duplicates and
        conversations this device is an active member of. At most ``MAX_INVITATIONS`` are kept."""
        now_ms = _check_now(now_ms)
        undo = StoreUndo(self._store)
        out: list[Invitation] = []
        count = len(self._store.keys(INVITATIONS_PREFIX))
        for env in welcomes:
            if not isinstance(env, MessageEnvelope) or env.kind is not MessageKind.WELCOME:
                raise InvalidInput("add_invitations needs Welcome envelopes")
            key = INVITATIONS_PREFIX + env.conversation_id.as_hex()
            existing = self._convs.get(env.conversation_id)
            if env.conversation_id.is_device_group_id or self._store.get(key) is not None:
                continue
            try:
                if existing is not None and (g := self._group(existing)) is not None and g.active:
                    continue
                group, _ = self._group_from_welcome(env)
            except PingError as exc:
                log.warning("a Welcome for %s is refused: %s: %s", env.conversation_id.as_hex(), type(exc).__name__, exc)
                continue
            if count >= MAX_INVITATIONS:
                log.warning("too many pending invitations; a Welcome for %s is left out", env.conversation_id.as_hex())
                continue
            inviter = next((m for m in group.members() if DeviceId.from_public_key(m.signature_key) == env.sender_device), None)
            inv = Invitation(
                env.conversation_id,
                self._verifier.user_of(inviter) if inviter is not None else None,
                env.sender_device,
                name_of(group.extensions),
                group.member_count,
                now_ms,
            )
            undo.put(key, encode_invitation(env, inv))
            count += 1
            out.append(inv)
        if out:
            await self._checkpoint(undo)
        return out

    def invitations(self) -> list[Invitation]:
        """Beyond the spec: the pending invitations, oldest first (no network)."""
        out = []
        for key, raw in self._store.items(INVITATIONS_PREFIX):
            try:
                out.append(decode_invitation(raw)[1])
            except PingError:
                log.warning("a stored invitation is corrupt; ignored")
        return sorted(out, key=lambda i: (i.received_ms, i.conversation_id.value))

    def _invitation(self, conv_id: object) -> tuple[str, MessageEnvelope]:
        key = INVITATIONS_PREFIX + _check_conv_id(conv_id).as_hex()
        raw = self._store.get(key)
        if raw is None:
            raise UnknownConversation(f"no pending invitation to {conv_id}")
        try:
            return key, decode_invitation(raw)[0]
        except InvalidInput:
            raise StorageError("the stored invitation is corrupt") from None

    async def accept_invitation(self, conv_id: ConversationId, now_ms: int) -> ConversationId:
        """Beyond the spec: join the conversation of a pending invitation (as
        :meth:`join_conversation`) and forget the invitation. ``UnknownConversation`` when there is
        none; a Welcome that no longer joins (its KeyPackage used meanwhile) raises and is forgotten."""
        key, env = self._invitation(conv_id)
        try:
            return await self.join_conversation(env, now_ms)  # deletes the invitation with the join
        except (MlsError, IdentityError, InvalidInput):
            undo = StoreUndo(self._store)
            undo.delete(key)
            await self._checkpoint(undo)
            raise

    async def decline_invitation(self, conv_id: ConversationId) -> None:
        """Beyond the spec: refuse a pending invitation: the delivery service ends the membership
        the Welcome opened (``Transport.leave_conversation``), the invitation and the one-time
        KeyPackage it would have used are deleted. ``UnknownConversation`` when there is none."""
        key, env = self._invitation(conv_id)
        await self._transport.leave_conversation(env.conversation_id)
        undo = StoreUndo(self._store)
        undo.delete(key)
        try:
            refs = welcome_key_package_refs(env.payload)
        except MlsError:
            refs = []
        for bundle_key, _ in self._bundles_for(refs).values():
            if not bundle_key.startswith(_KPL_PREFIX):
                undo.delete(bundle_key)
        await self._checkpoint(undo)

    async def _rejoin(self, conv: Conversation, group: Group, used: list[str], *, relink: bool) -> None:
        """Install a joined group in a conversation we hold (history-only, removed, or our own
        one-member DeviceGroup being replaced by the account's when linking). Caller holds the lock."""
        old = self._group(conv)
        replaceable = relink and conv.id == self._dg_id and old is not None and old.member_count == 1
        if old is not None and old.active and not replaceable:
            raise InvalidInput(f"already a member of conversation {conv.id.as_hex()}")
        undo = StoreUndo(self._store)
        conv.replace_group(group, undo)
        conv.set_joined_epoch(group.epoch)
        conv.refresh_from_group()
        conv.set_op(None)
        conv.prune_history(undo, group.epoch - group.config.max_past_epochs)
        for key in used:
            undo.delete(key)
        await self._persist(conv, undo)

    def _check_device_group(self, conv_id: ConversationId, group: Group) -> None:
        """Every member of our DeviceGroup must be a device of this account: proven by its
        binding, or (a leaf made before bindings, only ever added by our own devices) naming it."""
        if conv_id != self._dg_id:
            raise IdentityError("a Welcome into another account's DeviceGroup")
        for m in group.members():
            user = self._verifier.user_of(m)
            if user is None and len(m.identity) == LEGACY_CREDENTIAL_IDENTITY_LEN:
                user = claimed_user_of_credential(m.identity)
            if user != self.user_id():
                raise IdentityError("the DeviceGroup has a member that is not a device of this account")

    def list_conversations(self) -> list[ConversationMeta]:
        """The metas of every open conversation (no group is parsed)."""
        return [c.meta for c in self._convs.values()]

    def members(self, conv_id: ConversationId) -> list[MemberInfo]:
        """The roster, recovered from the group's leaves (device id from the leaf key, account from
        the account binding in the leaf's credential, verified: ``MemberInfo.user_id`` is ``None``
        for a leaf that proves no account). Empty for an unknown conversation (as in the spec)."""
        conv = self._convs.get(_check_conv_id(conv_id))
        if conv is None:
            return []
        try:
            self._group(conv)
        except StorageError:
            return []
        return conv.members()

    def sync_position(self, conv_id: ConversationId) -> int:
        """Beyond the spec: how far this client has consumed ``conv_id``'s log (its sync cursor).

        Every envelope with a server ``seq`` up to and including the returned
        value has been processed (applied, or refused and skipped for good);
        0 when none has. The next :meth:`sync_conversations` fetches from
        ``seq > position``, so it is where a long poll for new envelopes waits.
        (Envelopes above it may be processed too: a live push out of order
        waits there until the gap is filled.)

        Read from memory, without waiting for the conversation's lock: during
        a sync it may already count a page whose checkpoint is being written
        (if that checkpoint fails the position falls back). It is durable
        once the call that consumed the envelopes has returned and the blob
        store is not deferring its commits. Raises ``UnknownConversation``
        for a conversation not open on this client, ``InvalidInput`` for a
        value that is not a ``ConversationId``. Changes nothing.
        """
        return self._conv(conv_id).cursor.seq

    async def wait_for_news(self, timeout_ms: int) -> News:
        """Beyond the spec: wait until something is new for this device, without fetching it.

        One long poll (``Transport.watch``) over every open conversation, each
        at its :meth:`sync_position`, and the Welcome inbox. Returns at once
        when a conversation has envelopes beyond its position, one became
        unreadable (removed, revoked, history-only before its Welcome) or a
        Welcome waits; otherwise when one of those happens, or after
        ``timeout_ms`` (0..``MAX_FETCH_WAIT_MS``) with an empty (falsy)
        :class:`~ping_core.sync.News`. The caller then runs
        :meth:`sync_conversations` (and joins the Welcomes). An unreadable
        conversation is reported once: later calls leave it out until its
        position moves or a Welcome is reported (a Welcome may readmit it), so
        a loop over this call does not spin on it.

        Changes no state and takes no conversation lock (positions are read
        from memory, as :meth:`sync_position`), so it may run beside a sync.
        More than ``MAX_WATCH_CONVERSATIONS`` conversations are watched by
        that many per request, concurrently. ``TransportError`` when the
        request fails (the caller backs off); ``InvalidInput`` for a bad
        ``timeout_ms``.
        """
        if type(timeout_ms) is not int or not 0 <= timeout_ms <= MAX_FETCH_WAIT_MS:
            raise InvalidInput(f"timeout_ms must be 0..{MAX_FETCH_WAIT_MS}")
        self._unreadable = {c: at for c, at in self._unreadable.items() if c in self._convs}
        positions = {
            cid: conv.cursor.seq for cid, conv in self._convs.items() if self._unreadable.get(cid) != conv.cursor.seq
        }
        items = list(positions.items())
        chunks = [dict(items[i : i + MAX_WATCH_CONVERSATIONS]) for i in range(0, len(items), MAX_WATCH_CONVERSATIONS)]
        results = await self._watch_all(chunks or [{}], timeout_ms)
        heads = {c: h for r in results for c, h in r.heads.items()}
        forbidden = {c for r in results for c in r.forbidden}
        welcomes = any(r.welcomes for r in results)
        if welcomes:
            self._unreadable.clear()
        for cid in forbidden:
            self._unreadable[cid] = positions[cid]
        return News(tuple(c for c in positions if c in heads), tuple(c for c in positions if c in forbidden), welcomes)

    async def _watch_all(self, chunks: list[dict[ConversationId, int]], timeout_ms: int) -> list[WatchResult]:
        """One watch per chunk; with several, the answers of those done when the first one is (the others are cancelled)."""
        if len(chunks) == 1:
            return [await self._transport.watch(chunks[0], wait_ms=timeout_ms)]
        tasks = [asyncio.ensure_future(self._transport.watch(chunk, wait_ms=timeout_ms)) for chunk in chunks]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        return [task.result() for task in tasks if task in done]

    # -- sending -----------------------------------------------------------------

    async def send(self, conv_id: ConversationId, plaintext: bytes, now_ms: int) -> MessageEnvelope:
        """Encrypt ``plaintext`` and hand it to the transport; returns the envelope (with the
        server-assigned ``seq``).

        Beyond the spec (durability): the advanced sender ratchet (and the
        clock) is checkpointed BEFORE the transport sees the envelope, so no
        reload can ever re-use a generation that left this process; the spec
        checkpoints after the send, which loses the advance if the process
        dies in between. If the transport then fails, the generation is
        simply lost (harmless) and the ``TransportError`` propagates. The
        HLC is authenticated inside the message (MLS authenticated data).

        Beyond the spec (never stalled by proposals): MLS forbids sending
        application data while proposals are pending, so when other members'
        proposals are pending this device first commits them (the
        send-then-merge discipline of :meth:`add_members`; if another commit
        wins the epoch, it catches up on the log and tries again, up to 3
        times). Messages decrypted while catching up wait in the inbox: the
        next :meth:`sync_conversations` or :meth:`pending_messages` returns
        them.
        """
        plaintext = _check_bytes(plaintext, "plaintext")
        now_ms = _check_now(now_ms)
        conv = self._conv(conv_id)
        async with conv.lock:
            group = self._live(conv)
            if group.pending_proposals:
                await self._commit_proposals(conv, now_ms, [])
                group = self._live(conv)
            if self._leaf_is_stale(group):  # peers would refuse a message from an unverified leaf
                await self._refresh_own_leaf(conv, now_ms, [])
                group = self._live(conv)
            hlc = conv.hlc.tick(now_ms)
            payload = group.protect(plaintext, hlc_aad(hlc))
            conv.set_hlc(hlc)
            await self._persist(conv)
            env = MessageEnvelope(conv.id, group.epoch, MessageKind.APPLICATION, self.device_id(), 0, hlc, payload)
            seq = await self._transport.send(env)
            return env.with_seq(seq) if seq else env

    # -- pending proposals ----------------------------------------------------------

    async def commit_pending_proposals(self, now_ms: int) -> list[ConversationId]:
        """Beyond the spec: make the commits this device owes: rejoin the groups it no longer
        follows, migrate its leaf to its account binding, and commit other members' pending
        proposals where the policy says so; returns the conversations where a commit of ours
        took effect. ``sync_conversations`` does this at its end unless told not to.

        The policy, so that a group converges without every member racing to
        commit: the designated committer — the active member with the lowest
        leaf index that no pending proposal removes — commits at once; any
        other member commits once the proposals have been pending for
        :data:`PROPOSAL_COMMIT_DELAY_MS` by its clock (``now_ms``; counted from
        when this client first saw them, so a restart starts over). Commits
        follow the send-then-merge discipline; one that loses the epoch to
        another commit catches up and retries. A failing conversation is
        logged and skipped. Nothing is committed while the blob store buffers
        its commits (see :meth:`sync_conversations`).
        """
        now_ms = _check_now(now_ms)
        committed = []
        for conv in list(self._convs.values()):
            try:
                async with conv.lock:
                    if await self._owed_commits(conv, now_ms, []):
                        committed.append(conv.id)
            except PingError as exc:
                log.warning("conversation %s: pending proposals not committed: %s", conv.id.as_hex(), type(exc).__name__)
        return committed

    async def _owed_commits(self, conv: Conversation, now_ms: int, sink: list[IncomingMessage]) -> bool:
        """What this device owes a conversation once its log is read (caller holds its lock):
        rejoining it when it no longer follows the group, committing pending proposals by the
        policy, migrating its own leaf to its account binding. True when a commit of ours took
        effect. Nothing while the blob store buffers its commits."""
        if not self._checkpoints_durable():
            return False
        done = False
        if self._needs_heal(conv) and await self._heal(conv, now_ms):
            done = True
            await self._sync_one(conv, now_ms, sink)  # what came after our rejoin
        done = await self._commit_proposals_by_policy(conv, now_ms, sink) or done
        group = self._group(conv)
        if group is not None and group.active and self._leaf_is_stale(group):
            done = await self._refresh_own_leaf(conv, now_ms, sink) or done
        return done

    async def _commit_proposals_by_policy(self, conv: Conversation, now_ms: int, sink: list[IncomingMessage]) -> bool:
        group = self._group(conv)
        if group is None or not group.active or not group.pending_proposals or not self._checkpoints_durable():
            return False
        since = conv.proposals_pending_since(group.epoch, now_ms)
        if now_ms - since < PROPOSAL_COMMIT_DELAY_MS and not _designated_committer(group):
            return False
        return await self._commit_proposals(conv, now_ms, sink)

    async def _commit_proposals(self, conv: Conversation, now_ms: int, sink: list[IncomingMessage]) -> bool:
        """Commit the pending proposals (caller holds ``conv.lock``): True once a commit of ours
        took effect, False when another commit cleared them first (see :meth:`_commit_while`)."""
        return await self._commit_while(conv, now_ms, sink, "proposals", lambda g: bool(g.pending_proposals), _commit_pending)

    async def _commit_while(
        self,
        conv: Conversation,
        now_ms: int,
        sink: list[IncomingMessage],
        kind: str,
        needed: Callable[[Group], bool],
        build: Callable[[Group], StagedCommit],
    ) -> bool:
        """Commit ``build`` while ``needed`` holds (caller holds ``conv.lock``): True once a commit
        of ours took effect, False when another commit made it unneeded first. A commit that loses
        the epoch is dropped; the log is caught up (its messages go to the inbox and ``sink``) and
        it is tried again, at most ``_PROPOSAL_COMMIT_ATTEMPTS`` times."""
        for _ in range(_PROPOSAL_COMMIT_ATTEMPTS):
            if not needed(self._live(conv)):
                return False
            try:
                await self._commit_op(conv, kind, build, now_ms)
                return True
            except TransportError as exc:
                if exc.code != "epoch_advanced":
                    raise
            await self._sync_one(conv, now_ms, sink)
        if needed(self._live(conv)):
            raise TransportError(f"other commits kept winning the epoch; our {kind} commit did not get in", status=409, code="epoch_advanced")
        return False

    # -- account bindings in our own leaves ---------------------------------------------

    def _leaf_is_stale(self, group: Group) -> bool:
        """Whether our leaf in ``group`` still carries another credential than this client's (a
        leaf made before account bindings: peers show it unverified and refuse its messages)."""
        own = group.member(group.own_leaf_index) if group.active else None
        return own is not None and own.credential != self._signer.credential

    async def _refresh_own_leaf(self, conv: Conversation, now_ms: int, sink: list[IncomingMessage]) -> bool:
        """Migrate our leaf to this client's credential (the account binding) with a commit of our
        path (it commits pending proposals too). Caller holds ``conv.lock``."""
        return await self._commit_while(
            conv, now_ms, sink, "update", self._leaf_is_stale, lambda g: g.commit(force_path=True)
        )

    # -- commits (stage, checkpoint, send, merge) ---------------------------------

    async def add_members(
        self, conv_id: ConversationId, entries: Sequence[tuple[DeviceId, bytes]], now_ms: int, *, for_user: UserId | None = None
    ) -> None:
        """Add devices, each ``(DeviceId, KeyPackage MLSMessage bytes)``: one Commit, then the
        Welcome to the new devices (primed as Welcome recipients).

        Order of effects: stage (local epoch unchanged) -> checkpoint the
        staged commit -> send -> merge -> checkpoint -> Welcome (best effort:
        a failed Welcome raises its ``TransportError`` after the merge is
        durable; the commit is not rolled back). A definite rejection drops
        the staged commit and raises. An ambiguous failure is settled against
        the log (see the module docstring) — it never merges a commit the
        server did not apply.

        Beyond the spec: each DeviceId must be SHA-256 of the KeyPackage's
        leaf signature key (``InvalidInput`` otherwise); the spec took the
        host's word for it. Each KeyPackage's leaf must carry a valid binding
        to an account whose device is not known revoked, and, with
        ``for_user``, that account must be ``for_user`` (``IdentityError``):
        a delivery service that hands out another account's KeyPackages for a
        user cannot smuggle that account in under the user's name.
        """
        now_ms = _check_now(now_ms)
        kps = self._check_entries(entries, for_user)
        conv = self._conv(conv_id)
        async with conv.lock:
            await self._commit_op(conv, "add", lambda g: g.commit(add=kps), now_ms)

    def _check_entries(self, entries: object, for_user: UserId | None = None) -> list[KeyPackage]:
        if for_user is not None and not isinstance(for_user, UserId):
            raise InvalidInput("for_user must be a UserId")
        if not isinstance(entries, (list, tuple)) or not entries:
            raise InvalidInput("entries must be a non-empty list of (DeviceId, KeyPackage bytes)")
        kps, devices = [], []
        for entry in entries:
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                raise InvalidInput("each entry is (DeviceId, KeyPackage bytes)")
            dev, raw = entry
            if not isinstance(dev, DeviceId):
                raise InvalidInput("each entry's device must be a DeviceId")
            kp = self._verified_key_package(raw, dev, for_user)
            if dev in devices:
                raise InvalidInput("a device appears twice")
            kps.append(kp)
            devices.append(dev)
        return kps

    def _verified_key_package(self, raw: object, device: DeviceId, user: UserId | None) -> KeyPackage:
        """A claimed KeyPackage, validated (RFC 9420 §10.1), of ``device`` (``InvalidInput``), its
        leaf bound to an account (``IdentityError``), that account ``user`` when given."""
        kp = validate_key_package(
            self._crypto,
            _check_bytes(raw, "KeyPackage"),
            now=wall_now_s(),
            max_lifetime_s=MAX_LEAF_LIFETIME_S,
            leaf_check=self._verifier.check_leaf,
        )
        if DeviceId.from_public_key(kp.leaf_node.signature_key) != device:
            raise InvalidInput("the DeviceId is not the KeyPackage's device (SHA-256 of its leaf signature key)")
        if user is not None and self._verifier.user_of(kp.leaf_node) != user:
            raise IdentityError("the KeyPackage belongs to another account than the one asked for")
        return kp

    async def set_conversation_name(self, conv_id: ConversationId, name: str | None, now_ms: int) -> None:
        """Set (or, with ``None``, clear) the conversation name carried in the GroupContext, by a
        GroupContextExtensions Commit with the same send-then-merge discipline (no Welcome)."""
        name = _check_name(name)
        now_ms = _check_now(now_ms)
        conv = self._conv(conv_id)

        def build(g: Group) -> StagedCommit:
            return g.commit(extensions=with_name(g.extensions, name))

        async with conv.lock:
            await self._commit_op(conv, "name", build, now_ms)

    async def remove_members(self, conv_id: ConversationId, leaf_indexes: Sequence[int], now_ms: int) -> None:
        """Remove the members at ``leaf_indexes`` (send-then-merge as :meth:`add_members`).

        Beyond the spec: the removed devices are announced to the delivery
        service (``set_next_commit_removals``) before each send of the Commit,
        so it ends their membership exactly when it accepts the Commit."""
        now_ms = _check_now(now_ms)
        if not isinstance(leaf_indexes, (list, tuple)) or not leaf_indexes:
            raise InvalidInput("leaf_indexes must be a non-empty list of ints")
        leaves = []
        for leaf in leaf_indexes:
            if type(leaf) is not int or leaf < 0:
                raise InvalidInput("leaf indexes are non-negative ints")
            if leaf in leaves:
                raise InvalidInput("a leaf appears twice")
            leaves.append(leaf)
        conv = self._conv(conv_id)
        async with conv.lock:
            group = self._live(conv)
            for leaf in leaves:
                if group.member(leaf) is None:
                    raise InvalidInput(f"leaf {leaf} is not a member")
                if leaf == group.own_leaf_index:
                    raise InvalidInput("a device cannot remove its own leaf with a commit")
            await self._commit_op(conv, "remove", lambda g: g.commit(remove=leaves), now_ms)

    async def _commit_op(
        self,
        conv: Conversation,
        kind: str,
        build: Callable[[Group], StagedCommit],
        now_ms: int,
        *,
        deliver_welcome: bool = True,
    ) -> tuple[StagedCommit, MessageEnvelope]:
        """Stage, checkpoint, send, merge (caller holds ``conv.lock``). Returns the staged commit
        (for its Welcome) and the Commit envelope.

        Who gets the Welcome and whose membership ends are read off the staged
        commit (see :func:`_pending_op`), so the proposals of others it
        includes are served as well as ours. ``deliver_welcome=False``: the
        Welcome travels another way (a linking ticket)."""
        if not self._checkpoints_durable():
            raise StorageError("checkpoints are buffered (not durable yet): a commit is never sent before its staged state is durable")
        await self._settle(conv)  # an interrupted commit of ours goes first (raises if it cannot be settled now)
        group = self._live(conv)
        if group.pending_commit is not None:  # pragma: no cover - _settle resolved it or raised
            raise MlsError("an earlier commit of ours is still unresolved; sync and retry")
        staged = build(group)
        conv.set_op(_pending_op(kind, conv, group, staged, deliver_welcome=deliver_welcome))
        conv.set_hlc(conv.hlc.tick(now_ms))
        await self._persist(conv)
        env = self._commit_envelope(conv, staged)
        await self._deliver_commit(conv, staged, may_resend=True, raise_welcome=True)
        return staged, env

    def _commit_envelope(self, conv: Conversation, staged: StagedCommit) -> MessageEnvelope:
        assert staged.message is not None
        return MessageEnvelope(conv.id, staged.base_epoch, MessageKind.COMMIT, self.device_id(), 0, conv.hlc, staged.message)

    async def _deliver_commit(self, conv: Conversation, staged: StagedCommit, *, may_resend: bool, raise_welcome: bool) -> None:
        """Send our staged commit and merge it, or settle the failure (see the module docstring)."""
        op = conv.op
        try:
            if op is not None and op.removals:
                await self._transport.set_next_commit_removals(conv.id, list(op.removals))
            # The new epoch's GroupInfo: the service checks the commit against it and keeps it
            # for members that must rejoin (healing by external commit).
            await self._transport.set_next_commit_group_info(conv.id, self._live(conv).group_info_after(staged))
            await self._transport.send(self._commit_envelope(conv, staged))
        except TransportError as exc:
            if exc.is_definite_rejection and exc.code != "epoch_advanced":
                await self._drop_staged(conv)
                raise
            # epoch_advanced (maybe our own earlier attempt) or ambiguous: the log decides.
            try:
                found = await self._find_commit(conv, staged)
            except TransportError:
                if exc.is_definite_rejection:
                    await self._drop_staged(conv)
                raise exc from None  # ambiguous and unreadable: stays staged (durable) until settled
            if found == "ours":
                await self._merge_own(conv, staged, raise_welcome=raise_welcome)
                return
            if found == "theirs":
                await self._drop_staged(conv)
                raise TransportError(
                    f"another commit took epoch {staged.base_epoch} first; sync and retry", status=409, code="epoch_advanced"
                ) from exc
            if exc.is_definite_rejection or not may_resend:
                if exc.is_definite_rejection:
                    await self._drop_staged(conv)
                raise
            log.info("conversation %s: commit for epoch %d not in the log; re-sending it", conv.id.as_hex(), staged.base_epoch)
            await self._deliver_commit(conv, staged, may_resend=False, raise_welcome=raise_welcome)
            return
        await self._merge_own(conv, staged, raise_welcome=raise_welcome)

    async def _find_commit(self, conv: Conversation, staged: StagedCommit) -> str | None:
        """Read the log after our cursor for the Commit of ``staged.base_epoch``: ``"ours"``,
        ``"theirs"`` or ``None`` (not there). Consumes nothing."""
        cursor = conv.cursor
        while True:
            batch = await self._transport.fetch_since(conv.id, cursor, SYNC_PAGE)
            for env in batch:
                if env.kind is MessageKind.COMMIT and env.epoch == staged.base_epoch:
                    return "ours" if env.payload == staged.message else "theirs"
                cursor = cursor.advance(env.seq)
            if len(batch) < SYNC_PAGE or not batch:
                return None

    async def _merge_own(self, conv: Conversation, staged: StagedCommit, *, raise_welcome: bool) -> None:
        group = self._live(conv)
        group.merge_staged_commit(staged)
        self._after_commit(conv, group, own=True)
        await self._persist(conv)
        await self._finish_op(conv, raise_errors=raise_welcome)

    async def _drop_staged(self, conv: Conversation) -> None:
        group = self._live(conv)
        group.discard_staged_commit()
        conv.set_op(None)
        try:
            await self._persist(conv)
        except StorageError:
            log.warning("conversation %s: could not persist dropping a refused commit; it will be settled later", conv.id.as_hex())

    def _after_commit(self, conv: Conversation, group: Group, *, own: bool) -> None:
        """Bookkeeping after a merged commit (ours or another member's)."""
        conv.desynced = False  # following the group again
        op = conv.op
        if op is not None and not op.merged:
            # Our commit merged: only its Welcome may be left to deliver (kept durable until it went).
            keep = own and op.welcome is not None and bool(op.welcome_to)
            conv.set_op(PendingOp(op.kind, op.base_epoch, op.welcome, op.welcome_to, op.removals, True) if keep else None)
        if group.active:
            conv.refresh_from_group()
        else:
            conv.set_meta(ConversationMeta(conv.id, conv.meta.name, group.epoch, 0, conv.meta.is_device_group, conv.meta.created_at_ms))
        if conv.history is not None:
            # Imported history lives as long as the live group keeps its own past epochs.
            conv.request_prune(group.epoch - group.config.max_past_epochs)

    async def _finish_op(self, conv: Conversation, *, raise_errors: bool) -> None:
        """Deliver the Welcome of our merged commit, then forget the op."""
        op = conv.op
        if op is None or not op.merged:
            return
        error: TransportError | None = None
        if op.welcome is not None and op.welcome_to:
            env = MessageEnvelope(conv.id, op.base_epoch + 1, MessageKind.WELCOME, self.device_id(), 0, conv.hlc, op.welcome)
            try:
                await self._transport.set_next_welcome_recipients(conv.id, list(op.welcome_to))
                await self._transport.send(env)
            except TransportError as exc:
                log.warning("conversation %s: Welcome delivery failed (%s); the commit stays", conv.id.as_hex(), exc.code)
                error = exc
        conv.set_op(None)
        await self._persist(conv)
        if error is not None and raise_errors:
            raise error

    async def _settle(self, conv: Conversation) -> None:
        """Finish an interrupted commit of ours (crash, ambiguous failure): merge it if the log has
        it, drop it if another commit took its epoch, else re-send it. Caller holds the lock."""
        group = self._group(conv)
        if group is None:
            return
        staged = group.pending_commit
        if staged is None:
            op = conv.op
            if op is not None:
                if op.merged:
                    await self._finish_op(conv, raise_errors=False)
                else:
                    conv.set_op(None)
                    await self._persist(conv)
            return
        if conv.op is None or conv.op.base_epoch != staged.base_epoch:
            conv.set_op(_pending_op("resume", conv, group, staged, deliver_welcome=True))
        found = await self._find_commit(conv, staged)
        if found == "ours":
            await self._merge_own(conv, staged, raise_welcome=False)
        elif found == "theirs":
            await self._drop_staged(conv)
        else:
            await self._deliver_commit(conv, staged, may_resend=False, raise_welcome=False)

    async def admit_device_to_chats(
        self, new_device_id: DeviceId, kps_per_chat: Sequence[tuple[ConversationId, bytes]], now_ms: int
    ) -> list[AdmitChatOutcome]:
        """Add ``new_device_id`` to each chat with its KeyPackage (one Commit + one Welcome per
        chat, Welcome recipients primed). Per-chat failures are captured, never raised.

        The DeviceGroup is skipped (``Skipped("device_group")``: it was handled by
        the linking ticket); beyond the spec, a chat the device is already in is
        ``Skipped("already_member")`` and ``Failed`` carries the structured
        exception as well as its message.
        """
        if not isinstance(new_device_id, DeviceId):
            raise InvalidInput("new_device_id must be a DeviceId")
        now_ms = _check_now(now_ms)
        if not isinstance(kps_per_chat, (list, tuple)):
            raise InvalidInput("kps_per_chat must be a list of (ConversationId, KeyPackage bytes)")
        outcomes = []
        for item in kps_per_chat:
            if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], ConversationId):
                raise InvalidInput("each item is (ConversationId, KeyPackage bytes)")
            conv_id, kp = item
            conv = self._convs.get(conv_id)
            status: AdmitChatStatus
            if conv is not None and conv.meta.is_device_group:
                status = AdmitChatStatus.Skipped("device_group")
            elif conv is not None and new_device_id in conv.leaves:
                status = AdmitChatStatus.Skipped("already_member")
            else:
                try:
                    await self.add_members(conv_id, [(new_device_id, kp)], now_ms, for_user=self.user_id())
                    status = AdmitChatStatus.Admitted()
                except PingError as exc:
                    status = AdmitChatStatus.Failed(f"{type(exc).__name__}: {exc}", exc)
            outcomes.append(AdmitChatOutcome(conv_id, status))
        return outcomes

    # -- receiving -----------------------------------------------------------------

    async def process_envelope(self, env: MessageEnvelope, now_ms: int) -> IncomingMessage | None:
        """Process one envelope of an open conversation: an ``IncomingMessage`` for application
        traffic, ``None`` for handshake messages (merged) and for envelopes with nothing to
        deliver (our own application messages echoed back, duplicates, messages from before we
        joined). Welcome envelopes go to :meth:`join_conversation` (``InvalidInput`` here).

        Beyond the spec: the envelope must be consistent with its MLS message
        (conversation, epoch, kind) and ``sender_device`` must be the MLS
        sender's device, a member of the conversation; application messages
        must carry the envelope's HLC authenticated. Our own commit echoed
        back merges our pending commit (and delivers its Welcome). A failure
        raises and leaves the conversation exactly as it was, in memory and
        in storage; success is durable (with the cursor) before it returns.
        A proposal is only stored: the next :meth:`send`, sync or
        :meth:`commit_pending_proposals` commits it. With
        ``ClientConfig.explicit_ack`` the message also waits in the inbox
        until :meth:`ack_messages` (see :meth:`sync_conversations`).
        """
        if not isinstance(env, MessageEnvelope):
            raise InvalidInput("process_envelope needs a MessageEnvelope")
        now_ms = _check_now(now_ms)
        if env.kind is MessageKind.WELCOME:
            raise InvalidInput("a Welcome envelope goes to join_conversation")
        conv = self._conv(env.conversation_id)
        async with conv.lock:
            undo = StoreUndo(self._store)
            # Without explicit acks this call's return acknowledges the message, in the same
            # checkpoint that would store it: so it is not stored at all.
            msg = self._process_one(conv, env, now_ms, undo, keep=self._explicit_ack)
            if env.kind is MessageKind.COMMIT:
                self._release_held(conv, now_ms, undo, keep=True)  # returned by the next sync
            await self._persist(conv, undo)
            if self._revoked_by is not None:
                await self._lock_out()
            if conv.op is not None and conv.op.merged:
                await self._finish_op(conv, raise_errors=False)
            if msg is not None and self._explicit_ack:
                conv.inbox.hand_out(inbox_name(msg))  # only now: if we raised, the next sync returns it
            return msg

    def _process_one(
        self, conv: Conversation, env: MessageEnvelope, now_ms: int, undo: StoreUndo, *, in_order: bool = False, keep: bool = True
    ) -> IncomingMessage | None:
        """Process ``env`` and write the result to the working set (synchronous: no other task
        sees a half-applied envelope). On failure the cached conversation is restored.

        ``in_order``: the envelope comes from ``fetch_since`` (the log is
        authoritative, the cursor moves to it); otherwise (a live push) the
        cursor only moves over contiguous positions, so a gap is still fetched
        by the next sync. ``keep``: store the message in the inbox with that state."""
        seq = env.seq
        if seq and (seq <= conv.cursor.seq or seq in conv.seen_above_cursor):
            return None  # already consumed
        if env.sender_device == self.device_id() and env.kind is MessageKind.APPLICATION:
            msg = None  # our own message: its keys are gone, nothing to deliver
        else:
            peek = peek_mls(env.payload)
            if peek.group_id != conv.id.value:
                raise InvalidInput("the payload is for another conversation than the envelope")
            if peek.epoch != env.epoch or peek.kind is not env.kind:
                raise InvalidInput("the envelope's epoch or kind disagrees with its MLS message")
            group = self._group(conv)
            if group is not None and group.active and env.epoch > group.epoch and seq:
                self._hold(conv, group, env, undo)
                msg = None
            else:
                try:
                    msg = self._process_mls(conv, group, env, now_ms, undo)
                except PingError:
                    raise  # refused before anything changed (see _process_mls)
                except BaseException:
                    conv.reload()  # not a refusal: do not trust the cached state
                    raise
        if seq:
            if in_order or seq == conv.cursor.seq + 1:
                cursor = conv.cursor.advance(seq)
                while cursor.seq + 1 in conv.seen_above_cursor:
                    cursor = cursor.advance(cursor.seq + 1)
                conv.set_cursor(cursor)
            else:
                conv.seen_above_cursor.add(seq)  # out of order (a live push): the cursor waits for the gap
                undo.seen.append((conv.seen_above_cursor, seq))
        if msg is not None and keep:
            conv.keep_incoming(msg, undo)  # in the inbox, durable with the state that consumed it
        conv.save(undo)
        return msg

    def _hold(self, conv: Conversation, group: Group, env: MessageEnvelope, undo: StoreUndo) -> None:
        """Keep an envelope of a later epoch than ours until the commit that opens it (its log
        position is consumed). A later epoch seen without its commit means this device does not
        follow the group any more: reported as DESYNCED (once per epoch of ours)."""
        if env.epoch > group.epoch + _MAX_EPOCHS_AHEAD or not conv.hold(env, undo):
            self._problem(conv, SyncProblemKind.UNREADABLE, env, "of an epoch too far ahead, or too many held")
            return
        self._problem(conv, SyncProblemKind.HELD, env, f"epoch {env.epoch}, ours is {group.epoch}")
        if env.kind is MessageKind.COMMIT and env.epoch > group.epoch:
            self._problem(conv, SyncProblemKind.DESYNCED, env, f"a commit of epoch {env.epoch} came before one of {group.epoch}")

    def _release_held(self, conv: Conversation, now_ms: int, undo: StoreUndo, keep: bool) -> list[IncomingMessage]:
        """Process the held envelopes our epoch has reached (after a commit), oldest first; each is
        processed or reported UNREADABLE, and its record goes in the same checkpoint."""
        out: list[IncomingMessage] = []
        while True:
            group = self._group(conv)
            if group is None or not group.active:
                return out
            ready = conv.held(group.epoch)
            if not ready:
                return out
            progressed = False
            for key, env in ready:
                undo.delete(key)
                if env is None or env.conversation_id != conv.id:
                    continue
                if env.epoch < group.epoch and env.kind is not MessageKind.APPLICATION:
                    self._problem(conv, SyncProblemKind.UNREADABLE, env, "its epoch ended before it could be processed")
                    continue
                try:
                    msg = self._process_mls(conv, group, env, now_ms, undo)
                except PingError as exc:
                    self._problem(conv, SyncProblemKind.UNREADABLE, env, type(exc).__name__)
                    continue
                if msg is not None:
                    if keep:
                        conv.keep_incoming(msg, undo)
                    out.append(msg)
                progressed = progressed or self._group(conv) is not group or group.epoch != env.epoch
                if group.epoch != env.epoch:
                    break  # a held commit moved us on: re-read what is ready now
            conv.save(undo)
            if not progressed:
                return out

    @staticmethod
    def _problem(conv: Conversation, kind: SyncProblemKind, env: MessageEnvelope | None, detail: str) -> None:
        if kind is SyncProblemKind.DESYNCED:
            conv.desynced = True  # until a commit is processed or we rejoin
        conv.problems.append(
            SyncProblem(conv.id, kind, env.seq if env is not None else None, env.sender_device if env is not None else None, detail)
        )

    def _process_mls(
        self, conv: Conversation, group: Group | None, env: MessageEnvelope, now_ms: int, undo: StoreUndo
    ) -> IncomingMessage | None:
        """Process ``env``'s MLS message. Every check that can refuse it runs in the engine's
        ``check_sender`` hook, before the group changes: a ``PingError`` means nothing changed."""
        history = conv.history
        if group is None:
            if env.kind is not MessageKind.APPLICATION:
                raise _WaitForWelcome(
                    f"conversation {conv.id.as_hex()} is history-only: a handshake message waits for this device's Welcome"
                )
            return self._decrypt_history(conv, env, now_ms)
        if env.epoch < conv.joined_epoch:
            if env.kind is MessageKind.APPLICATION and history is not None and env.epoch in history.epochs:
                return self._decrypt_history(conv, env, now_ms)
            return None  # from before we joined: not for us
        if env.kind is MessageKind.COMMIT and env.epoch < group.epoch:
            return None  # a commit we are already past (exactly one commit per epoch)
        facts: list[tuple[UserId, Hlc]] = []
        revocations: list[DeviceRevocation] = []
        out = group.process_message(env.payload, merge=False, check_sender=self._sender_check(conv, env, facts, revocations))
        if isinstance(out, StagedCommit):
            for rev in revocations:
                self._learn_revocation(rev, undo)
            for leaf_index in out.result.removed:
                m = group.member(leaf_index)
                user = self._verifier.user_of(m) if m is not None else None
                if m is not None and user is not None:
                    conv.departed[conv.device_of_key(m.signature_key)] = user
            group.merge_staged_commit(out)
            self._after_commit(conv, group, own=out.own)
            return None
        if isinstance(out, ApplicationMessage):
            return self._delivered(conv, env, facts[-1], out, now_ms)
        return None  # a proposal (stored) or our own commit, already merged

    def _sender_check(
        self,
        conv: Conversation,
        env: MessageEnvelope,
        facts: list[tuple[UserId, Hlc]],
        revocations: list[DeviceRevocation] | None = None,
    ) -> SenderCheck:
        """The SDK's sender rules as the engine's ``check_sender`` hook for ``env``: the MLS
        sender must be ``env.sender_device``; proposals must come from members and be of a kind
        this SDK can commit (see :data:`COMMITTABLE_PROPOSALS`); an application message's
        authenticated HLC must be the envelope's and its sender's account must be verified (the
        sender's account and HLC are appended to ``facts``). A commit's authenticated data may
        carry an account's revocation of a device (appended to ``revocations`` when it verifies)."""

        def check(info: SenderInfo) -> None:
            if conv.device_of_key(info.signature_key) != env.sender_device:
                raise InvalidInput("the envelope's sender_device is not the MLS sender of its message")
            if info.content_type == ContentType.PROPOSAL and not info.own:
                if info.sender.sender_type != SenderType.MEMBER:
                    raise InvalidInput("only member proposals are accepted")
                if not isinstance(info.proposal, COMMITTABLE_PROPOSALS):
                    raise InvalidInput(f"a {type(info.proposal).__name__} proposal is not accepted (this SDK cannot commit it)")
            elif info.content_type == ContentType.APPLICATION:
                hlc = hlc_from_aad(info.authenticated_data)
                if hlc is None:
                    hlc = env.hlc  # a sender that does not authenticate its clock
                elif hlc != env.hlc:
                    raise InvalidInput("the envelope's HLC is not the one authenticated in the message")
                facts.append((self._user_of(conv, env.sender_device), hlc))
            elif info.content_type == ContentType.COMMIT and revocations is not None:
                rev = self._verifier.parse(info.authenticated_data)
                if rev is not None:
                    revocations.append(rev)

        return check

    def _learn_revocation(self, rev: DeviceRevocation, undo: StoreUndo) -> None:
        """Remember an account's verified revocation of a device (durable with the commit that
        carried it); when it is this device's own, the client locks out after the checkpoint."""
        self._verifier.remember(rev, undo.put)
        if rev.device_id == self.device_id() and rev.user_id == self.user_id():
            self._revoked_by = rev

    def _user_of(self, conv: Conversation, device: DeviceId) -> UserId:
        """The verified account of a sending device (``IdentityError`` when its leaf proves none)."""
        group = conv.group
        leaf = conv.leaves.get(device)
        if group is not None and leaf is not None:
            m = group.member(leaf)
            if m is not None:
                user = self._verifier.user_of(m)
                if user is None:
                    raise IdentityError("the sender's leaf carries no valid binding to an account; its message is refused")
                return user
        history = conv.history
        if history is not None:
            for info in history.roster:
                if info.device_id == device and info.user_id is not None:
                    return info.user_id
        user = conv.departed.get(device)
        if user is None:
            raise MlsError("the sender left the conversation and its account is not known any more")
        return user

    @staticmethod
    def _delivered(
        conv: Conversation, env: MessageEnvelope, facts: tuple[UserId, Hlc], app: ApplicationMessage, now_ms: int
    ) -> IncomingMessage:
        """The IncomingMessage of an accepted application message; this device's clock moves past the sender's."""
        user, hlc = facts
        conv.set_hlc(conv.hlc.receive(hlc, now_ms))
        return IncomingMessage(conv.id, user, env.sender_device, app.data, hlc, env.seq, app.epoch)

    def _decrypt_history(self, conv: Conversation, env: MessageEnvelope, now_ms: int) -> IncomingMessage | None:
        history = conv.history
        if history is None or env.epoch not in history.epochs:
            if conv.group is None and (history is None or env.epoch > max(history.epochs)):
                # A later epoch: this device's own Welcome will bring its keys. Do not consume it.
                raise _WaitForWelcome(f"conversation {conv.id.as_hex()}: epoch {env.epoch} waits for this device's Welcome")
            return None  # an epoch before everything this device holds keys for
        facts: list[tuple[UserId, Hlc]] = []
        app = history.decrypt(env.payload, self._sender_check(conv, env, facts))
        return self._delivered(conv, env, facts[-1], app, now_ms)

    async def sync_conversations(self, now_ms: int, *, commit_proposals: bool = True) -> list[IncomingMessage]:
        """Catch-up: fetch and process every open conversation's log since its cursor; returns the
        inbox's undelivered messages, then the new application messages in apply order.

        The messages of :meth:`sync` (which also reports what went wrong)."""
        return list((await self.sync(now_ms, commit_proposals=commit_proposals)).messages)

    async def sync(self, now_ms: int, *, commit_proposals: bool = True) -> SyncResult:
        """Beyond the spec: :meth:`sync_conversations` with its report. ``SyncResult.messages``
        are what ``sync_conversations`` returns; ``SyncResult.problems`` what following the logs
        met since the last report (``ping_core.sync.SyncProblemKind``): a page that did not
        continue the cursor exactly (nothing past the break is consumed; the next sync asks
        again), envelopes that can never be read, envelopes of a later epoch held until their
        commit, and a group this device no longer follows.

        Per-conversation isolation (a failing conversation is logged and
        skipped) and per-envelope isolation (a bad envelope is logged,
        reported UNREADABLE and skipped for good: the cursor moves past it; an
        envelope of a later epoch than ours is held, durably, and processed
        once the commit that opens its epoch is). Beyond the spec: pages of
        ``SYNC_PAGE`` with the cursor advancing between pages (the spec
        re-fetched a full page with an unchanged cursor); an interrupted
        commit of ours is settled afterwards (see the module docstring).

        Beyond the spec, durable delivery: every message is stored in its
        conversation's inbox (``ping_core.inbox``) in the same checkpoint as
        the state and cursor that consumed it, and leaves the inbox when it is
        acknowledged; messages stored but not yet returned by this client come
        first (those a crash or a cancelled call kept from the app, those
        decrypted while :meth:`send` caught up). When is a message acknowledged?

        * ``ClientConfig.explicit_ack=False`` (default, the spec's contract):
          when it is returned — this call deletes the records of what it
          returns in its last checkpoint, just before it returns. A crash or
          cancellation anywhere before that (between pages, between
          conversations) loses nothing: the next call returns them.
        * ``explicit_ack=True``: when the app calls :meth:`ack_messages` after
          it stored them. Until then this client does not return them again,
          but after a restart every unacknowledged message is returned again:
          at least once, a duplicate only across a crash, identifiable by
          (conversation_id, seq).

        Beyond the spec: then, unless ``commit_proposals`` is false, the
        commits this device owes are made: rejoining a group it no longer
        follows (DESYNCED -> HEALED), migrating its own leaf to its account
        binding, and the pending proposals of other members where the policy of
        :meth:`commit_pending_proposals` says so — but never while the blob
        store buffers its commits (a ``deferring`` attribute that is true): a
        commit is only sent once its staged state is durable, so a host that
        buffers a sync's checkpoints calls :meth:`commit_pending_proposals`
        after its flush.
        """
        now_ms = _check_now(now_ms)
        convs = list(self._convs.values())
        delivered: list[tuple[Conversation, IncomingMessage]] = []
        for conv in convs:
            async with conv.lock:
                delivered += ((conv, m) for m in self._undelivered(conv))
        for conv in convs:
            fresh: list[IncomingMessage] = []
            try:
                async with conv.lock:
                    await self._sync_one(conv, now_ms, fresh)
                    if commit_proposals:
                        await self._owed_commits(conv, now_ms, fresh)
            except PingError as exc:
                await self.raise_if_revoked(exc)
                # A history-only conversation is normally not readable before its Welcome (403).
                quiet = isinstance(exc, TransportError) and exc.status == 403 and conv.loaded and conv.group is None
                (log.debug if quiet else log.warning)(
                    "sync: conversation %s skipped: %s: %s", conv.id.as_hex(), type(exc).__name__, exc
                )
            delivered += ((conv, m) for m in fresh)  # durable: _sync_one checkpointed their pages
            if self._revoked_by is not None:
                await self._lock_out()
        problems: list[SyncProblem] = []
        for conv in convs:
            problems += conv.problems
            conv.problems.clear()
        return SyncResult(tuple(await self._return(delivered)), tuple(problems))

    async def pending_messages(self) -> list[IncomingMessage]:
        """Beyond the spec: the inbox's messages this client has not returned yet, per conversation
        in log order, without touching the network (after a restart: what a crash kept from the
        app). Acknowledged as :meth:`sync_conversations` says (returned, or by :meth:`ack_messages`)."""
        delivered: list[tuple[Conversation, IncomingMessage]] = []
        for conv in list(self._convs.values()):
            async with conv.lock:
                delivered += ((conv, m) for m in self._undelivered(conv))
        return await self._return(delivered)

    async def ack_messages(self, messages: Iterable[IncomingMessage]) -> None:
        """Beyond the spec: acknowledge ``messages`` (the app stored them; see
        :meth:`sync_conversations`): their inbox records are deleted and checkpointed. Unknown or
        already acknowledged messages are ignored. ``StorageError`` when the checkpoint fails
        (the deletions stay pending; the next checkpoint writes them)."""
        if isinstance(messages, IncomingMessage) or not isinstance(messages, Iterable):
            raise InvalidInput("ack_messages needs an iterable of IncomingMessage")
        by_conv: dict[ConversationId, list[str]] = {}
        for msg in messages:
            if not isinstance(msg, IncomingMessage):
                raise InvalidInput("ack_messages needs an iterable of IncomingMessage")
            by_conv.setdefault(msg.conversation_id, []).append(inbox_name(msg))
        for conv_id, names in by_conv.items():
            conv = self._convs.get(conv_id)
            if conv is None:
                continue
            async with conv.lock:
                for name in names:
                    if name in conv.inbox:
                        conv.drop_incoming(name)
        if self._store.pending:
            await self._store.checkpoint()

    @staticmethod
    def _undelivered(conv: Conversation) -> list[IncomingMessage]:
        """The inbox's messages not yet returned by this client (caller holds ``conv.lock``)."""
        out = []
        for name in conv.inbox.undelivered():
            msg = conv.read_incoming(name)
            if msg is not None:
                out.append(msg)
        return out

    async def _return(self, delivered: list[tuple[Conversation, IncomingMessage]]) -> list[IncomingMessage]:
        """Hand ``delivered`` (durable in the inbox) to the app: with explicit acks they wait for
        :meth:`ack_messages`; otherwise returning them acknowledges them, so their records are
        deleted in one last checkpoint (if it fails they are returned all the same and the next
        checkpoint writes the deletions: a crash before that repeats them, never loses them)."""
        for conv, msg in delivered:
            name = inbox_name(msg)
            if self._explicit_ack:
                conv.inbox.hand_out(name)
            elif name in conv.inbox:
                conv.drop_incoming(name)
        if not self._explicit_ack and self._store.pending:
            try:
                await self._store.checkpoint()
            except StorageError as exc:
                log.warning("inbox: acknowledgements not written yet (%s); the next checkpoint writes them", type(exc).__name__)
        return [msg for _, msg in delivered]

    async def _sync_one(self, conv: Conversation, now_ms: int, delivered: list[IncomingMessage]) -> None:
        """Catch ``conv`` up on its log, page by page (caller holds its lock): each page is
        checkpointed with its cursor (and its messages in the inbox) before its messages are
        appended to ``delivered``; then an interrupted commit of ours is settled."""
        while True:
            start = conv.cursor
            batch = await self._transport.fetch_since(conv.id, start, SYNC_PAGE)
            if not batch:
                break
            undo = StoreUndo(self._store)
            page, waiting = self._process_page(conv, batch, now_ms, undo)
            await self._persist(conv, undo)
            delivered.extend(page)
            if conv.op is not None and conv.op.merged:
                await self._finish_op(conv, raise_errors=False)
            if waiting or len(batch) < SYNC_PAGE or conv.cursor == start:
                break
        group = conv.group
        if group is not None and (group.pending_commit is not None or conv.op is not None):
            await self._settle(conv)

    def _process_page(
        self, conv: Conversation, batch: list[MessageEnvelope], now_ms: int, undo: StoreUndo
    ) -> tuple[list[IncomingMessage], bool]:
        """Process one fetched page into the working set: its messages, and whether processing
        stopped at an envelope that must wait for this device's Welcome. A refused envelope is
        logged and skipped for good (the cursor moves past it: a retry would refuse it again)."""
        page: list[IncomingMessage] = []
        expected = conv.cursor.seq + 1
        for env in batch:
            if env.conversation_id != conv.id or env.seq != expected:
                # The log is append-only and numbered 1, 2, 3...: a page must continue the cursor
                # exactly. A gap (a withheld envelope), a reorder, a duplicate or an absurd seq is
                # the transport's fault: nothing past it is consumed, the next sync asks again.
                what = "another conversation's envelope" if env.conversation_id != conv.id else f"seq {env.seq}"
                self._problem(conv, SyncProblemKind.LOG_DISCONTINUITY, None, f"the server sent {what} where seq {expected} was due")
                log.warning("sync: conversation %s: the log does not continue at seq %d (%s)", conv.id.as_hex(), expected, what)
                return page, True
            expected += 1  # (the cursor may be ahead: envelopes pushed live were consumed already)
            try:
                msg = self._process_one(conv, env, now_ms, undo, in_order=True)
            except _WaitForWelcome:
                return page, True
            except StorageError:
                raise
            except PingError as exc:
                log.warning(
                    "sync: conversation %s envelope seq=%d skipped: %s: %s", conv.id.as_hex(), env.seq, type(exc).__name__, exc
                )
                self._problem(conv, SyncProblemKind.UNREADABLE, env, type(exc).__name__)
                if env.kind is MessageKind.COMMIT and self._commit_was_for_us(conv, env):
                    self._problem(conv, SyncProblemKind.DESYNCED, env, "a commit of our epoch could not be processed")
                conv.set_cursor(conv.cursor.advance(env.seq))
                conv.save(undo)
                continue
            if msg is not None:
                page.append(msg)
            if env.kind is MessageKind.COMMIT:
                page.extend(self._release_held(conv, now_ms, undo, keep=True))
        return page, False

    # -- healing a group this device no longer follows -------------------------------------

    def _needs_heal(self, conv: Conversation) -> bool:
        """Whether this sync found that the group moved on without us: a commit of our epoch we
        could not process, a later epoch's commit, or (the log read to its end, unbroken)
        envelopes held for an epoch whose commit never came."""
        group = conv.group if conv.loaded else None
        if group is None or not group.active:
            return False
        if SyncProblemKind.LOG_DISCONTINUITY in {p.kind for p in conv.problems}:
            return False  # first read the log as it is; the gap may be the server's to fill
        return conv.desynced or any(
            env is not None and env.epoch > group.epoch for _, env in conv.held(1 << 62)
        )

    async def _heal(self, conv: Conversation, now_ms: int) -> bool:
        """Rejoin a group this device no longer follows by an external commit (RFC 9420
        §12.4.3.2, resync: our old leaf is replaced) from the GroupInfo the delivery service keeps
        (caller holds ``conv.lock``). At most once per epoch of ours; True when healed. What was
        held for the epochs we missed is reported UNREADABLE; the log is read on from our commit."""
        group = self._live(conv)
        if conv.heal_tried == group.epoch or not self._checkpoints_durable():
            return False
        conv.heal_tried = group.epoch
        try:
            info = await self._transport.fetch_group_info(conv.id)
            if info is None:
                self._problem(conv, SyncProblemKind.DESYNCED, None, "the server keeps no GroupInfo to rejoin from")
                return False
            rejoined, commit = Group.join_external(
                self._crypto,
                info,
                self._signer,
                resync=True,
                capabilities=PING_CAPABILITIES,
                clock=wall_clock_s,
                check_lifetimes=False,
                max_lifetime_s=MAX_LEAF_LIFETIME_S,
                leaf_check=self._verifier.check_joined_leaf,
                extensions_check=check_extensions,
            )
            if rejoined.group_id != conv.id.value:
                raise InvalidInput("the server's GroupInfo is for another group")
            rejoined.leaf_check = self._verifier.check_leaf
            self._adopt(rejoined)
            await self._transport.set_next_commit_group_info(conv.id, rejoined.group_info())
            hlc = conv.hlc.tick(now_ms)
            seq = await self._transport.send(MessageEnvelope(conv.id, rejoined.epoch - 1, MessageKind.COMMIT, self.device_id(), 0, hlc, commit))
        except PingError as exc:
            log.warning("conversation %s: rejoining failed: %s: %s", conv.id.as_hex(), type(exc).__name__, exc)
            self._problem(conv, SyncProblemKind.DESYNCED, None, f"rejoining failed: {type(exc).__name__}")
            return False
        undo = StoreUndo(self._store)
        for key, env in conv.held(1 << 62):
            undo.delete(key)
            if env is not None:
                self._problem(conv, SyncProblemKind.UNREADABLE, env, "sent in an epoch this device missed")
        conv.replace_group(rejoined, undo)
        conv.set_joined_epoch(rejoined.epoch)
        conv.set_hlc(hlc)
        conv.set_op(None)
        if seq:
            conv.set_cursor(SyncCursor(seq))
        conv.refresh_from_group()
        await self._persist(conv, undo)
        conv.desynced = False
        self._problem(conv, SyncProblemKind.HEALED, None, f"rejoined at epoch {rejoined.epoch}")
        return True

    def _commit_was_for_us(self, conv: Conversation, env: MessageEnvelope) -> bool:
        """Whether a refused commit was one of our current epoch (then nobody else's commit can
        take that epoch: the group moved on without us)."""
        group = conv.group
        return group is not None and group.active and env.epoch == group.epoch

    # -- linking ---------------------------------------------------------------------

    async def build_linking_ticket(
        self,
        new_device_id: DeviceId,
        new_device_kp: bytes,
        last_app_events: Sequence[tuple[ConversationId, bytes]],
        now_ms: int,
    ) -> LinkingTicket:
        """Admit a new device of this account to the DeviceGroup and build its LinkingTicket
        (seal it with ``ping_core.link.seal_ticket`` before it leaves the device).

        The DeviceGroup Commit uses the same stage/checkpoint/send/merge
        discipline as :meth:`add_members` (it goes to the DeviceGroup's log so
        the account's other devices follow); its Welcome travels in the
        ticket. The catch-up snapshot carries, per conversation (not the
        DeviceGroup), its meta and a ``GroupStateSnapshot`` of history-only
        state (see ``ping_core.conversation``), plus the host's
        ``last_app_events``.

        Beyond the spec: the KeyPackage must be the new device's
        (``InvalidInput``) and of this account (``IdentityError``), and the
        snapshot never contains this device's signing key or leaf secrets.
        """
        if not isinstance(new_device_id, DeviceId):
            raise InvalidInput("new_device_id must be a DeviceId")
        now_ms = _check_now(now_ms)
        account = self._account_key("build_linking_ticket")
        kp = self._verified_key_package(new_device_kp, new_device_id, self.user_id())
        if new_device_id == self.device_id():
            raise InvalidInput("a device cannot link itself")
        events = self._check_events(last_app_events)
        await self._ensure_device_group(now_ms)
        dg = self._conv(self._dg_id)
        async with dg.lock:
            if new_device_id in dg.leaves:
                raise InvalidInput("the device is already in the DeviceGroup")
            staged, _ = await self._commit_op(dg, "link", lambda g: g.commit(add=[kp]), now_ms, deliver_welcome=False)
        assert staged.welcome is not None
        entries = await self._catchup_entries(now_ms)
        catchup = b""
        if entries or events:
            catchup = CatchupSnapshot.new(entries, events).encode()
        return LinkingTicket.new(account, new_device_id, staged.welcome, catchup)

    async def _catchup_entries(self, now_ms: int) -> list[CatchupConversationEntry]:
        """SECRET: a history-only snapshot of every conversation this device is an active member
        of (not the DeviceGroup); one with corrupt stored state is left out."""
        entries = []
        for conv in list(self._convs.values()):
            if conv.meta.is_device_group or conv.id == self._dg_id:
                continue
            async with conv.lock:
                try:
                    group = self._group(conv)
                except StorageError:
                    continue
                if group is not None and group.active:
                    entries.append(CatchupConversationEntry(conv.id, conv.meta, self._snapshot(conv, group, now_ms)))
        return entries

    @staticmethod
    def _check_events(events: object) -> list[CatchupAppEventEntry]:
        if not isinstance(events, (list, tuple)):
            raise InvalidInput("last_app_events must be a list of (ConversationId, bytes)")
        out = []
        for item in events:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise InvalidInput("each app event is (ConversationId, bytes)")
            out.append(CatchupAppEventEntry(_check_conv_id(item[0]), _check_bytes(item[1], "app event")))
        return out

    async def consume_linking_ticket(self, ticket: LinkingTicket, now_ms: int) -> None:
        """Apply an (opened) linking ticket: verify it and join the account's DeviceGroup.

        Checks the account's binding of this device (``IdentityError``), that
        the ticket is for this account (``IdentityError``) and this device
        (``InvalidInput``). The catch-up snapshot is then the host's to import
        (``ticket.catchup()`` and :meth:`import_state_snapshot` per entry,
        before the device's Welcomes into those chats are joined).
        """
        if not isinstance(ticket, LinkingTicket):
            raise InvalidInput("consume_linking_ticket needs a LinkingTicket")
        now_ms = _check_now(now_ms)
        ticket.verify_binding()
        if ticket.user_id != self.user_id():
            raise IdentityError("the ticket is for another account")
        if ticket.new_device_id != self.device_id():
            raise InvalidInput("the ticket is addressed to another device")
        dg = self._convs.get(self._dg_id)
        if dg is not None:
            group = self._group(dg)
            if group is not None and group.active and group.member_count > 1:
                raise InvalidInput("this device is already linked (its DeviceGroup has other members)")
        env = MessageEnvelope(self._dg_id, 0, MessageKind.WELCOME, self.device_id(), 0, Hlc.ZERO, ticket.device_group_welcome)
        await self._join(env, now_ms, relink=True)

    def export_conversation_state_snapshot(self, conv_id: ConversationId, now_ms: int) -> bytes:
        """SECRET: a ``GroupStateSnapshot`` encoding of one conversation for a same-account device.

        Beyond the spec: history-only by construction — the current and
        retained epochs' message secrets, the roster, meta and cursor; never
        this device's signing key, HPKE path keys or the secrets that derive a
        later epoch, so the importer can read those epochs' messages but can
        neither send as this device nor follow the group after it is removed.
        """
        now_ms = _check_now(now_ms)
        conv = self._conv(conv_id)
        group = self._live(conv)
        return self._snapshot(conv, group, now_ms)

    def _snapshot(self, conv: Conversation, group: Group, now_ms: int) -> bytes:
        return encode_history_snapshot(conv, group, now_ms)

    async def import_state_snapshot(self, snapshot_bytes: bytes, now_ms: int) -> ConversationId:
        """Import another device's ``GroupStateSnapshot`` as a history-only conversation.

        It lists and reads (application messages of the snapshot's epochs,
        from its cursor on) at once; sending and commits wait for this
        device's own Welcome, which turns it into a live conversation (see
        ``ping_core.conversation``). Refused (``InvalidInput``, nothing stored):
        a malformed snapshot, an unknown ``storage_version``, the DeviceGroup
        (joined by Welcome), a conversation already open.
        """
        now_ms = _check_now(now_ms)
        snap = decode_history_snapshot(self._crypto, _check_bytes(snapshot_bytes, "snapshot"))
        conv_id = snap.meta.id
        async with self._create_lock:
            if conv_id in self._convs:
                raise InvalidInput(f"conversation {conv_id.as_hex()} is already open")
            undo = StoreUndo(self._store)
            conv = Conversation.create(
                self._store,
                self._crypto,
                None,
                snap.meta,
                undo,
                cursor=snap.cursor,
                history=(snap.history, snap.records),
                verifier=self._verifier,
            )
            conv.adopt = self._adopt
            await self._checkpoint(undo)
            self._convs[conv_id] = conv
        return conv_id

    def export_conversation_secret(self, conv_id: ConversationId, label: str, context: bytes, length: int) -> bytes:
        """SECRET: ``MLS-Exporter(label, context, length)`` of the conversation's current epoch."""
        if type(label) is not str or len(label.encode("utf-8", "surrogatepass")) > 255:
            raise InvalidInput("label must be a str of at most 255 bytes")
        context = _check_bytes(context, "context")
        if type(length) is not int or not 1 <= length <= _MAX_EXPORT_LEN:
            raise InvalidInput(f"length must be 1..{_MAX_EXPORT_LEN}")
        conv = self._conv(conv_id)
        return self._live(conv).export_secret(label, context, length)

    async def revoke_device(self, device_id: DeviceId, now_ms: int) -> list[MessageEnvelope]:
        """Remove ``device_id``'s leaf from every conversation it is in (one removing Commit each,
        send-then-merge, removal announced), then ``transport.revoke_device_remote``.
        Returns the Commit envelopes.

        Beyond the spec: the device's leaves are found from the trees (device
        id = SHA-256 of the leaf key), so devices admitted by other members are
        removed too; a failing conversation does not stop the others nor the
        remote revocation — the first error is raised once all were tried.
        """
        if not isinstance(device_id, DeviceId):
            raise InvalidInput("device_id must be a DeviceId")
        now_ms = _check_now(now_ms)
        if device_id == self.device_id():
            raise InvalidInput("a device cannot revoke itself")
        revocation = self._account_key("revoke_device").revoke(device_id)
        undo = StoreUndo(self._store)
        self._verifier.remember(revocation, undo.put)
        await self._checkpoint(undo)
        statement = revocation.encode()
        envelopes: list[MessageEnvelope] = []
        first_error: PingError | None = None
        for conv in list(self._convs.values()):
            try:
                async with conv.lock:
                    group = self._group(conv)
                    if group is None or not group.active:
                        continue
                    leaf = conv.leaves.get(device_id)
                    if leaf is None:
                        continue
                    _, env = await self._commit_op(conv, "remove", _remove_leaf(leaf, statement), now_ms)
                    envelopes.append(env)
            except PingError as exc:
                log.warning("revoke: conversation %s failed: %s", conv.id.as_hex(), type(exc).__name__)
                first_error = first_error or exc
        try:
            await self._transport.revoke_device_remote(device_id, revocation)
        except PingError as exc:
            first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return envelopes
