"""ping_core.testing.memory: the in-memory delivery service follows the Transport contract."""

from __future__ import annotations

import dataclasses

import pytest

from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.errors import InvalidInput, TransportError
from ping_core.identity import DeviceBinding, Identity
from ping_core.ids import ConversationId, DeviceId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor
from ping_core.transport import Transport
from ping_core.testing.memory import Fault, MemoryDeliveryService, MemoryTransport

CONV = ConversationId(b"\x01" * 16)


def _env(sender: DeviceId, kind: MessageKind = MessageKind.APPLICATION, epoch: int = 0, payload: bytes = b"x") -> MessageEnvelope:
    return MessageEnvelope(CONV, epoch, kind, sender, 0, Hlc(1, 0), payload)


@pytest.fixture
def ds() -> MemoryDeliveryService:
    return MemoryDeliveryService()


async def _device(ds: MemoryDeliveryService, ident: Identity, label: str = "d") -> tuple[LocalDevice, MemoryTransport]:
    dev = LocalDevice.generate(ident.user_id, label, 1)
    return dev, await ds.connect(ident, dev)


async def test_conforms_to_protocol(ds: MemoryDeliveryService) -> None:
    assert isinstance(ds.transport(DeviceId(b"\x00" * 32)), Transport)


async def test_log_order_cursor_and_paging(ds: MemoryDeliveryService) -> None:
    alice = Identity.generate()
    dev, t = await _device(ds, alice)
    seqs = [await t.send(_env(dev.device_id, payload=bytes([i]))) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    page = await t.fetch_since(CONV, SyncCursor(), 2)
    assert [e.seq for e in page] == [1, 2] and page[0].payload == b"\x00"
    assert [e.seq for e in await t.fetch_since(CONV, SyncCursor(2), 10)] == [3, 4, 5]
    assert await t.fetch_since(CONV, SyncCursor(5), 10) == []
    assert await t.fetch_since(ConversationId(b"\x09" * 16), SyncCursor(), 10) == []
    for bad in (0, 1001):
        with pytest.raises(TransportError) as err:
            await t.fetch_since(CONV, SyncCursor(), bad)
        assert err.value.code == "invalid_request" and err.value.is_definite_rejection
    assert ds.log(CONV)[4].payload == b"\x04"


async def test_commit_epochs(ds: MemoryDeliveryService) -> None:
    alice = Identity.generate()
    a, ta = await _device(ds, alice, "a")
    b, tb = await _device(ds, alice, "b")
    await ta.set_next_welcome_recipients(CONV, [b.device_id])  # b becomes a member
    await ta.send(_env(a.device_id, MessageKind.WELCOME))
    await ta.send(_env(a.device_id, MessageKind.COMMIT, epoch=0))
    assert ds.epoch(CONV) == 1
    with pytest.raises(TransportError) as err:  # b raced a and lost
        await tb.send(_env(b.device_id, MessageKind.COMMIT, epoch=0))
    assert (err.value.status, err.value.code, err.value.is_definite_rejection) == (409, "epoch_advanced", True)
    with pytest.raises(TransportError):  # a future epoch is refused too
        await tb.send(_env(b.device_id, MessageKind.COMMIT, epoch=5))
    await tb.send(_env(b.device_id, MessageKind.COMMIT, epoch=1))
    await ta.send(_env(a.device_id, MessageKind.APPLICATION, epoch=0))  # late application traffic is kept
    await ta.send(_env(a.device_id, MessageKind.PROPOSAL, epoch=2))
    assert [(e.kind, e.epoch) for e in ds.log(CONV)] == [
        (MessageKind.COMMIT, 0),
        (MessageKind.COMMIT, 1),
        (MessageKind.APPLICATION, 0),
        (MessageKind.PROPOSAL, 2),
    ]


async def test_sender_must_be_caller(ds: MemoryDeliveryService) -> None:
    alice = Identity.generate()
    _a, ta = await _device(ds, alice)
    with pytest.raises(TransportError) as err:
        await ta.send(_env(DeviceId(b"\x05" * 32)))
    assert err.value.code == "forbidden"
    with pytest.raises(InvalidInput):
        await ta.send(b"not an envelope")  # type: ignore[arg-type]


async def test_registration_rules(ds: MemoryDeliveryService) -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    dev = LocalDevice.generate(alice.user_id, "phone", 1)
    t = ds.transport(dev.device_id)
    with pytest.raises(TransportError) as err:
        await t.send(_env(dev.device_id))
    assert err.value.code == "unauthorized"
    # a binding by another account
    with pytest.raises(TransportError) as err:
        await t.register_device(dev.info(1), mallory.device_binding(dev.device_id))
    assert err.value.code == "invalid_request"
    # registering somebody else's device
    other = LocalDevice.generate(alice.user_id, "x", 1)
    with pytest.raises(TransportError) as err:
        await t.register_device(other.info(1), alice.device_binding(other.device_id))
    assert err.value.code == "forbidden"
    # a forged binding
    binding = alice.device_binding(dev.device_id)
    forged = DeviceBinding(binding.user_id, binding.user_public_key, dev.device_id, bytes(64))
    with pytest.raises(TransportError):
        await t.register_device(dev.info(1), forged)
    await t.register_device(dev.info(1), binding)
    await t.register_device(dataclasses.replace(dev.info(2), label="renamed"), binding)
    assert [d.label for d in await t.list_devices(alice.user_id)] == ["renamed"]
    assert await t.list_devices(mallory.user_id) == []


async def test_welcome_inbox(ds: MemoryDeliveryService) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await _device(ds, alice)
    b, tb = await _device(ds, bob)
    welcome = _env(a.device_id, MessageKind.WELCOME, payload=b"welcome-1")
    with pytest.raises(TransportError) as err:
        await ta.send(welcome)
    assert err.value.code == "invalid_request"
    await ta.set_next_welcome_recipients(CONV, [b.device_id])
    assert await ta.send(welcome) == 0
    with pytest.raises(TransportError):  # recipients are used once
        await ta.send(welcome)
    await ta.set_next_welcome_recipients(CONV, [b.device_id])
    await ta.send(dataclasses.replace(welcome, payload=b"welcome-2"))
    inbox = await tb.fetch_welcomes()
    assert [(e.seq, e.payload, e.kind) for e in inbox] == [(1, b"welcome-1", MessageKind.WELCOME), (2, b"welcome-2", MessageKind.WELCOME)]
    assert ds.log(CONV) == []  # Welcomes never enter the conversation log
    await tb.ack_welcomes(1)
    assert [e.seq for e in await tb.fetch_welcomes()] == [2]
    await ta.set_next_welcome_recipients(CONV, [DeviceId(b"\x00" * 32)])
    with pytest.raises(TransportError) as err:
        await ta.send(welcome)
    assert err.value.code == "not_found"


async def test_welcome_recipients_survive_a_failed_send(ds: MemoryDeliveryService) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await _device(ds, alice)
    b, tb = await _device(ds, bob)
    await ta.set_next_welcome_recipients(CONV, [b.device_id])
    ds.inject("send", Fault.SERVER_ERROR)
    with pytest.raises(TransportError):
        await ta.send(_env(a.device_id, MessageKind.WELCOME))
    await ta.send(_env(a.device_id, MessageKind.WELCOME))
    assert len(await tb.fetch_welcomes()) == 1


async def test_key_packages(ds: MemoryDeliveryService) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    a, ta = await _device(ds, alice, "a")
    b1, tb1 = await _device(ds, bob, "b1")
    b2, tb2 = await _device(ds, bob, "b2")
    await tb1.publish_key_packages([b"kp1-1", b"kp1-2"], last_resort=b"kp1-last")
    await tb2.publish_key_packages([b"kp2-1"])
    claimed = dict(await ta.claim_key_packages(bob.user_id))
    assert claimed == {b1.device_id: b"kp1-1", b2.device_id: b"kp2-1"}
    claimed = dict(await ta.claim_key_packages(bob.user_id))
    assert claimed == {b1.device_id: b"kp1-2"}  # b2 has nothing left and no last resort
    assert dict(await ta.claim_key_packages(bob.user_id)) == {b1.device_id: b"kp1-last"}
    assert dict(await ta.claim_key_packages(bob.user_id)) == {b1.device_id: b"kp1-last"}  # last resort stays
    assert await tb1.claim_key_packages(bob.user_id) == []  # never the caller's own device (b2 is empty)
    await tb1.publish_key_packages([b"x1", b"x2"])
    assert await ta.claim_device_key_packages(b1.device_id, 4) == [b"x1", b"x2", b"kp1-last", b"kp1-last"]
    assert await ta.claim_device_key_packages(b2.device_id, 3) == []
    for bad in ([b""], [b"x" * (64 * 1024 + 1)], [b"k"] * 201):
        with pytest.raises(TransportError) as err:
            await tb1.publish_key_packages(bad)
        assert err.value.is_definite_rejection
    with pytest.raises(TransportError):
        await ta.claim_device_key_packages(DeviceId(b"\x00" * 32), 1)
    with pytest.raises(TransportError):
        await ta.claim_device_key_packages(b1.device_id, 0)


async def test_revocation(ds: MemoryDeliveryService) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    phone, tphone = await _device(ds, alice, "phone")
    laptop, tlaptop = await _device(ds, alice, "laptop")
    b, tb = await _device(ds, bob)
    await tlaptop.publish_key_packages([b"kp"])
    with pytest.raises(TransportError) as err:
        await tb.revoke_device_remote(laptop.device_id, alice.revoke(laptop.device_id))
    assert err.value.code == "forbidden"
    with pytest.raises(TransportError) as err:  # not the account's statement
        await tphone.revoke_device_remote(laptop.device_id, bob.revoke(laptop.device_id))
    assert err.value.code == "forbidden" and not ds.is_revoked(laptop.device_id)
    with pytest.raises(TransportError) as err:
        await tphone.revoke_device_remote(DeviceId(b"\x00" * 32), alice.revoke(DeviceId(b"\x00" * 32)))
    assert err.value.code == "not_found"
    await tphone.revoke_device_remote(laptop.device_id, alice.revoke(laptop.device_id))
    await tphone.revoke_device_remote(laptop.device_id, alice.revoke(laptop.device_id))  # idempotent
    assert ds.is_revoked(laptop.device_id) and ds.key_package_count(laptop.device_id) == 0
    assert [d.device_id for d in await tb.list_devices(alice.user_id)] == [phone.device_id]
    assert await tb.claim_key_packages(alice.user_id) == []
    for call in (tlaptop.send(_env(laptop.device_id)), tlaptop.fetch_since(CONV, SyncCursor(), 1), tlaptop.fetch_welcomes()):
        with pytest.raises(TransportError) as err:
            await call
        assert (err.value.status, err.value.code) == (403, "device_revoked")
    with pytest.raises(TransportError) as err:
        await tlaptop.register_device(laptop.info(1), alice.device_binding(laptop.device_id))
    assert err.value.code == "device_revoked"
    assert await tb.list_revocations(alice.user_id) == [alice.revoke(laptop.device_id)]
    await tb.set_next_welcome_recipients(CONV, [laptop.device_id])
    with pytest.raises(TransportError):
        await tb.send(_env(b.device_id, MessageKind.WELCOME))
    # the account key is pinned: another key cannot claim the account
    intruder = Identity.generate()
    fake = LocalDevice.generate(alice.user_id, "fake", 1)
    binding = intruder.device_binding(fake.device_id)
    with pytest.raises(TransportError):
        await ds.transport(fake.device_id).register_device(fake.info(1), binding)


@pytest.mark.parametrize(
    "fault,applied,status,code,definite",
    [
        (Fault.REJECT, False, 409, "conflict", True),
        (Fault.SERVER_ERROR, False, 503, "server_error", False),
        (Fault.TIMEOUT_BEFORE_APPLY, False, None, "timeout", False),
        (Fault.TIMEOUT_AFTER_APPLY, True, None, "timeout", False),
        (Fault.SERVER_ERROR_AFTER_APPLY, True, 500, "server_error", False),
    ],
)
async def test_faults(ds: MemoryDeliveryService, fault: Fault, applied: bool, status: int | None, code: str, definite: bool) -> None:
    alice = Identity.generate()
    a, ta = await _device(ds, alice)
    ds.inject("send", fault, kind=MessageKind.COMMIT)
    await ta.send(_env(a.device_id, MessageKind.APPLICATION))  # not a Commit: unaffected
    with pytest.raises(TransportError) as err:
        await ta.send(_env(a.device_id, MessageKind.COMMIT, epoch=0))
    assert (err.value.status, err.value.code, err.value.is_definite_rejection) == (status, code, definite)
    assert len(ds.log(CONV)) == (2 if applied else 1)
    assert ds.epoch(CONV) == (1 if applied else None)
    await ta.send(_env(a.device_id, MessageKind.APPLICATION))  # one-shot


async def test_fault_filters_and_counts(ds: MemoryDeliveryService) -> None:
    alice = Identity.generate()
    a, ta = await _device(ds, alice, "a")
    b, tb = await _device(ds, alice, "b")
    ds.inject("fetch_since", Fault.TIMEOUT_BEFORE_APPLY, device=b.device_id, count=2)
    await ta.fetch_since(CONV, SyncCursor(), 1)
    for _ in range(2):
        with pytest.raises(TransportError):
            await tb.fetch_since(CONV, SyncCursor(), 1)
    await tb.fetch_since(CONV, SyncCursor(), 1)
    ds.inject("send", Fault.REJECT, status=403, code="forbidden", conversation=ConversationId(b"\x02" * 16))
    await ta.send(_env(a.device_id))
    ds.clear_faults()
    with pytest.raises(InvalidInput):
        ds.inject("send", Fault.REJECT, status=500)
    assert ("fetch_since", b.device_id) in ds.calls
