"""``StorageBackend``: where the MLS state store keeps its records (mirrors the spec's enum).

* ``StorageBackend.Memory()``: a fresh in-memory blob store (lost on exit).
* ``StorageBackend.Sqlite(path, encryption_key)``: the encrypted SQLite file.
* ``StorageBackend.IndexedDb(db_name)``: IndexedDB in the browser. ``ping_core``
  never imports browser code: the host (``pyodide_app``) registers an opener
  with :func:`register_indexeddb_opener` at boot.
* ``StorageBackend.Custom(blob_store)``: any object with the ``BlobStore`` methods.

:func:`open_blob_store` turns a backend into a ready blob store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Awaitable, Callable, ClassVar, Union

from ping_core.errors import InvalidInput, StorageError

from .base import BlobStore
from .memory import MemoryBlobStore
from .sqlite import SqliteBlobStore

__all__ = [
    "StorageBackend",
    "MemoryBackend",
    "SqliteBackend",
    "IndexedDbBackend",
    "CustomBackend",
    "open_blob_store",
    "register_indexeddb_opener",
]

IndexedDbOpener = Callable[[str], Awaitable[BlobStore]]
_indexeddb_opener: IndexedDbOpener | None = None


class StorageBackend:
    """Base of the backend variants; use ``StorageBackend.Memory()`` etc."""

    __slots__ = ()
    Memory: ClassVar[type["MemoryBackend"]]
    Sqlite: ClassVar[type["SqliteBackend"]]
    IndexedDb: ClassVar[type["IndexedDbBackend"]]
    Custom: ClassVar[type["CustomBackend"]]


@dataclass(frozen=True, slots=True)
class MemoryBackend(StorageBackend):
    """A new, empty in-memory blob store."""


@dataclass(frozen=True, slots=True)
class SqliteBackend(StorageBackend):
    """The encrypted SQLite file at ``path``; ``encryption_key`` is the host's 32-byte key (never in repr)."""

    path: str
    encryption_key: bytes = field(repr=False)
    synchronous: str = "FULL"

    def __post_init__(self) -> None:
        if isinstance(self.path, os.PathLike):
            object.__setattr__(self, "path", os.fspath(self.path))
        if not isinstance(self.path, str) or not self.path:
            raise InvalidInput("the SQLite path must be a non-empty str or path")
        if not isinstance(self.encryption_key, bytes) or len(self.encryption_key) != 32:
            raise InvalidInput("the SQLite encryption key must be 32 bytes")


@dataclass(frozen=True, slots=True)
class IndexedDbBackend(StorageBackend):
    """The IndexedDB database ``db_name`` (browser only; the host registers the opener)."""

    db_name: str


@dataclass(frozen=True, slots=True)
class CustomBackend(StorageBackend):
    """A host-provided blob store."""

    blob_store: BlobStore

    def __post_init__(self) -> None:
        if not isinstance(self.blob_store, BlobStore):
            raise InvalidInput("a custom blob store needs async get, list and commit methods")


StorageBackend.Memory = MemoryBackend
StorageBackend.Sqlite = SqliteBackend
StorageBackend.IndexedDb = IndexedDbBackend
StorageBackend.Custom = CustomBackend

AnyBackend = Union[MemoryBackend, SqliteBackend, IndexedDbBackend, CustomBackend]


def register_indexeddb_opener(opener: IndexedDbOpener | None) -> None:
    """Let the host open ``StorageBackend.IndexedDb(db_name)``: ``await opener(db_name)`` gives a blob store.

    ``None`` unregisters.
    """
    global _indexeddb_opener
    _indexeddb_opener = opener


async def open_blob_store(backend: StorageBackend | BlobStore) -> BlobStore:
    """The blob store ``backend`` describes (a blob store passed directly is returned as is)."""
    if isinstance(backend, MemoryBackend):
        return MemoryBlobStore()
    if isinstance(backend, SqliteBackend):
        return SqliteBlobStore.open(backend.path, backend.encryption_key, synchronous=backend.synchronous)
    if isinstance(backend, IndexedDbBackend):
        if _indexeddb_opener is None:
            raise StorageError("IndexedDB is not available here (no host opener registered)")
        return await _indexeddb_opener(backend.db_name)
    if isinstance(backend, CustomBackend):
        return backend.blob_store
    if isinstance(backend, BlobStore):
        return backend
    raise InvalidInput(f"not a storage backend: {type(backend).__name__}")
