"""Host flows shared by the CLI (``ping_core.cli``, ``ping_core.connect``) and the browser
(``pyodide_app.sdk``), so both apply the same rules:

* how the account is kept on a device (the account key, or only the account's binding of this
  device; ``docs/security.md``): :func:`stored_account`;
* registering this device and keeping KeyPackages on the server: :func:`register_device`,
  :func:`top_up_key_packages` (each KeyPackage's private keys are durable BEFORE it is
  published, so a peer can always join with what it claimed);
* the Welcome inbox (linking tickets, invitations, auto-join): :func:`take_welcomes`;
* adding a user's devices to a conversation: :func:`invite_user` (their KeyPackages must prove
  they are that user's devices, so the server cannot slip in another account);
* the directory's list of an account's devices: :func:`list_devices` (each entry must name
  that account and carry the key its id is the hash of, so an answer the server made up for
  another account, or mixed up, is refused);
* linking a new device of this account: :func:`claim_new_device`, then :func:`admit_new_device`
  (its sealed ticket into the DeviceGroup, then every chat), with :class:`Admission` typed by
  ``AdmitChatStatus`` variants.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from ping_core.admit import AdmitChatOutcome, AdmitChatStatus
from ping_core.clock import Hlc
from ping_core.device import DeviceInfo, LinkingTicket
from ping_core.errors import IdentityError, InvalidInput, PingError
from ping_core.identity import DeviceBinding, Identity
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.invitation import Invitation
from ping_core.link import LinkKeyPair, LinkRequestCode, open_ticket, seal_ticket
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.storage import Storage
from ping_core.transport import Transport
from ping_core.transport.base import MAX_KEY_PACKAGES_PER_PUBLISH, KeyPackageSupply

if TYPE_CHECKING:
    from ping_core.client import MessagingClient

__all__ = [
    "Account",
    "stored_account",
    "register_device",
    "top_up_key_packages",
    "KeyPackageBatch",
    "KEY_PACKAGE_TARGET",
    "take_welcomes",
    "WelcomeRound",
    "invite_user",
    "list_devices",
    "claim_new_device",
    "admit_new_device",
    "Admission",
]

log = logging.getLogger("ping_core.account")

#: The account as a device holds it.
Account = Identity | DeviceBinding

#: One-time KeyPackages a device keeps on the server.
KEY_PACKAGE_TARGET = 20
#: Wraps making a round of KeyPackages durable (a host that buffers its checkpoints makes them
#: durable in one transaction on exit, e.g. the browser's IndexedDB store); it must not return
#: before they are durable, since they are published right after.
KeyPackageBatch = Callable[[], AbstractAsyncContextManager[object]]

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
        if any(d.device_id == device_id for d in await _listed_devices(transport, user_id)):
            kps = await transport.claim_device_key_packages(device_id, count)
            if kps:
                return kps
        if time.monotonic() > deadline:
            raise InvalidInput(f"the new device did not register and publish KeyPackages within {timeout_s:.0f} s")
        await asyncio.sleep(poll_s)


# ---------------------------------------------------------------------------
# Registration and KeyPackages


async def register_device(client: MessagingClient, now_ms: int) -> None:
    """Register this device (its info and the account's binding of it) with the delivery service.
    Idempotent; it refreshes the label. ``TransportError`` when the server refuses or is away."""
    await client.transport.register_device(client.device_info(now_ms), client.device_binding())


async def _fresh(client: MessagingClient, count: int, last_resort: bool, batch: KeyPackageBatch | None) -> tuple[list[bytes], bytes | None]:
    if not count and not last_resort:
        return [], None
    async with batch() if batch is not None else nullcontext():
        fresh = [await client.fresh_key_package() for _ in range(count)]
        spare = await client.fresh_key_package(last_resort=True) if last_resort else None
    return fresh, spare


async def top_up_key_packages(
    client: MessagingClient,
    target: int = KEY_PACKAGE_TARGET,
    *,
    low_water: int | None = None,
    batch: KeyPackageBatch | None = None,
) -> int:
    """Keep this device reachable: ask the server how many of its one-time KeyPackages are still
    unclaimed; below ``low_water`` (default half of ``target``, rounded up, so a busy device does
    not publish one at a time) publish fresh ones up to ``target``; publish a last-resort KeyPackage when the
    server has none (an existing one is kept: peers may hold it). Returns the number of
    one-time KeyPackages published.

    The client's transport must offer ``key_package_count`` (:class:`~ping_core.transport.base.KeyPackageSupply`,
    as ``HttpTransport`` does; ``InvalidInput`` otherwise). Each KeyPackage's private keys are
    durable before it is published (``fresh_key_package``; with ``batch``, when the batch ends).
    Raises ``TransportError`` when the server refuses or does not answer (nothing is lost:
    unpublished KeyPackages are only unused).
    """
    if not 0 <= target <= MAX_KEY_PACKAGES_PER_PUBLISH:
        raise InvalidInput(f"target must be 0..{MAX_KEY_PACKAGES_PER_PUBLISH}")
    low = (target + 1) // 2 if low_water is None else low_water
    transport = client.transport
    if not isinstance(transport, KeyPackageSupply):
        raise InvalidInput("the client's transport cannot count KeyPackages (no key_package_count)")
    if await client.retire_outdated_key_packages():
        # KeyPackages made before account bindings: peers refuse them, so the server's pool is
        # replaced at once, the last-resort one too.
        fresh, spare = await _fresh(client, target, True, batch)
        await transport.publish_key_packages(fresh, last_resort=spare, replace=True)
        return len(fresh)
    stock = await transport.key_package_count()
    count = target - stock.unclaimed if stock.unclaimed < low else 0
    fresh, spare = await _fresh(client, count, not stock.last_resort, batch)
    if fresh or spare is not None:
        await transport.publish_key_packages(fresh, last_resort=spare)
    return len(fresh)


# ---------------------------------------------------------------------------
# Conversations and devices


async def _listed_devices(transport: Transport, user_id: UserId) -> list[DeviceInfo]:
    """The directory's answer for ``user_id``, refused whole (``IdentityError``) unless every entry
    is a device of ``user_id`` whose id is the hash of its signing key, each listed once."""
    listed = await transport.list_devices(user_id)
    seen: set[DeviceId] = set()
    for info in listed:
        if info.user_id != user_id:
            raise IdentityError("the directory listed another account's device")
        info.verify()  # the device id is SHA-256 of its signing key
        if info.device_id in seen:
            raise IdentityError("the directory listed a device twice")
        seen.add(info.device_id)
    return listed


async def list_devices(client: MessagingClient, user: UserId | None = None) -> list[DeviceInfo]:
    """The registered, non-revoked devices of ``user`` (default: this account), as the server's
    directory lists them, in its order. The labels are the devices' own free text, never proof
    of anything, and which account a device is of is the directory's word (proof of that is
    the account's binding, checked where it matters: in KeyPackages and MLS credentials); what
    the answer itself shows is checked: every entry names ``user`` and has an id that is
    SHA-256 of its signing key, each once, else ``IdentityError`` and nothing is returned (a
    caller that keeps labels by device keeps none of a lying answer). ``TransportError`` when
    the server refuses or is away."""
    return await _listed_devices(client.transport, client.user_id() if user is None else user)


async def invite_user(client: MessagingClient, conv: ConversationId, user: UserId, now_ms: int, *, required: bool = True) -> int:
    """Add every device of ``user`` not yet in ``conv`` (one Commit, Welcomes to them); returns how
    many. Each claimed KeyPackage must prove it is ``user``'s device (``IdentityError``: the
    server cannot slip in others). None to add: ``InvalidInput`` when ``required``, else 0
    (how a new chat takes in the account's other devices, best effort)."""
    present = {m.device_id for m in client.members(conv)}
    claimed = await client.transport.claim_key_packages(user)
    entries = [(d, kp) for d, kp in claimed if d not in present and d != client.device_id()]
    if not entries:
        if required:
            raise InvalidInput("that user has no device to add (none registered, or all already members)")
        return 0
    await client.add_members(conv, entries, now_ms, for_user=user)
    return len(entries)


@dataclass(frozen=True, slots=True)
class Admission:
    """What :func:`admit_new_device` did: the device, and one outcome per chat."""

    device_id: DeviceId
    outcomes: tuple[AdmitChatOutcome, ...]

    @property
    def admitted(self) -> int:
        return sum(1 for o in self.outcomes if isinstance(o.status, AdmitChatStatus.Admitted))

    @property
    def failed(self) -> tuple[AdmitChatOutcome, ...]:
        return tuple(o for o in self.outcomes if isinstance(o.status, AdmitChatStatus.Failed))


async def admit_new_device(
    client: MessagingClient,
    request: LinkRequestCode,
    key_packages: Sequence[bytes],
    now_ms: int,
    *,
    last_app_events: Sequence[tuple[ConversationId, bytes]] = (),
) -> Admission:
    """Link the device of ``request`` (after :func:`claim_new_device` gave ``key_packages``): its
    LinkingTicket (the first KeyPackage) sealed to the request's link key and sent as the
    DeviceGroup Welcome (the new device the only recipient), then every chat of this device
    (the next KeyPackages, the last one reused when there are fewer) admitted; per-chat failures
    are in the outcomes, never raised. Needs the account key (``IdentityError``)."""
    if not key_packages:
        raise InvalidInput("no KeyPackage of the new device")
    device = request.device_id
    chats = [m.id for m in client.list_conversations() if not m.is_device_group]
    ticket = await client.build_linking_ticket(device, key_packages[0], list(last_app_events), now_ms)
    dg = ConversationId.device_group(client.user_id())
    await client.transport.set_next_welcome_recipients(dg, [device])
    sealed = seal_ticket(ticket, request.link_public_key)
    await client.transport.send(MessageEnvelope(dg, 0, MessageKind.WELCOME, client.device_id(), 0, Hlc(now_ms, 0), sealed))
    pairs = [(chat, key_packages[min(i + 1, len(key_packages) - 1)]) for i, chat in enumerate(chats)]
    outcomes = await client.admit_device_to_chats(device, pairs, now_ms)
    return Admission(device, tuple(outcomes))
