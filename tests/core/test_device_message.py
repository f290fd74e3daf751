"""ping_core.device, ping_core.meta and ping_core.message: records round trip and refuse bad input."""

from __future__ import annotations

import dataclasses
import pickle

import cbor2
import pytest

from ping_core.clock import Hlc
from ping_core.device import (
    CatchupAppEventEntry,
    CatchupConversationEntry,
    CatchupSnapshot,
    DeviceInfo,
    GroupStateSnapshot,
    LinkingTicket,
    LocalDevice,
)
from ping_core.errors import IdentityError, InvalidInput
from ping_core.identity import Identity
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MAX_PAYLOAD_LEN, IncomingMessage, MessageEnvelope, MessageKind
from ping_core.meta import ConversationMeta
from ping_core.mls.crypto import default_provider


def _meta(conv: ConversationId, name: str | None = "chat") -> ConversationMeta:
    return ConversationMeta(conv, name, 3, 2, False, 1_700_000_000_000)


def test_local_device_generate_and_persist() -> None:
    uid = Identity.generate().user_id
    dev = LocalDevice.generate(uid, "phone", 1000)
    assert dev.device_id == DeviceId.from_public_key(dev.signing_public_key)
    again = LocalDevice.decode(dev.encode(), uid)
    assert again.device_id == dev.device_id and again.label == "phone" and again.created_at_ms == 1000
    assert again.signing_secret == dev.signing_secret
    default_provider().verify(dev.signing_public_key, b"msg", dev.sign(b"msg"))


def test_local_device_from_signing_secret_is_deterministic() -> None:
    uid = UserId(b"\x01" * 32)
    secret = b"\x11" * 32
    a = LocalDevice.from_signing_secret(uid, "a", 1, secret)
    b = LocalDevice.from_signing_secret(uid, "b", 2, secret)
    assert a.device_id == b.device_id == DeviceId.from_public_key(default_provider().sign_public(secret))
    with pytest.raises(InvalidInput):
        LocalDevice.from_signing_secret(uid, "a", 1, b"\x11" * 31)


def test_local_device_secret_not_in_repr() -> None:
    dev = LocalDevice.from_signing_secret(UserId(b"\x01" * 32), "laptop", 1, b"\x33" * 32)
    assert "3333" not in repr(dev) and "laptop" in repr(dev)
    with pytest.raises(TypeError):
        pickle.dumps(dev)


def test_local_device_refuses_mismatched_id() -> None:
    uid = UserId(b"\x01" * 32)
    dev = LocalDevice.generate(uid, "x", 1)
    value = cbor2.loads(dev.encode())
    value["device_id"] = b"\x00" * 32
    with pytest.raises(InvalidInput, match="does not match"):
        LocalDevice.decode(cbor2.dumps(value, canonical=True), uid)


def test_device_info() -> None:
    dev = LocalDevice.generate(UserId(b"\x02" * 32), "tablet", 5)
    info = dev.info(99)
    assert info.last_seen_ms == 99 and info.created_at_ms == 5 and info.label == "tablet"
    info.verify()
    assert DeviceInfo.decode(info.encode()) == info
    bad = dataclasses.replace(info, device_id=DeviceId(b"\x00" * 32))
    with pytest.raises(IdentityError):
        DeviceInfo.decode(bad.encode()).verify()
    with pytest.raises(InvalidInput):
        dataclasses.replace(info, label="x" * 300)


def test_conversation_meta() -> None:
    conv = ConversationId.new(5)
    meta = _meta(conv)
    assert ConversationMeta.decode(meta.encode()) == meta
    assert ConversationMeta.decode(_meta(conv, None).encode()).name is None
    with pytest.raises(InvalidInput):
        _meta(conv, "x" * 5000)
    with pytest.raises(InvalidInput):
        _meta(conv, "\udc00")
    with pytest.raises(InvalidInput):
        ConversationMeta(conv, None, -1, 1, False, 0)
    with pytest.raises(InvalidInput):
        ConversationMeta(conv, None, 1, 1, 1, 0)  # type: ignore[arg-type]


def test_envelope_round_trip_and_layout() -> None:
    env = MessageEnvelope.new(
        ConversationId(b"\x01" * 16), 7, MessageKind.COMMIT, DeviceId(b"\x02" * 32), 0, Hlc(1000, 2), b"payload"
    )
    data = env.encode()
    assert MessageEnvelope.decode(data) == env
    assert cbor2.loads(data) == {
        "v": 1,
        "conversation_id": b"\x01" * 16,
        "epoch": 7,
        "kind": 1,
        "sender_device": b"\x02" * 32,
        "seq": 0,
        "hlc": [1000, 2],
        "payload": b"payload",
    }
    assert env.with_seq(9).seq == 9 and env.with_seq(9).payload == env.payload
    assert MessageEnvelope.from_value(env.to_value()) == env
    assert "payload" not in repr(env).split("payload=")[1][:3]  # shows a length, not bytes


def test_envelope_refuses_bad_fields() -> None:
    env = MessageEnvelope(ConversationId(b"\x01" * 16), 0, MessageKind.APPLICATION, DeviceId(b"\x02" * 32), 0, Hlc.ZERO, b"")
    value = env.to_value()
    for field, bad in [
        ("kind", 4),
        ("kind", -1),
        ("conversation_id", b"\x01" * 15),
        ("sender_device", b"\x01" * 33),
        ("seq", 2**63),
        ("epoch", 2**64),
        ("hlc", [1]),
        ("payload", "text"),
        ("v", 2),
    ]:
        mutated: dict[str, object] = dict(value)
        mutated[field] = bad
        with pytest.raises(InvalidInput):
            MessageEnvelope.decode(cbor2.dumps(mutated, canonical=True))
    with pytest.raises(InvalidInput):
        dataclasses.replace(env, payload=b"\x00" * (MAX_PAYLOAD_LEN + 1))
    with pytest.raises(InvalidInput):
        dataclasses.replace(env, kind=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        MessageEnvelope.from_value([1])


def test_incoming_message_hides_plaintext() -> None:
    msg = IncomingMessage(
        ConversationId(b"\x01" * 16), UserId(b"\x02" * 32), DeviceId(b"\x03" * 32), b"top secret words", Hlc(1, 0), 5, 2
    )
    assert "secret" not in repr(msg) and "16 bytes" in repr(msg)


def test_linking_ticket() -> None:
    ident = Identity.generate()
    new_dev = LocalDevice.generate(ident.user_id, "laptop", 1)
    conv = ConversationId.new(10)
    snap = CatchupSnapshot.new(
        [CatchupConversationEntry(conv, _meta(conv), b"state")], [CatchupAppEventEntry(conv, b"hello")]
    )
    ticket = LinkingTicket.new(ident, new_dev.device_id, b"welcome-bytes", snap.encode())
    ticket.verify_binding()
    again = LinkingTicket.decode(ticket.encode())
    assert again == ticket
    again.verify_binding()
    assert again.catchup() == snap
    assert LinkingTicket.new(ident, new_dev.device_id, b"w").catchup() is None
    forged = dataclasses.replace(ticket, new_device_id=DeviceId(b"\x00" * 32))
    with pytest.raises(IdentityError):
        LinkingTicket.decode(forged.encode()).verify_binding()
    other = Identity.generate()
    stolen = dataclasses.replace(ticket, user_id=other.user_id, user_pubkey=other.public_key)
    with pytest.raises(IdentityError):
        stolen.verify_binding()
    assert "welcome-bytes" not in repr(ticket)


def test_catchup_snapshot_checks() -> None:
    conv = ConversationId.new(10)
    with pytest.raises(InvalidInput, match="twice"):
        CatchupSnapshot.new([CatchupConversationEntry(conv, _meta(conv), b""), CatchupConversationEntry(conv, _meta(conv), b"")])
    other = ConversationId.new(11)
    value = cbor2.loads(CatchupSnapshot.new([CatchupConversationEntry(conv, _meta(conv), b"")]).encode())
    value["conversation_metas"][0]["conversation_id"] = other.value
    with pytest.raises(InvalidInput, match="differs"):
        CatchupSnapshot.decode(cbor2.dumps(value, canonical=True))
    assert CatchupSnapshot.decode(CatchupSnapshot.new().encode()) == CatchupSnapshot.new()
    with pytest.raises(InvalidInput):
        CatchupSnapshot(2, (), ())


def test_group_state_snapshot() -> None:
    snap = GroupStateSnapshot(ConversationId.new(1), 1, 1234, (("g/a", b"1"), ("g/b", b"")))
    assert GroupStateSnapshot.decode(snap.encode()) == snap
    assert "entries=2" in repr(snap)
    with pytest.raises(InvalidInput, match="duplicate"):
        GroupStateSnapshot(snap.group_id, 1, 0, (("k", b"1"), ("k", b"2")))
    with pytest.raises(InvalidInput):
        GroupStateSnapshot(snap.group_id, 1, 0, (("k", "text"),))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        GroupStateSnapshot(snap.group_id, 1, 0, (("k",),))  # type: ignore[arg-type]
    value = cbor2.loads(snap.encode())
    value["entries"].append(["g/a", b"again"])
    with pytest.raises(InvalidInput, match="duplicate"):
        GroupStateSnapshot.decode(cbor2.dumps(value, canonical=True))
    value["entries"] = [["k", b"v", b"extra"]]
    with pytest.raises(InvalidInput):
        GroupStateSnapshot.decode(cbor2.dumps(value, canonical=True))
