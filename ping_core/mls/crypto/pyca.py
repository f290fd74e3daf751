"""Cipher suite 1 on pyca ``cryptography`` (OpenSSL)."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence, TypeVar

from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from ping_core.errors import CryptoError, DecryptionFailed, InvalidKey, InvalidSignature, MlsReason

from . import threaded
from .provider import (
    AEAD_KEY_LEN,
    AEAD_NONCE_LEN,
    DH_PUBLIC_LEN,
    DH_SECRET_LEN,
    SIGN_SECRET_LEN,
    HashlibKdf,
    check_bytes,
    check_ed25519_public,
    check_len,
)

__all__ = ["PycaProvider"]

_RAW = Encoding.Raw
_RAW_PUB = PublicFormat.Raw
_RAW_PRIV = PrivateFormat.Raw
_NO_ENC = NoEncryption()

K = TypeVar("K")
# Verdicts kept from prefetch_verify at most (each is used once; public data only).
_VERDICT_LIMIT = 16384


class _KeyCache:
    """A bounded map from key bytes to the backend's parsed key object.

    Parsing a key costs as much as a small AEAD operation; MLS uses the same
    signature keys over and over. Only long-lived keys are cached: AEAD and
    X25519 private keys are used once or for one epoch, and MLS deletes them
    after use (forward secrecy), so no copy of them may outlive the caller's.
    """

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int = 512) -> None:
        self._items: dict[bytes, Any] = {}
        self._limit = limit

    def get(self, key: bytes, make: Callable[[bytes], K]) -> K:
        obj = self._items.get(key)
        if obj is None:
            obj = make(key)
            if len(self._items) >= self._limit:
                self._items.clear()
            self._items[key] = obj
        return obj


def _plain_aead_args(key: object, nonce: object, aad: object, data: object) -> bool:
    """Whether AEAD arguments are exact ``bytes`` with a valid key and nonce length (no checks needed)."""
    return (
        type(key) is bytes
        and len(key) == AEAD_KEY_LEN
        and type(nonce) is bytes
        and len(nonce) == AEAD_NONCE_LEN
        and type(aad) is bytes
        and type(data) is bytes
    )


class PycaProvider(HashlibKdf):
    """The default backend on CPython (and in a Pyodide distribution that ships pyca)."""

    name = "pyca"
    #: Set (to :meth:`_prefetch_verify`) where signatures can be verified on two threads:
    #: ``ping_core.mls.crypto.provider.prefetch_verify`` looks for it.
    prefetch_verify: Callable[[Sequence[tuple[bytes, bytes, bytes]]], None] | None = None

    def __init__(self) -> None:
        self._sign_priv = _KeyCache(64)
        self._sign_pub = _KeyCache(4096)
        # (public, signature, message) -> verdict from prefetch_verify, popped by verify().
        self._verdicts: dict[tuple[bytes, bytes, bytes], bool] = {}
        if threaded.AVAILABLE:
            self.prefetch_verify = self._prefetch_verify

    def __repr__(self) -> str:
        return "PycaProvider()"

    def random(self, n: int) -> bytes:
        if not isinstance(n, int) or n < 0:
            raise CryptoError("random length must be a non-negative int", reason=MlsReason.INVALID_ARGUMENT)
        return os.urandom(n)

    # -- AES-128-GCM -------------------------------------------------------

    def _aesgcm(self, key: bytes, nonce: bytes) -> AESGCM:
        key = check_len(key, AEAD_KEY_LEN, "AEAD key")
        check_len(nonce, AEAD_NONCE_LEN, "AEAD nonce")
        return AESGCM(key)

    # The AEAD and signature methods run several times per message. Each has a
    # fast path for arguments that are plainly valid (exact ``bytes`` of the
    # right length), which skips the generic checks; anything else takes the
    # checked path, so wrong input raises exactly as before.

    def aead_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        if _plain_aead_args(key, nonce, aad, plaintext):
            return AESGCM(key).encrypt(nonce, plaintext, aad)
        cipher = self._aesgcm(key, nonce)
        return cipher.encrypt(bytes(nonce), check_bytes(plaintext, "plaintext"), check_bytes(aad, "aad"))

    def aead_open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        if _plain_aead_args(key, nonce, aad, ciphertext):
            cipher = AESGCM(key)
        else:
            cipher = self._aesgcm(key, nonce)
            nonce, ciphertext, aad = bytes(nonce), check_bytes(ciphertext, "ciphertext"), check_bytes(aad, "aad")
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise DecryptionFailed(
                "AEAD ciphertext does not authenticate",
                reason=MlsReason.DECRYPTION_FAILED,
            ) from None

    # -- Ed25519 -----------------------------------------------------------

    def sign_keygen(self) -> tuple[bytes, bytes]:
        secret = os.urandom(SIGN_SECRET_LEN)
        return secret, self.sign_public(secret)

    def _sign_key(self, secret: bytes) -> Ed25519PrivateKey:
        secret = check_len(secret, SIGN_SECRET_LEN, "Ed25519 secret key")
        return self._sign_priv.get(secret, Ed25519PrivateKey.from_private_bytes)

    def sign_public(self, secret: bytes) -> bytes:
        return self._sign_key(secret).public_key().public_bytes(_RAW, _RAW_PUB)

    def sign(self, secret: bytes, message: bytes) -> bytes:
        if type(secret) is bytes and type(message) is bytes:
            key: Ed25519PrivateKey | None = self._sign_priv._items.get(secret)  # cached: checked when added
            if key is not None:
                return key.sign(message)
        return self._sign_key(secret).sign(check_bytes(message, "message"))

    def verify(self, public: bytes, message: bytes, signature: bytes) -> None:
        if self._verdicts and type(public) is bytes and type(message) is bytes and type(signature) is bytes:
            # A verdict of prefetch_verify for exactly these bytes (their key passed
            # check_ed25519_public there): the same answer pyca would give, computed ahead.
            verdict = self._verdicts.pop((public, signature, message), None)
            if verdict is True:
                return
            if verdict is False:
                raise InvalidSignature("Ed25519 signature does not verify", reason=MlsReason.BAD_SIGNATURE)
        # A cached key passed check_ed25519_public when it was added.
        key: Ed25519PublicKey | None = self._sign_pub._items.get(public) if type(public) is bytes else None
        if key is None or type(message) is not bytes or type(signature) is not bytes:
            public = check_ed25519_public(public)
            message = check_bytes(message, "message")
            signature = check_bytes(signature, "signature")
            try:
                key = self._sign_pub.get(public, Ed25519PublicKey.from_public_bytes)
            except ValueError:
                raise InvalidKey("not an Ed25519 public key", reason=MlsReason.INVALID_KEY) from None
        try:
            key.verify(signature, message)
        except _PycaInvalidSignature:
            raise InvalidSignature("Ed25519 signature does not verify", reason=MlsReason.BAD_SIGNATURE) from None

    def _prefetch_verify(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> None:
        """Verify ``(public, message, signature)`` items on two threads ahead of the
        :meth:`verify` calls that will ask for exactly them (see
        :func:`ping_core.mls.crypto.provider.prefetch_verify`). Only items the checks of
        :meth:`verify` pass are taken (exact bytes, a valid key, a 64-byte signature); an item
        OpenSSL reports an error for gets no verdict. Nothing here raises: :meth:`verify` still
        answers every call, in order, raising what it always raises."""
        batch: list[tuple[bytes, bytes, bytes]] = []
        for public, message, signature in items[:_VERDICT_LIMIT]:
            if type(public) is not bytes or type(message) is not bytes or type(signature) is not bytes:
                continue
            if len(signature) != 64:
                continue
            try:
                check_ed25519_public(public)
            except CryptoError:
                continue
            batch.append((public, message, signature))
        if len(batch) < threaded.MIN_BATCH:
            return  # not worth a thread: verify() checks them one by one
        verdicts = threaded.verify_many(batch)
        if len(self._verdicts) + len(batch) > _VERDICT_LIMIT:
            self._verdicts.clear()
        for (public, message, signature), verdict in zip(batch, verdicts):
            if verdict is not None:
                self._verdicts[(public, signature, message)] = verdict

    # -- X25519 ------------------------------------------------------------

    def dh_keygen(self) -> tuple[bytes, bytes]:
        secret = os.urandom(DH_SECRET_LEN)
        return secret, self.dh_public(secret)

    def _dh_key(self, secret: bytes) -> X25519PrivateKey:
        secret = check_len(secret, DH_SECRET_LEN, "X25519 secret key")
        return X25519PrivateKey.from_private_bytes(secret)

    def dh_public(self, secret: bytes) -> bytes:
        return self._dh_key(secret).public_key().public_bytes(_RAW, _RAW_PUB)

    def dh(self, secret: bytes, public: bytes) -> bytes:
        private = self._dh_key(secret)
        public = check_len(public, DH_PUBLIC_LEN, "X25519 public key")
        try:
            # OpenSSL refuses an all-zero shared secret (a low-order point).
            return private.exchange(X25519PublicKey.from_public_bytes(public))
        except ValueError:
            raise InvalidKey(
                "X25519 shared secret is all zero (low-order public key)",
                reason=MlsReason.INVALID_KEY,
            ) from None

    def encap_dh_many(self, publics: Sequence[bytes]) -> list[tuple[bytes, bytes] | CryptoError]:
        """For each public key a fresh ephemeral key's public and its DH with it, as
        :func:`ping_core.mls.crypto.provider.encap_dh_many` defines (the same results and errors
        as ``dh_keygen`` then ``dh``). Each ephemeral key is parsed once, and where OpenSSL can
        be reached through ctypes (:mod:`.threaded`) a batch runs on two threads; an item that
        fails there is redone here, so its error is this backend's."""
        out: list[tuple[bytes, bytes] | CryptoError | None] = [None] * len(publics)
        if threaded.AVAILABLE and len(publics) >= threaded.MIN_BATCH:
            where = [i for i, pub in enumerate(publics) if type(pub) is bytes and len(pub) == DH_PUBLIC_LEN]
            got = threaded.encap_dh_many([(os.urandom(DH_SECRET_LEN), publics[i]) for i in where])
            for i, result in zip(where, got):
                out[i] = result
        return [r if r is not None else self._encap_dh(publics[i]) for i, r in enumerate(out)]

    def _encap_dh(self, public: bytes) -> tuple[bytes, bytes] | CryptoError:
        """``dh_keygen`` then ``dh``, with the ephemeral key parsed once."""
        ephemeral = X25519PrivateKey.from_private_bytes(os.urandom(DH_SECRET_LEN))
        try:
            public = check_len(public, DH_PUBLIC_LEN, "X25519 public key")
        except CryptoError as exc:
            return exc
        try:
            shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public))
        except ValueError:
            return InvalidKey("X25519 shared secret is all zero (low-order public key)", reason=MlsReason.INVALID_KEY)
        return ephemeral.public_key().public_bytes(_RAW, _RAW_PUB), shared
