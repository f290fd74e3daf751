"""``account.*``: this profile's account (create it, who and what it is) and its settings."""

from __future__ import annotations

from typing import Any

from ping_core.errors import InvalidInput, PingError
from ping_core.identity import Identity

from ..locks import WebLock
from ..rpc import rpc
from ..session import AccountSession
from .core import RpcHandlers
from .params import text_param
from .profiles import ACK, ACK_MODES, AUTO_JOIN, NOTIFY, NOTIFY_MODES, PENDING_LINK, REGISTRY_DB

__all__ = ["AccountRpc"]


class AccountRpc(RpcHandlers):
    """``account.whoami``, ``account.status``, ``account.create``, ``account.settings``, ``account.profiles``."""

    @rpc("account.whoami")
    async def whoami(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{user_id, device_id, label, registered}``."""
        return await self.sdk.whoami()

    @rpc("account.status")
    async def status(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{state: "ready", ...whoami}``, ``{state: "linking", request, device_id, label}`` or ``{state: "none"}``."""
        if await self.sdk.current() is not None:
            return {"state": "ready", **(await self.sdk.whoami())}
        pending = await self.sdk.pending_link()
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
        """``{label}`` -> whoami and ``error``: a new account with this device as its first one.

        Created locally first; a failed registration is reported in ``error``
        (live updates retry it)."""
        label = text_param(params, "label", max_len=256)
        sdk = self.sdk
        async with WebLock(REGISTRY_DB):  # two tabs never make two accounts
            if await sdk.current() is not None:
                raise InvalidInput("this browser already has a Ping account")
            identity = Identity.generate()
            session = await AccountSession.open(
                identity.user_id.as_hex(), identity=identity, label=label, server_url=sdk.server_url
            )
            async with session.use():
                pass  # the first init: device record and DeviceGroup
            await sdk.adopt(session)
            await sdk.records.delete(PENDING_LINK)
        error = None
        try:
            await sdk.ensure_online()
        except PingError as exc:  # kept locally; live updates retry the registration
            error = f"{type(exc).__name__}: {exc}"
        sdk.emit({"type": "account", "state": "ready"})
        return {**(await sdk.whoami()), "error": error}

    @rpc("account.settings")
    async def settings(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{auto_join?, notify?, ack?}``: set what is given; returns the settings (``auto_join``: join every
        invitation without asking, off by default; ``notify``: what a push-woken service worker shows,
        "text" (the decrypted message, the default), "generic" or "off"; ``ack``: "auto" (a message is
        the page's once stored) or "manual" (delivered again until ``message.ack``)). Per profile."""
        records = self.sdk.records
        if "auto_join" in params:
            value = params["auto_join"]
            if type(value) is not bool:
                raise InvalidInput("auto_join must be a boolean")
            await records.put(AUTO_JOIN, b"1" if value else b"0")
        if "notify" in params:
            mode = params["notify"]
            if mode not in NOTIFY_MODES:
                raise InvalidInput(f"notify is one of {', '.join(NOTIFY_MODES)}")
            await records.put(NOTIFY, mode.encode("ascii"))
        if "ack" in params:
            ack = params["ack"]
            if ack not in ACK_MODES:
                raise InvalidInput(f"ack is one of {', '.join(ACK_MODES)}")
            await records.put(ACK, ack.encode("ascii"))
        return {"auto_join": await records.auto_join(), "notify": await records.notify(), "ack": await records.ack_mode()}

    @rpc("account.profiles")
    async def list_profiles(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{profile, profiles: {name: user id}}``: this context's profile and every profile of the origin with an account."""
        return {"profile": self.sdk.profile, "profiles": await self.sdk.records.registry.profiles()}
