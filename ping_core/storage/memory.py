"""In-memory storage: :class:`MemoryStorage` (namespaced KV) and :class:`MemoryBlobStore`.

Both live as long as the object does. Tests share one instance between a
client and its re-initialised successor to simulate a restart; the
``fail_next_commits`` knob of :class:`MemoryBlobStore` simulates a failing
disk.
"""

from __future__ import annotations

import builtins

from typing import Iterable, Mapping

from ping_core.errors import StorageError

from .base import check_key, check_namespace, check_value

__all__ = ["MemoryStorage", "MemoryBlobStore"]


class MemoryStorage:
    """A :class:`~ping_core.storage.base.Storage` in a dict of dicts."""

    __slots__ = ("_spaces",)

    def __init__(self) -> None:
        self._spaces: dict[str, dict[str, bytes]] = {}

    async def get(self, ns: str, key: str) -> bytes | None:
        return self._spaces.get(check_namespace(ns), {}).get(check_key(key))

    async def put(self, ns: str, key: str, value: bytes) -> None:
        ns, key, value = check_namespace(ns), check_key(key), check_value(value)
        self._spaces.setdefault(ns, {})[key] = value

    async def delete(self, ns: str, key: str) -> None:
        self._spaces.get(check_namespace(ns), {}).pop(check_key(key), None)

    async def list_keys(self, ns: str, prefix: str) -> list[str]:
        space = self._spaces.get(check_namespace(ns), {})
        prefix = check_key(prefix, "prefix")
        return sorted(k for k in space if k.startswith(prefix))

    def __repr__(self) -> str:
        return f"MemoryStorage(namespaces={sorted(self._spaces)})"


class MemoryBlobStore:
    """A :class:`~ping_core.storage.base.BulkBlobStore` in a dict.

    ``commits`` counts successful commits and ``bytes_written`` the value
    bytes they stored (for tests and benchmarks). Set ``fail_next_commits``
    to N to make the next N commits raise ``StorageError`` without applying.
    """

    __slots__ = ("_data", "commits", "bytes_written", "fail_next_commits")

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self.commits = 0
        self.bytes_written = 0
        self.fail_next_commits = 0

    async def get(self, key: str) -> bytes | None:
        return self._data.get(check_key(key))

    async def list(self, prefix: str) -> list[str]:
        prefix = check_key(prefix, "prefix")
        return sorted(k for k in self._data if k.startswith(prefix))

    async def items(self, prefix: str) -> builtins.list[tuple[str, bytes]]:
        prefix = check_key(prefix, "prefix")
        return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str]) -> None:
        checked_puts = {check_key(k): check_value(v) for k, v in puts.items()}
        checked_deletes = [check_key(k) for k in deletes]
        if self.fail_next_commits > 0:
            self.fail_next_commits -= 1
            raise StorageError("simulated storage failure")
        for key in checked_deletes:
            self._data.pop(key, None)
        self._data.update(checked_puts)
        self.commits += 1
        self.bytes_written += sum(len(v) for v in checked_puts.values())

    def snapshot(self) -> dict[str, bytes]:
        """A copy of everything stored (tests)."""
        return dict(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"MemoryBlobStore(records={len(self._data)}, commits={self.commits})"
