"""Web Push from a real ping_server process (SQLite and PostgreSQL) to the FakePushService.

What is checked, each against the server's real POSTs: subscriptions are validated (endpoint
scheme and host, p256dh on P-256, auth 16 bytes) and bounded, refusals store nothing; news (a
Welcome, an envelope) wakes the other members' subscriptions and never the sender's; a push
carries only the encrypted hint {"v": 1, "device": ...} (decrypted here with the subscriber's
private key) under a VAPID token of the server's kept key; pushes are coalesced per device;
410 deletes the subscription; revocation drops them; a push service that hangs delays no POST.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from serverproc import Inspector, ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "browser"))
from fakepush import FakePushService, FakeSubscriber, vapid_claims  # noqa: E402

from ping_core.clock import Hlc  # noqa: E402
from ping_core.cbor import dumps  # noqa: E402
from ping_core.device import LocalDevice  # noqa: E402
from ping_core.errors import InvalidInput, TransportError  # noqa: E402
from ping_core.identity import Identity  # noqa: E402
from ping_core.ids import ConversationId  # noqa: E402
from ping_core.message import MessageEnvelope, MessageKind  # noqa: E402
from ping_core.transport.http import HttpTransport  # noqa: E402
from ping_core.transport.pushwire import PushSubscription  # noqa: E402

INTERVAL = 3.0  # long beside the test's five posts, even on a loaded machine
ARGS = ("--rate-limit", "0", "--address-rate-limit", "0", "--push-allow-http-loopback", "--push-interval", str(INTERVAL))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePushService]:
    with FakePushService() as f:
        yield f


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def push_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    logs = tmp_path_factory.mktemp("push")
    db = str(logs / "push.sqlite") if request.param == "sqlite" else request.getfixturevalue("postgres_db")
    server = ServerProcess(db, *ARGS, log_dir=logs)
    yield server
    server.stop()


def _sub(s: FakeSubscriber) -> PushSubscription:
    return PushSubscription(s.endpoint, s.p256dh, s.auth)


class People:
    """Alice (device a) and Bob (devices b, b2) registered; ``conv`` made by Alice, Bob welcomed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.alice, self.bob = Identity.generate(), Identity.generate()
        self.a = LocalDevice.generate(self.alice.user_id, "a", 1)
        self.b = LocalDevice.generate(self.bob.user_id, "b", 1)
        self.b2 = LocalDevice.generate(self.bob.user_id, "b2", 1)
        self.t = {d: HttpTransport.for_device(url, d) for d in (self.a, self.b, self.b2)}
        self.conv = ConversationId.new()

    async def setup(self) -> "People":
        for dev, ident in ((self.a, self.alice), (self.b, self.bob), (self.b2, self.bob)):
            await self.t[dev].register_device(dev.info(1), ident.device_binding(dev.device_id))
        await self.post()
        return self

    async def post(self, payload: bytes = b"secret words") -> int:
        env = MessageEnvelope(self.conv, 0, MessageKind.APPLICATION, self.a.device_id, 0, Hlc(1, 0), payload)
        return await self.t[self.a].send(env)

    async def welcome(self, *devices: LocalDevice) -> None:
        ta = self.t[self.a]
        await ta.set_next_welcome_recipients(self.conv, [d.device_id for d in devices])
        await ta.send(MessageEnvelope(self.conv, 0, MessageKind.WELCOME, self.a.device_id, 0, Hlc(2, 0), b"welcome"))

    async def aclose(self) -> None:
        for t in self.t.values():
            await t.aclose()


@pytest.fixture
async def people(push_server: ServerProcess) -> AsyncIterator[People]:
    p = await People(push_server.url).setup()
    yield p
    await p.aclose()


def _count(inspector: Inspector, dev: LocalDevice | None = None) -> int:
    where = ""
    if dev is not None:
        h = dev.device_id.as_hex()
        where = f" WHERE device_id = X'{h}'" if not inspector.db.startswith("postgresql://") else f" WHERE device_id = '\\x{h}'::bytea"
    return int(inspector.scalar("SELECT COUNT(*) FROM push_subscriptions" + where))


async def test_vapid_key_kept_and_never_logged(push_server: ServerProcess, people: People) -> None:
    """The VAPID public key is a P-256 point, the same on every call and after a restart over the
    same database; the server's log holds no form of the private key."""
    key = await people.t[people.a].push_vapid_key()
    assert len(key) == 65 and key[0] == 4
    assert await people.t[people.b].push_vapid_key() == key
    assert push_server.db is not None
    private = bytes(Inspector(push_server.db)._rows("SELECT private_key FROM push_keys")[0][0])
    again = ServerProcess(push_server.db, *ARGS, log_dir=push_server.log_path.parent)
    try:
        async with HttpTransport.for_device(again.url, people.a) as t:
            assert await t.push_vapid_key() == key
    finally:
        again.stop()
    import base64

    log = push_server.log_path.read_bytes() + again.log_path.read_bytes()
    for form in (private, private.hex().encode(), base64.b64encode(private)[:40], base64.urlsafe_b64encode(private)[:40]):
        assert form not in log


@pytest.mark.parametrize(
    "endpoint,p256dh_ok,auth_len",
    [
        ("https://127.0.0.1/push/x", True, 16),  # an address, not a host: the server must not be aimed at its network
        ("https://[::1]/push/x", True, 16),
        ("https://localhost/push/x", True, 16),
        ("https://intranet/push/x", True, 16),
        ("http://push.example.com/x", True, 16),  # http only to 127.0.0.1 with the test option
        ("http://127.0.0.1/x", True, 16),  # ... and with a port
        ("ftp://push.example.com/x", True, 16),
        ("https://user:pw@push.example.com/x", True, 16),
        ("https://push.example.com/x#frag", True, 16),
        ("https://push.example.com/" + "a" * 1024, True, 16),
        ("https://push.example.com/x", False, 16),  # p256dh not a point of P-256
    ],
)
async def test_subscription_refusals_store_nothing(
    push_server: ServerProcess, people: People, endpoint: str, p256dh_ok: bool, auth_len: int
) -> None:
    inspector = Inspector(push_server.db or "")
    before = _count(inspector)
    s = FakeSubscriber(endpoint)
    p256dh = s.p256dh if p256dh_ok else b"\x04" + bytes(range(64))
    t = people.t[people.b]
    with pytest.raises((TransportError, InvalidInput)) as err:
        await t.push_subscribe(PushSubscription(endpoint, p256dh, s.auth))
    if isinstance(err.value, TransportError):
        assert (err.value.status, err.value.code) == (400, "invalid_request")
    assert _count(inspector) == before


async def test_malformed_subscribe_bodies(push_server: ServerProcess, people: People) -> None:
    """Bodies the client would never build (wrong sizes, non-ASCII endpoint, extra keys) are 400."""
    inspector = Inspector(push_server.db or "")
    before = _count(inspector)
    good = FakeSubscriber("https://push.example.com/x")
    t = people.t[people.b]
    for body in (
        {"v": 1, "endpoint": good.endpoint, "p256dh": good.p256dh, "auth": good.auth[:15]},
        {"v": 1, "endpoint": good.endpoint, "p256dh": good.p256dh[:64], "auth": good.auth},
        {"v": 1, "endpoint": "https://push.example.com/\u00e9", "p256dh": good.p256dh, "auth": good.auth},
        {"v": 1, "endpoint": good.endpoint, "p256dh": good.p256dh, "auth": good.auth, "x": 1},
        {"v": 2, "endpoint": good.endpoint, "p256dh": good.p256dh, "auth": good.auth},
    ):
        resp = await t._exchange("POST", "/v1/push/subscriptions", dumps(body), t._signer.headers(
            "POST", "/v1/push/subscriptions", dumps(body), time.time_ns() // 1_000_000), 10, 1 << 16)  # fmt: skip
        assert resp.status == 400, resp.body
    assert _count(inspector) == before


async def test_subscriptions_are_bounded_and_listed(push_server: ServerProcess, people: People) -> None:
    t = people.t[people.b]
    subs = [FakeSubscriber(f"https://push.example.com/{i}") for i in range(5)]
    for s in subs[:4]:
        await t.push_subscribe(_sub(s))
    await t.push_subscribe(_sub(subs[0]))  # a refresh of a known endpoint is no new one
    with pytest.raises(TransportError) as err:
        await t.push_subscribe(_sub(subs[4]))
    assert (err.value.status, err.value.code) == (409, "push_limit")
    assert [i.endpoint for i in await t.push_subscriptions()] == [s.endpoint for s in subs[1:4]] + [subs[0].endpoint]
    await t.push_unsubscribe(subs[1].endpoint)
    await t.push_subscribe(_sub(subs[4]))
    assert len(await t.push_subscriptions()) == 4
    await t.push_unsubscribe()
    assert await t.push_subscriptions() == []
    assert await people.t[people.a].push_subscriptions() == []  # another device's are its own


async def test_news_wakes_members_with_only_an_encrypted_hint(fake: FakePushService, push_server: ServerProcess, people: People) -> None:
    """A Welcome and then envelopes wake Bob's subscription (coalesced: one push per interval),
    never Alice's (she sent them); each push decrypts to exactly the hint, under a valid VAPID
    token for the fake's origin."""
    tag = people.b.device_id.as_hex()[:12]
    bob, alice = fake.subscriber("bob" + tag), fake.subscriber("alice" + tag)
    await people.t[people.b].push_subscribe(_sub(bob))
    await people.t[people.a].push_subscribe(_sub(alice))
    key = await people.t[people.a].push_vapid_key()
    await people.welcome(people.b)
    first = fake.wait_for("bob" + tag, 1)[0]
    for _ in range(5):  # within the interval: one more push at its end carries them all
        await people.post(b"secret words")
    fake.wait_for("bob" + tag, 2)
    # Coalesced: the five posts gave one push, not five. (No bound on the gap between arrivals:
    # the server starts the interval when it starts a push, before the POST's own latency.)
    time.sleep(INTERVAL * 1.2)
    pushes = fake.pushes("bob" + tag)
    assert len(pushes) == 2 and pushes[0] == first
    for push in pushes:
        plain = bob.decrypt(push)
        assert json.loads(plain) == {"v": 1, "device": people.b.device_id.as_hex()}
        assert b"secret words" not in push.body and people.conv.value not in push.body
        claims = vapid_claims(push, key)
        assert claims["aud"] == f"http://127.0.0.1:{fake.port}" and claims["sub"].startswith("mailto:")
        assert 0 < claims["exp"] - time.time() <= 24 * 3600
        assert push.headers["ttl"].isdigit() and push.headers["urgency"] == "high" and push.headers["topic"] == "ping"
    await people.post()  # the interval has passed since the last push: the next news is pushed at once
    fake.wait_for("bob" + tag, 3)
    assert fake.pushes("alice" + tag) == []  # the sender is never woken by its own posts
    assert len(fake.pushes("bob" + tag)) == 3


async def test_gone_subscription_is_deleted(fake: FakePushService, push_server: ServerProcess, people: People) -> None:
    inspector = Inspector(push_server.db or "")
    name = "gone" + people.b.device_id.as_hex()[:12]
    fake.status[f"/push/{name}"] = 410
    await people.t[people.b].push_subscribe(_sub(fake.subscriber(name)))
    keep = fake.subscriber("kept" + name)
    await people.t[people.b2].push_subscribe(_sub(keep))
    await people.welcome(people.b, people.b2)
    fake.wait_for(name, 1)
    fake.wait_for("kept" + name, 1)
    deadline = time.monotonic() + 10
    while _count(inspector, people.b) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(inspector, people.b) == 0 and _count(inspector, people.b2) == 1


async def test_revoked_device_loses_its_subscriptions(fake: FakePushService, push_server: ServerProcess, people: People) -> None:
    inspector = Inspector(push_server.db or "")
    name = "revoked" + people.b2.device_id.as_hex()[:12]
    await people.t[people.b2].push_subscribe(_sub(fake.subscriber(name)))
    assert _count(inspector, people.b2) == 1
    await people.t[people.b].revoke_device_remote(people.b2.device_id, people.bob.revoke(people.b2.device_id))
    assert _count(inspector, people.b2) == 0
    with pytest.raises(TransportError):
        await people.t[people.b2].push_subscribe(_sub(fake.subscriber(name)))
    assert _count(inspector, people.b2) == 0


async def test_a_hanging_push_service_delays_no_post(fake: FakePushService, push_server: ServerProcess, people: People) -> None:
    """The push service holds the server's POST open; Alice's posts are answered meanwhile."""
    held, release = threading.Event(), threading.Event()
    name = "hang" + people.b.device_id.as_hex()[:12]

    def hold() -> None:
        held.set()
        release.wait(20)

    fake.before_answer[f"/push/{name}"] = hold  # removed again below: the fake is shared by the module
    try:
        await people.t[people.b].push_subscribe(_sub(fake.subscriber(name)))
        await people.welcome(people.b)
        assert held.wait(10)
        for _ in range(3):
            await people.post()  # answered while the push is still held
        assert fake.pushes(name) == []
    finally:
        release.set()
        del fake.before_answer[f"/push/{name}"]
    fake.wait_for(name, 1)


async def test_schema_5_is_migrated(tmp_path: Path) -> None:
    """A schema-5 database (no push tables) opens as schema 6 with both tables, empty, and its
    data untouched."""
    import sqlite3

    from ping_server.db import SCHEMA_VERSION, open_database

    path = str(tmp_path / "v5.sqlite")
    db = open_database(path)
    await db.run(lambda tx: tx.execute("INSERT INTO counters (name, value) VALUES ('probe', 7)"))
    await db.close()
    lite = sqlite3.connect(path)
    lite.executescript("DROP TABLE push_subscriptions; DROP TABLE push_keys; UPDATE ping_meta SET value = '5' WHERE name = 'schema';")
    lite.close()
    db = open_database(path)
    try:
        assert SCHEMA_VERSION == "6"
        assert await db.run(lambda tx: tx.one("SELECT value FROM ping_meta WHERE name = 'schema'")) == ("6",)
        assert await db.run(lambda tx: tx.one("SELECT COUNT(*) FROM push_subscriptions")) == (0,)
        assert await db.run(lambda tx: tx.one("SELECT COUNT(*) FROM push_keys")) == (0,)
        assert await db.run(lambda tx: tx.one("SELECT value FROM counters WHERE name = 'probe'")) == (7,)
    finally:
        await db.close()
