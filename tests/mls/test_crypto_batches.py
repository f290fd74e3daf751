"""The provider batch helpers (ping_core.mls.crypto.provider): same results and errors as the single calls.

pyca has two of the optional batch methods (encap_dh_many, and prefetch_verify where
ping_core.mls.crypto.threaded can reach OpenSSL; see tests/mls/test_threaded_crypto.py) and
gets the fallbacks for the others;
the browser's WebCrypto provider, which has them, is checked against the same
expectations in tests/browser/test_webcrypto.py.
"""

from __future__ import annotations

import pytest

from ping_core.errors import CryptoError, InvalidKey, InvalidSignature
from ping_core.mls import hpke
from ping_core.mls.crypto.provider import (
    aead_seal_many,
    dh_keygen_many,
    encap_dh_many,
    prefetch_verify,
    keygen_and_sign,
    sample_context,
    sign_and_encrypt,
    wants_prefetch,
)
from ping_core.mls.crypto import threaded
from ping_core.mls.crypto.pyca import PycaProvider

crypto = PycaProvider()
LOW_ORDER = bytes(32)  # the all-zero X25519 point: the shared secret is all zero


def test_encap_dh_many_gives_each_recipient_a_shared_secret_it_can_derive() -> None:
    recipients = [crypto.dh_keygen() for _ in range(3)]
    results = encap_dh_many(crypto, [pk for _, pk in recipients])
    ephemerals = set()
    for (sk, _), got in zip(recipients, results):
        assert not isinstance(got, CryptoError)
        pk_e, shared = got
        assert crypto.dh(sk, pk_e) == shared
        ephemerals.add(pk_e)
    assert len(ephemerals) == 3  # a fresh ephemeral key per recipient


def test_encap_dh_many_reports_each_bad_key_in_place() -> None:
    _, good = crypto.dh_keygen()
    results = encap_dh_many(crypto, [good, LOW_ORDER, b"short"])
    assert not isinstance(results[0], CryptoError)
    assert isinstance(results[1], InvalidKey) and isinstance(results[2], InvalidKey)


def test_seal_many_opens_like_seal_and_raises_the_first_error() -> None:
    info = hpke.PreparedInfo(crypto, b"info")
    keys = [crypto.dh_keygen() for _ in range(3)]
    sealed = info.seal_many([(pk, f"secret {i}".encode()) for i, (_, pk) in enumerate(keys)], b"aad")
    for i, ((sk, pk), (enc, ct)) in enumerate(zip(keys, sealed)):
        assert info.open(enc, sk, b"aad", ct, pk_r=pk) == f"secret {i}".encode()
    with pytest.raises(InvalidKey):
        info.seal_many([(keys[0][1], b"x"), (LOW_ORDER, b"y")])


def test_aead_seal_many_equals_aead_seal() -> None:
    items = [(bytes([i]) * 16, bytes(12), b"aad", bytes(i * 7)) for i in range(4)]
    assert aead_seal_many(crypto, items) == [crypto.aead_seal(*item) for item in items]
    with pytest.raises(InvalidKey):
        aead_seal_many(crypto, [(bytes(15), bytes(12), b"", b"")])


def test_dh_keygen_many_gives_distinct_valid_pairs() -> None:
    pairs = dh_keygen_many(crypto, 3)
    assert len({sk for sk, _ in pairs}) == 3
    assert all(crypto.dh_public(sk) == pk for sk, pk in pairs)


def test_keygen_and_sign_writes_the_new_keys_and_earlier_signatures_in_before_signing() -> None:
    sk, pk = crypto.sign_keygen()
    first = b"A" + bytes(32) + b"B"
    second = b"head" + bytes(64) + bytes(32) + b"tail"
    pairs, (sig1, sig2) = keygen_and_sign(crypto, sk, 2, [first, second], [(0, 1, 1), (1, 4, -1), (1, 68, 0)])
    assert len(pairs) == 2 and all(crypto.dh_public(s) == p for s, p in pairs)
    crypto.verify(pk, b"A" + pairs[1][1] + b"B", sig1)
    crypto.verify(pk, b"head" + sig1 + pairs[0][1] + b"tail", sig2)
    for bad in ([(0, 3, 0)], [(0, 1, 2)], [(0, 1, -1)], [(2, 0, 0)]):  # too long, no key 2, no earlier sig, no template
        with pytest.raises(CryptoError):
            keygen_and_sign(crypto, sk, 2, [first, second], bad)


def test_prefetch_is_a_hint_only() -> None:
    sk, pk = crypto.sign_keygen()
    sig = crypto.sign(sk, b"m")
    # pyca verifies a hinted batch ahead on two threads where it can (ping_core.mls.crypto.threaded),
    # too small a batch is left to verify(): either way the answers are verify()'s own.
    assert wants_prefetch(crypto) == threaded.AVAILABLE
    prefetch_verify(crypto, [(pk, b"m", sig), (pk, b"other", sig)])  # a hint, never raises
    crypto.verify(pk, b"m", sig)
    with pytest.raises(InvalidSignature):
        crypto.verify(pk, b"other", sig)


def test_sign_and_encrypt_is_the_single_calls_of_a_private_message() -> None:
    # RFC 9420 §6.3: sign, encrypt head || signature || tail, derive the sender-data
    # key and nonce from the ciphertext's first Nh bytes, encrypt the sender data.
    sk, pk = crypto.sign_keygen()
    content = (bytes(range(16)), bytes(12), b"aad", b"head" * 20, b"tail")
    sender_data = (bytes(range(32)), b"key label", b"nonce label", b"sd aad", b"sender data!")
    signature, ciphertext, sealed = sign_and_encrypt(crypto, sk, b"to sign", content, sender_data)
    crypto.verify(pk, b"to sign", signature)
    assert crypto.aead_open(content[0], content[1], b"aad", ciphertext) == b"head" * 20 + signature + b"tail"
    context = bytes((32,)) + ciphertext[:32]
    sd_key = crypto.hkdf_expand(sender_data[0], b"key label" + context, 16)
    sd_nonce = crypto.hkdf_expand(sender_data[0], b"nonce label" + context, 12)
    assert crypto.aead_open(sd_key, sd_nonce, b"sd aad", sealed) == b"sender data!"
    assert sample_context(b"short") == b"\x05short"  # a ciphertext shorter than Nh: all of it
    for bad_key, bad_content in [(bytes(31), content), (sk, (bytes(15),) + content[1:]), (sk, content[:3] + (None, b""))]:
        with pytest.raises(CryptoError):
            sign_and_encrypt(crypto, bad_key, b"to sign", bad_content, sender_data)
