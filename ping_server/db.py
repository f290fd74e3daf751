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
from typing import Any, Protocol, TypeVar

__all__ = ["Database", "Tx", "Dialect", "DatabaseUnavailable", "SqliteDatabase", "PostgresDatabase", "open_database"]

_T = TypeVar("_T")
Params = Sequence[Any]

SCHEMA_VERSION = "6"

# Portable DDL: {blob} is the binary type, {norowid} SQLite's WITHOUT ROWID for small keyed rows.
# Counters kept in the same transaction as the rows they count (never summed per request):
# accounts.stored_bytes (the account's devices' log envelopes, Welcome payloads and KeyPackages),
# conversations.bytes (its log), devices.inbox_* (its Welcome inbox as the recipient downloads it:
# each entry's full size) and devices.kp_bytes (its one-time KeyPackages).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    user_id {blob} PRIMARY KEY, public_key {blob} NOT NULL, stored_bytes BIGINT NOT NULL DEFAULT 0
){norowid};
CREATE TABLE IF NOT EXISTS devices (
    device_id {blob} PRIMARY KEY,
    user_id {blob} NOT NULL,
    reg_seq BIGINT NOT NULL,
    signing_key {blob} NOT NULL,
    info {blob} NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    last_resort {blob},
    kp_next BIGINT NOT NULL DEFAULT 1,
    inbox_next BIGINT NOT NULL DEFAULT 1,
    inbox_count BIGINT NOT NULL DEFAULT 0,
    inbox_bytes BIGINT NOT NULL DEFAULT 0,
    inbox_strangers BIGINT NOT NULL DEFAULT 0,
    inbox_stranger_bytes BIGINT NOT NULL DEFAULT 0,
    kp_bytes BIGINT NOT NULL DEFAULT 0,
    kp_window BIGINT NOT NULL DEFAULT 0,
    kp_window_claims BIGINT NOT NULL DEFAULT 0,
    revocation {blob},
    revocation_seq BIGINT
);
CREATE INDEX IF NOT EXISTS devices_by_user ON devices (user_id, reg_seq);
CREATE INDEX IF NOT EXISTS devices_revocations ON devices (user_id, revocation_seq) WHERE revocation IS NOT NULL;
CREATE TABLE IF NOT EXISTS key_packages (
    device_id {blob} NOT NULL, n BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (device_id, n)
);
CREATE TABLE IF NOT EXISTS kp_claims (
    device_id {blob} NOT NULL, claimer {blob} NOT NULL, win BIGINT NOT NULL, n BIGINT NOT NULL,
    PRIMARY KEY (device_id, claimer)
){norowid};
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id {blob} PRIMARY KEY,
    next_seq BIGINT NOT NULL,
    epoch BIGINT,
    created_by {blob} NOT NULL,
    created_ms BIGINT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0
){norowid};
CREATE TABLE IF NOT EXISTS members (
    conversation_id {blob} NOT NULL, device_id {blob} NOT NULL, end_seq BIGINT, consent INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (conversation_id, device_id)
){norowid};
CREATE INDEX IF NOT EXISTS members_by_device ON members (device_id);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id {blob} NOT NULL, seq BIGINT NOT NULL, size BIGINT NOT NULL, envelope {blob} NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE IF NOT EXISTS welcome_payloads (
    id BIGINT PRIMARY KEY, sender_user {blob} NOT NULL, conversation_id {blob} NOT NULL, refs BIGINT NOT NULL,
    size BIGINT NOT NULL, envelope {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS welcomes (
    device_id {blob} NOT NULL, seq BIGINT NOT NULL, payload_id BIGINT NOT NULL, size BIGINT NOT NULL,
    conversation_id {blob} NOT NULL, stranger {blob},
    PRIMARY KEY (device_id, seq)
){norowid};
CREATE INDEX IF NOT EXISTS welcomes_by_stranger ON welcomes (device_id, stranger) WHERE stranger IS NOT NULL;
CREATE TABLE IF NOT EXISTS public_groups (
    conversation_id {blob} PRIMARY KEY, epoch BIGINT NOT NULL, state {blob} NOT NULL, group_info {blob} NOT NULL,
    welcome_to {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    ts_ms BIGINT NOT NULL, device_id {blob} NOT NULL, nonce {blob} NOT NULL, PRIMARY KEY (ts_ms, device_id, nonce)
){norowid};
CREATE TABLE IF NOT EXISTS push_subscriptions (
    device_id {blob} NOT NULL, endpoint TEXT NOT NULL, p256dh {blob} NOT NULL, auth {blob} NOT NULL, created_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, endpoint)
);
CREATE TABLE IF NOT EXISTS push_keys (name TEXT PRIMARY KEY, private_key {blob} NOT NULL);
"""

# Schema 1 -> 2: members gain end_seq (a removed device reads up to the Commit that removed it);
# nonces are keyed by time first (pruning is a range of the key; no second index to maintain).
# Nonce rows are copied: dropping them would let requests of the last minutes be replayed.
_MIGRATE_1_TO_2 = """
ALTER TABLE members ADD COLUMN end_seq BIGINT;
CREATE TABLE nonces_v2 (
    ts_ms BIGINT NOT NULL, device_id {blob} NOT NULL, nonce {blob} NOT NULL, PRIMARY KEY (ts_ms, device_id, nonce)
){norowid};
INSERT INTO nonces_v2 (ts_ms, device_id, nonce) SELECT ts_ms, device_id, nonce FROM nonces;
DROP TABLE nonces;
ALTER TABLE nonces_v2 RENAME TO nonces
"""

# Schema 2 -> 3: the incremental counters (filled from the data below), members' consent, the
# KeyPackage claim counters, and Welcome payloads stored once (welcomes rows reference them).
# Each old inbox row becomes a payload of its own (see _migrate_welcomes_2_to_3).
_MIGRATE_2_TO_3 = """
ALTER TABLE accounts ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN inbox_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN inbox_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN inbox_strangers BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN inbox_stranger_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN kp_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN kp_window BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN kp_window_claims BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN consent INTEGER NOT NULL DEFAULT 1;
CREATE TABLE kp_claims (
    device_id {blob} NOT NULL, claimer {blob} NOT NULL, win BIGINT NOT NULL, n BIGINT NOT NULL,
    PRIMARY KEY (device_id, claimer)
){norowid};
CREATE TABLE welcome_payloads (
    id BIGINT PRIMARY KEY, sender_user {blob} NOT NULL, conversation_id {blob} NOT NULL, refs BIGINT NOT NULL,
    size BIGINT NOT NULL, envelope {blob} NOT NULL
);
ALTER TABLE welcomes RENAME TO welcomes_v2;
CREATE TABLE welcomes (
    device_id {blob} NOT NULL, seq BIGINT NOT NULL, payload_id BIGINT NOT NULL, size BIGINT NOT NULL,
    conversation_id {blob} NOT NULL, stranger {blob},
    PRIMARY KEY (device_id, seq)
){norowid};
CREATE INDEX welcomes_by_stranger ON welcomes (device_id, stranger) WHERE stranger IS NOT NULL;
INSERT INTO counters (name, value) VALUES ('welcome', 0) ON CONFLICT DO NOTHING
"""

# Counters of the migrated data (one pass each, once). Log envelopes stored before schema 3 count
# in their conversation's bytes but in no account's: schema 2 did not record who posted them.
_MIGRATE_2_TO_3_COUNTS = """
UPDATE conversations SET bytes = COALESCE((SELECT SUM(m.size) FROM messages m WHERE m.conversation_id = conversations.conversation_id), 0);
UPDATE devices SET kp_bytes = COALESCE((SELECT SUM(LENGTH(k.data)) FROM key_packages k WHERE k.device_id = devices.device_id), 0);
UPDATE devices SET
    inbox_count = (SELECT COUNT(*) FROM welcomes w WHERE w.device_id = devices.device_id),
    inbox_bytes = COALESCE((SELECT SUM(w.size) FROM welcomes w WHERE w.device_id = devices.device_id), 0);
UPDATE accounts SET stored_bytes =
    COALESCE((SELECT SUM(d.kp_bytes + COALESCE(LENGTH(d.last_resort), 0)) FROM devices d WHERE d.user_id = accounts.user_id), 0)
    + COALESCE((SELECT SUM(p.size) FROM welcome_payloads p WHERE p.sender_user = accounts.user_id), 0)
"""

# Schema 3 -> 4: devices keep the account's signed revocation statement (a DeviceRevocation) and
# the order it came in. Devices revoked before have neither (they stay revoked: the flag is kept).
_MIGRATE_3_TO_4 = """
ALTER TABLE devices ADD COLUMN revocation {blob};
ALTER TABLE devices ADD COLUMN revocation_seq BIGINT;
CREATE INDEX devices_revocations ON devices (user_id, revocation_seq) WHERE revocation IS NOT NULL
"""

# Schema 4 -> 5: verified conversations (ping_core.transport.handshake): the public group state,
# the latest GroupInfo and the devices the latest Commit added. Existing conversations have no
# row: they keep the routing rules until a Commit brings a GroupInfo.
_MIGRATE_4_TO_5 = """
CREATE TABLE public_groups (
    conversation_id {blob} PRIMARY KEY, epoch BIGINT NOT NULL, state {blob} NOT NULL, group_info {blob} NOT NULL,
    welcome_to {blob} NOT NULL
)
"""

# Schema 5 -> 6: Web Push (ping_server.push): the devices' push subscriptions (RFC 8030 endpoint,
# RFC 8291 keys) and the server's VAPID key pair (RFC 8292), generated once and kept here.
_MIGRATE_5_TO_6 = """
CREATE TABLE push_subscriptions (
    device_id {blob} NOT NULL, endpoint TEXT NOT NULL, p256dh {blob} NOT NULL, auth {blob} NOT NULL, created_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, endpoint)
);
CREATE TABLE push_keys (name TEXT PRIMARY KEY, private_key {blob} NOT NULL)
"""

# Tables that hold the service's data (the nonce table is authentication bookkeeping).
DATA_TABLES = (
    "accounts", "devices", "key_packages", "conversations", "members", "messages", "welcomes", "welcome_payloads", "kp_claims",
    "public_groups", "push_subscriptions",
)


class DatabaseUnavailable(Exception):
    """The database could not be reached or failed mid-request (the outcome may be unknown)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The words that differ between the engines."""

    name: str
    # Appended to a SELECT whose rows the transaction then changes. SQLite needs
    # none: BEGIN IMMEDIATE already holds the database's one write lock.
    for_update: str
    blob: str
    norowid: str


SQLITE = Dialect("sqlite", "", "BLOB", " WITHOUT ROWID")
POSTGRES = Dialect("postgres", " FOR UPDATE", "BYTEA", "")


class Tx(Protocol):
    """One open transaction (``?`` placeholders on every engine)."""

    dialect: Dialect

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]: ...

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row, or None."""
        ...

    @property
    def writes(self) -> int:
        """Rows written through this Tx so far (inserted, updated or deleted; an ``INSERT ... ON
        CONFLICT DO NOTHING`` that inserted nothing counts none): a change of it tells a caller
        that something was written."""
        ...

    def savepoint(self) -> contextlib.AbstractContextManager[None]:
        """A nested transaction: rolled back alone when its block raises (the exception propagates)."""
        ...

    def appended(self, key: bytes) -> None:
        """Announce, at commit, an append to conversation ``key`` (or a Welcome delivered to the inbox
        ``delivery.inbox_key``) to other processes (see ``on_append``)."""
        ...


class Database(Protocol):
    dialect: Dialect
    kind: str  # "sqlite", "memory" or "postgres" (what /api/health reports)

    async def run(self, fn: Callable[[Tx], _T]) -> _T:
        """Run ``fn`` in one transaction; see the module docstring."""
        ...

    def on_append(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback(key)`` on the event loop when ANOTHER process sharing the database appends
        to a conversation or delivers a Welcome (``Tx.appended`` announced ``key``). A no-op where the engine
        cannot tell (SQLite: other processes' appends are seen by the long polls' re-reads)."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------
# SQLite


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
            ((ok, error),) = self._run_batch(conn, [_create_schema])
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


# --------------------------------------------------------------------------
# PostgreSQL


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


_CHANNEL = "ping_append"


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
        self._executor.submit(self._run, _create_schema).result()
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


def _statements(script: str, dialect: Dialect) -> list[str]:
    return [stmt for stmt in script.format(blob=dialect.blob, norowid=dialect.norowid).split(";") if stmt.strip()]


def _create_schema(tx: Tx) -> None:
    """Create the schema in an empty database, or migrate an older one to ``SCHEMA_VERSION``
    (1 -> 2 -> 3 -> 4 -> 5 -> 6, in this one transaction); a newer one is refused."""
    d = tx.dialect
    if d.name == "postgres":
        # Several processes may start at once; CREATE ... IF NOT EXISTS races in PostgreSQL.
        tx.execute("SELECT pg_advisory_xact_lock(7031985)")
    tx.execute("CREATE TABLE IF NOT EXISTS ping_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = tx.one("SELECT value FROM ping_meta WHERE name = 'schema'")
    version = None if row is None else str(row[0])
    if version is None:
        for stmt in _statements(_SCHEMA, d):
            tx.execute(stmt)
        tx.execute("INSERT INTO ping_meta (name, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
    elif version in ("1", "2", "3", "4", "5"):
        if version == "1":
            for stmt in _statements(_MIGRATE_1_TO_2, d):
                tx.execute(stmt)
        if version in ("1", "2"):
            for stmt in _statements(_MIGRATE_2_TO_3, d):
                tx.execute(stmt)
            _migrate_welcomes_2_to_3(tx)
            tx.execute("DROP TABLE welcomes_v2")
            for stmt in _statements(_MIGRATE_2_TO_3_COUNTS, d):
                tx.execute(stmt)
        if version in ("1", "2", "3"):
            for stmt in _statements(_MIGRATE_3_TO_4, d):
                tx.execute(stmt)
        if version in ("1", "2", "3", "4"):
            for stmt in _statements(_MIGRATE_4_TO_5, d):
                tx.execute(stmt)
        for stmt in _statements(_MIGRATE_5_TO_6, d):
            tx.execute(stmt)
        tx.execute("UPDATE ping_meta SET value = ? WHERE name = 'schema'", (SCHEMA_VERSION,))
    elif version != SCHEMA_VERSION:
        raise DatabaseUnavailable(f"database schema {version} is not {SCHEMA_VERSION} (a newer server made it?)")
    tx.execute("INSERT INTO counters (name, value) VALUES ('device', 0) ON CONFLICT DO NOTHING")
    tx.execute("INSERT INTO counters (name, value) VALUES ('welcome', 0) ON CONFLICT DO NOTHING")
    tx.execute("INSERT INTO counters (name, value) VALUES ('revocation', 0) ON CONFLICT DO NOTHING")


def _migrate_welcomes_2_to_3(tx: Tx) -> None:
    """Each schema-2 inbox row (a recipient's own copy) becomes one payload with one reference,
    charged to its sender's account; the envelope is decoded once for its conversation and sender
    (keyset pages of 500 rows, so memory stays bounded)."""
    from ping_core.errors import InvalidInput
    from ping_core.message import MessageEnvelope

    after: tuple[bytes, int] | None = None
    next_id = 0
    while True:
        if after is None:
            rows = tx.query("SELECT device_id, seq, size, envelope FROM welcomes_v2 ORDER BY device_id, seq LIMIT 500")
        else:
            rows = tx.query(
                "SELECT device_id, seq, size, envelope FROM welcomes_v2 WHERE device_id > ? OR (device_id = ? AND seq > ?)"
                " ORDER BY device_id, seq LIMIT 500",
                (after[0], after[0], after[1]),
            )
        if not rows:
            break
        for device_id, seq, size, envelope in rows:
            data = bytes(envelope)
            try:
                env = MessageEnvelope.decode(data)
            except InvalidInput:
                continue  # cannot happen (the server stored only what it decoded); dropped rather than kept unreadable
            sender = tx.one("SELECT user_id FROM devices WHERE device_id = ?", (env.sender_device.value,))
            sender_user = bytes(sender[0]) if sender is not None else env.sender_device.value
            next_id += 1
            tx.execute(
                "INSERT INTO welcome_payloads (id, sender_user, conversation_id, refs, size, envelope) VALUES (?, ?, ?, 1, ?, ?)",
                (next_id, sender_user, env.conversation_id.value, len(data), data),
            )
            tx.execute(
                "INSERT INTO welcomes (device_id, seq, payload_id, size, conversation_id, stranger) VALUES (?, ?, ?, ?, ?, NULL)",
                (bytes(device_id), int(seq), next_id, int(size), env.conversation_id.value),
            )
        after = (bytes(rows[-1][0]), int(rows[-1][1]))
    tx.execute("UPDATE counters SET value = ? WHERE name = 'welcome'", (next_id,))


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
