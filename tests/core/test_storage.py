"""ping_core.storage: Storage, blob stores (memory, encrypted SQLite), MlsStateStore, StorageBackend."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ping_core.errors import InvalidInput, StorageError
from ping_core.storage import (
    BlobStorage,
    BlobStore,
    BulkBlobStore,
    CheckpointStats,
    MemoryBlobStore,
    MemoryStorage,
    MlsStateStore,
    SqliteBlobStore,
    Storage,
    StorageBackend,
    open_blob_store,
    register_indexeddb_opener,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture(params=["memory", "sqlite"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryBlobStore()
    else:
        store = SqliteBlobStore.open(tmp_path / "s.db", KEY)
        yield store
        store.close()


# -- Storage (namespaced KV) -------------------------------------------------


@pytest.fixture(params=["memory", "blob-memory", "blob-sqlite"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        yield MemoryStorage()
    elif request.param == "blob-memory":
        yield BlobStorage(MemoryBlobStore())
    else:
        store = SqliteBlobStore.open(tmp_path / "kv.db", KEY)
        yield BlobStorage(store)
        store.close()


async def test_storage_contract(kv: Storage) -> None:
    assert isinstance(kv, Storage)
    assert await kv.get("device", "local") is None
    await kv.put("device", "local", b"dev")
    await kv.put("groups", "a/meta", b"m1")
    await kv.put("groups", "a/cursor", b"c1")
    await kv.put("groups", "b/meta", bytearray(b"m2"))  # type: ignore[arg-type]
    assert await kv.get("device", "local") == b"dev"
    assert await kv.get("groups", "b/meta") == b"m2"
    assert await kv.list_keys("groups", "") == ["a/cursor", "a/meta", "b/meta"]
    assert await kv.list_keys("groups", "a/") == ["a/cursor", "a/meta"]
    assert await kv.list_keys("device", "") == ["local"]
    assert await kv.list_keys("cursors", "") == []
    await kv.put("groups", "a/meta", b"m1'")
    assert await kv.get("groups", "a/meta") == b"m1'"
    await kv.delete("groups", "a/meta")
    await kv.delete("groups", "never")
    assert await kv.get("groups", "a/meta") is None
    for bad_ns in ["", "a/b", 5]:
        with pytest.raises(InvalidInput):
            await kv.put(bad_ns, "k", b"v")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await kv.put("ns", "k", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await kv.get("ns", 3)  # type: ignore[arg-type]


# -- BlobStore ---------------------------------------------------------------


async def test_blob_store_contract(blobs: Any) -> None:
    assert isinstance(blobs, BlobStore) and isinstance(blobs, BulkBlobStore)
    await blobs.commit({"g/1/a": b"1", "g/1/b": b"2", "g/2/a": b"3", "h": b""}, [])
    assert await blobs.get("g/1/a") == b"1" and await blobs.get("h") == b"" and await blobs.get("x") is None
    assert await blobs.list("g/1/") == ["g/1/a", "g/1/b"]
    assert await blobs.list("") == ["g/1/a", "g/1/b", "g/2/a", "h"]
    assert await blobs.items("g/") == [("g/1/a", b"1"), ("g/1/b", b"2"), ("g/2/a", b"3")]
    # deletes apply before puts; absent deletes are fine
    await blobs.commit({"g/1/a": b"new"}, ["g/1/a", "g/1/b", "nope"])
    assert await blobs.items("g/1/") == [("g/1/a", b"new")]
    await blobs.commit({}, [])
    # a bad argument writes nothing
    with pytest.raises(InvalidInput):
        await blobs.commit({"ok": b"1", "bad": "str"}, [])  # type: ignore[dict-item]
    with pytest.raises(InvalidInput):
        await blobs.commit({"ok": b"1", 7: b"x"}, [])  # type: ignore[dict-item]
    assert await blobs.get("ok") is None


async def test_blob_store_prefix_edges(blobs: Any) -> None:
    keys = ["a", "a\x00", "a\x7f", "a\u00ff", "a\ud7ff", "a\ue000", "a\U0010ffff", "a\U0010ffffz", "b", "\U0010ffff"]
    await blobs.commit({k: k.encode("utf-8") for k in keys}, [])
    assert await blobs.list("a") == sorted(k for k in keys if k.startswith("a"))
    assert await blobs.list("a\U0010ffff") == ["a\U0010ffff", "a\U0010ffffz"]
    assert await blobs.list("\U0010ffff") == ["\U0010ffff"]
    assert await blobs.list("a\ud7ff") == ["a\ud7ff"]
    assert [k for k, _ in await blobs.items("")] == sorted(keys)


@settings(max_examples=40)
@given(keys=st.lists(st.text(min_size=0, max_size=6), max_size=12, unique=True), prefix=st.text(max_size=2))
def test_blob_store_listing_matches_model(tmp_path_factory: pytest.TempPathFactory, keys: list[str], prefix: str) -> None:
    keys = [k for k in keys if not any("\ud800" <= c <= "\udfff" for c in k)]
    if any("\ud800" <= c <= "\udfff" for c in prefix):
        return

    async def run() -> None:
        path = tmp_path_factory.mktemp("m") / "x.db"
        for store in (MemoryBlobStore(), SqliteBlobStore.open(path, KEY, synchronous="NORMAL")):
            await store.commit({k: k.encode() for k in keys}, [])
            expected = sorted(k for k in keys if k.startswith(prefix))
            assert await store.list(prefix) == expected
            assert [v for _, v in await store.items(prefix)] == [k.encode() for k in expected]

    asyncio.run(run())


# -- encrypted SQLite --------------------------------------------------------


async def test_sqlite_persists_and_encrypts(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SqliteBlobStore.open(path, KEY)
    await store.commit({"conv/1/state": b"very secret ratchet state"}, [])
    store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    raw = sqlite3.connect(path).execute("SELECT value FROM records").fetchall()
    assert raw and all(b"very secret" not in r[0] for r in raw)
    assert b"very secret" not in path.read_bytes()
    again = SqliteBlobStore.open(path, KEY)  # a new session (new salt) reads the old one's records
    assert await again.get("conv/1/state") == b"very secret ratchet state"
    await again.commit({"conv/1/state": b"v2"}, [])
    assert await again.items("") == [("conv/1/state", b"v2")]
    assert "p.db" in repr(again) and KEY.hex() not in repr(again)
    again.close()
    again.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        await again.get("conv/1/state")


def _raw_files(path: Path) -> bytes:
    """The bytes of the database file and of its WAL (as another process would find them)."""
    wal = Path(str(path) + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def test_sqlite_deleted_records_leave_no_trace_in_the_files(tmp_path: Path) -> None:
    """A deleted record (e.g. a used KeyPackage's private keys) is gone from the raw bytes of the
    database file and its WAL once the commit that deleted it returns: ``secure_delete`` zeroes
    the cell, and the WAL, which still held the page images with it, is checkpointed and
    truncated. Records are sealed, so the test looks for the record's stored ciphertext."""
    path = tmp_path / "secure.db"
    store = SqliteBlobStore.open(path, KEY)
    secret_key = "kp/0123/private"
    await store.commit({secret_key: os.urandom(600), "c/1/state": b"kept" * 50}, [])
    await store.commit({f"c/1/other{i}": os.urandom(100) for i in range(20)}, [])
    sealed = sqlite3.connect(path).execute("SELECT value FROM records WHERE key = ?", (secret_key.encode(),)).fetchone()[0]
    assert len(sealed) > 600 and sealed in _raw_files(path)  # the marker is findable before the deletion
    await store.commit({"c/1/state": b"still here"}, [secret_key])
    raw = _raw_files(path)
    assert sealed not in raw
    assert sealed[100:132] not in raw  # not even a piece of it
    assert await store.get(secret_key) is None and await store.get("c/1/state") == b"still here"
    # Commits without deletions do not checkpoint: the WAL keeps growing until SQLite's own checkpoint.
    await store.commit({"c/1/state": b"again"}, [])
    assert Path(str(path) + "-wal").stat().st_size > 0
    store.close()
    reopened = SqliteBlobStore.open(path, KEY)
    assert await reopened.get("c/1/state") == b"again" and await reopened.get(secret_key) is None
    reopened.close()


async def test_sqlite_wrong_key_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = SqliteBlobStore.open(path, KEY)
    await store.commit({"k": b"v"}, [])
    store.close()
    with pytest.raises(StorageError, match="wrong encryption key"):
        SqliteBlobStore.open(path, OTHER_KEY)
    with pytest.raises(InvalidInput):
        SqliteBlobStore.open(path, KEY[:31])
    with pytest.raises(InvalidInput):
        SqliteBlobStore.open(path, KEY, synchronous="OFF")


async def test_sqlite_tampering_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteBlobStore.open(path, KEY)
    await store.commit({"a": b"value-a", "b": b"value-b"}, [])
    conn = sqlite3.connect(path)
    va = conn.execute("SELECT value FROM records WHERE key = ?", (b"a",)).fetchone()[0]
    # Move a's sealed value under b: the AAD binds it to its key.
    conn.execute("UPDATE records SET value = ? WHERE key = ?", (va, b"b"))
    conn.commit()
    with pytest.raises(StorageError, match="'b' does not decrypt"):
        await store.get("b")
    flipped = va[:-1] + bytes([va[-1] ^ 1])
    conn.execute("UPDATE records SET value = ? WHERE key = ?", (flipped, b"a"))
    conn.commit()
    with pytest.raises(StorageError, match="'a' does not decrypt"):
        await store.get("a")
    with pytest.raises(StorageError):
        await store.items("")
    conn.execute("UPDATE records SET value = ? WHERE key = ?", (b"\x01short", b"a"))
    conn.commit()
    with pytest.raises(StorageError, match="malformed"):
        await store.get("a")
    conn.close()
    store.close()


@settings(max_examples=60)
@given(garbage=st.binary(max_size=80))
def test_sqlite_garbage_values_raise_storage_error(tmp_path_factory: pytest.TempPathFactory, garbage: bytes) -> None:
    path = tmp_path_factory.mktemp("g") / "g.db"
    store = SqliteBlobStore.open(path, KEY, synchronous="NORMAL")
    store._connection().execute("INSERT INTO records(key, value) VALUES (?, ?)", (b"k", garbage))
    with pytest.raises(StorageError):
        asyncio.run(store.get("k"))
    store.close()


async def test_sqlite_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError):
        SqliteBlobStore.open(junk, KEY)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('format', x'00')")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="not a ping-blobs-1 store"):
        SqliteBlobStore.open(other, KEY)
    with pytest.raises(StorageError):
        SqliteBlobStore.open(tmp_path / "no" / "such" / "dir.db", KEY)


async def test_sqlite_commit_is_atomic(tmp_path: Path) -> None:
    store = SqliteBlobStore.open(tmp_path / "a.db", KEY)
    await store.commit({"keep": b"old"}, [])
    # Make the insert of one record fail inside the transaction.
    store._connection().execute(
        "CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.key = CAST('poison' AS BLOB) "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    with pytest.raises(StorageError, match="write failed"):
        await store.commit({"keep": b"new", "extra": b"x", "poison": b"p"}, ["keep"])
    assert await store.items("") == [("keep", b"old")]
    await store.commit({"keep": b"new"}, [])  # the connection is usable afterwards
    assert await store.get("keep") == b"new"
    store.close()


# -- MlsStateStore -------------------------------------------------------------


async def test_state_store_checkpoints_only_changes(blobs: Any) -> None:
    state = MlsStateStore(blobs)
    for i in range(1000):
        state.put(f"g/{i:04d}/tree", b"T" * 100)
    stats = await state.checkpoint()
    assert stats == CheckpointStats(1000, 0, 100_000)
    assert await state.checkpoint() == CheckpointStats()
    state.put("g/0007/tree", b"T" * 100)  # unchanged value: nothing to write
    assert state.pending == 0
    state.put("g/0007/ratchet", b"r1")
    state.put("g/0007/ratchet", b"r2")
    assert await state.checkpoint() == CheckpointStats(1, 0, 2)
    state.delete("g/0008/tree")
    state.delete("g/absent")
    assert await state.checkpoint() == CheckpointStats(0, 1, 0)
    reloaded = await MlsStateStore.open(blobs)
    assert reloaded.items() == state.items() and len(reloaded) == 1000
    assert reloaded.get("g/0007/ratchet") == b"r2" and "g/0008/tree" not in reloaded


async def test_state_store_prefix_ops_and_rollback() -> None:
    blobs = MemoryBlobStore()
    state = MlsStateStore(blobs)
    state.put_many([("a/1", b"1"), ("a/2", b"2"), ("b/1", b"3")])
    await state.checkpoint()
    assert state.keys("a/") == ["a/1", "a/2"] and state.items("b/") == [("b/1", b"3")]
    state.put("a/1", b"changed")
    state.put("c/new", b"n")
    assert state.delete_prefix("b/") == 1
    assert state.pending == 3
    state.rollback()
    assert state.items() == [("a/1", b"1"), ("a/2", b"2"), ("b/1", b"3")] and state.pending == 0
    with pytest.raises(InvalidInput):
        state.put_many([("ok", b"1"), ("bad", "x")])  # type: ignore[list-item]
    assert state.get("ok") is None
    state.import_entries([("d/1", b"x")])
    assert state.get("d/1") == b"x"


async def test_state_store_failed_checkpoint_keeps_changes() -> None:
    blobs = MemoryBlobStore()
    state = MlsStateStore(blobs)
    state.put("k", b"1")
    await state.checkpoint()
    state.put("k", b"2")
    state.put("j", b"3")
    blobs.fail_next_commits = 1
    with pytest.raises(StorageError):
        await state.checkpoint()
    assert state.pending == 2 and blobs.snapshot() == {"k": b"1"}
    state.rollback()  # rollback after a failed checkpoint goes back to the last durable state
    assert state.items() == [("k", b"1")]
    state.put("k", b"2")
    blobs.fail_next_commits = 1
    with pytest.raises(StorageError):
        await state.checkpoint()
    assert await state.checkpoint() == CheckpointStats(1, 0, 1)
    assert blobs.snapshot() == {"k": b"2"}


class _SlowStore:
    """A minimal custom blob store (no ``items``) whose commit waits for a signal."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail: BaseException | None = None

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def list(self, prefix: str) -> list[str]:
        return sorted(k for k in self.data if k.startswith(prefix))

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str]) -> None:
        puts, deletes = dict(puts), list(deletes)
        self.entered.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        for k in deletes:
            self.data.pop(k, None)
        self.data.update(puts)


async def test_state_store_changes_during_checkpoint_stay_pending() -> None:
    store = _SlowStore()
    assert isinstance(store, BlobStore) and not isinstance(store, BulkBlobStore)
    state = MlsStateStore(store)
    state.put("a", b"1")
    task = asyncio.create_task(state.checkpoint())
    await store.entered.wait()
    state.put("a", b"2")  # changed while the commit is in flight
    state.put("b", b"x")
    store.gate.set()
    assert await task == CheckpointStats(1, 0, 1)
    assert store.data == {"a": b"1"} and state.pending == 2
    await state.checkpoint()
    assert store.data == {"a": b"2", "b": b"x"}
    reopened = await MlsStateStore.open(store)  # the list+get path
    assert reopened.items() == [("a", b"2"), ("b", b"x")]


async def test_state_store_failure_during_concurrent_change_rolls_back_to_disk() -> None:
    store = _SlowStore()
    state = MlsStateStore(store)
    state.put("a", b"1")
    task = asyncio.create_task(state.checkpoint())
    await store.entered.wait()
    state.put("a", b"2")
    store.fail = RuntimeError("disk on fire")
    store.gate.set()
    with pytest.raises(StorageError, match="disk on fire"):
        await task
    assert state.pending == 1
    state.rollback()
    assert state.items() == []  # nothing ever reached the store


async def test_state_store_open_wraps_foreign_errors() -> None:
    class Broken(_SlowStore):
        async def list(self, prefix: str) -> list[str]:
            raise OSError("gone")

    with pytest.raises(StorageError, match="gone"):
        await MlsStateStore.open(Broken())


@settings(max_examples=60)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.sampled_from("abcde"), st.binary(max_size=3)),
            st.tuples(st.just("delete"), st.sampled_from("abcde"), st.just(b"")),
            st.tuples(st.just("checkpoint"), st.just(""), st.just(b"")),
            st.tuples(st.just("failing_checkpoint"), st.just(""), st.just(b"")),
            st.tuples(st.just("rollback"), st.just(""), st.just(b"")),
        ),
        max_size=30,
    )
)
def test_state_store_model(ops: list[tuple[str, str, bytes]]) -> None:
    """After any sequence, the blob store holds the working set of the last successful checkpoint."""

    async def run() -> None:
        blobs = MemoryBlobStore()
        state = MlsStateStore(blobs)
        durable: dict[str, bytes] = {}
        for op, key, value in ops:
            if op == "put":
                state.put(key, value)
            elif op == "delete":
                state.delete(key)
            elif op == "checkpoint":
                await state.checkpoint()
                durable = dict(state.items())
            elif op == "failing_checkpoint":
                blobs.fail_next_commits = 1
                if state.pending:
                    with pytest.raises(StorageError):
                        await state.checkpoint()
                blobs.fail_next_commits = 0
            else:
                state.rollback()
                assert dict(state.items()) == durable
            assert blobs.snapshot() == durable
        reopened = await MlsStateStore.open(blobs)
        assert dict(reopened.items()) == durable

    asyncio.run(run())


# -- StorageBackend ------------------------------------------------------------


async def test_backends(tmp_path: Path) -> None:
    mem = await open_blob_store(StorageBackend.Memory())
    assert isinstance(mem, MemoryBlobStore)
    sq_backend = StorageBackend.Sqlite(str(tmp_path / "b.db"), KEY)
    assert KEY.hex() not in repr(sq_backend) and str(KEY) not in repr(sq_backend)
    sq = await open_blob_store(sq_backend)
    assert isinstance(sq, SqliteBlobStore)
    sq.close()
    with pytest.raises(InvalidInput):
        StorageBackend.Sqlite("x.db", b"short")
    custom = MemoryBlobStore()
    assert await open_blob_store(StorageBackend.Custom(custom)) is custom
    assert await open_blob_store(custom) is custom
    with pytest.raises(InvalidInput):
        StorageBackend.Custom(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await open_blob_store("memory")  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="IndexedDB"):
        await open_blob_store(StorageBackend.IndexedDb("ping"))
    opened: list[str] = []

    async def opener(name: str) -> BlobStore:
        opened.append(name)
        return custom

    register_indexeddb_opener(opener)
    try:
        assert await open_blob_store(StorageBackend.IndexedDb("ping-db")) is custom and opened == ["ping-db"]
    finally:
        register_indexeddb_opener(None)
    state = await MlsStateStore.open(await open_blob_store(StorageBackend.Memory()))
    assert len(state) == 0
    path_backend = StorageBackend.Sqlite(tmp_path / "c.db", KEY)  # type: ignore[arg-type]
    assert path_backend.path == str(tmp_path / "c.db")
    state = await MlsStateStore.open_backend(path_backend)
    state.put("k", b"v")
    await state.checkpoint()
    state.blob_store.close()  # type: ignore[attr-defined]
    again = await MlsStateStore.open_backend(path_backend)
    assert again.items() == [("k", b"v")]
    again.blob_store.close()  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput):
        StorageBackend.Sqlite("", KEY)
