"""ONE behaviour suite for every Transport: the in-memory reference service and HttpTransport
against a real ping_server process on SQLite and on PostgreSQL. Each test runs on all three;
they must behave the same (fault injection, which only the memory service has, is tested in
tests/core/test_transport_memory.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.errors import InvalidInput, TransportError
from ping_core.identity import DeviceBinding, DeviceRevocation, Identity
from ping_core.ids import ConversationId, DeviceId
from ping_core.message import MAX_PAYLOAD_LEN, MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor
from ping_core.transport import KeyPackageCount, KeyPackageSupply, Transport
from ping_core.testing.memory import MemoryDeliveryService
from ping_core.transport.base import MAX_EPOCH, MAX_FETCH_WAIT_MS, MAX_WATCH_CONVERSATIONS, DeliveryLimits, WatchResult
from ping_core.transport.http import HttpTransport

from serverproc import ServerProcess


class Backend:
    """Makes transports for devices on one delivery service."""

    def __init__(self, name: str, url: str | None, memory: MemoryDeliveryService | None = None) -> None:
        self.name = name
        self.url = url
        self.memory = (memory or MemoryDeliveryService()) if url is None else None
        self._open: list[HttpTransport] = []

    def transport(self, device: LocalDevice) -> Any:
        """The device's transport (not registered)."""
        if self.memory is not None:
            return self.memory.transport(device.device_id)
        assert self.url is not None
        t = HttpTransport.for_device(self.url, device)
        self._open.append(t)
        return t

    async def device(self, ident: Identity, label: str = "d") -> tuple[LocalDevice, Any]:
        """A new registered device of ``ident`` and its transport."""
        dev = LocalDevice.generate(ident.user_id, label, 1)
        t = self.transport(dev)
        await t.register_device(dev.info(1), ident.device_binding(dev.device_id))
        return dev, t

    async def aclose(self) -> None:
        for t in self._open:
            await t.aclose()


@pytest.fixture(params=["memory", "http-sqlite", "http-postgres"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    url = None
    if request.param == "http-sqlite":
        url = request.getfixturevalue("sqlite_server").url
    elif request.param == "http-postgres":
        server: ServerProcess = request.getfixturevalue("postgres_server")
        url = server.url
    b = Backend(request.param, url, MemoryDeliveryService(limits=UNLIMITED_CLAIMS))
    yield b
    await b.aclose()


# The session's servers run without KeyPackage claim limits (tests/server/conftest.py); so does
# the memory service of ``backend`` (the limits have their own servers below).
UNLIMITED_CLAIMS = DeliveryLimits(claims_per_claimer=0, claims_per_device=0)


# Small Welcome inboxes, on every backend, for the inbox limit.
SMALL_INBOX_ENTRIES = 3
SMALL_INBOX_BYTES = 10_000
SMALL_INBOX = DeliveryLimits(inbox_entries=SMALL_INBOX_ENTRIES, inbox_bytes=SMALL_INBOX_BYTES)


@pytest.fixture(scope="module")
def small_inbox_servers(postgres_db: str, server_logs: Path) -> Iterator[dict[str, ServerProcess]]:
    limits = ("--inbox-limit", str(SMALL_INBOX_ENTRIES), "--inbox-bytes", str(SMALL_INBOX_BYTES))
    servers: dict[str, ServerProcess] = {}
    try:
        for name, db in (("http-sqlite", str(server_logs / "small-inbox.sqlite")), ("http-postgres", postgres_db)):
            servers[name] = ServerProcess(db, "--rate-limit", "0", "--address-rate-limit", "0", *limits, log_dir=server_logs)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(params=["memory", "http-sqlite", "http-postgres"])
async def small_inbox_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        b = Backend("memory", None, MemoryDeliveryService(limits=SMALL_INBOX))
    else:
        b = Backend(request.param, request.getfixturevalue("small_inbox_servers")[request.param].url)
    yield b
    await b.aclose()


def _env(
    conv: ConversationId, sender: DeviceId, kind: MessageKind = MessageKind.APPLICATION, epoch: int = 0, payload: bytes = b"x"
) -> MessageEnvelope:
    return MessageEnvelope(conv, epoch, kind, sender, 0, Hlc(1, 0), payload)


async def _rejects(call: Any, status: int, code: str) -> TransportError:
    with pytest.raises(TransportError) as err:
        await call
    assert (err.value.status, err.value.code) == (status, code), repr(err.value)
    assert err.value.is_definite_rejection
    return err.value


async def _welcome(t: Any, sender: LocalDevice, conv: ConversationId, *to: LocalDevice, payload: bytes = b"w") -> None:
    await t.set_next_welcome_recipients(conv, [d.device_id for d in to])
    assert await t.send(_env(conv, sender.device_id, MessageKind.WELCOME, payload=payload)) == 0


# ---------------------------------------------------------------------------
# Conversation logs


async def test_conforms_to_protocol(backend: Backend) -> None:
    dev, t = await backend.device(Identity.generate())
    assert isinstance(t, Transport)


async def test_log_order_cursor_and_paging(backend: Backend) -> None:
    dev, t = await backend.device(Identity.generate())
    conv = ConversationId.new()
    seqs = [await t.send(_env(conv, dev.device_id, payload=bytes([i]))) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    page = await t.fetch_since(conv, SyncCursor(), 2)
    assert [e.seq for e in page] == [1, 2] and page[0].payload == b"\x00"
    assert all(e.conversation_id == conv and e.sender_device == dev.device_id for e in page)
    assert [e.seq for e in await t.fetch_since(conv, SyncCursor(2), 10)] == [3, 4, 5]
    assert await t.fetch_since(conv, SyncCursor(5), 10) == []
    assert await t.fetch_since(ConversationId.new(), SyncCursor(), 10) == []  # nobody posted: empty, not an error
    for bad in (0, 1001):
        await _rejects(t.fetch_since(conv, SyncCursor(), bad), 400, "invalid_request")
    for bad_wait in (-1, 30_001):
        await _rejects(t.fetch_since(conv, SyncCursor(), 1, wait_ms=bad_wait), 400, "invalid_request")
    everything = await t.fetch_since(conv, SyncCursor(), 1000)
    assert [e.payload for e in everything] == [bytes([i]) for i in range(5)]


async def test_commit_epochs(backend: Backend) -> None:
    alice = Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(alice, "b")
    conv = ConversationId.new()
    await _welcome(ta, a, conv, b)
    assert await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=7)) == 1  # the first Commit sets the epoch
    await _rejects(tb.send(_env(conv, b.device_id, MessageKind.COMMIT, epoch=7)), 409, "epoch_advanced")  # b lost the race
    await _rejects(tb.send(_env(conv, b.device_id, MessageKind.COMMIT, epoch=6)), 409, "epoch_advanced")  # stale
    await _rejects(tb.send(_env(conv, b.device_id, MessageKind.COMMIT, epoch=9)), 409, "epoch_advanced")  # future
    assert await tb.send(_env(conv, b.device_id, MessageKind.COMMIT, epoch=8)) == 2
    assert await ta.send(_env(conv, a.device_id, MessageKind.APPLICATION, epoch=0)) == 3  # late application traffic is kept
    assert await ta.send(_env(conv, a.device_id, MessageKind.PROPOSAL, epoch=12)) == 4
    log = await ta.fetch_since(conv, SyncCursor(), 100)
    assert [(e.kind, e.epoch, e.seq) for e in log] == [
        (MessageKind.COMMIT, 7, 1),
        (MessageKind.COMMIT, 8, 2),
        (MessageKind.APPLICATION, 0, 3),
        (MessageKind.PROPOSAL, 12, 4),
    ]
    # The next epoch must fit the server's signed 64-bit column.
    other = ConversationId.new()
    await _rejects(ta.send(_env(other, a.device_id, MessageKind.COMMIT, epoch=MAX_EPOCH + 1)), 400, "invalid_request")
    assert await ta.send(_env(other, a.device_id, MessageKind.COMMIT, epoch=MAX_EPOCH)) == 1


async def test_sender_must_be_caller(backend: Backend) -> None:
    a, ta = await backend.device(Identity.generate())
    b, _tb = await backend.device(Identity.generate())
    conv = ConversationId.new()
    await _rejects(ta.send(_env(conv, b.device_id)), 403, "forbidden")
    await _rejects(ta.send(_env(conv, DeviceId(b"\x05" * 32))), 403, "forbidden")
    assert await ta.fetch_since(conv, SyncCursor(), 10) == []  # nothing was created
    with pytest.raises(InvalidInput):
        await ta.send(b"not an envelope")


async def test_large_envelopes_page_transparently(backend: Backend) -> None:
    """Pages the HTTP server cuts at its byte budget are reassembled: the caller sees ``limit`` envelopes."""
    dev, t = await backend.device(Identity.generate())
    conv = ConversationId.new()
    big = [bytes([i]) * (MAX_PAYLOAD_LEN - 1000) for i in range(3)]
    for payload in big:
        await t.send(_env(conv, dev.device_id, payload=payload))
    await t.send(_env(conv, dev.device_id, payload=b"small"))
    got = await t.fetch_since(conv, SyncCursor(), 3)
    assert [e.payload for e in got] == big
    got = await t.fetch_since(conv, SyncCursor(1), 10)
    assert [e.seq for e in got] == [2, 3, 4] and got[-1].payload == b"small"


# ---------------------------------------------------------------------------
# Long polling


async def test_long_poll(backend: Backend) -> None:
    dev, t = await backend.device(Identity.generate())
    conv = ConversationId.new()
    await t.send(_env(conv, dev.device_id, payload=b"1"))
    start = time.monotonic()
    assert [e.seq for e in await t.fetch_since(conv, SyncCursor(), 10, wait_ms=5000)] == [1]  # data: no wait
    assert time.monotonic() - start < 2
    start = time.monotonic()
    assert await t.fetch_since(conv, SyncCursor(1), 10, wait_ms=300) == []  # nothing came
    assert time.monotonic() - start >= 0.28

    async def later() -> None:
        await asyncio.sleep(0.2)
        await t.send(_env(conv, dev.device_id, payload=b"2"))

    start = time.monotonic()
    poster = asyncio.create_task(later())
    got = await t.fetch_since(conv, SyncCursor(1), 10, wait_ms=10_000)
    await poster
    assert [(e.seq, e.payload) for e in got] == [(2, b"2")]
    assert time.monotonic() - start < 5


async def test_long_poll_on_a_conversation_that_does_not_exist_yet(backend: Backend) -> None:
    dev, t = await backend.device(Identity.generate())
    conv = ConversationId.new()

    async def later() -> None:
        await asyncio.sleep(0.2)
        await t.send(_env(conv, dev.device_id, payload=b"first"))

    poster = asyncio.create_task(later())
    got = await t.fetch_since(conv, SyncCursor(), 10, wait_ms=10_000)
    await poster
    assert [e.payload for e in got] == [b"first"]


# ---------------------------------------------------------------------------
# Watching many conversations at once


async def test_watch_answers_at_once_with_what_is_new(backend: Backend) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    busy, quiet, empty = ConversationId.new(), ConversationId.new(), ConversationId.new()
    for payload in (b"1", b"2", b"3"):
        await ta.send(_env(busy, a.device_id, payload=payload))
    await ta.send(_env(quiet, a.device_id))
    start = time.monotonic()
    got = await ta.watch({busy: 1, quiet: 1, empty: 0}, wait_ms=5000)
    assert time.monotonic() - start < 2
    assert got == WatchResult({busy: 3}, frozenset(), False) and got.news
    assert (await ta.watch({busy: 0, quiet: 0})).heads == {busy: 3, quiet: 1}
    assert await ta.watch({busy: 3, quiet: 1}) == WatchResult()  # nothing new, no wait asked
    assert await ta.watch({}) == WatchResult()  # only the inbox
    # A Welcome waiting in the inbox is news until acknowledged.
    await _welcome(ta, a, quiet, b)
    assert await tb.watch({}, wait_ms=5000) == WatchResult(welcomes=True)
    assert await tb.watch({quiet: 0}) == WatchResult({quiet: 1}, frozenset(), True)
    await tb.ack_welcomes((await tb.fetch_welcomes())[-1].seq)
    assert await tb.watch({quiet: 1}) == WatchResult()


async def test_watch_waits_for_an_append_or_the_deadline(backend: Backend) -> None:
    dev, t = await backend.device(Identity.generate())
    c1, c2, fresh = ConversationId.new(), ConversationId.new(), ConversationId.new()
    await t.send(_env(c1, dev.device_id))
    await t.send(_env(c2, dev.device_id))
    start = time.monotonic()
    assert await t.watch({c1: 1, c2: 1, fresh: 0}, wait_ms=300) == WatchResult()  # nothing came
    assert time.monotonic() - start >= 0.28

    async def later(conv: ConversationId) -> None:
        await asyncio.sleep(0.2)
        await t.send(_env(conv, dev.device_id, payload=b"news"))

    for conv, head in ((c2, 2), (fresh, 1)):  # an existing conversation, then one nobody had posted to
        start = time.monotonic()
        poster = asyncio.create_task(later(conv))
        got = await t.watch({c1: 1, c2: 2 if conv is fresh else 1, fresh: 0}, wait_ms=10_000)
        await poster
        assert got == WatchResult({conv: head}, frozenset(), False)
        assert time.monotonic() - start < 5


async def test_watch_wakes_on_a_welcome(backend: Backend) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    mine = ConversationId.new()
    await tb.send(_env(mine, b.device_id))
    conv = ConversationId.new()
    await ta.send(_env(conv, a.device_id))

    async def later() -> None:
        await asyncio.sleep(0.2)
        await _welcome(ta, a, conv, b)

    start = time.monotonic()
    poster = asyncio.create_task(later())
    got = await tb.watch({mine: 1}, wait_ms=10_000)
    await poster
    assert got == WatchResult(welcomes=True)
    assert time.monotonic() - start < 5


async def test_watch_reports_what_the_device_may_not_read_never_its_head(backend: Backend) -> None:
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    c, tc = await backend.device(carol, "c")
    secret, shared = ConversationId.new(), ConversationId.new()
    await ta.send(_env(secret, a.device_id))
    assert await ta.send(_env(shared, a.device_id, MessageKind.COMMIT, epoch=0)) == 1
    await _welcome(ta, a, shared, b, c)
    await ta.send(_env(shared, a.device_id, payload=b"2"))
    alice_group = ConversationId.device_group(alice.user_id)
    await ta.send(_env(alice_group, a.device_id))
    start = time.monotonic()
    got = await tc.watch({secret: 0, shared: 2, alice_group: 0}, wait_ms=5000)  # answers at once
    assert time.monotonic() - start < 2
    assert got == WatchResult({}, frozenset({secret, alice_group}), True)
    assert await tc.watch({secret: 5}) == WatchResult({}, frozenset({secret}), True)  # whatever the position
    assert (await ta.watch({alice_group: 0})).heads == {alice_group: 1}  # its owner's devices read it
    # b is watching when a Commit removes it: news (it reads up to that Commit), then forbidden.
    await tb.ack_welcomes((await tb.fetch_welcomes())[-1].seq)
    watching = asyncio.create_task(tb.watch({shared: 2}, wait_ms=10_000))
    await asyncio.sleep(0.2)
    await ta.set_next_commit_removals(shared, [b.device_id])
    assert await ta.send(_env(shared, a.device_id, MessageKind.COMMIT, epoch=1)) == 3
    assert (await watching).heads == {shared: 3}
    await ta.send(_env(shared, a.device_id, payload=b"after"))
    assert (await tb.watch({shared: 1})).heads == {shared: 3}  # not 4: that is past its removal
    assert (await tb.watch({shared: 3}, wait_ms=5000)).forbidden == {shared}
    assert (await tc.watch({shared: 3})).heads == {shared: 4}


async def test_watch_bad_input_and_limits(backend: Backend) -> None:
    dev, t = await backend.device(Identity.generate())
    conv = ConversationId.new()
    await _rejects(t.watch({conv: -1}), 400, "invalid_request")
    await _rejects(t.watch({conv: 1 << 63}), 400, "invalid_request")
    for bad_wait in (-1, MAX_FETCH_WAIT_MS + 1):
        await _rejects(t.watch({conv: 0}, wait_ms=bad_wait), 400, "invalid_request")
    many = {ConversationId.new(): 0 for _ in range(MAX_WATCH_CONVERSATIONS + 1)}
    await _rejects(t.watch(many), 413, "too_large")
    many.popitem()
    assert await t.watch(many) == WatchResult()  # exactly the limit is fine
    with pytest.raises(InvalidInput):
        await t.watch({conv.value: 0})
    with pytest.raises(InvalidInput):
        await t.watch({conv: "0"})
    stranger = LocalDevice.generate(Identity.generate().user_id, "x", 1)
    await _rejects(backend.transport(stranger).watch({conv: 0}), 401, "unauthorized")


# ---------------------------------------------------------------------------
# Membership


async def test_membership_creator_and_welcome(backend: Backend) -> None:
    alice, bob, eve = Identity.generate(), Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    e, te = await backend.device(eve, "e")
    conv = ConversationId.new()
    await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=0))  # a creates the conversation
    await _rejects(te.fetch_since(conv, SyncCursor(), 10), 403, "forbidden")  # non-member reads
    await _rejects(te.send(_env(conv, e.device_id)), 403, "forbidden")  # non-member posts
    await _rejects(te.send(_env(conv, e.device_id, MessageKind.COMMIT, epoch=1)), 403, "forbidden")
    # A non-member cannot welcome anybody (itself included) into the conversation.
    await te.set_next_welcome_recipients(conv, [e.device_id])
    await _rejects(te.send(_env(conv, e.device_id, MessageKind.WELCOME)), 403, "forbidden")
    assert await te.fetch_welcomes() == []
    # A member's Welcome makes b a member.
    await _rejects(tb.fetch_since(conv, SyncCursor(), 10), 403, "forbidden")
    await _welcome(ta, a, conv, b)
    assert [x.seq for x in await tb.fetch_since(conv, SyncCursor(), 10)] == [1]
    assert await tb.send(_env(conv, b.device_id, MessageKind.COMMIT, epoch=1)) == 2
    # ... and b may welcome others in turn.
    await _welcome(tb, b, conv, e)
    assert [x.seq for x in await te.fetch_since(conv, SyncCursor(), 10)] == [1, 2]


async def test_membership_removed_by_accepted_commit_only(backend: Backend) -> None:
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    c, tc = await backend.device(carol, "c")
    conv = ConversationId.new()
    await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=0))
    await _welcome(ta, a, conv, b, c)
    # A refused Commit removes nobody (and consumes the declaration).
    await ta.set_next_commit_removals(conv, [b.device_id])
    await _rejects(ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=0)), 409, "epoch_advanced")
    assert len(await tb.fetch_since(conv, SyncCursor(), 10)) == 1
    await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=1))  # declaration consumed: b stays
    assert len(await tb.fetch_since(conv, SyncCursor(), 10)) == 2
    # Removals ride on Commits only; other kinds leave them pending.
    await ta.set_next_commit_removals(conv, [b.device_id, b.device_id])
    await ta.send(_env(conv, a.device_id, MessageKind.APPLICATION, epoch=2))
    assert len(await tb.fetch_since(conv, SyncCursor(), 10)) == 3
    await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=2))
    # b reads up to the Commit that removed it, nothing after, and may not post.
    assert [e.seq for e in await tb.fetch_since(conv, SyncCursor(), 10)] == [1, 2, 3, 4]
    await _rejects(tb.fetch_since(conv, SyncCursor(4), 10), 403, "forbidden")
    await _rejects(tb.send(_env(conv, b.device_id, MessageKind.APPLICATION, epoch=3)), 403, "forbidden")
    assert len(await tc.fetch_since(conv, SyncCursor(), 10)) == 4  # c is unaffected
    # An empty declaration clears a pending one.
    await ta.set_next_commit_removals(conv, [c.device_id])
    await ta.set_next_commit_removals(conv, [])
    await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=3))
    assert len(await tc.fetch_since(conv, SyncCursor(), 10)) == 5
    # A member may leave (remove itself); a re-Welcome brings b back.
    await tc.set_next_commit_removals(conv, [c.device_id])
    assert await tc.send(_env(conv, c.device_id, MessageKind.COMMIT, epoch=4)) == 6
    assert [e.seq for e in await tc.fetch_since(conv, SyncCursor(5), 10)] == [6]
    await _rejects(tc.fetch_since(conv, SyncCursor(6), 10), 403, "forbidden")
    await _welcome(ta, a, conv, b)
    assert len(await tb.fetch_since(conv, SyncCursor(), 10)) == 6
    with pytest.raises(TransportError) as err:
        await ta.set_next_commit_removals(conv, [DeviceId(bytes([i % 256, i // 256]) + b"\x00" * 30) for i in range(1001)])
    assert (err.value.status, err.value.code) == (413, "too_large")


async def test_removed_device_reads_up_to_its_removal(backend: Backend) -> None:
    """A device removed by a Commit (not revoked) can read that Commit, so its client learns it was
    removed, live (a long poll) or later; nothing after it; it cannot post or welcome."""
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    c, tc = await backend.device(carol, "c")
    conv = ConversationId.new()
    assert await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=0)) == 1
    await _welcome(ta, a, conv, b, c)
    assert await ta.send(_env(conv, a.device_id, payload=b"before")) == 2
    # b is waiting for news when the removing Commit arrives.
    polling = asyncio.create_task(tb.fetch_since(conv, SyncCursor(2), 10, wait_ms=10_000))
    await asyncio.sleep(0.2)
    await ta.set_next_commit_removals(conv, [b.device_id])
    assert await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=1)) == 3
    got = await polling
    assert [(e.seq, e.kind, e.epoch) for e in got] == [(3, MessageKind.COMMIT, 1)]
    assert await ta.send(_env(conv, a.device_id, payload=b"after")) == 4
    await ta.set_next_commit_removals(conv, [b.device_id])  # declared again: its end stays at seq 3
    assert await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=2)) == 5
    assert [e.seq for e in await tb.fetch_since(conv, SyncCursor(), 10)] == [1, 2, 3]
    assert [e.seq for e in await tb.fetch_since(conv, SyncCursor(1), 1)] == [2]
    assert [e.seq for e in await tb.fetch_since(conv, SyncCursor(2), 1000)] == [3]
    await _rejects(tb.fetch_since(conv, SyncCursor(3), 10), 403, "forbidden")
    await _rejects(tb.fetch_since(conv, SyncCursor(4), 10), 403, "forbidden")
    start = time.monotonic()
    await _rejects(tb.fetch_since(conv, SyncCursor(3), 10, wait_ms=5000), 403, "forbidden")  # no waiting for nothing
    assert time.monotonic() - start < 2
    await _rejects(tb.send(_env(conv, b.device_id, payload=b"still here?")), 403, "forbidden")
    await _rejects(tb.send(_env(conv, b.device_id, MessageKind.COMMIT, epoch=3)), 403, "forbidden")
    await tb.set_next_welcome_recipients(conv, [b.device_id])
    await _rejects(tb.send(_env(conv, b.device_id, MessageKind.WELCOME)), 403, "forbidden")
    assert [e.seq for e in await tc.fetch_since(conv, SyncCursor(), 10)] == [1, 2, 3, 4, 5]  # c is unaffected
    # Welcomed back: a member again, the whole log readable, posting allowed.
    await _welcome(ta, a, conv, b)
    assert [e.seq for e in await tb.fetch_since(conv, SyncCursor(), 10)] == [1, 2, 3, 4, 5]
    assert await tb.send(_env(conv, b.device_id, payload=b"back")) == 6
    # Revoked after a removal: nothing at all.
    await ta.set_next_commit_removals(conv, [b.device_id])
    assert await ta.send(_env(conv, a.device_id, MessageKind.COMMIT, epoch=3)) == 7
    assert [e.seq for e in await tb.fetch_since(conv, SyncCursor(5), 10)] == [6, 7]
    bob2, tbob2 = await backend.device(bob, "b2")
    await tbob2.revoke_device_remote(b.device_id, bob.revoke(b.device_id))
    await _rejects(tb.fetch_since(conv, SyncCursor(5), 10), 403, "device_revoked")


async def test_revocation_ends_membership(backend: Backend) -> None:
    alice = Identity.generate()
    phone, tphone = await backend.device(alice, "phone")
    laptop, tlaptop = await backend.device(alice, "laptop")
    conv = ConversationId.new()
    await tphone.send(_env(conv, phone.device_id))
    await _welcome(tphone, phone, conv, laptop)
    assert len(await tlaptop.fetch_since(conv, SyncCursor(), 10)) == 1
    await tphone.revoke_device_remote(laptop.device_id, alice.revoke(laptop.device_id))
    await _rejects(tlaptop.fetch_since(conv, SyncCursor(), 10), 403, "device_revoked")


async def test_revocation_during_a_long_poll_or_watch(backend: Backend) -> None:
    alice = Identity.generate()
    phone, tphone = await backend.device(alice, "phone")
    laptop, tlaptop = await backend.device(alice, "laptop")
    conv = ConversationId.new()
    await tphone.send(_env(conv, phone.device_id))
    await _welcome(tphone, phone, conv, laptop)

    async def revoke_then_post() -> None:
        await asyncio.sleep(0.2)
        await tphone.revoke_device_remote(laptop.device_id, alice.revoke(laptop.device_id))
        await tphone.send(_env(conv, phone.device_id))

    await tlaptop.ack_welcomes((await tlaptop.fetch_welcomes())[-1].seq)  # else the watch answers at once
    task = asyncio.create_task(revoke_then_post())
    watch = asyncio.create_task(_rejects(tlaptop.watch({conv: 1}, wait_ms=10_000), 403, "device_revoked"))
    await _rejects(tlaptop.fetch_since(conv, SyncCursor(1), 10, wait_ms=10_000), 403, "device_revoked")
    await watch
    await task
    await _rejects(tlaptop.watch({}), 403, "device_revoked")


async def test_device_group_membership(backend: Backend) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a1, ta1 = await backend.device(alice, "a1")
    a2, ta2 = await backend.device(alice, "a2")
    b, tb = await backend.device(bob, "b")
    dg = ConversationId.device_group(alice.user_id)
    # Nobody else may create, post to, read or be welcomed into alice's device group.
    await _rejects(tb.send(_env(dg, b.device_id)), 403, "forbidden")
    await tb.set_next_welcome_recipients(dg, [b.device_id])
    await _rejects(tb.send(_env(dg, b.device_id, MessageKind.WELCOME)), 403, "forbidden")
    assert await tb.fetch_since(dg, SyncCursor(), 10) == []  # does not exist yet
    await ta1.send(_env(dg, a1.device_id, MessageKind.COMMIT, epoch=0))
    await _rejects(tb.fetch_since(dg, SyncCursor(), 10), 403, "forbidden")
    # Every device of the owner is a member without a Welcome (it arrives in the linking ticket).
    assert len(await ta2.fetch_since(dg, SyncCursor(), 10)) == 1
    assert await ta2.send(_env(dg, a2.device_id, MessageKind.COMMIT, epoch=1)) == 2
    await ta1.set_next_welcome_recipients(dg, [b.device_id])
    await _rejects(ta1.send(_env(dg, a1.device_id, MessageKind.WELCOME)), 403, "forbidden")
    assert await tb.fetch_welcomes() == []
    await _welcome(ta1, a1, dg, a2)  # the owner's own device: fine
    # Declared removals do not apply to a device group; revocation does.
    await ta1.set_next_commit_removals(dg, [a2.device_id])
    await ta1.send(_env(dg, a1.device_id, MessageKind.COMMIT, epoch=2))
    assert len(await ta2.fetch_since(dg, SyncCursor(), 10)) == 3
    await ta1.revoke_device_remote(a2.device_id, alice.revoke(a2.device_id))
    await _rejects(ta2.fetch_since(dg, SyncCursor(), 10), 403, "device_revoked")


# ---------------------------------------------------------------------------
# Directory: devices


async def test_registration_rules(backend: Backend) -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    dev = LocalDevice.generate(alice.user_id, "phone", 1)
    t = backend.transport(dev)
    conv = ConversationId.new()
    await _rejects(t.send(_env(conv, dev.device_id)), 401, "unauthorized")
    await _rejects(t.fetch_since(conv, SyncCursor(), 1), 401, "unauthorized")
    await _rejects(t.list_devices(alice.user_id), 401, "unauthorized")
    # a binding by another account
    await _rejects(t.register_device(dev.info(1), mallory.device_binding(dev.device_id)), 400, "invalid_request")
    # registering somebody else's device
    other = LocalDevice.generate(alice.user_id, "x", 1)
    await _rejects(t.register_device(other.info(1), alice.device_binding(other.device_id)), 403, "forbidden")
    # a forged binding
    binding = alice.device_binding(dev.device_id)
    forged = DeviceBinding(binding.user_id, binding.user_public_key, dev.device_id, bytes(64))
    await _rejects(t.register_device(dev.info(1), forged), 400, "invalid_request")
    # a binding for another device of the account
    await _rejects(t.register_device(dev.info(1), alice.device_binding(other.device_id)), 400, "invalid_request")
    await t.register_device(dev.info(1), binding)
    await t.register_device(dataclasses.replace(dev.info(2), label="renamed"), binding)
    assert [(d.device_id, d.label) for d in await t.list_devices(alice.user_id)] == [(dev.device_id, "renamed")]
    assert await t.list_devices(mallory.user_id) == []
    # devices are listed in registration order
    second, _t2 = await backend.device(alice, "second")
    third, _t3 = await backend.device(alice, "third")
    listed = await t.list_devices(alice.user_id)
    assert [d.label for d in listed] == ["renamed", "second", "third"]
    assert listed[1] == second.info(1)
    # the account key is pinned: another key cannot claim the account
    intruder = Identity.generate()
    fake = LocalDevice.generate(alice.user_id, "fake", 1)
    await _rejects(backend.transport(fake).register_device(fake.info(1), intruder.device_binding(fake.device_id)), 400, "invalid_request")


# ---------------------------------------------------------------------------
# Directory: Welcome inbox


async def test_welcome_inbox(backend: Backend) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice)
    b, tb = await backend.device(bob)
    conv = ConversationId.new()
    welcome = _env(conv, a.device_id, MessageKind.WELCOME, payload=b"welcome-1")
    await _rejects(ta.send(welcome), 400, "invalid_request")  # no recipients set
    await ta.set_next_welcome_recipients(conv, [b.device_id, b.device_id])  # repeats are delivered once
    assert await ta.send(welcome) == 0
    await _rejects(ta.send(welcome), 400, "invalid_request")  # recipients are used once
    await ta.set_next_welcome_recipients(conv, [b.device_id])
    await ta.send(dataclasses.replace(welcome, payload=b"welcome-2"))
    inbox = await tb.fetch_welcomes()
    assert [(e.seq, e.payload, e.kind, e.conversation_id) for e in inbox] == [
        (1, b"welcome-1", MessageKind.WELCOME, conv),
        (2, b"welcome-2", MessageKind.WELCOME, conv),
    ]
    assert await ta.fetch_since(conv, SyncCursor(), 10) == []  # Welcomes never enter the conversation log
    await tb.ack_welcomes(1)
    assert [e.seq for e in await tb.fetch_welcomes()] == [2]
    await ta.set_next_welcome_recipients(conv, [b.device_id])
    await ta.send(dataclasses.replace(welcome, payload=b"welcome-3"))
    assert [e.seq for e in await tb.fetch_welcomes()] == [2, 3]  # inbox positions keep counting
    await tb.ack_welcomes(10)
    assert await tb.fetch_welcomes() == []
    # an unknown recipient: nobody gets the Welcome
    await ta.set_next_welcome_recipients(conv, [b.device_id, DeviceId(b"\x00" * 32)])
    await _rejects(ta.send(welcome), 404, "not_found")
    assert await tb.fetch_welcomes() == []
    with pytest.raises(TransportError) as err:
        await ta.set_next_welcome_recipients(conv, [DeviceId(bytes([i % 256, i // 256]) + b"\x00" * 30) for i in range(1001)])
    assert (err.value.status, err.value.code) == (413, "too_large")


async def test_many_welcomes_page(backend: Backend) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice)
    b, tb = await backend.device(bob)
    conv = ConversationId.new()
    for i in range(130):  # more than one inbox page of the HTTP API
        await _welcome(ta, a, conv, b, payload=i.to_bytes(2, "big"))
        if i == 0:
            assert await tb.fetch_since(conv, SyncCursor(), 10) == []  # b accepts: a is no stranger any more
    inbox = await tb.fetch_welcomes()
    assert [e.seq for e in inbox] == list(range(1, 131))
    assert [e.payload for e in inbox] == [i.to_bytes(2, "big") for i in range(130)]


async def test_welcome_inbox_is_bounded(small_inbox_backend: Backend) -> None:
    """A recipient's inbox holds at most SMALL_INBOX_ENTRIES Welcomes and SMALL_INBOX_BYTES; a Welcome
    that would overflow any recipient's inbox is refused for all (409 inbox_full) and admits nobody."""
    backend = small_inbox_backend
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice)
    b, tb = await backend.device(bob)
    c, tc = await backend.device(carol)
    conv = ConversationId.new()
    for i in range(SMALL_INBOX_ENTRIES):
        await _welcome(ta, a, conv, b, payload=b"w%d" % i)
    await ta.set_next_welcome_recipients(conv, [c.device_id, b.device_id])
    await _rejects(ta.send(_env(conv, a.device_id, MessageKind.WELCOME, payload=b"one too many")), 409, "inbox_full")
    assert await tc.fetch_welcomes() == []  # all or nothing: c got nothing ...
    await _rejects(tc.fetch_since(conv, SyncCursor(), 10), 403, "forbidden")  # ... and is no member
    assert len(await tb.fetch_welcomes()) == SMALL_INBOX_ENTRIES
    await tb.ack_welcomes(1)  # acknowledging makes room
    await ta.send(_env(conv, a.device_id, MessageKind.WELCOME, payload=b"now it fits"))  # the recipients were kept
    assert [e.payload for e in await tb.fetch_welcomes()] == [b"w1", b"w2", b"now it fits"]
    assert [e.payload for e in await tc.fetch_welcomes()] == [b"now it fits"]
    # The byte bound: c's inbox holds one small Welcome; a large one fits once, not twice.
    big = b"x" * (SMALL_INBOX_BYTES // 2)
    await _welcome(ta, a, conv, c, payload=big)
    await ta.set_next_welcome_recipients(conv, [c.device_id])
    await _rejects(ta.send(_env(conv, a.device_id, MessageKind.WELCOME, payload=big)), 409, "inbox_full")
    await tc.ack_welcomes(100)
    await ta.send(_env(conv, a.device_id, MessageKind.WELCOME, payload=big))
    assert [len(e.payload) for e in await tc.fetch_welcomes()] == [len(big)]


async def test_welcome_recipients_survive_a_failed_send(backend: Backend) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice)
    b, tb = await backend.device(bob)
    conv = ConversationId.new()
    await ta.set_next_welcome_recipients(conv, [b.device_id])
    await _rejects(ta.send(_env(conv, b.device_id, MessageKind.WELCOME)), 403, "forbidden")  # wrong sender
    await ta.send(_env(conv, a.device_id, MessageKind.WELCOME))
    assert len(await tb.fetch_welcomes()) == 1


# ---------------------------------------------------------------------------
# Directory: KeyPackages


async def test_key_packages(backend: Backend) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b1, tb1 = await backend.device(bob, "b1")
    b2, tb2 = await backend.device(bob, "b2")
    await tb1.publish_key_packages([b"kp1-1", b"kp1-2"], last_resort=b"kp1-last")
    await tb2.publish_key_packages([b"kp2-1"])
    assert await ta.claim_key_packages(bob.user_id) == [(b1.device_id, b"kp1-1"), (b2.device_id, b"kp2-1")]
    assert await ta.claim_key_packages(bob.user_id) == [(b1.device_id, b"kp1-2")]  # b2: nothing left, no last resort
    assert await ta.claim_key_packages(bob.user_id) == [(b1.device_id, b"kp1-last")]
    assert await ta.claim_key_packages(bob.user_id) == [(b1.device_id, b"kp1-last")]  # the last resort stays
    assert await tb1.claim_key_packages(bob.user_id) == []  # never the caller's own device (b2 is empty)
    await tb1.publish_key_packages([b"x1", b"x2"])
    assert await ta.claim_device_key_packages(b1.device_id, 4) == [b"x1", b"x2", b"kp1-last", b"kp1-last"]
    assert await ta.claim_device_key_packages(b2.device_id, 3) == []
    await tb1.publish_key_packages([], last_resort=b"kp1-last-2")  # replace the last resort alone
    assert await ta.claim_device_key_packages(b1.device_id, 1) == [b"kp1-last-2"]
    await tb2.publish_key_packages([b"y1", b"y2", b"y3"])
    assert await ta.claim_device_key_packages(b2.device_id, 2) == [b"y1", b"y2"]
    assert await ta.claim_key_packages(alice.user_id) == []  # a's only device is the caller
    for bad in ([b""], [b"x" * (64 * 1024 + 1)]):
        await _rejects(tb1.publish_key_packages(bad), 400, "invalid_request")
    await _rejects(tb1.publish_key_packages([b"k"] * 201), 413, "too_large")
    await _rejects(tb1.publish_key_packages([], last_resort=b""), 400, "invalid_request")
    await _rejects(ta.claim_device_key_packages(DeviceId(b"\x00" * 32), 1), 404, "not_found")
    await _rejects(ta.claim_device_key_packages(b1.device_id, 0), 400, "invalid_request")
    await _rejects(ta.claim_device_key_packages(b1.device_id, 101), 400, "invalid_request")
    assert await ta.claim_device_key_packages(b2.device_id, 5) == [b"y3"]
    big = [bytes([i]) * (64 * 1024) for i in range(200)]  # the largest batch
    await tb2.publish_key_packages(big, last_resort=b"z" * (64 * 1024))
    assert await ta.claim_device_key_packages(b2.device_id, 100) == big[:100]


async def test_key_package_count(backend: Backend) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    assert isinstance(tb, KeyPackageSupply)
    assert await tb.key_package_count() == KeyPackageCount(0, False)
    await tb.publish_key_packages([b"k1", b"k2", b"k3"], last_resort=b"last")
    assert await tb.key_package_count() == KeyPackageCount(3, True)
    assert await ta.key_package_count() == KeyPackageCount(0, False)  # each device sees its own stock
    await ta.claim_key_packages(bob.user_id)
    assert await tb.key_package_count() == KeyPackageCount(2, True)
    assert await ta.claim_device_key_packages(b.device_id, 4) == [b"k2", b"k3", b"last", b"last"]
    assert await tb.key_package_count() == KeyPackageCount(0, True)  # the last resort is never used up
    await tb.publish_key_packages([b"k4"])
    assert await tb.key_package_count() == KeyPackageCount(1, True)
    stranger = LocalDevice.generate(bob.user_id, "unregistered", 1)
    await _rejects(backend.transport(stranger).key_package_count(), 401, "unauthorized")
    b2, tb2 = await backend.device(bob, "b2")
    await tb2.revoke_device_remote(b.device_id, bob.revoke(b.device_id))
    await _rejects(tb.key_package_count(), 403, "device_revoked")


# ---------------------------------------------------------------------------
# Revocation


async def test_revocation(backend: Backend) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    phone, tphone = await backend.device(alice, "phone")
    laptop, tlaptop = await backend.device(alice, "laptop")
    b, tb = await backend.device(bob)
    await tlaptop.publish_key_packages([b"kp"], last_resort=b"last")
    conv = ConversationId.new()
    await _welcome(tb, b, conv, laptop)
    statement = alice.revoke(laptop.device_id)
    await _rejects(tb.revoke_device_remote(laptop.device_id, statement), 403, "forbidden")  # bob's device delivers it
    nobody = DeviceId(b"\x00" * 32)
    await _rejects(tphone.revoke_device_remote(nobody, alice.revoke(nobody)), 404, "not_found")
    await tphone.revoke_device_remote(laptop.device_id, statement)
    await tphone.revoke_device_remote(laptop.device_id, statement)  # idempotent
    assert [d.device_id for d in await tb.list_devices(alice.user_id)] == [phone.device_id]
    assert await tb.claim_key_packages(alice.user_id) == []  # KeyPackages purged (last resort too)
    await _rejects(tb.claim_device_key_packages(laptop.device_id, 1), 404, "not_found")
    for call in (
        tlaptop.send(_env(conv, laptop.device_id)),
        tlaptop.fetch_since(conv, SyncCursor(), 1),
        tlaptop.fetch_since(conv, SyncCursor(), 1, wait_ms=100),
        tlaptop.watch({conv: 0}),
        tlaptop.watch({}, wait_ms=100),
        tlaptop.fetch_welcomes(),
        tlaptop.ack_welcomes(1),
        tlaptop.list_devices(alice.user_id),
        tlaptop.list_revocations(bob.user_id),  # only its own account's statement (below)
        tlaptop.publish_key_packages([b"again"]),
        tlaptop.publish_key_packages([b"again"], replace=True),
        tlaptop.key_package_count(),
        tlaptop.claim_key_packages(bob.user_id),
        tlaptop.claim_device_key_packages(b.device_id, 1),
        tlaptop.leave_conversation(conv),
        tlaptop.revoke_device_remote(phone.device_id, alice.revoke(phone.device_id)),
        tlaptop.revoke_device_remote(laptop.device_id, statement),
    ):
        await _rejects(call, 403, "device_revoked")
    # The one call a revoked device may make: its own statement, to verify before it wipes itself.
    assert await tlaptop.list_revocations(alice.user_id) == [statement]
    # A revoked device id never registers again.
    await _rejects(tlaptop.register_device(laptop.info(1), alice.device_binding(laptop.device_id)), 403, "device_revoked")
    await _rejects(tlaptop.register_device(laptop.info(5), alice.device_binding(laptop.device_id)), 403, "device_revoked")
    await tb.set_next_welcome_recipients(conv, [laptop.device_id])
    await _rejects(tb.send(_env(conv, b.device_id, MessageKind.WELCOME)), 404, "not_found")
    # a device may revoke itself with the account's statement
    await tphone.revoke_device_remote(phone.device_id, alice.revoke(phone.device_id))
    await _rejects(tphone.list_devices(alice.user_id), 403, "device_revoked")
    assert await tb.list_devices(alice.user_id) == []
    assert [r.device_id for r in await tb.list_revocations(alice.user_id)] == [phone.device_id, laptop.device_id]


async def test_revocation_needs_the_accounts_statement(backend: Backend) -> None:
    """Only the account key's signed statement revokes, whoever of the account delivers it: a forged
    signature, another account's statement, a statement for another device, or the right statement
    delivered by another account's device are refused and change nothing."""
    alice, mallory = Identity.generate(), Identity.generate()
    phone, tphone = await backend.device(alice, "phone")
    laptop, tlaptop = await backend.device(alice, "laptop")
    m, tm = await backend.device(mallory, "m")
    await tlaptop.publish_key_packages([b"kp"], last_resort=b"last")
    conv = ConversationId.new()
    await tphone.send(_env(conv, phone.device_id))
    await _welcome(tphone, phone, conv, laptop)
    good = alice.revoke(laptop.device_id)
    forged = DeviceRevocation(good.user_id, good.user_public_key, good.device_id, bytes(64))
    flipped = DeviceRevocation(good.user_id, good.user_public_key, good.device_id, bytes([good.signature[0] ^ 1]) + good.signature[1:])
    a_binding = alice.device_binding(laptop.device_id)
    binding_as_revocation = DeviceRevocation(a_binding.user_id, a_binding.user_public_key, a_binding.device_id, a_binding.signature)
    foreign = mallory.revoke(laptop.device_id)  # mallory's key, naming herself
    # mallory's key, claiming alice's account: verify() fails (user id is not her key's hash)
    impostor = DeviceRevocation(alice.user_id, mallory.public_key, laptop.device_id, foreign.signature)
    for who, statement in ((tphone, forged), (tphone, flipped), (tphone, binding_as_revocation), (tphone, foreign), (tphone, impostor), (tlaptop, forged)):
        await _rejects(who.revoke_device_remote(laptop.device_id, statement), 403, "forbidden")
    # the account's statement about the phone does not revoke the laptop
    await _rejects(tphone.revoke_device_remote(laptop.device_id, alice.revoke(phone.device_id)), 400, "invalid_request")
    # the right statement, delivered by a device of another account
    await _rejects(tm.revoke_device_remote(laptop.device_id, good), 403, "forbidden")
    # mallory's own statement about her own device names her account, not alice's laptop
    await _rejects(tm.revoke_device_remote(laptop.device_id, mallory.revoke(laptop.device_id)), 403, "forbidden")
    with pytest.raises(InvalidInput):
        await tphone.revoke_device_remote(laptop.device_id, alice.device_binding(laptop.device_id))  # type: ignore[arg-type]
    # Nothing changed: the laptop works, keeps its KeyPackages and membership, no revocation is listed.
    assert [d.device_id for d in await tm.list_devices(alice.user_id)] == [phone.device_id, laptop.device_id]
    assert await tm.list_revocations(alice.user_id) == []
    assert await tlaptop.key_package_count() == KeyPackageCount(1, True)
    assert len(await tlaptop.fetch_since(conv, SyncCursor(), 10)) == 1
    # The laptop itself may deliver the account's statement about itself.
    await tlaptop.revoke_device_remote(laptop.device_id, good)
    await _rejects(tlaptop.fetch_since(conv, SyncCursor(), 10), 403, "device_revoked")
    assert await tm.list_revocations(alice.user_id) == [good]


async def test_list_revocations(backend: Backend) -> None:
    """Any registered device may read an account's revocations: the kept statements, newest first,
    each verifying; an account without any (or unknown) has none; unregistered callers get 401."""
    alice, bob = Identity.generate(), Identity.generate()
    keeper, tkeeper = await backend.device(alice, "keeper")
    devices = [await backend.device(alice, f"d{i}") for i in range(3)]
    b, tb = await backend.device(bob)
    assert await tb.list_revocations(alice.user_id) == []
    assert await tb.list_revocations(Identity.generate().user_id) == []
    for dev, _t in (devices[1], devices[0], devices[2]):
        await tkeeper.revoke_device_remote(dev.device_id, alice.revoke(dev.device_id))
    await tkeeper.revoke_device_remote(devices[1][0].device_id, alice.revoke(devices[1][0].device_id))  # again: stays where it was
    listed = await tb.list_revocations(alice.user_id)
    assert [r.device_id for r in listed] == [devices[2][0].device_id, devices[0][0].device_id, devices[1][0].device_id]
    for r in listed:
        r.verify()
        assert r.user_id == alice.user_id
    assert await tb.list_revocations(bob.user_id) == []
    assert await tkeeper.list_revocations(alice.user_id) == listed
    stranger = LocalDevice.generate(bob.user_id, "unregistered", 1)
    await _rejects(backend.transport(stranger).list_revocations(alice.user_id), 401, "unauthorized")
    with pytest.raises(InvalidInput):
        await tb.list_revocations(alice.user_id.value)  # type: ignore[arg-type]


async def test_publish_replacing_key_packages(backend: Backend) -> None:
    """``replace=True`` drops the device's unclaimed one-time KeyPackages and stores the new ones in
    one step (the last resort is replaced only when given); the quota counts the pool after it; a
    refused replace keeps the old pool."""
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    await tb.publish_key_packages([b"old-1", b"old-2", b"old-3"], last_resort=b"old-last")
    assert await ta.claim_device_key_packages(b.device_id, 1) == [b"old-1"]
    await tb.publish_key_packages([b"new-1", b"new-2"], replace=True)
    assert await tb.key_package_count() == KeyPackageCount(2, True)
    assert await ta.claim_device_key_packages(b.device_id, 4) == [b"new-1", b"new-2", b"old-last", b"old-last"]
    await tb.publish_key_packages([b"n3"], last_resort=b"new-last")
    await tb.publish_key_packages([], replace=True)  # empty the pool
    assert await tb.key_package_count() == KeyPackageCount(0, True)
    assert await ta.claim_device_key_packages(b.device_id, 1) == [b"new-last"]
    await tb.publish_key_packages([b"n4"], last_resort=b"newer-last", replace=True)
    assert await ta.claim_device_key_packages(b.device_id, 2) == [b"n4", b"newer-last"]
    await tb.publish_key_packages([b"n5", b"n6"])
    await _rejects(tb.publish_key_packages([b"k"] * 201, replace=True), 413, "too_large")
    await _rejects(tb.publish_key_packages([b""], replace=True), 400, "invalid_request")
    assert await tb.key_package_count() == KeyPackageCount(2, True)  # refused: the old pool is intact
    with pytest.raises(InvalidInput):
        await tb.publish_key_packages([b"x"], replace=1)  # type: ignore[arg-type]
    assert await ta.claim_device_key_packages(b.device_id, 2) == [b"n5", b"n6"]


# ---------------------------------------------------------------------------
# Abuse limits (DeliveryLimits), small on every backend


LIMITED = DeliveryLimits(
    stranger_per_sender=2,
    stranger_entries=3,
    stranger_bytes=200_000,
    conversation_envelopes=5,
    conversation_bytes=30_000,
    account_bytes=50_000,
    claims_per_claimer=2,
    claims_per_device=3,
)
LIMITED_ARGS = (
    "--stranger-welcomes-per-sender", str(LIMITED.stranger_per_sender),
    "--stranger-welcomes", str(LIMITED.stranger_entries),
    "--stranger-welcome-bytes", str(LIMITED.stranger_bytes),
    "--conversation-max-envelopes", str(LIMITED.conversation_envelopes),
    "--conversation-max-bytes", str(LIMITED.conversation_bytes),
    "--account-max-bytes", str(LIMITED.account_bytes),
    "--claims-per-claimer", str(LIMITED.claims_per_claimer),
    "--claims-per-device", str(LIMITED.claims_per_device),
)  # fmt: skip


@pytest.fixture(scope="module")
def limited_servers(postgres_db: str, server_logs: Path) -> Iterator[dict[str, ServerProcess]]:
    """Servers with LIMITED: SQLite, and two processes sharing one PostgreSQL database."""
    servers: dict[str, ServerProcess] = {}
    try:
        for name, db in (("http-sqlite", str(server_logs / "limited.sqlite")), ("http-postgres", postgres_db), ("http-postgres-2", postgres_db)):
            servers[name] = ServerProcess(db, "--rate-limit", "0", "--address-rate-limit", "0", *LIMITED_ARGS, log_dir=server_logs)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(params=["memory", "http-sqlite", "http-postgres"])
async def limited_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        b = Backend("memory", None, MemoryDeliveryService(limits=LIMITED))
    else:
        b = Backend(request.param, request.getfixturevalue("limited_servers")[request.param].url)
    yield b
    await b.aclose()


async def test_welcomes_from_strangers_are_limited(limited_backend: Backend) -> None:
    """An account that shares no conversation with the recipient (where both have consented) may
    leave at most 2 unacknowledged Welcomes per device, all strangers together 3 (409
    invite_limit, and then nobody gets it); the recipient's own account and accounts it shares a
    conversation with are not limited; accepting (reading) or acknowledging makes room."""
    backend = limited_backend
    alice, bob, carol, dave = (Identity.generate() for _ in range(4))
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    b2, tb2 = await backend.device(bob, "b2")
    c, tc = await backend.device(carol, "c")
    d, td = await backend.device(dave, "d")
    spam = [ConversationId.new() for _ in range(4)]
    await _welcome(ta, a, spam[0], b)
    await _welcome(ta, a, spam[1], b)
    await ta.set_next_welcome_recipients(spam[2], [b2.device_id, b.device_id])
    await _rejects(ta.send(_env(spam[2], a.device_id, MessageKind.WELCOME)), 409, "invite_limit")  # per sender
    assert len(await tb2.fetch_welcomes()) == 0  # all or nothing
    await _welcome(tc, c, spam[3], b)  # a third stranger entry: the last one allowed
    dconv = ConversationId.new()
    await td.set_next_welcome_recipients(dconv, [b.device_id])
    await _rejects(td.send(_env(dconv, d.device_id, MessageKind.WELCOME)), 409, "invite_limit")  # all strangers together
    # A pending membership: b may read (which consents); the others were never made members.
    assert [e.conversation_id for e in await tb.fetch_welcomes()] == [spam[0], spam[1], spam[3]]
    # Bob's own account is never limited, nor is a related one.
    own = ConversationId.new()
    for _ in range(4):
        await _welcome(tb2, b2, own, b)
    # Acknowledging makes room; accepting (reading the conversation) makes alice related.
    await tb.ack_welcomes((await tb.fetch_welcomes())[-1].seq)
    await _welcome(td, d, dconv, b)
    assert await tb.fetch_since(spam[0], SyncCursor(), 10) == []  # b accepts alice's invitation
    for i in range(4):
        await _welcome(ta, a, spam[1], b, payload=b"friend %d" % i)
    assert [e.payload for e in await tb.fetch_welcomes()][-4:] == [b"friend %d" % i for i in range(4)]


async def test_leave_conversation(backend: Backend) -> None:
    """A device declines an invitation: its membership ends on the service (403 from then on,
    forbidden for its watches) and its pending Welcomes for that conversation are dropped; other
    Welcomes stay. Leaving again, or a conversation it is not in, changes nothing; a DeviceGroup
    cannot be left (400); a Welcome makes it a member again."""
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    conv, other = ConversationId.new(), ConversationId.new()
    await ta.send(_env(conv, a.device_id))
    await _welcome(ta, a, conv, b, payload=b"w1")
    await _welcome(ta, a, other, b, payload=b"w-other")
    await _welcome(ta, a, conv, b, payload=b"w2")
    await tb.leave_conversation(conv)
    assert [e.payload for e in await tb.fetch_welcomes()] == [b"w-other"]
    await _rejects(tb.fetch_since(conv, SyncCursor(), 10), 403, "forbidden")
    await _rejects(tb.send(_env(conv, b.device_id)), 403, "forbidden")
    assert await tb.watch({conv: 0}) == WatchResult({}, frozenset({conv}), True)
    assert len(await ta.fetch_since(conv, SyncCursor(), 10)) == 1  # the others are unaffected
    await tb.leave_conversation(conv)  # again: nothing to do
    await tb.leave_conversation(ConversationId.new())  # never a member
    await _rejects(tb.leave_conversation(ConversationId.device_group(bob.user_id)), 400, "invalid_request")
    with pytest.raises(InvalidInput):
        await tb.leave_conversation(conv.value)
    await _welcome(ta, a, conv, b, payload=b"w3")  # welcomed back
    assert len(await tb.fetch_since(conv, SyncCursor(), 10)) == 1
    stranger = LocalDevice.generate(Identity.generate().user_id, "x", 1)
    await _rejects(backend.transport(stranger).leave_conversation(conv), 401, "unauthorized")
    b2, tb2 = await backend.device(bob, "b2")
    await tb2.revoke_device_remote(b.device_id, bob.revoke(b.device_id))
    await _rejects(tb.leave_conversation(conv), 403, "device_revoked")


async def test_storage_quotas(limited_backend: Backend) -> None:
    """A conversation's log holds at most 5 envelopes and 30,000 bytes; an account stores at most
    50,000 bytes of log envelopes, Welcome payloads and KeyPackages (413 quota_exceeded, nothing
    stored). A Welcome to three devices counts once, until its last recipient acknowledges it."""
    backend = limited_backend
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    bs = [await backend.device(bob, f"b{i}") for i in range(3)]
    full = ConversationId.new()
    for i in range(5):
        assert await ta.send(_env(full, a.device_id, payload=bytes([i]))) == i + 1
    await _rejects(ta.send(_env(full, a.device_id, payload=b"one too many")), 413, "quota_exceeded")
    await _rejects(ta.send(_env(full, a.device_id, MessageKind.COMMIT, epoch=0)), 413, "quota_exceeded")
    assert len(await ta.fetch_since(full, SyncCursor(), 10)) == 5
    big = ConversationId.new()
    await _rejects(ta.send(_env(big, a.device_id, payload=b"x" * 30_000)), 413, "quota_exceeded")  # over the log's bytes
    assert await ta.fetch_since(big, SyncCursor(), 10) == []  # not even created
    # The account: a 15,000-byte Welcome to three devices counts once ...
    invite = ConversationId.new()
    await _welcome(ta, a, invite, *(d for d, _ in bs), payload=b"w" * 15_000)
    assert await ta.send(_env(big, a.device_id, payload=b"y" * 25_000)) == 1  # 15k + 25k + a little < 50k
    await _rejects(ta.send(_env(ConversationId.new(), a.device_id, payload=b"z" * 10_000)), 413, "quota_exceeded")
    await _rejects(ta.publish_key_packages([b"k" * 10_000]), 413, "quota_exceeded")
    # ... and is released when its last recipient acknowledges it (or leaves).
    await bs[0][1].ack_welcomes(1)
    await bs[1][1].leave_conversation(invite)
    await _rejects(ta.send(_env(ConversationId.new(), a.device_id, payload=b"z" * 10_000)), 413, "quota_exceeded")
    await bs[2][1].ack_welcomes(1)
    assert await ta.send(_env(ConversationId.new(), a.device_id, payload=b"z" * 10_000)) == 1
    # KeyPackages count while unclaimed.
    b0, tb0 = bs[0]
    await tb0.publish_key_packages([b"k" * 20_000, b"k" * 20_000], last_resort=b"L" * 5_000)
    await _rejects(tb0.publish_key_packages([b"k" * 6_000]), 413, "quota_exceeded")
    assert len(await ta.claim_device_key_packages(b0.device_id, 1)) == 1  # claimed: its bytes are free again
    await tb0.publish_key_packages([b"k" * 6_000])
    await _rejects(tb0.publish_key_packages([], last_resort=b"L" * 30_000), 413, "quota_exceeded")  # replacing counts the difference
    await tb0.publish_key_packages([], last_resort=b"L" * 10_000)
    # A replacing publish counts what the pool holds after it (26,000 + 10,000 stored now).
    await _rejects(tb0.publish_key_packages([b"r" * 30_000]), 413, "quota_exceeded")
    await tb0.publish_key_packages([b"r" * 30_000], replace=True)
    assert await tb0.key_package_count() == KeyPackageCount(1, True)
    await _rejects(tb0.publish_key_packages([b"s" * 41_000], replace=True), 413, "quota_exceeded")
    assert await ta.claim_device_key_packages(b0.device_id, 2) == [b"r" * 30_000, b"L" * 10_000]


async def test_key_package_claims_are_limited(limited_backend: Backend) -> None:
    """Per window, another account gets at most 2 one-time KeyPackages of one device and all other
    accounts together 3; beyond, claims get the last-resort KeyPackage (never an error). The
    device's own account is not limited."""
    backend = limited_backend
    alice, bob, carol, dave = (Identity.generate() for _ in range(4))
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    b2, tb2 = await backend.device(bob, "b2")
    c, tc = await backend.device(carol, "c")
    d, td = await backend.device(dave, "d")
    await tb.publish_key_packages([b"kp%d" % i for i in range(10)], last_resort=b"last")
    assert await ta.claim_key_packages(bob.user_id) == [(b.device_id, b"kp0")]
    assert await ta.claim_device_key_packages(b.device_id, 3) == [b"kp1", b"last", b"last"]  # alice's 2 are used
    assert await ta.claim_key_packages(bob.user_id) == [(b.device_id, b"last")]
    assert await tc.claim_device_key_packages(b.device_id, 2) == [b"kp2", b"last"]  # the device's 3 are used
    assert await td.claim_key_packages(bob.user_id) == [(b.device_id, b"last")]
    assert await tb2.claim_device_key_packages(b.device_id, 4) == [b"kp3", b"kp4", b"kp5", b"kp6"]  # its own account
    assert await tb.key_package_count() == KeyPackageCount(3, True)
    # Without a last-resort KeyPackage a limited claim returns nothing for that device (no error).
    await tc.publish_key_packages([b"c0", b"c1", b"c2"])
    assert await td.claim_device_key_packages(c.device_id, 3) == [b"c0", b"c1"]
    assert await td.claim_key_packages(carol.user_id) == []


async def test_claim_limits_hold_across_processes(limited_servers: dict[str, ServerProcess]) -> None:
    """Two server processes sharing one PostgreSQL database count claims in the database."""
    one, two = Backend("p1", limited_servers["http-postgres"].url), Backend("p2", limited_servers["http-postgres-2"].url)
    try:
        alice, bob = Identity.generate(), Identity.generate()
        a1 = LocalDevice.generate(alice.user_id, "a", 1)
        ta1, ta2 = one.transport(a1), two.transport(a1)
        await ta1.register_device(a1.info(1), alice.device_binding(a1.device_id))
        b, tb = await one.device(bob, "b")
        await tb.publish_key_packages([b"kp0", b"kp1", b"kp2"], last_resort=b"last")
        assert await ta1.claim_device_key_packages(b.device_id, 1) == [b"kp0"]
        assert await ta2.claim_device_key_packages(b.device_id, 2) == [b"kp1", b"last"]
        assert await ta1.claim_key_packages(bob.user_id) == [(b.device_id, b"last")]
    finally:
        await one.aclose()
        await two.aclose()


async def test_claim_window_passes() -> None:
    """The claim counters are per window: in the next window a claimer gets one-time KeyPackages
    again (memory service with a clock of its own; the servers use the same arithmetic)."""
    now = [10 * LIMITED.claim_window_ms]
    service = MemoryDeliveryService(limits=LIMITED, clock_ms=lambda: now[0])
    backend = Backend("memory", None, service)
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await backend.device(alice, "a")
    b, tb = await backend.device(bob, "b")
    await tb.publish_key_packages([b"kp%d" % i for i in range(5)], last_resort=b"last")
    assert await ta.claim_device_key_packages(b.device_id, 3) == [b"kp0", b"kp1", b"last"]
    now[0] += LIMITED.claim_window_ms
    assert await ta.claim_device_key_packages(b.device_id, 3) == [b"kp2", b"kp3", b"last"]


# ---------------------------------------------------------------------------
# Verified conversations: the service follows the group's public state (ping_core.transport.handshake)


class _Member:
    """A device of the conversation's MLS group: its transport, and an MLS signer on the device's
    own signing key (a Ping leaf's key is its device's)."""

    def __init__(self, dev: LocalDevice, t: Any, identity: Identity) -> None:
        from ping_core.identity import credential_identity
        from ping_core.mls.crypto import default_provider
        from ping_core.mls.group import Signer
        from ping_core.mls.structs import Credential

        self.dev, self.t = dev, t
        self.bundle: Any = None
        # A Ping leaf: the account's binding of the device (the service checks it).
        credential = Credential.basic(credential_identity(identity.device_binding(dev.device_id)))
        self.signer = Signer.from_private_key(default_provider(), credential, dev.signing_secret)
        self.group: Any = None

    def key_package(self) -> Any:
        from ping_core.mls.crypto import default_provider
        from ping_core.mls.group import generate_key_package

        return generate_key_package(default_provider(), self.signer, now=int(time.time()))

    def env(self, conv: ConversationId, kind: MessageKind, payload: bytes, epoch: int | None = None) -> MessageEnvelope:
        return _env(conv, self.dev.device_id, kind, self.group.epoch if epoch is None else epoch, payload)

    async def commit(self, conv: ConversationId, *, group_info: bool = True, **kw: Any) -> tuple[int, Any]:
        """Stage a commit, merge it (a test shortcut: the SDK sends first) and post it with the new
        epoch's GroupInfo; its seq and the staged commit."""
        staged = self.group.commit(**kw)
        env = self.env(conv, MessageKind.COMMIT, staged.message)
        self.group.merge_staged_commit(staged)
        if group_info:
            await self.t.set_next_commit_group_info(conv, self.group.group_info())
        return await self.t.send(env), staged

    def join(self, staged: Any) -> None:
        from ping_core.mls.crypto import default_provider
        from ping_core.mls.group import Group

        assert staged.welcome is not None and self.bundle is not None
        self.group = Group.join(default_provider(), staged.welcome, self.bundle, self.signer, config=_public(), clock=time.time)

    def fresh_key_package(self) -> bytes:
        self.bundle = self.key_package()
        return bytes(self.bundle.message())


def _public() -> Any:
    from ping_core.mls.group import GroupConfig

    return GroupConfig(encrypt_handshake=False)


async def _verified(backend: Backend) -> tuple[ConversationId, _Member, _Member, _Member]:
    """alice (a) creates a conversation whose group sends PublicMessages, adds bob (b) with the
    bootstrapping Commit and welcomes him; carol (c) is registered, in no group."""
    from ping_core.mls.crypto import default_provider
    from ping_core.mls.group import Group

    members = []
    for label in ("a", "b", "c"):
        identity = Identity.generate()
        dev, t = await backend.device(identity, label)
        members.append(_Member(dev, t, identity))
    a, b, c = members
    conv = ConversationId.new()
    a.group = Group.create(default_provider(), a.signer, group_id=conv.value, config=_public(), clock=time.time)
    seq, staged = await a.commit(conv, add=[b.fresh_key_package()])
    assert seq == 1
    await _welcome(a.t, a.dev, conv, b.dev, payload=staged.welcome)
    b.join(staged)
    return conv, a, b, c


async def test_verified_conversation_refuses_what_the_group_would(backend: Backend) -> None:
    """From its bootstrapping Commit (with a GroupInfo) on, a conversation takes only a current
    member's valid PublicMessage commit of the current epoch, posted by the committer's own
    device with the new epoch's GroupInfo (400 ``invalid_commit``, 409 for another epoch);
    nothing of a refused one is stored; the GroupInfo is served to members only."""
    conv, a, b, c = await _verified(backend)
    info = await b.t.fetch_group_info(conv)
    assert info is not None and info == await a.t.fetch_group_info(conv)
    await _rejects(c.t.fetch_group_info(conv), 403, "forbidden")
    assert await c.t.fetch_group_info(ConversationId.new()) is None
    staged = b.group.commit()
    # without a GroupInfo; with the current epoch's instead of the next one's
    await _rejects(b.t.send(b.env(conv, MessageKind.COMMIT, staged.message)), 400, "invalid_commit")
    await b.t.set_next_commit_group_info(conv, b.group.group_info())
    await _rejects(b.t.send(b.env(conv, MessageKind.COMMIT, staged.message)), 400, "invalid_commit")
    # another member's commit posted by a; garbage; a PrivateMessage commit; not even a commit
    for sender, payload in (
        (a, staged.message),
        (b, b"\x00\x01garbage"),
        (b, b.group.commit(encrypt=True).message),
        (b, b.group.propose_update().message),
    ):
        await sender.t.set_next_commit_group_info(conv, b.group.group_info())
        await _rejects(sender.t.send(sender.env(conv, MessageKind.COMMIT, payload, epoch=1)), 400, "invalid_commit")
    await b.t.set_next_commit_group_info(conv, b.group.group_info())
    await _rejects(b.t.send(b.env(conv, MessageKind.COMMIT, staged.message, epoch=0)), 409, "epoch_advanced")
    # The GroupInfo is consumed by the send that failed: none rides on the next Commit.
    await _rejects(b.t.send(b.env(conv, MessageKind.COMMIT, staged.message)), 400, "invalid_commit")
    assert [e.seq for e in await a.t.fetch_since(conv, SyncCursor(), 10)] == [1]
    assert await b.t.fetch_group_info(conv) == info
    # The same commit, right: accepted at epoch 1.
    b.group.merge_staged_commit(staged)
    await b.t.set_next_commit_group_info(conv, b.group.group_info())
    assert await b.t.send(b.env(conv, MessageKind.COMMIT, staged.message, epoch=1)) == 2
    assert await a.t.fetch_group_info(conv) != info


async def test_verified_conversation_membership_follows_the_tree(backend: Backend) -> None:
    """Welcomes go only to devices the latest Commit added (403 otherwise); a Commit that removes
    a leaf ends its device's membership at that Commit, undeclared; proposals must verify (400
    ``invalid_proposal``, 409 for another epoch) and are kept for commits by reference."""
    conv, a, b, c = await _verified(backend)
    await _welcome(a.t, a.dev, conv, b.dev)  # b was added by the latest Commit: again is fine
    await a.t.set_next_welcome_recipients(conv, [c.dev.device_id])
    await _rejects(a.t.send(_env(conv, a.dev.device_id, MessageKind.WELCOME)), 403, "forbidden")
    seq, staged = await b.commit(conv, add=[c.fresh_key_package()])
    assert seq == 2
    a.group.process_message(staged.message)
    await b.t.set_next_welcome_recipients(conv, [a.dev.device_id, c.dev.device_id])
    await _rejects(b.t.send(_env(conv, b.dev.device_id, MessageKind.WELCOME)), 403, "forbidden")  # a was not added
    await _welcome(b.t, b.dev, conv, c.dev, payload=staged.welcome)
    c.join(staged)
    # Proposals: verified, kept, and committed by reference.
    await _rejects(c.t.send(c.env(conv, MessageKind.PROPOSAL, b"\x00garbage")), 400, "invalid_proposal")
    update = c.group.propose_update()
    await _rejects(c.t.send(c.env(conv, MessageKind.PROPOSAL, update.message, epoch=1)), 409, "epoch_advanced")
    assert await c.t.send(c.env(conv, MessageKind.PROPOSAL, update.message)) == 3
    for g in (a.group, b.group):
        g.process_message(update.message)
    # b commits c's update (by reference) and removes a, without declaring the removal.
    seq, staged = await b.commit(conv, remove=[0])
    assert seq == 4
    c.group.process_message(staged.message)
    assert [e.seq for e in await a.t.fetch_since(conv, SyncCursor(), 10)] == [1, 2, 3, 4]
    await _rejects(a.t.fetch_since(conv, SyncCursor(4), 10), 403, "forbidden")
    await _rejects(a.t.fetch_group_info(conv), 403, "forbidden")
    await _rejects(a.t.send(_env(conv, a.dev.device_id, payload=b"still here?")), 403, "forbidden")
    assert await c.t.send(c.env(conv, MessageKind.APPLICATION, b"hi")) == 5


async def test_unverified_conversation_bootstraps_on_its_first_group_info(backend: Backend) -> None:
    """A conversation whose Commits never brought a GroupInfo keeps the routing rules (any payload
    at the current epoch, no GroupInfo served); its first Commit with one (signed by the caller's
    leaf, for the epoch it starts) makes it verified; then opaque Commits are refused."""
    from ping_core.mls.crypto import default_provider
    from ping_core.mls.group import Group

    alice, bob = Identity.generate(), Identity.generate()
    a = _Member(*(await backend.device(alice, "a")), alice)
    b = _Member(*(await backend.device(bob, "b")), bob)
    conv = ConversationId.new()
    a.group = Group.create(default_provider(), a.signer, group_id=conv.value, config=_public(), clock=time.time)
    assert (await a.commit(conv, group_info=False))[0] == 1
    assert await a.t.fetch_group_info(conv) is None
    # A bootstrap GroupInfo must be for the epoch the Commit starts, of this group, signed by the caller.
    staged = a.group.commit(add=[b.fresh_key_package()])
    other = Group.create(default_provider(), a.signer, group_id=ConversationId.new().value, config=_public(), clock=time.time)
    other.merge_staged_commit(other.commit())
    for info in (a.group.group_info(), other.group_info(), b"\x00bad"):
        await a.t.set_next_commit_group_info(conv, info)
        await _rejects(a.t.send(a.env(conv, MessageKind.COMMIT, staged.message)), 400, "invalid_commit")
    a.group.merge_staged_commit(staged)
    b.join(staged)
    await b.t.set_next_commit_group_info(conv, a.group.group_info())  # a's leaf signed it, b posts it
    await _welcome(a.t, a.dev, conv, b.dev)  # (unverified: any recipient)
    await _rejects(b.t.send(b.env(conv, MessageKind.COMMIT, staged.message, epoch=1)), 400, "invalid_commit")
    await a.t.set_next_commit_group_info(conv, a.group.group_info())
    assert await a.t.send(a.env(conv, MessageKind.COMMIT, staged.message, epoch=1)) == 2
    assert await b.t.fetch_group_info(conv) is not None
    await _rejects(a.t.send(_env(conv, a.dev.device_id, MessageKind.COMMIT, epoch=2, payload=b"opaque")), 400, "invalid_commit")
    seq, _ = await b.commit(conv)
    assert seq == 3


async def test_verified_conversation_ignores_declared_removals(backend: Backend) -> None:
    """In a verified conversation the tree says who is removed: a member that declares removals its
    Commit does not make (to cut others off the log) removes nobody."""
    conv, a, b, c = await _verified(backend)
    await a.t.set_next_commit_removals(conv, [b.dev.device_id])
    seq, staged = await a.commit(conv)
    b.group.process_message(staged.message)
    assert seq == 2
    assert await a.t.send(a.env(conv, MessageKind.APPLICATION, b"after")) == 3
    assert [e.seq for e in await b.t.fetch_since(conv, SyncCursor(), 10)] == [1, 2, 3]
    seq, _ = await b.commit(conv)
    assert seq == 4
