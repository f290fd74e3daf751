"""``link.*``: a new device joins an existing account (RFC 9420 gives each device its own leaf;
the account links them).

The new device (this browser, no account yet) makes a request code
(``link.request``), the existing device answers with a sealed grant
(``link.grant``) and, once the new device registered, sends it a linking
ticket and admits it to every chat (``link.admit``, ``ping_core.account``'s
``claim_new_device`` and ``admit_new_device``). The new device opens the
grant, registers and waits for the ticket (``link.finish``). The request's
secrets stay in the registry (``link-pending``) until the link is done, so a
reload resumes with the same grant.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ping_core.account import admit_new_device, claim_new_device
from ping_core.errors import InvalidInput
from ping_core.link import AccountGrant, LinkRequestCode, PendingLink, open_grant, seal_grant

from .. import inbox
from ..rpc import rpc
from ..session import AccountSession, now_ms
from .core import RpcHandlers
from .params import param, text_param, timeout_param
from .profiles import PENDING_LINK
from .syncing import join_welcomes, sync_round

__all__ = ["LinkRpc", "HISTORY_MESSAGES"]

#: Stored messages per conversation handed to a newly linked device (its "what you missed").
HISTORY_MESSAGES = 200


class LinkRpc(RpcHandlers):
    """``link.request``, ``link.cancel``, ``link.finish`` (the new device); ``link.grant``, ``link.admit``
    (an existing device)."""

    @rpc("link.request")
    async def link_request(self, params: dict[str, Any]) -> dict[str, Any]:
        """This browser as a NEW device of an existing account: make the request code."""
        label = text_param(params, "label", max_len=256)
        if await self.sdk.current() is not None:
            raise InvalidInput("this browser already has a Ping account")
        pending = PendingLink.new(label)
        await self.sdk.records.put(PENDING_LINK, pending.encode())
        return {"code": pending.request().encode(), "device_id": pending.device_id.as_hex()}

    @rpc("link.cancel")
    async def link_cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        """Forget the pending request: ``{state: "none"}``."""
        await self.sdk.records.delete(PENDING_LINK)
        return {"state": "none"}

    @rpc("link.finish")
    async def link_finish(self, params: dict[str, Any]) -> dict[str, Any]:
        """Open the grant, register as the account's new device, wait for the ticket and use it."""
        timeout = timeout_param(params)
        sdk = self.sdk
        pending = await sdk.pending_link()
        if pending is None:
            raise InvalidInput("no pending link here: make a link request first")
        grant = open_grant(param(params, "grant"), pending.keys, pending.device_id)
        await self._refuse_held_account(grant)
        session = await AccountSession.open(
            grant.binding.user_id.as_hex(),
            identity=grant.account,
            device_secret=pending.device_secret,
            label=pending.label,
            server_url=sdk.server_url,
        )
        if sdk.session is not None and sdk.session.user_hex != session.user_hex:
            raise InvalidInput("this browser already has another account")
        sdk.session = session  # adopted (registry) only once linked: a reload resumes with the same grant
        sdk.pending = pending
        linked = False
        try:
            await sdk.ensure_online()
            await self._await_ticket(session, timeout)
            linked = True
        finally:
            if not linked:
                sdk.pending = None
                sdk.session = None
                sdk.registered = False
        await sdk.adopt(session)
        await sdk.records.delete(PENDING_LINK)
        sdk.emit({"type": "account", "state": "ready"})
        await sync_round(sdk)
        return await sdk.whoami()

    async def _refuse_held_account(self, grant: AccountGrant) -> None:
        """An account's data is ONE database of the origin (ping-account-<user id>): a second profile
        linked to it would open that database as the first profile's device. Refused, nothing changed."""
        user_hex = grant.binding.user_id.as_hex()
        known = await self.sdk.records.registry.profiles()
        holders = sorted(p for p, u in known.items() if u == user_hex and p != self.sdk.profile)
        if holders:
            raise InvalidInput(
                f"profile {holders[0]!r} of this origin already holds that account: a new device of it needs"
                " another browser (or origin)"
            )

    async def _await_ticket(self, session: AccountSession, timeout: float) -> None:
        """Take the Welcome inbox every second until the linking ticket came (``sdk.pending`` cleared
        by :func:`join_welcomes`); InvalidInput after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            async with session.use() as c:
                await join_welcomes(self.sdk, session, c)
            if self.sdk.pending is None:
                return
            if time.monotonic() > deadline:
                raise InvalidInput(f"no linking ticket arrived within {timeout:.0f} s")
            await asyncio.sleep(1.0)

    @rpc("link.grant")
    async def link_grant(self, params: dict[str, Any]) -> dict[str, Any]:
        """An existing device: the grant code for a new device's request."""
        request = LinkRequestCode.decode(param(params, "request"))
        with_key = params.get("with_account_key", False)
        if type(with_key) is not bool:
            raise InvalidInput("with_account_key must be a boolean")
        s = await self.sdk.require()
        async with s.use() as c:
            grant = c.grant_device(request.device_id, with_account_key=with_key)
        return {"grant": seal_grant(grant, request), "device_id": request.device_id.as_hex()}

    @rpc("link.admit")
    async def link_admit(self, params: dict[str, Any]) -> dict[str, Any]:
        """An existing device: wait for the new device to register, then send its ticket and admit it to every chat."""
        request = LinkRequestCode.decode(param(params, "request"))
        timeout = timeout_param(params)
        s = await self.sdk.require()
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
        self.sdk.emit_changed([chat.as_hex() for chat in chats])
        return {"device_id": new_device.as_hex(), "admitted": admission.admitted, "failed": failed}
