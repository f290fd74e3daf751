"""One conversation as the SDK keeps it: an MLS group, its sync cursor, clock, device->leaf map and meta.

Everything a conversation is lives as records of the :class:`~ping_core.storage.MlsStateStore`
under ONE prefix, ``c/<conversation id hex>/``, so a checkpoint writes a
conversation's MLS state and its SDK facts together, atomically (the spec
keeps meta and cursor in the host ``Storage``, where a crash between two
writes tears them apart)::

    c/<id>/meta        ConversationMeta                        (changes on commits)
    c/<id>/cursor      SyncCursor: the log position consumed   (changes per processed envelope)
    c/<id>/clock       Hlc: this device's clock here            (changes per send / receive)
    c/<id>/info        {"v":1, "joined_epoch": uint}           (first epoch of our own leaf)
    c/<id>/leaves      {"v":1, "leaves": [[device_id, leaf], ...]}   derived from the tree
    c/<id>/op          our commit in flight (see PendingOp)    (present only while one is)
    c/<id>/i/<seq>     a decrypted message the app has not acknowledged (see ping_core.unacked)
    c/<id>/g/<name>    the live MLS group's records (Group.records(); a send changes one small record)
    c/<id>/h/<name>    history-only epochs imported from another device (see HistoryReader)

A :class:`Conversation` is a cache of those records: every change is first
made in memory, then written to the store's working set with :meth:`Conversation.save`
(recording the previous values in a :class:`StoreUndo`), then checkpointed by
the client. When a checkpoint fails the undo restores the working set and
:meth:`Conversation.reload` rebuilds the cache from it, so a failed operation
leaves the conversation exactly as it was, in memory and in storage.

The group itself is parsed lazily (:attr:`Conversation.group`): a cold start
reads only the small header records, so ``list_conversations`` works at once.

History-only state
------------------
A linked device receives, in the catch-up snapshot, what lets it read the
messages of the epochs another device of the account is in — but NOT that
device's leaf: no signing key, no HPKE path keys, no init/exporter secrets.
:class:`HistoryReader` keeps, per epoch, only the framing secrets and the
secret tree (the engine's ``HistoryView``), so it can decrypt application
messages of those epochs and can never send (it would reuse the other
device's ratchet generations), never process a commit and never follow the
group into a later epoch (so revoking the device also ends what it can read).
Once the device's own Welcome arrives the live group takes over; the history
stays for the older epochs until the live group has moved ``max_past_epochs``
past its join.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Iterable, Mapping

from ping_core.clock import MAX_WALL_MS, Hlc
from ping_core.cbor import as_bytes, as_list, as_uint, decode_record, encode_record
from ping_core.device import GroupStateSnapshot
from ping_core.errors import InvalidInput, MlsDecodeError, MlsError, PingError, StorageError
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.unacked import INBOX_DIR, Inbox, decode_incoming, encode_incoming, inbox_name
from ping_core.membership import AccountVerifier
from ping_core.message import IncomingMessage, MessageEnvelope, MessageKind
from ping_core.meta import ConversationMeta
from ping_core.mls.tls import Reader
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.group import (
    CLOCK_SKEW_S,
    DEFAULT_LIFETIME_S,
    ApplicationMessage,
    Group,
    HistoryView,
    LeafCheck,
    RecordChanges,
    SenderCheck,
)
from ping_core.mls.structs import ContentType
from ping_core.storage import STATE_STORE_VERSION, MlsStateStore
from ping_core.sync import SyncCursor, SyncProblem
from ping_core.wallclock import wall_clock_s
from ping_core.conversation_name import check_extensions, name_of

__all__ = [
    "HELD_DIR",
    "MAX_HELD",
    "ConversationId",
    "ConversationMeta",
    "MemberInfo",
    "Conversation",
    "HistoryReader",
    "HistorySnapshot",
    "encode_history_snapshot",
    "decode_history_snapshot",
    "PendingOp",
    "CommitKind",
    "StoreUndo",
    "MlsPeek",
    "peek_mls",
    "conversation_prefix",
    "CONVERSATIONS_PREFIX",
    "MAX_LEAF_LIFETIME_S",
    "HLC_AAD_VERSION",
    "hlc_aad",
    "hlc_from_aad",
]

log = logging.getLogger("ping_core.conversation")

CONVERSATIONS_PREFIX = "c/"

#: Ping's maximum total lifetime of a KeyPackage leaf (RFC 9420 §7.2: "Applications MUST
#: define a maximum total lifetime that is acceptable for a LeafNode"): exactly what every
#: KeyPackage Ping makes spans, one-time and last-resort alike, and the leaf of a group's
#: creator (``generate_key_package``: valid from ``now - CLOCK_SKEW_S`` to
#: ``now + DEFAULT_LIFETIME_S``, 90 days and 1 hour). A longer one is refused wherever it
#: would enter a conversation: claimed KeyPackages (``add_members``), Adds received from
#: other members, and the tree of a joined group. Every Group the SDK creates, joins or
#: loads carries it as ``Group.max_lifetime_s`` (policy, not stored with the group).
MAX_LEAF_LIFETIME_S = DEFAULT_LIFETIME_S + CLOCK_SKEW_S
#: Envelopes of later epochs than ours a conversation keeps until their commit (records
#: ``c/<id>/x/<epoch hex16>-<seq hex16>``: the MessageEnvelope encoding); beyond, unreadable.
HELD_DIR = "x/"
MAX_HELD = 1024
_INFO_VERSION = 1
_LEAVES_VERSION = 1
_OP_VERSION = 1
_ROSTER_VERSION = 1
_MAX_LEAVES = 1 << 20
_MAX_DEVICE_LIST = 10_000

# Application messages carry the sender's HLC in the MLS authenticated data,
# so a delivery service cannot reorder a conversation by editing envelope.hlc.
HLC_AAD_VERSION = 1
_HLC_AAD_LEN = 13


def conversation_prefix(conv_id: ConversationId) -> str:
    """The store prefix of every record of ``conv_id``."""
    return f"{CONVERSATIONS_PREFIX}{conv_id.as_hex()}/"


def hlc_aad(hlc: Hlc) -> bytes:
    """The authenticated data of an application message sent at ``hlc``: 0x01 || wall_ms u64 || counter u32."""
    return bytes((HLC_AAD_VERSION,)) + hlc.wall_ms.to_bytes(8, "big") + hlc.counter.to_bytes(4, "big")


def hlc_from_aad(aad: bytes) -> Hlc | None:
    """The HLC an application message's authenticated data carries (``None``: it carries none).

    ``InvalidInput`` when it has the HLC layout but a clock out of range: the sender authenticated
    a malformed clock, and the message is refused rather than read as one without a clock (which
    would let it fall back on the envelope's unauthenticated HLC)."""
    if len(aad) != _HLC_AAD_LEN or aad[0] != HLC_AAD_VERSION:
        return None
    wall, counter = int.from_bytes(aad[1:9], "big"), int.from_bytes(aad[9:13], "big")
    if wall > MAX_WALL_MS:
        raise InvalidInput("the message's authenticated HLC is out of range")
    return Hlc(wall, counter)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member of a conversation: its leaf, its account and its device.

    ``device_id`` is SHA-256 of the leaf's signature key (the device signing
    key is the MLS leaf key), so it is derived from the group state, never
    taken on trust. ``user_id`` is the account whose binding the leaf's
    credential carries, verified (``ping_core.membership``); ``None`` for a
    member whose leaf proves no account (made before account bindings, or
    not by Ping): such a member can read the conversation, but nothing it
    sends is delivered as anybody's.
    """

    leaf_index: int
    user_id: UserId | None
    device_id: DeviceId

    @property
    def verified(self) -> bool:
        """Whether the member's account is proven by its leaf."""
        return self.user_id is not None


# ---------------------------------------------------------------------------
# Peeking at an MLS message without processing it


_CONTENT_KINDS = {
    ContentType.APPLICATION: MessageKind.APPLICATION,
    ContentType.PROPOSAL: MessageKind.PROPOSAL,
    ContentType.COMMIT: MessageKind.COMMIT,
}


@dataclass(frozen=True, slots=True)
class MlsPeek:
    """The cleartext routing facts of a group message: group id, epoch and what it carries."""

    group_id: bytes
    epoch: int
    kind: MessageKind


def peek_mls(payload: bytes) -> MlsPeek:
    """Read the cleartext header of an MLSMessage(PublicMessage | PrivateMessage).

    Nothing is verified or decrypted; the result lets the SDK check the
    envelope's routing fields against the message before it touches any
    state. ``InvalidInput`` for anything that is not such a message.
    """
    try:
        r = Reader(payload)
        if r.u16() != 1:
            raise InvalidInput("the payload is not an MLS 1.0 message")
        wire_format = r.u16()
        if wire_format == 2:  # PrivateMessage: group_id, epoch, content_type
            group_id = r.opaque(255)
            epoch = r.u64()
            ct = r.u8()
        elif wire_format == 1:  # PublicMessage: FramedContent: group_id, epoch, sender, aad, content_type
            group_id = r.opaque(255)
            epoch = r.u64()
            sender_type = r.u8()
            if sender_type in (1, 2):
                r.u32()
            elif sender_type not in (3, 4):
                raise InvalidInput("the payload has an unknown sender type")
            r.opaque()
            ct = r.u8()
        else:
            raise InvalidInput("the payload is not a group message (PublicMessage or PrivateMessage)")
    except MlsDecodeError:
        raise InvalidInput("the payload is not a well-formed MLS message") from None
    kind = _CONTENT_KINDS.get(ct)  # type: ignore[call-overload]
    if kind is None:
        raise InvalidInput("the payload has an unknown content type")
    return MlsPeek(group_id, epoch, kind)


# ---------------------------------------------------------------------------
# Undo of working-set writes


class StoreUndo:
    """Writes to an :class:`MlsStateStore` working set that can be reverted.

    The first write to a key remembers the value it had; :meth:`revert`
    puts every such value back (so the working set again matches the last
    checkpoint the writes were made on top of).
    """

    __slots__ = ("_store", "_old", "seen")

    def __init__(self, store: MlsStateStore) -> None:
        self._store = store
        self._old: dict[str, bytes | None] = {}
        # Out-of-order log positions noted in memory by this change (forgotten on revert).
        self.seen: list[tuple[set[int], int]] = []

    def put(self, key: str, value: bytes) -> None:
        if key not in self._old:
            self._old[key] = self._store.get(key)
        self._store.put(key, value)

    def delete(self, key: str) -> None:
        if key not in self._old:
            self._old[key] = self._store.get(key)
        self._store.delete(key)

    def delete_prefix(self, prefix: str) -> None:
        for key in self._store.keys(prefix):
            self.delete(key)

    def revert(self) -> None:
        for seen, seq in self.seen:
            seen.discard(seq)
        self.seen.clear()
        for key, old in self._old.items():
            if old is None:
                self._store.delete(key)
            else:
                self._store.put(key, old)
        self._old.clear()

    def __bool__(self) -> bool:
        return bool(self._old)


# ---------------------------------------------------------------------------
# Our commit in flight


class CommitKind(str, Enum):
    """What our commit in flight does; stored as its text in ``c/<id>/op`` (``PendingOp.kind``).

    The stored values are the ones earlier versions wrote as plain strings, so old records read
    unchanged. The kind only describes the commit (logs, ``repr``); no rule depends on it, so a
    value this version does not know (none was ever written) reads as ``RESUME``."""

    ADD = "add"  # add_members, admit_device_to_chats
    REMOVE = "remove"  # remove_members, revoke_device
    NAME = "name"  # set_conversation_name
    LINK = "link"  # build_linking_ticket (DeviceGroup Add, its Welcome in the ticket)
    PROPOSALS = "proposals"  # other members' pending proposals
    UPDATE = "update"  # our own leaf migrated to its account binding
    RESUME = "resume"  # a staged commit found without its record (settled after a crash)

    @classmethod
    def read(cls, text: str) -> CommitKind:
        try:
            return cls(text)
        except ValueError:
            return cls.RESUME


@dataclass(frozen=True, slots=True)
class PendingOp:
    """What the SDK must still do around OUR staged commit, persisted with it.

    ``base_epoch`` is the epoch the commit was made in; ``welcome`` (and
    ``welcome_to``, the device ids to prime the transport with) is delivered
    once the commit is merged; ``removals`` are announced to the delivery
    service before every (re)send of the commit; ``merged`` says the commit
    took effect and only the Welcome is left to deliver.
    """

    kind: CommitKind
    base_epoch: int
    welcome: bytes | None
    welcome_to: tuple[DeviceId, ...]
    removals: tuple[DeviceId, ...]
    merged: bool = False

    def encode(self) -> bytes:
        return encode_record(
            _OP_VERSION,
            {
                "kind": CommitKind(self.kind).value,
                "base_epoch": self.base_epoch,
                "welcome": self.welcome,
                "welcome_to": [d.value for d in self.welcome_to],
                "removals": [d.value for d in self.removals],
                "merged": self.merged,
            },
        )

    @classmethod
    def decode(cls, data: bytes) -> PendingOp:
        rec = decode_record(
            data,
            what="PendingOp",
            version=_OP_VERSION,
            keys=("kind", "base_epoch", "welcome", "welcome_to", "removals", "merged"),
            max_size=16 * 1024 * 1024,
        )
        return cls(
            CommitKind.read(rec.get_text("kind", max_len=32)),
            rec.get_uint("base_epoch"),
            rec.get_opt_bytes("welcome", max_len=8 * 1024 * 1024),
            tuple(DeviceId(as_bytes(d, "PendingOp.welcome_to[]", length=32)) for d in rec.get_list("welcome_to", max_items=_MAX_DEVICE_LIST)),
            tuple(DeviceId(as_bytes(d, "PendingOp.removals[]", length=32)) for d in rec.get_list("removals", max_items=_MAX_DEVICE_LIST)),
            rec.get_bool("merged"),
        )

    def __repr__(self) -> str:
        return (
            f"PendingOp(kind={CommitKind(self.kind).value!r}, base_epoch={self.base_epoch}, welcome={'yes' if self.welcome is not None else 'no'}, "
            f"welcome_to={len(self.welcome_to)}, removals={len(self.removals)}, merged={self.merged})"
        )


# ---------------------------------------------------------------------------
# History-only epochs


def _encode_roster(members: Iterable[MemberInfo]) -> bytes:
    return encode_record(
        _ROSTER_VERSION,
        # Only verified members: a history message from another is not delivered as anybody's.
        {"members": [[m.leaf_index, m.user_id.value, m.device_id.value] for m in members if m.user_id is not None]},
    )


def _decode_roster(data: bytes) -> list[MemberInfo]:
    rec = decode_record(data, what="Roster", version=_ROSTER_VERSION, keys=("members",), max_size=64 * 1024 * 1024)
    out = []
    for item in rec.get_list("members", max_items=_MAX_LEAVES):
        triple = as_list(item, "Roster.members[]", max_items=3)
        if len(triple) != 3:
            raise InvalidInput("Roster.members[]: expected [leaf, user_id, device_id]")
        out.append(
            MemberInfo(
                as_uint(triple[0], "Roster leaf", max_value=_MAX_LEAVES),
                UserId(as_bytes(triple[1], "Roster user_id", length=32)),
                DeviceId(as_bytes(triple[2], "Roster device_id", length=32)),
            )
        )
    return out


class HistoryReader:
    """Read-only application-message decryption for epochs imported from another device.

    The engine's :class:`~ping_core.mls.group.HistoryView` (per epoch: framing
    secrets, secret tree, the roster's signature keys) plus the roster as the
    SDK sees it; nothing else: it cannot sign, cannot process a commit and
    cannot derive any later epoch. Records (relative to ``c/<id>/h/``): the
    view's (``past:<e>``, ``st:<e>:<name>``) and ``roster``.
    """

    __slots__ = ("view", "roster")

    def __init__(self, view: HistoryView, roster: list[MemberInfo]) -> None:
        self.view = view
        self.roster = roster

    @classmethod
    def from_records(cls, crypto: CryptoProvider, records: Mapping[str, bytes]) -> HistoryReader:
        """Parse ``h/`` records (prefix removed). ``MlsError``/``InvalidInput`` when malformed."""
        roster_raw = records.get("roster")
        if roster_raw is None:
            raise InvalidInput("history records lack the roster")
        view = HistoryView.from_records(crypto, {k: v for k, v in records.items() if k != "roster"})
        return cls(view, _decode_roster(roster_raw))

    @staticmethod
    def export_records(group: Group, members: list[MemberInfo]) -> dict[str, bytes]:
        """SECRET: the history-only records of ``group``'s current and retained past epochs
        (the engine's history view: no signing key, no path keys, nothing that derives a later epoch)."""
        out = group.export_history_view().records()
        out["roster"] = _encode_roster(members)
        return out

    @property
    def epochs(self) -> tuple[int, ...]:
        """The imported epochs, ascending."""
        return self.view.epochs

    def decrypt(self, payload: bytes, check_sender: SenderCheck) -> ApplicationMessage:
        """Decrypt an application message (MLSMessage bytes) of an imported epoch.

        ``check_sender`` runs once the sender is authenticated and before
        anything changes, and may raise to refuse the message; the consumed
        generation shows in :meth:`changes`.
        """
        return self.view.decrypt(payload, check_sender=check_sender)

    def forget_before(self, epoch: int) -> bool:
        """Forget imported epochs older than ``epoch``; False when none would be left (drop the reader)."""
        if all(e < epoch for e in self.view.epochs):
            return False
        self.view.forget_before(epoch)
        return True

    def changes(self) -> RecordChanges:
        """Records (relative to ``h/``) written and deleted since the last :meth:`mark_saved`."""
        return self.view.changed_records()

    def mark_saved(self) -> None:
        self.view.mark_saved()

    def __repr__(self) -> str:
        return f"HistoryReader(epochs={list(self.epochs)}, roster={len(self.roster)})"


@dataclass(frozen=True, slots=True)
class HistorySnapshot:
    """A decoded history-only ``GroupStateSnapshot``: the conversation's meta (epoch and member
    count taken from the history), the cursor to read from, the history and its records."""

    meta: ConversationMeta
    cursor: SyncCursor
    history: HistoryReader
    records: Mapping[str, bytes]

    def __repr__(self) -> str:
        return f"HistorySnapshot(conversation={self.meta.id.as_hex()}, cursor={self.cursor.seq}, {self.history!r})"


def encode_history_snapshot(conv: Conversation, group: Group, now_ms: int) -> bytes:
    """SECRET: ``conv`` as a ``GroupStateSnapshot`` a device of the same account imports as
    history-only state. Entries: ``meta``, ``cursor`` and ``h/<name>`` (the records of
    :meth:`HistoryReader.export_records`: no signing key, no path keys, nothing that derives a
    later epoch)."""
    records = HistoryReader.export_records(group, conv.members())
    entries = [("meta", conv.meta.encode()), ("cursor", conv.cursor.encode())]
    entries += [("h/" + name, value) for name, value in sorted(records.items())]
    return GroupStateSnapshot(conv.id, STATE_STORE_VERSION, now_ms, tuple(entries)).encode()


def decode_history_snapshot(crypto: CryptoProvider, data: bytes) -> HistorySnapshot:
    """Inverse of :func:`encode_history_snapshot`. ``InvalidInput`` for a malformed snapshot,
    an unknown ``storage_version``, a DeviceGroup (joined by its Welcome, never imported),
    another layout, or state of another group than the snapshot names."""
    snap = GroupStateSnapshot.decode(data)
    if snap.storage_version != STATE_STORE_VERSION:
        raise InvalidInput(f"snapshot storage_version {snap.storage_version} is not supported (this SDK reads {STATE_STORE_VERSION})")
    conv_id = snap.group_id
    if conv_id.is_device_group_id:
        raise InvalidInput("a DeviceGroup is joined by its Welcome, not imported")
    entries = dict(snap.entries)
    history_names = {k for k in entries if k.startswith("h/")}
    if "meta" not in entries or "cursor" not in entries or set(entries) - {"meta", "cursor"} != history_names:
        raise InvalidInput("the snapshot does not have the history-only layout")
    meta = ConversationMeta.decode(entries["meta"])
    cursor = SyncCursor.decode(entries["cursor"])
    if meta.id != conv_id:
        raise InvalidInput("the snapshot's meta is for another conversation")
    records = {k[2:]: entries[k] for k in history_names}
    try:
        history = HistoryReader.from_records(crypto, records)
    except MlsError as exc:
        raise InvalidInput(f"the snapshot's state is malformed: {exc}") from None
    if history.view.group_id != conv_id.value:
        raise InvalidInput("the snapshot's state is for another group")
    meta = ConversationMeta(conv_id, meta.name, max(history.epochs), len(history.roster), False, meta.created_at_ms)
    return HistorySnapshot(meta, cursor, history, records)


# ---------------------------------------------------------------------------
# The conversation


def _encode_info(joined_epoch: int) -> bytes:
    return encode_record(_INFO_VERSION, {"joined_epoch": joined_epoch})


def _decode_info(data: bytes) -> int:
    return decode_record(data, what="ConversationInfo", version=_INFO_VERSION, keys=("joined_epoch",), max_size=64).get_uint("joined_epoch")


def _encode_leaves(leaves: Mapping[DeviceId, int]) -> bytes:
    return encode_record(_LEAVES_VERSION, {"leaves": [[d.value, leaf] for d, leaf in sorted(leaves.items(), key=lambda x: x[1])]})


def _decode_leaves(data: bytes) -> dict[DeviceId, int]:
    rec = decode_record(data, what="DeviceLeaves", version=_LEAVES_VERSION, keys=("leaves",), max_size=64 * 1024 * 1024)
    out: dict[DeviceId, int] = {}
    for item in rec.get_list("leaves", max_items=_MAX_LEAVES):
        pair = as_list(item, "DeviceLeaves.leaves[]", max_items=2)
        if len(pair) != 2:
            raise InvalidInput("DeviceLeaves.leaves[]: expected [device_id, leaf]")
        out[DeviceId(as_bytes(pair[0], "DeviceLeaves device_id", length=32))] = as_uint(pair[1], "DeviceLeaves leaf", max_value=_MAX_LEAVES)
    return out


class Conversation:
    """The cached state of one conversation (see the module docstring). Not thread-safe: the
    client takes :attr:`lock` around every change; reads need no lock."""

    __slots__ = (
        "id",
        "store",
        "crypto",
        "prefix",
        "lock",
        "meta",
        "cursor",
        "hlc",
        "joined_epoch",
        "op",
        "leaves",
        "_group",
        "_history",
        "_loaded",
        "_dirty",
        "_device_of_key",
        "seen_above_cursor",
        "departed",
        "_prune_below",
        "inbox",
        "_proposals_seen",
        "verifier",
        "problems",
        "heal_tried",
        "desynced",
        "adopt",
    )

    def __init__(
        self,
        conv_id: ConversationId,
        store: MlsStateStore,
        crypto: CryptoProvider,
        meta: ConversationMeta,
        cursor: SyncCursor,
        hlc: Hlc,
        joined_epoch: int,
        op: PendingOp | None,
        leaves: dict[DeviceId, int],
        verifier: AccountVerifier | None = None,
    ) -> None:
        self.id = conv_id
        # Checks every leaf that enters or changes the group and attributes members to accounts.
        self.verifier = verifier
        # What following the log met since the last sync report (in memory; see ping_core.sync).
        self.problems: list[SyncProblem] = []
        # Our epoch when this device last tried to rejoin (once per epoch; in memory).
        self.heal_tried: int | None = None
        # This device found the group moved on without it (it heals when it can; in memory).
        self.desynced = False
        # The client's policy applied to every group this conversation loads or installs.
        self.adopt: Callable[[Group], None] | None = None
        self.store = store
        self.crypto = crypto
        self.prefix = conversation_prefix(conv_id)
        self.lock = asyncio.Lock()
        self.meta = meta
        self.cursor = cursor
        self.hlc = hlc
        self.joined_epoch = joined_epoch
        self.op = op
        self.leaves = leaves
        self._group: Group | None = None
        self._history: HistoryReader | None = None
        self._loaded = False
        self._dirty: set[str] = set()
        self._device_of_key: dict[bytes, DeviceId] = {}
        # Log positions above the cursor already processed out of order (live pushes), in memory only.
        self.seen_above_cursor: set[int] = set()
        # Accounts of devices that left the group (for late messages of past epochs), in memory only.
        self.departed: dict[DeviceId, UserId] = {}
        self._prune_below: int | None = None
        # Decrypted messages not acknowledged by the app (records under i/, see ping_core.unacked).
        self.inbox = Inbox()
        # (epoch, now_ms) when this client first saw proposals pending in that epoch; in memory only.
        self._proposals_seen: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"Conversation(id={self.id.as_hex()}, epoch={self.meta.epoch}, cursor={self.cursor.seq})"

    # -- loading -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        store: MlsStateStore,
        crypto: CryptoProvider,
        conv_id: ConversationId,
        inbox_names: Iterable[str] | None = None,
        *,
        verifier: AccountVerifier | None = None,
    ) -> Conversation:
        """The conversation's header records (meta, cursor, clock, info, op, leaves) and its inbox
        index (``inbox_names``: the names under ``i/``, when the caller listed them already); the
        group and history are parsed on first use. ``InvalidInput`` when a header record is corrupt."""
        p = conversation_prefix(conv_id)
        raw_meta = store.get(p + "meta")
        if raw_meta is None:
            raise InvalidInput("the conversation has no meta record")
        meta = ConversationMeta.decode(raw_meta)
        if meta.id != conv_id:
            raise InvalidInput("the meta record names another conversation")
        raw = store.get(p + "cursor")
        cursor = SyncCursor.decode(raw) if raw is not None else SyncCursor()
        raw = store.get(p + "clock")
        hlc = Hlc.decode(raw) if raw is not None else Hlc.ZERO
        raw = store.get(p + "info")
        joined = _decode_info(raw) if raw is not None else 0
        raw = store.get(p + "op")
        op = PendingOp.decode(raw) if raw is not None else None
        raw = store.get(p + "leaves")
        leaves = _decode_leaves(raw) if raw is not None else {}
        if store.get(p + "g/state") is None and store.get(p + "h/roster") is None:
            raise InvalidInput("the conversation has neither group nor history records")
        conv = cls(conv_id, store, crypto, meta, cursor, hlc, joined, op, leaves, verifier)
        if inbox_names is None:
            n = len(p) + len(INBOX_DIR)
            inbox_names = [k[n:] for k in store.keys(p + INBOX_DIR)]
        conv.inbox = Inbox(inbox_names)
        return conv

    def _load(self) -> None:
        if self._loaded:
            return
        try:
            g_records = {k[len(self.prefix) + 2 :]: v for k, v in self.store.items(self.prefix + "g/")}
            group = (
                Group.from_records(
                    self.crypto, g_records, clock=wall_clock_s, max_lifetime_s=MAX_LEAF_LIFETIME_S, leaf_check=self._leaf_check(),
                    extensions_check=check_extensions,
                )
                if g_records
                else None
            )
            h_records = {k[len(self.prefix) + 2 :]: v for k, v in self.store.items(self.prefix + "h/")}
            history = HistoryReader.from_records(self.crypto, h_records) if h_records else None
        except PingError as exc:
            raise StorageError(
                f"conversation {self.id.as_hex()}: stored state is corrupt ({type(exc).__name__})"
            ) from None
        if group is not None and group.group_id != self.id.value:
            raise StorageError(f"conversation {self.id.as_hex()}: stored group is another group")
        if group is not None and self.adopt is not None:
            self.adopt(group)
        self._group, self._history, self._loaded = group, history, True

    def _leaf_check(self) -> LeafCheck | None:
        return self.verifier.check_leaf if self.verifier is not None else None

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def group(self) -> Group | None:
        """The live MLS group (``None`` for a history-only conversation). Parses on first use;
        ``StorageError`` when the stored records are corrupt."""
        self._load()
        return self._group

    @property
    def history(self) -> HistoryReader | None:
        self._load()
        return self._history

    def live_group(self) -> Group:
        """The live group, or ``InvalidInput`` for a history-only conversation."""
        g = self.group
        if g is None:
            raise InvalidInput(
                f"conversation {self.id.as_hex()} is history-only: it waits for this device's own Welcome"
            )
        return g

    def reload(self) -> None:
        """Drop every cached value and re-read the records (after an undo)."""
        fresh = Conversation.open(self.store, self.crypto, self.id, verifier=self.verifier)
        self.meta, self.cursor, self.hlc = fresh.meta, fresh.cursor, fresh.hlc
        self.joined_epoch, self.op, self.leaves = fresh.joined_epoch, fresh.op, fresh.leaves
        # What was handed to the app stays handed out (it must not be delivered twice).
        self.inbox = Inbox(fresh.inbox.undelivered(), self.inbox.handed())
        self._group = self._history = None
        self._loaded = False
        self._dirty.clear()
        self._prune_below = None

    # -- derived facts -------------------------------------------------------

    def device_of_key(self, signature_key: bytes) -> DeviceId:
        """DeviceId = SHA-256 of a leaf signature key (memoised)."""
        dev = self._device_of_key.get(signature_key)
        if dev is None:
            dev = DeviceId(hashlib.sha256(signature_key).digest())
            self._device_of_key[signature_key] = dev
        return dev

    def members(self) -> list[MemberInfo]:
        """The roster (live group's, else the imported history's)."""
        g = self.group
        if g is None:
            return list(self.history.roster) if self.history is not None else []
        verifier = self.verifier
        return [
            MemberInfo(m.leaf_index, verifier.user_of(m) if verifier is not None else None, self.device_of_key(m.signature_key))
            for m in g.members()
        ]

    def proposals_pending_since(self, epoch: int, now_ms: int) -> int:
        """When this client first noticed proposals pending in ``epoch`` (``now_ms`` the first time
        it is asked for that epoch). In memory only: a restart starts the clock again."""
        seen = self._proposals_seen
        if seen is None or seen[0] != epoch:
            seen = self._proposals_seen = (epoch, now_ms)
        return seen[1]

    # -- the inbox -----------------------------------------------------------

    def keep_incoming(self, msg: IncomingMessage, undo: StoreUndo) -> str:
        """Write ``msg`` to the inbox (working set: durable with the state that consumed it)."""
        name = inbox_name(msg)
        undo.put(self.prefix + INBOX_DIR + name, encode_incoming(msg))
        self.inbox.add(name)
        return name

    def read_incoming(self, name: str) -> IncomingMessage | None:
        """The inbox message ``name``; ``None`` (and the record is deleted, with a warning)
        when it is missing or unreadable."""
        raw = self.store.get(self.prefix + INBOX_DIR + name)
        if raw is not None:
            try:
                return decode_incoming(self.id, raw)
            except InvalidInput as exc:
                log.warning("conversation %s: inbox record %s is unreadable (%s); dropped", self.id.as_hex(), name, exc)
        self.drop_incoming(name)
        return None

    def drop_incoming(self, name: str) -> None:
        """Delete an inbox record (an acknowledgement: straight to the working set, never undone)."""
        self.store.delete(self.prefix + INBOX_DIR + name)
        self.inbox.remove(name)

    # -- envelopes of a later epoch, held until its commit ---------------------------

    def hold(self, env: MessageEnvelope, undo: StoreUndo) -> bool:
        """Keep ``env`` (of a later epoch than ours) durably with the state that consumed its log
        position; False when the conversation already holds ``MAX_HELD`` envelopes."""
        if len(self.store.keys(self.prefix + HELD_DIR)) >= MAX_HELD:
            return False
        undo.put(f"{self.prefix}{HELD_DIR}{env.epoch:016x}-{env.seq:016x}", env.encode())
        return True

    def held(self, up_to_epoch: int) -> list[tuple[str, MessageEnvelope | None]]:
        """The held envelopes of epochs up to ``up_to_epoch``, oldest epoch and seq first (``None``
        for a record that no longer decodes), with their record keys."""
        out: list[tuple[str, MessageEnvelope | None]] = []
        n = len(self.prefix) + len(HELD_DIR)
        for key in sorted(self.store.keys(self.prefix + HELD_DIR)):
            try:
                epoch = int(key[n : n + 16], 16)
            except ValueError:
                epoch = -1
            if epoch > up_to_epoch:
                break
            raw = self.store.get(key)
            env = None
            if raw is not None:
                try:
                    env = MessageEnvelope.decode(raw)
                except InvalidInput:
                    env = None
            out.append((key, env))
        return out

    def held_count(self) -> int:
        return len(self.store.keys(self.prefix + HELD_DIR))

    # -- changes -------------------------------------------------------------

    def set_meta(self, meta: ConversationMeta) -> None:
        if meta != self.meta:
            self.meta = meta
            self._dirty.add("meta")

    def set_cursor(self, cursor: SyncCursor) -> None:
        if cursor != self.cursor:
            self.cursor = cursor
            self.seen_above_cursor = {s for s in self.seen_above_cursor if s > cursor.seq}
            self._dirty.add("cursor")

    def set_hlc(self, hlc: Hlc) -> None:
        if hlc != self.hlc:
            self.hlc = hlc
            self._dirty.add("clock")

    def set_op(self, op: PendingOp | None) -> None:
        if op != self.op:
            self.op = op
            self._dirty.add("op")

    def set_joined_epoch(self, epoch: int) -> None:
        if epoch != self.joined_epoch:
            self.joined_epoch = epoch
            self._dirty.add("info")

    def refresh_from_group(self) -> None:
        """Recompute meta (epoch, member count, name) and the device->leaf map after a commit."""
        g = self.live_group()
        leaves = {self.device_of_key(m.signature_key): m.leaf_index for m in g.members()}
        if leaves != self.leaves:
            self.leaves = leaves
            self._dirty.add("leaves")
        self.set_meta(
            ConversationMeta(
                self.id,
                name_of(g.extensions),
                g.epoch,
                len(leaves),
                self.meta.is_device_group,
                self.meta.created_at_ms,
            )
        )

    def replace_group(self, group: Group, undo: StoreUndo) -> None:
        """Install a new live group (a join), deleting the old group's records."""
        self._load()
        undo.delete_prefix(self.prefix + "g/")
        self._group = group
        self._write_group(undo, full=True)

    def set_history(self, history: HistoryReader | None, records: Mapping[str, bytes], undo: StoreUndo) -> None:
        """Install imported history (its records, relative to ``h/``), or drop it."""
        self._load()
        undo.delete_prefix(self.prefix + "h/")
        for name, value in records.items():
            undo.put(self.prefix + "h/" + name, value)
        self._history = history

    def request_prune(self, keep_from_epoch: int) -> None:
        """Forget imported epochs older than ``keep_from_epoch`` at the next :meth:`save`."""
        if self._history is not None or not self._loaded:
            self._prune_below = keep_from_epoch

    def prune_history(self, undo: StoreUndo, keep_from_epoch: int) -> None:
        """Forget imported epochs older than ``keep_from_epoch`` (all of them when none is left)."""
        h = self.history
        if h is None or all(e >= keep_from_epoch for e in h.epochs):
            return
        if h.forget_before(keep_from_epoch):
            self._write_history(undo)
        else:
            undo.delete_prefix(self.prefix + "h/")
            self._history = None

    def _write_history(self, undo: StoreUndo) -> None:
        h = self._history
        if h is None:
            return
        ch = h.changes()
        for name, value in ch.written.items():
            undo.put(self.prefix + "h/" + name, value)
        for name in ch.deleted:
            undo.delete(self.prefix + "h/" + name)
        h.mark_saved()

    def _write_group(self, undo: StoreUndo, *, full: bool = False) -> None:
        g = self._group
        if g is None:
            return
        gp = self.prefix + "g/"
        if full:
            for name, value in g.records().items():
                undo.put(gp + name, value)
        else:
            ch = g.changed_records()
            for name, value in ch.written.items():
                undo.put(gp + name, value)
            for name in ch.deleted:
                undo.delete(gp + name)
        g.mark_saved()

    def save(self, undo: StoreUndo) -> None:
        """Write every change since the last save to the store's working set (not yet durable)."""
        p = self.prefix
        if self._prune_below is not None:
            keep, self._prune_below = self._prune_below, None
            self.prune_history(undo, keep)
        if self._loaded:
            self._write_group(undo)
            self._write_history(undo)
        for name in self._dirty:
            if name == "meta":
                undo.put(p + "meta", self.meta.encode())
            elif name == "cursor":
                undo.put(p + "cursor", self.cursor.encode())
            elif name == "clock":
                undo.put(p + "clock", self.hlc.encode())
            elif name == "info":
                undo.put(p + "info", _encode_info(self.joined_epoch))
            elif name == "leaves":
                undo.put(p + "leaves", _encode_leaves(self.leaves))
            elif name == "op":
                if self.op is None:
                    undo.delete(p + "op")
                else:
                    undo.put(p + "op", self.op.encode())
        self._dirty.clear()

    @classmethod
    def create(
        cls,
        store: MlsStateStore,
        crypto: CryptoProvider,
        group: Group | None,
        meta: ConversationMeta,
        undo: StoreUndo,
        *,
        cursor: SyncCursor | None = None,
        joined_epoch: int = 0,
        history: tuple[HistoryReader, Mapping[str, bytes]] | None = None,
        verifier: AccountVerifier | None = None,
    ) -> Conversation:
        """A new conversation written to the working set (the caller checkpoints)."""
        conv = cls(meta.id, store, crypto, meta, cursor or SyncCursor(), Hlc.ZERO, joined_epoch, None, {}, verifier)
        undo.delete_prefix(conv.prefix)
        conv._loaded = True
        conv._group = group
        conv._dirty.update({"meta", "cursor", "clock", "info"})
        if group is not None:
            conv._write_group(undo, full=True)
            conv.refresh_from_group()
        if history is not None:
            conv.set_history(history[0], history[1], undo)
        conv.save(undo)
        return conv
