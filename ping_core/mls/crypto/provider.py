"""The ``CryptoProvider`` protocol: every primitive cipher suite 1 needs.

Cipher suite 1 is MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519: SHA-256,
HMAC-SHA256, HKDF-SHA256, AES-128-GCM, Ed25519 and X25519.

A provider is synchronous. Every method either returns its result or raises a
:class:`ping_core.errors.CryptoError` subclass; nothing else escapes (no
``TypeError``, no backend exception). Keys are raw bytes: 32-byte Ed25519
seeds and public keys, 32-byte X25519 scalars and public keys, 16-byte AES
keys. Backends may cache key objects by their bytes; callers never hold
backend objects.

Hashing, HMAC and HKDF are the same in every backend (Python's ``hashlib``
and ``hmac`` are C code on CPython and in Pyodide and beat any FFI crossing),
so they live here in :class:`HashlibKdf`, which backends inherit.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from ping_core.errors import CryptoError, InvalidKey, MlsReason

__all__ = [
    "CryptoProvider",
    "HashlibKdf",
    "HASH_LEN",
    "AEAD_KEY_LEN",
    "AEAD_NONCE_LEN",
    "AEAD_TAG_LEN",
    "encap_dh_many",
    "dh_keygen_many",
    "keygen_and_sign",
    "aead_seal_many",
    "sample_context",
    "sign_and_encrypt",
    "prefetch_verify",
    "wants_prefetch",
]

HASH_LEN = 32
AEAD_KEY_LEN = 16
AEAD_NONCE_LEN = 12
AEAD_TAG_LEN = 16
SIGN_SECRET_LEN = 32
SIGN_PUBLIC_LEN = 32
SIGNATURE_LEN = 64
DH_SECRET_LEN = 32
DH_PUBLIC_LEN = 32
# (key, nonce, aad, head, tail) and (secret, key label, nonce label, aad, plaintext):
# the two encryptions of :func:`sign_and_encrypt`.
AeadParts = tuple[bytes, bytes, bytes, bytes, bytes]


@runtime_checkable
class CryptoProvider(Protocol):
    """Primitives of cipher suite 1. See the module docstring for the contract."""

    name: str

    def random(self, n: int) -> bytes:
        """``n`` bytes from a cryptographically secure source."""
        ...

    def hash(self, data: bytes) -> bytes:
        """SHA-256 of ``data``."""
        ...

    def hmac(self, key: bytes, data: bytes) -> bytes:
        """HMAC-SHA256."""
        ...

    def hkdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        """HKDF-Extract with SHA-256 (RFC 5869)."""
        ...

    def hkdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """HKDF-Expand with SHA-256 (RFC 5869); ``length`` at most 255 * 32."""
        ...

    def hkdf_expand_many(self, prk: bytes, requests: Sequence[tuple[bytes, int]]) -> list[bytes]:
        """``[hkdf_expand(prk, info, length) for info, length in requests]``, faster.

        The same result and errors as those calls; one PRK keys several
        expansions (a ratchet secret gives a key, a nonce and the next secret).
        """
        ...

    def aead_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """AES-128-GCM encryption; returns ciphertext || 16-byte tag."""
        ...

    def aead_open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """AES-128-GCM decryption; raises ``DecryptionFailed`` if it does not authenticate."""
        ...

    def sign_keygen(self) -> tuple[bytes, bytes]:
        """A fresh Ed25519 key pair as (32-byte seed, 32-byte public key)."""
        ...

    def sign_public(self, secret: bytes) -> bytes:
        """The Ed25519 public key of a 32-byte seed."""
        ...

    def sign(self, secret: bytes, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature (RFC 8032, deterministic)."""
        ...

    def verify(self, public: bytes, message: bytes, signature: bytes) -> None:
        """Returns if the signature verifies; raises ``InvalidSignature`` otherwise."""
        ...

    def dh_keygen(self) -> tuple[bytes, bytes]:
        """A fresh X25519 key pair as (32-byte scalar, 32-byte public key)."""
        ...

    def dh_public(self, secret: bytes) -> bytes:
        """The X25519 public key of a 32-byte scalar."""
        ...

    def dh(self, secret: bytes, public: bytes) -> bytes:
        """X25519; raises ``InvalidKey`` when the shared secret is all zero."""
        ...


def check_len(value: object, length: int, what: str) -> bytes:
    """``value`` as bytes of exactly ``length`` bytes, or ``InvalidKey``."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidKey(f"{what} must be bytes", reason=MlsReason.INVALID_ARGUMENT)
    if len(value) != length:
        raise InvalidKey(f"{what} must be {length} bytes, got {len(value)}", reason=MlsReason.INVALID_KEY)
    return bytes(value)


# Ed25519 public keys every backend refuses with InvalidKey, whatever its own
# decoding rules: the 8 points of small order (a signer with such a key can
# make signatures that verify for many messages), the two x = 0 points with
# the sign bit set (not a valid encoding), and any y >= p (non-canonical).
# Checked here so OpenSSL (which accepts some of them) and noble's strict mode
# (which refuses them) agree.
_ED25519_P = 2**255 - 19
_ED25519_REFUSED = frozenset(
    bytes.fromhex(x)
    for x in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    )
)


def check_ed25519_public(value: object) -> bytes:
    """A 32-byte Ed25519 public key that is canonical and not of small order, or ``InvalidKey``."""
    public = check_len(value, SIGN_PUBLIC_LEN, "Ed25519 public key")
    if public in _ED25519_REFUSED:
        raise InvalidKey("Ed25519 public key of small order", reason=MlsReason.INVALID_KEY)
    if (int.from_bytes(public, "little") & ((1 << 255) - 1)) >= _ED25519_P:
        raise InvalidKey("Ed25519 public key is not canonically encoded", reason=MlsReason.INVALID_KEY)
    return public


def check_bytes(value: object, what: str) -> bytes:
    """``value`` as bytes, or ``CryptoError`` when it is not a bytes-like object."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise CryptoError(f"{what} must be bytes", reason=MlsReason.INVALID_ARGUMENT)


_sha256 = hashlib.sha256
_hmac_digest: Callable[[bytes, bytes, str], bytes] = _hmac.digest
try:
    # The C function behind ``hmac.digest`` when OpenSSL backs hashlib (CPython,
    # and Pyodide once its hashlib package is loaded): calling it directly
    # skips a Python frame on every HKDF call (10 per message round trip).
    # Same arguments, same TypeError for non-bytes; used only if it agrees
    # with ``hmac.digest`` here.
    from _hashlib import hmac_digest as _c_hmac_digest

    if _c_hmac_digest(b"k", b"m", "sha256") == _hmac.digest(b"k", b"m", "sha256"):
        _hmac_digest = _c_hmac_digest
except Exception:  # no OpenSSL hashlib: keep hmac.digest
    pass

# An HMAC-SHA256 object keyed once, copied for each message: half the cost of
# hmac_digest per expansion when one PRK is expanded several times.
_hmac_new: Callable[[bytes], Any] | None = None
try:
    from _hashlib import hmac_new as _c_hmac_new

    def _hmac_sha256(key: bytes) -> Any:
        return _c_hmac_new(key, digestmod="sha256")

    _probe = _hmac_sha256(b"k").copy()
    _probe.update(b"m")
    if _probe.digest() == _hmac.digest(b"k", b"m", "sha256"):
        _hmac_new = _hmac_sha256
    del _probe
except Exception:  # no OpenSSL hashlib: one hmac_digest per expansion
    pass


class HashlibKdf:
    """SHA-256, HMAC and HKDF from the standard library, shared by all backends."""

    __slots__ = ()

    def hash(self, data: bytes) -> bytes:
        try:
            return _sha256(data).digest()
        except TypeError:
            raise CryptoError("data must be bytes", reason=MlsReason.INVALID_ARGUMENT) from None

    def hmac(self, key: bytes, data: bytes) -> bytes:
        try:
            return _hmac_digest(key, data, "sha256")
        except TypeError:
            raise CryptoError("key and data must be bytes", reason=MlsReason.INVALID_ARGUMENT) from None

    def hkdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        # RFC 5869: an absent salt is HashLen zero bytes; HMAC pads a short key
        # with zeros, so b"" gives the same result.
        try:
            return _hmac_digest(salt, ikm, "sha256")
        except TypeError:
            raise CryptoError("salt and ikm must be bytes", reason=MlsReason.INVALID_ARGUMENT) from None

    def hkdf_expand_many(self, prk: bytes, requests: Sequence[tuple[bytes, int]]) -> list[bytes]:
        hkdf_expand = self.hkdf_expand
        if _hmac_new is None or type(prk) is not bytes:
            return [hkdf_expand(prk, info, length) for info, length in requests]
        copy = _hmac_new(prk).copy
        out = []
        for info, length in requests:
            if type(length) is int and 0 <= length <= HASH_LEN and type(info) is bytes:
                h = copy()  # one block: T(1) = HMAC(prk, info || 0x01)
                h.update(info + b"\x01")
                out.append(h.digest()[:length])
            else:
                out.append(hkdf_expand(prk, info, length))
        return out

    def hkdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        if type(length) is int and 0 <= length <= HASH_LEN:  # the common case in MLS: one block
            try:
                return _hmac_digest(prk, info + b"\x01", "sha256")[:length]
            except TypeError:
                raise CryptoError("prk and info must be bytes", reason=MlsReason.INVALID_ARGUMENT) from None
        if not isinstance(length, int) or not 0 <= length <= 255 * HASH_LEN:
            raise CryptoError("HKDF-Expand length out of range", reason=MlsReason.INVALID_ARGUMENT)
        try:
            if length <= HASH_LEN:  # a bool length
                return _hmac_digest(prk, info + b"\x01", "sha256")[:length]
            out = b""
            block = b""
            counter = 1
            while len(out) < length:
                block = _hmac_digest(prk, block + info + bytes((counter,)), "sha256")
                out += block
                counter += 1
            return out[:length]
        except TypeError:
            raise CryptoError("prk and info must be bytes", reason=MlsReason.INVALID_ARGUMENT) from None


# -- batches ------------------------------------------------------------------
#
# Optional provider methods for work the engine has many independent pieces of
# (a commit encrypting path secrets to ~N leaves, a Welcome to N joiners, a tree
# of N signed leaves). A backend whose every call has a fixed cost (the browser's
# WebCrypto: one JSPI stack switch per call) answers a whole batch in one call;
# the helpers below fall back to the single-operation methods for any provider
# that lacks them, so results and errors are the same on every backend.


def encap_dh_many(crypto: CryptoProvider, publics: Sequence[bytes]) -> list[tuple[bytes, bytes] | CryptoError]:
    """For each X25519 public key: a fresh ephemeral key pair's public key and
    its DH shared secret with that key, ``(ephemeral public, shared)``, or the
    ``CryptoError`` that ``dh_keygen``/``dh`` raised for it (``InvalidKey`` for
    a low-order point). The ephemeral private keys are not returned (RFC 9180
    ``Encap`` needs only these two values), so no copy of them outlives the call.
    """
    batch = getattr(crypto, "encap_dh_many", None)
    if batch is not None:
        out: list[tuple[bytes, bytes] | CryptoError] = batch(publics)
        return out
    results: list[tuple[bytes, bytes] | CryptoError] = []
    for public in publics:
        try:
            sk_e, pk_e = crypto.dh_keygen()
            results.append((pk_e, crypto.dh(sk_e, public)))
        except CryptoError as exc:
            results.append(exc)
    return results


def dh_keygen_many(crypto: CryptoProvider, n: int) -> list[tuple[bytes, bytes]]:
    """``[dh_keygen() for _ in range(n)]``: ``n`` fresh X25519 key pairs."""
    batch = getattr(crypto, "dh_keygen_many", None)
    if batch is not None:
        out: list[tuple[bytes, bytes]] = batch(n)
        return out
    return [crypto.dh_keygen() for _ in range(n)]


def keygen_and_sign(
    crypto: CryptoProvider,
    secret: bytes,
    n_keys: int,
    templates: Sequence[bytes],
    splices: Sequence[tuple[int, int, int]],
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """``n_keys`` fresh X25519 key pairs, then each template signed with the Ed25519
    ``secret`` in order, after writing into it, for each splice ``(template, offset,
    source)``: the public key (32 bytes) of pair ``source`` when ``source >= 0``, else
    the signature (64 bytes) of the earlier template ``-source - 1``. Returns
    ``(pairs, signatures)``: what ``dh_keygen`` and ``sign`` calls would give (a
    KeyPackage signs its leaf node, which holds a new key, and then itself, which
    holds another new key and that signature: one call instead of four).
    """
    if not isinstance(n_keys, int) or n_keys < 0:
        raise CryptoError("n_keys must be a non-negative int", reason=MlsReason.INVALID_ARGUMENT)
    for t, offset, source in splices:
        if not 0 <= t < len(templates):
            raise CryptoError("a splice names no template", reason=MlsReason.INVALID_ARGUMENT)
        size = DH_PUBLIC_LEN if source >= 0 else SIGNATURE_LEN
        if source >= n_keys or (source < 0 and not -source - 1 < t):
            raise CryptoError(
                "a splice names a key that is not made or a signature that is not earlier",
                reason=MlsReason.INVALID_ARGUMENT,
            )
        if not 0 <= offset <= len(templates[t]) - size:
            raise CryptoError("a splice does not fit in its template", reason=MlsReason.INVALID_ARGUMENT)
    batch = getattr(crypto, "keygen_and_sign", None)
    if batch is not None:
        out: tuple[list[tuple[bytes, bytes]], list[bytes]] = batch(secret, n_keys, templates, splices)
        return out
    pairs = dh_keygen_many(crypto, n_keys)
    signatures: list[bytes] = []
    for i, template in enumerate(templates):
        message = bytearray(template)
        for t, offset, source in splices:
            if t == i:
                value = pairs[source][1] if source >= 0 else signatures[-source - 1]
                message[offset : offset + len(value)] = value
        signatures.append(crypto.sign(secret, bytes(message)))
    return pairs, signatures


def aead_seal_many(crypto: CryptoProvider, items: Sequence[tuple[bytes, bytes, bytes, bytes]]) -> list[bytes]:
    """``[aead_seal(key, nonce, aad, plaintext) for ...]``: the same results and errors."""
    batch = getattr(crypto, "aead_seal_many", None)
    if batch is not None:
        out: list[bytes] = batch(items)
        return out
    return [crypto.aead_seal(*item) for item in items]


def sample_context(ciphertext: bytes) -> bytes:
    """The ExpandWithLabel context of the sender-data key and nonce (RFC 9420 §6.3.2):
    ``ciphertext_sample`` (the first ``Nh`` bytes of the content ciphertext, or all
    of a shorter one) as ``opaque<V>``, whose length prefix is one byte (at most 32)."""
    sample = ciphertext[:HASH_LEN]
    return bytes((len(sample),)) + sample


def sign_and_encrypt(
    crypto: CryptoProvider,
    signature_key: bytes,
    to_sign: bytes,
    content: AeadParts,
    sender_data: AeadParts,
    *,
    single_calls: bool = False,
) -> tuple[bytes, bytes, bytes]:
    """A PrivateMessage's whole protection (RFC 9420 §6.3) as one call:

    * ``signature = sign(signature_key, to_sign)``;
    * with ``content = (key, nonce, aad, head, tail)``:
      ``ciphertext = aead_seal(key, nonce, aad, head || signature || tail)``;
    * with ``sender_data = (secret, key_label, nonce_label, aad, plaintext)``: the
      sender-data key and nonce ``hkdf_expand(secret, label || sample_context(ciphertext),
      Nk / Nn)`` (``label``: the KDFLabel up to its context) and
      ``encrypted = aead_seal(that key, that nonce, aad, plaintext)``.

    Returns ``(signature, ciphertext, encrypted)``: what those single calls give,
    with their errors. A provider with a ``sign_and_encrypt`` method does it all
    at once (the browser: one stack switch instead of one per signature plus
    the FFI calls of four small AES-GCM and HKDF operations), unless
    ``single_calls`` asks for the reference (that method's own fallback).
    """
    batch = None if single_calls else getattr(crypto, "sign_and_encrypt", None)
    if batch is not None:
        out: tuple[bytes, bytes, bytes] = batch(signature_key, to_sign, content, sender_data)
        return out
    key, nonce, aad, head, tail = content
    secret, key_label, nonce_label, sd_aad, sd_plaintext = sender_data
    signature = crypto.sign(signature_key, to_sign)
    plaintext = check_bytes(head, "plaintext") + signature + check_bytes(tail, "plaintext")
    ciphertext = crypto.aead_seal(key, nonce, aad, plaintext)
    key_label, nonce_label = check_bytes(key_label, "prk and info"), check_bytes(nonce_label, "prk and info")
    context = sample_context(ciphertext)
    sd_key, sd_nonce = crypto.hkdf_expand_many(
        secret, ((key_label + context, AEAD_KEY_LEN), (nonce_label + context, AEAD_NONCE_LEN))
    )
    return signature, ciphertext, crypto.aead_seal(sd_key, sd_nonce, sd_aad, sd_plaintext)


def wants_prefetch(crypto: CryptoProvider) -> bool:
    """Whether :func:`prefetch_verify` does anything for this provider (so the
    caller computes the signed contents ahead only when it pays)."""
    return getattr(crypto, "prefetch_verify", None) is not None


def prefetch_verify(crypto: CryptoProvider, items: Sequence[tuple[bytes, bytes, bytes]]) -> None:
    """A hint: ``verify(public, message, signature)`` will be called for these.

    A provider that supports it verifies them all at once and answers those
    later calls from the verdicts (each call still checks its arguments and
    raises exactly as without the hint); others ignore it. Never raises for a
    bad item: the later ``verify`` call reports it. Verdicts are kept only for
    the exact bytes given, so a hint that does not match a later call changes
    nothing but the time that call takes.
    """
    hint = getattr(crypto, "prefetch_verify", None)
    if hint is not None and items:
        hint(items)
