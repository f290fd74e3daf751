"""HPKE (RFC 9180) base mode for the one suite MLS cipher suite 1 uses.

KEM DHKEM(X25519, HKDF-SHA256) (0x0020), KDF HKDF-SHA256 (0x0001), AEAD
AES-128-GCM (0x0001). Only base mode (no PSK, no sender authentication) is
implemented: it is the only mode RFC 9420 uses.

Everything goes through the ``CryptoProvider`` passed as ``crypto``; this
module holds no key material between calls except inside a
:class:`SenderContext` / :class:`RecipientContext` the caller owns.

Guarantees:

* :func:`seal` / :func:`open` are RFC 9180 single-shot ``SealBase`` /
  ``OpenBase`` (sequence number 0). :class:`PreparedInfo` gives the same
  results for many messages with one ``info``, hashing ``info`` once.
* :func:`open` raises ``DecryptionFailed`` when the ciphertext does not
  authenticate and ``InvalidKey`` for a malformed or low-order ``enc``; it
  never returns unauthenticated plaintext.
* :func:`derive_key_pair` is RFC 9180 ``DeriveKeyPair`` for X25519 (the
  private key is the 32 expanded bytes; X25519 clamps them itself).
"""

from __future__ import annotations

from collections.abc import Sequence

from ping_core.errors import CryptoError, InvalidKey, MlsReason
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.crypto.provider import aead_seal_many, encap_dh_many

__all__ = [
    "KEM_ID",
    "KDF_ID",
    "AEAD_ID",
    "N_ENC",
    "N_PK",
    "N_SK",
    "PreparedInfo",
    "SenderContext",
    "RecipientContext",
    "derive_key_pair",
    "encap",
    "decap",
    "setup_base_s",
    "setup_base_r",
    "seal",
    "open",
    "export",
    "receive_export",
]

KEM_ID = 0x0020
KDF_ID = 0x0001
AEAD_ID = 0x0001
N_SECRET = 32  # DHKEM(X25519) shared secret length
N_ENC = 32
N_PK = 32
N_SK = 32
N_K = 16
N_N = 12
N_H = 32
MODE_BASE = 0

_VERSION = b"HPKE-v1"
_KEM_SUITE = b"KEM" + KEM_ID.to_bytes(2, "big")
_HPKE_SUITE = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
_MAX_SEQ = (1 << (8 * N_N)) - 1


def _labeled_extract(crypto: CryptoProvider, suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return crypto.hkdf_extract(salt, _VERSION + suite + label + ikm)


def _labeled_expand(crypto: CryptoProvider, suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return crypto.hkdf_expand(prk, length.to_bytes(2, "big") + _VERSION + suite + label + info, length)


def derive_key_pair(crypto: CryptoProvider, ikm: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 ``DeriveKeyPair(ikm)`` for X25519: ``(private, public)``."""
    dkp_prk = _labeled_extract(crypto, _KEM_SUITE, b"", b"dkp_prk", ikm)
    sk = _labeled_expand(crypto, _KEM_SUITE, dkp_prk, b"sk", b"", N_SK)
    return sk, crypto.dh_public(sk)


def _extract_and_expand(crypto: CryptoProvider, dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = _labeled_extract(crypto, _KEM_SUITE, b"", b"eae_prk", dh)
    return _labeled_expand(crypto, _KEM_SUITE, eae_prk, b"shared_secret", kem_context, N_SECRET)


def encap(crypto: CryptoProvider, pk_r: bytes, *, ephemeral: bytes | None = None) -> tuple[bytes, bytes]:
    """``Encap(pkR)``: ``(shared_secret, enc)``.

    ``ephemeral`` fixes the ephemeral private key; it exists only to reproduce
    published test vectors. Never pass it in production: a reused ephemeral
    key breaks confidentiality.
    """
    if ephemeral is None:
        sk_e, pk_e = crypto.dh_keygen()
    else:
        sk_e, pk_e = ephemeral, crypto.dh_public(ephemeral)
    dh = crypto.dh(sk_e, pk_r)
    return _extract_and_expand(crypto, dh, pk_e + pk_r), pk_e


def decap(crypto: CryptoProvider, enc: bytes, sk_r: bytes, pk_r: bytes | None = None) -> bytes:
    """``Decap(enc, skR)``: the shared secret.

    ``pk_r`` (the recipient's public key) saves a scalar multiplication when
    the caller knows it; it must match ``sk_r``.
    """
    if not isinstance(enc, bytes) or len(enc) != N_ENC:
        raise InvalidKey(f"HPKE enc must be {N_ENC} bytes", reason=MlsReason.INVALID_KEY)
    dh = crypto.dh(sk_r, enc)
    if pk_r is None:
        pk_r = crypto.dh_public(sk_r)
    return _extract_and_expand(crypto, dh, enc + pk_r)


# Base mode with an empty psk_id: ``psk_id_hash`` is a constant, computed once
# (pure hashing, the same in every backend).
_PSK_ID_HASH: bytes | None = None


def _psk_id_hash(crypto: CryptoProvider) -> bytes:
    global _PSK_ID_HASH
    if _PSK_ID_HASH is None:
        _PSK_ID_HASH = _labeled_extract(crypto, _HPKE_SUITE, b"", b"psk_id_hash", b"")
    return _PSK_ID_HASH


class PreparedInfo:
    """The part of RFC 9180's base-mode ``KeySchedule`` that depends only on ``info``.

    ``key_schedule_context = mode || psk_id_hash || LabeledExtract("", "info_hash", info)``
    is computed once here; every seal or open through this object runs only
    the per-message part (encapsulation, ``secret``, ``key``, ``base_nonce``).
    Use it to seal many messages with the same ``info`` (a Welcome's
    GroupSecrets to each new member: ``info`` holds the whole encrypted
    GroupInfo; an UpdatePath's path secrets: ``info`` holds the GroupContext).
    The results are exactly those of :func:`seal` / :func:`open`, which are
    built on it. Holds no secret: ``info`` is public.
    """

    __slots__ = ("_crypto", "_context")

    def __init__(self, crypto: CryptoProvider, info: bytes) -> None:
        self._crypto = crypto
        info_hash = _labeled_extract(crypto, _HPKE_SUITE, b"", b"info_hash", info)
        self._context = bytes((MODE_BASE,)) + _psk_id_hash(crypto) + info_hash

    def __repr__(self) -> str:
        return "PreparedInfo()"

    def _key_nonce(self, shared_secret: bytes) -> tuple[bytes, bytes, bytes]:
        """``(secret, key, base_nonce)`` of the key schedule."""
        crypto, context = self._crypto, self._context
        secret = _labeled_extract(crypto, _HPKE_SUITE, shared_secret, b"secret", b"")
        key = _labeled_expand(crypto, _HPKE_SUITE, secret, b"key", context, N_K)
        base_nonce = _labeled_expand(crypto, _HPKE_SUITE, secret, b"base_nonce", context, N_N)
        return secret, key, base_nonce

    def _schedule(self, shared_secret: bytes) -> tuple[bytes, bytes, bytes]:
        """``(key, base_nonce, exporter_secret)``: the whole key schedule."""
        secret, key, base_nonce = self._key_nonce(shared_secret)
        exporter_secret = _labeled_expand(self._crypto, _HPKE_SUITE, secret, b"exp", self._context, N_H)
        return key, base_nonce, exporter_secret

    def setup_s(self, pk_r: bytes, *, ephemeral: bytes | None = None) -> tuple[bytes, SenderContext]:
        """``SetupBaseS(pkR, info)``: ``(enc, context)``. See :func:`encap` for ``ephemeral``."""
        shared_secret, enc = encap(self._crypto, pk_r, ephemeral=ephemeral)
        return enc, SenderContext(self._crypto, *self._schedule(shared_secret))

    def setup_r(self, enc: bytes, sk_r: bytes, *, pk_r: bytes | None = None) -> RecipientContext:
        """``SetupBaseR(enc, skR, info)``. See :func:`decap` for ``pk_r``."""
        return RecipientContext(self._crypto, *self._schedule(decap(self._crypto, enc, sk_r, pk_r)))

    def seal(self, pk_r: bytes, aad: bytes, plaintext: bytes, *, ephemeral: bytes | None = None) -> tuple[bytes, bytes]:
        """Single-shot ``SealBase(pkR, info, aad, pt)``: ``(enc, ciphertext)``."""
        shared_secret, enc = encap(self._crypto, pk_r, ephemeral=ephemeral)
        _, key, base_nonce = self._key_nonce(shared_secret)
        # Sequence number 0: the nonce is the base nonce. No exporter secret is needed.
        return enc, self._crypto.aead_seal(key, base_nonce, aad, plaintext)

    def seal_many(self, items: Sequence[tuple[bytes, bytes]], aad: bytes = b"") -> list[tuple[bytes, bytes]]:
        """``[seal(pk_r, aad, plaintext) for pk_r, plaintext in items]``, with the
        encapsulations and the AEAD encryptions each done as one batch of the
        provider (one crossing each in the browser). Raises the error the first
        failing item would raise (``InvalidKey`` for a low-order key)."""
        crypto = self._crypto
        encaps = encap_dh_many(crypto, [pk_r for pk_r, _ in items])
        encs: list[bytes] = []
        seals: list[tuple[bytes, bytes, bytes, bytes]] = []
        for (pk_r, plaintext), got in zip(items, encaps):
            if isinstance(got, CryptoError):
                raise got
            pk_e, dh = got
            _, key, base_nonce = self._key_nonce(_extract_and_expand(crypto, dh, pk_e + pk_r))
            encs.append(pk_e)
            seals.append((key, base_nonce, aad, plaintext))
        return list(zip(encs, aead_seal_many(crypto, seals)))

    def open(self, enc: bytes, sk_r: bytes, aad: bytes, ciphertext: bytes, *, pk_r: bytes | None = None) -> bytes:
        """Single-shot ``OpenBase(enc, skR, info, aad, ct)``: the plaintext, or
        ``DecryptionFailed`` / ``InvalidKey``."""
        _, key, base_nonce = self._key_nonce(decap(self._crypto, enc, sk_r, pk_r))
        return self._crypto.aead_open(key, base_nonce, aad, ciphertext)


class _Context:
    """An HPKE encryption context: key, base nonce, sequence number, exporter."""

    __slots__ = ("_crypto", "_key", "_base_nonce", "_exporter_secret", "seq")

    def __init__(self, crypto: CryptoProvider, key: bytes, base_nonce: bytes, exporter_secret: bytes) -> None:
        self._crypto = crypto
        self._key = key
        self._base_nonce = base_nonce
        self._exporter_secret = exporter_secret
        self.seq = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seq={self.seq})"

    def _nonce(self) -> bytes:
        if self.seq >= _MAX_SEQ:
            raise CryptoError("HPKE message limit reached", reason=MlsReason.WRONG_STATE)
        seq = self.seq.to_bytes(N_N, "big")
        return bytes(a ^ b for a, b in zip(self._base_nonce, seq))

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """RFC 9180 ``Context.Export``."""
        return _labeled_expand(self._crypto, _HPKE_SUITE, self._exporter_secret, b"sec", exporter_context, length)


class SenderContext(_Context):
    """The sender side of ``SetupBaseS``; :meth:`seal` increments the sequence number."""

    __slots__ = ()

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        ct = self._crypto.aead_seal(self._key, self._nonce(), aad, plaintext)
        self.seq += 1
        return ct


class RecipientContext(_Context):
    """The recipient side of ``SetupBaseR``; a failed :meth:`open` does not advance it."""

    __slots__ = ()

    def open(self, aad: bytes, ciphertext: bytes) -> bytes:
        pt = self._crypto.aead_open(self._key, self._nonce(), aad, ciphertext)
        self.seq += 1
        return pt


def setup_base_s(
    crypto: CryptoProvider, pk_r: bytes, info: bytes, *, ephemeral: bytes | None = None
) -> tuple[bytes, SenderContext]:
    """``SetupBaseS(pkR, info)``: ``(enc, context)``. See :func:`encap` for ``ephemeral``."""
    return PreparedInfo(crypto, info).setup_s(pk_r, ephemeral=ephemeral)


def setup_base_r(
    crypto: CryptoProvider, enc: bytes, sk_r: bytes, info: bytes, *, pk_r: bytes | None = None
) -> RecipientContext:
    """``SetupBaseR(enc, skR, info)``."""
    return PreparedInfo(crypto, info).setup_r(enc, sk_r, pk_r=pk_r)


def seal(
    crypto: CryptoProvider,
    pk_r: bytes,
    info: bytes,
    aad: bytes,
    plaintext: bytes,
    *,
    ephemeral: bytes | None = None,
) -> tuple[bytes, bytes]:
    """Single-shot ``SealBase``: ``(enc, ciphertext)``. To seal several messages
    with the same ``info``, use one :class:`PreparedInfo`."""
    return PreparedInfo(crypto, info).seal(pk_r, aad, plaintext, ephemeral=ephemeral)


def open(  # noqa: A001 - the RFC's name
    crypto: CryptoProvider,
    enc: bytes,
    sk_r: bytes,
    info: bytes,
    aad: bytes,
    ciphertext: bytes,
    *,
    pk_r: bytes | None = None,
) -> bytes:
    """Single-shot ``OpenBase``: the plaintext, or ``DecryptionFailed`` / ``InvalidKey``."""
    return PreparedInfo(crypto, info).open(enc, sk_r, aad, ciphertext, pk_r=pk_r)


def export(
    crypto: CryptoProvider,
    pk_r: bytes,
    info: bytes,
    exporter_context: bytes,
    length: int,
    *,
    ephemeral: bytes | None = None,
) -> tuple[bytes, bytes]:
    """Single-shot ``SendExport``: ``(enc, exported secret)``."""
    enc, ctx = setup_base_s(crypto, pk_r, info, ephemeral=ephemeral)
    return enc, ctx.export(exporter_context, length)


def receive_export(
    crypto: CryptoProvider, enc: bytes, sk_r: bytes, info: bytes, exporter_context: bytes, length: int
) -> bytes:
    """Single-shot ``ReceiveExport``: the exported secret."""
    return setup_base_r(crypto, enc, sk_r, info).export(exporter_context, length)
