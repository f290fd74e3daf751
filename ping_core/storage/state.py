"""The MLS state store: an in-memory working set of records that checkpoints what changed.

This is the spec's ``PersistentMlsProvider``. The SDK keeps MLS state (group
state, ratchets, KeyPackage private keys, ...) as records ``key -> bytes`` in
a working set that reads and writes synchronously (the sans-IO engine never
awaits). :meth:`MlsStateStore.checkpoint` then writes exactly the records
changed since the last checkpoint to a :class:`BlobStore` in ONE atomic
``commit``. So a checkpoint after an application send writes that
conversation's changed records only: its cost depends on what changed, not on
the number of conversations or the size of the group (as long as the caller
splits a group's state so that a send changes only small records, e.g. the
sender ratchet apart from the tree).

Guarantees:

* :meth:`put` of a value equal to the current one changes nothing (no write).
* A checkpoint is atomic: after a crash the blob store holds the state of
  some completed checkpoint, never a mix.
* A failed checkpoint raises ``StorageError`` and keeps every change pending,
  so the next checkpoint writes it; the working set is unchanged.
* Changes made while a checkpoint is awaiting its commit stay pending for
  the next one; they never get lost or written half.
* :meth:`rollback` restores the working set to the last successful
  checkpoint (to undo a failed multi-record update).

The caller must make each logical change (e.g. "merge this commit") with
synchronous calls and no ``await`` in between, so that a concurrent
checkpoint never captures half of it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from ping_core.errors import PingError, StorageError

from .base import BlobStore, BulkBlobStore, check_key, check_value

if TYPE_CHECKING:
    from .backend import StorageBackend

__all__ = ["MlsStateStore", "CheckpointStats", "STATE_STORE_VERSION"]

# The record format generation; a GroupStateSnapshot carries it as ``storage_version``.
STATE_STORE_VERSION = 1

_ABSENT = None


@dataclass(frozen=True, slots=True)
class CheckpointStats:
    """What one checkpoint wrote: record counts and value bytes (before any encryption)."""

    records_written: int = 0
    records_deleted: int = 0
    bytes_written: int = 0


class MlsStateStore:
    """A working set of records over a blob store. Create with :meth:`open` (or the constructor,
    for an empty working set over an empty store)."""

    __slots__ = ("_blobs", "_data", "_dirty", "_undo", "_checkpoint_lock")

    def __init__(self, blobs: BlobStore, records: dict[str, bytes] | None = None) -> None:
        self._blobs = blobs
        self._data: dict[str, bytes] = dict(records or {})
        self._dirty: set[str] = set()
        # The value each dirty key had at the last checkpoint (None: absent), for rollback.
        self._undo: dict[str, bytes | None] = {}
        self._checkpoint_lock = asyncio.Lock()

    @classmethod
    async def open(cls, blobs: BlobStore, prefix: str = "") -> "MlsStateStore":
        """Load every record under ``prefix`` from ``blobs`` into a new working set.

        Uses the store's bulk ``items`` when it has one (one query), else
        ``list`` and one ``get`` per key.
        """
        try:
            if isinstance(blobs, BulkBlobStore):
                records = dict(await blobs.items(prefix))
            else:
                records = {}
                for key in await blobs.list(prefix):
                    value = await blobs.get(key)
                    if value is not None:
                        records[key] = value
        except PingError:
            raise
        except Exception as exc:  # a custom store's own failure
            raise StorageError(f"state store load failed: {type(exc).__name__}: {exc}") from None
        for key, value in records.items():
            check_key(key)
            check_value(value)
        return cls(blobs, records)

    @classmethod
    async def open_backend(cls, backend: "StorageBackend | BlobStore") -> "MlsStateStore":
        """Open the blob store ``backend`` describes and load it (the spec's ``PersistentMlsProvider::open_async``)."""
        from .backend import open_blob_store  # backend imports the stores; keep this module light

        return await cls.open(await open_blob_store(backend))

    @property
    def blob_store(self) -> BlobStore:
        return self._blobs

    # -- working set (synchronous) --------------------------------------

    def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def put(self, key: str, value: bytes) -> None:
        """Set ``key`` in the working set; written at the next checkpoint if it changed."""
        key, value = check_key(key), check_value(value)
        old = self._data.get(key)
        if old == value:
            return
        self._mark(key, old)
        self._data[key] = value

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Several :meth:`put` calls; all arguments are checked first, so a bad one changes nothing."""
        checked = [(check_key(k), check_value(v)) for k, v in items]
        for key, value in checked:
            self.put(key, value)

    def delete(self, key: str) -> None:
        """Remove ``key`` from the working set (deleted at the next checkpoint)."""
        key = check_key(key)
        if key in self._data:
            self._mark(key, self._data[key])
            del self._data[key]

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; returns how many."""
        prefix = check_key(prefix, "prefix")
        keys = [k for k in self._data if k.startswith(prefix)]
        for key in keys:
            self._mark(key, self._data[key])
            del self._data[key]
        return len(keys)

    def keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        return sorted(k for k in self._data if k.startswith(prefix))

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        """(key, value) for keys starting with ``prefix``, sorted by key (e.g. for a GroupStateSnapshot)."""
        return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    def import_entries(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """Put every entry (from a GroupStateSnapshot); all are checked before any is applied."""
        self.put_many(entries)

    def _mark(self, key: str, old: bytes | None) -> None:
        if key not in self._dirty:
            self._dirty.add(key)
            self._undo[key] = old

    @property
    def pending(self) -> int:
        """How many records the next checkpoint would write or delete."""
        return len(self._dirty)

    def rollback(self) -> None:
        """Discard every change since the last successful checkpoint."""
        for key, old in self._undo.items():
            if old is None:
                self._data.pop(key, None)
            else:
                self._data[key] = old
        self._dirty.clear()
        self._undo.clear()

    # -- durability ------------------------------------------------------

    async def checkpoint(self) -> CheckpointStats:
        """Write every change since the last checkpoint in one atomic blob-store commit.

        Returns what it wrote (nothing, without a commit, when nothing
        changed). Raises ``StorageError`` when the commit fails; the changes
        then stay pending.
        """
        async with self._checkpoint_lock:  # commits reach the store in order
            if not self._dirty:
                return CheckpointStats()
            dirty, undo = self._dirty, self._undo
            self._dirty, self._undo = set(), {}
            puts = {k: self._data[k] for k in dirty if k in self._data}
            deletes = [k for k in dirty if k not in self._data]
            try:
                await self._blobs.commit(puts, deletes)
            except BaseException as exc:
                # Keep everything pending. For a key changed again during the
                # await, the older undo value is the one still on disk.
                self._dirty |= dirty
                self._undo.update(undo)
                if isinstance(exc, StorageError) or not isinstance(exc, Exception):
                    raise
                raise StorageError(f"checkpoint failed: {type(exc).__name__}: {exc}") from None
            return CheckpointStats(len(puts), len(deletes), sum(len(v) for v in puts.values()))

    def __repr__(self) -> str:
        return f"MlsStateStore(records={len(self._data)}, pending={len(self._dirty)})"
