"""Checks of the values an app hands to :class:`~ping_core.client.MessagingClient`.

Each returns the value (normalised: a ``bytearray`` or ``memoryview`` becomes ``bytes``) or
raises ``InvalidInput`` with a message naming what was wrong; none has side effects, so a
refused call changes nothing.
"""

from __future__ import annotations

from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId
from ping_core.meta import MAX_NAME_LEN

__all__ = ["check_now", "check_bytes", "check_conv_id", "check_name"]


def check_now(now_ms: object) -> int:
    """A clock reading in milliseconds: a non-negative ``int`` (not a ``bool``)."""
    if type(now_ms) is not int or now_ms < 0:
        raise InvalidInput("now_ms must be a non-negative int")
    return now_ms


def check_bytes(value: object, what: str) -> bytes:
    """Bytes (a ``bytearray`` or ``memoryview`` is copied to ``bytes``)."""
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if type(value) is not bytes:
        raise InvalidInput(f"{what} must be bytes")
    return value


def check_conv_id(value: object) -> ConversationId:
    """A :class:`~ping_core.ids.ConversationId`."""
    if not isinstance(value, ConversationId):
        raise InvalidInput("a conversation id must be a ConversationId")
    return value


def check_name(name: object) -> str | None:
    """A conversation name: ``None`` or a ``str`` of at most ``MAX_NAME_LEN`` bytes of UTF-8."""
    if name is None:
        return None
    if type(name) is not str:
        raise InvalidInput("a conversation name must be a str or None")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("a conversation name must be valid Unicode") from None
    if len(raw) > MAX_NAME_LEN:
        raise InvalidInput(f"a conversation name is at most {MAX_NAME_LEN} bytes of UTF-8")
    return name
