"""Web Push subscription calls of ping_server's API (pure request builders and decoders).

A device tells the server where its browser's push service (RFC 8030) reaches it: the
subscription's endpoint URL and its RFC 8291 keys (the user agent's P-256 public key
``p256dh``, 65 bytes uncompressed, and the 16-byte ``auth`` secret). The server then POSTs an
encrypted wake-up hint there when the device's log or Welcome inbox has news. Routes, all
signed as the device like every call (``ping_core.transport.wire``):

* ``GET /v1/push/vapid-key`` -> ``{"v": 1, "key": bstr .size 65}``: the server's VAPID public
  key (RFC 8292 §3.2), the ``applicationServerKey`` of ``pushManager.subscribe``;
* ``POST /v1/push/subscriptions`` ``{"v": 1, "endpoint": tstr, "p256dh": bstr, "auth": bstr}``
  -> 204: add (or refresh) a subscription of the caller;
* ``POST /v1/push/unsubscribe`` ``{"v": 1, ? "endpoint": tstr}`` -> 204: drop that
  subscription of the caller, or all of them without ``endpoint``;
* ``GET /v1/push/subscriptions`` -> ``{"v": 1, "subscriptions": [{"endpoint", "created_ms"}]}``.

The decoders check structure and sizes only; the server checks what only it can (the
endpoint's scheme and host, that ``p256dh`` is a point of P-256, the per-device bound).
"""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.cbor import as_bytes, as_list, as_map, as_text, as_uint, dumps
from ping_core.errors import InvalidInput

from .wire import API_PREFIX, WireRequest, _open  # one record reader for every API body

__all__ = [
    "MAX_ENDPOINT_LEN",
    "MAX_PUSH_BODY",
    "MAX_SUBSCRIPTIONS_PER_DEVICE",
    "P256DH_LEN",
    "AUTH_LEN",
    "PushSubscription",
    "SubscriptionInfo",
    "vapid_key_request",
    "encode_vapid_key",
    "decode_vapid_key",
    "subscribe_request",
    "decode_subscribe",
    "unsubscribe_request",
    "decode_unsubscribe",
    "subscriptions_request",
    "encode_subscriptions",
    "decode_subscriptions",
]

# Push services' endpoints are URLs of about 200-400 characters (FCM, Mozilla, Apple, WNS).
MAX_ENDPOINT_LEN = 1024
P256DH_LEN = 65  # RFC 8291 §3.1: an uncompressed P-256 point
AUTH_LEN = 16  # RFC 8291 §3.2: the authentication secret is 16 octets
MAX_SUBSCRIPTIONS_PER_DEVICE = 4
MAX_PUSH_BODY = MAX_ENDPOINT_LEN + P256DH_LEN + AUTH_LEN + 64
_VAPID_KEY_LEN = 65
_MAX_LIST_BODY = MAX_SUBSCRIPTIONS_PER_DEVICE * (MAX_ENDPOINT_LEN + 32) + 64


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A browser's push subscription as the device hands it to the server.

    ``auth`` is a secret shared with the user agent (RFC 8291 §3.2): kept out of ``repr``."""

    endpoint: str
    p256dh: bytes
    auth: bytes

    def __repr__(self) -> str:
        return f"PushSubscription(endpoint=<{len(self.endpoint)} chars>)"


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """One of the caller's subscriptions as the server reports it."""

    endpoint: str
    created_ms: int


def _endpoint(value: object, what: str) -> str:
    text = as_text(value, what, max_len=MAX_ENDPOINT_LEN)
    # A URL is printable ASCII (RFC 3986 §2); anything else is refused, never normalized.
    if not text or not all(0x21 <= ord(c) <= 0x7E for c in text):
        raise InvalidInput(f"{what}: not a URL of printable ASCII")
    return text


def vapid_key_request() -> WireRequest:
    return WireRequest("GET", f"{API_PREFIX}/push/vapid-key")


def encode_vapid_key(key: bytes) -> bytes:
    return dumps({"v": 1, "key": key})


def decode_vapid_key(data: bytes) -> bytes:
    key = as_bytes(_open(data, "VapidKey", ("key",), 128)["key"], "VapidKey.key", length=_VAPID_KEY_LEN)
    if key[0] != 0x04:
        raise InvalidInput("VapidKey.key: not an uncompressed P-256 point")
    return key


def subscribe_request(sub: PushSubscription) -> WireRequest:
    body = dumps({"v": 1, "endpoint": _endpoint(sub.endpoint, "endpoint"), "p256dh": sub.p256dh, "auth": sub.auth})
    decode_subscribe(body)  # the same checks as the server's parser, before anything is sent
    return WireRequest("POST", f"{API_PREFIX}/push/subscriptions", body)


def decode_subscribe(data: bytes) -> PushSubscription:
    rec = _open(data, "PushSubscribe", ("endpoint", "p256dh", "auth"), MAX_PUSH_BODY)
    return PushSubscription(
        _endpoint(rec["endpoint"], "PushSubscribe.endpoint"),
        as_bytes(rec["p256dh"], "PushSubscribe.p256dh", length=P256DH_LEN),
        as_bytes(rec["auth"], "PushSubscribe.auth", length=AUTH_LEN),
    )


def unsubscribe_request(endpoint: str | None = None) -> WireRequest:
    fields: dict[str, object] = {"v": 1}
    if endpoint is not None:
        fields["endpoint"] = _endpoint(endpoint, "endpoint")
    return WireRequest("POST", f"{API_PREFIX}/push/unsubscribe", dumps(fields))  # type: ignore[arg-type]


def decode_unsubscribe(data: bytes) -> str | None:
    rec = _open(data, "PushUnsubscribe", (), MAX_PUSH_BODY, optional=("endpoint",))
    return _endpoint(rec["endpoint"], "PushUnsubscribe.endpoint") if "endpoint" in rec else None


def subscriptions_request() -> WireRequest:
    return WireRequest("GET", f"{API_PREFIX}/push/subscriptions")


def encode_subscriptions(subs: list[SubscriptionInfo]) -> bytes:
    return dumps({"v": 1, "subscriptions": [{"endpoint": s.endpoint, "created_ms": s.created_ms} for s in subs]})


def decode_subscriptions(data: bytes) -> list[SubscriptionInfo]:
    rec = _open(data, "PushSubscriptions", ("subscriptions",), _MAX_LIST_BODY)
    out = []
    for item in as_list(rec["subscriptions"], "PushSubscriptions.subscriptions", max_items=MAX_SUBSCRIPTIONS_PER_DEVICE):
        m = as_map(item, "PushSubscriptions.subscriptions[]", frozenset({"endpoint", "created_ms"}))
        out.append(SubscriptionInfo(_endpoint(m["endpoint"], "endpoint"), as_uint(m["created_ms"], "created_ms")))
    return out
