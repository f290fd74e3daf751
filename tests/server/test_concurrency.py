"""Concurrent requests through real HTTP: one SQLite server, one PostgreSQL server, and two server
processes sharing one PostgreSQL database (each device talks to its own process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from serverproc import ServerProcess

from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.errors import TransportError
from ping_core.identity import Identity
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor
from ping_core.transport.http import HttpTransport


class Cluster:
    """Server URLs; device ``i`` talks to ``urls[i % len(urls)]``."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.transports: list[HttpTransport] = []

    async def devices(self, n: int) -> list[tuple[LocalDevice, HttpTransport]]:
        out = []
        for i in range(n):
            ident = Identity.generate()
            dev = LocalDevice.generate(ident.user_id, f"d{i}", 1)
            t = HttpTransport.for_device(self.urls[i % len(self.urls)], dev)
            self.transports.append(t)
            await t.register_device(dev.info(1), ident.device_binding(dev.device_id))
            out.append((dev, t))
        return out

    async def aclose(self) -> None:
        for t in self.transports:
            await t.aclose()


@pytest.fixture(params=["sqlite", "postgres", "postgres-2-processes"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    if request.param == "sqlite":
        urls = [request.getfixturevalue("sqlite_server").url]
    elif request.param == "postgres":
        urls = [request.getfixturevalue("postgres_server").url]
    else:
        first: ServerProcess = request.getfixturevalue("postgres_server")
        second: ServerProcess = request.getfixturevalue("postgres_server_2")
        urls = [first.url, second.url]
    c = Cluster(urls)
    yield c
    await c.aclose()


def _env(conv: ConversationId, dev: LocalDevice, kind: MessageKind, epoch: int, payload: bytes = b"x") -> MessageEnvelope:
    return MessageEnvelope(conv, epoch, kind, dev.device_id, 0, Hlc(1, 0), payload)


async def _shared_conversation(members: list[tuple[LocalDevice, HttpTransport]]) -> ConversationId:
    conv = ConversationId.new()
    creator, t = members[0]
    await t.send(_env(conv, creator, MessageKind.APPLICATION, 0, b"hello"))
    await t.set_next_welcome_recipients(conv, [d.device_id for d, _ in members[1:]])
    await t.send(_env(conv, creator, MessageKind.WELCOME, 0))
    return conv


async def test_two_commits_for_one_epoch_exactly_one_wins(cluster: Cluster) -> None:
    (a, ta), (b, tb) = await cluster.devices(2)
    conv = await _shared_conversation([(a, ta), (b, tb)])
    rounds = 30
    winners = []
    for epoch in range(rounds):
        results = await asyncio.gather(
            ta.send(_env(conv, a, MessageKind.COMMIT, epoch, b"a%d" % epoch)),
            tb.send(_env(conv, b, MessageKind.COMMIT, epoch, b"b%d" % epoch)),
            return_exceptions=True,
        )
        wins = [r for r in results if isinstance(r, int)]
        losses = [r for r in results if isinstance(r, TransportError)]
        assert len(wins) == 1 and len(losses) == 1, results
        assert (losses[0].status, losses[0].code) == (409, "epoch_advanced")
        winners.append(b"a" if results[0] == wins[0] else b"b")
    print("winners:", b"".join(winners).decode())
    log = await ta.fetch_since(conv, SyncCursor(1), 1000)
    assert [(e.kind, e.epoch) for e in log] == [(MessageKind.COMMIT, e) for e in range(rounds)]
    assert [e.seq for e in log] == list(range(2, rounds + 2))
    assert [e.payload[:1] for e in log] == winners
    # Both devices now agree on the next epoch: the loser's retry for it is accepted.
    assert await tb.send(_env(conv, b, MessageKind.COMMIT, rounds)) == rounds + 2


async def test_concurrent_appends_are_gapless_and_ordered(cluster: Cluster) -> None:
    members = await cluster.devices(8)
    conv = await _shared_conversation(members)
    per_device = 25

    async def talk(i: int) -> list[int]:
        dev, t = members[i]
        return [await t.send(_env(conv, dev, MessageKind.APPLICATION, 0, bytes([i, n]))) for n in range(per_device)]

    seqs = await asyncio.gather(*(talk(i) for i in range(len(members))))
    flat = sorted(s for device_seqs in seqs for s in device_seqs)
    assert flat == list(range(2, 2 + len(members) * per_device))  # every seq once, no gap
    for device_seqs in seqs:
        assert device_seqs == sorted(device_seqs)
    log = []
    cursor = SyncCursor()
    while True:
        page = await members[3][1].fetch_since(conv, cursor, 37)
        log.extend(page)
        if len(page) < 37:
            break
        cursor = SyncCursor(page[-1].seq)
    assert [e.seq for e in log] == list(range(1, 2 + len(members) * per_device))
    for i in range(len(members)):
        mine = [e.payload[1] for e in log[1:] if e.payload[0] == i]
        assert mine == list(range(per_device))  # each sender's messages in its order


async def test_concurrent_claims_hand_out_each_key_package_once(cluster: Cluster) -> None:
    devices = await cluster.devices(9)
    owner, t_owner = devices[0]
    kps = [b"kp-%03d" % i for i in range(60)]
    await t_owner.publish_key_packages(kps[:30])
    await t_owner.publish_key_packages(kps[30:], last_resort=b"last")

    async def claim(t: HttpTransport) -> list[bytes]:
        got: list[bytes] = []
        for _ in range(3):
            got += await t.claim_device_key_packages(owner.device_id, 3)
        return got

    results = await asyncio.gather(*(claim(t) for _, t in devices[1:]))
    claimed = [kp for r in results for kp in r]
    one_time = [kp for kp in claimed if kp != b"last"]
    assert len(claimed) == 8 * 9
    assert sorted(one_time) == kps  # every one-time KeyPackage handed out exactly once
    assert claimed.count(b"last") == 8 * 9 - 60


async def test_concurrent_welcomes_to_one_inbox(cluster: Cluster) -> None:
    devices = await cluster.devices(7)
    target, t_target = devices[0]
    senders = devices[1:]

    async def welcome(i: int) -> None:
        dev, t = senders[i]
        for n in range(5):
            conv = ConversationId.new()
            await t.set_next_welcome_recipients(conv, [target.device_id])
            await t.send(_env(conv, dev, MessageKind.WELCOME, 0, bytes([i, n])))

    await asyncio.gather(*(welcome(i) for i in range(len(senders))))
    inbox = await t_target.fetch_welcomes()
    assert [e.seq for e in inbox] == list(range(1, 1 + 5 * len(senders)))
    assert sorted(e.payload for e in inbox) == sorted(bytes([i, n]) for i in range(len(senders)) for n in range(5))


@pytest.fixture(scope="module")
def slow_polling_pair(postgres_db: str, server_logs: Any) -> Iterator[list[ServerProcess]]:
    """Two processes on one PostgreSQL database whose long polls re-read only every 30 s."""
    servers = [ServerProcess(postgres_db, "--rate-limit", "0", "--poll-interval", "30", log_dir=server_logs) for _ in range(2)]
    yield servers
    for s in servers:
        s.stop()


async def test_long_poll_wakes_on_another_process_append(slow_polling_pair: list[ServerProcess]) -> None:
    """LISTEN/NOTIFY carries an append made through one process to a long poll held by the other."""
    cluster = Cluster([s.url for s in slow_polling_pair])
    try:
        (a, ta), (b, tb) = await cluster.devices(2)  # a talks to the first process, b to the second
        conv = await _shared_conversation([(a, ta), (b, tb)])

        async def later() -> None:
            await asyncio.sleep(0.3)
            await tb.send(_env(conv, b, MessageKind.APPLICATION, 0, b"across"))

        poster = asyncio.create_task(later())
        start = asyncio.get_running_loop().time()
        got = await ta.fetch_since(conv, SyncCursor(1), 10, wait_ms=20_000)
        elapsed = asyncio.get_running_loop().time() - start
        await poster
        assert [e.payload for e in got] == [b"across"]
        assert elapsed < 5, elapsed  # not the 30 s re-read
    finally:
        await cluster.aclose()


async def test_watch_wakes_on_another_process_append_and_welcome(slow_polling_pair: list[ServerProcess]) -> None:
    """A watch held by one process wakes on an append and on a Welcome made through the other
    (the Welcome's inbox key travels by the same NOTIFY channel as appends)."""
    cluster = Cluster([s.url for s in slow_polling_pair])
    try:
        (a, ta), (b, tb) = await cluster.devices(2)  # a talks to the first process, b to the second
        conv = await _shared_conversation([(a, ta), (b, tb)])
        other = ConversationId.new()
        await tb.send(_env(other, b, MessageKind.APPLICATION, 0, b"b alone"))

        async def later(step: Any) -> None:
            await asyncio.sleep(0.3)
            await step

        loop = asyncio.get_running_loop()
        poster = asyncio.create_task(later(tb.send(_env(conv, b, MessageKind.APPLICATION, 0, b"across"))))
        start = loop.time()
        got = await ta.watch({conv: 1}, wait_ms=20_000)
        await poster
        assert got.heads == {conv: 2} and loop.time() - start < 5  # not the 30 s re-read

        await tb.set_next_welcome_recipients(other, [a.device_id])
        poster = asyncio.create_task(later(tb.send(_env(other, b, MessageKind.WELCOME, 0))))
        start = loop.time()
        got = await ta.watch({conv: 2}, wait_ms=20_000)
        await poster
        assert got.welcomes and not got.heads and loop.time() - start < 5
    finally:
        await cluster.aclose()
