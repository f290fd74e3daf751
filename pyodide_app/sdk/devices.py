"""``device.*``: this device's KeyPackages, and this account's other devices admitted to its chats
or revoked (through ``MessagingClient``)."""

from __future__ import annotations

from typing import Any

from ping_core.errors import InvalidInput

from ..rpc import rpc
from ..session import now_ms
from .core import RpcHandlers
from .params import conv_param, device_param, key_package_list
from .views import outcome_view

__all__ = ["DeviceRpc"]


class DeviceRpc(RpcHandlers):
    """``device.key_package``, ``device.admit_to_chats``, ``device.revoke``."""

    @rpc("device.key_package")
    async def key_package(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{last_resort?}`` -> ``{key_package}``: a fresh KeyPackage of this device, stored, NOT published."""
        last_resort = params.get("last_resort", False)
        if type(last_resort) is not bool:
            raise InvalidInput("last_resort must be a boolean")
        s = await self.sdk.require()
        async with s.use() as c:
            return {"key_package": await c.fresh_key_package(last_resort=last_resort)}

    @rpc("device.admit_to_chats")
    async def admit_to_chats(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{device_id, chats: [{conv, key_package}]}`` -> ``{outcomes: [{conv, status, detail}]}``
        (status "Admitted", "Skipped" or "Failed"): a device of this account added to these chats."""
        device = device_param(params)
        pairs = key_package_list(params, "chats", conv_param, "{conv, key_package}")
        s = await self.sdk.require()
        async with s.use() as c:
            outcomes = await c.admit_device_to_chats(device, pairs, now_ms())
        self.sdk.emit_changed([conv.as_hex() for conv, _ in pairs])
        return {"outcomes": [outcome_view(o) for o in outcomes]}

    @rpc("device.revoke")
    async def revoke(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{device_id}`` -> ``{removed_from}``: that device of this account removed from every conversation."""
        device = device_param(params)
        s = await self.sdk.require()
        async with s.use() as c:
            envelopes = await c.revoke_device(device, now_ms())
        self.sdk.emit_changed(sorted({e.conversation_id.as_hex() for e in envelopes}))
        return {"removed_from": len(envelopes)}
