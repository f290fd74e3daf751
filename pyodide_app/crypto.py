"""Cipher suite 1 over the bundled noble JS module (``pingcrypto``).

The offline Pyodide build has no pyca ``cryptography``; this backend gives the
same results and raises the same :mod:`ping_core.errors` classes as
:class:`ping_core.mls.crypto.pyca.PycaProvider`:

- ``InvalidSignature`` when an Ed25519 signature does not verify (including a
  signature of the wrong length or a public key that is not a point);
- ``DecryptionFailed`` when an AES-128-GCM ciphertext does not authenticate;
- ``InvalidKey`` for a key or nonce of the wrong length and for an X25519
  public key whose shared secret would be all zero;
- ``CryptoError`` for a non-bytes argument or anything the JS side throws.

No ``JsException`` and no ``TypeError`` leaves this module.

SHA-256, HMAC and HKDF stay in Python's ``hashlib`` (inherited from
:class:`HashlibKdf`): C code in Pyodide too, faster than any FFI crossing.
Each JS call gets one concatenated buffer (fixed-size fields first) because
every Python -> JS crossing copies and costs a few microseconds.
"""

from __future__ import annotations

from typing import Any

from ping_core.errors import CryptoError, DecryptionFailed, InvalidKey, InvalidSignature, MlsReason
from ping_core.mls.crypto import HashlibKdf, register_backend
from ping_core.mls.crypto.provider import (
    AEAD_KEY_LEN,
    AEAD_NONCE_LEN,
    DH_PUBLIC_LEN,
    DH_SECRET_LEN,
    SIGN_SECRET_LEN,
    SIGNATURE_LEN,
    check_bytes,
    check_ed25519_public,
    check_len,
)

__all__ = ["NobleProvider", "register", "JS_MODULE_NAME", "PRIORITY"]

JS_MODULE_NAME = "pingcrypto"
# Below pyca (100): a Pyodide distribution that ships pyca uses it instead.
PRIORITY = 50
# crypto.getRandomValues takes at most 64 KiB per call; the JS side loops,
# but a single request larger than this is surely a bug.
_MAX_RANDOM = 1 << 24


def _load_js_module() -> Any:
    try:
        import pyodide.ffi  # type: ignore[import-not-found,unused-ignore]  # noqa: F401  (only inside Pyodide)

        return __import__(JS_MODULE_NAME)
    except ImportError as exc:
        raise CryptoError(
            f"the JS crypto module {JS_MODULE_NAME!r} is not registered (Pyodide only)",
            reason=MlsReason.UNSUPPORTED_OPTION,
        ) from exc


class NobleProvider(HashlibKdf):
    """The JS backend: Ed25519, X25519, AES-128-GCM and randomness from noble.

    Stateless apart from the JS module handle; safe to share.
    """

    name = "noble"

    def __init__(self, js_module: Any = None) -> None:
        from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found,unused-ignore]

        self._js = js_module if js_module is not None else _load_js_module()
        self._to_js = to_js
        self._js_error = JsException

    def __repr__(self) -> str:
        return "NobleProvider()"

    def _fail(self, what: str) -> CryptoError:
        # The JS message never contains key material (noble's messages are
        # generic), but keep ours fixed anyway: secrets never reach exceptions.
        return CryptoError(f"{what} failed in the JS crypto backend", reason=MlsReason.BACKEND_FAILURE)

    def random(self, n: int) -> bytes:
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= _MAX_RANDOM:
            raise CryptoError("random length must be an int in [0, 2**24]", reason=MlsReason.INVALID_ARGUMENT)
        if n == 0:
            return b""
        try:
            out: bytes = self._js.randomBytes(n).to_bytes()
        except self._js_error:
            raise self._fail("random") from None
        return out

    # -- AES-128-GCM -------------------------------------------------------

    def aead_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        aad = check_bytes(aad, "aad")
        buf = (
            check_len(key, AEAD_KEY_LEN, "AEAD key")
            + check_len(nonce, AEAD_NONCE_LEN, "AEAD nonce")
            + aad
            + check_bytes(plaintext, "plaintext")
        )
        try:
            out: bytes = self._js.gcmSeal(self._to_js(buf), len(aad)).to_bytes()
        except self._js_error:
            raise self._fail("AEAD seal") from None
        return out

    def aead_open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        aad = check_bytes(aad, "aad")
        buf = (
            check_len(key, AEAD_KEY_LEN, "AEAD key")
            + check_len(nonce, AEAD_NONCE_LEN, "AEAD nonce")
            + aad
            + check_bytes(ciphertext, "ciphertext")
        )
        try:
            res = self._js.gcmOpen(self._to_js(buf), len(aad))
        except self._js_error:
            raise self._fail("AEAD open") from None
        if res is None:  # JS undefined: the tag did not match
            raise DecryptionFailed("AEAD ciphertext does not authenticate", reason=MlsReason.DECRYPTION_FAILED)
        out: bytes = res.to_bytes()
        return out

    # -- Ed25519 -----------------------------------------------------------

    def sign_keygen(self) -> tuple[bytes, bytes]:
        try:
            pair: bytes = self._js.ed25519Keygen().to_bytes()
        except self._js_error:
            raise self._fail("Ed25519 keygen") from None
        return pair[:SIGN_SECRET_LEN], pair[SIGN_SECRET_LEN:]

    def sign_public(self, secret: bytes) -> bytes:
        secret = check_len(secret, SIGN_SECRET_LEN, "Ed25519 secret key")
        try:
            out: bytes = self._js.ed25519Public(self._to_js(secret)).to_bytes()
        except self._js_error:
            raise self._fail("Ed25519 public key") from None
        return out

    def sign(self, secret: bytes, message: bytes) -> bytes:
        buf = check_len(secret, SIGN_SECRET_LEN, "Ed25519 secret key") + check_bytes(message, "message")
        try:
            out: bytes = self._js.ed25519Sign(self._to_js(buf)).to_bytes()
        except self._js_error:
            raise self._fail("Ed25519 sign") from None
        return out

    def verify(self, public: bytes, message: bytes, signature: bytes) -> None:
        public = check_ed25519_public(public)
        message = check_bytes(message, "message")
        signature = check_bytes(signature, "signature")
        if len(signature) != SIGNATURE_LEN:
            raise InvalidSignature("Ed25519 signature does not verify", reason=MlsReason.BAD_SIGNATURE)
        try:
            ok = self._js.ed25519Verify(self._to_js(public + signature + message))
        except self._js_error:
            raise self._fail("Ed25519 verify") from None
        if ok is not True:
            raise InvalidSignature("Ed25519 signature does not verify", reason=MlsReason.BAD_SIGNATURE)

    # -- X25519 ------------------------------------------------------------

    def dh_keygen(self) -> tuple[bytes, bytes]:
        try:
            pair: bytes = self._js.x25519Keygen().to_bytes()
        except self._js_error:
            raise self._fail("X25519 keygen") from None
        return pair[:DH_SECRET_LEN], pair[DH_SECRET_LEN:]

    def dh_public(self, secret: bytes) -> bytes:
        secret = check_len(secret, DH_SECRET_LEN, "X25519 secret key")
        try:
            out: bytes = self._js.x25519Public(self._to_js(secret)).to_bytes()
        except self._js_error:
            raise self._fail("X25519 public key") from None
        return out

    def dh(self, secret: bytes, public: bytes) -> bytes:
        buf = check_len(secret, DH_SECRET_LEN, "X25519 secret key") + check_len(
            public, DH_PUBLIC_LEN, "X25519 public key"
        )
        try:
            res = self._js.x25519Shared(self._to_js(buf))
        except self._js_error:
            raise self._fail("X25519") from None
        if res is None:
            raise InvalidKey("X25519 shared secret is all zero (low-order public key)", reason=MlsReason.INVALID_KEY)
        out: bytes = res.to_bytes()
        return out


def register(js_module: Any = None) -> None:
    """Offer the noble backend to ``ping_core.mls.crypto.default_provider()``.

    Call after ``pyodide.registerJsModule("pingcrypto", ...)``. The module is
    checked now, so a missing registration fails at boot, not at first use.
    """
    module = js_module if js_module is not None else _load_js_module()
    register_backend("noble", lambda: NobleProvider(module), priority=PRIORITY)
