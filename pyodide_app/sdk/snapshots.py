"""Secrets out of a conversation's MLS state: ``conversation.export_secret`` (the MLS exporter,
RFC 9420 §8.5), history-only snapshots for another device of this account
(``conversation.export_snapshot`` / ``import_snapshot``), and the ``dev.sdk.state`` fork check."""

from __future__ import annotations

from typing import Any

from ping_core.errors import InvalidInput, PingError

from ..rpc import rpc
from ..session import now_ms
from .core import RpcHandlers, conversation_meta
from .params import bytes_param, conv_param, int_param, param
from .views import conv_view

__all__ = ["SnapshotRpc"]

#: The largest snapshot ``conversation.import_snapshot`` takes.
MAX_SNAPSHOT = 16 * 1024 * 1024


class SnapshotRpc(RpcHandlers):
    """``conversation.export_secret``, ``.export_snapshot``, ``.import_snapshot``; ``dev.sdk.state`` (dev only)."""

    @rpc("conversation.export_secret")
    async def export_secret(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, label, context?, length}`` -> ``{secret}``: MLS-Exporter of the current epoch (RFC 9420 §8.5)."""
        conv = conv_param(params)
        label = param(params, "label")
        context = params.get("context", b"")
        if not isinstance(context, bytes) or len(context) > 64 * 1024:
            raise InvalidInput("context must be bytes (at most 64 KiB)")
        length = int_param(params, "length", 1, 255)
        s = await self.sdk.require()
        async with s.use() as c:
            conversation_meta(c, conv)
            return {"secret": c.export_conversation_secret(conv, label, context, length)}

    @rpc("conversation.export_snapshot")
    async def export_snapshot(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv}`` -> ``{snapshot}``: SECRET, a history-only snapshot for another device of this account."""
        conv = conv_param(params)
        s = await self.sdk.require()
        async with s.use() as c:
            conversation_meta(c, conv)
            return {"snapshot": c.export_conversation_state_snapshot(conv, now_ms())}

    @rpc("conversation.import_snapshot")
    async def import_snapshot(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{snapshot}`` -> the (history-only) conversation it opens."""
        snapshot = bytes_param(params, "snapshot", max_len=MAX_SNAPSHOT)
        s = await self.sdk.require()
        async with s.use() as c:
            conv = await c.import_state_snapshot(snapshot, now_ms())
            meta = conversation_meta(c, conv)
        self.sdk.emit_changed([conv.as_hex()])
        return conv_view(meta)

    @rpc("dev.sdk.state", dev=True)
    async def dev_state(self, params: dict[str, Any]) -> dict[str, Any]:
        """Fork check for tests: epoch and an exported secret per conversation, how often this context
        reloaded, and per conversation the log position the long poll waits after (``positions``)."""
        s = await self.sdk.require()
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
