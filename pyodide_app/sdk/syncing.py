"""Sync rounds: the Welcome inbox, then every conversation, the decrypted messages stored with the
state that consumed them (``sync.run``; ``sw.cold_sync``, the service worker's wake-up for every
profile of the origin)."""

from __future__ import annotations

import logging
import time
from typing import Any

from ping_core.account import take_welcomes, top_up_key_packages
from ping_core.client import MessagingClient
from ping_core.errors import DeviceRevoked, PingError
from ping_core.ids import ConversationId
from ping_core.message import IncomingMessage
from ping_core.sync import SyncProblem, SyncProblemKind

from ..rpc import rpc
from ..session import AccountSession, now_ms
from .core import KEY_PACKAGES, BrowserSdk, RpcHandlers, key_package_batch
from .delivery import import_history
from .views import invitation_view, problem_view

__all__ = ["join_welcomes", "sync_round", "SyncRpc"]

log = logging.getLogger("pyodide_app.sdk")


async def join_welcomes(sdk: BrowserSdk, s: AccountSession, c: MessagingClient) -> list[ConversationId]:
    """The Welcome inbox, as the CLI takes it (``ping_core.account.take_welcomes``): a linking
    ticket (only while a link of ours is pending, see ``link.finish``), invitations kept for
    the user unless auto-join is on (those of this account's devices are joined); then a
    KeyPackage top-up. New invitations are announced (``invitations`` event)."""
    link_keys = sdk.pending.keys if sdk.pending is not None else None
    done = await take_welcomes(c, now_ms(), auto_join=await sdk.records.auto_join(), link_keys=link_keys)
    if done.ticket is not None:
        catchup = done.ticket.catchup()
        if catchup is not None:
            await import_history(s, catchup.last_app_events_per_conv)
        sdk.pending = None
    if done.new:
        for invitation in done.new:
            sdk.emit({"type": "invitation", "invitation": invitation_view(invitation)})
        sdk.emit({"type": "invitations", "pending": [invitation_view(i) for i in done.pending]})
    # Each join used one of our KeyPackages (the linking ticket's too), unless it was
    # the last-resort one: the server's stock is topped up as the CLI does.
    if done.joined:
        try:
            await top_up_key_packages(c, KEY_PACKAGES, batch=key_package_batch(s))
        except PingError as exc:  # the last-resort KeyPackage covers until the next top-up
            log.warning("KeyPackage top-up failed: %s", type(exc).__name__)
    return list(done.joined)


async def sync_round(sdk: BrowserSdk) -> dict[str, Any]:
    """Welcomes, then every conversation; decrypted messages stored with the state that consumed them.

    The sync's checkpoints are deferred (one IndexedDB transaction with
    the messages), and no commit is sent on deferred checkpoints; so once
    they are flushed, other members' pending proposals are committed
    (``commit_pending_proposals``, the SDK's policy) and what catching up
    for it decrypted is stored the same way. Returns (and announces)
    ``{messages, conversations}``: the messages this browser had not stored
    before and the conversations (hex ids) that changed.
    """
    s = await sdk.require()
    problems: list[SyncProblem] = []

    async def take() -> list[IncomingMessage]:
        result = await c.sync(now_ms(), commit_proposals=False)
        problems.extend(result.problems)
        return list(result.messages)

    try:
        async with s.use() as c:
            before = {m.id: (m.name, m.epoch, m.member_count) for m in c.list_conversations()}
            joined = await join_welcomes(sdk, s, c)
            messages = await sdk.store_messages(s, take)
            await c.commit_pending_proposals(now_ms())  # rejoins, migrations, proposals; logs and skips what fails
            messages += await sdk.store_messages(s, c.pending_messages)
            if any(p.kind is SyncProblemKind.DESYNCED for p in problems):
                # A rejoin above reports HEALED (and what it could not read) on the conversation
                # for the next sync: collect it in this round, so the page hears of the heal now.
                messages += await sdk.store_messages(s, take)
            after = {m.id: (m.name, m.epoch, m.member_count) for m in c.list_conversations()}
    except DeviceRevoked as exc:
        sdk.emit({"type": "revoked", "message": str(exc)})
        raise
    if problems:
        sdk.emit({"type": "problems", "problems": [problem_view(p) for p in problems]})
        for p in problems:
            if p.kind is SyncProblemKind.HEALED:
                sdk.emit({"type": "fork-healed", "conv": p.conversation_id.as_hex()})
    sdk.forbidden.difference_update(joined)
    changed = sorted(
        cid.as_hex() for cid in set(before) | set(after) if before.get(cid) != after.get(cid) or cid in joined
    )
    sdk.emit_messages(messages)
    if changed:
        sdk.emit_changed(changed)
    return {"messages": messages, "conversations": changed}


async def online_round(sdk: BrowserSdk) -> dict[str, Any]:
    """Register this device if it is not yet (this start), then one :func:`sync_round`."""
    await sdk.ensure_online()
    return await sync_round(sdk)


class SyncRpc(RpcHandlers):
    """``sync.run`` and the service worker's ``sw.cold_sync``."""

    @rpc("sync.run")
    async def sync(self, params: dict[str, Any]) -> dict[str, Any]:
        """One round now: ``{messages, conversations}`` (see :func:`sync_round`)."""
        return await online_round(self.sdk)

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
        me = self.sdk
        notify = await me.records.notify()
        names = await me.records.registry.profiles()
        accounts: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []
        changed: list[str] = []
        failure: PingError | None = None
        for name in sorted(names, key=lambda n: (n != me.profile, n)):
            sdk_p = me.sibling(name)
            entry: dict[str, Any] = {"profile": name, "account": names[name], "messages": 0, "error": None}
            entry["notify"] = await sdk_p.records.notify()
            try:
                if await sdk_p.current() is None:
                    continue
                result = await sync_round(sdk_p)
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
        mine = [a["account"] for a in accounts if a["profile"] == me.profile] or [a["account"] for a in accounts]
        return {
            "account": mine[0] if mine else None,
            "accounts": accounts,
            "messages": len(new),
            "new": new,
            "conversations": changed,
            "notify": notify,
            "ms": round((time.perf_counter() - t0) * 1000),
        }
