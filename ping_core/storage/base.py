"""Storage protocols.

* :class:`Storage`: the host's namespaced key-value store (the spec's
  ``Storage`` trait): ``get``/``put``/``delete``/``list_keys``, each call on
  its own.
* :class:`BlobStore`: bytes by string key with ONE atomic multi-record write,
  :meth:`BlobStore.commit`. It is what the MLS state store checkpoints to.
  Memory, encrypted SQLite and (in the browser) IndexedDB implement it; so
  may any object with the same async methods.
* :class:`BulkBlobStore`: a blob store that can also read many records in one
  call (``items``). Cold start uses it when available.

Every failure is a :class:`ping_core.errors.StorageError`; a key that is not
``str`` or a value that is not bytes is ``InvalidInput`` and writes nothing.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol, runtime_checkable

from ping_core.cbor import check_text
from ping_core.errors import InvalidInput

__all__ = ["Storage", "BlobStore", "BulkBlobStore", "check_key", "check_value", "check_namespace", "MAX_KEY_LEN"]

MAX_KEY_LEN = 1024
MAX_NAMESPACE_LEN = 64


@runtime_checkable
class Storage(Protocol):
    """Namespaced key-value storage for the SDK's host-side records (device, metas, cursors)."""

    async def get(self, ns: str, key: str) -> bytes | None:
        """The value under (``ns``, ``key``), or ``None``."""
        ...

    async def put(self, ns: str, key: str, value: bytes) -> None:
        """Store ``value``; durable when the call returns (for durable implementations)."""
        ...

    async def delete(self, ns: str, key: str) -> None:
        """Remove the key; no error when it is absent."""
        ...

    async def list_keys(self, ns: str, prefix: str) -> list[str]:
        """The keys of ``ns`` that start with ``prefix``, sorted."""
        ...


@runtime_checkable
class BlobStore(Protocol):
    """Bytes by string key, with atomic multi-record writes."""

    async def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or ``None``."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix``, sorted by code point."""
        ...

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str]) -> None:
        """Apply ``deletes`` then ``puts`` atomically: after a crash either all or none is stored.

        Returns once the write is durable. Raises ``StorageError`` (nothing
        applied) on failure.
        """
        ...


@runtime_checkable
class BulkBlobStore(BlobStore, Protocol):
    """A :class:`BlobStore` that reads all records under a prefix in one call."""

    async def items(self, prefix: str) -> list[tuple[str, bytes]]:
        """(key, value) for every key that starts with ``prefix``, sorted by key."""
        ...


def check_key(key: object, what: str = "key") -> str:
    """``key`` as a ``str`` of valid Unicode, at most ``MAX_KEY_LEN`` UTF-8 bytes."""
    return check_text(key, what, MAX_KEY_LEN)


def check_value(value: object) -> bytes:
    """``value`` as ``bytes`` (bytearray/memoryview are copied)."""
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidInput("stored values must be bytes")


def check_namespace(ns: object) -> str:
    """A namespace: non-empty ``str`` without ``/``, at most 64 bytes."""
    if type(ns) is not str or not ns or "/" in ns or len(ns.encode("utf-8", "surrogatepass")) > MAX_NAMESPACE_LEN:
        raise InvalidInput("namespace must be a non-empty str without '/' of at most 64 bytes")
    check_key(ns, "namespace")
    return ns
