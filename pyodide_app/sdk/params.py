"""The RPC params the SDK's handlers take, checked: each reader returns the typed value or raises
``InvalidInput`` with a message naming the parameter (the page sees it as ``{name, message}``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId, DeviceId, UserId

__all__ = [
    "MAX_TEXT",
    "MAX_LINK_WAIT",
    "param",
    "text_param",
    "bytes_param",
    "payload_param",
    "int_param",
    "list_param",
    "device_param",
    "conv_param",
    "user_param",
    "timeout_param",
    "key_package_list",
    "MAX_KEY_PACKAGE",
]

T = TypeVar("T")

#: The largest message payload, in bytes.
MAX_TEXT = 64 * 1024
#: The longest a linking call waits for the other device, in seconds.
MAX_LINK_WAIT = 900.0
#: The largest KeyPackage a page may hand in, in bytes.
MAX_KEY_PACKAGE = 64 * 1024


def param(params: dict[str, Any], name: str) -> Any:
    """``params[name]``, which must be present and not null."""
    if name not in params or params[name] is None:
        raise InvalidInput(f"missing parameter {name!r}")
    return params[name]


def text_param(params: dict[str, Any], name: str, *, max_len: int = 4096, allow_empty: bool = False) -> str:
    """Text, stripped, at most ``max_len`` UTF-8 bytes (and not empty unless ``allow_empty``)."""
    value = param(params, name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text")
    value = value.strip()
    if not value and not allow_empty:
        raise InvalidInput(f"{name} must not be empty")
    if len(value.encode("utf-8")) > max_len:
        raise InvalidInput(f"{name} is longer than {max_len} bytes")
    return value


def bytes_param(params: dict[str, Any], name: str, *, max_len: int, allow_empty: bool = False) -> bytes:
    """Bytes (a Uint8Array in JS) of at most ``max_len`` (and not empty unless ``allow_empty``)."""
    value = param(params, name)
    if not isinstance(value, bytes):
        raise InvalidInput(f"{name} must be bytes (a Uint8Array)")
    if len(value) > max_len or (not value and not allow_empty):
        raise InvalidInput(f"{name} must be 1..{max_len} bytes")
    return value


def payload_param(params: dict[str, Any], name: str) -> bytes:
    """A message payload: text (sent as its UTF-8 bytes) or bytes, 1..MAX_TEXT bytes."""
    value = param(params, name)
    if isinstance(value, str):
        value = value.encode("utf-8")
    return bytes_param({name: value}, name, max_len=MAX_TEXT)


def int_param(params: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    """An integer (never a bool) in ``lo..hi``; ``default`` when absent."""
    value = params.get(name, default)
    if type(value) is not int or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer in {lo}..{hi}")
    return value


def list_param(params: dict[str, Any], name: str, max_len: int = 1000) -> list[Any]:
    """A list of 1..``max_len`` entries (each checked by the caller)."""
    value = param(params, name)
    if not isinstance(value, list) or not 0 < len(value) <= max_len:
        raise InvalidInput(f"{name} must be a list of 1..{max_len} entries")
    return value


def device_param(params: dict[str, Any], name: str = "device_id") -> DeviceId:
    """A device id in hex (either case)."""
    return DeviceId.from_hex(text_param(params, name).lower())


def conv_param(params: dict[str, Any]) -> ConversationId:
    """``conv``: a conversation id in hex."""
    return ConversationId.from_hex(text_param(params, "conv"))


def user_param(params: dict[str, Any]) -> UserId:
    """``user_id``: a user id in hex (either case)."""
    return UserId.from_hex(text_param(params, "user_id").lower())


def timeout_param(params: dict[str, Any]) -> float:
    """``timeout_s``: seconds in (0, MAX_LINK_WAIT], 300 when absent."""
    value = params.get("timeout_s", 300)
    if not isinstance(value, (int, float)) or not 0 < value <= MAX_LINK_WAIT:
        raise InvalidInput(f"timeout_s must be in (0, {MAX_LINK_WAIT:.0f}]")
    return float(value)


def key_package_list(
    params: dict[str, Any], name: str, of: Callable[[dict[str, Any]], T], shape: str
) -> list[tuple[T, bytes]]:
    """``name``: a list of 1..1000 objects ``shape``, each read as ``(of(item), its key_package)``
    (``key_package``: 1..MAX_KEY_PACKAGE bytes)."""
    out = []
    for item in list_param(params, name):
        if not isinstance(item, dict):
            raise InvalidInput(f"{name} is a list of {shape}")
        out.append((of(item), bytes_param(item, "key_package", max_len=MAX_KEY_PACKAGE)))
    return out
