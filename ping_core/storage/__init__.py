"""Storage for the SDK.

* :class:`Storage` (protocol) and :class:`MemoryStorage`, :class:`BlobStorage`:
  the host's namespaced key-value store.
* :class:`BlobStore` / :class:`BulkBlobStore` (protocols), :class:`MemoryBlobStore`,
  :class:`SqliteBlobStore`: bytes by key with atomic multi-record commits.
* :class:`MlsStateStore`: the MLS working set with incremental, atomic
  :meth:`~MlsStateStore.checkpoint` (the spec's PersistentMlsProvider).
* :class:`StorageBackend` (``Memory``, ``Sqlite``, ``IndexedDb``, ``Custom``)
  and :func:`open_blob_store`.
"""

from __future__ import annotations

from .backend import (
    CustomBackend,
    IndexedDbBackend,
    MemoryBackend,
    SqliteBackend,
    StorageBackend,
    open_blob_store,
    register_indexeddb_opener,
)
from .base import BlobStore, BulkBlobStore, Storage
from .kv import BlobStorage
from .memory import MemoryBlobStore, MemoryStorage
from .sqlite import SqliteBlobStore
from .state import STATE_STORE_VERSION, CheckpointStats, MlsStateStore

__all__ = [
    "Storage",
    "BlobStore",
    "BulkBlobStore",
    "MemoryStorage",
    "MemoryBlobStore",
    "SqliteBlobStore",
    "BlobStorage",
    "MlsStateStore",
    "CheckpointStats",
    "STATE_STORE_VERSION",
    "StorageBackend",
    "MemoryBackend",
    "SqliteBackend",
    "IndexedDbBackend",
    "CustomBackend",
    "open_blob_store",
    "register_indexeddb_opener",
]
