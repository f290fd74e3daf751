"""Hypothesis on every public decoder: random, mutated and field-mutated bytes raise only
ping_core.errors exceptions, and whatever decodes re-encodes to the same bytes."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from ping_core.identity import DeviceBinding, Identity
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.meta import ConversationMeta
from ping_core.sync import SyncCursor

from .fuzz import check_decoder, field_mutated, mutated

_IDENT = Identity.from_seed(b"\x01" * 32)
_DEV = LocalDevice.from_signing_secret(_IDENT.user_id, "phone", 1, b"\x02" * 32)
_CONV = ConversationId(b"\x03" * 16)
_META = ConversationMeta(_CONV, "chat", 4, 2, False, 9)
_SNAP = CatchupSnapshot.new([CatchupConversationEntry(_CONV, _META, b"st")], [CatchupAppEventEntry(_CONV, b"ev")])

# (name, decode, a valid encoding, re-encode of the decoded object)
DECODERS: list[tuple[str, Callable[[bytes], Any], bytes, Callable[[Any], bytes]]] = [
    ("Identity", Identity.import_, _IDENT.export(), lambda x: x.export()),
    ("DeviceBinding", DeviceBinding.decode, _IDENT.device_binding(_DEV.device_id).encode(), lambda x: x.encode()),
    ("DeviceInfo", DeviceInfo.decode, _DEV.info(5).encode(), lambda x: x.encode()),
    ("LocalDevice", lambda b: LocalDevice.decode(b, _IDENT.user_id), _DEV.encode(), lambda x: x.encode()),
    ("ConversationMeta", ConversationMeta.decode, _META.encode(), lambda x: x.encode()),
    ("CatchupSnapshot", CatchupSnapshot.decode, _SNAP.encode(), lambda x: x.encode()),
    (
        "LinkingTicket",
        LinkingTicket.decode,
        LinkingTicket.new(_IDENT, _DEV.device_id, b"welcome", _SNAP.encode()).encode(),
        lambda x: x.encode(),
    ),
    (
        "GroupStateSnapshot",
        GroupStateSnapshot.decode,
        GroupStateSnapshot(_CONV, 1, 2, (("a", b"1"), ("b", b"2"))).encode(),
        lambda x: x.encode(),
    ),
    (
        "MessageEnvelope",
        MessageEnvelope.decode,
        MessageEnvelope(_CONV, 1, MessageKind.APPLICATION, _DEV.device_id, 3, Hlc(5, 1), b"ct").encode(),
        lambda x: x.encode(),
    ),
    ("SyncCursor", SyncCursor.decode, SyncCursor(12).encode(), lambda x: x.encode()),
    ("Hlc", Hlc.decode, Hlc(10, 2).encode(), lambda x: x.encode()),
]
IDS = [d[0] for d in DECODERS]


@pytest.mark.parametrize("name,decode,valid,reencode", DECODERS, ids=IDS)
def test_valid_round_trip(name: str, decode: Callable[[bytes], Any], valid: bytes, reencode: Callable[[Any], bytes]) -> None:
    assert reencode(decode(valid)) == valid


@pytest.mark.parametrize("name,decode,valid,reencode", DECODERS, ids=IDS)
@given(data=st.data())
def test_random_bytes(name: str, decode: Callable[[bytes], Any], valid: bytes, reencode: Callable[[Any], bytes], data: st.DataObject) -> None:
    check_decoder(decode, data.draw(st.binary(max_size=300)))


@pytest.mark.parametrize("name,decode,valid,reencode", DECODERS, ids=IDS)
@given(data=st.data())
def test_mutated_bytes(name: str, decode: Callable[[bytes], Any], valid: bytes, reencode: Callable[[Any], bytes], data: st.DataObject) -> None:
    out = check_decoder(decode, data.draw(mutated(valid)))
    if out is not None:
        reencode(out)  # whatever decodes is a well-formed object


@pytest.mark.parametrize("name,decode,valid,reencode", DECODERS, ids=IDS)
@given(data=st.data())
def test_field_mutated(name: str, decode: Callable[[bytes], Any], valid: bytes, reencode: Callable[[Any], bytes], data: st.DataObject) -> None:
    blob = data.draw(field_mutated(valid))
    out = check_decoder(decode, blob)
    if out is not None:
        assert reencode(out) == blob  # accepted only if it is exactly a canonical record
