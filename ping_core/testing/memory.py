"""An in-process delivery service with the reference semantics, and a transport per device.

:class:`MemoryDeliveryService` behaves like ``ping_server`` (see
``ping_core.transport.base`` for the contract): one ordered log per
conversation numbered from 1, a Commit for any epoch but the current one
refused with 409 ``epoch_advanced``, conversation membership learnt from
routing (creator, Welcome recipients, declared Commit removals, after which a
removed device reads up to the removing Commit; DeviceGroups belong to their
owner's devices), a bounded Welcome inbox and a KeyPackage pool per device, registration checked against the account binding (trust on first use
of the account key), revocation only by the account's signed statement (kept and listed),
revoked devices refused with 403 ``device_revoked``, long
polling (``fetch_since(wait_ms=...)``, ``watch``), and the abuse limits of
:class:`~ping_core.transport.base.DeliveryLimits` (Welcomes from strangers and
pending memberships, storage quotas with each Welcome counted once for its
sender, KeyPackage claims per window, ``leave_conversation``). Envelopes
cross it as encoded bytes (like the wire), so what a client gets back is never
an object another client holds.

Fault injection, for the SDK's failure-path and crash tests::

    service.inject("send", Fault.TIMEOUT_AFTER_APPLY, kind=MessageKind.COMMIT)

makes the next matching call apply the request and then raise an ambiguous
``TransportError`` (no status, code ``timeout``). The faults:

==========================  =========  ===========================================
fault                       applied?   raised
==========================  =========  ===========================================
``REJECT``                  no         status 400..499 (default 409), code given
                                       (default ``conflict``): definite rejection
``SERVER_ERROR``            no         status 503, code ``server_error``
``TIMEOUT_BEFORE_APPLY``    no         no status, code ``timeout``
``TIMEOUT_AFTER_APPLY``     yes        no status, code ``timeout``
``SERVER_ERROR_AFTER_APPLY`` yes       status 500, code ``server_error``
==========================  =========  ===========================================

Each call yields to the event loop once, so concurrent SDK operations
interleave as they would over a network.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from ping_core.device import DeviceInfo, LocalDevice
from ping_core.errors import IdentityError, InvalidInput, TransportError
from ping_core.identity import DeviceBinding, DeviceRevocation, Identity
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor

from ping_core.transport.handshake import CheckedCommit, check_commit, check_proposal
from ping_core.transport.base import (
    MAX_CLAIM_COUNT,
    MAX_EPOCH,
    MAX_FETCH_LIMIT,
    MAX_FETCH_WAIT_MS,
    MAX_KEY_PACKAGE_LEN,
    MAX_KEY_PACKAGES_PER_PUBLISH,
    MAX_REVOCATION_LIST,
    MAX_WATCH_CONVERSATIONS,
    DEVICE_REVOKED,
    DeliveryLimits,
    KeyPackageCount,
    PendingRouting,
    WatchResult,
    revocation_refusal,
    within,
)

_MAX_SEQ = (1 << 63) - 1

__all__ = ["MemoryDeliveryService", "MemoryTransport", "Fault"]


class Fault(enum.Enum):
    """A failure :meth:`MemoryDeliveryService.inject` can schedule (see module docstring)."""

    REJECT = "reject"
    SERVER_ERROR = "server_error"
    TIMEOUT_BEFORE_APPLY = "timeout_before_apply"
    TIMEOUT_AFTER_APPLY = "timeout_after_apply"
    SERVER_ERROR_AFTER_APPLY = "server_error_after_apply"


_APPLIES = {Fault.TIMEOUT_AFTER_APPLY, Fault.SERVER_ERROR_AFTER_APPLY}


@dataclass
class _FaultRule:
    method: str
    fault: Fault
    kind: MessageKind | None
    device: DeviceId | None
    conversation: ConversationId | None
    remaining: int
    status: int
    code: str


@dataclass
class _Log:
    entries: list[bytes] = field(default_factory=list)  # encoded envelopes, seq = index + 1
    epoch: int | None = None  # the epoch the next Commit must carry; None until the first Commit
    members: set[DeviceId] = field(default_factory=set)  # unused for a DeviceGroup (implicit)
    # Members a stranger's Welcome made that have not consented yet (read, posted, or welcomed by a non-stranger).
    pending: set[DeviceId] = field(default_factory=set)
    size: int = 0  # bytes of the stored entries
    # Devices removed by a Commit -> that Commit's seq (they read up to it); cleared by a new Welcome.
    removed: dict[DeviceId, int] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set and replaced on each append
    # A verified conversation (``handshake``): its public group state, the latest GroupInfo, and
    # the devices the latest Commit added (the only Welcome recipients).
    public: bytes | None = None
    group_info: bytes | None = None
    welcome_to: frozenset[DeviceId] = frozenset()


@dataclass
class _Payload:
    """A Welcome as the server stores it: once, charged to its sender, until its last recipient drops it."""

    sender: UserId
    size: int
    refs: int


@dataclass
class _InboxItem:
    data: bytes  # the encoded Welcome envelope with its inbox seq
    seq: int
    conversation_id: ConversationId
    payload: _Payload
    stranger: UserId | None  # the sender account when it was a stranger to the recipient


@dataclass
class _Device:
    info: DeviceInfo
    revoked: bool = False
    revocation: bytes | None = None  # the account's DeviceRevocation, encoded (None: none kept)
    revocation_order: int = 0  # when it was kept (larger: newer)
    key_packages: deque[bytes] = field(default_factory=deque)
    last_resort: bytes | None = None
    inbox: list[_InboxItem] = field(default_factory=list)
    inbox_next: int = 1
    claim_window: int = 0  # KeyPackage claims by other accounts in this window
    window_claims: int = 0


class MemoryDeliveryService:
    """The delivery service, in memory. Get a device's view with :meth:`transport` or :meth:`connect`.

    ``require_registration`` (default True) refuses every call but
    ``register_device`` from a device that has not registered (401
    ``unauthorized``), like the real server. ``limits`` are the server's abuse
    limits (default: the server's defaults); ``inbox_entries`` / ``inbox_bytes``
    override its inbox bounds (409 ``inbox_full``). ``clock_ms`` gives the time
    of the KeyPackage claim windows.
    """

    def __init__(
        self,
        *,
        require_registration: bool = True,
        limits: DeliveryLimits | None = None,
        inbox_entries: int | None = None,
        inbox_bytes: int | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.require_registration = require_registration
        limits = limits or DeliveryLimits()
        if inbox_entries is not None or inbox_bytes is not None:
            limits = dataclasses.replace(
                limits,
                inbox_entries=limits.inbox_entries if inbox_entries is None else inbox_entries,
                inbox_bytes=limits.inbox_bytes if inbox_bytes is None else inbox_bytes,
            )
        self.limits = limits
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._stored: dict[UserId, int] = {}  # bytes each account stores (DeliveryLimits.account_bytes)
        self._claims: dict[tuple[DeviceId, UserId], tuple[int, int]] = {}  # (device, claimer) -> (window, claimed)
        self._logs: dict[ConversationId, _Log] = {}
        # Conversations that do not exist yet, waited on by long polls.
        self._pending: dict[ConversationId, asyncio.Event] = {}
        # Set and replaced on every change a ``watch`` may report (append, Welcome, revocation).
        self._changed = asyncio.Event()
        self._devices: dict[DeviceId, _Device] = {}
        self._accounts: dict[UserId, bytes] = {}
        self._revocations = 0  # revocations kept so far (their order)
        self._faults: list[_FaultRule] = []
        self.calls: list[tuple[str, DeviceId]] = []  # (method, caller), for assertions

    # -- setup ----------------------------------------------------------

    def transport(self, device_id: DeviceId) -> "MemoryTransport":
        """A transport authenticated as ``device_id``."""
        return MemoryTransport(self, device_id)

    async def connect(self, identity: Identity, device: LocalDevice, now_ms: int = 0) -> "MemoryTransport":
        """Register ``device`` under ``identity`` and return its transport."""
        transport = self.transport(device.device_id)
        await transport.register_device(device.info(now_ms), identity.device_binding(device.device_id))
        return transport

    def inject(
        self,
        method: str,
        fault: Fault,
        *,
        kind: MessageKind | None = None,
        device: DeviceId | None = None,
        conversation: ConversationId | None = None,
        count: int = 1,
        status: int = 409,
        code: str = "conflict",
    ) -> None:
        """Make the next ``count`` calls of ``method`` that match (envelope ``kind``, calling
        ``device``, ``conversation``) fail with ``fault``. ``status``/``code`` apply to REJECT."""
        if fault is Fault.REJECT and not 400 <= status < 500:
            raise InvalidInput("a REJECT fault needs a 4xx status")
        self._faults.append(_FaultRule(method, fault, kind, device, conversation, count, status, code))

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- inspection (tests) ------------------------------------------------

    def log(self, conversation_id: ConversationId) -> list[MessageEnvelope]:
        """The conversation's log, decoded."""
        log = self._logs.get(conversation_id)
        return [MessageEnvelope.decode(b) for b in log.entries] if log else []

    def epoch(self, conversation_id: ConversationId) -> int | None:
        """The epoch the next Commit must carry (None: no Commit seen yet)."""
        log = self._logs.get(conversation_id)
        return log.epoch if log else None

    def members(self, conversation_id: ConversationId) -> set[DeviceId]:
        """The devices that may read and post (a DeviceGroup: its owner's non-revoked devices)."""
        log = self._logs.get(conversation_id)
        if log is None:
            return set()
        if conversation_id.is_device_group_id:
            return {d.info.device_id for d in self._devices.values() if not d.revoked and self._owns(d, conversation_id)}
        return {m for m in log.members if not self._devices[m].revoked}

    def inbox(self, device_id: DeviceId) -> list[MessageEnvelope]:
        dev = self._devices.get(device_id)
        return [MessageEnvelope.decode(item.data) for item in dev.inbox] if dev else []

    def stored_bytes(self, user_id: UserId) -> int:
        """What the account stores as the server counts it (``DeliveryLimits.account_bytes``)."""
        return self._stored.get(user_id, 0)

    def key_package_count(self, device_id: DeviceId) -> int:
        dev = self._devices.get(device_id)
        return len(dev.key_packages) if dev else 0

    def is_revoked(self, device_id: DeviceId) -> bool:
        dev = self._devices.get(device_id)
        return bool(dev and dev.revoked)

    # -- request handling ----------------------------------------------------

    async def _enter(
        self,
        method: str,
        caller: DeviceId,
        *,
        kind: MessageKind | None = None,
        conversation: ConversationId | None = None,
        registration: bool = False,
        revoked_ok: bool = False,
    ) -> Fault | None:
        """Yield once, authenticate the caller, and pick the fault (if any) for this call.

        A fault that does not apply the request raises here.
        """
        await asyncio.sleep(0)
        self.calls.append((method, caller))
        fault = self._take_fault(method, caller, kind, conversation)
        if fault is not None and fault[0] not in _APPLIES:
            _raise(fault)
        if not registration:
            dev = self._devices.get(caller)
            if dev is None and self.require_registration:
                raise TransportError("device is not registered", status=401, code="unauthorized")
            if dev is not None and dev.revoked and not revoked_ok:
                raise _revoked()
        return fault[0] if fault is not None else None

    def _take_fault(
        self, method: str, caller: DeviceId, kind: MessageKind | None, conversation: ConversationId | None
    ) -> tuple[Fault, int, str] | None:
        for rule in self._faults:
            if rule.method != method:
                continue
            if rule.kind is not None and rule.kind != kind:
                continue
            if rule.device is not None and rule.device != caller:
                continue
            if rule.conversation is not None and rule.conversation != conversation:
                continue
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._faults.remove(rule)
            return (rule.fault, rule.status, rule.code)
        return None

    @staticmethod
    def _after(fault: Fault | None) -> None:
        """Raise the ambiguous error of a fault that lets the request apply."""
        if fault is Fault.TIMEOUT_AFTER_APPLY:
            raise TransportError("timed out (the server applied the request)", status=None, code="timeout")
        if fault is Fault.SERVER_ERROR_AFTER_APPLY:
            raise TransportError("server error after applying", status=500, code="server_error")

    # conversation logs

    # membership

    def _owns(self, dev: _Device, conversation_id: ConversationId) -> bool:
        return ConversationId.device_group(dev.info.user_id) == conversation_id

    def _admit(self, caller: DeviceId, conversation_id: ConversationId) -> _Log | None:
        """The log the caller may post to (None: the conversation does not exist yet and the
        caller may create it). 403 for a non-member or another user's DeviceGroup."""
        log = self._logs.get(conversation_id)
        if conversation_id.is_device_group_id:
            if not self._owns(self._devices[caller], conversation_id):
                raise TransportError("another user's device group", status=403, code="forbidden")
        elif log is not None and caller not in log.members:
            raise TransportError("not a member of this conversation", status=403, code="forbidden")
        return log

    def _create(self, caller: DeviceId, conversation_id: ConversationId) -> _Log:
        log = _Log()
        if not conversation_id.is_device_group_id:
            log.members.add(caller)
        self._logs[conversation_id] = log
        waiting = self._pending.pop(conversation_id, None)
        if waiting is not None:
            waiting.set()
        return log

    # conversation logs

    def _quota(self, message: str) -> TransportError:
        return TransportError(message, status=413, code="quota_exceeded")

    def _account_room(self, user_id: UserId, size: int) -> None:
        limit = self.limits.account_bytes
        if size > 0 and not within(limit, self._stored.get(user_id, 0) + size):
            raise self._quota("over the account's storage quota")

    def _charge(self, user_id: UserId, delta: int) -> None:
        self._stored[user_id] = self._stored.get(user_id, 0) + delta

    def _log_room(self, log: _Log | None, size: int) -> None:
        entries, held = (0, 0) if log is None else (len(log.entries), log.size)
        if not within(self.limits.conversation_envelopes, entries + 1):
            raise self._quota("the conversation's log holds its quota of envelopes")
        if not within(self.limits.conversation_bytes, held + size):
            raise self._quota("over the conversation's storage quota")

    async def _send(
        self, caller: DeviceId, data: bytes, welcome_to: list[DeviceId] | None, removes: list[DeviceId], group_info: bytes | None = None
    ) -> int:
        env = MessageEnvelope.decode(data)
        fault = await self._enter("send", caller, kind=env.kind, conversation=env.conversation_id)
        if env.sender_device != caller:
            raise TransportError("sender_device is not the authenticated device", status=403, code="forbidden")
        if env.kind is MessageKind.WELCOME:
            self._welcome(caller, env, welcome_to or [])
            self._after(fault)
            return 0
        if (removes or group_info is not None) and env.kind is not MessageKind.COMMIT:
            raise TransportError("removals and a GroupInfo ride only on a Commit", status=400, code="invalid_request")
        log = self._admit(caller, env.conversation_id)
        next_epoch = None if log is None else log.epoch
        public = None if log is None else log.public
        checked: CheckedCommit | None = None
        if env.kind is MessageKind.COMMIT:
            if next_epoch is not None and env.epoch != next_epoch:
                raise TransportError(
                    f"commit for epoch {env.epoch}, conversation is at {next_epoch}", status=409, code="epoch_advanced"
                )
            if env.epoch > MAX_EPOCH:
                raise TransportError("epoch out of range", status=400, code="invalid_request")
            next_epoch = env.epoch + 1
            checked = check_commit(public, env.conversation_id, caller, env.epoch, env.payload, group_info)
            if checked is not None:
                public, removes = checked.state, list(checked.removed)
        elif env.kind is MessageKind.PROPOSAL and public is not None:
            if env.epoch != next_epoch:
                raise TransportError(f"proposal for epoch {env.epoch}, conversation is at {next_epoch}", status=409, code="epoch_advanced")
            public = check_proposal(public, env.payload)
        seq = 1 if log is None else len(log.entries) + 1
        stored = env.with_seq(seq).encode()
        self._log_room(log, len(stored))
        user = self._devices[caller].info.user_id
        self._account_room(user, len(stored))
        # Every check passed: apply.
        if log is None:
            log = self._create(caller, env.conversation_id)
        log.epoch = next_epoch
        log.public = public
        if checked is not None:
            log.group_info, log.welcome_to = checked.group_info, checked.added
        if not env.conversation_id.is_device_group_id:
            for device_id in removes:
                if device_id in log.members:
                    log.members.discard(device_id)
                    log.pending.discard(device_id)
                    log.removed[device_id] = seq
        log.entries.append(stored)
        log.size += len(stored)
        log.pending.discard(caller)  # posting consents to a pending membership
        self._charge(user, len(stored))
        log.arrived.set()
        log.arrived = asyncio.Event()
        self._announce()
        self._after(fault)
        return seq

    def _related(self, sender: UserId, recipient: UserId) -> bool:
        """The same account, or a conversation where a device of each is a current, consented member."""
        if sender == recipient:
            return True
        for log in self._logs.values():
            consented = [self._devices[m].info.user_id for m in log.members - log.pending if not self._devices[m].revoked]
            if sender in consented and recipient in consented:
                return True
        return False

    def _welcome(self, caller: DeviceId, env: MessageEnvelope, welcome_to: list[DeviceId]) -> None:
        if not welcome_to:
            raise TransportError("a Welcome needs recipients", status=400, code="invalid_request")
        log = self._admit(caller, env.conversation_id)
        limits = self.limits
        sender = self._devices[caller].info.user_id
        related: dict[UserId, bool] = {}
        targets = []
        for device_id in welcome_to:
            dev = self._devices.get(device_id)
            if dev is None or dev.revoked:
                raise TransportError("unknown or revoked Welcome recipient", status=404, code="not_found")
            if env.conversation_id.is_device_group_id and not self._owns(dev, env.conversation_id):
                raise TransportError("a device group admits its owner's devices only", status=403, code="forbidden")
            if log is not None and log.public is not None and device_id not in log.welcome_to:
                raise TransportError("a Welcome goes only to devices the latest Commit added", status=403, code="forbidden")
            data = env.with_seq(dev.inbox_next).encode()
            if not within(limits.inbox_entries, len(dev.inbox) + 1) or not within(
                limits.inbox_bytes, sum(len(i.data) for i in dev.inbox) + len(data)
            ):
                raise TransportError("a recipient's Welcome inbox is full", status=409, code="inbox_full")
            user = dev.info.user_id
            if user not in related:
                related[user] = self._related(sender, user)
            if not related[user]:
                strangers = [i for i in dev.inbox if i.stranger is not None]
                if limits.stranger_per_sender and sum(i.stranger == sender for i in strangers) >= limits.stranger_per_sender:
                    raise TransportError("too many unacknowledged Welcomes from this account", status=409, code="invite_limit")
                if not within(limits.stranger_entries, len(strangers) + 1) or not within(
                    limits.stranger_bytes, sum(len(i.data) for i in strangers) + len(data)
                ):
                    raise TransportError("too many Welcomes from strangers", status=409, code="invite_limit")
            targets.append((dev, data, not related[user]))
        payload_size = len(env.with_seq(0).encode())
        self._account_room(sender, payload_size)
        if log is None:
            log = self._create(caller, env.conversation_id)
        payload = _Payload(sender, payload_size, len(targets))
        self._charge(sender, payload_size)
        log.pending.discard(caller)  # welcoming others consents to a pending membership
        for dev, data, stranger in targets:
            dev.inbox.append(_InboxItem(data, dev.inbox_next, env.conversation_id, payload, sender if stranger else None))
            dev.inbox_next += 1
            if not env.conversation_id.is_device_group_id:
                device_id = dev.info.device_id
                if stranger and not (device_id in log.members and device_id not in log.pending):
                    log.pending.add(device_id)
                elif not stranger:
                    log.pending.discard(device_id)
                log.members.add(device_id)
                log.removed.pop(device_id, None)
        self._announce()

    def _drop_inbox(self, dev: _Device, drop: Callable[[_InboxItem], bool]) -> None:
        kept = []
        for item in dev.inbox:
            if not drop(item):
                kept.append(item)
                continue
            item.payload.refs -= 1
            if item.payload.refs == 0:
                self._charge(item.payload.sender, -item.payload.size)
        dev.inbox = kept

    def _announce(self) -> None:
        """Wake every ``watch`` waiting: something it may report changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _fetch_since(
        self, caller: DeviceId, conversation_id: ConversationId, cursor: SyncCursor, limit: int, wait_ms: int
    ) -> list[bytes]:
        if type(limit) is not int or not 1 <= limit <= MAX_FETCH_LIMIT:
            raise TransportError(f"limit must be 1..{MAX_FETCH_LIMIT}", status=400, code="invalid_request")
        if type(wait_ms) is not int or not 0 <= wait_ms <= MAX_FETCH_WAIT_MS:
            raise TransportError(f"wait_ms must be 0..{MAX_FETCH_WAIT_MS}", status=400, code="invalid_request")
        fault = await self._enter("fetch_since", caller, conversation=conversation_id)
        deadline = asyncio.get_running_loop().time() + wait_ms / 1000
        while True:
            log = self._logs.get(conversation_id)
            end = None
            if log is not None:
                end = log.removed.get(caller) if caller not in log.members else None
                if end is None:
                    self._admit(caller, conversation_id)
                    log.pending.discard(caller)  # reading consents to a pending membership
                elif cursor.seq >= end:
                    raise TransportError(f"removed from this conversation at seq {end}", status=403, code="forbidden")
            stop = cursor.seq + limit if end is None else min(cursor.seq + limit, end)
            out = log.entries[cursor.seq : stop] if log else []
            remaining = deadline - asyncio.get_running_loop().time()
            if out or remaining <= 0:
                break
            if log is not None:
                event = log.arrived
            else:
                event = self._pending.setdefault(conversation_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass
            dev = self._devices.get(caller)
            if dev is not None and dev.revoked:  # revoked while waiting
                raise _revoked()
        self._after(fault)
        return list(out)

    def _readable_head(self, caller: DeviceId, conversation_id: ConversationId, after: int) -> int | None:
        """The seq of the last envelope the caller may read (0: none yet), or None when it may not
        read from ``after`` on (``_fetch_since`` would refuse 403)."""
        log = self._logs.get(conversation_id)
        if log is None:
            return 0
        if conversation_id.is_device_group_id:
            return len(log.entries) if self._owns(self._devices[caller], conversation_id) else None
        if caller in log.members:
            return len(log.entries)
        end = log.removed.get(caller)
        return None if end is None or after >= end else end

    async def _watch(self, caller: DeviceId, positions: Mapping[ConversationId, int], wait_ms: int) -> WatchResult:
        for cid, seq in positions.items():
            if not isinstance(cid, ConversationId) or type(seq) is not int:
                raise InvalidInput("watch positions map ConversationId -> int")  # as the wire client does
            if not 0 <= seq <= _MAX_SEQ:
                raise TransportError("a watch position's seq is 0..2**63-1", status=400, code="invalid_request")
        if type(wait_ms) is not int:
            raise InvalidInput("wait_ms must be an integer")
        if not 0 <= wait_ms <= MAX_FETCH_WAIT_MS:
            raise TransportError(f"wait_ms must be 0..{MAX_FETCH_WAIT_MS}", status=400, code="invalid_request")
        if len(positions) > MAX_WATCH_CONVERSATIONS:
            raise TransportError(f"more than {MAX_WATCH_CONVERSATIONS} conversations", status=413, code="too_large")
        asked = dict(positions)
        fault = await self._enter("watch", caller)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        while True:
            dev = self._devices.get(caller)
            if dev is not None and dev.revoked:  # revoked while waiting
                raise _revoked()
            heads: dict[ConversationId, int] = {}
            forbidden: set[ConversationId] = set()
            for cid, after in asked.items():
                head = self._readable_head(caller, cid, after)
                if head is None:
                    forbidden.add(cid)
                elif head > after:
                    heads[cid] = head
            result = WatchResult(heads, frozenset(forbidden), bool(dev and dev.inbox))
            remaining = deadline - loop.time()
            if result.news or remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        self._after(fault)
        return result

    # directory

    async def _register(self, caller: DeviceId, info: DeviceInfo, binding: DeviceBinding) -> None:
        fault = await self._enter("register_device", caller, registration=True)
        if info.device_id != caller:
            raise TransportError("a device registers itself only", status=403, code="forbidden")
        try:
            info.verify()
            binding.verify()
        except IdentityError as exc:
            raise TransportError(f"registration refused: {exc}", status=400, code="invalid_request") from None
        if binding.device_id != info.device_id or binding.user_id != info.user_id:
            raise TransportError("binding is for another device or account", status=400, code="invalid_request")
        known_key = self._accounts.get(info.user_id)
        if known_key is not None and known_key != binding.user_public_key:
            raise TransportError("account key differs from the registered one", status=403, code="forbidden")
        dev = self._devices.get(info.device_id)
        if dev is not None and dev.revoked:
            raise _revoked()
        self._accounts[info.user_id] = binding.user_public_key
        if dev is None:
            self._devices[info.device_id] = _Device(info)
        else:
            dev.info = info
        self._after(fault)

    def _active(self, user_id: UserId) -> list[_Device]:
        return [d for d in self._devices.values() if d.info.user_id == user_id and not d.revoked]

    async def _list_devices(self, caller: DeviceId, user_id: UserId) -> list[bytes]:
        fault = await self._enter("list_devices", caller)
        out = [d.info.encode() for d in self._active(user_id)]
        self._after(fault)
        return out

    async def _revoke(self, caller: DeviceId, device_id: DeviceId, revocation: DeviceRevocation) -> None:
        if revocation.device_id != device_id:
            raise TransportError("the revocation is for another device", status=400, code="invalid_request")
        fault = await self._enter("revoke_device_remote", caller)
        target = self._devices.get(device_id)
        if target is None:
            raise TransportError("unknown device", status=404, code="not_found")
        me = self._devices.get(caller)
        owner = target.info.user_id
        if me is None or me.info.user_id != owner:
            raise TransportError("only a device of the same account may deliver its revocation", status=403, code="forbidden")
        refusal = revocation_refusal(revocation, owner, self._accounts[owner])
        if refusal is not None:
            raise TransportError(refusal, status=403, code="forbidden")
        if target.revocation is None:
            self._revocations += 1
            target.revocation, target.revocation_order = revocation.encode(), self._revocations
        if not target.revoked:
            target.revoked = True
            held = sum(map(len, target.key_packages)) + len(target.last_resort or b"")
            self._charge(owner, -held)
            target.key_packages.clear()
            target.last_resort = None
            self._drop_inbox(target, lambda item: True)
            self._claims = {k: v for k, v in self._claims.items() if k[0] != device_id}
            for log in self._logs.values():
                log.members.discard(device_id)
                log.pending.discard(device_id)
                log.removed.pop(device_id, None)
        self._announce()
        self._after(fault)

    async def _list_revocations(self, caller: DeviceId, user_id: UserId) -> list[bytes]:
        me = self._devices.get(caller)
        if me is not None and me.revoked:
            # A revoked device gets its own statement, from its own account only (ping_server's rule).
            await self._enter("list_revocations", caller, revoked_ok=True)
            if me.info.user_id != user_id:
                raise _revoked()
            return [me.revocation] if me.revocation is not None else []
        fault = await self._enter("list_revocations", caller)
        kept = sorted(
            (d for d in self._devices.values() if d.info.user_id == user_id and d.revocation is not None),
            key=lambda d: -d.revocation_order,
        )
        out = [d.revocation for d in kept[:MAX_REVOCATION_LIST] if d.revocation is not None]
        self._after(fault)
        return out

    async def _publish(self, caller: DeviceId, key_packages: list[bytes], last_resort: bytes | None, replace: bool) -> None:
        if len(key_packages) > MAX_KEY_PACKAGES_PER_PUBLISH:
            raise TransportError("too many KeyPackages in one call", status=413, code="too_large")
        for kp in [*key_packages, *([last_resort] if last_resort is not None else [])]:
            if not isinstance(kp, bytes) or not kp or len(kp) > MAX_KEY_PACKAGE_LEN:
                raise TransportError("malformed KeyPackage", status=400, code="invalid_request")
        if type(replace) is not bool:
            raise InvalidInput("replace must be a bool")  # as the wire client does
        fault = await self._enter("publish_key_packages", caller)
        dev = self._devices.get(caller)
        if dev is None:
            raise TransportError("device is not registered", status=401, code="unauthorized")
        delta = sum(map(len, key_packages)) - (sum(map(len, dev.key_packages)) if replace else 0)
        if last_resort is not None:
            delta += len(last_resort) - len(dev.last_resort or b"")
        self._account_room(dev.info.user_id, delta)
        if replace:
            dev.key_packages.clear()
        dev.key_packages.extend(key_packages)
        if last_resort is not None:
            dev.last_resort = last_resort
        self._charge(dev.info.user_id, delta)
        self._after(fault)

    async def _key_package_count(self, caller: DeviceId) -> KeyPackageCount:
        fault = await self._enter("key_package_count", caller)
        dev = self._devices.get(caller)
        if dev is None:
            raise TransportError("device is not registered", status=401, code="unauthorized")
        count = KeyPackageCount(len(dev.key_packages), dev.last_resort is not None)
        self._after(fault)
        return count

    def _take(self, caller: DeviceId, dev: _Device, want: int) -> list[bytes]:
        """Up to ``want`` one-time KeyPackages of ``dev``, as far as the claim limits allow (see
        ``DeliveryLimits``); counted in the window's claim counters."""
        limits = self.limits
        claimer = self._devices[caller].info.user_id
        owner = dev.info.user_id
        limited = claimer != owner and bool(limits.claims_per_claimer or limits.claims_per_device)
        allowed = want
        if limited:
            window = self._clock_ms() // limits.claim_window_ms
            device_used = dev.window_claims if dev.claim_window == window else 0
            win, n = self._claims.get((dev.info.device_id, claimer), (window, 0))
            pair_used = n if win == window else 0
            if limits.claims_per_claimer:
                allowed = min(allowed, max(0, limits.claims_per_claimer - pair_used))
            if limits.claims_per_device:
                allowed = min(allowed, max(0, limits.claims_per_device - device_used))
        out = [dev.key_packages.popleft() for _ in range(min(allowed, len(dev.key_packages)))]
        if out:
            self._charge(owner, -sum(map(len, out)))
            if limited:
                self._claims[(dev.info.device_id, claimer)] = (window, pair_used + len(out))
                dev.claim_window, dev.window_claims = window, device_used + len(out)
        return out

    async def _claim(self, caller: DeviceId, user_id: UserId) -> list[tuple[DeviceId, bytes]]:
        fault = await self._enter("claim_key_packages", caller)
        out = []
        for dev in self._active(user_id):
            if dev.info.device_id == caller:
                continue
            taken = self._take(caller, dev, 1)
            kp = taken[0] if taken else dev.last_resort
            if kp is not None:
                out.append((dev.info.device_id, kp))
        self._after(fault)
        return out

    async def _claim_device(self, caller: DeviceId, device_id: DeviceId, count: int) -> list[bytes]:
        if type(count) is not int or not 1 <= count <= MAX_CLAIM_COUNT:
            raise TransportError(f"count must be 1..{MAX_CLAIM_COUNT}", status=400, code="invalid_request")
        fault = await self._enter("claim_device_key_packages", caller)
        dev = self._devices.get(device_id)
        if dev is None or dev.revoked:
            raise TransportError("unknown or revoked device", status=404, code="not_found")
        out = self._take(caller, dev, count)
        if dev.last_resort is not None:
            out.extend([dev.last_resort] * (count - len(out)))
        self._after(fault)
        return out

    async def _fetch_welcomes(self, caller: DeviceId) -> list[bytes]:
        fault = await self._enter("fetch_welcomes", caller)
        dev = self._devices.get(caller)
        out = [item.data for item in dev.inbox] if dev else []
        self._after(fault)
        return out

    async def _ack_welcomes(self, caller: DeviceId, up_to_seq: int) -> None:
        fault = await self._enter("ack_welcomes", caller)
        dev = self._devices.get(caller)
        if dev is not None:
            self._drop_inbox(dev, lambda item: item.seq <= up_to_seq)
        self._after(fault)

    async def _group_info(self, caller: DeviceId, conversation_id: ConversationId) -> bytes | None:
        if not isinstance(conversation_id, ConversationId):
            raise InvalidInput("fetch_group_info needs a ConversationId")
        fault = await self._enter("fetch_group_info", caller, conversation=conversation_id)
        log = self._admit(caller, conversation_id)
        out = None if log is None else log.group_info
        self._after(fault)
        return out

    async def _leave(self, caller: DeviceId, conversation_id: ConversationId) -> None:
        if not isinstance(conversation_id, ConversationId):
            raise InvalidInput("leave_conversation needs a ConversationId")
        if conversation_id.is_device_group_id:
            raise TransportError("a device group's members are its owner's devices", status=400, code="invalid_request")
        fault = await self._enter("leave_conversation", caller, conversation=conversation_id)
        dev = self._devices.get(caller)
        if dev is not None:
            self._drop_inbox(dev, lambda item: item.conversation_id == conversation_id)
        log = self._logs.get(conversation_id)
        if log is not None:
            log.members.discard(caller)
            log.pending.discard(caller)
            log.removed.pop(caller, None)
        self._announce()
        self._after(fault)


def _revoked() -> TransportError:
    return TransportError("device is revoked", status=403, code=DEVICE_REVOKED)


def _raise(fault: tuple[Fault, int, str]) -> None:
    kind, status, code = fault
    if kind is Fault.REJECT:
        raise TransportError(f"rejected ({code})", status=status, code=code)
    if kind is Fault.SERVER_ERROR:
        raise TransportError("service unavailable", status=503, code="server_error")
    raise TransportError("timed out (the server did not apply the request)", status=None, code="timeout")


class MemoryTransport:
    """One device's :class:`~ping_core.transport.base.Transport` to a :class:`MemoryDeliveryService`."""

    def __init__(self, service: MemoryDeliveryService, device_id: DeviceId) -> None:
        self.service = service
        self.device_id = device_id
        self._pending = PendingRouting()

    async def send(self, envelope: MessageEnvelope) -> int:
        if not isinstance(envelope, MessageEnvelope):
            raise InvalidInput("send needs a MessageEnvelope")
        recipients = None
        removes: list[DeviceId] = []
        group_info = None
        if envelope.kind is MessageKind.WELCOME:
            recipients = self._pending.welcome_recipients(envelope.conversation_id)
        elif envelope.kind is MessageKind.COMMIT:
            removes = self._pending.take_commit_removals(envelope.conversation_id)
            group_info = self._pending.take_commit_group_info(envelope.conversation_id)
        seq = await self.service._send(self.device_id, envelope.encode(), recipients, removes, group_info)
        if recipients is not None:
            self._pending.welcome_delivered(envelope.conversation_id)
        return seq

    async def fetch_since(
        self, conversation_id: ConversationId, cursor: SyncCursor, limit: int, *, wait_ms: int = 0
    ) -> list[MessageEnvelope]:
        return _decode_all(await self.service._fetch_since(self.device_id, conversation_id, cursor, limit, wait_ms))

    async def watch(self, positions: Mapping[ConversationId, int], *, wait_ms: int = 0) -> WatchResult:
        if not isinstance(positions, Mapping):
            raise InvalidInput("watch needs a mapping ConversationId -> seq")
        return await self.service._watch(self.device_id, positions, wait_ms)

    async def set_next_welcome_recipients(self, conversation_id: ConversationId, device_ids: list[DeviceId]) -> None:
        self._pending.set_welcome_recipients(conversation_id, device_ids)

    async def set_next_commit_removals(self, conversation_id: ConversationId, device_ids: list[DeviceId]) -> None:
        self._pending.set_commit_removals(conversation_id, device_ids)

    async def set_next_commit_group_info(self, conversation_id: ConversationId, group_info: bytes | None) -> None:
        self._pending.set_commit_group_info(conversation_id, group_info)

    async def fetch_group_info(self, conversation_id: ConversationId) -> bytes | None:
        return await self.service._group_info(self.device_id, conversation_id)

    async def register_device(self, info: DeviceInfo, binding: DeviceBinding) -> None:
        await self.service._register(self.device_id, DeviceInfo.decode(info.encode()), DeviceBinding.decode(binding.encode()))

    async def list_devices(self, user_id: UserId) -> list[DeviceInfo]:
        return [DeviceInfo.decode(b) for b in await self.service._list_devices(self.device_id, user_id)]

    async def revoke_device_remote(self, device_id: DeviceId, revocation: DeviceRevocation) -> None:
        if not isinstance(device_id, DeviceId) or not isinstance(revocation, DeviceRevocation):
            raise InvalidInput("revoke_device_remote needs a DeviceId and a DeviceRevocation")
        await self.service._revoke(self.device_id, device_id, DeviceRevocation.decode(revocation.encode()))

    async def list_revocations(self, user_id: UserId) -> list[DeviceRevocation]:
        if not isinstance(user_id, UserId):
            raise InvalidInput("list_revocations needs a UserId")
        return [DeviceRevocation.decode(b) for b in await self.service._list_revocations(self.device_id, user_id)]

    async def publish_key_packages(
        self, key_packages: list[bytes], last_resort: bytes | None = None, *, replace: bool = False
    ) -> None:
        await self.service._publish(self.device_id, list(key_packages), last_resort, replace)

    async def key_package_count(self) -> KeyPackageCount:
        return await self.service._key_package_count(self.device_id)

    async def claim_key_packages(self, user_id: UserId) -> list[tuple[DeviceId, bytes]]:
        return await self.service._claim(self.device_id, user_id)

    async def claim_device_key_packages(self, device_id: DeviceId, count: int) -> list[bytes]:
        return await self.service._claim_device(self.device_id, device_id, count)

    async def fetch_welcomes(self) -> list[MessageEnvelope]:
        return _decode_all(await self.service._fetch_welcomes(self.device_id))

    async def ack_welcomes(self, up_to_seq: int) -> None:
        await self.service._ack_welcomes(self.device_id, up_to_seq)

    async def leave_conversation(self, conversation_id: ConversationId) -> None:
        await self.service._leave(self.device_id, conversation_id)

    def __repr__(self) -> str:
        return f"MemoryTransport(device_id={self.device_id.as_hex()[:16]}...)"


def _decode_all(blobs: list[bytes], decode: Callable[[bytes], MessageEnvelope] = MessageEnvelope.decode) -> list[MessageEnvelope]:
    return [decode(b) for b in blobs]
