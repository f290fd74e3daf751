"""``BlobStorage``: the namespaced :class:`Storage` on top of any blob store.

Lets a host keep the SDK's host-side records (device, metas, cursors) in the
same durable store as the MLS state, e.g. the encrypted SQLite file.
Records live under ``<root><ns>/<key>`` (namespaces never contain ``/``);
each ``put``/``delete`` is its own atomic commit.
"""

from __future__ import annotations

from .base import BlobStore, check_key, check_namespace, check_value

__all__ = ["BlobStorage"]


class BlobStorage:
    """A :class:`~ping_core.storage.base.Storage` over ``blobs``, under the key prefix ``root``."""

    __slots__ = ("_blobs", "_root")

    def __init__(self, blobs: BlobStore, root: str = "kv/") -> None:
        self._blobs = blobs
        self._root = check_key(root, "root")

    def _key(self, ns: str, key: str) -> str:
        return f"{self._root}{check_namespace(ns)}/{check_key(key)}"

    async def get(self, ns: str, key: str) -> bytes | None:
        return await self._blobs.get(self._key(ns, key))

    async def put(self, ns: str, key: str, value: bytes) -> None:
        await self._blobs.commit({self._key(ns, key): check_value(value)}, ())

    async def delete(self, ns: str, key: str) -> None:
        await self._blobs.commit({}, (self._key(ns, key),))

    async def list_keys(self, ns: str, prefix: str) -> list[str]:
        base = self._key(ns, "")
        return [k[len(base) :] for k in await self._blobs.list(base + check_key(prefix, "prefix"))]

    def __repr__(self) -> str:
        return f"BlobStorage({self._blobs!r}, root={self._root!r})"
