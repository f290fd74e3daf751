"""The cost of a long-polling watch does not grow with conversations that do not exist: each
re-read is two queries whatever the number of named conversations, and conversations that do not
exist are not re-read at all until a wake-up names them. Counted through a counting wrapper
around the server's database, in-process (no timing asserts)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.identity import Identity
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.transport.http import HttpTransport
from ping_server.api import ApiConfig
from ping_server.db import Database, Tx
from ping_server.service import build_app

_T = TypeVar("_T")


class CountingTx:
    """A Tx that counts the statements it runs."""

    def __init__(self, tx: Tx, counter: list[int]) -> None:
        self._tx, self._counter = tx, counter
        self.dialect = tx.dialect

    def _count(self) -> None:
        self._counter[0] += 1

    def execute(self, sql: str, params: Any = ()) -> int:
        self._count()
        return self._tx.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> None:
        self._count()
        self._tx.executemany(sql, rows)

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self._count()
        return self._tx.query(sql, params)

    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None:
        self._count()
        return self._tx.one(sql, params)

    @property
    def writes(self) -> int:
        return self._tx.writes

    def savepoint(self) -> contextlib.AbstractContextManager[None]:
        return self._tx.savepoint()

    def appended(self, key: bytes) -> None:
        self._tx.appended(key)


class CountingDatabase:
    """Wraps the server's Database; ``queries`` counts every statement, ``runs`` every transaction."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.dialect, self.kind = inner.dialect, inner.kind
        self.counter = [0]
        self.runs = 0

    @property
    def queries(self) -> int:
        return self.counter[0]

    async def run(self, fn: Callable[[Tx], _T]) -> _T:
        self.runs += 1
        return await self.inner.run(lambda tx: fn(CountingTx(tx, self.counter)))  # type: ignore[arg-type]

    def on_append(self, callback: Callable[[bytes], None]) -> None:
        self.inner.on_append(callback)

    async def close(self) -> None:
        await self.inner.close()


@contextlib.contextmanager
def in_process_server(poll_interval: float) -> Iterator[tuple[Any, CountingDatabase]]:
    app = build_app(db=None, dist="/nonexistent", config=ApiConfig(rate_limit=0, address_rate_limit=0, poll_interval=poll_interval))
    api = app.state.api
    counting = CountingDatabase(api.db)
    api.db = counting
    yield app, counting


async def _watch_queries(unknown: int, *, poll_interval: float = 0.02, wait_ms: int = 400) -> tuple[int, int]:
    """(statements, transactions) of one long-polling watch of ``unknown`` conversations that do
    not exist, held ``wait_ms`` with a re-read every ``poll_interval``."""
    with in_process_server(poll_interval) as (app, counting):
        ident = Identity.generate()
        dev = LocalDevice.generate(ident.user_id, "d", 1)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        t = HttpTransport("http://testserver", dev.signing_secret, client=client)
        try:
            await t.register_device(dev.info(1), ident.device_binding(dev.device_id))
            mine = ConversationId.new()
            await t.send(MessageEnvelope(mine, 0, MessageKind.APPLICATION, dev.device_id, 0, Hlc(1, 0), b"x"))
            positions = {mine: 1, **{ConversationId.new(): 0 for _ in range(unknown)}}
            before_q, before_r = counting.queries, counting.runs
            result = await t.watch(positions, wait_ms=wait_ms)
            assert not result.news
            return counting.queries - before_q, counting.runs - before_r
        finally:
            await client.aclose()
            await counting.close()


async def test_watch_rereads_cost_the_same_for_10_or_1000_unknown_conversations() -> None:
    few_q, few_r = await _watch_queries(10)
    many_q, many_r = await _watch_queries(999)
    # Per re-read: the caller's row and the conversations it may read (here one): two statements.
    rereads = many_r - 2  # the key lookup is cached; the first read is the request's transaction
    assert rereads >= 5
    first_read = 4  # caller, nonce, then the watch's two queries
    assert many_q <= first_read + 2 * rereads + 2, (many_q, many_r)
    # And it does not depend on how many unknown conversations are named.
    assert abs(many_q / max(many_r, 1) - few_q / max(few_r, 1)) < 0.5, ((few_q, few_r), (many_q, many_r))


async def test_an_unknown_conversation_is_read_again_when_a_wake_up_names_it() -> None:
    with in_process_server(60.0) as (app, counting):  # no periodic re-read within the test
        ident = Identity.generate()
        dev = LocalDevice.generate(ident.user_id, "d", 1)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        t = HttpTransport("http://testserver", dev.signing_secret, client=client)
        try:
            await t.register_device(dev.info(1), ident.device_binding(dev.device_id))
            fresh = ConversationId.new()
            others = {ConversationId.new(): 0 for _ in range(50)}
            watching = asyncio.create_task(t.watch({fresh: 0, **others}, wait_ms=10_000))
            await asyncio.sleep(0.2)
            await t.send(MessageEnvelope(fresh, 0, MessageKind.APPLICATION, dev.device_id, 0, Hlc(1, 0), b"first"))
            got = await asyncio.wait_for(watching, 5)
            assert got.heads == {fresh: 1}
        finally:
            await client.aclose()
            await counting.close()
