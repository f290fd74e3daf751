"""HPKE base mode against RFC 9180 Appendix A.1.1 and its failure paths."""

from __future__ import annotations

import pytest

from ping_core.errors import DecryptionFailed, InvalidKey, MlsReason
from ping_core.mls import hpke
from ping_core.mls.crypto import CryptoProvider, default_provider
from reasons import raises_reason

h = bytes.fromhex

# RFC 9180 A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
INFO = h("4f6465206f6e2061204772656369616e2055726e")
IKM_E = h("7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234")
SK_E = h("52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736")
PK_E = h("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
IKM_R = h("6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037")
SK_R = h("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8")
PK_R = h("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d")
SHARED = h("fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc")
PT0 = h("4265617574792069732074727574682c20747275746820626561757479")
AAD0 = h("436f756e742d30")
CT0 = h("f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a")


@pytest.fixture(scope="module")
def crypto() -> CryptoProvider:
    return default_provider()


def test_derive_key_pair(crypto: CryptoProvider) -> None:
    assert hpke.derive_key_pair(crypto, IKM_E) == (SK_E, PK_E)
    assert hpke.derive_key_pair(crypto, IKM_R) == (SK_R, PK_R)


def test_encap_decap_known_answer(crypto: CryptoProvider) -> None:
    shared, enc = hpke.encap(crypto, PK_R, ephemeral=SK_E)
    assert (shared, enc) == (SHARED, PK_E)
    assert hpke.decap(crypto, enc, SK_R) == SHARED
    assert hpke.decap(crypto, enc, SK_R, PK_R) == SHARED


def test_seal_open_known_answer(crypto: CryptoProvider) -> None:
    enc, ct = hpke.seal(crypto, PK_R, INFO, AAD0, PT0, ephemeral=SK_E)
    assert (enc, ct) == (PK_E, CT0)
    assert hpke.open(crypto, enc, SK_R, INFO, AAD0, CT0) == PT0


def test_context_sequence_numbers(crypto: CryptoProvider) -> None:
    enc, sender = hpke.setup_base_s(crypto, PK_R, INFO, ephemeral=SK_E)
    recipient = hpke.setup_base_r(crypto, enc, SK_R, INFO)
    cts = [sender.seal(b"aad%d" % i, b"msg%d" % i) for i in range(3)]
    assert cts[0] != cts[1]
    # A failed open does not advance the recipient.
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
        recipient.open(b"aad0", cts[1])
    assert recipient.seq == 0
    assert [recipient.open(b"aad%d" % i, c) for i, c in enumerate(cts)] == [b"msg0", b"msg1", b"msg2"]
    assert sender.export(b"ctx", 32) == recipient.export(b"ctx", 32)
    assert "seq" in repr(sender) and SK_E.hex() not in repr(sender)


def test_export_roundtrip(crypto: CryptoProvider) -> None:
    enc, exported = hpke.export(crypto, PK_R, INFO, b"context", 42)
    assert len(exported) == 42
    assert hpke.receive_export(crypto, enc, SK_R, INFO, b"context", 42) == exported


def test_random_roundtrip(crypto: CryptoProvider) -> None:
    sk, pk = crypto.dh_keygen()
    enc, ct = hpke.seal(crypto, pk, b"info", b"aad", b"hello")
    assert hpke.open(crypto, enc, sk, b"info", b"aad", ct) == b"hello"


@pytest.mark.parametrize("what", ["ct", "aad", "info", "enc", "key"])
def test_open_refuses_tampering(crypto: CryptoProvider, what: str) -> None:
    enc, ct = hpke.seal(crypto, PK_R, INFO, AAD0, PT0)
    sk, info, aad = SK_R, INFO, AAD0
    if what == "ct":
        ct = ct[:-1] + bytes([ct[-1] ^ 1])
    elif what == "aad":
        aad = b"other"
    elif what == "info":
        info = b"other"
    elif what == "enc":
        enc = bytes([enc[0] ^ 1]) + enc[1:]
    else:
        sk = crypto.dh_keygen()[0]
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
        hpke.open(crypto, enc, sk, info, aad, ct)


def test_bad_enc(crypto: CryptoProvider) -> None:
    with raises_reason(MlsReason.INVALID_KEY, InvalidKey):
        hpke.open(crypto, b"short", SK_R, INFO, b"", CT0)
    with raises_reason(MlsReason.INVALID_KEY, InvalidKey):  # the all-zero point is low-order
        hpke.open(crypto, bytes(32), SK_R, INFO, b"", CT0)


def test_prepared_info_matches_single_shot(crypto: CryptoProvider) -> None:
    prepared = hpke.PreparedInfo(crypto, INFO)
    # The RFC 9180 known answer through the prepared path, sealing and opening.
    assert prepared.seal(PK_R, AAD0, PT0, ephemeral=SK_E) == (PK_E, CT0)
    assert prepared.open(PK_E, SK_R, AAD0, CT0) == PT0
    assert prepared.open(PK_E, SK_R, AAD0, CT0, pk_r=PK_R) == PT0
    # Many messages with one PreparedInfo, opened by the single-shot call.
    keys = [crypto.dh_keygen() for _ in range(3)]
    for sk, pk in keys:
        enc, ct = prepared.seal(pk, b"aad", b"to %s" % pk.hex().encode())
        assert hpke.open(crypto, enc, sk, INFO, b"aad", ct) == b"to %s" % pk.hex().encode()
    # Contexts from it equal the module-level setup.
    enc, sender = prepared.setup_s(PK_R, ephemeral=SK_E)
    assert sender.seal(AAD0, PT0) == CT0
    assert prepared.setup_r(enc, SK_R).export(b"x", 16) == hpke.setup_base_r(crypto, enc, SK_R, INFO).export(b"x", 16)
    # Another info does not open it.
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
        hpke.PreparedInfo(crypto, b"other").open(PK_E, SK_R, AAD0, CT0)
    assert repr(prepared) == "PreparedInfo()"
