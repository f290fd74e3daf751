"""One account's IndexedDB database in the browser: MLS state, host records and app records.

Database ``ping-account-<user id hex>`` (see :func:`account_db_name`) has
three object stores, so that one IndexedDB transaction can span them:

* ``state``: the MLS state store's records (``ping_core.storage.MlsStateStore``
  checkpoints go here through :class:`StateBlobStore`);
* ``host``: the host ``Storage`` (``BlobStorage``): the account identity, the
  device record, this host's flags;
* ``app``: what the page shows (decrypted messages, see
  :mod:`pyodide_app.inbox`) and the state **generation**.

The generation is a random tag rewritten in the SAME transaction as every
write to ``state``. A context (a tab's worker, the service worker) that holds
the account's Web Lock compares it with the tag of its own last read or write:
if another context wrote since, its in-memory MLS working set is stale and it
reloads from IndexedDB before touching anything (see
:mod:`pyodide_app.session`). A crash can never separate a state write from its
tag, so no stale working set goes unnoticed.

:meth:`StateBlobStore.deferred` buffers checkpoints during a sync so that the
MLS state it advanced and the messages it decrypted are written in ONE
transaction (:meth:`StateBlobStore.flush`): after a crash either both are
there or neither is, so a decrypted message is never lost for display.

Every record of the three stores is sealed at rest by ``static/pingidb.mjs``
(see :mod:`pyodide_app.idb`); the account's passphrase, if any, is managed by
:mod:`pyodide_app.vault`.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ping_core.errors import InvalidInput, StorageError
from ping_core.storage import BlobStorage
from ping_core.storage.base import check_key, check_value

from .idb import IndexedDbBlobStore, registered_js_module, storage_error

__all__ = [
    "AccountDb",
    "StateBlobStore",
    "account_db_name",
    "DB_PREFIX",
    "STATE_STORE",
    "HOST_STORE",
    "APP_STORE",
    "GENERATION_KEY",
    "ACCOUNT_STORES",
]

DB_PREFIX = "ping-account-"
STATE_STORE = "state"
HOST_STORE = "host"
APP_STORE = "app"
GENERATION_KEY = "generation"
ACCOUNT_STORES = (STATE_STORE, HOST_STORE, APP_STORE)
_STORES = ACCOUNT_STORES


def account_db_name(user_id_hex: str) -> str:
    """The database of the account ``user_id_hex`` (64 lowercase hex digits)."""
    if len(user_id_hex) != 64 or any(c not in "0123456789abcdef" for c in user_id_hex):
        raise InvalidInput("a user id is 64 lowercase hex digits")
    return DB_PREFIX + user_id_hex


class StateBlobStore:
    """The ``state`` store as a ``ping_core`` BulkBlobStore whose every commit also writes a new generation.

    ``generation`` is the tag that matches this context's view of the store:
    the one it last wrote, or the one it saw when it (re)loaded.
    """

    def __init__(self, js: Any, db: Any, reader: IndexedDbBlobStore) -> None:
        from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found,unused-ignore]

        self._js = js
        self._db = db
        self._reader = reader
        self._to_js = to_js
        self._js_error = JsException
        self.generation: bytes | None = None
        self._buffer: tuple[dict[str, bytes], set[str]] | None = None

    def __repr__(self) -> str:
        return f"StateBlobStore(db={self._reader.db_name!r})"

    async def get(self, key: str) -> bytes | None:
        return await self._reader.get(key)

    async def list(self, prefix: str = "") -> builtins.list[str]:
        return await self._reader.list(prefix)

    async def items(self, prefix: str = "") -> builtins.list[tuple[str, bytes]]:
        return await self._reader.items(prefix)

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str]) -> None:
        """Write (or, inside :meth:`deferred`, buffer) one checkpoint, with a new generation."""
        put_map = {check_key(k): check_value(v) for k, v in puts.items()}
        delete_list = [check_key(k) for k in deletes]
        if self._buffer is not None:
            # Same order as one commit: its deletes, then its puts; a later commit wins.
            buf_puts, buf_deletes = self._buffer
            for key in delete_list:
                buf_puts.pop(key, None)
                buf_deletes.add(key)
            for key, value in put_map.items():
                buf_deletes.discard(key)
                buf_puts[key] = value
            return
        if not put_map and not delete_list:
            return
        await self._write(put_map, delete_list, {})

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Buffer every commit made in the block until :meth:`flush` (or drop them on exit).

        Only for work that sends nothing whose safety depends on those
        checkpoints being durable (a sync: it reads the log and decrypts).
        Leaving the block without a successful :meth:`flush` DROPS the
        buffered writes: the caller must then discard its in-memory state
        (:mod:`pyodide_app.session` does) so it reloads what is on disk.
        """
        if self._buffer is not None:
            raise StorageError("deferred checkpoints do not nest")
        self._buffer = ({}, set())
        try:
            yield
        finally:
            self._buffer = None

    @property
    def deferring(self) -> bool:
        return self._buffer is not None

    async def flush(self, app_puts: Mapping[str, bytes] | None = None) -> None:
        """Write the buffered checkpoints and ``app_puts`` (records of the ``app`` store) in ONE transaction.

        Outside :meth:`deferred` it writes just ``app_puts`` (no new
        generation: the MLS state did not change).
        """
        app = {check_key(k): check_value(v) for k, v in (app_puts or {}).items()}
        if self._buffer is None:
            if app:
                await self._write_ops([[APP_STORE, list(app.items()), []]])
            return
        buf_puts, buf_deletes = self._buffer
        if buf_puts or buf_deletes:
            await self._write(buf_puts, sorted(buf_deletes), app)
        elif app:
            await self._write_ops([[APP_STORE, list(app.items()), []]])
        self._buffer = ({}, set())

    async def _write(self, puts: Mapping[str, bytes], deletes: builtins.list[str], app: Mapping[str, bytes]) -> None:
        tag = os.urandom(16)
        app_puts = [*app.items(), (GENERATION_KEY, tag)]
        await self._write_ops([[STATE_STORE, list(puts.items()), deletes], [APP_STORE, app_puts, []]])
        self.generation = tag

    async def _write_ops(self, ops: builtins.list[builtins.list[Any]]) -> None:
        plain = [[store, [[k, v] for k, v in puts], list(deletes)] for store, puts, deletes in ops]
        try:
            await self._js.writeMany(self._db, self._to_js(plain))
        except self._js_error as exc:
            raise storage_error("IndexedDB write failed", exc) from None


class AccountDb:
    """An open account database: :attr:`state` (MLS blob store), :attr:`host` (Storage), :attr:`app` (reads)."""

    def __init__(self, js: Any, db: Any, name: str) -> None:
        self.name = name
        self._js = js
        self._db = db
        self.app = IndexedDbBlobStore(js, db, name, APP_STORE)
        self.state = StateBlobStore(js, db, IndexedDbBlobStore(js, db, name, STATE_STORE))
        self.host = BlobStorage(IndexedDbBlobStore(js, db, name, HOST_STORE))

    def __repr__(self) -> str:
        return f"AccountDb({self.name!r})"

    @property
    def lock_name(self) -> str:
        """The Web Lock every context takes before touching this account's state."""
        return f"{self.name}/state"

    @classmethod
    async def open(cls, name: str, js_module: Any = None) -> AccountDb:
        from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found,unused-ignore]

        js_module = registered_js_module(js_module)
        try:
            db = await js_module.openStores(name, to_js(list(_STORES)))
        except JsException as exc:
            raise storage_error(f"cannot open IndexedDB {name!r}", exc) from None
        return cls(js_module, db, name)

    async def tail(self, prefix: str, count: int) -> list[tuple[str, bytes]]:
        """The last ``count`` records of the ``app`` store under ``prefix``, in key order."""
        from pyodide.ffi import JsException  # type: ignore[import-not-found,unused-ignore]

        check_key(prefix, "prefix")
        try:
            pair = await self._js.tail(self._db, APP_STORE, prefix, max(0, int(count)))
        except JsException as exc:
            raise storage_error("IndexedDB read failed", exc) from None
        return [(str(k), v.to_bytes()) for k, v in zip(pair[0], pair[1])]

    async def generation(self) -> bytes | None:
        """The generation tag on disk (None before the first state write)."""
        return await self.app.get(GENERATION_KEY)

    def close(self) -> None:
        self.app.close()
