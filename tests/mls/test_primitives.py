"""The labelled helpers of RFC 9420 §5 (the official values are in crypto-basics.json)."""

from __future__ import annotations

import pytest

from ping_core.errors import DecryptionFailed, InvalidSignature, MlsReason
from ping_core.mls import primitives as p
from ping_core.mls.tls import opaque
from ping_core.mls.crypto import CryptoProvider, default_provider
from reasons import raises_reason


@pytest.fixture(scope="module")
def crypto() -> CryptoProvider:
    return default_provider()


def test_expand_with_label_layout(crypto: CryptoProvider) -> None:
    secret = bytes(range(32))
    info = (20).to_bytes(2, "big") + opaque(b"MLS 1.0 lbl") + opaque(b"ctx")
    assert p.expand_with_label(crypto, secret, b"lbl", b"ctx", 20) == crypto.hkdf_expand(secret, info, 20)
    assert p.derive_secret(crypto, secret, b"lbl") == p.expand_with_label(crypto, secret, b"lbl", b"", 32)
    assert p.derive_tree_secret(crypto, secret, b"key", 7, 16) == p.expand_with_label(
        crypto, secret, b"key", (7).to_bytes(4, "big"), 16
    )


def test_refs(crypto: CryptoProvider) -> None:
    v = b"value"
    assert p.make_key_package_ref(crypto, v) == crypto.hash(opaque(b"MLS 1.0 KeyPackage Reference") + opaque(v))
    assert p.make_proposal_ref(crypto, v) == crypto.hash(opaque(b"MLS 1.0 Proposal Reference") + opaque(v))


def test_sign_verify(crypto: CryptoProvider) -> None:
    sk, pk = crypto.sign_keygen()
    sig = p.sign_with_label(crypto, sk, b"L", b"content")
    p.verify_with_label(crypto, pk, b"L", b"content", sig)
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        p.verify_with_label(crypto, pk, b"M", b"content", sig)
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        p.verify_with_label(crypto, pk, b"L", b"content!", sig)
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        p.verify_with_label(crypto, pk, b"L", b"content", sig[:-1] + bytes([sig[-1] ^ 1]))


def test_encrypt_decrypt(crypto: CryptoProvider) -> None:
    sk, pk = crypto.dh_keygen()
    kem, ct = p.encrypt_with_label(crypto, pk, b"L", b"ctx", b"secret")
    assert p.decrypt_with_label(crypto, sk, b"L", b"ctx", kem, ct) == b"secret"
    assert p.decrypt_with_label(crypto, sk, b"L", b"ctx", kem, ct, public=pk) == b"secret"
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
        p.decrypt_with_label(crypto, sk, b"M", b"ctx", kem, ct)
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
        p.decrypt_with_label(crypto, sk, b"L", b"other", kem, ct)


def test_labeled_encryption_matches_encrypt_with_label(crypto: CryptoProvider) -> None:
    sk, pk = crypto.dh_keygen()
    eph = crypto.dh_keygen()[0]
    sealer = p.LabeledEncryption(crypto, b"label", b"context")
    assert sealer.encrypt(pk, b"secret", ephemeral=eph) == p.encrypt_with_label(
        crypto, pk, b"label", b"context", b"secret", ephemeral=eph
    )
    kem_output, ct = sealer.encrypt(pk, b"secret")
    assert p.decrypt_with_label(crypto, sk, b"label", b"context", kem_output, ct) == b"secret"
    assert sealer.decrypt(sk, kem_output, ct, public=pk) == b"secret"
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):  # the label and context are bound
        p.LabeledEncryption(crypto, b"label", b"other").decrypt(sk, kem_output, ct)
