"""The server's directory of devices: ``directory.labels`` and ``account.devices``, and the label
cache the conversation roster reads (:func:`resolve_labels`).

A label is a device's free text, published by that device: it is shown
beside the account it belongs to, never as proof of one.
"""

from __future__ import annotations

import logging
from typing import Any

from ping_core.account import list_devices
from ping_core.errors import InvalidInput, PingError
from ping_core.ids import UserId

from ..rpc import rpc
from .core import BrowserSdk, RpcHandlers
from .params import param

__all__ = ["resolve_labels", "DirectoryRpc"]

log = logging.getLogger("pyodide_app.sdk")


async def resolve_labels(sdk: BrowserSdk, users: set[UserId]) -> dict[str, dict[str, str]]:
    """Device labels of ``users`` from the directory: ``{device id hex: {label, user_id}}``
    (cached; users the directory does not answer for, or answers for with another account's
    device, are left out: ``ping_core.account.list_devices``)."""
    s = await sdk.require()
    missing = [u for u in users if not any(v["user_id"] == u.as_hex() for v in sdk.labels.values())]
    if missing:
        async with s.use() as c:
            for user in missing:
                try:
                    listed = await list_devices(c, user)
                except PingError as exc:
                    log.info("labels of %s...: %s", user.as_hex()[:16], type(exc).__name__)
                    continue
                for info in listed:
                    sdk.labels[info.device_id.as_hex()] = {"label": info.label, "user_id": user.as_hex()}
    wanted = {u.as_hex() for u in users}
    return {d: v for d, v in sdk.labels.items() if v["user_id"] in wanted}


class DirectoryRpc(RpcHandlers):
    """``directory.labels``, ``account.devices``."""

    @rpc("directory.labels")
    async def labels(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{users: [user id]}`` -> ``{device id: {label, user_id}}``."""
        users = param(params, "users")
        if not isinstance(users, list) or len(users) > 1000:
            raise InvalidInput("users is a list of user ids")
        return await resolve_labels(self.sdk, {UserId.from_hex(u) for u in users})

    @rpc("account.devices")
    async def devices(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """This account's devices: ``[{device_id, label, created_at, this}]``."""
        s = await self.sdk.require()
        async with s.use() as c:
            infos = await list_devices(c)
            me = c.device_id()
        for info in infos:
            self.sdk.labels[info.device_id.as_hex()] = {"label": info.label, "user_id": s.user_hex}
        return [
            {
                "device_id": i.device_id.as_hex(),
                "label": i.label,
                "created_at": i.created_at_ms,
                "this": i.device_id == me,
            }
            for i in infos
        ]
