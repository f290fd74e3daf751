"""Standard test vectors and failure behaviour for every crypto backend available here.

The SAME file runs on CPython (pyca) and inside Pyodide (the noble JS backend,
see tests/node): it is parametrized over the backends registered in
``ping_core.mls.crypto``. Vectors: RFC 8032 (Ed25519), RFC 7748 (X25519),
RFC 5869 (HKDF-SHA256), RFC 4231 (HMAC-SHA256) and the AES-GCM test cases of
McGrew & Viega's GCM specification (128-bit keys, 96-bit IVs). Their test
cases 5 and 6 use 64- and 480-bit IVs, which suite 1's 12-byte nonce API does
not take; they are not run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

from ping_core.errors import CryptoError, DecryptionFailed, InvalidKey, InvalidSignature, MlsReason
from ping_core.mls.crypto import CryptoProvider, available_backends, default_provider
from reasons import raises_reason

h = bytes.fromhex


def _factory(name: str) -> Callable[[], CryptoProvider]:
    if name == "pyca":
        from ping_core.mls.crypto.pyca import PycaProvider

        return PycaProvider
    if name == "noble":
        from pyodide_app.crypto import NobleProvider

        return NobleProvider
    if name == "webcrypto":
        from pyodide_app.webcrypto import WebCryptoProvider

        return WebCryptoProvider
    if name == "webcrypto-all":  # every AES-GCM call through WebCrypto too
        from pyodide_app.webcrypto import WebCryptoProvider

        return lambda: WebCryptoProvider(aead_min=0)
    raise AssertionError(f"no test factory for the backend {name!r}: add it here")


def _backends_under_test() -> list[str]:
    # PING_CRYPTO_BACKENDS=a,b runs the file on backends that need not be
    # registered (tests/node runs the WebCrypto provider this way).
    names = os.environ.get("PING_CRYPTO_BACKENDS")
    return names.split(",") if names else available_backends()


@pytest.fixture(params=_backends_under_test(), scope="module")
def crypto(request: pytest.FixtureRequest) -> CryptoProvider:
    return _factory(request.param)()


def test_some_backend_is_available() -> None:
    assert available_backends(), "no crypto backend registered"
    assert isinstance(default_provider(), CryptoProvider)


def test_expected_backend_is_the_default() -> None:
    # pyca on CPython; inside Pyodide the harness sets PING_EXPECT_CRYPTO=noble
    # so the vectors provably go through the JS backend there.
    expected = os.environ.get("PING_EXPECT_CRYPTO") or ("noble" if sys.platform == "emscripten" else "pyca")
    assert default_provider().name == expected
    assert available_backends()[0] == expected


# -- RFC 8032, section 7.1: Ed25519 -------------------------------------------------

ED25519 = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="test1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="test2",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        id="test3",
    ),
    pytest.param(
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        id="test-sha-abc",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), ED25519)
def test_ed25519_rfc8032(crypto: CryptoProvider, secret: str, public: str, message: str, signature: str) -> None:
    assert crypto.sign_public(h(secret)) == h(public)
    assert crypto.sign(h(secret), h(message)) == h(signature)
    crypto.verify(h(public), h(message), h(signature))


# -- RFC 7748, section 5.2 and 6.1: X25519 --------------------------------------------

X25519 = [
    pytest.param(
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        id="vector1",
    ),
    pytest.param(
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        id="vector2",
    ),
]


@pytest.mark.parametrize(("scalar", "u", "out"), X25519)
def test_x25519_rfc7748(crypto: CryptoProvider, scalar: str, u: str, out: str) -> None:
    assert crypto.dh(h(scalar), h(u)) == h(out)


@pytest.mark.parametrize(
    ("iterations", "expected"),
    [
        (1, "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"),
        (1000, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"),
    ],
)
def test_x25519_rfc7748_iterated(crypto: CryptoProvider, iterations: int, expected: str) -> None:
    k = u = (9).to_bytes(32, "little")
    for _ in range(iterations):
        k, u = crypto.dh(k, u), k
    assert k == h(expected)


def test_x25519_rfc7748_diffie_hellman(crypto: CryptoProvider) -> None:
    alice = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    alice_pub = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    bob_pub = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert crypto.dh_public(alice) == alice_pub
    assert crypto.dh_public(bob) == bob_pub
    assert crypto.dh(alice, bob_pub) == shared
    assert crypto.dh(bob, alice_pub) == shared


# -- RFC 5869, appendix A.1-A.3: HKDF-SHA256 -------------------------------------------

HKDF = [
    pytest.param(
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        id="A.1",
    ),
    pytest.param(
        bytes(range(0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
        "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
        id="A.2",
    ),
    pytest.param(
        "0b" * 22,
        "",
        "",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        id="A.3",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), HKDF)
def test_hkdf_rfc5869(
    crypto: CryptoProvider, ikm: str, salt: str, info: str, length: int, prk: str, okm: str
) -> None:
    assert crypto.hkdf_extract(h(salt), h(ikm)) == h(prk)
    assert crypto.hkdf_expand(h(prk), h(info), length) == h(okm)
    assert crypto.hkdf_expand_many(h(prk), [(h(info), length), (h(info), 16)]) == [h(okm), h(okm)[:16]]


def test_hkdf_expand_many_is_hkdf_expand(crypto: CryptoProvider) -> None:
    # One block, several blocks, empty, a bytearray info: each the same as hkdf_expand.
    prk = bytes(range(32))
    mutable: Any = bytearray(b"ba")  # bytes-like inputs take the checked path
    requests: list[tuple[bytes, int]] = [(b"key", 16), (b"secret", 32), (b"", 0), (b"long", 100), (mutable, 12)]
    expected = [crypto.hkdf_expand(prk, i, n) for i, n in requests]
    assert crypto.hkdf_expand_many(prk, requests) == expected
    assert crypto.hkdf_expand_many(bytearray(prk), requests[:2]) == expected[:2]  # type: ignore[arg-type]
    assert crypto.hkdf_expand_many(prk, []) == []
    for bad in ([(b"x", -1)], [(b"x", 255 * 32 + 1)], [("text", 16)], [(b"x", 16), (None, 16)]):
        with raises_reason(MlsReason.INVALID_ARGUMENT, CryptoError):
            crypto.hkdf_expand_many(prk, bad)  # type: ignore[arg-type]
    with raises_reason(MlsReason.INVALID_ARGUMENT, CryptoError):
        crypto.hkdf_expand_many("prk", [(b"x", 16)])  # type: ignore[arg-type]


# -- RFC 4231, section 4: HMAC-SHA256 ---------------------------------------------------

HMAC = [
    pytest.param("0b" * 20, b"Hi There".hex(),
                 "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", id="case1"),
    pytest.param(b"Jefe".hex(), b"what do ya want for nothing?".hex(),
                 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", id="case2"),
    pytest.param("aa" * 20, "dd" * 50,
                 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", id="case3"),
    pytest.param(bytes(range(1, 26)).hex(), "cd" * 50,
                 "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", id="case4"),
    # Case 5 specifies only the first 128 bits of the output.
    pytest.param("0c" * 20, b"Test With Truncation".hex(), "a3b6167473100ee06e0c796c2955552b", id="case5"),
    pytest.param("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
                 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", id="case6"),
    pytest.param(
        "aa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size data. "
        b"The key needs to be hashed before being used by the HMAC algorithm.".hex(),
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        id="case7",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("key", "data", "mac"), HMAC)
def test_hmac_rfc4231(crypto: CryptoProvider, key: str, data: str, mac: str) -> None:
    expected = h(mac)
    assert crypto.hmac(h(key), h(data))[: len(expected)] == expected


def test_sha256_fips180(crypto: CryptoProvider) -> None:
    assert crypto.hash(b"abc") == h("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert crypto.hash(b"") == h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


# -- GCM specification (McGrew & Viega), test cases 1-4: AES-128-GCM --------------------

_GCM_K = "feffe9928665731c6d6a8f9467308308"
_GCM_IV = "cafebabefacedbaddecaf888"
_GCM_P = (
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
)
_GCM_C = (
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"
)
AES_GCM = [
    pytest.param("00" * 16, "00" * 12, "", "", "", "58e2fccefa7e3061367f1d57a4e7455a", id="case1"),
    pytest.param("00" * 16, "00" * 12, "", "00" * 16, "0388dace60b6a392f328c2b971b2fe78",
                 "ab6e47d42cec13bdf53a67b21257bddf", id="case2"),
    pytest.param(_GCM_K, _GCM_IV, "", _GCM_P, _GCM_C, "4d5c2af327cd64a62cf35abd2ba6fab4", id="case3"),
    pytest.param(_GCM_K, _GCM_IV, "feedfacedeadbeeffeedfacedeadbeefabaddad2", _GCM_P[:120], _GCM_C[:120],
                 "5bc94fbc3221a5db94fae95ae7121a47", id="case4"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "nonce", "aad", "plaintext", "ciphertext", "tag"), AES_GCM)
def test_aes128gcm_spec(
    crypto: CryptoProvider, key: str, nonce: str, aad: str, plaintext: str, ciphertext: str, tag: str
) -> None:
    sealed = crypto.aead_seal(h(key), h(nonce), h(aad), h(plaintext))
    assert sealed == h(ciphertext + tag)
    assert crypto.aead_open(h(key), h(nonce), h(aad), sealed) == h(plaintext)


# -- Large inputs: the same bytes on every backend --------------------------------------
# Digests of outputs computed once with pyca (deterministic primitives): they
# catch a backend that mishandles long buffers (chunking, FFI copies).

_BIG = bytes(i * 7 % 251 for i in range(200_003))


def test_large_inputs_match(crypto: CryptoProvider) -> None:
    key, nonce, aad = bytes(range(16)), bytes(range(12)), _BIG[:1000]
    sealed = crypto.aead_seal(key, nonce, aad, _BIG)
    assert len(sealed) == len(_BIG) + 16
    assert crypto.hash(sealed) == h("067db211843201bd0ed46d56c00140eebe83580d4aa1eeec16da7820f6446c7f")
    assert crypto.aead_open(key, nonce, aad, sealed) == _BIG
    signature = crypto.sign(bytes(range(32)), _BIG)
    assert crypto.hash(signature) == h("b094f9759ef2192fa72ed5b1e512ee360c7904ab305eac52cb8dcb368ca663de")
    crypto.verify(crypto.sign_public(bytes(range(32))), _BIG, signature)


# -- Key generation and randomness ------------------------------------------------------


def test_random(crypto: CryptoProvider) -> None:
    for n in (0, 1, 32, 65536, 65537, 200_000):
        assert len(crypto.random(n)) == n
    assert crypto.random(32) != crypto.random(32)
    with raises_reason(MlsReason.INVALID_ARGUMENT, CryptoError):
        crypto.random(-1)


def test_sign_keygen(crypto: CryptoProvider) -> None:
    secret, public = crypto.sign_keygen()
    assert len(secret) == 32 and len(public) == 32
    assert crypto.sign_public(secret) == public
    crypto.verify(public, b"msg", crypto.sign(secret, b"msg"))
    assert crypto.sign_keygen()[0] != secret


def test_dh_keygen(crypto: CryptoProvider) -> None:
    a, a_pub = crypto.dh_keygen()
    b, b_pub = crypto.dh_keygen()
    assert crypto.dh_public(a) == a_pub and crypto.dh_public(b) == b_pub
    assert crypto.dh(a, b_pub) == crypto.dh(b, a_pub)
    assert a != b


# -- Failures: the same ping_core.errors class from every backend ----------------------

_SK = h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
_PK = h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def test_bad_signatures(crypto: CryptoProvider) -> None:
    sig = crypto.sign(_SK, b"hello")
    tampered = bytes([sig[0] ^ 1]) + sig[1:]
    for public, message, signature in [
        (_PK, b"hello", tampered),
        (_PK, b"hellO", sig),
        (crypto.sign_public(bytes(32)), b"hello", sig),  # another key
        (_PK, b"hello", sig[:63]),  # short
        (_PK, b"hello", sig + b"\x00"),  # long
        (_PK, b"hello", b""),
        (_PK, b"hello", bytes(64)),
        # S >= L (the group order): malleable, refused by RFC 8032 verification.
        (_PK, b"hello", sig[:32] + (int.from_bytes(sig[32:], "little") + 2**252
                                     + 27742317777372353535851937790883648493).to_bytes(32, "little")),
    ]:  # fmt: skip
        with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
            crypto.verify(public, message, signature)


SMALL_ORDER_ED25519 = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
]


@pytest.mark.parametrize(
    "public",
    [pytest.param(p, id=f"small-order-{i}") for i, p in enumerate(SMALL_ORDER_ED25519)]
    + [
        pytest.param("0100000000000000000000000000000000000000000000000000000000000080", id="x0-sign-bit"),
        pytest.param("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", id="y=p"),
        pytest.param("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", id="y=p+1"),
    ],
)
def test_verify_refuses_small_order_public_keys(crypto: CryptoProvider, public: str) -> None:
    # With the identity as R and S = 0, a small-order key "verifies" any
    # message under lenient rules (OpenSSL accepts it): every backend refuses.
    signature = b"\x01" + bytes(31) + bytes(32)
    with raises_reason(MlsReason.INVALID_KEY, InvalidKey):
        crypto.verify(h(public), b"anything", signature)


def test_tampered_ciphertexts(crypto: CryptoProvider) -> None:
    key, nonce, aad = bytes(range(16)), bytes(range(12)), b"header"
    sealed = crypto.aead_seal(key, nonce, aad, b"attack at dawn")
    for k, n, a, c in [
        (key, nonce, aad, bytes([sealed[0] ^ 0x80]) + sealed[1:]),  # ciphertext bit
        (key, nonce, aad, sealed[:-1] + bytes([sealed[-1] ^ 1])),  # tag bit
        (key, nonce, b"headeR", sealed),  # other AAD
        (key, bytes(12), aad, sealed),  # other nonce
        (bytes(16), nonce, aad, sealed),  # other key
        (key, nonce, aad, sealed[:-1]),  # truncated
        (key, nonce, aad, sealed[:15]),  # shorter than a tag
        (key, nonce, aad, b""),
    ]:
        with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
            crypto.aead_open(k, n, a, c)


@pytest.mark.parametrize("key_len", [0, 15, 17, 24, 32])
def test_aead_wrong_key_length(crypto: CryptoProvider, key_len: int) -> None:
    with raises_reason(MlsReason.INVALID_KEY, InvalidKey):
        crypto.aead_seal(bytes(key_len), bytes(12), b"", b"x")
    with raises_reason(MlsReason.INVALID_KEY, InvalidKey):
        crypto.aead_open(bytes(key_len), bytes(12), b"", bytes(17))


@pytest.mark.parametrize("nonce_len", [0, 8, 11, 13, 16])
def test_aead_wrong_nonce_length(crypto: CryptoProvider, nonce_len: int) -> None:
    with raises_reason(MlsReason.INVALID_KEY, InvalidKey):
        crypto.aead_seal(bytes(16), bytes(nonce_len), b"", b"x")
    with raises_reason(MlsReason.INVALID_KEY, InvalidKey):
        crypto.aead_open(bytes(16), bytes(nonce_len), b"", bytes(17))


@pytest.mark.parametrize("bad_len", [0, 31, 33, 64])
def test_wrong_key_lengths(crypto: CryptoProvider, bad_len: int) -> None:
    bad = bytes(range(bad_len))
    for call in (
        lambda: crypto.sign_public(bad),
        lambda: crypto.sign(bad, b"m"),
        lambda: crypto.verify(bad, b"m", bytes(64)),
        lambda: crypto.dh_public(bad),
        lambda: crypto.dh(bad, _PK),
        lambda: crypto.dh(_SK, bad),
    ):
        with raises_reason(MlsReason.INVALID_KEY, InvalidKey):
            call()


# Low-order X25519 points (and non-canonical encodings of them): the shared
# secret is all zero whatever the scalar, which RFC 7748 section 6.1 lets
# (and MLS requires) implementations refuse.
LOW_ORDER = [
    pytest.param("00" * 32, id="0"),
    pytest.param("01" + "00" * 31, id="1"),
    pytest.param("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", id="order8-a"),
    pytest.param("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", id="order8-b"),
    pytest.param("ec" + "ff" * 30 + "7f", id="p-1"),
    pytest.param("ed" + "ff" * 30 + "7f", id="p"),
    pytest.param("ee" + "ff" * 30 + "7f", id="p+1"),
    pytest.param("00" * 31 + "80", id="0-high-bit"),
]


@pytest.mark.parametrize("public", LOW_ORDER)
def test_dh_all_zero_shared_secret(crypto: CryptoProvider, public: str) -> None:
    secret, _ = crypto.dh_keygen()
    with raises_reason(MlsReason.INVALID_KEY, InvalidKey):
        crypto.dh(secret, h(public))


def test_non_bytes_arguments_raise_crypto_errors(crypto: CryptoProvider) -> None:
    # A caller's type mistake is still a CryptoError, never a TypeError or a
    # backend (JS) exception.
    for call in (
        lambda: crypto.hash("text"),  # type: ignore[arg-type]
        lambda: crypto.hmac(None, b"x"),  # type: ignore[arg-type]
        lambda: crypto.hkdf_extract(b"", 5),  # type: ignore[arg-type]
        lambda: crypto.hkdf_expand(b"k" * 32, b"", 255 * 32 + 1),
        lambda: crypto.hkdf_expand(b"k" * 32, b"", -1),
        lambda: crypto.aead_seal(bytes(16), bytes(12), None, b"x"),  # type: ignore[arg-type]
        lambda: crypto.aead_seal(bytes(16), bytes(12), b"", "x"),  # type: ignore[arg-type]
        lambda: crypto.aead_open(bytes(16), bytes(12), b"", 17),  # type: ignore[arg-type]
        lambda: crypto.aead_seal("k" * 16, bytes(12), b"", b"x"),  # type: ignore[arg-type]
        lambda: crypto.sign(_SK, "message"),  # type: ignore[arg-type]
        lambda: crypto.verify(_PK, b"m", "sig"),  # type: ignore[arg-type]
        lambda: crypto.dh(None, _PK),  # type: ignore[arg-type]
        lambda: crypto.random("32"),  # type: ignore[arg-type]
    ):
        with raises_reason(MlsReason.INVALID_ARGUMENT, CryptoError):
            call()


def test_bytes_like_arguments_are_accepted(crypto: CryptoProvider) -> None:
    sig = crypto.sign(bytearray(_SK), memoryview(b"hello"))
    crypto.verify(memoryview(_PK), bytearray(b"hello"), memoryview(sig))
    sealed = crypto.aead_seal(bytearray(16), memoryview(bytes(12)), bytearray(b"a"), memoryview(b"p"))
    assert crypto.aead_open(bytes(16), bytes(12), b"a", bytearray(sealed)) == b"p"
