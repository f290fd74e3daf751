"""Live updates and acknowledgement: ``live.*`` runs sync rounds and a long poll
(:class:`pyodide_app.live.LiveSync`) that announce what arrives as events; ``message.*`` is
how the page, in the manual acknowledgement mode, takes messages for good."""

from __future__ import annotations

from typing import Any

from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId
from ping_core.sync import News

from .. import inbox
from ..live import LiveSync
from ..rpc import rpc
from .core import RpcHandlers
from .delivery import unacked
from .params import conv_param, param
from .syncing import online_round

__all__ = ["UpdateRpc"]


class UpdateRpc(RpcHandlers):
    """``live.start``, ``live.focus``, ``live.stop``, ``message.pending``, ``message.ack``."""

    @rpc("live.start")
    async def live_start(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{interval_ms?}`` (200..600000, default 2000) -> ``{running, online}``."""
        interval = params.get("interval_ms", 2000)
        if not isinstance(interval, int) or not 200 <= interval <= 600_000:
            raise InvalidInput("interval_ms must be 200..600000")
        sdk = self.sdk
        await sdk.require()
        if sdk.live is None:
            sdk.live = LiveSync(
                self._round,
                self._news,
                lambda conv: sdk.session.cursor_hint(conv) if sdk.session else 0,
                lambda online, error: sdk.emit({"type": "status", "online": online, "error": error}),
                on_access=sdk.set_access,
                watch_lock=f"{sdk.session.db.name}/watch" if sdk.session else None,
            )
        sdk.live.interval = interval / 1000
        sdk.live.start()
        return {"running": True, "online": sdk.live.online}

    async def _round(self) -> None:
        await online_round(self.sdk)

    async def _news(self, wait_ms: int) -> News | None:
        session = self.sdk.session
        return await session.wait_for_news(wait_ms) if session else None

    @rpc("live.focus")
    async def live_focus(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv?}``: the conversation the page shows (synced first); null: none."""
        conv: ConversationId | None = conv_param(params) if params.get("conv") else None
        live = self.sdk.live
        if live is not None and conv != live.focus:
            live.focus = conv
            live.kick()
        return {"focus": conv.as_hex() if conv else None}

    @rpc("live.stop")
    async def live_stop(self, params: dict[str, Any]) -> dict[str, Any]:
        """Stop the live updates: ``{running: false}``."""
        if self.sdk.live is not None:
            self.sdk.live.stop()
        return {"running": False}

    @rpc("message.pending")
    async def pending(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages not acknowledged yet (``ack: "manual"``; always empty in the automatic mode)."""
        return await unacked(await self.sdk.require())

    @rpc("message.ack")
    async def ack(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{messages: [{conv, seq}]}``: these messages are the page's now (not delivered again)."""
        items = param(params, "messages")
        if not isinstance(items, list) or len(items) > 10_000:
            raise InvalidInput("messages is a list of {conv, seq} (at most 10000)")
        keys = []
        for item in items:
            if not isinstance(item, dict):
                raise InvalidInput("messages is a list of {conv, seq}")
            conv = conv_param(item)
            keys.append(inbox.unacked_key(conv.as_hex(), item.get("seq")))  # type: ignore[arg-type]
        s = await self.sdk.require()
        acked = 0
        for key in keys:
            if await s.db.app.get(key) is not None:
                await s.db.app.delete(key)
                acked += 1
        return {"acked": acked}
