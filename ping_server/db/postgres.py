"""PostgreSQL (:class:`PostgresDatabase`, psycopg 3, ``postgresql://`` URLs).

A pool of connections, one per worker thread, READ COMMITTED with explicit row locks (``FOR
UPDATE``) where a request reads what it then changes, so several server processes can share one
database. A transaction that loses a serialization or deadlock race is retried from the start.
Appends are announced to the other processes with NOTIFY on one channel, delivered at commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .common import POSTGRES, DatabaseUnavailable, Params, Tx
from .schema import create_schema

__all__ = ["PostgresDatabase"]

_T = TypeVar("_T")

# The NOTIFY channel of appends (Tx.appended), LISTENed to by every process's on_append.
_CHANNEL = "ping_append"


class _PgTx:
    __slots__ = ("_conn", "dialect", "_sql", "writes")

    def __init__(self, conn: Any, sql_cache: dict[str, str]) -> None:
        self._conn = conn
        self.dialect = POSTGRES
        self._sql = sql_cache
        self.writes = 0

    def _q(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:
            # Our statements contain no literal "?" or "%"; psycopg wants %s.
            out = self._sql[sql] = sql.replace("?", "%s")
        return out

    def _run(self, sql: str, params: Params) -> Any:
        cur = self._conn.execute(self._q(sql), params)
        if not sql.startswith("SELECT"):
            self.writes += max(int(cur.rowcount), 0)  # rows inserted, updated or deleted
        return cur

    def execute(self, sql: str, params: Params = ()) -> int:
        return int(self._run(sql, params).rowcount)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self.writes += len(rows)  # at most one row per parameter set in our statements; never fewer counted than written
        with self._conn.cursor() as cur:
            cur.executemany(self._q(sql), rows)

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._run(sql, params).fetchall()
        return rows

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._run(sql, params).fetchone()
        return row

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        with self._conn.transaction():
            yield

    def appended(self, key: bytes) -> None:
        # Delivered to every listening session when (and only if) the transaction commits.
        self._conn.execute("SELECT pg_notify(%s, %s)", (_CHANNEL, key.hex()))


class PostgresDatabase:
    """PostgreSQL at ``url`` through psycopg 3; ``pool_size`` connections (one per worker thread).

    With :meth:`on_append`, one more connection LISTENs on the ``ping_append``
    channel in a thread of its own, so a long poll here wakes when another
    process appends (reconnecting after a failure; meanwhile the re-reads cover).
    """

    _RETRIES = 5

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - depends on the install
            raise DatabaseUnavailable("PostgreSQL needs psycopg: pip install 'ping-core[postgres]'") from None
        self._psycopg = psycopg
        self.dialect = POSTGRES
        self.kind = "postgres"
        self._url = url
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._sql: dict[str, str] = {}
        self._executor = ThreadPoolExecutor(max_workers=max(1, pool_size), thread_name_prefix="ping-pg")
        self._executor.submit(self._run, create_schema).result()
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()

    def on_append(self, callback: Callable[[bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        self._listener = threading.Thread(target=self._listen, args=(loop, callback), name="ping-pg-listen", daemon=True)
        self._listener.start()

    def _listen(self, loop: asyncio.AbstractEventLoop, callback: Callable[[bytes], None]) -> None:
        while not self._stopping.is_set():
            try:
                with self._psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {_CHANNEL}")
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.5):
                            try:
                                key = bytes.fromhex(note.payload)
                            except ValueError:
                                continue
                            loop.call_soon_threadsafe(callback, key)
            except Exception:  # the database went away: try again shortly
                if self._stopping.wait(1.0):
                    return

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = self._psycopg.connect(self._url, autocommit=True)  # transaction() blocks delimit transactions
            except self._psycopg.Error as exc:
                raise DatabaseUnavailable(f"postgres: cannot connect ({type(exc).__name__})") from None
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _run(self, fn: Callable[[Tx], _T]) -> _T:
        errors = self._psycopg.errors
        for attempt in range(self._RETRIES):
            conn = self._connection()
            try:
                with conn.transaction():
                    return fn(_PgTx(conn, self._sql))
            except (errors.SerializationFailure, errors.DeadlockDetected):
                if attempt == self._RETRIES - 1:
                    raise DatabaseUnavailable("postgres: too many serialization conflicts") from None
            except self._psycopg.OperationalError as exc:
                with contextlib.suppress(Exception):
                    conn.close()
                self._local.conn = None
                raise DatabaseUnavailable(f"postgres: {type(exc).__name__}") from None
        raise AssertionError("unreachable")

    async def run(self, fn: Callable[[Tx], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, fn)
        except self._psycopg.Error as exc:
            raise DatabaseUnavailable(f"postgres: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._listener.join, 5.0)
        self._executor.shutdown(wait=True)
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(Exception):
                    conn.close()
            self._all.clear()
