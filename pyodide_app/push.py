"""RPC methods for Web Push (``static/pingpush.mjs`` calls them; the server side is ping_server.push).

* ``push.vapid_key`` -> the server's VAPID public key, base64url (the ``applicationServerKey``);
* ``push.subscribe {endpoint, keys: {p256dh, auth}}`` (``PushSubscription.toJSON()``, keys
  base64url) -> ``push.status``'s answer: registers this device's subscription with the server,
  signed as the device like every call (the device is registered first when needed);
* ``push.unsubscribe {endpoint?}`` -> ``push.status``: drops that subscription, or all of this
  device's;
* ``push.status`` -> ``{"subscriptions": [{"endpoint", "created_ms"}]}``.

Malformed parameters are ``InvalidInput`` before anything is sent; the server refuses what only
it can check (scheme and host of the endpoint, the key on P-256, the per-device bound).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ping_core.errors import InvalidInput
from ping_core.transport.pushwire import AUTH_LEN, MAX_ENDPOINT_LEN, P256DH_LEN, PushSubscription
from ping_core.transport.remote import RemoteTransport

from .rpc import rpc

__all__ = ["vapid_key", "status", "subscribe", "unsubscribe"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(value: Any, what: str, length: int) -> bytes:
    if not isinstance(value, str) or len(value) > 4 * length:
        raise InvalidInput(f"{what}: expected base64url text")
    try:
        raw = base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what}: not base64url") from None
    if len(raw) != length:
        raise InvalidInput(f"{what}: expected {length} bytes")
    return raw


def _endpoint(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ENDPOINT_LEN:
        raise InvalidInput(f"endpoint: expected a URL of at most {MAX_ENDPOINT_LEN} characters")
    return value


async def _transport() -> RemoteTransport:
    """This context's account transport, its device registered with the server."""
    from . import sdk

    s = sdk.register()  # this context's BrowserSdk (made at boot)
    await s.ensure_online()
    session = await s.require()
    transport = session.transport
    if not isinstance(transport, RemoteTransport):
        raise InvalidInput("push needs the HTTP transport")
    return transport


@rpc("push.vapid_key")
async def vapid_key(params: dict[str, Any]) -> str:
    return _b64url(await (await _transport()).push_vapid_key())


@rpc("push.status")
async def status(params: dict[str, Any]) -> dict[str, Any]:
    subs = await (await _transport()).push_subscriptions()
    return {"subscriptions": [{"endpoint": s.endpoint, "created_ms": s.created_ms} for s in subs]}


@rpc("push.subscribe")
async def subscribe(params: dict[str, Any]) -> dict[str, Any]:
    keys = params.get("keys")
    if not isinstance(keys, dict):
        raise InvalidInput("keys: expected {p256dh, auth}")
    sub = PushSubscription(
        _endpoint(params.get("endpoint")),
        _unb64url(keys.get("p256dh"), "keys.p256dh", P256DH_LEN),
        _unb64url(keys.get("auth"), "keys.auth", AUTH_LEN),
    )
    transport = await _transport()
    await transport.push_subscribe(sub)
    return await status({})


@rpc("push.unsubscribe")
async def unsubscribe(params: dict[str, Any]) -> dict[str, Any]:
    endpoint = params.get("endpoint")
    transport = await _transport()
    await transport.push_unsubscribe(None if endpoint is None else _endpoint(endpoint))
    return await status({})
