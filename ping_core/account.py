"""Host flows shared by the CLI (``ping_core.connect``) and the browser's account sessions, so
both apply the same rules: how the account is kept on a device (the account key, or only the
account's binding of this device; ``docs/security.md``), and what happens to the Welcome inbox.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ping_core.device import LinkingTicket
from ping_core.errors import IdentityError, InvalidInput, PingError
from ping_core.identity import DeviceBinding, Identity
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.invitation import Invitation
from ping_core.link import LinkKeyPair, open_ticket
from ping_core.storage import Storage
from ping_core.transport import Transport

if TYPE_CHECKING:
    from ping_core.client import MessagingClient

__all__ = ["Account", "stored_account", "take_welcomes", "WelcomeRound", "claim_new_device"]

log = logging.getLogger("ping_core.account")

#: The account as a device holds it.
Account = Identity | DeviceBinding

_KEY = "identity"  # an Identity export (SECRET)
_BINDING = "binding"  # a DeviceBinding encoding (public)


async def stored_account(host: Storage, ns: str, given: Account | None, *, create: bool = True) -> Account | None:
    """The account kept in ``host`` under namespace ``ns``, storing ``given`` on first use.

    * a stored account key wins (``given`` must be the same account);
    * a stored binding is kept unless ``given`` is the account key of the same
      account (a device that is later given the key keeps it);
    * nothing stored: ``given``, else a new account when ``create`` (else ``None``).

    ``IdentityError`` when ``given`` is another account's or a binding does
    not verify; ``InvalidInput`` for a ``given`` of another type.
    """
    if given is not None and not isinstance(given, (Identity, DeviceBinding)):
        raise InvalidInput("an account is an Identity or a DeviceBinding")
    stored: Account | None = None
    raw = await host.get(ns, _KEY)
    if raw is not None:
        stored = Identity.import_(raw)
    else:
        raw = await host.get(ns, _BINDING)
        if raw is not None:
            stored = DeviceBinding.decode(raw)
            stored.verify()
    if stored is not None and given is not None and given.user_id != stored.user_id:
        raise IdentityError("this store belongs to another account")
    if isinstance(stored, Identity) or (stored is not None and not isinstance(given, Identity)):
        return stored
    chosen = given if given is not None else (Identity.generate() if create else None)
    if isinstance(chosen, Identity):
        await host.put(ns, _KEY, chosen.export())
    elif chosen is not None:
        chosen.verify()
        await host.put(ns, _BINDING, chosen.encode())
    return chosen


@dataclass(frozen=True, slots=True)
class WelcomeRound:
    """What :func:`take_welcomes` did: conversations joined, invitations left pending (all, and
    those new in this round), and whether a linking ticket was consumed."""

    joined: tuple[ConversationId, ...] = ()
    pending: tuple[Invitation, ...] = ()
    new: tuple[Invitation, ...] = ()
    linked: bool = False
    ticket: LinkingTicket | None = None


async def take_welcomes(
    client: MessagingClient, now_ms: int, *, auto_join: bool = False, link_keys: LinkKeyPair | None = None
) -> WelcomeRound:
    """The host flow for the Welcome inbox, shared by the CLI and the browser.

    Fetches the inbox; a Welcome into this account's DeviceGroup is a sealed
    linking ticket, used only with ``link_keys`` (the pending link's key
    pair: the ticket is consumed and its catch-up snapshot imported); every
    other Welcome becomes a pending invitation (``add_invitations``). The
    inbox is then acknowledged (a revoked device gets ``DeviceRevoked``, as from
    ``sync``). Pending invitations are accepted when
    ``auto_join``, or when the inviter is a verified device of this same
    account (this account's other device admitting this one to its chats);
    the others wait for the user. Failures of single Welcomes are logged.
    """
    try:
        welcomes = await client.transport.fetch_welcomes()
    except PingError as exc:
        await client.raise_if_revoked(exc)  # a revoked device is told so: DeviceRevoked, as by sync
        raise
    dg = ConversationId.device_group(client.user_id())
    ticket: LinkingTicket | None = None
    others = []
    for env in welcomes:
        if env.conversation_id != dg:
            others.append(env)
        elif link_keys is not None and ticket is None:
            try:
                opened = open_ticket(env.payload, link_keys, client.device_id())
                await client.consume_linking_ticket(opened, now_ms)
                catchup = opened.catchup()
                if catchup is not None:
                    for entry in catchup.conversation_metas:
                        await client.import_state_snapshot(entry.group_state_bytes, now_ms)
                ticket = opened
            except PingError as exc:
                log.warning("a linking ticket could not be used: %s: %s", type(exc).__name__, exc)
    added = await client.add_invitations(others, now_ms)
    if welcomes:
        await client.transport.ack_welcomes(welcomes[-1].seq)
    joined = []
    for inv in client.invitations():
        if auto_join or inv.inviter_user_id == client.user_id():
            try:
                joined.append(await client.accept_invitation(inv.conversation_id, now_ms))
            except PingError as exc:
                log.warning("joining %s failed: %s: %s", inv.conversation_id.as_hex(), type(exc).__name__, exc)
    if ticket is not None:
        joined.insert(0, dg)
    pending = tuple(client.invitations())
    new = tuple(inv for inv in added if inv in pending)
    return WelcomeRound(tuple(joined), pending, new, ticket is not None, ticket)


async def claim_new_device(
    transport: Transport, user_id: UserId, device_id: DeviceId, count: int, timeout_s: float, *, poll_s: float = 0.5
) -> list[bytes]:
    """Wait until a device being linked has registered as a device of ``user_id`` and published
    its KeyPackages, then claim up to ``count`` of them (its ticket's and one per chat). The two
    happen in that order on the new device, so claiming right after it shows up can find none.
    ``InvalidInput`` after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        if any(d.device_id == device_id for d in await transport.list_devices(user_id)):
            kps = await transport.claim_device_key_packages(device_id, count)
            if kps:
                return kps
        if time.monotonic() > deadline:
            raise InvalidInput(f"the new device did not register and publish KeyPackages within {timeout_s:.0f} s")
        await asyncio.sleep(poll_s)
