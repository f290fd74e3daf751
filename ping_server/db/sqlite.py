"""SQLite (:class:`SqliteDatabase`): one file, or a private in-memory database, one connection.

One connection, used on the event loop's thread (or one writer thread), WAL journal, ``BEGIN
IMMEDIATE`` (the write lock is taken up front, so two processes sharing the file never deadlock on
a lock upgrade), a busy timeout, ``synchronous=FULL`` by default (a commit is on disk when the call
returns), and group commit: requests waiting together share one COMMIT, each in its own savepoint
(see the class).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .common import SQLITE, DatabaseUnavailable, Params, Tx
from .schema import create_schema

__all__ = ["SqliteDatabase"]

_T = TypeVar("_T")


class _SqliteTx:
    __slots__ = ("_conn", "dialect", "_depth")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.dialect = SQLITE
        self._depth = 0

    @property
    def writes(self) -> int:
        return self._conn.total_changes  # SQLite counts exactly the rows changed

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._conn.executemany(sql, rows)

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
        return row

    def appended(self, key: bytes) -> None:
        pass  # one process per SQLite file in practice; others see appends at their re-reads

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        self._depth += 1
        name = f"sp{self._depth}"
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            raise
        else:
            self._conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1


class SqliteDatabase:
    """SQLite in ``path`` (``":memory:"`` for a private in-memory database), one connection.

    Group commit: the requests waiting to run (at most ``batch``) run in one
    SQLite transaction, each inside its own SAVEPOINT. A request that raises is
    rolled back to its savepoint alone, so every request is still applied
    entirely or not at all, in arrival order, exactly as with one transaction
    each; they only share the COMMIT (one fsync). No caller gets its result
    before that COMMIT has returned, so a result still means "durable". A
    failed COMMIT fails the whole batch with :class:`DatabaseUnavailable` (503:
    ambiguous, as it should be). ``batch=1`` gives one transaction per request.

    Where the SQL runs: by default on the event loop's thread, a batch being
    every request that asked since the last one. Each statement takes
    microseconds, but a COMMIT that syncs (``synchronous`` FULL or EXTRA, a
    file) waits for the disk: that one call runs on a committer thread
    (``commit_thread``, the default then), so the loop goes on parsing,
    verifying and queueing requests meanwhile, and they form the next batch
    when the COMMIT returns (at most one COMMIT in flight: the connection is
    not shared while it runs). Only one thread hand-off per batch: with a
    writer thread for every statement (``threaded=True``) each SQLite call
    hands the GIL over and waits for the busy event loop to give it back,
    which costs more than it saves unless the disk's fsync takes milliseconds.
    """

    def __init__(
        self, path: str, *, synchronous: str = "FULL", batch: int = 32, threaded: bool = False, commit_thread: bool | None = None
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.dialect = SQLITE
        self.kind = "memory" if path == ":memory:" else "sqlite"
        self._path = path
        self._synchronous = synchronous.upper()
        self._batch = batch
        self._conn: sqlite3.Connection | None = None
        # Event-loop mode: requests waiting for the next flush.
        self._pending: list[_Job] = []
        self._flush_scheduled = False
        if commit_thread is None:
            commit_thread = path != ":memory:" and self._synchronous != "NORMAL"
        self._committer = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ping-sqlite-commit") if commit_thread and not threaded else None
        )
        self._inflight: asyncio.Future[DatabaseUnavailable | None] | None = None  # the COMMIT on the committer thread
        # Thread mode: the writer thread's queue (None stops it).
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Open and create the schema now, so a bad path fails at startup.
        try:
            self._conn = self._open()
        except (sqlite3.Error, DatabaseUnavailable) as exc:
            if self._committer is not None:
                self._committer.shutdown(wait=False)
            raise DatabaseUnavailable(f"sqlite: cannot open {path}: {exc}") from None
        if threaded:
            self._thread = threading.Thread(target=self._worker, name="ping-sqlite", daemon=True)
            self._thread.start()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=10.0, cached_statements=256)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            if self._path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                if mode is None or str(mode[0]).lower() != "wal":
                    raise DatabaseUnavailable(f"cannot use WAL journal on {self._path}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            # Deleted rows (claimed KeyPackages, acknowledged Welcomes) are overwritten, not left in free pages.
            conn.execute("PRAGMA secure_delete = ON")
            ((ok, error),) = self._run_batch(conn, [create_schema])
            if not ok:
                raise error
        except BaseException:
            conn.close()
            raise
        return conn

    async def run(self, fn: Callable[[Tx], _T]) -> _T:
        if self._conn is None:
            raise DatabaseUnavailable("database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        job = _Job(fn, future, loop)
        if self._thread is not None:
            self._queue.put(job)
        else:
            self._pending.append(job)
            if not self._flush_scheduled and self._inflight is None:
                self._flush_scheduled = True
                loop.call_soon(self._flush)
        return await future

    def _flush(self, *, commit_here: bool = False) -> None:
        """Event-loop mode: run the waiting requests as one batch (the rest at the next turn).

        With a committer thread the batch's COMMIT runs there and :meth:`_committed` delivers the
        results and starts the next batch; ``commit_here`` commits on this thread (at close)."""
        self._flush_scheduled = False
        if self._inflight is not None:
            return  # _committed flushes when the COMMIT in flight returns
        jobs, self._pending = self._pending[: self._batch], self._pending[self._batch :]
        if not jobs:
            return
        conn = self._conn
        if conn is None:
            _deliver([(j, False, DatabaseUnavailable("database is closed")) for j in jobs])
        elif self._committer is None or commit_here:
            outcomes = self._run_batch(conn, [j.fn for j in jobs])
            _deliver([(j, ok, value) for j, (ok, value) in zip(jobs, outcomes)])
        else:
            changes = conn.total_changes
            ran = self._run_jobs(conn, [j.fn for j in jobs])
            if isinstance(ran, DatabaseUnavailable):
                _deliver([(j, False, ran) for j in jobs])
            elif conn.total_changes == changes:
                # Nothing written (e.g. long polls re-reading): the COMMIT has nothing to sync.
                failure = self._commit(conn)
                _deliver([(j, False, failure) if failure else (j, ok, value) for j, (ok, value) in zip(jobs, ran)])
            else:
                loop = asyncio.get_running_loop()
                inflight = loop.run_in_executor(self._committer, self._commit, conn)
                self._inflight = inflight
                inflight.add_done_callback(lambda f: self._committed(f, jobs, ran))
                return
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _committed(self, done: "asyncio.Future[DatabaseUnavailable | None]", jobs: list[_Job], ran: list[tuple[bool, Any]]) -> None:
        """The committer thread's COMMIT returned: answer the batch, then run the next one."""
        self._inflight = None
        failure = done.exception() or done.result()
        if failure is not None and not isinstance(failure, DatabaseUnavailable):
            failure = DatabaseUnavailable(f"sqlite: {type(failure).__name__}")
        _deliver([(j, False, failure) if failure else (j, ok, value) for j, (ok, value) in zip(jobs, ran)])
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _worker(self) -> None:
        """Thread mode: take the queued requests in batches until stopped."""
        conn = self._conn
        assert conn is not None
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stop = False
            while len(jobs) < self._batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            outcomes = self._run_batch(conn, [j.fn for j in jobs])
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, bool, Any]]] = {}
            for j, (ok, value) in zip(jobs, outcomes):
                by_loop.setdefault(j.loop, []).append((j, ok, value))
            for loop, items in by_loop.items():
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                    loop.call_soon_threadsafe(_deliver, items)
            if stop:
                return

    @staticmethod
    def _run_jobs(conn: sqlite3.Connection, fns: list[Callable[[Tx], Any]]) -> list[tuple[bool, Any]] | DatabaseUnavailable:
        """BEGIN, then run ``fns`` each in a savepoint: (ok, result or exception) for each; the
        transaction is left open for :meth:`_commit`. On a failure of the machinery itself the
        transaction is rolled back and the failure returned (the whole batch fails)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return DatabaseUnavailable(f"sqlite: {exc}")
        outcomes: list[tuple[bool, Any]] = []
        tx = _SqliteTx(conn)
        try:
            for fn in fns:
                conn.execute("SAVEPOINT job")
                try:
                    value = fn(tx)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    if isinstance(exc, sqlite3.Error):
                        exc = DatabaseUnavailable(f"sqlite: {exc}")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((True, value))
        except sqlite3.Error as exc:
            return _abort(conn, exc)
        return outcomes

    @staticmethod
    def _commit(conn: sqlite3.Connection) -> DatabaseUnavailable | None:
        """COMMIT the open transaction (any thread); on failure roll it back and return the failure."""
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return _abort(conn, exc)
        return None

    @classmethod
    def _run_batch(cls, conn: sqlite3.Connection, fns: list[Callable[[Tx], Any]]) -> list[tuple[bool, Any]]:
        """Run ``fns`` in one transaction, each in a savepoint, and COMMIT; (ok, result or exception) for each."""
        ran = cls._run_jobs(conn, fns)
        failure = ran if isinstance(ran, DatabaseUnavailable) else cls._commit(conn)
        if failure is not None:
            return [(False, failure)] * len(fns)
        assert not isinstance(ran, DatabaseUnavailable)
        return ran

    def on_append(self, callback: Callable[[bytes], None]) -> None:
        pass

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None
        if self._inflight is not None:
            await asyncio.wait([self._inflight])
            await asyncio.sleep(0)  # let _committed run
        while self._pending:
            self._flush(commit_here=True)  # requests already accepted still get their answer
        if self._committer is not None:
            self._committer.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _abort(conn: sqlite3.Connection, exc: sqlite3.Error) -> DatabaseUnavailable:
    """Roll the whole transaction back (nothing of the batch is applied); the failure to report."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")
    return DatabaseUnavailable(f"sqlite: {exc}")


@dataclass(frozen=True, slots=True)
class _Job:
    fn: Callable[[Tx], Any]
    future: "asyncio.Future[Any]"
    loop: asyncio.AbstractEventLoop


def _deliver(items: list[tuple[_Job, bool, Any]]) -> None:
    for job, ok, value in items:
        if job.future.done():  # the caller was cancelled (e.g. the client went away)
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)
