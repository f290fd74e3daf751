"""RFC 9420's labelled cryptographic helpers (§5) for cipher suite 1.

Every function takes the ``CryptoProvider`` first and returns bytes; labels
are ``bytes`` *without* the ``"MLS 1.0 "`` prefix, which these functions add
where the RFC says so (not for :func:`ref_hash`, whose labels are complete).

* ``ExpandWithLabel`` / ``DeriveSecret`` / ``DeriveTreeSecret`` (§5.1 and §9)
* ``RefHash``, ``MakeKeyPackageRef``, ``MakeProposalRef`` (§5.2)
* ``SignWithLabel`` / ``VerifyWithLabel`` (§5.1.2)
* ``EncryptWithLabel`` / ``DecryptWithLabel`` (§5.1.3), on HPKE base mode
  (:class:`LabeledEncryption` for many keys with one label and context)
* ``MAC`` (HMAC-SHA256)

Failures: :func:`verify_with_label` raises ``InvalidSignature``;
:func:`decrypt_with_label` raises ``DecryptionFailed`` (or ``InvalidKey`` for
a malformed KEM output). Nothing returns a flag the caller could forget.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from ping_core.mls.tls import opaque
from ping_core.mls.crypto import CryptoProvider

from . import hpke

__all__ = [
    "NH",
    "NK",
    "NN",
    "LABEL_PREFIX",
    "expand_with_label",
    "derive_secret",
    "derive_tree_secret",
    "ref_hash",
    "make_key_package_ref",
    "make_proposal_ref",
    "sign_with_label",
    "verify_with_label",
    "sign_content",
    "encrypt_with_label",
    "decrypt_with_label",
    "LabeledEncryption",
    "mac",
    "zero_secret",
]

NH = 32  # KDF.Nh / Hash length
NK = 16  # AEAD.Nk
NN = 12  # AEAD.Nn
LABEL_PREFIX = b"MLS 1.0 "

_ZERO = bytes(NH)


def zero_secret() -> bytes:
    """``Nh`` zero bytes: the "0" of the key schedule."""
    return _ZERO


@lru_cache(maxsize=256)
def _mls_label(label: bytes) -> bytes:
    # ``opaque label<V> = "MLS 1.0 " + Label``: labels are a small fixed set,
    # so their encodings are cached.
    return opaque(LABEL_PREFIX + label)


def expand_with_label(crypto: CryptoProvider, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """``ExpandWithLabel(Secret, Label, Context, Length)``.

    ``KDF.Expand(Secret, KDFLabel, Length)`` with
    ``KDFLabel = { uint16 length; opaque label<V>; opaque context<V>; }``.
    """
    info = length.to_bytes(2, "big") + _mls_label(label) + opaque(context)
    return crypto.hkdf_expand(secret, info, length)


def derive_secret(crypto: CryptoProvider, secret: bytes, label: bytes) -> bytes:
    """``DeriveSecret(Secret, Label) = ExpandWithLabel(Secret, Label, "", Nh)``."""
    return crypto.hkdf_expand(secret, b"\x00\x20" + _mls_label(label) + b"\x00", NH)


def derive_tree_secret(crypto: CryptoProvider, secret: bytes, label: bytes, generation: int, length: int) -> bytes:
    """``DeriveTreeSecret``: ``ExpandWithLabel(Secret, Label, uint32 generation, Length)``."""
    info = length.to_bytes(2, "big") + _mls_label(label) + b"\x04" + generation.to_bytes(4, "big")
    return crypto.hkdf_expand(secret, info, length)


def ref_hash(crypto: CryptoProvider, label: bytes, value: bytes) -> bytes:
    """``RefHash(label, value) = Hash(RefHashInput{ opaque label<V>; opaque value<V>; })``."""
    return crypto.hash(opaque(label) + opaque(value))


def make_key_package_ref(crypto: CryptoProvider, key_package: bytes) -> bytes:
    """``KeyPackageRef`` of an encoded KeyPackage (§5.2)."""
    return ref_hash(crypto, b"MLS 1.0 KeyPackage Reference", key_package)


def make_proposal_ref(crypto: CryptoProvider, authenticated_content: bytes) -> bytes:
    """``ProposalRef`` of the encoded AuthenticatedContent that carries a proposal (§5.2)."""
    return ref_hash(crypto, b"MLS 1.0 Proposal Reference", authenticated_content)


def sign_content(label: bytes, content: bytes) -> bytes:
    """The encoded ``SignContent { opaque label<V>; opaque content<V>; }`` that is signed."""
    return _mls_label(label) + opaque(content)


def sign_with_label(crypto: CryptoProvider, secret: bytes, label: bytes, content: bytes) -> bytes:
    """``SignWithLabel(SignatureKey, Label, Content)``: an Ed25519 signature."""
    return crypto.sign(secret, _mls_label(label) + opaque(content))


def verify_with_label(crypto: CryptoProvider, public: bytes, label: bytes, content: bytes, signature: bytes) -> None:
    """``VerifyWithLabel``: returns when it verifies, raises ``InvalidSignature`` otherwise."""
    crypto.verify(public, _mls_label(label) + opaque(content), signature)


class LabeledEncryption:
    """``EncryptWithLabel`` / ``DecryptWithLabel`` (§5.1.3) with one ``label`` and ``context``.

    The HPKE info ``EncryptContext { opaque label<V>; opaque context<V>; }``
    is the same for every call, so its part of the HPKE key schedule is
    computed once (:class:`hpke.PreparedInfo`): encrypting to many keys (a
    Welcome's new members, an UpdatePath's copath resolution) costs only the
    per-key work. Results equal :func:`encrypt_with_label` /
    :func:`decrypt_with_label`, which are built on it.
    """

    __slots__ = ("_hpke",)

    def __init__(self, crypto: CryptoProvider, label: bytes, context: bytes) -> None:
        self._hpke = hpke.PreparedInfo(crypto, _mls_label(label) + opaque(context))

    def __repr__(self) -> str:
        return "LabeledEncryption()"

    def encrypt(self, public: bytes, plaintext: bytes, *, ephemeral: bytes | None = None) -> tuple[bytes, bytes]:
        """``(kem_output, ciphertext)`` of HPKE ``SealBase`` to ``public`` with an empty aad.
        ``ephemeral`` is for known-answer tests only."""
        return self._hpke.seal(public, b"", plaintext, ephemeral=ephemeral)

    def encrypt_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """``[encrypt(public, plaintext) for public, plaintext in items]`` as one
        batch of the provider (see :meth:`hpke.PreparedInfo.seal_many`)."""
        return self._hpke.seal_many(items)

    def decrypt(self, secret: bytes, kem_output: bytes, ciphertext: bytes, *, public: bytes | None = None) -> bytes:
        """The plaintext, or ``DecryptionFailed``/``InvalidKey``. ``public`` (the
        recipient's own public key) saves one scalar multiplication."""
        return self._hpke.open(kem_output, secret, b"", ciphertext, pk_r=public)


def encrypt_with_label(
    crypto: CryptoProvider,
    public: bytes,
    label: bytes,
    context: bytes,
    plaintext: bytes,
    *,
    ephemeral: bytes | None = None,
) -> tuple[bytes, bytes]:
    """``EncryptWithLabel``: ``(kem_output, ciphertext)`` of HPKE ``SealBase``.

    The HPKE info is ``EncryptContext { opaque label<V>; opaque context<V>; }``
    and the aad is empty. ``ephemeral`` is for known-answer tests only. To
    encrypt to several keys with the same label and context, use one
    :class:`LabeledEncryption`.
    """
    return LabeledEncryption(crypto, label, context).encrypt(public, plaintext, ephemeral=ephemeral)


def decrypt_with_label(
    crypto: CryptoProvider,
    secret: bytes,
    label: bytes,
    context: bytes,
    kem_output: bytes,
    ciphertext: bytes,
    *,
    public: bytes | None = None,
) -> bytes:
    """``DecryptWithLabel``: the plaintext, or ``DecryptionFailed``/``InvalidKey``.

    ``public`` (the recipient's own public key) saves one scalar multiplication.
    """
    return LabeledEncryption(crypto, label, context).decrypt(secret, kem_output, ciphertext, public=public)


def mac(crypto: CryptoProvider, key: bytes, data: bytes) -> bytes:
    """``MAC(key, data)``: HMAC-SHA256."""
    return crypto.hmac(key, data)
