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

The devices, accounts, KeyPackage pools and quotas are
:class:`~ping_core.testing.device_directory.DeviceDirectory`'s, the base of the service;
what it stores is in :mod:`ping_core.testing.stored`, and the faults in
:mod:`ping_core.testing.faults`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Callable

from ping_core.device import DeviceInfo, LocalDevice
from ping_core.errors import InvalidInput, TransportError
from ping_core.identity import DeviceBinding, DeviceRevocation, Identity
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor
from ping_core.testing.device_directory import DeviceDirectory
from ping_core.testing.faults import Fault
from ping_core.testing.stored import Device, InboxItem, Log, Payload, revoked_error
from ping_core.transport.base import (
    MAX_EPOCH,
    MAX_FETCH_LIMIT,
    MAX_FETCH_WAIT_MS,
    MAX_WATCH_CONVERSATIONS,
    DeliveryLimits,
    KeyPackageCount,
    PendingRouting,
    RoutesNextCommit,
    WatchResult,
    revocation_refusal,
    within,
)
from ping_core.transport.handshake import CheckedCommit, check_commit, check_proposal

_MAX_SEQ = (1 << 63) - 1

__all__ = ["MemoryDeliveryService", "MemoryTransport", "Fault"]


class MemoryDeliveryService(DeviceDirectory):
    """The delivery service, in memory. Get a device's view with :meth:`transport` or :meth:`connect`.

    The devices, KeyPackage pools, quotas and faults are :class:`DeviceDirectory`'s
    (fault injection: ``inject`` and ``clear_faults``); this class adds the
    conversation logs, the Welcome inboxes, long polls and revocation.
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
        """``require_registration`` (default True) refuses every call but ``register_device``
        from a device that has not registered (401 ``unauthorized``), like the real server.
        ``limits`` are the server's abuse limits (default: the server's defaults);
        ``inbox_entries`` / ``inbox_bytes`` override its inbox bounds (409 ``inbox_full``).
        ``clock_ms`` gives the time of the KeyPackage claim windows."""
        limits = limits or DeliveryLimits()
        if inbox_entries is not None or inbox_bytes is not None:
            limits = dataclasses.replace(
                limits,
                inbox_entries=limits.inbox_entries if inbox_entries is None else inbox_entries,
                inbox_bytes=limits.inbox_bytes if inbox_bytes is None else inbox_bytes,
            )
        super().__init__(require_registration=require_registration, limits=limits, clock_ms=clock_ms)
        self._logs: dict[ConversationId, Log] = {}
        # Conversations that do not exist yet, waited on by long polls.
        self._pending: dict[ConversationId, asyncio.Event] = {}

    # -- setup ----------------------------------------------------------

    def transport(self, device_id: DeviceId) -> "MemoryTransport":
        """A transport authenticated as ``device_id``."""
        return MemoryTransport(self, device_id)

    async def connect(self, identity: Identity, device: LocalDevice, now_ms: int = 0) -> "MemoryTransport":
        """Register ``device`` under ``identity`` and return its transport."""
        transport = self.transport(device.device_id)
        await transport.register_device(device.info(now_ms), identity.device_binding(device.device_id))
        return transport

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

    # -- membership ---------------------------------------------------------

    def _owns(self, dev: Device, conversation_id: ConversationId) -> bool:
        return ConversationId.device_group(dev.info.user_id) == conversation_id

    def _admit(self, caller: DeviceId, conversation_id: ConversationId) -> Log | None:
        """The log the caller may post to (None: the conversation does not exist yet and the
        caller may create it). 403 for a non-member or another user's DeviceGroup."""
        log = self._logs.get(conversation_id)
        if conversation_id.is_device_group_id:
            if not self._owns(self._devices[caller], conversation_id):
                raise TransportError("another user's device group", status=403, code="forbidden")
        elif log is not None and caller not in log.members:
            raise TransportError("not a member of this conversation", status=403, code="forbidden")
        return log

    def _create(self, caller: DeviceId, conversation_id: ConversationId) -> Log:
        log = Log()
        if not conversation_id.is_device_group_id:
            log.members.add(caller)
        self._logs[conversation_id] = log
        waiting = self._pending.pop(conversation_id, None)
        if waiting is not None:
            waiting.set()
        return log

    # -- conversation logs --------------------------------------------------

    def _log_room(self, log: Log | None, size: int) -> None:
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
        payload = Payload(sender, payload_size, len(targets))
        self._charge(sender, payload_size)
        log.pending.discard(caller)  # welcoming others consents to a pending membership
        for dev, data, stranger in targets:
            dev.inbox.append(InboxItem(data, dev.inbox_next, env.conversation_id, payload, sender if stranger else None))
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

    def _drop_inbox(self, dev: Device, drop: Callable[[InboxItem], bool]) -> None:
        kept = []
        for item in dev.inbox:
            if not drop(item):
                kept.append(item)
                continue
            item.payload.refs -= 1
            if item.payload.refs == 0:
                self._charge(item.payload.sender, -item.payload.size)
        dev.inbox = kept

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
                raise revoked_error()
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
                raise revoked_error()
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

    # -- revocation, Welcome inboxes, leaving ---------------------------------

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


class MemoryTransport(RoutesNextCommit):
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
