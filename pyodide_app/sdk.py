"""The SDK in the browser: ``connect`` for Pyodide and the RPC methods the page calls.

One :class:`BrowserSdk` per context (a tab's worker, or the service worker).
It keeps which account a profile of this browser holds in the registry database
``ping-accounts`` (store ``kv``, keys ``profile/<name>/...``: ``current`` = the account's
user id in hex; ``link-pending`` = a new device's linking secrets), and opens that account as
an :class:`~pyodide_app.session.AccountSession` (MLS state, host records and
decrypted messages in the account's IndexedDB database; a ``FetchTransport``
to the page's origin; one writer at a time through the account's Web Lock).

What :meth:`BrowserSdk.ensure_online` does is what ``ping_core.connect`` does on
CPython, with the same shared host flows (``ping_core.account``): register the
device (every start: idempotent, refreshes the label) and top up its
KeyPackages (below half of ``KEY_PACKAGES`` unclaimed one-time KeyPackages on
the server, fresh ones fill it up; a last-resort one when the server has none).
Joining a Welcome uses up one of ours: the stock is topped up after the join.
Inviting a user and admitting a new device of this account to its chats are
``ping_core.account``'s flows too; the SDK goes through ``MessagingClient`` and
those flows, never the transport, for them.

RPC methods: each handler below declares its name with
:func:`pyodide_app.rpc.rpc` ("<noun>.<verb>", snake_case: ``account.whoami``,
``conversation.send``...); that is the one table. docs/browser-sdk.md
documents each method's params and result, static/ping.js wraps each one
in camelCase and static/ping.d.ts types them; tests/browser/test_types.py
checks the four agree. Params and results are plain data; ids are lowercase
hex; payloads, KeyPackages, envelopes, snapshots and secrets are bytes
(Uint8Array in JS). A message is ``{conv, seq, user, device, bytes, text, time,
epoch}`` (``text``: the payload when it is valid UTF-8, else null).

Events (``pinghost.emit``; the page gets them whichever context produced them;
each carries ``profile``, the local profile it belongs to):
``{type: "messages", conv, messages}``, ``{type: "conversations", changed}``,
``{type: "invitations", pending}`` and, for each new one, ``{type: "invitation", invitation}``,
``{type: "problems", problems: [{conv, kind, seq, sender_device,
detail}]}`` (what a sync met: ``ping_core.sync.SyncProblemKind`` values), ``{type: "fork-healed", conv}``,
``{type: "revoked", message}`` (this device was revoked: its state is wiped),
``{type: "status", online, error}``, ``{type: "account", state}``.

Profiles: several accounts per origin. A profile is a local name (default
"default"); the registry maps it to one account, whose data is its own
database ``ping-account-<user hex>`` under its own Web Lock; one worker per
open profile.

Errors are ``ping_core.errors`` exceptions (the RPC layer turns them into
``{name, message[, status, code]}``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ping_core.account import (
    KeyPackageBatch,
    admit_new_device,
    claim_new_device,
    invite_user,
    register_device,
    take_welcomes,
    top_up_key_packages,
)
from ping_core.admit import AdmitChatOutcome
from ping_core.device import CatchupAppEventEntry
from ping_core.errors import DeviceRevoked, InvalidInput, PingError, StorageError, TransportError
from ping_core.identity import Identity
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.invitation import Invitation
from ping_core.link import LinkRequestCode, PendingLink, open_grant, seal_grant
from ping_core.message import IncomingMessage, MessageEnvelope
from ping_core.meta import ConversationMeta
from ping_core.sync import News, SyncProblem, SyncProblemKind
from ping_core.client import MemberInfo, MessagingClient

from . import inbox
from .idb import IndexedDbBlobStore
from .live import LiveSync
from .locks import WebLock
from .session import AccountSession, now_ms
from .rpc import register_object, rpc, to_page

__all__ = ["BrowserSdk", "register", "sdk", "KEY_PACKAGES", "REGISTRY_DB"]

log = logging.getLogger("pyodide_app.sdk")

REGISTRY_DB = "ping-accounts"
REGISTRY_STORE = "kv"
_CURRENT = "current"
_PENDING_LINK = "link-pending"
_AUTO_JOIN = "auto-join"  # registry: b"1" when every invitation is joined without asking
_NOTIFY = "notify"  # registry: what a push-woken service worker shows (_NOTIFY_MODES)
_NOTIFY_MODES = ("text", "generic", "off")
KEY_PACKAGES = 20
_MAX_LINK_WAIT = 900.0
_MAX_TEXT = 64 * 1024
#: Stored messages per conversation handed to a newly linked device (its "what you missed").
HISTORY_MESSAGES = 200


DEFAULT_PROFILE = "default"
_PROFILE_PREFIX = "profile/"
_MAX_PROFILE = 64
_ACK = "ack"  # registry: b"manual" when the page acknowledges messages itself (message.ack)
_ACK_MODES = ("auto", "manual")


# -- profiles ---------------------------------------------------------------------
#
# Registry ``ping-accounts``/``kv`` keys: ``profile/<name>/<key>`` for each local
# profile (``current``: the account's user id in hex; ``link-pending``,
# ``auto-join``, ``notify``, ``ack``). A registry from before profiles has the
# bare keys: they become profile "default"'s on first open (migrate_registry).


def check_profile(name: object) -> str:
    """A profile name: 1..64 characters of [A-Za-z0-9_.-]; InvalidInput otherwise."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= _MAX_PROFILE
        or not all(ch.isascii() and (ch.isalnum() or ch in "_.-") for ch in name)
    ):
        raise InvalidInput("a profile name is 1..64 characters of A-Z a-z 0-9 _ . -")
    return name


def profile_key(profile: str, name: str) -> str:
    return f"{_PROFILE_PREFIX}{check_profile(profile)}/{name}"


async def migrate_registry(registry: IndexedDbBlobStore) -> bool:
    """Move the bare keys of a registry from before profiles to profile "default" (one transaction;
    a key profile "default" already has is kept). True when something moved."""
    old = [k for k in (_CURRENT, _PENDING_LINK, _AUTO_JOIN, _NOTIFY) if await registry.get(k) is not None]
    if not old:
        return False
    async with WebLock(REGISTRY_DB):  # two contexts opening at once migrate once
        puts: dict[str, bytes] = {}
        for key in old:
            value = await registry.get(key)
            target = profile_key(DEFAULT_PROFILE, key)
            if value is not None and await registry.get(target) is None:
                puts[target] = value
        await registry.commit(puts, old)
    return True


async def profiles(registry: IndexedDbBlobStore) -> dict[str, str]:
    """``{profile: account user id hex}`` of every profile that has an account."""
    out = {}
    for key, value in await registry.items(_PROFILE_PREFIX):
        profile, _, name = key[len(_PROFILE_PREFIX) :].partition("/")
        if name == _CURRENT:
            out[profile] = value.decode("ascii")
    return out


# -- plain-data views -------------------------------------------------------------


def _conv_view(meta: ConversationMeta, last: dict[str, Any] | None = None, *, removed: bool = False) -> dict[str, Any]:
    return {
        "id": meta.id.as_hex(),
        "removed": removed,
        "name": meta.name,
        "epoch": meta.epoch,
        "member_count": meta.member_count,
        "created_at": meta.created_at_ms,
        "last": last,
    }


def _param(params: dict[str, Any], name: str) -> Any:
    if name not in params or params[name] is None:
        raise InvalidInput(f"missing parameter {name!r}")
    return params[name]


def _text_param(params: dict[str, Any], name: str, *, max_len: int = 4096, allow_empty: bool = False) -> str:
    value = _param(params, name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text")
    value = value.strip()
    if not value and not allow_empty:
        raise InvalidInput(f"{name} must not be empty")
    if len(value.encode("utf-8")) > max_len:
        raise InvalidInput(f"{name} is longer than {max_len} bytes")
    return value


def _bytes_param(params: dict[str, Any], name: str, *, max_len: int, allow_empty: bool = False) -> bytes:
    value = _param(params, name)
    if not isinstance(value, bytes):
        raise InvalidInput(f"{name} must be bytes (a Uint8Array)")
    if len(value) > max_len or (not value and not allow_empty):
        raise InvalidInput(f"{name} must be 1..{max_len} bytes")
    return value


def _payload_param(params: dict[str, Any], name: str) -> bytes:
    """A message payload: text (sent as its UTF-8 bytes) or bytes, 1.._MAX_TEXT bytes."""
    value = _param(params, name)
    if isinstance(value, str):
        value = value.encode("utf-8")
    return _bytes_param({name: value}, name, max_len=_MAX_TEXT)


def _int_param(params: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    value = params.get(name, default)
    if type(value) is not int or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer in {lo}..{hi}")
    return value


def _list_param(params: dict[str, Any], name: str, max_len: int = 1000) -> list[Any]:
    value = _param(params, name)
    if not isinstance(value, list) or not 0 < len(value) <= max_len:
        raise InvalidInput(f"{name} must be a list of 1..{max_len} entries")
    return value


def _device_param(params: dict[str, Any], name: str = "device_id") -> DeviceId:
    return DeviceId.from_hex(_text_param(params, name).lower())


def _problem_view(p: SyncProblem) -> dict[str, Any]:
    return {
        "conv": p.conversation_id.as_hex(),
        "kind": p.kind.value,
        "seq": p.seq,
        "sender_device": p.sender_device.as_hex() if p.sender_device is not None else None,
        "detail": p.detail,
    }


def _invitation_view(inv: Invitation) -> dict[str, Any]:
    return {
        "conv": inv.conversation_id.as_hex(),
        "name": inv.name,
        # None: the inviter's leaf proves no account; shown as such, never as anybody.
        "inviter": inv.inviter_user_id.as_hex() if inv.inviter_user_id is not None else None,
        "inviter_device": inv.inviter_device.as_hex(),
        "members": inv.member_count,
        "received_ms": inv.received_ms,
    }


def _outcome_view(outcome: AdmitChatOutcome) -> dict[str, Any]:
    status = outcome.status
    return {"conv": outcome.conversation_id.as_hex(), "status": status.kind, "detail": status.detail}


def _key_package_batch(s: AccountSession) -> KeyPackageBatch:
    """A round of KeyPackages generated with deferred checkpoints and made durable in ONE
    IndexedDB transaction BEFORE any of them is published (invariant 1)."""

    @asynccontextmanager
    async def batch() -> AsyncIterator[None]:
        with s.deferring():
            yield
            await s.db.state.flush()

    return batch


def _conv_param(params: dict[str, Any]) -> ConversationId:
    return ConversationId.from_hex(_text_param(params, "conv"))


def _user_param(params: dict[str, Any]) -> UserId:
    return UserId.from_hex(_text_param(params, "user_id").lower())


def _timeout_param(params: dict[str, Any]) -> float:
    value = params.get("timeout_s", 300)
    if not isinstance(value, (int, float)) or not 0 < value <= _MAX_LINK_WAIT:
        raise InvalidInput(f"timeout_s must be in (0, {_MAX_LINK_WAIT:.0f}]")
    return float(value)


def _emit(event: dict[str, Any]) -> None:
    """Hand an event to the JS host (worker: page + other tabs; service worker: clients)."""
    try:
        import pinghost  # type: ignore[import-not-found]  # registered by worker.mjs / sw.mjs
    except ImportError:
        _unsent.append(event)  # CPython / Node: kept for tests
        return
    pinghost.emit(to_page(event))


_unsent: list[dict[str, Any]] = []


class BrowserSdk:
    """The account of this browser profile, its session and live updates (one per context)."""

    def __init__(self, *, server_url: str = "", context: str = "worker", profile: str = DEFAULT_PROFILE) -> None:
        self.server_url = server_url
        self.context = context
        self.profile = check_profile(profile)
        self.session: AccountSession | None = None
        self._registry: IndexedDbBlobStore | None = None
        self._registered = False
        self._labels: dict[str, dict[str, str]] = {}
        self._live: LiveSync | None = None
        self._pending: PendingLink | None = None
        # Conversations the server refused to let this device read (403): it was removed.
        self._forbidden: set[ConversationId] = set()
        self._open_lock = asyncio.Lock()
        self._siblings: dict[str, BrowserSdk] = {}

    # -- account -------------------------------------------------------------------

    async def registry(self) -> IndexedDbBlobStore:
        """The origin's registry database (its ``default`` profile migrated on first open)."""
        if self._registry is None:
            registry = await IndexedDbBlobStore.open(REGISTRY_DB, REGISTRY_STORE)
            await migrate_registry(registry)
            self._registry = registry
        return self._registry

    async def _reg_get(self, name: str) -> bytes | None:
        return await (await self.registry()).get(profile_key(self.profile, name))

    async def _reg_put(self, name: str, value: bytes) -> None:
        await (await self.registry()).put(profile_key(self.profile, name), value)

    async def _reg_delete(self, name: str) -> None:
        await (await self.registry()).delete(profile_key(self.profile, name))

    async def account_hex(self) -> str | None:
        """The user id (hex) of this profile's account, None before it has one.

        Read from the registry only: it opens nothing, so it answers while the
        account's database is locked by a passphrase (``vault.*`` name it so).
        """
        raw = await self._reg_get(_CURRENT)
        return raw.decode("ascii") if raw is not None else None

    def _emit(self, event: dict[str, Any]) -> None:
        """An event for the pages of this profile (``profile`` tells them from other profiles' events)."""
        _emit({**event, "profile": self.profile})

    async def current(self) -> AccountSession | None:
        """The session of this browser's account, opened on first use (None: no account yet).

        Opening it hands the page what the SDK decrypted but the app store
        never got (see :meth:`deliver_pending`).
        """
        async with self._open_lock:
            if self.session is None:
                raw = await self._reg_get(_CURRENT)
                if raw is not None:
                    self.session = await AccountSession.open(raw.decode("ascii"), server_url=self.server_url)
                    await self.deliver_pending(self.session)
            return self.session

    async def require(self) -> AccountSession:
        session = await self.current()
        if session is None:
            raise InvalidInput("this browser has no Ping account yet: create one or link this device")
        return session

    async def _adopt(self, session: AccountSession) -> None:
        """Make ``session`` this browser's account (after creating or linking it)."""
        await self._reg_put(_CURRENT, session.user_hex.encode("ascii"))
        self.session = session

    @rpc("account.whoami")
    async def whoami(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        s = await self.require()
        async with s.use() as c:
            info = c.device_info(now_ms())
        return {
            "user_id": s.user_hex,
            "device_id": info.device_id.as_hex(),
            "label": info.label,
            "registered": self._registered,
        }

    @rpc("account.status")
    async def status(self, params: dict[str, Any]) -> dict[str, Any]:
        if await self.current() is not None:
            return {"state": "ready", **(await self.whoami())}
        pending = await self._pending_link()
        if pending is not None:
            return {
                "state": "linking",
                "request": pending.request().encode(),
                "device_id": pending.device_id.as_hex(),
                "label": pending.label,
            }
        return {"state": "none"}

    @rpc("account.create")
    async def create_account(self, params: dict[str, Any]) -> dict[str, Any]:
        label = _text_param(params, "label", max_len=256)
        async with WebLock(REGISTRY_DB):  # two tabs never make two accounts
            if await self.current() is not None:
                raise InvalidInput("this browser already has a Ping account")
            identity = Identity.generate()
            session = await AccountSession.open(
                identity.user_id.as_hex(), identity=identity, label=label, server_url=self.server_url
            )
            async with session.use():
                pass  # the first init: device record and DeviceGroup
            await self._adopt(session)
            await self._reg_delete(_PENDING_LINK)
        error = None
        try:
            await self.ensure_online()
        except PingError as exc:  # kept locally; live updates retry the registration
            error = f"{type(exc).__name__}: {exc}"
        self._emit({"type": "account", "state": "ready"})
        return {**(await self.whoami()), "error": error}

    async def ensure_online(self) -> None:
        """Register this device (once per start) and publish the first KeyPackages (once ever)."""
        if self._registered:
            return
        s = await self.require()
        async with s.use() as c:
            await register_device(c, now_ms())
            await top_up_key_packages(c, KEY_PACKAGES, batch=_key_package_batch(s))
        self._registered = True

    # -- sync ----------------------------------------------------------------------

    async def _join_welcomes(self, s: AccountSession, c: MessagingClient) -> list[ConversationId]:
        """The Welcome inbox, as the CLI takes it (``ping_core.account.take_welcomes``): a linking
        ticket (only while a link of ours is pending, see ``link.finish``), invitations kept for
        the user unless auto-join is on (those of this account's devices are joined); then a
        KeyPackage top-up. New invitations are announced (``invitations`` event)."""
        done = await take_welcomes(
            c, now_ms(), auto_join=await self._auto_join(), link_keys=self._pending.keys if self._pending is not None else None
        )
        if done.ticket is not None:
            catchup = done.ticket.catchup()
            if catchup is not None:
                await self._import_history(s, catchup.last_app_events_per_conv)
            self._pending = None
        if done.new:
            for invitation in done.new:
                self._emit({"type": "invitation", "invitation": _invitation_view(invitation)})
            self._emit({"type": "invitations", "pending": [_invitation_view(i) for i in done.pending]})
        # Each join used one of our KeyPackages (the linking ticket's too), unless it was
        # the last-resort one: the server's stock is topped up as the CLI does.
        if done.joined:
            try:
                await top_up_key_packages(c, KEY_PACKAGES, batch=_key_package_batch(s))
            except PingError as exc:  # the last-resort KeyPackage covers until the next top-up
                log.warning("KeyPackage top-up failed: %s", type(exc).__name__)
        return list(done.joined)

    async def _auto_join(self) -> bool:
        return (await self._reg_get(_AUTO_JOIN)) == b"1"

    @rpc("invitation.list")
    async def invitations(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The pending invitations (fetches new Welcomes first)."""
        s = await self.require()
        async with s.use() as c:
            await self._join_welcomes(s, c)
            return [_invitation_view(i) for i in c.invitations()]

    @rpc("invitation.accept")
    async def invitation_accept(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = _conv_param(params)
        s = await self.require()
        async with s.use() as c:
            await c.accept_invitation(conv, now_ms())
            meta = await self._meta(c, conv)
        self._forbidden.discard(conv)
        if self._live is not None:
            self._live.rewatch()  # the long poll must include the conversation joined now
        self._emit({"type": "conversations", "changed": [conv.as_hex()]})
        return _conv_view(meta)

    @rpc("invitation.decline")
    async def invitation_decline(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = _conv_param(params)
        s = await self.require()
        async with s.use() as c:
            await c.decline_invitation(conv)
            pending = [_invitation_view(i) for i in c.invitations()]
        self._emit({"type": "invitations", "pending": pending})
        return {"declined": conv.as_hex()}

    @rpc("account.settings")
    async def settings(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{auto_join?, notify?, ack?}``: set what is given; returns the settings (``auto_join``: join every
        invitation without asking, off by default; ``notify``: what a push-woken service worker shows,
        "text" (the decrypted message, the default), "generic" or "off"; ``ack``: "auto" (a message is
        the page's once stored) or "manual" (delivered again until ``message.ack``)). Per profile."""
        if "auto_join" in params:
            value = params["auto_join"]
            if type(value) is not bool:
                raise InvalidInput("auto_join must be a boolean")
            await self._reg_put(_AUTO_JOIN, b"1" if value else b"0")
        if "notify" in params:
            mode = params["notify"]
            if mode not in _NOTIFY_MODES:
                raise InvalidInput(f"notify is one of {', '.join(_NOTIFY_MODES)}")
            await self._reg_put(_NOTIFY, mode.encode("ascii"))
        if "ack" in params:
            ack = params["ack"]
            if ack not in _ACK_MODES:
                raise InvalidInput(f"ack is one of {', '.join(_ACK_MODES)}")
            await self._reg_put(_ACK, ack.encode("ascii"))
        return {"auto_join": await self._auto_join(), "notify": await self._notify(), "ack": await self._ack_mode()}

    @rpc("account.profiles")
    async def list_profiles(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{profile, profiles: {name: user id}}``: this context's profile and every profile of the origin with an account."""
        return {"profile": self.profile, "profiles": await profiles(await self.registry())}

    async def _notify(self) -> str:
        raw = await self._reg_get(_NOTIFY)
        mode = raw.decode("ascii", "replace") if raw is not None else _NOTIFY_MODES[0]
        return mode if mode in _NOTIFY_MODES else _NOTIFY_MODES[0]

    @staticmethod
    async def _import_history(s: AccountSession, events: Sequence[CatchupAppEventEntry]) -> None:
        """Store the linking device's latest messages (its ticket's app events) for display."""
        records: dict[str, bytes] = {}
        for event in events:
            try:
                records.update(inbox.records_from_history_event(event.conversation_id.as_hex(), event.app_event_bytes))
            except InvalidInput as exc:  # another host's events (e.g. none from the CLI): not ours to show
                log.info("history event skipped: %s", exc)
        await s.db.state.flush(records)

    async def _store_messages(
        self, s: AccountSession, take: Callable[[], Awaitable[list[IncomingMessage]]]
    ) -> list[dict[str, Any]]:
        """Run ``take`` (an SDK call that returns, and so acknowledges, messages) with deferred
        checkpoints, and write its state and the messages' app records in ONE transaction.

        Returns the messages the app store did not hold yet, in log order per
        conversation. Inside :meth:`AccountSession.use` only.
        """
        with s.deferring():
            incoming = await take()
            records = dict(inbox.incoming_record(m) for m in incoming)
            # The SDK may hand a message out again (to another context, after a
            # restart) until it is acknowledged: storing it again is harmless (same
            # key, same value), announcing it again is not useful.
            known = {k for k in records if await s.db.app.get(k) is not None}
            markers = {}
            if await self._ack_mode() == "manual":
                # The page acknowledges (message.ack); until then the message is delivered again.
                markers = {inbox.unacked_key(m.conversation_id.as_hex(), m.seq): b"1" for m in incoming}
                markers = {k: v for k, v in markers.items() if inbox.message_of_unacked(k) not in known}
            await s.db.state.flush({**records, **markers})
        return [inbox.message_view(k, v) for k, v in sorted(records.items()) if k not in known]

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
                messages = await self._store_messages(s, c.pending_messages)
            unacked = await self._unacked(s)
        except PingError as exc:
            log.warning("pending messages not delivered yet: %s: %s", type(exc).__name__, exc)
            return []
        fresh = {(m["conv"], m["seq"]) for m in messages}
        messages += [m for m in unacked if (m["conv"], m["seq"]) not in fresh]
        self._emit_messages(s, messages)
        return messages

    async def _ack_mode(self) -> str:
        raw = await self._reg_get(_ACK)
        return "manual" if raw == b"manual" else "auto"

    async def _unacked(self, s: AccountSession) -> list[dict[str, Any]]:
        """The stored messages the page has not acknowledged (explicit mode), in key order."""
        out = []
        for key in sorted(await s.db.app.list(inbox.UNACKED_PREFIX)):
            raw = await s.db.app.get(inbox.message_of_unacked(key))
            if raw is not None:
                out.append(inbox.message_view(inbox.message_of_unacked(key), raw))
        return out

    @rpc("message.pending")
    async def pending(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages not acknowledged yet (``ack: "manual"``; always empty in the automatic mode)."""
        return await self._unacked(await self.require())

    @rpc("message.ack")
    async def ack(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{messages: [{conv, seq}]}``: these messages are the page's now (not delivered again)."""
        items = _param(params, "messages")
        if not isinstance(items, list) or len(items) > 10_000:
            raise InvalidInput("messages is a list of {conv, seq} (at most 10000)")
        keys = []
        for item in items:
            if not isinstance(item, dict):
                raise InvalidInput("messages is a list of {conv, seq}")
            conv = _conv_param(item)
            keys.append(inbox.unacked_key(conv.as_hex(), item.get("seq")))  # type: ignore[arg-type]
        s = await self.require()
        acked = 0
        for key in keys:
            if await s.db.app.get(key) is not None:
                await s.db.app.delete(key)
                acked += 1
        return {"acked": acked}

    async def sync_round(self) -> dict[str, Any]:
        """Welcomes, then every conversation; decrypted messages stored with the state that consumed them.

        The sync's checkpoints are deferred (one IndexedDB transaction with
        the messages), and no commit is sent on deferred checkpoints; so once
        they are flushed, other members' pending proposals are committed
        (``commit_pending_proposals``, the SDK's policy) and what catching up
        for it decrypted is stored the same way. Returns (and announces) the
        messages this browser had not stored before.
        """
        s = await self.require()
        problems: list[SyncProblem] = []

        async def take() -> list[IncomingMessage]:
            result = await c.sync(now_ms(), commit_proposals=False)
            problems.extend(result.problems)
            return list(result.messages)

        try:
            async with s.use() as c:
                before = {m.id: (m.name, m.epoch, m.member_count) for m in c.list_conversations()}
                joined = await self._join_welcomes(s, c)
                messages = await self._store_messages(s, take)
                await c.commit_pending_proposals(now_ms())  # rejoins, migrations, proposals; logs and skips what fails
                messages += await self._store_messages(s, c.pending_messages)
                after = {m.id: (m.name, m.epoch, m.member_count) for m in c.list_conversations()}
        except DeviceRevoked as exc:
            self._emit({"type": "revoked", "message": str(exc)})
            raise
        if problems:
            self._emit({"type": "problems", "problems": [_problem_view(p) for p in problems]})
            for p in problems:
                if p.kind is SyncProblemKind.HEALED:
                    self._emit({"type": "fork-healed", "conv": p.conversation_id.as_hex()})
        self._forbidden.difference_update(joined)
        changed = sorted(
            cid.as_hex() for cid in set(before) | set(after) if before.get(cid) != after.get(cid) or cid in joined
        )
        self._emit_messages(s, messages)
        if changed:
            self._emit({"type": "conversations", "changed": changed})
        return {"messages": messages, "conversations": changed}

    def _emit_messages(self, s: AccountSession, messages: list[dict[str, Any]]) -> None:
        by_conv: dict[str, list[dict[str, Any]]] = {}
        for m in messages:
            by_conv.setdefault(m["conv"], []).append(m)
        for conv, items in by_conv.items():
            self._emit({"type": "messages", "conv": conv, "messages": items})

    @rpc("sw.cold_sync")
    async def cold_sync(self, params: dict[str, Any]) -> dict[str, Any]:
        """The service worker's wake-up: one round for EVERY profile of the origin that has an account.

        ``accounts`` lists ``{profile, account, messages, notify, error}`` per
        profile synced; ``new`` lists the messages this round stored for the
        first time across all of them (each with ``account``: the user id it
        was decrypted for, and ``profile``); ``account``/``notify`` are this
        context's profile's (its user id or the first synced one; the
        notification setting, ``account.settings``: "text" shows the
        decrypted text, "generic" only that something came, "off").
        ``messages`` counts ``new``. A profile whose round fails is reported
        with its ``error``; when every one failed the first error is raised.
        """
        t0 = time.perf_counter()
        notify = await self._notify()
        names = await profiles(await self.registry())
        accounts: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []
        changed: list[str] = []
        failure: PingError | None = None
        for name in sorted(names, key=lambda n: (n != self.profile, n)):
            sdk_p = self._sibling(name)
            entry: dict[str, Any] = {"profile": name, "account": names[name], "messages": 0, "error": None}
            entry["notify"] = await sdk_p._notify()
            try:
                if await sdk_p.current() is None:
                    continue
                result = await sdk_p.sync_round()
            except PingError as exc:
                failure = failure or exc
                entry["error"] = f"{type(exc).__name__}: {exc}"
                accounts.append(entry)
                continue
            entry["messages"] = len(result["messages"])
            new += [{**m, "account": names[name], "profile": name} for m in result["messages"]]
            changed += result["conversations"]
            accounts.append(entry)
        if failure is not None and all(a["error"] for a in accounts):
            raise failure
        mine = [a["account"] for a in accounts if a["profile"] == self.profile] or [a["account"] for a in accounts]
        return {
            "account": mine[0] if mine else None,
            "accounts": accounts,
            "messages": len(new),
            "new": new,
            "conversations": changed,
            "notify": notify,
            "ms": round((time.perf_counter() - t0) * 1000),
        }

    def _sibling(self, profile: str) -> BrowserSdk:
        """The SDK of another profile in this context (the service worker syncs them all)."""
        if profile == self.profile:
            return self
        sibling = self._siblings.get(profile)
        if sibling is None:
            sibling = self._siblings[profile] = BrowserSdk(server_url=self.server_url, context=self.context, profile=profile)
            sibling._registry = self._registry
        return sibling

    @rpc("sync.run")
    async def sync(self, params: dict[str, Any]) -> dict[str, Any]:
        await self.ensure_online()
        return await self.sync_round()

    async def _live_round(self) -> None:
        await self.ensure_online()
        await self.sync_round()

    @rpc("live.start")
    async def live_start(self, params: dict[str, Any]) -> dict[str, Any]:
        interval = params.get("interval_ms", 2000)
        if not isinstance(interval, int) or not 200 <= interval <= 600_000:
            raise InvalidInput("interval_ms must be 200..600000")
        await self.require()
        if self._live is None:
            self._live = LiveSync(
                self._live_round,
                self._live_news,
                lambda conv: self.session.cursor_hint(conv) if self.session else 0,
                lambda online, error: self._emit({"type": "status", "online": online, "error": error}),
                on_access=self._set_access,
                watch_lock=f"{self.session.db.name}/watch" if self.session else None,
            )
        self._live.interval = interval / 1000
        self._live.start()
        return {"running": True, "online": self._live.online}

    async def _live_news(self, wait_ms: int) -> News | None:
        return await self.session.wait_for_news(wait_ms) if self.session else None

    def _set_access(self, conv: ConversationId, allowed: bool) -> None:
        if allowed == (conv in self._forbidden):
            if allowed:
                self._forbidden.discard(conv)
            else:
                self._forbidden.add(conv)
            self._emit({"type": "conversations", "changed": [conv.as_hex()]})

    @rpc("live.focus")
    async def live_focus(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = _conv_param(params) if params.get("conv") else None
        if self._live is not None and conv != self._live.focus:
            self._live.focus = conv
            self._live.kick()
        return {"focus": conv.as_hex() if conv else None}

    @rpc("live.stop")
    async def live_stop(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._live is not None:
            self._live.stop()
        return {"running": False}

    # -- conversations -------------------------------------------------------------

    @rpc("conversation.list")
    async def conversations(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        s = await self.require()
        async with s.use() as c:
            metas = [m for m in c.list_conversations() if not m.is_device_group]
        out = []
        for meta in metas:
            last = await s.db.tail(inbox.conversation_prefix(meta.id.as_hex()), 1)
            out.append(
                _conv_view(meta, inbox.message_view(*last[0]) if last else None, removed=meta.id in self._forbidden)
            )
        out.sort(key=lambda v: max(v["created_at"], v["last"]["time"] if v["last"] else 0), reverse=True)
        return out

    async def _meta(self, c: MessagingClient, conv: ConversationId) -> ConversationMeta:
        for meta in c.list_conversations():
            if meta.id == conv:
                return meta
        raise InvalidInput("no such conversation on this device")

    @rpc("conversation.create")
    async def create_conversation(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{name?}`` (absent, null or "": an unnamed conversation) -> the conversation."""
        given = _text_param(params, "name", max_len=256, allow_empty=True) if params.get("name") is not None else ""
        name = given or None
        s = await self.require()
        async with s.use() as c:
            conv = await c.create_conversation(name, now_ms())
            # The account's other devices read it too (best effort: the chat exists either way).
            try:
                await invite_user(c, conv, c.user_id(), now_ms(), required=False)
            except PingError as exc:
                log.warning("create: the account's other devices were not added: %s", type(exc).__name__)
            meta = await self._meta(c, conv)
        self._emit({"type": "conversations", "changed": [conv.as_hex()]})
        return _conv_view(meta)

    @rpc("conversation.invite")
    async def invite(self, params: dict[str, Any]) -> dict[str, Any]:
        conv, user = _conv_param(params), _user_param(params)
        s = await self.require()
        async with s.use() as c:
            await self._meta(c, conv)
            added = await invite_user(c, conv, user, now_ms())
        self._emit({"type": "conversations", "changed": [conv.as_hex()]})
        return {"added": added}

    @rpc("conversation.rename")
    async def rename(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = _conv_param(params)
        name = _text_param(params, "name", max_len=256, allow_empty=True) or None
        s = await self.require()
        async with s.use() as c:
            await self._meta(c, conv)
            await c.set_conversation_name(conv, name, now_ms())
            meta = await self._meta(c, conv)
        self._emit({"type": "conversations", "changed": [conv.as_hex()]})
        return _conv_view(meta)

    @rpc("conversation.remove_user")
    async def remove(self, params: dict[str, Any]) -> dict[str, Any]:
        conv, user = _conv_param(params), _user_param(params)
        s = await self.require()
        async with s.use() as c:
            await self._meta(c, conv)
            leaves = [m.leaf_index for m in c.members(conv) if m.user_id == user and m.device_id != c.device_id()]
            if not leaves:
                raise InvalidInput("that user has no device in this conversation")
            await c.remove_members(conv, leaves, now_ms())
        self._emit({"type": "conversations", "changed": [conv.as_hex()]})
        return {"removed": len(leaves)}

    @rpc("conversation.members")
    async def members(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        conv = _conv_param(params)
        s = await self.require()
        async with s.use() as c:
            await self._meta(c, conv)
            roster = c.members(conv)
            me = c.device_id()
        labels = await self._resolve({m.user_id for m in roster if m.user_id is not None})

        def label(m: MemberInfo) -> str | None:
            # The directory's label, only where the directory agrees with the verified account
            # (a label is a device's free text; the page shows it beside the account, not for it).
            entry = labels.get(m.device_id.as_hex(), {})
            return entry.get("label") if m.user_id is not None and entry.get("user_id") == m.user_id.as_hex() else None

        return [
            {
                # None: the leaf proves no account (made before account bindings); never shown as anybody.
                "user_id": m.user_id.as_hex() if m.user_id is not None else None,
                "device_id": m.device_id.as_hex(),
                "leaf": m.leaf_index,
                "label": label(m),
                "me": m.device_id == me,
            }
            for m in roster
        ]

    @rpc("conversation.messages")
    async def messages(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        conv = _conv_param(params)
        limit = params.get("limit", 200)
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be 1..10000")
        s = await self.require()
        out = []
        for key, raw in await s.db.tail(inbox.conversation_prefix(conv.as_hex()), limit):
            try:
                out.append(inbox.message_view(key, raw))
            except InvalidInput as exc:
                log.warning("skipping a stored message: %s", exc)
        return out

    @rpc("conversation.send")
    async def send(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, payload}`` (text, sent as UTF-8, or bytes) -> the stored message, once the server took it."""
        conv = _conv_param(params)
        # "text": the parameter's name before payloads were binary, still taken.
        plaintext = _payload_param(params, "payload" if "payload" in params or "text" not in params else "text")
        s = await self.require()
        async with s.use() as c:
            try:
                env = await c.send(conv, plaintext, now_ms())
            except TransportError as exc:
                if exc.status == 403:
                    self._set_access(conv, False)
                raise
            key, value = inbox.record_of(
                conv, env.seq, c.user_id(), c.device_id(), plaintext, env.hlc.wall_ms, env.epoch
            )
            await s.db.state.flush({key: value})
        message = inbox.message_view(key, value)
        self._emit({"type": "messages", "conv": conv.as_hex(), "messages": [message]})
        return message

    # -- the MessagingClient's own operations ------------------------------------------

    @rpc("conversation.add_members")
    async def add_members(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, members: [{device_id, key_package}], user_id?}`` -> ``{added}``: one Commit adding these
        KeyPackages (with ``user_id``, each must prove it is that user's device)."""
        conv = _conv_param(params)
        entries = []
        for item in _list_param(params, "members"):
            if not isinstance(item, dict):
                raise InvalidInput("members is a list of {device_id, key_package}")
            entries.append((_device_param(item), _bytes_param(item, "key_package", max_len=64 * 1024)))
        user = _user_param(params) if params.get("user_id") is not None else None
        s = await self.require()
        async with s.use() as c:
            await self._meta(c, conv)
            await c.add_members(conv, entries, now_ms(), for_user=user)
        self._emit({"type": "conversations", "changed": [conv.as_hex()]})
        return {"added": len(entries)}

    @rpc("conversation.remove_members")
    async def remove_members(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, leaves?: [leaf index], devices?: [device id]}`` -> ``{removed}``: one removing Commit."""
        conv = _conv_param(params)
        leaves = params.get("leaves") or []
        devices = params.get("devices") or []
        if not isinstance(leaves, list) or not isinstance(devices, list) or not 0 < len(leaves) + len(devices) <= 1000:
            raise InvalidInput("give 1..1000 leaves and/or devices to remove")
        if any(type(leaf) is not int or leaf < 0 for leaf in leaves):
            raise InvalidInput("leaves are leaf indexes")
        wanted = {_device_param({"d": d}, "d") for d in devices}
        s = await self.require()
        async with s.use() as c:
            await self._meta(c, conv)
            roster = c.members(conv)
            by_device = {m.device_id: m.leaf_index for m in roster}
            unknown = [d for d in wanted if d not in by_device]
            if unknown or any(leaf not in by_device.values() for leaf in leaves):
                raise InvalidInput("not a member of this conversation")
            chosen = sorted({*leaves, *(by_device[d] for d in wanted)})
            await c.remove_members(conv, chosen, now_ms())
        self._emit({"type": "conversations", "changed": [conv.as_hex()]})
        return {"removed": len(chosen)}

    @rpc("conversation.export_secret")
    async def export_secret(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, label, context?, length}`` -> ``{secret}``: MLS-Exporter of the current epoch (RFC 9420 §8.5)."""
        conv = _conv_param(params)
        label = _param(params, "label")
        context = params.get("context", b"")
        if not isinstance(context, bytes) or len(context) > 64 * 1024:
            raise InvalidInput("context must be bytes (at most 64 KiB)")
        length = _int_param(params, "length", 1, 255)
        s = await self.require()
        async with s.use() as c:
            await self._meta(c, conv)
            return {"secret": c.export_conversation_secret(conv, label, context, length)}

    @rpc("conversation.export_snapshot")
    async def export_snapshot(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv}`` -> ``{snapshot}``: SECRET, a history-only snapshot for another device of this account."""
        conv = _conv_param(params)
        s = await self.require()
        async with s.use() as c:
            await self._meta(c, conv)
            return {"snapshot": c.export_conversation_state_snapshot(conv, now_ms())}

    @rpc("conversation.import_snapshot")
    async def import_snapshot(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{snapshot}`` -> the (history-only) conversation it opens."""
        snapshot = _bytes_param(params, "snapshot", max_len=16 * 1024 * 1024)
        s = await self.require()
        async with s.use() as c:
            conv = await c.import_state_snapshot(snapshot, now_ms())
            meta = await self._meta(c, conv)
        self._emit({"type": "conversations", "changed": [conv.as_hex()]})
        return _conv_view(meta)

    @rpc("conversation.join")
    async def join(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{welcome}`` (an encoded Welcome MessageEnvelope) -> the joined conversation."""
        env = MessageEnvelope.decode(_bytes_param(params, "welcome", max_len=4 * 1024 * 1024))
        s = await self.require()
        async with s.use() as c:
            conv = await c.join_conversation(env, now_ms())
            meta = await self._meta(c, conv)
        if self._live is not None:
            self._live.rewatch()
        self._emit({"type": "conversations", "changed": [conv.as_hex()]})
        return _conv_view(meta)

    @rpc("conversation.process_envelope")
    async def process_envelope(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{envelope}`` (an encoded MessageEnvelope) -> ``{message}``: the stored message, or null for a
        handshake message or one with nothing to deliver."""
        env = MessageEnvelope.decode(_bytes_param(params, "envelope", max_len=4 * 1024 * 1024))
        s = await self.require()
        async with s.use() as c:

            async def take() -> list[IncomingMessage]:
                msg = await c.process_envelope(env, now_ms())
                return [msg] if msg is not None else []

            messages = await self._store_messages(s, take)
        self._emit_messages(s, messages)
        return {"message": messages[0] if messages else None}

    @rpc("conversation.commit_proposals")
    async def commit_proposals(self, params: dict[str, Any]) -> dict[str, Any]:
        """Commit the other members' pending proposals (and owed rejoins): ``{committed: [conv id]}``."""
        s = await self.require()
        async with s.use() as c:
            committed = await c.commit_pending_proposals(now_ms())
        if committed:
            self._emit({"type": "conversations", "changed": [cid.as_hex() for cid in committed]})
        return {"committed": [cid.as_hex() for cid in committed]}

    @rpc("device.key_package")
    async def key_package(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{last_resort?}`` -> ``{key_package}``: a fresh KeyPackage of this device, stored, NOT published."""
        last_resort = params.get("last_resort", False)
        if type(last_resort) is not bool:
            raise InvalidInput("last_resort must be a boolean")
        s = await self.require()
        async with s.use() as c:
            return {"key_package": await c.fresh_key_package(last_resort=last_resort)}

    @rpc("device.admit_to_chats")
    async def admit_to_chats(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{device_id, chats: [{conv, key_package}]}`` -> ``{outcomes: [{conv, status, detail}]}``
        (status "Admitted", "Skipped" or "Failed"): a device of this account added to these chats."""
        device = _device_param(params)
        pairs = []
        for item in _list_param(params, "chats"):
            if not isinstance(item, dict):
                raise InvalidInput("chats is a list of {conv, key_package}")
            pairs.append((_conv_param(item), _bytes_param(item, "key_package", max_len=64 * 1024)))
        s = await self.require()
        async with s.use() as c:
            outcomes = await c.admit_device_to_chats(device, pairs, now_ms())
        self._emit({"type": "conversations", "changed": [conv.as_hex() for conv, _ in pairs]})
        return {"outcomes": [_outcome_view(o) for o in outcomes]}

    # -- directory -----------------------------------------------------------------

    async def _resolve(self, users: set[UserId]) -> dict[str, dict[str, str]]:
        """Device labels of ``users`` from the directory (cached; unknown ones left out)."""
        s = await self.require()
        for user in users:
            if any(v["user_id"] == user.as_hex() for v in self._labels.values()):
                continue
            try:
                for info in await s.transport.list_devices(user):
                    self._labels[info.device_id.as_hex()] = {"label": info.label, "user_id": user.as_hex()}
            except PingError as exc:
                log.info("labels of %s...: %s", user.as_hex()[:16], type(exc).__name__)
        wanted = {u.as_hex() for u in users}
        return {d: v for d, v in self._labels.items() if v["user_id"] in wanted}

    @rpc("directory.labels")
    async def labels(self, params: dict[str, Any]) -> dict[str, Any]:
        users = _param(params, "users")
        if not isinstance(users, list) or len(users) > 1000:
            raise InvalidInput("users is a list of user ids")
        return await self._resolve({UserId.from_hex(u) for u in users})

    @rpc("account.devices")
    async def devices(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        s = await self.require()
        me = await self.whoami()
        infos = await s.transport.list_devices(s.identity.user_id)
        for info in infos:
            self._labels[info.device_id.as_hex()] = {"label": info.label, "user_id": s.user_hex}
        return [
            {
                "device_id": i.device_id.as_hex(),
                "label": i.label,
                "created_at": i.created_at_ms,
                "this": i.device_id.as_hex() == me["device_id"],
            }
            for i in infos
        ]

    @rpc("device.revoke")
    async def revoke(self, params: dict[str, Any]) -> dict[str, Any]:
        device = DeviceId.from_hex(_text_param(params, "device_id").lower())
        s = await self.require()
        async with s.use() as c:
            envelopes = await c.revoke_device(device, now_ms())
        self._emit({"type": "conversations", "changed": sorted({e.conversation_id.as_hex() for e in envelopes})})
        return {"removed_from": len(envelopes)}

    # -- linking -------------------------------------------------------------------

    async def _pending_link(self) -> PendingLink | None:
        raw = await self._reg_get(_PENDING_LINK)
        return PendingLink.decode(raw) if raw is not None else None

    @rpc("link.request")
    async def link_request(self, params: dict[str, Any]) -> dict[str, Any]:
        """This browser as a NEW device of an existing account: make the request code."""
        label = _text_param(params, "label", max_len=256)
        if await self.current() is not None:
            raise InvalidInput("this browser already has a Ping account")
        pending = PendingLink.new(label)
        await self._reg_put(_PENDING_LINK, pending.encode())
        return {"code": pending.request().encode(), "device_id": pending.device_id.as_hex()}

    @rpc("link.cancel")
    async def link_cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        await self._reg_delete(_PENDING_LINK)
        return {"state": "none"}

    @rpc("link.finish")
    async def link_finish(self, params: dict[str, Any]) -> dict[str, Any]:
        """Open the grant, register as the account's new device, wait for the ticket and use it."""
        timeout = _timeout_param(params)
        pending = await self._pending_link()
        if pending is None:
            raise InvalidInput("no pending link here: make a link request first")
        grant = open_grant(_param(params, "grant"), pending.keys, pending.device_id)
        # An account's data is ONE database of the origin (ping-account-<user id>): a second profile
        # linked to it would open that database as the first profile's device. Refused, nothing changed.
        user_hex = grant.binding.user_id.as_hex()
        known = await profiles(await self.registry())
        holders = sorted(p for p, u in known.items() if u == user_hex and p != self.profile)
        if holders:
            raise InvalidInput(
                f"profile {holders[0]!r} of this origin already holds that account: a new device of it needs"
                " another browser (or origin)"
            )
        session = await AccountSession.open(
            grant.binding.user_id.as_hex(),
            identity=grant.account,
            device_secret=pending.device_secret,
            label=pending.label,
            server_url=self.server_url,
        )
        if self.session is not None and self.session.user_hex != session.user_hex:
            raise InvalidInput("this browser already has another account")
        self.session = session  # adopted (registry) only once linked: a reload resumes with the same grant
        self._pending = pending
        linked = False
        try:
            await self.ensure_online()
            deadline = time.monotonic() + timeout
            while True:
                async with session.use() as c:
                    await self._join_welcomes(session, c)
                if self._pending is None:
                    linked = True
                    break
                if time.monotonic() > deadline:
                    raise InvalidInput(f"no linking ticket arrived within {timeout:.0f} s")
                await asyncio.sleep(1.0)
        finally:
            if not linked:
                self._pending = None
                self.session = None
                self._registered = False
        await self._adopt(session)
        await self._reg_delete(_PENDING_LINK)
        self._emit({"type": "account", "state": "ready"})
        await self.sync_round()
        return await self.whoami()

    @rpc("link.grant")
    async def link_grant(self, params: dict[str, Any]) -> dict[str, Any]:
        """An existing device: the grant code for a new device's request."""
        request = LinkRequestCode.decode(_param(params, "request"))
        with_key = params.get("with_account_key", False)
        if type(with_key) is not bool:
            raise InvalidInput("with_account_key must be a boolean")
        s = await self.require()
        async with s.use() as c:
            grant = c.grant_device(request.device_id, with_account_key=with_key)
        return {"grant": seal_grant(grant, request), "device_id": request.device_id.as_hex()}

    @rpc("link.admit")
    async def link_admit(self, params: dict[str, Any]) -> dict[str, Any]:
        """An existing device: wait for the new device to register, then send its ticket and admit it to every chat."""
        request = LinkRequestCode.decode(_param(params, "request"))
        timeout = _timeout_param(params)
        s = await self.require()
        new_device = request.device_id
        # Waiting needs no state: the lock stays free for the page and the other contexts.
        async with s.use() as c:
            n_chats = sum(1 for m in c.list_conversations() if not m.is_device_group)
        kps = await claim_new_device(s.transport, s.identity.user_id, new_device, 1 + n_chats, timeout, poll_s=1.0)
        async with s.use() as c:
            chats = [m.id for m in c.list_conversations() if not m.is_device_group]
            history = []
            for chat in chats:
                event = inbox.history_event(await s.db.tail(inbox.conversation_prefix(chat.as_hex()), HISTORY_MESSAGES))
                if event is not None:
                    history.append((chat, event))
            admission = await admit_new_device(c, request, kps, now_ms(), last_app_events=history)
        failed = [{"conv": o.conversation_id.as_hex(), "error": o.status.detail or ""} for o in admission.failed]
        self._emit({"type": "conversations", "changed": [chat.as_hex() for chat in chats]})
        return {"device_id": new_device.as_hex(), "admitted": admission.admitted, "failed": failed}

    # -- diagnostics (dev=1 only) ----------------------------------------------------

    @rpc("dev.sdk.state", dev=True)
    async def dev_state(self, params: dict[str, Any]) -> dict[str, Any]:
        """Fork check for tests: epoch and an exported secret per conversation, how often this context
        reloaded, and per conversation the log position the long poll waits after (``positions``)."""
        s = await self.require()
        out = {}
        positions = {}
        async with s.use() as c:
            for meta in c.list_conversations():
                positions[meta.id.as_hex()] = s.cursor_hint(meta.id)
                try:
                    secret = c.export_conversation_secret(meta.id, "ping browser test", b"", 16).hex()
                except PingError as exc:  # e.g. history-only state
                    secret = f"{type(exc).__name__}"
                out[meta.id.as_hex()] = {"epoch": meta.epoch, "secret": secret, "device_group": meta.is_device_group}
        generation = (await s.db.generation() or b"").hex()
        return {"conversations": out, "positions": positions, "reloads": s.reloads, "generation": generation}


_sdk: BrowserSdk | None = None


def sdk() -> BrowserSdk:
    """This context's SDK (created by :func:`register`)."""
    if _sdk is None:
        raise StorageError("the SDK is not registered in this context")
    return _sdk


def register(*, context: str = "worker", server_url: str = "", dev: bool = False, profile: str = DEFAULT_PROFILE) -> BrowserSdk:
    """Create this context's :class:`BrowserSdk` for ``profile`` and add its RPC methods (those
    declared with :func:`pyodide_app.rpc.rpc`) to the worker's table."""
    global _sdk
    if _sdk is not None:
        return _sdk
    s = _sdk = BrowserSdk(server_url=server_url, context=context, profile=profile)
    register_object(s, dev=dev)
    return s
