"""``conversation.*`` for who is in a conversation: invite a user (every device of theirs, the
shared ``ping_core.account.invite_user`` flow), remove one, read the roster, and add or remove
members by hand (one Commit each, RFC 9420 §12.4)."""

from __future__ import annotations

from typing import Any

from ping_core.account import invite_user
from ping_core.client import MemberInfo
from ping_core.errors import InvalidInput

from ..rpc import rpc
from ..session import now_ms
from .core import RpcHandlers, conversation_meta
from .directory import resolve_labels
from .params import conv_param, device_param, key_package_list, user_param

__all__ = ["MemberRpc"]


class MemberRpc(RpcHandlers):
    """``conversation.invite``, ``.remove_user``, ``.members``, ``.add_members``, ``.remove_members``."""

    @rpc("conversation.invite")
    async def invite(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, user_id}`` -> ``{added}``: every device of that user added (one Commit)."""
        conv, user = conv_param(params), user_param(params)
        s = await self.sdk.require()
        async with s.use() as c:
            conversation_meta(c, conv)
            added = await invite_user(c, conv, user, now_ms())
        self.sdk.emit_changed([conv.as_hex()])
        return {"added": added}

    @rpc("conversation.remove_user")
    async def remove(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, user_id}`` -> ``{removed}``: every device of that user (but this one) removed."""
        conv, user = conv_param(params), user_param(params)
        s = await self.sdk.require()
        async with s.use() as c:
            conversation_meta(c, conv)
            leaves = [m.leaf_index for m in c.members(conv) if m.user_id == user and m.device_id != c.device_id()]
            if not leaves:
                raise InvalidInput("that user has no device in this conversation")
            await c.remove_members(conv, leaves, now_ms())
        self.sdk.emit_changed([conv.as_hex()])
        return {"removed": len(leaves)}

    @rpc("conversation.members")
    async def members(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """``{conv}`` -> ``[{user_id, device_id, leaf, label, me}]``, one per leaf."""
        conv = conv_param(params)
        s = await self.sdk.require()
        async with s.use() as c:
            conversation_meta(c, conv)
            roster = c.members(conv)
            me = c.device_id()
        labels = await resolve_labels(self.sdk, {m.user_id for m in roster if m.user_id is not None})

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

    @rpc("conversation.add_members")
    async def add_members(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, members: [{device_id, key_package}], user_id?}`` -> ``{added}``: one Commit adding these
        KeyPackages (with ``user_id``, each must prove it is that user's device)."""
        conv = conv_param(params)
        entries = key_package_list(params, "members", device_param, "{device_id, key_package}")
        user = user_param(params) if params.get("user_id") is not None else None
        s = await self.sdk.require()
        async with s.use() as c:
            conversation_meta(c, conv)
            await c.add_members(conv, entries, now_ms(), for_user=user)
        self.sdk.emit_changed([conv.as_hex()])
        return {"added": len(entries)}

    @rpc("conversation.remove_members")
    async def remove_members(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, leaves?: [leaf index], devices?: [device id]}`` -> ``{removed}``: one removing Commit."""
        conv = conv_param(params)
        leaves = params.get("leaves") or []
        devices = params.get("devices") or []
        if not isinstance(leaves, list) or not isinstance(devices, list) or not 0 < len(leaves) + len(devices) <= 1000:
            raise InvalidInput("give 1..1000 leaves and/or devices to remove")
        if any(type(leaf) is not int or leaf < 0 for leaf in leaves):
            raise InvalidInput("leaves are leaf indexes")
        wanted = {device_param({"d": d}, "d") for d in devices}
        s = await self.sdk.require()
        async with s.use() as c:
            conversation_meta(c, conv)
            by_device = {m.device_id: m.leaf_index for m in c.members(conv)}
            unknown = [d for d in wanted if d not in by_device]
            if unknown or any(leaf not in by_device.values() for leaf in leaves):
                raise InvalidInput("not a member of this conversation")
            chosen = sorted({*leaves, *(by_device[d] for d in wanted)})
            await c.remove_members(conv, chosen, now_ms())
        self.sdk.emit_changed([conv.as_hex()])
        return {"removed": len(chosen)}
