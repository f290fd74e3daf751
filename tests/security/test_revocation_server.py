"""Revocation that holds at a real ``ping_server`` process (issue 10): only the account key's
signed statement (``Identity.revoke``) revokes a device, whichever device of the account delivers
it; a revoked device is refused with 403 ``device_revoked`` on every route and can never register
again; the statements are served to anyone registered; a device replaces its stale KeyPackages in
one step.

Devices here hold only their ``DeviceBinding`` (the account key stays with the test, as it stays
with the devices the user chose): each is a raw ``HttpTransport`` plus a registration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.errors import TransportError
from ping_core.identity import DeviceRevocation, Identity
from ping_core.ids import ConversationId, DeviceId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor
from ping_core.transport import DEVICE_REVOKED, KeyPackageCount, wire
from ping_core.transport.http import ConnectionPool, HttpTransport

from .support import Server


def _now() -> int:
    return time.time_ns() // 1_000_000


class Dev:
    """A registered device of ``identity`` that holds only its binding (and its own transport)."""

    def __init__(self, url: str, identity: Identity, pool: ConnectionPool, label: str = "d") -> None:
        self.local = LocalDevice.generate(identity.user_id, label, 1)
        self.id = self.local.device_id
        self.binding = identity.device_binding(self.id)
        self.t = HttpTransport(url, self.local.signing_secret, pool=pool, rate_limit_retries=0)

    async def register(self) -> Dev:
        await self.t.register_device(self.local.info(1), self.binding)
        return self

    def env(self, conv: ConversationId, kind: MessageKind = MessageKind.APPLICATION, epoch: int = 0) -> MessageEnvelope:
        return MessageEnvelope(conv, epoch, kind, self.id, 0, Hlc(_now(), 0), b"x")


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    p = ConnectionPool(max_idle_per_host=16)
    yield p
    await p.aclose()


async def _refused(call: Awaitable[object], status: int, code: str) -> None:
    with pytest.raises(TransportError) as err:
        await call
    assert (err.value.status, err.value.code) == (status, code), repr(err.value)


async def _works(dev: Dev, conv: ConversationId) -> None:
    """``dev`` is a registered, non-revoked member of ``conv`` with its KeyPackages."""
    assert len(await dev.t.fetch_since(conv, SyncCursor(), 10)) >= 1
    assert (await dev.t.key_package_count()).unclaimed >= 1


async def test_a_sibling_without_the_statement_cannot_revoke(server: Server, pool: ConnectionPool) -> None:
    """A device of the account that does not hold the account key (here: a stolen or rogue one)
    cannot revoke its siblings: not the old way (``DELETE``, which revoked any sibling before), not
    with a forged statement, not with the account's statement about another device, not with
    another account's statement; a device of another account cannot deliver even the right
    statement. Nothing is stored by any of them."""
    alice, mallory = Identity.generate(), Identity.generate()
    rogue = await Dev(server.url, alice, pool, "rogue").register()
    victim = await Dev(server.url, alice, pool, "victim").register()
    outsider = await Dev(server.url, mallory, pool, "outsider").register()
    conv = ConversationId.new()
    await victim.t.send(victim.env(conv))
    await victim.t.publish_key_packages([b"kp-1", b"kp-2"], last_resort=b"kp-last")

    await _refused(rogue.t._request(wire.WireRequest("DELETE", f"{wire.API_PREFIX}/devices/{victim.id.as_hex()}")), 403, "forbidden")
    good = alice.revoke(victim.id)
    forged = DeviceRevocation(good.user_id, good.user_public_key, victim.id, bytes(64))
    tampered = DeviceRevocation(good.user_id, good.user_public_key, victim.id, good.signature[:-1] + bytes([good.signature[-1] ^ 0x80]))
    # The binding's signature is the account's too, over another label: not a revocation.
    as_binding = DeviceRevocation(victim.binding.user_id, victim.binding.user_public_key, victim.id, victim.binding.signature)
    for statement in (forged, tampered, as_binding, mallory.revoke(victim.id)):
        await _refused(rogue.t.revoke_device_remote(victim.id, statement), 403, "forbidden")
    await _refused(rogue.t.revoke_device_remote(victim.id, alice.revoke(rogue.id)), 400, "invalid_request")
    await _refused(outsider.t.revoke_device_remote(victim.id, good), 403, "forbidden")

    await _works(victim, conv)
    assert [d.device_id for d in await outsider.t.list_devices(alice.user_id)] == [rogue.id, victim.id]
    assert await outsider.t.list_revocations(alice.user_id) == []


async def test_the_accounts_statement_revokes_everywhere(server: Server, pool: ConnectionPool) -> None:
    """The account's statement, delivered by any device of the account (which holds no account
    key), revokes: the revoked device is then refused 403 ``device_revoked`` on every route,
    including a watch and a long poll already waiting, and its id can never register again; the
    statement is served to any registered device, newest first, and verifies."""
    alice, bob = Identity.generate(), Identity.generate()
    phone = await Dev(server.url, alice, pool, "phone").register()
    laptop = await Dev(server.url, alice, pool, "laptop").register()
    tablet = await Dev(server.url, alice, pool, "tablet").register()
    b = await Dev(server.url, bob, pool, "bob").register()
    conv = ConversationId.new()
    await phone.t.send(phone.env(conv))
    await phone.t.set_next_welcome_recipients(conv, [laptop.id, b.id])
    await phone.t.send(phone.env(conv, MessageKind.WELCOME))
    await laptop.t.ack_welcomes((await laptop.t.fetch_welcomes())[-1].seq)
    await laptop.t.publish_key_packages([b"kp"], last_resort=b"last")

    # The laptop is waiting when its revocation arrives.
    watching = asyncio.create_task(laptop.t.watch({conv: 1}, wait_ms=10_000))
    polling = asyncio.create_task(laptop.t.fetch_since(conv, SyncCursor(1), 10, wait_ms=10_000))
    await asyncio.sleep(0.3)
    statement = alice.revoke(laptop.id)
    await tablet.t.revoke_device_remote(laptop.id, statement)
    await phone.t.revoke_device_remote(laptop.id, statement)  # again, by another device: succeeds, changes nothing
    for task in (watching, polling):
        await _refused(asyncio.wait_for(task, 10), 403, DEVICE_REVOKED)

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: laptop.t.send(laptop.env(conv)),
        lambda: laptop.t.send(laptop.env(conv, MessageKind.COMMIT)),
        lambda: laptop.t.fetch_since(conv, SyncCursor(), 10),
        lambda: laptop.t.watch({conv: 0}),
        lambda: laptop.t.watch({}, wait_ms=200),
        lambda: laptop.t.fetch_welcomes(),
        lambda: laptop.t.ack_welcomes(10),
        lambda: laptop.t.leave_conversation(conv),
        lambda: laptop.t.list_devices(alice.user_id),
        lambda: laptop.t.list_revocations(bob.user_id),  # only its own account's (below)
        lambda: laptop.t.publish_key_packages([b"again"]),
        lambda: laptop.t.publish_key_packages([b"again"], replace=True),
        lambda: laptop.t.key_package_count(),
        lambda: laptop.t.claim_key_packages(bob.user_id),
        lambda: laptop.t.claim_device_key_packages(b.id, 1),
        lambda: laptop.t.revoke_device_remote(phone.id, alice.revoke(phone.id)),
        lambda: laptop.t.revoke_device_remote(laptop.id, statement),
        lambda: laptop.t._request(wire.WireRequest("DELETE", f"{wire.API_PREFIX}/devices/{phone.id.as_hex()}")),
    ]
    for call in calls:
        await _refused(call(), 403, DEVICE_REVOKED)
    # The one thing it may still ask: its own statement, to verify it before it wipes itself.
    assert await laptop.t.list_revocations(alice.user_id) == [statement]
    # Posting a Welcome needs recipients set first.
    await laptop.t.set_next_welcome_recipients(conv, [b.id])
    await _refused(laptop.t.send(laptop.env(conv, MessageKind.WELCOME)), 403, DEVICE_REVOKED)
    # Never again: the same binding, a new label, or a binding signed afresh.
    for info in (laptop.local.info(1), laptop.local.info(_now())):
        await _refused(laptop.t.register_device(info, laptop.binding), 403, DEVICE_REVOKED)
    await _refused(laptop.t.register_device(laptop.local.info(2), alice.device_binding(laptop.id)), 403, DEVICE_REVOKED)

    # Everyone else carries on; the laptop is gone from the directory and the conversation.
    assert [d.device_id for d in await b.t.list_devices(alice.user_id)] == [phone.id, tablet.id]
    await _refused(b.t.claim_device_key_packages(laptop.id, 1), 404, "not_found")
    assert len(await b.t.fetch_since(conv, SyncCursor(), 10)) == 1

    # The statement is public: any registered device reads it, newest first.
    await phone.t.revoke_device_remote(tablet.id, alice.revoke(tablet.id))
    served = await b.t.list_revocations(alice.user_id)
    assert served == [alice.revoke(tablet.id), statement]
    for revocation in served:
        revocation.verify()
    assert await b.t.list_revocations(bob.user_id) == []
    # A device revokes itself with the account's statement.
    await phone.t.revoke_device_remote(phone.id, alice.revoke(phone.id))
    await _refused(phone.t.list_devices(alice.user_id), 403, DEVICE_REVOKED)
    assert [r.device_id for r in await b.t.list_revocations(alice.user_id)] == [phone.id, tablet.id, laptop.id]


async def test_replacing_key_packages_is_atomic(server_factory: Callable[..., Server], pool: ConnectionPool) -> None:
    """A device whose published KeyPackages carry an outdated credential replaces them in one step:
    claims racing the replacement get an old KeyPackage (claimed before it) or a new one, never an
    old one after it returned and never nothing while the pool had some; the pool then holds the
    new ones exactly. A replacement over the account's quota changes nothing."""
    server = server_factory("--rate-limit", "0", "--address-rate-limit", "0", "--claims-per-claimer", "0",
                            "--claims-per-device", "0", "--account-max-bytes", "60000")  # fmt: skip
    bob, alice = Identity.generate(), Identity.generate()
    b = await Dev(server.url, bob, pool, "b").register()
    claimers = [await Dev(server.url, alice, pool, f"a{i}").register() for i in range(4)]
    old = [b"old-%04d" % i for i in range(1000)]
    new = [b"new-%04d" % i for i in range(150)]
    for start in range(0, len(old), 200):
        await b.t.publish_key_packages(old[start : start + 200])

    claimed: list[bytes] = []
    stop = asyncio.Event()

    async def claim_until_stopped(dev: Dev) -> None:
        while not stop.is_set():
            got = await dev.t.claim_device_key_packages(b.id, 1)
            assert got, "a claim found an empty pool during the replacement"
            claimed.extend(got)

    tasks = [asyncio.create_task(claim_until_stopped(d)) for d in claimers]
    await asyncio.sleep(0.05)
    await b.t.publish_key_packages(new, replace=True)
    replaced_at = len(claimed)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    assert replaced_at < len(old) and len(claimed) > replaced_at + len(claimers)
    late = claimed[replaced_at + len(claimers) :]  # the claims that may have been in flight at the switch left out
    assert late and all(kp.startswith(b"new-") for kp in late), late[:5]
    assert len(set(claimed)) == len(claimed)  # each handed out once
    new_claimed = [kp for kp in claimed if kp.startswith(b"new-")]
    assert await b.t.key_package_count() == KeyPackageCount(len(new) - len(new_claimed), False)
    rest = [kp for kp in new if kp not in new_claimed]
    assert await claimers[0].t.claim_device_key_packages(b.id, 100) == rest[:100]

    # Over the account's quota (what the pool would hold after the call): refused, the old pool intact.
    b2 = await Dev(server.url, bob, pool, "b2").register()
    await b2.t.publish_key_packages([b"k" * 20_000, b"k" * 20_000])
    await _refused(b2.t.publish_key_packages([b"n" * 30_000, b"n" * 31_000], replace=True), 413, "quota_exceeded")
    assert await b2.t.key_package_count() == KeyPackageCount(2, False)
    await b2.t.publish_key_packages([b"n" * 30_000, b"n" * 29_000], replace=True)  # fits once the old ones go
    assert await claimers[0].t.claim_device_key_packages(b2.id, 5) == [b"n" * 30_000, b"n" * 29_000]


async def test_statement_is_the_only_credential(server: Server, pool: ConnectionPool) -> None:
    """A revocation statement is public and permanent, and bound to its device and account: a
    captured statement revokes only what it names (delivering it again is harmless), and a
    device of the same account cannot reuse it for another device id, a lookalike account's
    device or a device id nobody registered."""
    alice = Identity.generate()
    a1 = await Dev(server.url, alice, pool, "a1").register()
    a2 = await Dev(server.url, alice, pool, "a2").register()
    a3 = await Dev(server.url, alice, pool, "a3").register()
    statement = alice.revoke(a2.id)
    await a1.t.revoke_device_remote(a2.id, statement)
    for _ in range(3):
        await a3.t.revoke_device_remote(a2.id, statement)
    await _refused(a3.t.revoke_device_remote(a1.id, statement), 400, "invalid_request")
    nobody = DeviceId(b"\x42" * 32)
    await _refused(a3.t.revoke_device_remote(nobody, alice.revoke(nobody)), 404, "not_found")
    assert [d.device_id for d in await a3.t.list_devices(alice.user_id)] == [a1.id, a3.id]
    assert await a1.t.list_revocations(alice.user_id) == [statement]
