"""ping_core.ids and ping_core.identity."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from ping_core.errors import IdentityError, InvalidInput
from ping_core.identity import DEVICE_BINDING_LABEL, DeviceBinding, Identity, UserId, device_binding_message
from ping_core.device import LocalDevice
from ping_core.ids import ConversationId, DeviceId
from ping_core.mls.crypto import default_provider


def test_ids_validate_and_compare() -> None:
    a = DeviceId(b"\x01" * 32)
    assert a == DeviceId(bytes(a)) and hash(a) == hash(DeviceId(b"\x01" * 32))
    assert a != UserId(b"\x01" * 32)  # different kinds never compare equal
    assert DeviceId.from_hex(a.as_hex()) == a and str(a) == a.as_hex()
    assert repr(a).startswith("DeviceId('0101")
    assert sorted([DeviceId(b"\x02" * 32), a]) == [a, DeviceId(b"\x02" * 32)]
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(InvalidInput):
        DeviceId(b"\x01" * 31)
    with pytest.raises(InvalidInput):
        DeviceId("01" * 32)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        DeviceId.from_hex("zz")
    with pytest.raises(InvalidInput):
        DeviceId.from_hex(" " + "01" * 32)
    with pytest.raises(AttributeError):
        a._value = b"x"


def test_conversation_id_is_time_ordered() -> None:
    a = ConversationId.new(1_700_000_000_000)
    b = ConversationId.new(1_700_000_000_001)
    assert a < b and a.timestamp_ms == 1_700_000_000_000
    assert len(a.value) == 16 and ConversationId.new() != ConversationId.new()
    assert not a.is_device_group_id
    with pytest.raises(InvalidInput):
        ConversationId.new(1 << 48)


def test_device_group_id_is_deterministic() -> None:
    uid = UserId(b"\x07" * 32)
    dg = ConversationId.device_group(uid)
    assert dg == ConversationId.device_group(uid)
    assert dg.value == b"\xff\xdc" + hashlib.sha256(uid.value).digest()[:14]
    assert dg.is_device_group_id
    with pytest.raises(InvalidInput):
        ConversationId.device_group(DeviceId(b"\x07" * 32))  # type: ignore[arg-type]


def test_identity_user_id_and_export_round_trip() -> None:
    ident = Identity.generate()
    assert ident.user_id == UserId(hashlib.sha256(ident.public_key).digest())
    again = Identity.import_(ident.export())
    assert again == ident and again.user_id == ident.user_id
    seed = Identity.import_(ident.export())  # export is deterministic
    assert seed.export() == ident.export()
    assert Identity.from_seed(b"\x05" * 32) == Identity.from_seed(b"\x05" * 32)


def test_identity_never_shows_its_secret() -> None:
    ident = Identity.from_seed(b"\x42" * 32)
    text = repr(ident) + str(ident)
    assert "42424242" not in text and ident.user_id.as_hex() in text
    with pytest.raises(TypeError):
        pickle.dumps(ident)


def test_identity_import_refuses_malformed() -> None:
    good = Identity.generate().export()
    for bad in [b"", b"\xa0", good + b"\x00", good[:-1], b"\xa2\x61v\x02\x6caccount_seed\x58\x20" + b"\x00" * 32]:
        with pytest.raises(InvalidInput):
            Identity.import_(bad)
    with pytest.raises(InvalidInput):
        Identity.from_seed(b"\x00" * 31)


def test_device_binding_sign_verify() -> None:
    ident = Identity.generate()
    dev = DeviceId(b"\x09" * 32)
    sig = ident.sign_device_binding(dev)
    assert len(sig) == 64
    Identity.verify_device_binding(ident.public_key, ident.user_id, dev, sig)
    # The signed message is the documented one.
    default_provider().verify(ident.public_key, DEVICE_BINDING_LABEL + ident.user_id.value + dev.value, sig)
    assert device_binding_message(ident.user_id, dev) == DEVICE_BINDING_LABEL + ident.user_id.value + dev.value

    other = Identity.generate()
    with pytest.raises(IdentityError):  # another device
        Identity.verify_device_binding(ident.public_key, ident.user_id, DeviceId(b"\x0a" * 32), sig)
    with pytest.raises(IdentityError):  # another account claims it
        Identity.verify_device_binding(other.public_key, other.user_id, dev, sig)
    with pytest.raises(IdentityError):  # user id not of this key
        Identity.verify_device_binding(ident.public_key, other.user_id, dev, sig)
    with pytest.raises(IdentityError):
        Identity.verify_device_binding(ident.public_key, ident.user_id, dev, sig[:-1] + bytes([sig[-1] ^ 1]))
    with pytest.raises(IdentityError):
        Identity.verify_device_binding(ident.public_key[:31], ident.user_id, dev, sig)
    with pytest.raises(IdentityError):
        Identity.verify_device_binding(ident.public_key, ident.user_id, dev, sig[:63])


def test_device_binding_record() -> None:
    ident = Identity.generate()
    binding = ident.device_binding(DeviceId(b"\x03" * 32))
    binding.verify()
    again = DeviceBinding.decode(binding.encode())
    assert again == binding
    again.verify()
    forged = DeviceBinding(binding.user_id, binding.user_public_key, DeviceId(b"\x04" * 32), binding.signature)
    with pytest.raises(IdentityError):
        DeviceBinding.decode(forged.encode()).verify()


# -- account statements in leaves and revocations ---------------------------------------


def _device() -> tuple[bytes, DeviceId]:
    """A fresh device signature key and its id."""
    dev = LocalDevice.generate(UserId(b"\x00" * 32), "x", 0)
    return dev.signing_public_key, dev.device_id


def test_credential_identity_proves_the_account_for_that_key_only() -> None:
    from ping_core.identity import CREDENTIAL_IDENTITY_LEN, claimed_user_of_credential, credential_identity, verify_credential_identity

    alice, eve = Identity.generate(), Identity.generate()
    key, device = _device()
    ident = credential_identity(alice.device_binding(device))
    assert len(ident) == CREDENTIAL_IDENTITY_LEN
    assert verify_credential_identity(ident, key) == alice.user_id
    assert claimed_user_of_credential(ident) == alice.user_id
    other_key, _ = _device()
    with pytest.raises(IdentityError):
        verify_credential_identity(ident, other_key)  # the binding is for another device key
    # Eve claims Alice's account with her own account key's signature: refused.
    forged = alice.user_id.value + eve.device_binding(device).user_public_key + eve.sign_device_binding(device)
    with pytest.raises(IdentityError):
        verify_credential_identity(forged, key)
    # ... and with Alice's public key but Eve's signature.
    forged = alice.user_id.value + alice.device_binding(device).user_public_key + eve.sign_device_binding(device)
    with pytest.raises(IdentityError):
        verify_credential_identity(forged, key)
    with pytest.raises(IdentityError, match="legacy"):
        verify_credential_identity(alice.user_id.value, key)  # the bare id asserted by the device
    for junk in (b"", b"\x00" * 127, ident + b"\x00"):
        with pytest.raises(IdentityError):
            verify_credential_identity(junk, key)
    flipped = bytearray(ident)
    flipped[100] ^= 1
    with pytest.raises(IdentityError):
        verify_credential_identity(bytes(flipped), key)


def test_device_revocation_round_trip_and_domain_separation() -> None:
    from ping_core.identity import DeviceRevocation

    alice = Identity.generate()
    _, device = _device()
    rev = alice.revoke(device)
    rev.verify()
    assert DeviceRevocation.decode(rev.encode()) == rev
    assert repr(rev).startswith("DeviceRevocation(") and alice.user_id.as_hex() in repr(rev)
    # A binding's signature is not a revocation's, nor the other way round.
    binding = alice.device_binding(device)
    with pytest.raises(IdentityError):
        DeviceRevocation(binding.user_id, binding.user_public_key, binding.device_id, binding.signature).verify()
    with pytest.raises(IdentityError):
        DeviceBinding(rev.user_id, rev.user_public_key, rev.device_id, rev.signature).verify()
    with pytest.raises(InvalidInput):
        DeviceRevocation.decode(binding.encode()[:-1])
