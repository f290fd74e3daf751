"""Devices of this account: linking a new one (DeviceGroup Add + LinkingTicket) and revoking one.

Guarantees:

* A linking ticket is built only with the account key, for a KeyPackage of the new device
  (``InvalidInput``) and of this account (``IdentityError``). The DeviceGroup commit follows
  ``ping_core.commitflow`` (it goes to the DeviceGroup's log so the account's other devices
  follow); its Welcome travels in the ticket; the catch-up snapshot is history-only
  (``ping_core.history``).
* A ticket is consumed only when it is for this account and this device, and joins only this
  account's own DeviceGroup (every member a device of the account).
* Revoking a device removes its leaf from every conversation it is in (found from the trees, so
  devices admitted by other members too), each removing commit carrying the account's signed
  revocation in its authenticated data (RFC 9420 §6.3.2) so members that see it never accept the
  device again; a failing conversation does not stop the others nor the remote revocation.
"""

from __future__ import annotations

import logging
from typing import Callable

from ping_core.checks import check_bytes, check_conv_id
from ping_core.clientstate import ClientState
from ping_core.clock import Hlc
from ping_core.commitflow import CommitFlow
from ping_core.conversation import CommitKind, StoreUndo
from ping_core.device import CatchupAppEventEntry, CatchupSnapshot, LinkingTicket
from ping_core.errors import IdentityError, InvalidInput, PingError
from ping_core.history import catchup_entries
from ping_core.ids import DeviceId
from ping_core.keypackages import KeyPackages
from ping_core.link import AccountGrant
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.mls.group import Group, StagedCommit
from ping_core.welcomes import Welcomes

__all__ = ["Linking", "check_events"]

log = logging.getLogger("ping_core.client")


def check_events(events: object) -> list[CatchupAppEventEntry]:
    """``last_app_events`` checked: a list of ``(ConversationId, bytes)``."""
    if not isinstance(events, (list, tuple)):
        raise InvalidInput("last_app_events must be a list of (ConversationId, bytes)")
    out = []
    for item in events:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise InvalidInput("each app event is (ConversationId, bytes)")
        out.append(CatchupAppEventEntry(check_conv_id(item[0]), check_bytes(item[1], "app event")))
    return out


def _remove_leaf(leaf: int, authenticated_data: bytes = b"") -> Callable[[Group], StagedCommit]:
    # A function, not a lambda in the caller's loop: the lambda would see the loop's last leaf.
    return lambda g: g.commit(remove=[leaf], authenticated_data=authenticated_data)


class Linking:
    """Linking and revocation for one client."""

    def __init__(self, state: ClientState, commits: CommitFlow, key_packages: KeyPackages, welcomes: Welcomes) -> None:
        self.st = state
        self.commits = commits
        self.kps = key_packages
        self.welcomes = welcomes

    def grant(self, device_id: object, *, with_account_key: bool) -> AccountGrant:
        """``MessagingClient.grant_device``: the account's binding of ``device_id`` (and the account
        key itself only with ``with_account_key``). Needs the account key (``IdentityError``)."""
        if not isinstance(device_id, DeviceId):
            raise InvalidInput("device_id must be a DeviceId")
        account = self.st.account_key("grant_device")
        return AccountGrant(account.device_binding(device_id), account if with_account_key else None)

    async def build_ticket(
        self, new_device_id: DeviceId, new_device_kp: object, last_app_events: object, now_ms: int
    ) -> LinkingTicket:
        """``MessagingClient.build_linking_ticket`` once ``new_device_id`` and ``now_ms`` are checked."""
        st = self.st
        account = st.account_key("build_linking_ticket")
        kp = self.kps.verified(new_device_kp, new_device_id, st.user_id())
        if new_device_id == st.device_id():
            raise InvalidInput("a device cannot link itself")
        events = check_events(last_app_events)
        await st.ensure_device_group(now_ms)
        dg = st.conv(st.dg_id)
        async with dg.lock:
            if new_device_id in dg.leaves:
                raise InvalidInput("the device is already in the DeviceGroup")
            staged, _ = await self.commits.commit(dg, CommitKind.LINK, lambda g: g.commit(add=[kp]), now_ms, deliver_welcome=False)
        assert staged.welcome is not None
        entries = await catchup_entries(st, now_ms)
        catchup = b""
        if entries or events:
            catchup = CatchupSnapshot.new(entries, events).encode()
        return LinkingTicket.new(account, new_device_id, staged.welcome, catchup)

    async def consume_ticket(self, ticket: LinkingTicket, now_ms: int) -> None:
        """``MessagingClient.consume_linking_ticket`` once its input is checked."""
        st = self.st
        ticket.verify_binding()
        if ticket.user_id != st.user_id():
            raise IdentityError("the ticket is for another account")
        if ticket.new_device_id != st.device_id():
            raise InvalidInput("the ticket is addressed to another device")
        dg = st.convs.get(st.dg_id)
        if dg is not None:
            group = st.group(dg)
            if group is not None and group.active and group.member_count > 1:
                raise InvalidInput("this device is already linked (its DeviceGroup has other members)")
        env = MessageEnvelope(st.dg_id, 0, MessageKind.WELCOME, st.device_id(), 0, Hlc.ZERO, ticket.device_group_welcome)
        await self.welcomes.join(env, now_ms, relink=True)

    async def revoke(self, device_id: DeviceId, now_ms: int) -> list[MessageEnvelope]:
        """``MessagingClient.revoke_device`` once its input is checked."""
        st = self.st
        if device_id == st.device_id():
            raise InvalidInput("a device cannot revoke itself")
        revocation = st.account_key("revoke_device").revoke(device_id)
        undo = StoreUndo(st.store)
        st.verifier.remember(revocation, undo.put)
        await st.checkpoint(undo)
        statement = revocation.encode()
        envelopes: list[MessageEnvelope] = []
        first_error: PingError | None = None
        for conv in list(st.convs.values()):
            try:
                async with conv.lock:
                    group = st.group(conv)
                    if group is None or not group.active:
                        continue
                    leaf = conv.leaves.get(device_id)
                    if leaf is None:
                        continue
                    _, env = await self.commits.commit(conv, CommitKind.REMOVE, _remove_leaf(leaf, statement), now_ms)
                    envelopes.append(env)
            except PingError as exc:
                log.warning("revoke: conversation %s failed: %s", conv.id.as_hex(), type(exc).__name__)
                first_error = first_error or exc
        try:
            await st.transport.revoke_device_remote(device_id, revocation)
        except PingError as exc:
            first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return envelopes
