"""A blob store on IndexedDB: bytes by string key, for Python in the worker.

It implements ``ping_core.storage.BlobStore`` / ``BulkBlobStore`` (``get``,
``list``, ``items``, ``commit``) plus ``put``/``delete``/``put_many``/
``delete_many`` conveniences. Each write is exactly one IndexedDB transaction,
awaited until it has committed. :meth:`IndexedDbBlobStore.commit` puts and
deletes many records in ONE transaction, which is what an atomic checkpoint
needs (docs/architecture.md, "Where each invariant lives"): after a crash either all of it or none of it is
there. Every failure is a :class:`ping_core.errors.StorageError`; a key that is
not a ``str`` or a value that is not bytes is an ``InvalidInput`` and writes
nothing (checked before the transaction starts).

Every value is sealed at rest by the JS side (AES-256-GCM under the
database's own key, the record's database, store and key as associated data;
see docs/formats.md): a read returns only what this database wrote under that
key, or raises ``StorageError`` (altered, moved, copied from elsewhere) or
:class:`ping_core.errors.StorageLocked` (a passphrase this context has not
been given, see :mod:`pyodide_app.vault`). Keys are stored in clear.

The JS side is ``static/pingidb.mjs``, registered as the JS module ``pingidb``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import Any

from ping_core.errors import InvalidInput, StorageError, StorageLocked
from ping_core.storage.base import check_key, check_value

__all__ = ["IndexedDbBlobStore", "JS_MODULE_NAME", "storage_error"]

JS_MODULE_NAME = "pingidb"


class IndexedDbBlobStore:
    """Bytes by key in one IndexedDB object store. Open with :meth:`open`."""

    def __init__(self, js_module: Any, db: Any, db_name: str, store: str) -> None:
        from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found,unused-ignore]

        self._js = js_module
        self._db = db
        self._store = store
        self._to_js = to_js
        self._js_error = JsException
        self.db_name = db_name

    def __repr__(self) -> str:
        return f"IndexedDbBlobStore(db={self.db_name!r}, store={self._store!r})"

    @classmethod
    async def open(cls, db_name: str = "ping", store: str = "blobs", js_module: Any = None) -> IndexedDbBlobStore:
        """Open (creating if needed) ``db_name`` with the object store ``store``."""
        from pyodide.ffi import JsException  # type: ignore[import-not-found,unused-ignore]

        js_module = registered_js_module(js_module)
        try:
            db = await js_module.open(db_name, store)
        except JsException as exc:
            raise storage_error(f"cannot open IndexedDB {db_name!r}", exc) from None
        return cls(js_module, db, db_name, store)

    async def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""
        check_key(key)
        try:
            value = await self._js.get(self._db, self._store, key)
        except self._js_error as exc:
            raise storage_error("IndexedDB get failed", exc) from None
        if value is None:
            return None
        out: bytes = value.to_bytes()
        return out

    async def list(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted by code point."""
        check_key(prefix, "prefix")
        try:
            keys = await self._js.keys(self._db, self._store, prefix)
        except self._js_error as exc:
            raise storage_error("IndexedDB list failed", exc) from None
        # IndexedDB orders by UTF-16 code unit; Python (and the protocol) by code point.
        return sorted(str(k) for k in keys)

    async def items(self, prefix: str = "") -> builtins.list[tuple[str, bytes]]:
        """(key, value) for every key that starts with ``prefix``, sorted; one read transaction."""
        check_key(prefix, "prefix")
        try:
            pair = await self._js.entries(self._db, self._store, prefix)
        except self._js_error as exc:
            raise storage_error("IndexedDB read failed", exc) from None
        keys, values = pair[0], pair[1]
        return sorted((str(k), v.to_bytes()) for k, v in zip(keys, values))

    async def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` in one committed transaction."""
        await self.commit({key: value}, ())

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error when it is absent) in one committed transaction."""
        await self.commit({}, (key,))

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        """Store every item in ONE transaction: all of them or none."""
        await self.commit(items, ())

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every key in ONE transaction."""
        await self.commit({}, keys)

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str]) -> None:
        """Apply ``deletes`` then ``puts`` in ONE transaction, awaited until committed.

        Arguments are checked before anything is written, so a bad key or
        value changes nothing.
        """
        put_list = [[check_key(k), check_value(v)] for k, v in puts.items()]
        delete_list = [check_key(k) for k in deletes]
        if not put_list and not delete_list:
            return
        try:
            await self._js.write(self._db, self._store, self._to_js(put_list), self._to_js(delete_list))
        except self._js_error as exc:
            raise storage_error("IndexedDB write failed", exc) from None

    def close(self) -> None:
        """Close the database handle; the store is unusable afterwards."""
        try:
            self._js.close(self._db)
        except self._js_error:
            pass


def registered_js_module(js_module: Any = None) -> Any:
    """``js_module`` if given, else the registered IndexedDB JS module (``StorageError`` if it is not)."""
    if js_module is not None:
        return js_module
    try:
        return __import__(JS_MODULE_NAME)
    except ImportError as exc:
        raise StorageError(f"the JS module {JS_MODULE_NAME!r} is not registered") from exc


def storage_error(what: str, exc: BaseException) -> StorageError | InvalidInput:
    """The Ping error for a failed pingidb call: ``StorageLocked``, ``InvalidInput`` or ``StorageError``.

    pingidb names its own errors (``StorageLocked``, ``StorageTampered``...);
    their messages name databases and record keys, never values or secrets.
    """
    name = getattr(exc, "name", "")
    if name == "StorageLocked":
        return StorageLocked(str(getattr(exc, "message", "") or exc))
    if name == "InvalidInput":
        return InvalidInput(str(getattr(exc, "message", "") or exc))
    return StorageError(f"{what}: {_js_reason(exc)}")


def _js_reason(exc: BaseException) -> str:
    # A DOMException's name (QuotaExceededError, InvalidStateError...) is
    # what a caller can act on; the message adds browser-specific detail.
    name = getattr(exc, "name", "") or type(exc).__name__
    return f"{name}: {exc}"
