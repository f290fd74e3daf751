"""ping_core.transport.wire pieces the server's hot path relies on: the stored envelope made by
splicing the seq into the posted bytes equals a fresh encoding, for every layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ping_core.clock import MAX_COUNTER, MAX_WALL_MS, Hlc
from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId, DeviceId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.transport import KeyPackageCount, wire

_UINTS = st.one_of(st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32]), st.integers(0, 2**63 - 1))


@given(
    wall=st.one_of(st.sampled_from([0, 23, 24, 255, 256, 65536, 2**32]), st.integers(0, MAX_WALL_MS)),
    counter=st.integers(0, MAX_COUNTER),
    epoch=_UINTS,
    kind=st.sampled_from([MessageKind.APPLICATION, MessageKind.COMMIT, MessageKind.PROPOSAL]),
    seq0=_UINTS,
    removes=st.integers(0, 30),
    payload=st.binary(max_size=300),
    seq=st.one_of(st.sampled_from([1, 23, 24, 255, 256, 65536, 2**32, 2**63 - 1]), st.integers(1, 2**63 - 1)),
    group_info=st.one_of(st.none(), st.binary(min_size=1, max_size=70_000)),
)
def test_posted_message_stored_equals_a_fresh_encoding(
    wall: int, counter: int, epoch: int, kind: MessageKind, seq0: int, removes: int, payload: bytes, seq: int, group_info: bytes | None
) -> None:
    env = MessageEnvelope(ConversationId(b"\x07" * 16), epoch, kind, DeviceId(b"\x01" * 32), seq0, Hlc(wall, counter), payload)
    devices = [DeviceId(bytes([i]) * 32) for i in range(removes)]
    posted = wire.decode_post_message(wire.post_message_request(env, devices, group_info).body)
    assert (posted.envelope, posted.removes, posted.raw, posted.group_info) == (env, devices, env.encode(), group_info)
    assert posted.stored(seq) == env.with_seq(seq).encode()


def test_post_message_without_group_info_is_the_old_record() -> None:
    """A post without a GroupInfo is byte for byte what clients before it sent; a GroupInfo that is
    not bytes, or too large, is refused."""
    from ping_core.cbor import dumps

    env = MessageEnvelope(ConversationId(b"\x07" * 16), 0, MessageKind.COMMIT, DeviceId(b"\x01" * 32), 0, Hlc(1, 0), b"x")
    assert wire.post_message_request(env, []).body == dumps({"v": 1, "envelope": env.to_value(), "removes": []})
    for bad in (1, "text", b"x" * (wire.MAX_GROUP_INFO_LEN + 1)):
        with pytest.raises(InvalidInput):
            wire.decode_post_message(dumps({"v": 1, "envelope": env.to_value(), "removes": [], "group_info": bad}))  # type: ignore[dict-item]


def test_post_message_refuses_non_canonical_bodies() -> None:
    env = MessageEnvelope(ConversationId(b"\x07" * 16), 0, MessageKind.APPLICATION, DeviceId(b"\x01" * 32), 0, Hlc(1, 0), b"x")
    body = wire.post_message_request(env, []).body
    for bad in (body + b"\x00", body[:-1], b"\xa3" + body[1:2] + b"\x18\x01" + body[3:]):
        with pytest.raises(InvalidInput):
            wire.decode_post_message(bad)


@pytest.mark.parametrize("count", [KeyPackageCount(0, False), KeyPackageCount(20, True), KeyPackageCount(2**40, False)])
def test_key_package_count_round_trip(count: KeyPackageCount) -> None:
    assert wire.decode_key_package_count(wire.encode_key_package_count(count)) == count


def test_key_package_count_is_strict() -> None:
    from ping_core.cbor import dumps

    for bad in ({"v": 1, "unclaimed": -1, "last_resort": True}, {"v": 1, "unclaimed": 1}, {"v": 2, "unclaimed": 1, "last_resort": False}):
        with pytest.raises(InvalidInput):
            wire.decode_key_package_count(dumps(bad))  # type: ignore[arg-type]
