"""ping_server.db: one transaction per call on both engines; SQLite group commit keeps each call atomic."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ping_core.ids import ConversationId, DeviceId, UserId
from ping_server.db import SCHEMA_VERSION, Database, DatabaseUnavailable, PostgresDatabase, SqliteDatabase, Tx, open_database


class Boom(Exception):
    pass


@pytest.fixture(params=["sqlite", "sqlite-batch-1", "sqlite-thread", "memory", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "postgres":
        database: Database = PostgresDatabase(request.getfixturevalue("postgres_db"), pool_size=4)
    elif request.param == "memory":
        database = SqliteDatabase(":memory:")
    else:
        database = SqliteDatabase(
            str(tmp_path / "t.sqlite"), batch=1 if request.param.endswith("1") else 32, threaded=request.param.endswith("thread")
        )
    await database.run(lambda tx: tx.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BIGINT NOT NULL)"))
    await database.run(lambda tx: tx.execute("DELETE FROM t"))
    yield database
    await database.close()


def _put(key: str, value: int, fail: bool = False) -> Any:
    def fn(tx: Tx) -> int:
        tx.execute("INSERT INTO t (k, v) VALUES (?, ?)", (key, value))
        if fail:
            raise Boom(key)
        row = tx.one("SELECT COUNT(*) FROM t")
        assert row is not None
        return int(row[0])

    return fn


async def _rows(db: Database) -> dict[str, int]:
    return dict(await db.run(lambda tx: [(k, int(v)) for k, v in tx.query("SELECT k, v FROM t ORDER BY k")]))


async def test_each_call_is_all_or_nothing_even_when_batched(db: Database) -> None:
    # Many calls at once: SQLite runs the queued ones in one batch, each in its own savepoint.
    calls = [db.run(_put(f"k{i:03d}", i, fail=(i % 3 == 0))) for i in range(60)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, Boom) and str(result) == f"k{i:03d}"
        else:
            assert isinstance(result, int)
    assert await _rows(db) == {f"k{i:03d}": i for i in range(60) if i % 3}


async def test_calls_see_each_other_in_order(db: Database) -> None:
    counts = await asyncio.gather(*(db.run(_put(f"o{i}", i)) for i in range(20)))
    if isinstance(db, SqliteDatabase):
        assert counts == list(range(1, 21))  # one writer: arrival order, each call sees the ones before
    # (PostgreSQL runs them concurrently under READ COMMITTED; the delivery rules lock rows instead.)
    assert len(await _rows(db)) == 20


async def test_savepoint_inside_a_call(db: Database) -> None:
    def fn(tx: Tx) -> None:
        tx.execute("INSERT INTO t (k, v) VALUES ('outer', 1)")
        with pytest.raises(Boom), tx.savepoint():
            tx.execute("INSERT INTO t (k, v) VALUES ('inner', 2)")
            raise Boom()
        with tx.savepoint():
            tx.execute("INSERT INTO t (k, v) VALUES ('kept', 3)")

    await db.run(fn)
    assert await _rows(db) == {"kept": 3, "outer": 1}


async def test_a_database_error_fails_only_its_call(db: Database) -> None:
    await db.run(_put("dup", 1))
    results = await asyncio.gather(db.run(_put("a", 1)), db.run(_put("dup", 2)), db.run(_put("b", 2)), return_exceptions=True)
    assert isinstance(results[1], DatabaseUnavailable)  # unique violation: the engine's error, as 503
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert await _rows(db) == {"a": 1, "b": 2, "dup": 1}


def test_unusable_path_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable):
        SqliteDatabase(str(tmp_path / "missing-dir" / "x.sqlite"))


async def test_closed_database_refuses(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "c.sqlite"))
    await db.close()
    with pytest.raises(DatabaseUnavailable):
        await db.run(lambda tx: None)


# The schema as version 1 wrote it (ping_server before end_seq and the time-keyed nonces).
_SCHEMA_V1 = """
CREATE TABLE ping_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE accounts (user_id {blob} PRIMARY KEY, public_key {blob} NOT NULL){norowid};
CREATE TABLE devices (
    device_id {blob} PRIMARY KEY, user_id {blob} NOT NULL, reg_seq BIGINT NOT NULL, signing_key {blob} NOT NULL,
    info {blob} NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, last_resort {blob},
    kp_next BIGINT NOT NULL DEFAULT 1, inbox_next BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX devices_by_user ON devices (user_id, reg_seq);
CREATE TABLE key_packages (device_id {blob} NOT NULL, n BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (device_id, n));
CREATE TABLE conversations (
    conversation_id {blob} PRIMARY KEY, next_seq BIGINT NOT NULL, epoch BIGINT, created_by {blob} NOT NULL,
    created_ms BIGINT NOT NULL
){norowid};
CREATE TABLE members (
    conversation_id {blob} NOT NULL, device_id {blob} NOT NULL, PRIMARY KEY (conversation_id, device_id)
){norowid};
CREATE INDEX members_by_device ON members (device_id);
CREATE TABLE messages (
    conversation_id {blob} NOT NULL, seq BIGINT NOT NULL, size BIGINT NOT NULL, envelope {blob} NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE welcomes (
    device_id {blob} NOT NULL, seq BIGINT NOT NULL, size BIGINT NOT NULL, envelope {blob} NOT NULL, PRIMARY KEY (device_id, seq)
);
CREATE TABLE nonces (
    device_id {blob} NOT NULL, nonce {blob} NOT NULL, ts_ms BIGINT NOT NULL, PRIMARY KEY (device_id, nonce)
){norowid};
CREATE INDEX nonces_by_time ON nonces (ts_ms);
INSERT INTO ping_meta (name, value) VALUES ('schema', '1');
INSERT INTO counters (name, value) VALUES ('device', 0);
INSERT INTO members (conversation_id, device_id) VALUES (x'01', x'02');
INSERT INTO nonces (device_id, nonce, ts_ms) VALUES (x'02', x'03', 1234)
"""


@pytest.fixture(params=["sqlite", "postgres"])
def v1_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that ping_server's schema 1 made (with a member and a nonce), as a path or URL."""
    if request.param == "sqlite":
        path = str(tmp_path / "v1.sqlite")
        conn = sqlite3.connect(path)
        conn.executescript(_SCHEMA_V1.format(blob="BLOB", norowid=" WITHOUT ROWID"))
        conn.close()
        yield path
        return
    import psycopg

    url = request.getfixturevalue("postgres_db")
    name = f"ping_v1_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    target = urlunsplit(urlsplit(url)._replace(path="/" + name))
    try:
        with psycopg.connect(target, autocommit=True) as conn:
            for stmt in _SCHEMA_V1.format(blob="BYTEA", norowid="").replace("x'", "'\\x").split(";"):
                conn.execute(stmt)
        yield target
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_schema_1_is_migrated(v1_database: str) -> None:
    """Opening a schema-1 database migrates it in place: members keep their rows (end_seq NULL:
    still members), nonces keep theirs (a migration must not reopen the replay window)."""
    database = open_database(v1_database)
    try:
        def read(tx: Tx) -> tuple[Any, ...]:
            version = tx.one("SELECT value FROM ping_meta WHERE name = 'schema'")
            members = tx.query("SELECT conversation_id, device_id, end_seq FROM members")
            nonces = tx.query("SELECT ts_ms, device_id, nonce FROM nonces")
            return version, [tuple(bytes(v) if isinstance(v, (bytes, memoryview)) else v for v in r) for r in members], [
                tuple(bytes(v) if isinstance(v, (bytes, memoryview)) else v for v in r) for r in nonces
            ]

        version, members, nonces = await database.run(read)
        assert version == (SCHEMA_VERSION,)
        assert members == [(b"\x01", b"\x02", None)]
        assert nonces == [(1234, b"\x02", b"\x03")]
    finally:
        await database.close()
    again = open_database(v1_database)  # opening a migrated database changes nothing
    await again.close()


async def test_refusals_come_before_writes(db: Database) -> None:
    """ping_server.api runs each operation without a savepoint: a refusal (ApiError) before any
    write keeps what the request wrote before the operation (its nonce); a refusal after a write
    is a bug, and then the whole request is rolled back (RefusedAfterWriting, answered 500)."""
    from ping_server.app import ApiError
    from ping_server.gate import Refused, RefusedAfterWriting, guarded

    def clean(tx: Tx) -> Any:
        tx.execute("INSERT INTO t (k, v) VALUES ('nonce-1', 1)")
        tx.one("SELECT COUNT(*) FROM t")  # reads are fine

        def op() -> None:
            tx.one("SELECT v FROM t WHERE k = 'nonce-1'")
            raise ApiError(403, "forbidden", "no")

        return guarded(tx, op)

    refused = await db.run(clean)
    assert isinstance(refused, Refused) and refused.error.code == "forbidden"

    def lost_race(tx: Tx) -> Any:
        def op() -> None:
            # A concurrent request made the row first: this insert writes nothing, the refusal is clean.
            assert tx.execute("INSERT INTO t (k, v) VALUES ('nonce-1', 9) ON CONFLICT DO NOTHING") == 0
            raise ApiError(409, "epoch_advanced", "the other one won")

        return guarded(tx, op)

    refused = await db.run(lost_race)
    assert isinstance(refused, Refused) and refused.error.code == "epoch_advanced"

    def dirty(tx: Tx) -> Any:
        tx.execute("INSERT INTO t (k, v) VALUES ('nonce-2', 2)")

        def op() -> None:
            tx.execute("INSERT INTO t (k, v) VALUES ('half-done', 3)")
            raise ApiError(409, "conflict", "too late")

        return guarded(tx, op)

    with pytest.raises(RefusedAfterWriting):
        await db.run(dirty)
    assert await _rows(db) == {"nonce-1": 1}


# The schema as version 2 wrote it (ping_server before the Welcome payload table, the counters,
# consent and the claim limits), with the SQL of that version.
_SCHEMA_V2 = """
CREATE TABLE ping_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE accounts (user_id {blob} PRIMARY KEY, public_key {blob} NOT NULL){norowid};
CREATE TABLE devices (
    device_id {blob} PRIMARY KEY, user_id {blob} NOT NULL, reg_seq BIGINT NOT NULL, signing_key {blob} NOT NULL,
    info {blob} NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, last_resort {blob},
    kp_next BIGINT NOT NULL DEFAULT 1, inbox_next BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX devices_by_user ON devices (user_id, reg_seq);
CREATE TABLE key_packages (device_id {blob} NOT NULL, n BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (device_id, n));
CREATE TABLE conversations (
    conversation_id {blob} PRIMARY KEY, next_seq BIGINT NOT NULL, epoch BIGINT, created_by {blob} NOT NULL,
    created_ms BIGINT NOT NULL
){norowid};
CREATE TABLE members (
    conversation_id {blob} NOT NULL, device_id {blob} NOT NULL, end_seq BIGINT, PRIMARY KEY (conversation_id, device_id)
){norowid};
CREATE INDEX members_by_device ON members (device_id);
CREATE TABLE messages (
    conversation_id {blob} NOT NULL, seq BIGINT NOT NULL, size BIGINT NOT NULL, envelope {blob} NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE welcomes (
    device_id {blob} NOT NULL, seq BIGINT NOT NULL, size BIGINT NOT NULL, envelope {blob} NOT NULL, PRIMARY KEY (device_id, seq)
);
CREATE TABLE nonces (
    ts_ms BIGINT NOT NULL, device_id {blob} NOT NULL, nonce {blob} NOT NULL, PRIMARY KEY (ts_ms, device_id, nonce)
){norowid};
INSERT INTO ping_meta (name, value) VALUES ('schema', '2');
INSERT INTO counters (name, value) VALUES ('device', 2)
"""


class _V2:
    """What a schema-2 server stored for: alice (device a) created conversation C, posted two
    messages and welcomed bob's device b (twice: two inbox rows, each with its own copy); b has
    two KeyPackages and a last-resort one; a nonce."""

    def __init__(self) -> None:
        from ping_core.clock import Hlc
        from ping_core.ids import ConversationId
        from ping_core.message import MessageEnvelope, MessageKind

        self.alice, self.bob = b"\xa1" * 32, b"\xb0" * 32
        self.a, self.b = b"\x0a" * 32, b"\x0b" * 32
        self.conv = ConversationId(b"\xcc" * 16)
        msgs = [MessageEnvelope(self.conv, 0, MessageKind.APPLICATION, DeviceId(self.a), s, Hlc(5, 0), b"m" * 40) for s in (1, 2)]
        self.messages = [m.encode() for m in msgs]
        self.welcomes = [
            MessageEnvelope(self.conv, 1, MessageKind.WELCOME, DeviceId(self.a), seq, Hlc(7, seq), b"w" * 300).encode() for seq in (1, 2)
        ]
        self.kps, self.last_resort = [b"k" * 100, b"K" * 120], b"L" * 90

    def rows(self) -> list[tuple[str, tuple[Any, ...]]]:
        out: list[tuple[str, tuple[Any, ...]]] = [
            ("INSERT INTO accounts (user_id, public_key) VALUES (?, ?)", (self.alice, b"pa")),
            ("INSERT INTO accounts (user_id, public_key) VALUES (?, ?)", (self.bob, b"pb")),
            ("INSERT INTO devices (device_id, user_id, reg_seq, signing_key, info) VALUES (?, ?, 1, ?, ?)", (self.a, self.alice, b"sa", b"ia")),
            (
                "INSERT INTO devices (device_id, user_id, reg_seq, signing_key, info, last_resort, kp_next, inbox_next)"
                " VALUES (?, ?, 2, ?, ?, ?, 3, 3)",
                (self.b, self.bob, b"sb", b"ib", self.last_resort),
            ),
            ("INSERT INTO conversations (conversation_id, next_seq, epoch, created_by, created_ms) VALUES (?, 3, NULL, ?, 1)", (self.conv.value, self.a)),
            ("INSERT INTO members (conversation_id, device_id, end_seq) VALUES (?, ?, NULL)", (self.conv.value, self.a)),
            ("INSERT INTO members (conversation_id, device_id, end_seq) VALUES (?, ?, NULL)", (self.conv.value, self.b)),
            ("INSERT INTO nonces (ts_ms, device_id, nonce) VALUES (1234, ?, ?)", (self.a, b"\x03" * 16)),
        ]
        for i, kp in enumerate(self.kps):
            out.append(("INSERT INTO key_packages (device_id, n, data) VALUES (?, ?, ?)", (self.b, i + 1, kp)))
        for seq, data in enumerate(self.messages, 1):
            out.append(("INSERT INTO messages (conversation_id, seq, size, envelope) VALUES (?, ?, ?, ?)", (self.conv.value, seq, len(data), data)))
        for seq, data in enumerate(self.welcomes, 1):
            out.append(("INSERT INTO welcomes (device_id, seq, size, envelope) VALUES (?, ?, ?, ?)", (self.b, seq, len(data), data)))
        return out


def _old_database(
    request: pytest.FixtureRequest, tmp_path: Path, version: str, schema: str, rows: list[tuple[str, tuple[Any, ...]]]
) -> Iterator[str]:
    """A database that ping_server's schema ``version`` made (its SQL ``schema``, then ``rows``), on
    SQLite or PostgreSQL as the fixture's parameter says: its path or URL (a PostgreSQL database
    of its own, dropped afterwards)."""
    if request.param == "sqlite":
        path = str(tmp_path / f"v{version}.sqlite")
        conn = sqlite3.connect(path)
        conn.executescript(schema.format(blob="BLOB", norowid=" WITHOUT ROWID"))
        for sql, params in rows:
            conn.execute(sql, params)
        conn.commit()
        conn.close()
        yield path
        return
    import psycopg

    url = request.getfixturevalue("postgres_db")
    name = f"ping_v{version}_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    target = urlunsplit(urlsplit(url)._replace(path="/" + name))
    try:
        with psycopg.connect(target, autocommit=True) as conn:
            for stmt in schema.format(blob="BYTEA", norowid="").split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            for sql, params in rows:
                conn.execute(sql.replace("?", "%s"), params)
        yield target
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def v2_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, _V2]]:
    """A database that ping_server's schema 2 made, with data, as a path or URL."""
    data = _V2()
    for url in _old_database(request, tmp_path, "2", _SCHEMA_V2, data.rows()):
        yield url, data


async def test_schema_2_is_migrated(v2_database: tuple[str, _V2]) -> None:
    """Opening a schema-2 database migrates it in place (through schema 3): each old inbox row becomes a
    payload of its own (charged to its sender's account) and the recipient reads exactly the
    Welcomes it had; the counters are filled from the data (conversation bytes, inbox count and
    bytes, KeyPackage bytes, the accounts' stored bytes: KeyPackages and Welcome payloads; log
    envelopes of schema 2 name no account). Acknowledging releases the payloads. A database of a
    newer schema is refused."""
    from ping_server import delivery
    from ping_server.delivery import Caller

    url, v2 = v2_database
    database = open_database(url)
    try:
        def read(tx: Tx) -> dict[str, Any]:
            def one(sql: str, *params: Any) -> Any:
                row = tx.one(sql, params)
                return None if row is None else row[0]

            return {
                "version": one("SELECT value FROM ping_meta WHERE name = 'schema'"),
                "payloads": int(one("SELECT COUNT(*) FROM welcome_payloads")),
                "conv_bytes": int(one("SELECT bytes FROM conversations WHERE conversation_id = ?", v2.conv.value)),
                "inbox": [int(v) for v in tx.query("SELECT inbox_count, inbox_bytes, kp_bytes FROM devices WHERE device_id = ?", (v2.b,))[0]],
                "alice": int(one("SELECT stored_bytes FROM accounts WHERE user_id = ?", v2.alice)),
                "bob": int(one("SELECT stored_bytes FROM accounts WHERE user_id = ?", v2.bob)),
                "consent": [int(r[0]) for r in tx.query("SELECT consent FROM members")],
                "nonces": int(one("SELECT COUNT(*) FROM nonces")),
                "welcomes": delivery.fetch_welcomes(tx, Caller(DeviceId(v2.b), UserId(v2.bob)), 0),
            }

        got = await database.run(read)
        assert got["version"] == SCHEMA_VERSION == "6"
        assert got["payloads"] == 2
        assert got["conv_bytes"] == sum(map(len, v2.messages))
        assert got["inbox"] == [2, sum(map(len, v2.welcomes)), sum(map(len, v2.kps))]
        assert got["alice"] == sum(map(len, v2.welcomes))  # her Welcome payloads
        assert got["bob"] == sum(map(len, v2.kps)) + len(v2.last_resort)
        assert got["consent"] == [1, 1] and got["nonces"] == 1
        assert got["welcomes"] == (v2.welcomes, False)  # byte for byte what schema 2 served
        bob_b = Caller(DeviceId(v2.b), UserId(v2.bob))
        await database.run(lambda tx: delivery.ack_welcomes(tx, bob_b, 2))
        left = await database.run(
            lambda tx: (tx.one("SELECT COUNT(*) FROM welcome_payloads"), tx.one("SELECT stored_bytes FROM accounts WHERE user_id = ?", (v2.alice,)))
        )
        assert (int(left[0][0]), int(left[1][0])) == (0, 0)
        await database.run(lambda tx: tx.execute("UPDATE ping_meta SET value = '7' WHERE name = 'schema'"))
    finally:
        await database.close()
    with pytest.raises(DatabaseUnavailable, match="schema 7"):
        open_database(url)


# The schema as version 3 wrote it (ping_server before kept revocation statements), with the SQL
# of that version.
_SCHEMA_V3 = """
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE accounts (
    user_id {blob} PRIMARY KEY, public_key {blob} NOT NULL, stored_bytes BIGINT NOT NULL DEFAULT 0
){norowid};
CREATE TABLE devices (
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
    kp_window_claims BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_user ON devices (user_id, reg_seq);
CREATE TABLE key_packages (
    device_id {blob} NOT NULL, n BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (device_id, n)
);
CREATE TABLE kp_claims (
    device_id {blob} NOT NULL, claimer {blob} NOT NULL, win BIGINT NOT NULL, n BIGINT NOT NULL,
    PRIMARY KEY (device_id, claimer)
){norowid};
CREATE TABLE conversations (
    conversation_id {blob} PRIMARY KEY,
    next_seq BIGINT NOT NULL,
    epoch BIGINT,
    created_by {blob} NOT NULL,
    created_ms BIGINT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0
){norowid};
CREATE TABLE members (
    conversation_id {blob} NOT NULL, device_id {blob} NOT NULL, end_seq BIGINT, consent INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (conversation_id, device_id)
){norowid};
CREATE INDEX members_by_device ON members (device_id);
CREATE TABLE messages (
    conversation_id {blob} NOT NULL, seq BIGINT NOT NULL, size BIGINT NOT NULL, envelope {blob} NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE welcome_payloads (
    id BIGINT PRIMARY KEY, sender_user {blob} NOT NULL, conversation_id {blob} NOT NULL, refs BIGINT NOT NULL,
    size BIGINT NOT NULL, envelope {blob} NOT NULL
);
CREATE TABLE welcomes (
    device_id {blob} NOT NULL, seq BIGINT NOT NULL, payload_id BIGINT NOT NULL, size BIGINT NOT NULL,
    conversation_id {blob} NOT NULL, stranger {blob},
    PRIMARY KEY (device_id, seq)
){norowid};
CREATE INDEX welcomes_by_stranger ON welcomes (device_id, stranger) WHERE stranger IS NOT NULL;
CREATE TABLE nonces (
    ts_ms BIGINT NOT NULL, device_id {blob} NOT NULL, nonce {blob} NOT NULL, PRIMARY KEY (ts_ms, device_id, nonce)
){norowid};

CREATE TABLE ping_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO ping_meta (name, value) VALUES ('schema', '3');
INSERT INTO counters (name, value) VALUES ('device', 2);
INSERT INTO counters (name, value) VALUES ('welcome', 0)
"""


class _V3:
    """What a schema-3 server stored for: alice's devices a (active) and r (revoked the old way,
    by any device of the account, no statement kept), with real keys."""

    def __init__(self) -> None:
        from ping_core.device import LocalDevice
        from ping_core.identity import Identity

        self.alice = Identity.generate()
        self.a = LocalDevice.generate(self.alice.user_id, "a", 1)
        self.r = LocalDevice.generate(self.alice.user_id, "r", 1)

    def rows(self) -> list[tuple[str, tuple[Any, ...]]]:
        out: list[tuple[str, tuple[Any, ...]]] = [
            ("INSERT INTO accounts (user_id, public_key, stored_bytes) VALUES (?, ?, 0)", (self.alice.user_id.value, self.alice.public_key)),
        ]
        for n, (dev, revoked) in enumerate(((self.a, 0), (self.r, 1)), 1):
            out.append(
                (
                    "INSERT INTO devices (device_id, user_id, reg_seq, signing_key, info, revoked) VALUES (?, ?, ?, ?, ?, ?)",
                    (dev.device_id.value, self.alice.user_id.value, n, dev.info(1).signing_public_key, dev.info(1).encode(), revoked),
                )
            )
        return out


@pytest.fixture(params=["sqlite", "postgres"])
def v3_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, _V3]]:
    """A database that ping_server's schema 3 made, with data, as a path or URL."""
    data = _V3()
    for url in _old_database(request, tmp_path, "3", _SCHEMA_V3, data.rows()):
        yield url, data


async def test_schema_3_is_migrated(v3_database: tuple[str, _V3]) -> None:
    """Opening a schema-3 database migrates it in place (through schema 4): devices gain the kept
    revocation statement (none for the ones revoked before: they stay revoked, refused with
    ``device_revoked``, and never listed); the account's statement can then be kept for such a
    device (revoking it again succeeds) and is listed."""
    from ping_server import delivery
    from ping_server.app import ApiError
    from ping_server.delivery import Caller

    url, v3 = v3_database
    database = open_database(url)
    a = Caller(v3.a.device_id, v3.alice.user_id)
    try:
        def read(tx: Tx) -> tuple[Any, ...]:
            version = tx.one("SELECT value FROM ping_meta WHERE name = 'schema'")
            rows = tx.query("SELECT revoked, revocation, revocation_seq FROM devices ORDER BY reg_seq")
            return version, [(int(r[0]), r[1], r[2]) for r in rows], delivery.list_revocations(tx, a, v3.alice.user_id)

        version, rows, listed = await database.run(read)
        assert version == (SCHEMA_VERSION,)
        assert rows == [(0, None, None), (1, None, None)] and listed == []

        def as_revoked(tx: Tx) -> str:
            try:
                delivery.authenticate(tx, v3.r.device_id, b"\x01" * 16, 1)
            except ApiError as exc:
                return f"{exc.status} {exc.code}"
            return "accepted"

        assert await database.run(as_revoked) == "403 device_revoked"
        statement = v3.alice.revoke(v3.r.device_id)
        await database.run(lambda tx: delivery.revoke(tx, a, v3.r.device_id, statement))
        stored = await database.run(lambda tx: delivery.list_revocations(tx, a, v3.alice.user_id))
        assert stored == [statement.encode()]
    finally:
        await database.close()
    again = open_database(url)  # opening a migrated database changes nothing
    await again.close()


# The schema as version 4 wrote it (ping_server before verified conversations), with its SQL.
_SCHEMA_V4 = """
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE accounts (
    user_id {blob} PRIMARY KEY, public_key {blob} NOT NULL, stored_bytes BIGINT NOT NULL DEFAULT 0
){norowid};
CREATE TABLE devices (
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
CREATE INDEX devices_by_user ON devices (user_id, reg_seq);
CREATE INDEX devices_revocations ON devices (user_id, revocation_seq) WHERE revocation IS NOT NULL;
CREATE TABLE key_packages (
    device_id {blob} NOT NULL, n BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (device_id, n)
);
CREATE TABLE kp_claims (
    device_id {blob} NOT NULL, claimer {blob} NOT NULL, win BIGINT NOT NULL, n BIGINT NOT NULL,
    PRIMARY KEY (device_id, claimer)
){norowid};
CREATE TABLE conversations (
    conversation_id {blob} PRIMARY KEY,
    next_seq BIGINT NOT NULL,
    epoch BIGINT,
    created_by {blob} NOT NULL,
    created_ms BIGINT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0
){norowid};
CREATE TABLE members (
    conversation_id {blob} NOT NULL, device_id {blob} NOT NULL, end_seq BIGINT, consent INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (conversation_id, device_id)
){norowid};
CREATE INDEX members_by_device ON members (device_id);
CREATE TABLE messages (
    conversation_id {blob} NOT NULL, seq BIGINT NOT NULL, size BIGINT NOT NULL, envelope {blob} NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE welcome_payloads (
    id BIGINT PRIMARY KEY, sender_user {blob} NOT NULL, conversation_id {blob} NOT NULL, refs BIGINT NOT NULL,
    size BIGINT NOT NULL, envelope {blob} NOT NULL
);
CREATE TABLE welcomes (
    device_id {blob} NOT NULL, seq BIGINT NOT NULL, payload_id BIGINT NOT NULL, size BIGINT NOT NULL,
    conversation_id {blob} NOT NULL, stranger {blob},
    PRIMARY KEY (device_id, seq)
){norowid};
CREATE INDEX welcomes_by_stranger ON welcomes (device_id, stranger) WHERE stranger IS NOT NULL;
CREATE TABLE nonces (
    ts_ms BIGINT NOT NULL, device_id {blob} NOT NULL, nonce {blob} NOT NULL, PRIMARY KEY (ts_ms, device_id, nonce)
){norowid};
CREATE TABLE ping_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO ping_meta (name, value) VALUES ('schema', '4');
INSERT INTO counters (name, value) VALUES ('device', 1);
INSERT INTO counters (name, value) VALUES ('welcome', 0);
INSERT INTO counters (name, value) VALUES ('revocation', 0)
"""


@pytest.fixture(params=["sqlite", "postgres"])
def v4_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, _V3]]:
    """A database that ping_server's schema 4 made (alice's devices as in schema 3, a conversation
    of device a at epoch 3), as a path or URL."""
    data = _V3()
    rows = [*data.rows(), (
        "INSERT INTO conversations (conversation_id, next_seq, epoch, created_by, created_ms) VALUES (?, 1, 3, ?, 1)",
        (b"\xcc" * 16, data.a.device_id.value),
    ), ("INSERT INTO members (conversation_id, device_id) VALUES (?, ?)", (b"\xcc" * 16, data.a.device_id.value))]
    for url in _old_database(request, tmp_path, "4", _SCHEMA_V4, rows):
        yield url, data


async def test_schema_4_is_migrated(v4_database: tuple[str, _V3]) -> None:
    """Opening a schema-4 database migrates it in place (to schema 6 now): the ``public_groups`` table
    is created, empty; a conversation of before is not verified (its Commits keep the routing
    rules: one without a GroupInfo is accepted at its epoch) and has no GroupInfo."""
    from ping_core.clock import Hlc
    from ping_core.ids import ConversationId
    from ping_core.message import MessageEnvelope, MessageKind
    from ping_core.transport.base import DeliveryLimits
    from ping_server import delivery
    from ping_server.delivery import Caller

    url, v4 = v4_database
    conv = ConversationId(b"\xcc" * 16)
    a = Caller(v4.a.device_id, v4.alice.user_id)
    database = open_database(url)
    try:
        version = await database.run(lambda tx: tx.one("SELECT value FROM ping_meta WHERE name = 'schema'"))
        assert version == (SCHEMA_VERSION,) == ("6",)
        assert await database.run(lambda tx: tx.one("SELECT COUNT(*) FROM public_groups")) == (0,)
        assert await database.run(lambda tx: delivery.group_info(tx, a, conv)) is None
        env = MessageEnvelope(conv, 3, MessageKind.COMMIT, v4.a.device_id, 0, Hlc(1, 0), b"opaque commit")
        assert await database.run(lambda tx: delivery.append(tx, a, env, [], 1, DeliveryLimits())) == 1
    finally:
        await database.close()
    again = open_database(url)
    await again.close()


# The tables of schema 5 as that version's code created them (ping_server before Web Push).
_TABLES_V5 = """
CREATE TABLE ping_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
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
"""

# What schema 6 (Web Push) added to them, as its code created them.
_TABLES_V6_PUSH = """
CREATE TABLE IF NOT EXISTS push_subscriptions (
    device_id {blob} NOT NULL, endpoint TEXT NOT NULL, p256dh {blob} NOT NULL, auth {blob} NOT NULL, created_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, endpoint)
);
CREATE TABLE IF NOT EXISTS push_keys (name TEXT PRIMARY KEY, private_key {blob} NOT NULL);
"""


def _meta(version: str) -> str:
    """The rows the code of schema ``version`` (5 or 6) wrote when it created a database."""
    return f"""
INSERT INTO ping_meta (name, value) VALUES ('schema', '{version}');
INSERT INTO counters (name, value) VALUES ('device', 2);
INSERT INTO counters (name, value) VALUES ('welcome', 0);
INSERT INTO counters (name, value) VALUES ('revocation', 0)
"""


_SCHEMA_V5 = _TABLES_V5 + _meta("5")
_SCHEMA_V6 = _TABLES_V5 + _TABLES_V6_PUSH + _meta("6")
_CONV = b"\xcc" * 16
_ENDPOINT = "https://push.example/send/abc"


def _v5_rows(data: _V3) -> list[tuple[str, tuple[Any, ...]]]:
    """Schema-5 data: alice's devices as in schema 3, a verified conversation of device a with one
    message in its log."""
    a = data.a.device_id.value
    return [
        *data.rows(),
        ("INSERT INTO conversations (conversation_id, next_seq, epoch, created_by, created_ms, bytes) VALUES (?, 2, 1, ?, 1, 7)", (_CONV, a)),
        ("INSERT INTO members (conversation_id, device_id) VALUES (?, ?)", (_CONV, a)),
        ("INSERT INTO messages (conversation_id, seq, size, envelope) VALUES (?, 1, 7, ?)", (_CONV, b"stored!")),
        ("INSERT INTO public_groups (conversation_id, epoch, state, group_info, welcome_to) VALUES (?, 1, ?, ?, ?)", (_CONV, b"st", b"gi", a)),
    ]


def _v6_rows(data: _V3) -> list[tuple[str, tuple[Any, ...]]]:
    """Schema-6 data: that of schema 5, device a's push subscription and the server's VAPID key."""
    return [
        *_v5_rows(data),
        (
            "INSERT INTO push_subscriptions (device_id, endpoint, p256dh, auth, created_ms) VALUES (?, ?, ?, ?, 5)",
            (data.a.device_id.value, _ENDPOINT, b"\x04" * 65, b"\x01" * 16),
        ),
        ("INSERT INTO push_keys (name, private_key) VALUES ('vapid', ?)", (b"\x02" * 32,)),
    ]


@pytest.fixture(params=["sqlite", "postgres"])
def v5_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, _V3, str]]:
    """A database that ping_server's schema 5 made, with data, and an empty one on the same engine
    (the current code creates its schema when it opens it), as paths or URLs."""
    data = _V3()
    for url in _old_database(request, tmp_path, "5", _SCHEMA_V5, _v5_rows(data)):
        for fresh in _old_database(request, tmp_path, "new", "", []):
            yield url, data, fresh


@pytest.fixture(params=["sqlite", "postgres"])
def v6_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, _V3, str]]:
    """A database that ping_server's schema 6 made, with data, and an empty one on the same engine."""
    data = _V3()
    for url in _old_database(request, tmp_path, "6", _SCHEMA_V6, _v6_rows(data)):
        for fresh in _old_database(request, tmp_path, "new", "", []):
            yield url, data, fresh


def _layout(tx: Tx) -> dict[str, Any]:
    """The schema as the engine's catalog describes it: each table's columns (name, type, NOT NULL,
    default, primary key position) in order, and each index's definition."""
    if tx.dialect.name == "sqlite":
        tables = [str(r[0]) for r in tx.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        indexes = tx.query("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
        # A table's own SQL tells WITHOUT ROWID; the IF NOT EXISTS of the creating code is not kept in the catalog's meaning.
        sql = {str(n): str(s).replace("IF NOT EXISTS ", "") for n, s in tx.query("SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
        return {
            "tables": {t: (tx.query(f"PRAGMA table_info({t})"), sql[t].rstrip().endswith("WITHOUT ROWID")) for t in tables},
            "indexes": [(str(n), str(s).replace("IF NOT EXISTS ", "")) for n, s in indexes],
        }
    columns = tx.query(
        "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
    )
    return {
        "tables": [tuple(r) for r in columns],
        "indexes": tx.query("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname"),
    }


async def _layout_of(url: str) -> dict[str, Any]:
    database = open_database(url)
    try:
        return await database.run(_layout)
    finally:
        await database.close()


def test_migrations_form_one_chain_to_the_current_schema() -> None:
    """Each migration starts where the one before ends, from schema 1 up to SCHEMA_VERSION: every
    older database has exactly one path, and a new schema version cannot be added without one."""
    from ping_server.db import MIGRATIONS

    assert [m.source for m in MIGRATIONS] == [str(v) for v in range(1, int(SCHEMA_VERSION))]
    assert [m.target for m in MIGRATIONS] == [str(v) for v in range(2, int(SCHEMA_VERSION) + 1)]


async def test_schema_5_is_migrated_on_both_engines(v5_database: tuple[str, _V3, str]) -> None:
    """Opening a schema-5 database migrates it in place to schema 6: the push tables are created,
    empty; the data is untouched (the log, the verified conversation, the devices); the result has
    exactly the layout of a database the current code creates."""
    from ping_server import delivery, pushstore
    from ping_server.delivery import Caller

    url, v5, fresh = v5_database
    a = Caller(v5.a.device_id, v5.alice.user_id)
    database = open_database(url)
    try:
        assert await database.run(lambda tx: tx.one("SELECT value FROM ping_meta WHERE name = 'schema'")) == (SCHEMA_VERSION,) == ("6",)
        assert await database.run(lambda tx: tx.query("SELECT COUNT(*) FROM push_subscriptions UNION ALL SELECT COUNT(*) FROM push_keys")) == [(0,), (0,)]
        assert await database.run(lambda tx: pushstore.list_subscriptions(tx, v5.a.device_id)) == []
        assert await database.run(lambda tx: delivery.fetch(tx, a, ConversationId(_CONV), 0, 10)) == ([b"stored!"], False)
        assert await database.run(lambda tx: delivery.group_info(tx, a, ConversationId(_CONV))) == b"gi"
        assert await database.run(lambda tx: delivery.list_devices(tx, a, v5.alice.user_id)) == [v5.a.info(1).encode()]  # r is revoked
    finally:
        await database.close()
    assert await _layout_of(url) == await _layout_of(fresh)


async def test_schema_6_opens_unchanged_on_both_engines(v6_database: tuple[str, _V3, str]) -> None:
    """A schema-6 database made by the code of that version opens as it is: nothing migrated, its
    push subscription and VAPID key kept (a fresh key is not stored over it), the same layout as a
    database the current code creates (its DDL matches the copy above, so a change of the schema
    without a new version and a migration fails here)."""
    from ping_server import delivery, pushstore
    from ping_server.delivery import Caller

    url, v6, fresh = v6_database
    a = Caller(v6.a.device_id, v6.alice.user_id)
    database = open_database(url)
    try:
        assert await database.run(lambda tx: tx.one("SELECT value FROM ping_meta WHERE name = 'schema'")) == ("6",)
        subs = await database.run(lambda tx: pushstore.subscriptions_of(tx, v6.a.device_id))
        assert [(s.endpoint, s.p256dh, s.auth) for s in subs] == [(_ENDPOINT, b"\x04" * 65, b"\x01" * 16)]
        assert await database.run(lambda tx: pushstore.load_or_store_key(tx, "vapid", b"\x09" * 32)) == b"\x02" * 32
        assert await database.run(lambda tx: delivery.fetch(tx, a, ConversationId(_CONV), 0, 10)) == ([b"stored!"], False)
        counters = await database.run(lambda tx: tx.query("SELECT name, value FROM counters ORDER BY name"))
        assert [(str(n), int(v)) for n, v in counters] == [("device", 2), ("revocation", 0), ("welcome", 0)]
    finally:
        await database.close()
    assert await _layout_of(url) == await _layout_of(fresh)


def test_package_exports_what_its_users_import() -> None:
    """``ping_server.db`` lists in ``__all__`` every name ping_server, the tests and the benchmarks
    import from it (the package split kept them), and each is the engine module's own object."""
    import ping_server.db as db
    from ping_server.db import common, postgres, schema, sqlite

    used = {"Database", "Tx", "Dialect", "DatabaseUnavailable", "SqliteDatabase", "PostgresDatabase", "open_database", "SCHEMA_VERSION"}
    assert used <= set(db.__all__)
    assert all(hasattr(db, name) for name in db.__all__)
    assert (db.SqliteDatabase, db.PostgresDatabase, db.Tx, db.SCHEMA_VERSION) == (
        sqlite.SqliteDatabase, postgres.PostgresDatabase, common.Tx, schema.SCHEMA_VERSION
    )
