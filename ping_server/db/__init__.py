"""The delivery service's database: SQLite (one file, or in memory) or PostgreSQL, one code path.

:class:`Database` runs a function ``fn(tx)`` inside ONE transaction and
returns its result: committed when ``fn`` returns, rolled back when it raises
(the exception then propagates). Every request of the API is one such call, so
a request is applied entirely or not at all. ``fn`` is synchronous (it never
awaits inside a transaction); it speaks SQL through :class:`Tx`
with ``?`` placeholders and the few dialect words of :class:`Dialect`, and
the same SQL runs on both engines.

* SQLite (:class:`SqliteDatabase`): one connection, used on the event loop's
  thread (or one writer thread), WAL journal, ``BEGIN IMMEDIATE`` (the write
  lock is taken up front, so two processes sharing the file never deadlock on
  a lock upgrade), a busy timeout, ``synchronous=FULL`` by default (a commit is
  on disk when the call returns), and group commit: requests waiting together
  share one COMMIT, each in its own savepoint (see the class).
* PostgreSQL (:class:`PostgresDatabase`, psycopg 3, ``postgresql://`` URLs):
  a pool of connections, one per worker thread, READ COMMITTED with explicit
  row locks (``FOR UPDATE``) where a request reads what it then changes, so
  several server processes can share one database. A transaction that loses
  a serialization or deadlock race is retried from the start.

Modules: :mod:`.common` (the protocols, the dialects, :class:`DatabaseUnavailable`),
:mod:`.schema` (the DDL and the ordered migrations), :mod:`.sqlite` and :mod:`.postgres` (the
engines); :func:`open_database` here picks the engine from a URL (here, not in ``common``,
so that no module of the package imports one that imports it back).
"""

from __future__ import annotations

from .common import POSTGRES, SQLITE, Database, DatabaseUnavailable, Dialect, Params, Tx
from .postgres import PostgresDatabase
from .schema import DATA_TABLES, MIGRATIONS, SCHEMA_VERSION, Migration
from .sqlite import SqliteDatabase

__all__ = [
    "Database",
    "Tx",
    "Dialect",
    "DatabaseUnavailable",
    "Params",
    "SQLITE",
    "POSTGRES",
    "SqliteDatabase",
    "PostgresDatabase",
    "open_database",
    "SCHEMA_VERSION",
    "DATA_TABLES",
    "Migration",
    "MIGRATIONS",
]


def open_database(
    url: str | None,
    *,
    sqlite_synchronous: str = "FULL",
    sqlite_batch: int = 32,
    sqlite_threaded: bool = False,
    sqlite_commit_thread: bool | None = None,
    pool_size: int = 8,
) -> Database:
    """``None`` or ``":memory:"``: private in-memory SQLite; ``postgresql://...`` / ``postgres://...``:
    PostgreSQL; anything else: the path of a SQLite file (created when missing)."""
    if url is not None and url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, pool_size=pool_size)
    path = ":memory:" if url is None else url
    return SqliteDatabase(
        path, synchronous=sqlite_synchronous, batch=sqlite_batch, threaded=sqlite_threaded, commit_thread=sqlite_commit_thread
    )
