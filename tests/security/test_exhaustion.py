"""Exhaustion attacks on a real ``ping_server`` process on loopback (one test per finding of the
attack review, items 1-6), each with bounded loops and deadlines. Every test states the bound it
measures; each failed against the server before these limits existed.

Attackers here use hand-made devices (``Dev``: an ``HttpTransport`` of their own) or raw sockets;
honest users are unmodified clients made by ``ping_core.connect`` (the ``clients`` fixture).
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from .support import ClientFactory, Server

from ping_core.client import MessagingClient
from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.errors import TransportError
from ping_core.identity import Identity
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor
from ping_core.transport import wire
from ping_core.transport.http import ConnectionPool, HttpTransport
from ping_server.process import stop

REPO = Path(__file__).resolve().parents[2]


def _now() -> int:
    return time.time_ns() // 1_000_000


class Dev:
    """A device of ``identity`` with its own transport (an attacker's or a bystander's)."""

    def __init__(self, url: str, identity: Identity, pool: ConnectionPool, label: str = "d") -> None:
        self.identity = identity
        self.local = LocalDevice.generate(identity.user_id, label, 1)
        self.id = self.local.device_id
        self.t = HttpTransport(url, self.local.signing_secret, pool=pool, rate_limit_retries=0)

    async def register(self) -> Dev:
        await self.t.register_device(self.local.info(1), self.identity.device_binding(self.id))
        return self

    def env(self, conv: ConversationId, kind: MessageKind = MessageKind.APPLICATION, payload: bytes = b"x") -> MessageEnvelope:
        return MessageEnvelope(conv, 0, kind, self.id, 0, Hlc(_now(), 0), payload)

    async def welcome(self, conv: ConversationId, *to: Dev, payload: bytes = b"welcome") -> None:
        await self.t.set_next_welcome_recipients(conv, [d.id for d in to])
        await self.t.send(self.env(conv, MessageKind.WELCOME, payload))


@pytest.fixture
async def pool() -> Iterator[ConnectionPool]:
    p = ConnectionPool(max_idle_per_host=64)
    yield p
    await p.aclose()


async def _devices(url: str, pool: ConnectionPool, identity: Identity, n: int) -> list[Dev]:
    out: list[Dev] = []
    for start in range(0, n, 25):  # 25 registrations in flight at a time
        batch = [Dev(url, identity, pool, f"d{i}") for i in range(start, min(n, start + 25))]
        await asyncio.gather(*(d.register() for d in batch))
        out.extend(batch)
    return out


async def _join_invitations(client: MessagingClient) -> None:
    """What an app does with its Welcome inbox (the SDK leaves it to the app): join, acknowledge."""
    welcomes = await client.transport.fetch_welcomes()
    for env in welcomes:
        await client.join_conversation(env, _now())
    if welcomes:
        await client.transport.ack_welcomes(welcomes[-1].seq)


def _files_size(db: str) -> int:
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))


def _db(db: str, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# 1. One Welcome to 1,000 recipients


async def test_a_welcome_to_1000_recipients_stores_its_payload_once(server: Server, pool: ConnectionPool) -> None:
    """A 256 KiB Welcome to 1,000 devices stores its payload once: 1 ``welcome_payloads`` row
    of 256 KiB + 131 bytes (the envelope) and 1,000 inbox rows; the database files grow by less than
    4 MiB (about 1.1 MiB; the old server wrote the payload 1,000 times: 256 MiB). Each recipient still downloads
    the whole Welcome with its own inbox seq; the payload goes when the last recipient drops it."""
    alice = await Dev(server.url, Identity.generate(), pool, "alice").register()
    recipients = await _devices(server.url, pool, Identity.generate(), 1000)
    conv = ConversationId.new()
    payload = secrets.token_bytes(256 * 1024)
    before = _files_size(server.db)
    async with asyncio.timeout(60):
        await alice.welcome(conv, *recipients, payload=payload)
    grown = _files_size(server.db) - before
    # 1,000 inbox rows and their index entries, the payload once, WAL pages: about 1.1 MiB here.
    assert grown < 4 * 1024 * 1024, f"the database grew by {grown} bytes"
    rows = _db(server.db, "SELECT refs, size FROM welcome_payloads")
    assert len(rows) == 1 and rows[0][0] == 1000 and 256 * 1024 < int(rows[0][1]) < 256 * 1024 + 200  # type: ignore[call-overload]
    assert _db(server.db, "SELECT COUNT(*) FROM welcomes")[0][0] == 1000
    for dev in (recipients[0], recipients[499], recipients[-1]):
        (got,) = await dev.t.fetch_welcomes()
        assert (got.payload, got.seq, got.conversation_id, got.sender_device) == (payload, 1, conv, alice.id)
    async with asyncio.timeout(60):
        await asyncio.gather(*(d.t.ack_welcomes(1) for d in recipients[:-1]))
    assert _db(server.db, "SELECT refs FROM welcome_payloads") == [(1,)]
    await recipients[-1].t.leave_conversation(conv)  # the last reference goes: so does the payload
    assert _db(server.db, "SELECT COUNT(*) FROM welcome_payloads") == [(0,)]


# ---------------------------------------------------------------------------
# 2. Draining one-time KeyPackages


async def test_a_stranger_cannot_drain_key_packages(server_factory: Callable[..., Server], clients: ClientFactory, pool: ConnectionPool) -> None:
    """Bob's device publishes 20 one-time KeyPackages (``connect``). A stranger claiming 50 times
    per account and 10 x 100 per device gets 4 one-time KeyPackages, everything else is the
    last-resort one; 10 more stranger accounts together get 16 in all (the per-device window
    limit); 4 stay in the pool (the old server handed out all 20 in one call). An honest invite
    still works (it gets the last-resort KeyPackage)."""
    server = server_factory("--rate-limit", "0", "--address-rate-limit", "0")
    bob = await clients(server, "bob")
    alice = await clients(server, "alice")
    counts = collections.Counter[bytes]()
    async with asyncio.timeout(60):
        mallory = await Dev(server.url, Identity.generate(), pool, "mallory").register()
        for _ in range(50):
            for _dev, kp in await mallory.t.claim_key_packages(bob.user_id()):
                counts[kp] += 1
        for _ in range(10):
            counts.update(await mallory.t.claim_device_key_packages(bob.device_id(), 100))
        last_resort = counts.most_common(1)[0][0]
        assert len(set(counts) - {last_resort}) == 4
        for i in range(10):
            sybil = await Dev(server.url, Identity.generate(), pool, f"sybil{i}").register()
            counts.update(await sybil.t.claim_device_key_packages(bob.device_id(), 100))
    one_time = set(counts) - {last_resort}
    assert len(one_time) == 16 and all(counts[kp] == 1 for kp in one_time)
    assert (await bob.transport.key_package_count()).unclaimed == 4  # type: ignore[attr-defined]
    # The honest invite: alice adds bob, bob joins and reads.
    async with asyncio.timeout(60):
        conv = await alice.create_conversation("lunch", _now())
        await alice.add_members(conv, await alice.transport.claim_key_packages(bob.user_id()), _now())
        await alice.send(conv, b"hi bob", _now())
        await _join_invitations(bob)
        got = await bob.sync_conversations(_now())
    assert [m.plaintext for m in got if m.conversation_id == conv] == [b"hi bob"]


# ---------------------------------------------------------------------------
# 3. Filling a Welcome inbox, spam memberships


async def test_strangers_cannot_fill_an_inbox_and_invitations_can_be_declined(server: Server, pool: ConnectionPool) -> None:
    """150 Welcomes from 15 stranger accounts to one device: 100 are delivered (10 per account at
    most, 100 from all strangers together), the other 50 are refused 409 ``invite_limit`` (the old
    server delivered all 150, and would have taken 1,000). A friend's Welcome still arrives. Each
    spam Welcome made a pending membership; leaving declines it: the Welcome is dropped and the
    conversation is closed to the device (403)."""
    bob = await Dev(server.url, Identity.generate(), pool, "bob").register()
    alice = await Dev(server.url, Identity.generate(), pool, "alice").register()
    friends = ConversationId.new()
    await alice.t.send(alice.env(friends))
    await alice.welcome(friends, bob)
    assert len(await bob.t.fetch_since(friends, SyncCursor(), 10)) == 1  # bob accepted: alice is a friend
    await bob.t.ack_welcomes(1)
    delivered: dict[int, int] = {}
    spam: list[ConversationId] = []
    refused = 0
    async with asyncio.timeout(60):
        for s in range(15):
            mallory = await Dev(server.url, Identity.generate(), pool, f"spammer{s}").register()
            delivered[s] = 0
            for _ in range(10):
                conv = ConversationId.new()
                try:
                    await mallory.welcome(conv, bob, payload=b"buy now " * 100)
                except TransportError as exc:
                    assert (exc.status, exc.code) == (409, "invite_limit"), repr(exc)
                    refused += 1
                else:
                    delivered[s] += 1
                    spam.append(conv)
    assert sum(delivered.values()) == 100 and refused == 50 and max(delivered.values()) == 10
    await alice.welcome(friends, bob, payload=b"from a friend")  # not limited
    inbox = await bob.t.fetch_welcomes()
    assert len(inbox) == 101 and inbox[-1].payload == b"from a friend"
    async with asyncio.timeout(60):
        for conv in spam:
            await bob.t.leave_conversation(conv)
    assert [e.payload for e in await bob.t.fetch_welcomes()] == [b"from a friend"]
    for conv in spam[:5]:
        with pytest.raises(TransportError) as err:
            await bob.t.fetch_since(conv, SyncCursor(), 10)
        assert err.value.status == 403


# ---------------------------------------------------------------------------
# 4. Slow and parallel unauthenticated bodies


async def _raw(url: str, head: list[str], body: bytes = b"", *, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, local_addr=(source, 0))
    writer.write(("\r\n".join([*head, f"host: {parts.netloc}", "", ""])).encode("latin-1") + body)
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
    """Status, headers, and whether the server closed the connection after the answer (read to
    the end of the connection, or to its reset: a slow upload's writes after the server's answer
    make the kernel reset it, and the answer is what had arrived by then)."""
    data = b""
    closed = False
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if len(rest) >= int(headers.get("content-length", "0")) and (closed or headers.get("connection") != "close"):
                return int(lines[0].split()[1]), headers, closed
        if closed:
            raise ConnectionError(f"the connection ended before a whole answer: {data[:200]!r}")
        try:
            chunk = await reader.read(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
            data += bytes(reader._buffer)  # what had arrived before the reset
        if not chunk:
            closed = True
        data += chunk


def _signed_head(dev: Dev, method: str, target: str, body: bytes, *extra: str) -> list[str]:
    signer = wire.RequestSigner(dev.local.signing_secret)
    headers = signer.headers(method, target, body, _now())
    return [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), *extra]


async def test_slow_and_parallel_bodies_are_bounded(server_factory: Callable[..., Server], pool: ConnectionPool) -> None:
    """With ``--body-timeout 1 --max-pending 6 --max-pending-per-address 4``: four uploads that
    dribble their body from 127.0.0.1 hold that address's four slots; a fifth request from it is
    refused at once (429 with Retry-After) while a registered device at 127.0.0.2 is served; the
    slow ones are answered 408 and their connections closed within the 1 s deadline (+1 s); then
    127.0.0.1 is served again. Six slow uploads from six addresses fill the server-wide bound: a
    seventh address is refused 429 until they time out. (The old server waited for slow bodies
    forever and read any number of them at once.)"""
    server = server_factory("--rate-limit", "0", "--address-rate-limit", "0", "--body-timeout", "1",
                            "--max-pending", "6", "--max-pending-per-address", "4")  # fmt: skip
    honest = await Dev(server.url, Identity.generate(), pool, "honest").register()
    cid = ConversationId.new()
    target = f"/v1/conversations/{cid.as_hex()}/messages"
    stop = asyncio.Event()

    async def slow(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]]:
        reader, writer = await _raw(server.url, _signed_head(honest, "POST", target, b"", "content-length: 100000"), b"\x00", source=source)

        async def dribble() -> None:
            while not stop.is_set() and not writer.is_closing() and not reader._buffer and not reader.at_eof():
                await asyncio.sleep(0.1)
                writer.write(b"\x00")

        return reader, writer, asyncio.create_task(dribble())

    ack = wire.ack_welcomes_request(0)

    async def quick(source: str) -> int:
        """A registered device's signed request with a (small) body, from ``source``."""
        head = _signed_head(honest, "POST", ack.target, ack.body, f"content-length: {len(ack.body)}")
        reader, writer = await _raw(server.url, head, ack.body, source=source)
        try:
            status, headers, _ = await _answer(reader)
            if status == 429:
                assert int(headers["retry-after"]) >= 1
            return 200 if status == 204 else status
        finally:
            writer.close()

    try:
        async with asyncio.timeout(30):
            uploads = [await slow("127.0.0.1") for _ in range(4)]
            await asyncio.sleep(0.3)
            assert await quick("127.0.0.1") == 429
            assert await quick("127.0.0.2") == 200
            started = time.monotonic()
            for reader, _w, _t in uploads:
                status, headers, closed = await _answer(reader)
                assert (status, headers.get("connection"), closed) == (408, "close", True)
            assert time.monotonic() - started < 2.0
            assert await quick("127.0.0.1") == 200
            uploads = [await slow(f"127.0.0.{10 + i}") for i in range(6)]
            await asyncio.sleep(0.3)
            assert await quick("127.0.0.30") == 429
            for reader, _w, _t in uploads:
                assert (await _answer(reader))[0] == 408
            assert await quick("127.0.0.30") == 200
    finally:
        stop.set()


# ---------------------------------------------------------------------------
# 5. Junk from one address and the honest devices behind it


async def test_junk_from_an_address_never_locks_out_its_honest_devices(server_factory: Callable[..., Server], clients: ClientFactory) -> None:
    """With the default address budget (burst 100, 10/s): 150 registrations with a malformed body
    from 127.0.0.1 (answered 400) are charged to it, so the last ones get 429 (the old server
    parsed the body first and never charged a 400). Then, while junk keeps coming from 127.0.0.1 (up to 3,000
    requests: unsigned, badly signed, unknown devices, 400s), two honest clients on that address
    create a conversation, invite, send and receive at once; no honest request is refused (the
    old server refused them all 429 after 105 junk requests)."""
    server = server_factory()  # default limits
    alice = await clients(server, "alice")
    bob = await clients(server, "bob")
    stranger = Dev(server.url, Identity.generate(), ConnectionPool(), "junk")  # never registered
    statuses = collections.Counter[int]()

    async def send_junk(kind: int) -> None:
        path = "/v1/welcomes?after=0"
        body = b""
        if kind == 0:  # a registration whose body is not a registration: 400
            body = b"\xa1\x61v\x01"
            head = [*_signed_head(stranger, "POST", "/v1/devices", body), f"content-length: {len(body)}"]
        elif kind == 1:  # no authentication headers
            head = [f"GET {path} HTTP/1.1"]
        elif kind == 2:  # a bad signature
            head = [line if not line.startswith(wire.HEADER_SIGNATURE) else f"{wire.HEADER_SIGNATURE}: {'00' * 64}"
                    for line in _signed_head(stranger, "GET", path, b"")]  # fmt: skip
        else:  # a device that is not registered
            head = _signed_head(stranger, "GET", path, b"")
        try:
            reader, writer = await _raw(server.url, [*head, "connection: close"], body)
            try:
                statuses[(await _answer(reader))[0]] += 1
            finally:
                writer.close()
        except (ConnectionError, OSError):
            statuses[0] += 1

    async with asyncio.timeout(60):
        for _ in range(150):  # 400s alone spend the budget (at 10/s, a few come back during the loop)
            await send_junk(0)
    assert statuses[400] >= 90 and statuses[429] >= 40, statuses
    stop = asyncio.Event()
    sent = [0]

    async def junk() -> None:
        while not stop.is_set() and sent[0] < 3000:
            sent[0] += 1
            await send_junk(sent[0] % 4)

    flood = [asyncio.create_task(junk()) for _ in range(8)]
    try:
        await asyncio.sleep(0.5)
        async with asyncio.timeout(30):
            conv = await alice.create_conversation("despite the flood", _now())
            await alice.add_members(conv, await alice.transport.claim_key_packages(bob.user_id()), _now())
            for i in range(5):
                await alice.send(conv, b"message %d" % i, _now())
            await _join_invitations(bob)
            got = await bob.sync_conversations(_now())
            await bob.send(conv, b"got them", _now())
            back = await alice.sync_conversations(_now())
    finally:
        stop.set()
        await asyncio.gather(*flood)
    assert [m.plaintext for m in got if m.conversation_id == conv] == [b"message %d" % i for i in range(5)]
    assert [m.plaintext for m in back] == [b"got them"]
    assert sent[0] >= 100 and statuses[429] >= sent[0] // 2, (sent, statuses)


# ---------------------------------------------------------------------------
# 6. Long-poll watches of unknown conversations


_COUNTING_SERVER = """
import os, sys, threading, time
import ping_server.db.sqlite as db
count = [0]
for name in ("execute", "executemany", "query", "one"):
    def wrap(self, *args, _orig=getattr(db._SqliteTx, name), **kw):
        count[0] += 1
        return _orig(self, *args, **kw)
    setattr(db._SqliteTx, name, wrap)
out = sys.argv[1]
def dump():
    while True:
        with open(out + ".tmp", "w") as f:
            f.write(str(count[0]))
        os.replace(out + ".tmp", out)
        time.sleep(0.05)
threading.Thread(target=dump, daemon=True).start()
from ping_server.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


class CountingServer:
    """``ping_server`` in a process whose SQLite statements are counted (a counting wrapper
    around its transaction object; the count is written to a file every 50 ms)."""

    def __init__(self, folder: Path) -> None:
        self.count_file = folder / "statements"
        cmd = [sys.executable, "-c", _COUNTING_SERVER, str(self.count_file), "--host", "127.0.0.1", "--port", "0",
               "--db", str(folder / "counted.sqlite"), "--dist", str(folder / "none"), "--rate-limit", "0",
               "--address-rate-limit", "0", "--log-level", "warning", "--no-access-log"]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                m = re.search(rb"listening on (http://\S+)", raw)
                if m:
                    found.append(m.group(1).decode())
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(30)
        if not found:
            self.stop()
            raise RuntimeError("the counting server did not start")
        self.url = found[0]

    async def statements(self) -> int:
        await asyncio.sleep(0.12)  # the next dump
        return int(self.count_file.read_text())

    def stop(self) -> None:
        stop(self.proc)


async def test_watches_of_unknown_conversations_are_not_reread(tmp_path: Path, pool: ConnectionPool) -> None:
    """20 long-polling watches, each naming 999 conversation ids nobody posted to and one of its
    own, held 2 s (re-read every 0.5 s): at most 200 SQL statements in all while they wait (two
    per re-read, whatever the number of ids); the old server ran one SELECT per unknown id per
    re-read, 80,000 here. A conversation named by a watch still wakes it when it is created."""
    server = CountingServer(tmp_path)
    try:
        watchers = []
        for i in range(20):
            dev = await Dev(server.url, Identity.generate(), pool, f"w{i}").register()
            mine = ConversationId.new()
            await dev.t.send(dev.env(mine))
            watchers.append((dev, {mine: 1, **{ConversationId.new(): 0 for _ in range(999)}}))
        async with asyncio.timeout(30):
            tasks = [asyncio.create_task(dev.t.watch(positions, wait_ms=10_000)) for dev, positions in watchers]
            await asyncio.sleep(0.5)  # every watch has made its first read
            before = await server.statements()
            await asyncio.sleep(2.0)
            during = await server.statements() - before
            assert during <= 200, f"{during} statements in 2 s"
            # Creating a conversation one of them names wakes that watch at once.
            dev, positions = watchers[0]
            fresh = next(cid for cid, seq in positions.items() if seq == 0)
            await dev.t.send(dev.env(fresh))
            assert (await tasks[0]).heads == {fresh: 1}
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks[1:], return_exceptions=True)
    finally:
        server.stop()
