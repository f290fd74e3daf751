"""One profile's account in this context: the session opened from the registry, the device's
registration, and the state the RPC handler groups of :mod:`pyodide_app.sdk` share.

:class:`BrowserSdk` opens the profile's account as an
:class:`~pyodide_app.session.AccountSession` (MLS state, host records and
decrypted messages in the account's IndexedDB database; a ``FetchTransport``
to the server; one writer at a time through the account's Web Lock) and, on
every start, does what ``ping_core.connect`` does on CPython with the same
shared host flows (``ping_core.account``): register the device (idempotent,
refreshes the label) and top up its KeyPackages (:meth:`BrowserSdk.ensure_online`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from ping_core.account import KeyPackageBatch, register_device, top_up_key_packages
from ping_core.client import MessagingClient
from ping_core.errors import InvalidInput, PingError
from ping_core.ids import ConversationId
from ping_core.link import PendingLink
from ping_core.message import IncomingMessage
from ping_core.meta import ConversationMeta

from ..live import LiveSync
from ..session import AccountSession, now_ms
from . import delivery
from .events import emit, message_events
from .profiles import CURRENT, DEFAULT_PROFILE, ProfileRecords, Registry

__all__ = ["BrowserSdk", "RpcHandlers", "KEY_PACKAGES", "key_package_batch", "conversation_meta"]

log = logging.getLogger("pyodide_app.sdk")

#: The one-time KeyPackages kept on the server: topped up when fewer than half are unclaimed.
KEY_PACKAGES = 20


def key_package_batch(s: AccountSession) -> KeyPackageBatch:
    """A round of KeyPackages generated with deferred checkpoints and made durable in ONE
    IndexedDB transaction BEFORE any of them is published (invariant 1)."""

    @asynccontextmanager
    async def batch() -> AsyncIterator[None]:
        with s.deferring():
            yield
            await s.db.state.flush()

    return batch


def conversation_meta(c: MessagingClient, conv: ConversationId) -> ConversationMeta:
    """The conversation ``conv`` of this device; InvalidInput when it has none of that id."""
    for meta in c.list_conversations():
        if meta.id == conv:
            return meta
    raise InvalidInput("no such conversation on this device")


class BrowserSdk:
    """The account of one local profile, its session and what its handlers share (one per
    profile and context; :func:`pyodide_app.sdk.sdk` is the booted profile's)."""

    def __init__(
        self,
        *,
        server_url: str = "",
        context: str = "worker",
        profile: str = DEFAULT_PROFILE,
        registry: Registry | None = None,
    ) -> None:
        self.server_url = server_url
        self.context = context
        self.records = ProfileRecords(profile, registry if registry is not None else Registry())
        self.profile = self.records.profile
        self.session: AccountSession | None = None
        #: This device registered (and its KeyPackages topped up) since this context started.
        self.registered = False
        #: ``link.finish``'s request while its ticket is awaited (its keys open the ticket).
        self.pending: PendingLink | None = None
        #: Conversations the server refused to let this device read (403): it was removed.
        self.forbidden: set[ConversationId] = set()
        #: The live updates (``live.start``), None before they are started.
        self.live: LiveSync | None = None
        #: Device labels from the directory: device id hex -> ``{label, user_id}``.
        self.labels: dict[str, dict[str, str]] = {}
        self._open_lock = asyncio.Lock()
        self._siblings: dict[str, BrowserSdk] = {}

    # -- the registry ----------------------------------------------------------------

    async def account_hex(self) -> str | None:
        """The user id (hex) of this profile's account, None before it has one.

        Read from the registry only: it opens nothing, so it answers while the
        account's database is locked by a passphrase (``vault.*`` name it so).
        """
        return await self.records.account_hex()

    async def pending_link(self) -> PendingLink | None:
        """This profile's pending link request as a new device (``link.request``), if any."""
        return await self.records.pending_link()

    def sibling(self, profile: str) -> BrowserSdk:
        """The SDK of another profile in this context (the service worker syncs them all)."""
        if profile == self.profile:
            return self
        sibling = self._siblings.get(profile)
        if sibling is None:
            sibling = BrowserSdk(
                server_url=self.server_url, context=self.context, profile=profile, registry=self.records.registry
            )
            self._siblings[profile] = sibling
        return sibling

    # -- events ----------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        """An event for the pages of this profile (``profile`` tells them from other profiles' events)."""
        emit({**event, "profile": self.profile})

    def emit_messages(self, messages: Iterable[dict[str, Any]]) -> None:
        """One ``messages`` event per conversation of ``messages``."""
        for event in message_events(messages):
            self.emit(event)

    def emit_changed(self, convs: list[str]) -> None:
        """A ``conversations`` event: these conversations (hex ids) changed."""
        self.emit({"type": "conversations", "changed": convs})

    def set_access(self, conv: ConversationId, allowed: bool) -> None:
        """Record whether the server lets this device read ``conv``; a change is announced."""
        if allowed == (conv in self.forbidden):
            if allowed:
                self.forbidden.discard(conv)
            else:
                self.forbidden.add(conv)
            self.emit_changed([conv.as_hex()])

    def rewatch(self) -> None:
        """The long poll watches the conversations as they are now (after a join)."""
        if self.live is not None:
            self.live.rewatch()

    # -- the session -----------------------------------------------------------------

    async def current(self) -> AccountSession | None:
        """The session of this browser's account, opened on first use (None: no account yet).

        Opening it hands the page what the SDK decrypted but the app store
        never got (see :meth:`deliver_pending`).
        """
        async with self._open_lock:
            if self.session is None:
                raw = await self.records.get(CURRENT)
                if raw is not None:
                    self.session = await AccountSession.open(raw.decode("ascii"), server_url=self.server_url)
                    await self.deliver_pending(self.session)
            return self.session

    async def require(self) -> AccountSession:
        """The session of this browser's account; InvalidInput when it has none yet."""
        session = await self.current()
        if session is None:
            raise InvalidInput("this browser has no Ping account yet: create one or link this device")
        return session

    async def adopt(self, session: AccountSession) -> None:
        """Make ``session`` this browser's account (after creating or linking it)."""
        await self.records.put(CURRENT, session.user_hex.encode("ascii"))
        self.session = session

    async def ensure_online(self) -> None:
        """Register this device (once per start) and publish the first KeyPackages (once ever)."""
        if self.registered:
            return
        s = await self.require()
        async with s.use() as c:
            await register_device(c, now_ms())
            await top_up_key_packages(c, KEY_PACKAGES, batch=key_package_batch(s))
        self.registered = True

    async def whoami(self) -> dict[str, Any]:
        """``{user_id, device_id, label, registered}`` of this browser's device."""
        s = await self.require()
        async with s.use() as c:
            info = c.device_info(now_ms())
        return {
            "user_id": s.user_hex,
            "device_id": info.device_id.as_hex(),
            "label": info.label,
            "registered": self.registered,
        }

    # -- messages --------------------------------------------------------------------

    async def store_messages(
        self, s: AccountSession, take: Callable[[], Awaitable[list[IncomingMessage]]]
    ) -> list[dict[str, Any]]:
        """:func:`~pyodide_app.sdk.delivery.store_messages` in this profile's acknowledgement mode."""
        return await delivery.store_messages(s, take, manual=await self.records.ack_mode() == "manual")

    async def deliver_pending(self, s: AccountSession) -> list[dict[str, Any]]:
        """Store and announce the messages the SDK holds but never handed out (``pending_messages``).

        What an operation other than a sync decrypted while it caught up with
        the log (a ``send`` committing other members' proposals, say) waits in
        the SDK's inbox until the next sync; a tab closed or reloaded before
        that would not show it. Called when the session opens. Never raises
        a ``PingError`` (logged: the next sync delivers them).
        """
        try:
            async with s.use() as c:
                messages = await self.store_messages(s, c.pending_messages)
            unacked = await delivery.unacked(s)
        except PingError as exc:
            log.warning("pending messages not delivered yet: %s: %s", type(exc).__name__, exc)
            return []
        fresh = {(m["conv"], m["seq"]) for m in messages}
        messages += [m for m in unacked if (m["conv"], m["seq"]) not in fresh]
        self.emit_messages(messages)
        return messages


class RpcHandlers:
    """A group of RPC handlers (methods declared with ``@rpc``) over one profile's :class:`BrowserSdk`."""

    def __init__(self, sdk: BrowserSdk) -> None:
        self.sdk = sdk
