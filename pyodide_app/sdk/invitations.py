"""``invitation.*``: the conversations others invited this account to, kept until the user
accepts or declines them (unless ``account.settings`` ``auto_join`` joins them at once)."""

from __future__ import annotations

from typing import Any

from ..rpc import rpc
from ..session import now_ms
from .core import RpcHandlers, conversation_meta
from .params import conv_param
from .syncing import join_welcomes
from .views import conv_view, invitation_view

__all__ = ["InvitationRpc"]


class InvitationRpc(RpcHandlers):
    """``invitation.list``, ``invitation.accept``, ``invitation.decline``."""

    @rpc("invitation.list")
    async def invitations(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The pending invitations (fetches new Welcomes first)."""
        s = await self.sdk.require()
        async with s.use() as c:
            await join_welcomes(self.sdk, s, c)
            return [invitation_view(i) for i in c.invitations()]

    @rpc("invitation.accept")
    async def invitation_accept(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv}`` -> the joined conversation."""
        conv = conv_param(params)
        s = await self.sdk.require()
        async with s.use() as c:
            await c.accept_invitation(conv, now_ms())
            meta = conversation_meta(c, conv)
        self.sdk.forbidden.discard(conv)
        self.sdk.rewatch()  # the long poll must include the conversation joined now
        self.sdk.emit_changed([conv.as_hex()])
        return conv_view(meta)

    @rpc("invitation.decline")
    async def invitation_decline(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv}`` -> ``{declined}``; the invitations left are announced."""
        conv = conv_param(params)
        s = await self.sdk.require()
        async with s.use() as c:
            await c.decline_invitation(conv)
            pending = [invitation_view(i) for i in c.invitations()]
        self.sdk.emit({"type": "invitations", "pending": pending})
        return {"declined": conv.as_hex()}
