"""ping_core.link: link requests and HPKE-sealed linking tickets."""

from __future__ import annotations

import pickle

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ping_core.device import LinkingTicket, LocalDevice
from ping_core.errors import IdentityError, InvalidInput
from ping_core.identity import Identity
from ping_core.ids import DeviceId
from ping_core.link import LINK_INFO, LinkKeyPair, LinkRequest, open_ticket, seal_ticket
from ping_core.mls import hpke
from ping_core.mls.crypto import default_provider

from .fuzz import check_decoder, field_mutated, mutated

IDENT = Identity.from_seed(b"\x05" * 32)
NEW_DEV = LocalDevice.from_signing_secret(IDENT.user_id, "laptop", 1, b"\x06" * 32)
KP = LinkKeyPair(b"\x07" * 32)
TICKET = LinkingTicket.new(IDENT, NEW_DEV.device_id, b"welcome", b"")
SEALED = seal_ticket(TICKET, KP.public_key)


def test_round_trip() -> None:
    kp = LinkKeyPair.generate()
    sealed = seal_ticket(TICKET, kp.public_key)
    assert open_ticket(sealed, kp, NEW_DEV.device_id) == TICKET
    assert open_ticket(sealed, kp) == TICKET
    assert b"welcome" not in sealed
    # The layout is the documented one: HPKE base mode with LINK_INFO and empty AAD.
    value = cbor2.loads(sealed)
    assert set(value) == {"v", "enc", "ciphertext"} and value["v"] == 1
    assert hpke.open(default_provider(), value["enc"], kp.secret, LINK_INFO, b"", value["ciphertext"]) == TICKET.encode()


def test_wrong_recipient_or_tampering() -> None:
    with pytest.raises(InvalidInput, match="does not open"):
        open_ticket(SEALED, LinkKeyPair.generate())
    value = cbor2.loads(SEALED)
    value["ciphertext"] = value["ciphertext"][:-1] + bytes([value["ciphertext"][-1] ^ 1])
    with pytest.raises(InvalidInput, match="does not open"):
        open_ticket(cbor2.dumps(value, canonical=True), KP)
    value = cbor2.loads(SEALED)
    value["enc"] = b"\x00" * 32  # low-order point
    with pytest.raises(InvalidInput):
        open_ticket(cbor2.dumps(value, canonical=True), KP)
    with pytest.raises(InvalidInput, match="another device"):
        open_ticket(SEALED, KP, DeviceId(b"\x00" * 32))


def test_forged_binding_is_refused() -> None:
    other = Identity.generate()
    forged = LinkingTicket(1, IDENT.user_id, IDENT.public_key, NEW_DEV.device_id, other.sign_device_binding(NEW_DEV.device_id), b"w", b"")
    with pytest.raises(IdentityError):
        open_ticket(seal_ticket(forged, KP.public_key), KP)


def test_seal_refuses_bad_keys() -> None:
    with pytest.raises(InvalidInput):
        seal_ticket(TICKET, b"\x00" * 31)
    with pytest.raises(InvalidInput):
        seal_ticket(TICKET, b"\x00" * 32)  # low-order public key
    with pytest.raises(InvalidInput):
        seal_ticket(TICKET.encode(), KP.public_key)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        open_ticket(SEALED, KP.secret)  # type: ignore[arg-type]


def test_key_pair_secret_is_hidden() -> None:
    assert KP.secret.hex() not in repr(KP) and KP.public_key.hex() in repr(KP)
    with pytest.raises(TypeError):
        pickle.dumps(KP)
    with pytest.raises(InvalidInput):
        LinkKeyPair(b"\x01" * 31)


def test_link_request() -> None:
    req = LinkRequest(NEW_DEV.device_id, KP.public_key, b"kp-bytes")
    assert LinkRequest.decode(req.encode()) == req
    with pytest.raises(InvalidInput):
        LinkRequest(NEW_DEV.device_id, b"\x00" * 31, b"")
    with pytest.raises(InvalidInput):
        LinkRequest(NEW_DEV.device_id, KP.public_key, b"\x00" * (64 * 1024 + 1))


@given(data=st.data())
def test_open_ticket_fuzz(data: st.DataObject) -> None:
    blob = data.draw(st.one_of(st.binary(max_size=200), mutated(SEALED), field_mutated(SEALED)))
    check_decoder(lambda b: open_ticket(b, KP), blob)


@given(data=st.data())
def test_link_request_fuzz(data: st.DataObject) -> None:
    valid = LinkRequest(NEW_DEV.device_id, KP.public_key, b"kp").encode()
    blob = data.draw(st.one_of(st.binary(max_size=200), mutated(valid), field_mutated(valid)))
    out = check_decoder(LinkRequest.decode, blob)
    if out is not None:
        assert out.encode() == blob
