"""Fixed-length identifiers: ``UserId``, ``DeviceId`` and ``ConversationId``.

Each is an immutable, hashable, ordered wrapper around raw bytes of one exact
length. Two ids of different classes never compare equal, even with the same
bytes, so a ``DeviceId`` cannot be used where a ``UserId`` is expected by
accident. The public modules re-export them (``ping_core.identity.UserId``,
``ping_core.device.DeviceId``, ``ping_core.message.ConversationId``).

* ``UserId``: 32 bytes, SHA-256 of the account's Ed25519 public key.
* ``DeviceId``: 32 bytes, SHA-256 of the device's Ed25519 signing public key.
* ``ConversationId``: 16 bytes. New ids are time-ordered like a ULID: a 48-bit
  big-endian millisecond timestamp followed by 80 random bits. A user's
  DeviceGroup has the deterministic id ``FF DC || SHA-256(user_id)[:14]``,
  which no ULID minted before the year 10889 can collide with.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import ClassVar, TypeVar

from ping_core.errors import InvalidInput

__all__ = ["UserId", "DeviceId", "ConversationId", "DEVICE_GROUP_PREFIX"]

_I = TypeVar("_I", bound="_FixedId")

DEVICE_GROUP_PREFIX = b"\xff\xdc"


class _FixedId:
    """Raw bytes of exactly ``LENGTH`` bytes. Immutable."""

    __slots__ = ("_value",)
    LENGTH: ClassVar[int]
    _value: bytes

    def __init__(self, value: bytes | bytearray | memoryview) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise InvalidInput(f"{type(self).__name__} must be bytes, got {type(value).__name__}")
        raw = bytes(value)
        if len(raw) != self.LENGTH:
            raise InvalidInput(f"{type(self).__name__} must be {self.LENGTH} bytes, got {len(raw)}")
        object.__setattr__(self, "_value", raw)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @property
    def value(self) -> bytes:
        """The raw bytes."""
        return self._value

    def __bytes__(self) -> bytes:
        return self._value

    def as_hex(self) -> str:
        """Lowercase hex of the bytes."""
        return self._value.hex()

    @classmethod
    def from_hex(cls: type[_I], text: str) -> _I:
        """Parse lowercase or uppercase hex; ``InvalidInput`` on anything else."""
        if not isinstance(text, str):
            raise InvalidInput(f"{cls.__name__}: expected hex text")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise InvalidInput(f"{cls.__name__}: not hex") from None
        if len(text) != 2 * len(raw):  # fromhex skips whitespace; the canonical form has none
            raise InvalidInput(f"{cls.__name__}: not hex")
        return cls(raw)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._value == other._value

    def __lt__(self: _I, other: _I) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._value < other._value

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._value))

    def __str__(self) -> str:
        return self._value.hex()

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self._value.hex()}')"

    def __reduce__(self) -> tuple[type, tuple[bytes]]:
        return (type(self), (self._value,))


class _KeyHashId(_FixedId):
    """An id that is SHA-256 of a 32-byte Ed25519 public key."""

    __slots__ = ()
    LENGTH = 32

    @classmethod
    def from_public_key(cls: type[_I], public_key: bytes) -> _I:
        """The id of a 32-byte Ed25519 public key (else ``InvalidInput``)."""
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise InvalidInput(f"{cls.__name__}: the public key must be 32 bytes")
        return cls(hashlib.sha256(public_key).digest())


class UserId(_KeyHashId):
    """An account: SHA-256 of the account's Ed25519 public key (32 bytes)."""

    __slots__ = ()


class DeviceId(_KeyHashId):
    """A device: SHA-256 of the device's Ed25519 signing public key (32 bytes)."""

    __slots__ = ()


class ConversationId(_FixedId):
    """A conversation (an MLS group id): 16 bytes."""

    __slots__ = ()
    LENGTH = 16

    @classmethod
    def new(cls, now_ms: int | None = None) -> "ConversationId":
        """A fresh id: 48-bit millisecond time (``now_ms`` or the wall clock) then 80 random bits.

        Ids sort by creation time to the millisecond; the random part makes a
        collision between devices negligible (2^-80 per pair per millisecond).
        """
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        if not isinstance(now_ms, int) or not 0 <= now_ms < (1 << 48):
            raise InvalidInput("now_ms must be a 48-bit millisecond timestamp")
        return cls(now_ms.to_bytes(6, "big") + os.urandom(10))

    @classmethod
    def device_group(cls, user_id: UserId) -> "ConversationId":
        """The deterministic id of ``user_id``'s DeviceGroup: ``FF DC || SHA-256(user_id)[:14]``."""
        if not isinstance(user_id, UserId):
            raise InvalidInput("device_group needs a UserId")
        return cls(DEVICE_GROUP_PREFIX + hashlib.sha256(user_id.value).digest()[:14])

    @property
    def is_device_group_id(self) -> bool:
        """True for ids of the DeviceGroup form (prefix ``FF DC``)."""
        return self._value[:2] == DEVICE_GROUP_PREFIX

    @property
    def timestamp_ms(self) -> int:
        """The creation time of a ULID-style id (meaningless for a DeviceGroup id)."""
        return int.from_bytes(self._value[:6], "big")
