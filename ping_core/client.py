"""``MessagingClient``: the asyncio SDK an app (or the browser worker) holds.

It re-creates the project's reference SDK (Rust on OpenMLS) method by method
(same names, arguments as Python types, same order of effects) on Ping's own
MLS engine, and keeps the invariants listed in docs/architecture.md. Where this module does better than the spec, the
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

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from ping_core.admit import AdmitChatOutcome, AdmitChatStatus, admit_to_chats
from ping_core.checks import check_bytes, check_conv_id, check_name, check_now
from ping_core.clientstate import DEVICE_GROUP_NAME, ClientState
from ping_core.commitflow import CommitFlow
from ping_core.conversation import MAX_LEAF_LIFETIME_S, CommitKind, MemberInfo
from ping_core.conversation_name import with_name
from ping_core.device import DeviceInfo, LinkingTicket
from ping_core.errors import InvalidInput, PingError
from ping_core.history import export_snapshot, import_snapshot
from ping_core.identity import DeviceBinding, Identity
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.invitation import Invitation
from ping_core.keypackages import KeyPackages
from ping_core.link import AccountGrant
from ping_core.linking import Linking
from ping_core.message import IncomingMessage, MessageEnvelope, MessageKind
from ping_core.meta import ConversationMeta
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.group import Group, StagedCommit
from ping_core.owed import PROPOSAL_COMMIT_DELAY_MS, Owed
from ping_core.receive import COMMITTABLE_PROPOSALS, Receiver
from ping_core.storage import BlobStore, Storage, StorageBackend
from ping_core.sync import SYNC_PAGE, News, SyncResult
from ping_core.syncer import Syncer
from ping_core.transport import Transport
from ping_core.welcomes import Welcomes

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

_MAX_EXPORT_LEN = 255 * 32  # HKDF-Expand limit of the MLS exporter (SHA-256)


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


def _check_leaves(leaf_indexes: object) -> list[int]:
    if not isinstance(leaf_indexes, (list, tuple)) or not leaf_indexes:
        raise InvalidInput("leaf_indexes must be a non-empty list of ints")
    leaves: list[int] = []
    for leaf in leaf_indexes:
        if type(leaf) is not int or leaf < 0:
            raise InvalidInput("leaf indexes are non-negative ints")
        if leaf in leaves:
            raise InvalidInput("a leaf appears twice")
        leaves.append(leaf)
    return leaves


def _check_removable(group: Group, leaves: list[int]) -> None:
    for leaf in leaves:
        if group.member(leaf) is None:
            raise InvalidInput(f"leaf {leaf} is not a member")
        if leaf == group.own_leaf_index:
            raise InvalidInput("a device cannot remove its own leaf with a commit")


def _check_export(label: object, context: object, length: object) -> bytes:
    if type(label) is not str or len(label.encode("utf-8", "surrogatepass")) > 255:
        raise InvalidInput("label must be a str of at most 255 bytes")
    context = check_bytes(context, "context")
    if type(length) is not int or not 1 <= length <= _MAX_EXPORT_LEN:
        raise InvalidInput(f"length must be 1..{_MAX_EXPORT_LEN}")
    return context


def _rename(name: str | None) -> Callable[[Group], StagedCommit]:
    """The commit that sets (or, with ``None``, clears) the conversation name in the GroupContext."""

    def build(g: Group) -> StagedCommit:
        return g.commit(extensions=with_name(g.extensions, name))

    return build


# ---------------------------------------------------------------------------
# The client


class MessagingClient:
    """The top-level handle: identity, this device, and its open conversations.

    Create with :meth:`init`. Every conversation has one ``asyncio.Lock``;
    no two operations on one conversation interleave. All errors are
    ``ping_core.errors`` exceptions. It checks its input and delegates
    (``commitflow``, ``receive``, ``syncer``, ``owed``, ``welcomes``,
    ``keypackages``, ``linking``, ``history``: one ``ClientState`` shared).
    """

    def __init__(self, state: ClientState) -> None:
        """Internal: use :meth:`init`."""
        self._state = state
        self._commits = CommitFlow(state)
        self._receiver = Receiver(state, self._commits)
        self._syncer = Syncer(state, self._receiver, self._commits)
        self._owed = Owed(state, self._commits, self._syncer.sync_one)
        self._kps = KeyPackages(state)
        self._welcomes = Welcomes(state, self._commits, self._kps)
        self._linking = Linking(state, self._commits, self._kps, self._welcomes)

    def __repr__(self) -> str:
        st = self._state
        return f"MessagingClient(user_id={st.user_id().as_hex()}, device_id={st.device_id().as_hex()}, conversations={len(st.convs)})"

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
        return cls(await ClientState.open(cfg))

    def user_id(self) -> UserId:
        return self._state.user_id()

    def holds_account_key(self) -> bool:
        """Beyond the spec: whether this device holds the account key (it can link and revoke
        devices); otherwise it holds only the account's binding of itself."""
        return self._state.account is not None

    def device_binding(self) -> DeviceBinding:
        """Beyond the spec: the account's binding of this device (public; what registration
        presents and every MLS leaf of this device carries)."""
        return self._state.binding

    def export_identity(self) -> bytes:
        """SECRET: the account identity export (``Identity.import_`` reads it). Hosts move it to a
        newly linked device over the sealed linking channel; never log or store it in clear.
        ``IdentityError`` on a device that does not hold the account key."""
        return self._state.account_key("export_identity").export()

    def grant_device(self, device_id: DeviceId, *, with_account_key: bool = False) -> AccountGrant:
        """Beyond the spec: what a new device of this account receives when it is linked (seal it
        with ``ping_core.link.seal_grant``): the account's binding of ``device_id`` and, only
        with ``with_account_key``, the account key itself. Needs the account key."""
        return self._linking.grant(device_id, with_account_key=with_account_key)

    async def raise_if_revoked(self, exc: PingError) -> None:
        """If ``exc`` is the delivery service refusing this device as revoked (403
        ``device_revoked``), settle it as :meth:`sync` does (the state is wiped on the account's
        signed statement only) and raise ``DeviceRevoked``; for any other error, return.

        For hosts that call the transport themselves (the Welcome inbox: ``ping_core.account``)."""
        await self._state.raise_if_revoked(exc)

    def device_id(self) -> DeviceId:
        return self._state.device_id()

    def device_info(self, now_ms: int) -> DeviceInfo:
        return self._state.device.info(check_now(now_ms))

    @property
    def transport(self) -> Transport:
        return self._state.transport

    async def fresh_key_package(self, *, last_resort: bool = False) -> bytes:
        """A fresh KeyPackage (MLSMessage bytes) to publish.

        Its private keys are checkpointed BEFORE the bytes are returned, so a
        published KeyPackage always has its keys on disk. A one-time
        KeyPackage's keys are deleted when a Welcome uses it; with
        ``last_resort=True`` (beyond the spec) they are kept for reuse, for the
        directory's last-resort slot.
        """
        return await self._kps.fresh(last_resort=last_resort)

    async def retire_outdated_key_packages(self) -> int:
        """Beyond the spec: retire the stored KeyPackages whose leaf carries another credential than
        this client's (made before account bindings: peers refuse them). Returns how many; the
        host then publishes fresh ones with ``replace=True`` and a new last-resort KeyPackage
        (``ping_core.connect.top_up_key_packages`` does). A retired KeyPackage can still be joined
        with once (a peer may have claimed it just before) and is deleted then."""
        return await self._kps.retire_outdated()

    async def create_conversation(self, name: str | None, now_ms: int) -> ConversationId:
        """A new conversation with this device as its only member (epoch 0), durable on return.

        The delivery service learns of it with its first envelope."""
        name = check_name(name)
        now_ms = check_now(now_ms)
        conv = await self._state.create(ConversationId.new(now_ms), name, now_ms)
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
        return await self._welcomes.join(welcome_envelope, now_ms, relink=False)

    async def add_invitations(self, welcomes: Iterable[MessageEnvelope], now_ms: int) -> list[Invitation]:
        """Beyond the spec: keep Welcome envelopes (from the Welcome inbox) as pending invitations,
        durable on return; the new ones are returned. Joining is the user's decision:
        :meth:`accept_invitation` or :meth:`decline_invitation`.

        Each Welcome is checked as :meth:`join_conversation` checks it (one of this device's
        KeyPackages, every leaf of the tree bound to its account, ...) without joining; one that
        fails is logged and left out, as are a DeviceGroup's (linking tickets), duplicates and
        conversations this device is an active member of. At most ``MAX_INVITATIONS`` are kept."""
        return await self._welcomes.add_invitations(welcomes, check_now(now_ms))

    def invitations(self) -> list[Invitation]:
        """Beyond the spec: the pending invitations, oldest first (no network)."""
        return self._welcomes.invitations()

    async def accept_invitation(self, conv_id: ConversationId, now_ms: int) -> ConversationId:
        """Beyond the spec: join the conversation of a pending invitation (as
        :meth:`join_conversation`) and forget the invitation. ``UnknownConversation`` when there is
        none; a Welcome that no longer joins (its KeyPackage used meanwhile) raises and is forgotten."""
        return await self._welcomes.accept(conv_id, now_ms)

    async def decline_invitation(self, conv_id: ConversationId) -> None:
        """Beyond the spec: refuse a pending invitation: the delivery service ends the membership
        the Welcome opened (``Transport.leave_conversation``), the invitation and the one-time
        KeyPackage it would have used are deleted. ``UnknownConversation`` when there is none."""
        await self._welcomes.decline(conv_id)

    def list_conversations(self) -> list[ConversationMeta]:
        """The metas of every open conversation (no group is parsed)."""
        return [c.meta for c in self._state.convs.values()]

    def members(self, conv_id: ConversationId) -> list[MemberInfo]:
        """The roster, recovered from the group's leaves (device id from the leaf key, account from
        the account binding in the leaf's credential, verified: ``MemberInfo.user_id`` is ``None``
        for a leaf that proves no account). Empty for an unknown conversation (as in the spec)."""
        return self._state.roster(check_conv_id(conv_id))

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
        return self._state.conv(conv_id).cursor.seq

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
        return await self._syncer.wait_for_news(timeout_ms)

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
        plaintext = check_bytes(plaintext, "plaintext")
        now_ms = check_now(now_ms)
        conv = self._state.conv(conv_id)
        async with conv.lock:
            return await self._owed.send(conv, plaintext, now_ms)

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
        return await self._owed.run_all(check_now(now_ms))

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
        now_ms = check_now(now_ms)
        kps = self._kps.entries(entries, for_user)
        conv = self._state.conv(conv_id)
        async with conv.lock:
            await self._commits.commit(conv, CommitKind.ADD, lambda g: g.commit(add=kps), now_ms)

    async def set_conversation_name(self, conv_id: ConversationId, name: str | None, now_ms: int) -> None:
        """Set (or, with ``None``, clear) the conversation name carried in the GroupContext, by a
        GroupContextExtensions Commit with the same send-then-merge discipline (no Welcome)."""
        name = check_name(name)
        now_ms = check_now(now_ms)
        conv = self._state.conv(conv_id)
        async with conv.lock:
            await self._commits.commit(conv, CommitKind.NAME, _rename(name), now_ms)

    async def remove_members(self, conv_id: ConversationId, leaf_indexes: Sequence[int], now_ms: int) -> None:
        """Remove the members at ``leaf_indexes`` (send-then-merge as :meth:`add_members`).

        Beyond the spec: the removed devices are announced to the delivery
        service (``set_next_commit_removals``) before each send of the Commit,
        so it ends their membership exactly when it accepts the Commit."""
        now_ms = check_now(now_ms)
        leaves = _check_leaves(leaf_indexes)
        conv = self._state.conv(conv_id)
        async with conv.lock:
            _check_removable(self._state.live(conv), leaves)
            await self._commits.commit(conv, CommitKind.REMOVE, lambda g: g.commit(remove=leaves), now_ms)

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
        now_ms = check_now(now_ms)
        return await admit_to_chats(self._state, self.add_members, new_device_id, kps_per_chat, now_ms)

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
        now_ms = check_now(now_ms)
        if env.kind is MessageKind.WELCOME:
            raise InvalidInput("a Welcome envelope goes to join_conversation")
        return await self._receiver.process_envelope(self._state.conv(env.conversation_id), env, now_ms)

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
        conversation's inbox (``ping_core.unacked``) in the same checkpoint as
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
        return await self._syncer.sync(check_now(now_ms), self._owed.run if commit_proposals else None)

    async def pending_messages(self) -> list[IncomingMessage]:
        """Beyond the spec: the inbox's messages this client has not returned yet, per conversation
        in log order, without touching the network (after a restart: what a crash kept from the
        app). Acknowledged as :meth:`sync_conversations` says (returned, or by :meth:`ack_messages`)."""
        return await self._syncer.pending_messages()

    async def ack_messages(self, messages: Iterable[IncomingMessage]) -> None:
        """Beyond the spec: acknowledge ``messages`` (the app stored them; see
        :meth:`sync_conversations`): their inbox records are deleted and checkpointed. Unknown or
        already acknowledged messages are ignored. ``StorageError`` when the checkpoint fails
        (the deletions stay pending; the next checkpoint writes them)."""
        await self._syncer.ack_messages(messages)

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
        now_ms = check_now(now_ms)
        return await self._linking.build_ticket(new_device_id, new_device_kp, last_app_events, now_ms)

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
        await self._linking.consume_ticket(ticket, check_now(now_ms))

    def export_conversation_state_snapshot(self, conv_id: ConversationId, now_ms: int) -> bytes:
        """SECRET: a ``GroupStateSnapshot`` encoding of one conversation for a same-account device.

        Beyond the spec: history-only by construction — the current and
        retained epochs' message secrets, the roster, meta and cursor; never
        this device's signing key, HPKE path keys or the secrets that derive a
        later epoch, so the importer can read those epochs' messages but can
        neither send as this device nor follow the group after it is removed.
        """
        return export_snapshot(self._state, now_ms=check_now(now_ms), conv=self._state.conv(conv_id))

    async def import_state_snapshot(self, snapshot_bytes: bytes, now_ms: int) -> ConversationId:
        """Import another device's ``GroupStateSnapshot`` as a history-only conversation.

        It lists and reads (application messages of the snapshot's epochs,
        from its cursor on) at once; sending and commits wait for this
        device's own Welcome, which turns it into a live conversation (see
        ``ping_core.conversation``). Refused (``InvalidInput``, nothing stored):
        a malformed snapshot, an unknown ``storage_version``, the DeviceGroup
        (joined by Welcome), a conversation already open.
        """
        return await import_snapshot(self._state, snapshot_bytes, check_now(now_ms))

    def export_conversation_secret(self, conv_id: ConversationId, label: str, context: bytes, length: int) -> bytes:
        """SECRET: ``MLS-Exporter(label, context, length)`` of the conversation's current epoch."""
        context = _check_export(label, context, length)
        return self._state.live(self._state.conv(conv_id)).export_secret(label, context, length)

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
        return await self._linking.revoke(device_id, check_now(now_ms))
