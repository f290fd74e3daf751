"""ping_server.db: one transaction per call on both engines; SQLite group commit keeps each call atomic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ping_server.db import Database, DatabaseUnavailable, PostgresDatabase, SqliteDatabase, Tx


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
        with pytest.raises(Boom):
            with tx.savepoint():
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
