"""A blob store in one SQLite file whose values are encrypted with the host's 32-byte key.

Layout (format ``ping-blobs-1``)::

    meta(name TEXT PRIMARY KEY, value BLOB)       "format" -> b"ping-blobs-1", "key_check" -> sealed check
    records(key BLOB PRIMARY KEY, value BLOB)     key = UTF-8 of the record key (plaintext), value sealed

Sealing (AES-128-GCM through the ``CryptoProvider``)::

    prk         = HKDF-Extract(salt=b"ping sqlite blob store v1", ikm=host_key)
    session_key = HKDF-Expand(prk, b"ping sqlite session\\x00" || session_salt, 16)
    nonce       = 0x00000000 || counter (8 bytes, big-endian)
    aad         = b"ping sqlite record v1\\x00" || UTF-8(record key)
    value       = 0x01 || session_salt (16) || counter (8) || AES-GCM(session_key, nonce, aad, plaintext)

Each opened store draws a fresh random 16-byte session salt and counts its
writes, so no (key, nonce) pair ever repeats without the birthday limit of
random 96-bit nonces, and one AES key serves a whole session (the crypto
backend's key cache is not churned). The record key is the AAD, so a value
moved to another key does not decrypt.

A wrong host key is detected at :meth:`SqliteBlobStore.open` (the sealed
``key_check`` does not open) and raises ``StorageError``; a record that does
not authenticate (tampering, corruption) raises ``StorageError`` naming the
record key, never returns garbage. Record KEYS are stored in plaintext
(they must be range-searchable); they hold ids, not content.

The database runs in WAL mode. ``synchronous="FULL"`` (default) makes every
commit durable on power loss, which the SDK needs: a lost checkpoint after a
send would let a reload reuse a ratchet generation. ``"NORMAL"`` keeps
atomicity but may lose the last commits on power loss (not on a process
crash). Each :meth:`commit` is one short ``BEGIN IMMEDIATE`` transaction;
sealing happens before it starts.

Deleted secrets do not linger in the files: ``secure_delete`` is on (SQLite
overwrites deleted and replaced content with zeros instead of leaving it in
free pages), and after a commit that deleted records the WAL is checkpointed
into the database and truncated (``wal_checkpoint(TRUNCATE)``), so the old page
images that still held them are gone from the ``-wal`` file too. Commits that
only write (the per-message checkpoints) do not pay for that.

sqlite3 is synchronous. Reads and ``NORMAL`` commits are short (tens of
microseconds) and run inline. A ``FULL`` commit waits for fsync (4-8 ms on
this project's disk, see ``benchmarks/storage_bench.py``), which would stall
the event loop, so by default those commits run in a worker thread
(``offload``; never in Pyodide, which has no threads). One asyncio lock
serialises all use of the connection, so a read never sees a transaction in
progress, and a cancelled commit keeps the lock until its thread finished.
"""

from __future__ import annotations

import builtins

import asyncio
import os
import sys
from typing import Callable, Iterable, Mapping, TypeVar

from ping_core.errors import CryptoError, InvalidInput, StorageError
from ping_core.mls.crypto import CryptoProvider, default_provider

from .base import check_key, check_value

try:
    import sqlite3
except ImportError:  # Pyodide loads its sqlite3 module only on request; the rest of storage must still import
    _HAVE_SQLITE = False
else:
    _HAVE_SQLITE = True

__all__ = ["SqliteBlobStore", "FORMAT"]

FORMAT = b"ping-blobs-1"
_EXTRACT_SALT = b"ping sqlite blob store v1"
_SESSION_INFO = b"ping sqlite session\x00"
_AAD_PREFIX = b"ping sqlite record v1\x00"
_SEAL_VERSION = b"\x01"
_SALT_LEN = 16
_HEADER_LEN = 1 + _SALT_LEN + 8
_KEY_CHECK_NAME = "\x00ping/key_check"
_KEY_CHECK_PLAINTEXT = b"ping sqlite key check v1"
_SYNC_MODES = ("FULL", "NORMAL", "EXTRA")
_SESSION_CACHE_LIMIT = 256
_THREADS_AVAILABLE = sys.platform != "emscripten"
_T = TypeVar("_T")


def _upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


class SqliteBlobStore:
    """An encrypted :class:`~ping_core.storage.base.BulkBlobStore` in a SQLite file.

    Open with :meth:`open`; close with :meth:`close`. The host key is never
    kept: only keys derived from it, and ``repr`` shows the path alone.
    """

    __slots__ = ("path", "_conn", "_crypto", "_prk", "_salt", "_session_key", "_counter", "_sessions", "_lock", "_offload")

    def __init__(self, path: str, conn: sqlite3.Connection, crypto: CryptoProvider, prk: bytes, offload: bool = False) -> None:
        """Use :meth:`open`."""
        self.path = path
        self._lock = asyncio.Lock()
        self._offload = offload and _THREADS_AVAILABLE
        self._conn: sqlite3.Connection | None = conn
        self._crypto = crypto
        self._prk = prk
        self._salt = crypto.random(_SALT_LEN)
        self._session_key = self._derive(self._salt)
        self._counter = 0
        self._sessions: dict[bytes, bytes] = {self._salt: self._session_key}

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        encryption_key: bytes,
        *,
        synchronous: str = "FULL",
        offload: bool | None = None,
        crypto: CryptoProvider | None = None,
    ) -> "SqliteBlobStore":
        """Open or create the store at ``path`` with the host's 32-byte ``encryption_key``.

        ``offload`` runs commits in a worker thread; the default does so for
        the fsync-waiting modes (``FULL``, ``EXTRA``) where threads exist.

        A new file is created readable by its owner only. Raises
        ``InvalidInput`` for a key that is not 32 bytes or an unknown
        ``synchronous`` mode, and ``StorageError`` when the file is not a
        Ping store, or was created with another key.
        """
        if not _HAVE_SQLITE:
            raise StorageError("sqlite3 is not available in this Python (in Pyodide: loadPackage('sqlite3'))")
        if not isinstance(encryption_key, (bytes, bytearray)) or len(encryption_key) != 32:
            raise InvalidInput("the SQLite encryption key must be 32 bytes")
        if synchronous not in _SYNC_MODES:
            raise InvalidInput(f"synchronous must be one of {_SYNC_MODES}")
        crypto = crypto or default_provider()
        path_str = os.fspath(path)
        if path_str != ":memory:" and not os.path.exists(path_str):
            try:
                os.close(os.open(path_str, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise StorageError(f"cannot create {path_str!r}: {exc.strerror}") from None
        try:
            conn = sqlite3.connect(path_str, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {path_str!r}: {exc}") from None
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
            conn.execute("CREATE TABLE IF NOT EXISTS records (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
            if offload is None:
                offload = synchronous != "NORMAL"
            store = cls(path_str, conn, crypto, crypto.hkdf_extract(_EXTRACT_SALT, bytes(encryption_key)), offload)
            store._check_format_and_key()
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"{path_str!r} is not a usable SQLite store: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return store

    def _check_format_and_key(self) -> None:
        conn = self._connection()
        rows = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        if not rows:
            sealed_check = self._seal(_KEY_CHECK_NAME, _KEY_CHECK_PLAINTEXT)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('format', ?)", (FORMAT,))
                conn.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('key_check', ?)", (sealed_check,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # Another process may have initialised it first: read back what won.
            rows = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        if rows.get("format") != FORMAT:
            raise StorageError(f"{self.path!r} is not a {FORMAT.decode()} store")
        check = rows.get("key_check")
        if not isinstance(check, bytes):
            raise StorageError(f"{self.path!r} has no key check record")
        try:
            ok = self._open_sealed(_KEY_CHECK_NAME, check) == _KEY_CHECK_PLAINTEXT
        except StorageError:
            ok = False
        if not ok:
            raise StorageError(f"wrong encryption key for {self.path!r}")

    # -- sealing ---------------------------------------------------------

    def _derive(self, salt: bytes) -> bytes:
        return self._crypto.hkdf_expand(self._prk, _SESSION_INFO + salt, 16)

    def _seal(self, key: str, plaintext: bytes) -> bytes:
        counter = self._counter.to_bytes(8, "big")
        self._counter += 1
        ct = self._crypto.aead_seal(self._session_key, b"\x00\x00\x00\x00" + counter, _AAD_PREFIX + key.encode("utf-8"), plaintext)
        return _SEAL_VERSION + self._salt + counter + ct

    def _open_sealed(self, key: str, blob: object) -> bytes:
        if not isinstance(blob, bytes) or len(blob) < _HEADER_LEN + 16 or blob[:1] != _SEAL_VERSION:
            raise StorageError(f"record {key!r} is malformed")
        salt = blob[1 : 1 + _SALT_LEN]
        session_key = self._sessions.get(salt)
        if session_key is None:
            session_key = self._derive(salt)
            if len(self._sessions) >= _SESSION_CACHE_LIMIT:
                self._sessions.clear()
                self._sessions[self._salt] = self._session_key
            self._sessions[salt] = session_key
        nonce = b"\x00\x00\x00\x00" + blob[1 + _SALT_LEN : _HEADER_LEN]
        try:
            return self._crypto.aead_open(session_key, nonce, _AAD_PREFIX + key.encode("utf-8"), blob[_HEADER_LEN:])
        except CryptoError:
            raise StorageError(f"record {key!r} does not decrypt: wrong key, tampered or corrupt") from None

    # -- BlobStore -------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("the SQLite store is closed")
        return self._conn

    async def get(self, key: str) -> bytes | None:
        """The decrypted value under ``key``, or ``None``."""
        key = check_key(key)
        async with self._lock:
            try:
                row = self._connection().execute("SELECT value FROM records WHERE key = ?", (key.encode("utf-8"),)).fetchone()
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite read failed: {exc}") from None
        return None if row is None else self._open_sealed(key, row[0])

    def _select(self, columns: str, prefix: str) -> builtins.list[tuple[bytes, ...]]:
        low = check_key(prefix, "prefix").encode("utf-8")
        high = _upper_bound(low)
        try:
            conn = self._connection()
            if high is None:
                cur = conn.execute(f"SELECT {columns} FROM records WHERE key >= ? ORDER BY key", (low,))
            else:
                cur = conn.execute(f"SELECT {columns} FROM records WHERE key >= ? AND key < ? ORDER BY key", (low, high))
            return cur.fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite read failed: {exc}") from None

    async def list(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted (UTF-8 byte order is code point order)."""
        async with self._lock:
            rows = self._select("key", prefix)
        return [row[0].decode("utf-8") for row in rows]

    async def items(self, prefix: str) -> builtins.list[tuple[str, bytes]]:
        """(key, decrypted value) for every key starting with ``prefix``, in one query."""
        async with self._lock:
            rows = self._select("key, value", prefix)
        out = []
        for raw_key, blob in rows:
            key = raw_key.decode("utf-8")
            out.append((key, self._open_sealed(key, blob)))
        return out

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str]) -> None:
        """Apply ``deletes`` then ``puts`` in one SQLite transaction (all or nothing)."""
        rows = [(check_key(k).encode("utf-8"), self._seal(k, check_value(v))) for k, v in puts.items()]
        gone = [(check_key(k).encode("utf-8"),) for k in deletes]
        if not rows and not gone:
            return
        async with self._lock:
            if self._offload:
                await _in_thread(lambda: self._write(rows, gone))
            else:
                self._write(rows, gone)

    def _write(self, rows: builtins.list[tuple[bytes, bytes]], gone: builtins.list[tuple[bytes]]) -> None:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite write failed: {exc}") from None
        try:
            if gone:
                conn.executemany("DELETE FROM records WHERE key = ?", gone)
            if rows:
                conn.executemany("INSERT OR REPLACE INTO records(key, value) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"SQLite write failed: {exc}") from None
            raise
        if gone:
            # The deleted records' old page images are still in the WAL: copy the WAL into the
            # (zeroed, secure_delete) database pages and truncate it. The commit is durable already;
            # a checkpoint that cannot complete now (another connection reading) is retried after
            # the next deletion, and SQLite's own checkpoints overwrite the frames meanwhile.
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        """Close the database; later calls raise ``StorageError``. Idempotent.

        Do not call it while a commit is running (``await`` the commit first).
        """
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"SqliteBlobStore(path={self.path!r}, open={self._conn is not None})"


async def _in_thread(fn: Callable[[], _T]) -> _T:
    """Run ``fn`` in the default executor. If the caller is cancelled, still wait for the
    thread to finish (the caller holds the connection lock) before re-raising."""
    fut = asyncio.get_running_loop().run_in_executor(None, fn)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        while not fut.done():
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                continue
            except BaseException:
                break
        raise
