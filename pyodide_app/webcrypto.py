"""Cipher suite 1 through the browser's WebCrypto, called synchronously via JSPI.

WebCrypto is asynchronous; the MLS engine calls its provider synchronously.
JSPI bridges the two: ``pyodide.ffi.run_sync(promise)`` suspends the
WebAssembly stack until the promise settles. That only works when Python was
entered asynchronously (an ``async def`` called from JS, a WebLoop task,
``callPromising``, ``runPythonAsync``): the worker enters every RPC call that
way (see :mod:`pyodide_app.worker`).

:class:`WebCryptoProvider` is a hybrid, chosen per primitive by measurement
(benchmarks/crypto_bench.py, Chromium): WebCrypto for Ed25519 (sign, verify,
key generation, public keys), X25519 and AES-128-GCM of at least
:data:`AEAD_WEBCRYPTO_MIN` bytes; noble (:class:`~pyodide_app.crypto.NobleProvider`)
for small AES-GCM messages and randomness; Python's hashlib for hashing, HMAC
and HKDF. Results are byte-identical to the other backends (Ed25519
signatures are deterministic, RFC 8032).

A PrivateMessage's protection (:meth:`WebCryptoProvider.sign_and_encrypt`:
the signature, both AES-GCM encryptions and the sender-data HKDF) is ONE
crossing: inside a crossing WebCrypto's AES-GCM costs ~7 us and noble's HKDF
~6 us, against 30-40 us per noble AES-GCM call from Python and ~30 us per
crossing (best figures, Chromium 156 worker).

Each WebCrypto call is one crossing (:class:`Crossing`): ONE stack switch
and no event-loop turn. ``run_sync(promise)`` itself would wait for an asyncio
Future of the WebLoop, whose completion is scheduled as a macrotask: measured
in a Chromium 156 worker, 140-250 us per call at best and 0.4-2.4 ms on a
loaded machine (every macrotask waits for the thread to be scheduled again),
against 40-90 us through :class:`Crossing`. Each JS helper still does its
whole job (import the key AND sign, ...) behind ONE promise.

Ed25519 verification is WebCrypto's (BoringSSL): cofactorless, like pyca's
OpenSSL. noble's (js/pingcrypto.mjs) is cofactored: a crafted signature whose
R has a small-order component verifies there and nowhere else, and a call
that falls back to noble inherits that (a known gap of the noble backend,
tests/browser/test_webcrypto.py).

It never fails where noble would not:

- a call from a synchronous entry (``can_run_sync()`` is false) goes to noble;
- whenever WebCrypto rejects (a low-order X25519 point, a ciphertext that
  does not authenticate, an unsupported algorithm, anything else) the same
  call is re-run through noble, which returns the result or raises the
  :mod:`ping_core.errors` class the other backends raise. Only an Ed25519
  verdict comes straight from WebCrypto (``false`` -> ``InvalidSignature``).
  So no ``JsException`` and no ``TypeError`` leaves this module, and argument
  checks (lengths, small-order Ed25519 keys) are the shared ones of
  :mod:`ping_core.mls.crypto.provider`.

Imported Ed25519 keys are CryptoKey objects cached per key bytes (bounded,
cleared when full): importKey is async and costs 3-45 us, and MLS uses the
same signature keys over and over. X25519 private keys are not cached: MLS
uses each for one encap or one epoch and then deletes it (forward secrecy),
so no copy may outlive the caller's. Nothing here logs or reprs a secret.

Concurrency: while a call waits in ``run_sync``, the JS event loop runs, and
so may other asyncio tasks of the same interpreter (Pyodide saves and
restores the Python thread state around the switch). A provider call is thus
a point where other tasks can run, like an ``await``: code that shares MLS
state between tasks must hold its lock (one ``asyncio.Lock`` per
conversation) across the whole operation, as the SDK does anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from struct import Struct
from typing import Any

from ping_core.errors import CryptoError, InvalidSignature, MlsReason
from ping_core.mls.crypto import HashlibKdf, register_backend
from ping_core.mls.crypto.provider import (
    AEAD_KEY_LEN,
    AEAD_TAG_LEN,
    AeadParts,
    AEAD_NONCE_LEN,
    DH_PUBLIC_LEN,
    DH_SECRET_LEN,
    SIGN_SECRET_LEN,
    SIGNATURE_LEN,
    check_bytes,
    check_ed25519_public,
    check_len,
    keygen_and_sign,
    sign_and_encrypt,
)

from .crypto import JS_MODULE_NAME, NobleProvider, _load_js_module

__all__ = ["WebCryptoProvider", "Crossing", "register", "PRIORITY", "AEAD_WEBCRYPTO_MIN", "NAME"]

NAME = "webcrypto"
# Above noble (50), below pyca (100): a Pyodide distribution that ships pyca
# still prefers it (synchronous, no JSPI needed).
PRIORITY = 75
# AES-GCM messages (plaintext or ciphertext bytes) from this size go through
# WebCrypto, shorter ones through noble (synchronous, no crossing). Measured
# from Python in a Chromium 156 worker, best of 12 rounds on a loaded 2-core
# machine (benchmarks/browser_crypto_profile.py --ops): noble 40/90/200 us and
# WebCrypto through a Crossing 80-90/70/110 us for 100 B/1 KiB/4 KiB seals.
AEAD_WEBCRYPTO_MIN = 1024
# Cached CryptoKeys per kind. MLS signs with one key and verifies a group's
# members' keys over and over.
_KEY_CACHE_LIMIT = 256
_U32 = Struct("<I")
# A splice of keygen_and_sign: template, offset, source (a signed index).
_SPLICE = Struct("<IIi")
# Prefetched signature verdicts kept at most (a group's leaves, a commit's Adds).
_VERDICT_LIMIT = 4096


class _Rejected(Exception):
    """A JS helper rejected (or threw). Carries nothing: the caller asks noble why."""


class _ImmediateCallbacks:
    """The loop of :class:`Crossing`'s Futures: done callbacks run at once.

    asyncio.Future needs a loop only to schedule its done callbacks
    (``call_soon``), to ask ``get_debug()`` and to report an exception nobody
    retrieved. Running the callbacks at once is what makes a crossing free of
    event-loop turns: the callback Pyodide's ``run_sync`` adds resolves the
    promise the suspended stack waits on, inside the microtask that settled
    the WebCrypto promise.
    """

    def get_debug(self) -> bool:
        return False

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> None:
        if context is None:
            callback(*args)
        else:
            context.run(callback, *args)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        pass  # the only exception set is _Rejected, which holds no information


class Crossing:
    """Calls a promise-returning helper of the ``webcrypto`` JS namespace and waits
    for its result with ONE JSPI stack switch and no event-loop turn.

    :meth:`call` asks the JS side (``start``) to run the helper and report its
    outcome to :meth:`_settle`, which completes an asyncio Future whose done
    callbacks run at once (:class:`_ImmediateCallbacks`); ``run_sync`` waits
    on that Future. Results are what ``run_sync(helper(...))`` returns (the
    same JS values); a rejection raises :class:`_Rejected`. A JS module that
    does not declare this protocol (``crossing == "settle-1"``), e.g. a test's
    stand-in, gets ``run_sync(helper(...))`` itself: the same results, slower.

    Only valid where ``can_run_sync()`` is true (the provider checks first).
    Each instance keeps its pending Futures (several requests may wait at
    once: while one waits, the event loop runs others), keyed by a slot number
    that the JS side hands back.
    """

    PROTOCOL = "settle-1"

    def __init__(self, wc: Any, run_sync: Callable[[Any], Any], create_proxy: Callable[[Any], Any]) -> None:
        self._wc = wc
        self._run = run_sync
        self._loop = _ImmediateCallbacks()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_slot = 0
        try:
            speaks = getattr(wc, "crossing", None) == self.PROTOCOL
        except Exception:  # noqa: BLE001  (a stand-in module may raise on any attribute)
            speaks = False
        # A persistent proxy (never destroyed: it lives as long as the provider).
        self._settler: Any = create_proxy(self._settle) if speaks else None

    @property
    def immediate(self) -> bool:
        """True when crossings skip the event loop (the module speaks the protocol)."""
        return self._settler is not None

    def _settle(self, slot: int, ok: bool, value: Any) -> None:
        # Called from a JS promise reaction: must never raise (an exception
        # here would leave the Future, and the suspended caller, waiting).
        try:
            future = self._pending.pop(slot, None)
            if future is None or future.done():
                return
            if ok is True:
                future.set_result(value)
            else:
                future.set_exception(_Rejected())
        except BaseException:  # noqa: BLE001
            pass

    def call(self, name: str, a: Any = None, b: Any = None) -> Any:
        """``helper(a, b)``'s resolved value; :class:`_Rejected` (or the JS error) if it rejects."""
        if self._settler is None:
            helper = getattr(self._wc, name)
            if a is None:
                return self._run(helper())
            return self._run(helper(a) if b is None else helper(a, b))
        slot = self._next_slot
        self._next_slot = slot + 1
        future: asyncio.Future[Any] = asyncio.Future(loop=self._loop)  # type: ignore[arg-type]
        self._pending[slot] = future
        try:
            self._wc.start(slot, name, self._settler, a, b)
        except BaseException:
            self._pending.pop(slot, None)
            raise
        return self._run(future)


class WebCryptoProvider(HashlibKdf):
    """The hybrid WebCrypto/noble backend; see the module docstring.

    ``strict=True`` turns every fallback to noble into a ``CryptoError``
    (the boot probe uses it to prove the WebCrypto path itself works).
    ``aead_min`` overrides :data:`AEAD_WEBCRYPTO_MIN` (0: every AES-GCM call
    through WebCrypto; benchmarks use it).
    """

    name = NAME

    def __init__(
        self,
        js_module: Any = None,
        *,
        noble: NobleProvider | None = None,
        aead_min: int = AEAD_WEBCRYPTO_MIN,
        strict: bool = False,
    ) -> None:
        from pyodide.ffi import can_run_sync, create_proxy, run_sync, to_js  # type: ignore[import-not-found,unused-ignore]

        module = js_module if js_module is not None else _load_js_module()
        try:
            self._wc = module.webcrypto
        except AttributeError as exc:
            raise CryptoError(
                f"the JS module {JS_MODULE_NAME!r} has no webcrypto helpers",
                reason=MlsReason.UNSUPPORTED_OPTION,
            ) from exc
        self._noble = noble if noble is not None else NobleProvider(module)
        self._aead_min = aead_min
        self._strict = strict
        self._can_run_sync = can_run_sync
        self._cross = Crossing(self._wc, run_sync, create_proxy)
        self._call = self._cross.call
        self._to_js = to_js
        # seed -> [private CryptoKey, public key bytes or None until asked]
        self._ed_private: dict[bytes, list[Any]] = {}
        # public key bytes -> public CryptoKey
        self._ed_public: dict[bytes, Any] = {}
        # (public, signature, message) -> verdict, from prefetch_verify; each is
        # used once. Public data only.
        self._verdicts: dict[tuple[bytes, bytes, bytes], bool] = {}
        #: Calls answered by WebCrypto, calls sent to noble because the entry
        #: was synchronous, and calls re-run through noble after WebCrypto
        #: rejected (or could not be reached). Diagnostics for tests and
        #: benchmarks; they hold no secret.
        self.counts = {"webcrypto": 0, "sync_entry": 0, "fallback": 0, "batches": 0, "prefetched": 0}

    def __repr__(self) -> str:
        return f"WebCryptoProvider(aead_min={self._aead_min})"

    # -- plumbing ------------------------------------------------------------

    def _usable(self) -> bool:
        """True when this call may block on a promise (Python was entered asynchronously)."""
        if self._can_run_sync():
            return True
        if self._strict:
            raise CryptoError(
                "WebCrypto needs an asynchronous entry (JSPI): run_sync is unavailable",
                reason=MlsReason.UNSUPPORTED_OPTION,
            )
        self.counts["sync_entry"] += 1
        return False

    def _fell_back(self, what: str) -> None:
        """Account for a WebCrypto failure; the caller then asks noble."""
        if self._strict:
            raise CryptoError(f"{what} failed in WebCrypto", reason=MlsReason.BACKEND_FAILURE) from None
        self.counts["fallback"] += 1

    @staticmethod
    def _cache(table: dict[bytes, Any], key: bytes, value: Any) -> None:
        if len(table) >= _KEY_CACHE_LIMIT:
            table.clear()
        table[key] = value

    def _signing_call(self, secret: bytes, op: str, buf: bytes) -> Any:
        """JS helper ``op`` on (the cached CryptoKey of Ed25519 ``secret``, ``buf``), or,
        for a key not imported yet, ``op + "Import"`` on ``secret || buf``, which
        imports it in the same promise (one stack switch); the key is then cached."""
        entry = self._ed_private.get(secret)
        if entry is None:
            res = self._call(op + "Import", self._to_js(secret + buf))
            self._cache(self._ed_private, secret, [res[0], None])
            return res[1]
        return self._call(op, entry[0], self._to_js(buf))

    # -- randomness: noble (synchronous crypto.getRandomValues, no promise) ----

    def random(self, n: int) -> bytes:
        return self._noble.random(n)

    # -- AES-128-GCM ---------------------------------------------------------

    def _gcm(self, op: str, key: bytes, nonce: bytes, aad: bytes, data: bytes) -> bytes | None:
        """WebCrypto's answer, or None when noble should answer."""
        if len(data) < self._aead_min or not self._usable():
            return None
        buf = key + nonce + aad + data
        try:
            if op == "seal":
                out: bytes = self._call("gcmSeal", self._to_js(buf), len(aad)).to_bytes()
            else:
                out = self._call("gcmOpen", self._to_js(buf), len(aad)).to_bytes()
        except Exception:  # noqa: BLE001  (a JS rejection: noble decides, e.g. DecryptionFailed)
            self._fell_back(f"AEAD {op}")
            return None
        self.counts["webcrypto"] += 1
        return out

    def aead_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        key = check_len(key, AEAD_KEY_LEN, "AEAD key")
        nonce = check_len(nonce, AEAD_NONCE_LEN, "AEAD nonce")
        aad = check_bytes(aad, "aad")
        plaintext = check_bytes(plaintext, "plaintext")
        out = self._gcm("seal", key, nonce, aad, plaintext)
        return out if out is not None else self._noble.aead_seal(key, nonce, aad, plaintext)

    def aead_open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        key = check_len(key, AEAD_KEY_LEN, "AEAD key")
        nonce = check_len(nonce, AEAD_NONCE_LEN, "AEAD nonce")
        aad = check_bytes(aad, "aad")
        ciphertext = check_bytes(ciphertext, "ciphertext")
        out = self._gcm("open", key, nonce, aad, ciphertext)
        return out if out is not None else self._noble.aead_open(key, nonce, aad, ciphertext)

    def aead_seal_many(self, items: Sequence[tuple[bytes, bytes, bytes, bytes]]) -> list[bytes]:
        """``[aead_seal(*item) for item in items]`` in ONE WebCrypto call (two or more
        items; the same results, and the same first error for a bad argument)."""
        checked = [
            (
                check_len(key, AEAD_KEY_LEN, "AEAD key"),
                check_len(nonce, AEAD_NONCE_LEN, "AEAD nonce"),
                check_bytes(aad, "aad"),
                check_bytes(plaintext, "plaintext"),
            )
            for key, nonce, aad, plaintext in items
        ]
        if len(checked) >= 2 and self._usable():
            buf = b"".join(
                key + nonce + len(aad).to_bytes(4, "little") + len(pt).to_bytes(4, "little") + aad + pt
                for key, nonce, aad, pt in checked
            )
            try:
                sealed: bytes = self._call("gcmSealMany", self._to_js(buf), len(checked)).to_bytes()
            except Exception:  # noqa: BLE001  (noble answers each below)
                self._fell_back("AEAD seal batch")
            else:
                self.counts["batches"] += 1
                out, at = [], 0
                for _, _, _, pt in checked:
                    end = at + len(pt) + AEAD_TAG_LEN
                    out.append(sealed[at:end])
                    at = end
                return out
        return [self.aead_seal(*item) for item in checked]

    # -- Ed25519 -------------------------------------------------------------

    def sign_keygen(self) -> tuple[bytes, bytes]:
        if self._usable():
            try:
                pair = self._call("edKeygen")
                key, both = pair[0], pair[1].to_bytes()
            except Exception:  # noqa: BLE001
                self._fell_back("Ed25519 keygen")
            else:
                secret, public = both[:SIGN_SECRET_LEN], both[SIGN_SECRET_LEN:]
                self._cache(self._ed_private, secret, [key, public])
                self.counts["webcrypto"] += 1
                return secret, public
        return self._noble.sign_keygen()

    def sign_public(self, secret: bytes) -> bytes:
        secret = check_len(secret, SIGN_SECRET_LEN, "Ed25519 secret key")
        if self._usable():
            try:
                entry = self._ed_private.get(secret)
                if entry is None:
                    pair = self._call("edPrivate", self._to_js(secret))
                    entry = [pair[0], pair[1].to_bytes()]
                    self._cache(self._ed_private, secret, entry)
                elif entry[1] is None:  # imported by sign(), which needs no public key
                    entry[1] = self._call("edPublic", entry[0]).to_bytes()
                public: bytes = entry[1]
            except Exception:  # noqa: BLE001
                self._fell_back("Ed25519 public key")
            else:
                self.counts["webcrypto"] += 1
                return public
        return self._noble.sign_public(secret)

    def sign(self, secret: bytes, message: bytes) -> bytes:
        secret = check_len(secret, SIGN_SECRET_LEN, "Ed25519 secret key")
        message = check_bytes(message, "message")
        if self._usable():
            try:
                out: bytes = self._signing_call(secret, "edSign", message).to_bytes()
            except Exception:  # noqa: BLE001
                self._fell_back("Ed25519 sign")
            else:
                self.counts["webcrypto"] += 1
                return out
        return self._noble.sign(secret, message)

    def keygen_and_sign(
        self, secret: bytes, n_keys: int, templates: Sequence[bytes], splices: Sequence[tuple[int, int, int]]
    ) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
        """:func:`ping_core.mls.crypto.provider.keygen_and_sign` (which checked the
        splices) behind ONE promise: the keys are made and written in, and the
        templates signed, in JS."""
        secret = check_len(secret, SIGN_SECRET_LEN, "Ed25519 secret key")
        templates = [check_bytes(t, "message") for t in templates]
        if self._usable():
            u32 = _U32.pack
            header = u32(n_keys) + u32(len(templates)) + u32(len(splices))
            buf = b"".join(
                [header, *(u32(len(t)) for t in templates), *(_SPLICE.pack(*sp) for sp in splices), *templates]
            )
            try:
                raw: bytes = self._signing_call(secret, "edSignTemplates", buf).to_bytes()
            except Exception:  # noqa: BLE001
                self._fell_back("X25519 keygen and Ed25519 sign")
            else:
                self.counts["webcrypto"] += 1
                step = DH_SECRET_LEN + DH_PUBLIC_LEN
                keys = n_keys * step
                pairs = [(raw[i : i + DH_SECRET_LEN], raw[i + DH_SECRET_LEN : i + step]) for i in range(0, keys, step)]
                return pairs, [raw[i : i + SIGNATURE_LEN] for i in range(keys, len(raw), SIGNATURE_LEN)]
        return keygen_and_sign(self._noble, secret, n_keys, templates, splices)  # noble has no batch: one by one

    def sign_and_encrypt(
        self,
        signature_key: bytes,
        to_sign: bytes,
        content: AeadParts,
        sender_data: AeadParts,
    ) -> tuple[bytes, bytes, bytes]:
        """:func:`ping_core.mls.crypto.provider.sign_and_encrypt` behind ONE promise:
        the signature, both AES-GCM encryptions and the sender-data HKDF in JS
        (a message's protection: one stack switch instead of one plus four FFI
        calls). The arguments get the single calls' checks first; a rejection
        re-runs it through the single calls (same bytes: Ed25519 and AES-GCM
        are deterministic)."""
        signature_key = check_len(signature_key, SIGN_SECRET_LEN, "Ed25519 secret key")
        to_sign = check_bytes(to_sign, "message")
        key, nonce, aad, head, tail = content
        key = check_len(key, AEAD_KEY_LEN, "AEAD key")
        nonce = check_len(nonce, AEAD_NONCE_LEN, "AEAD nonce")
        aad = check_bytes(aad, "aad")
        head, tail = check_bytes(head, "plaintext"), check_bytes(tail, "plaintext")
        secret, key_label, nonce_label, sd_aad, sd_plaintext = sender_data
        key_label, nonce_label = check_bytes(key_label, "prk and info"), check_bytes(nonce_label, "prk and info")
        secret = check_bytes(secret, "prk and info")
        sd_aad, sd_plaintext = check_bytes(sd_aad, "aad"), check_bytes(sd_plaintext, "plaintext")
        if self._usable():
            fields = (secret, to_sign, aad, head, tail, key_label, nonce_label, sd_aad, sd_plaintext)
            buf = b"".join([*(_U32.pack(len(f)) for f in fields), key, nonce, *fields])
            try:
                raw: bytes = self._signing_call(signature_key, "edSealPrivate", buf).to_bytes()
            except Exception:  # noqa: BLE001  (the single calls answer below)
                self._fell_back("sign and encrypt")
            else:
                self.counts["webcrypto"] += 1
                end = SIGNATURE_LEN + len(head) + SIGNATURE_LEN + len(tail) + AEAD_TAG_LEN
                return raw[:SIGNATURE_LEN], raw[SIGNATURE_LEN:end], raw[end:]
        return sign_and_encrypt(self, signature_key, to_sign, content, sender_data, single_calls=True)

    def verify(self, public: bytes, message: bytes, signature: bytes) -> None:
        # The shared checks first: wrong lengths and small-order or
        # non-canonical keys get the same errors as on every backend.
        public = check_ed25519_public(public)
        message = check_bytes(message, "message")
        signature = check_bytes(signature, "signature")
        if len(signature) != SIGNATURE_LEN:
            raise InvalidSignature("Ed25519 signature does not verify", reason=MlsReason.BAD_SIGNATURE)
        verdict = self._verdicts.pop((public, signature, message), None) if self._verdicts else None
        if verdict is not None:  # WebCrypto's verdict for exactly these bytes, from prefetch_verify
            self.counts["prefetched"] += 1
            if verdict:
                return
            raise InvalidSignature("Ed25519 signature does not verify", reason=MlsReason.BAD_SIGNATURE)
        if self._usable():
            try:
                key = self._ed_public.get(public)
                if key is None:
                    pair = self._call("edVerifyImport", self._to_js(public + signature + message))
                    key, verdict = pair[0], pair[1]
                    self._cache(self._ed_public, public, key)
                else:
                    verdict = self._call("edVerify", key, self._to_js(signature + message))
            except Exception:  # noqa: BLE001
                self._fell_back("Ed25519 verify")
            else:
                self.counts["webcrypto"] += 1
                if verdict is True:
                    return
                raise InvalidSignature("Ed25519 signature does not verify", reason=MlsReason.BAD_SIGNATURE)
        self._noble.verify(public, message, signature)

    def prefetch_verify(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> None:
        """Verify ``(public, message, signature)`` items in ONE WebCrypto call and
        keep the verdicts for the :meth:`verify` calls with exactly those bytes
        (see :func:`ping_core.mls.crypto.provider.prefetch_verify`). Items that
        the shared checks refuse, and any WebCrypto rejection, are left to
        :meth:`verify` itself; nothing here raises."""
        batch: list[tuple[bytes, bytes, bytes]] = []
        for public, message, signature in items[:_VERDICT_LIMIT]:
            try:
                check_ed25519_public(public)
            except CryptoError:
                continue
            if type(message) is bytes and type(signature) is bytes and len(signature) == SIGNATURE_LEN:
                batch.append((public, message, signature))
        if not batch or not self._usable():
            return
        buf = b"".join(pub + sig + len(msg).to_bytes(4, "little") + msg for pub, msg, sig in batch)
        try:
            verdicts: bytes = self._call("edVerifyMany", self._to_js(buf), len(batch)).to_bytes()
        except Exception:  # noqa: BLE001  (each verify() then asks on its own)
            self._fell_back("Ed25519 verify batch")
            return
        if len(self._verdicts) + len(batch) > _VERDICT_LIMIT:
            self._verdicts.clear()
        self.counts["batches"] += 1
        for (public, message, signature), verdict in zip(batch, verdicts):
            if verdict in (0, 1):
                self._verdicts[(public, signature, message)] = verdict == 1

    # -- X25519 --------------------------------------------------------------

    def encap_dh_many(self, publics: Sequence[bytes]) -> list[tuple[bytes, bytes] | CryptoError]:
        """For each public key a fresh ephemeral key's public and its DH with it, in
        ONE WebCrypto call (see :func:`ping_core.mls.crypto.provider.encap_dh_many`).
        The ephemeral private keys are made inside WebCrypto, non-extractable, and
        dropped there. An item WebCrypto rejects is re-run through noble (which
        raises ``InvalidKey`` for a low-order point)."""
        checked: list[bytes | CryptoError] = []
        for public in publics:
            try:
                checked.append(check_len(public, DH_PUBLIC_LEN, "X25519 public key"))
            except CryptoError as exc:
                checked.append(exc)
        valid = [c for c in checked if isinstance(c, bytes)]
        answers: bytes | None = None
        if valid and self._usable():
            try:
                answers = self._call("xEncapMany", self._to_js(b"".join(valid))).to_bytes()
            except Exception:  # noqa: BLE001  (noble answers every item below)
                self._fell_back("X25519 encap batch")
            else:
                self.counts["batches"] += 1
        results: list[tuple[bytes, bytes] | CryptoError] = []
        step = 1 + 2 * DH_PUBLIC_LEN
        at = 0
        for item in checked:
            if not isinstance(item, bytes):
                results.append(item)
                continue
            if answers is not None and answers[at] == 1:
                results.append((answers[at + 1 : at + 1 + DH_PUBLIC_LEN], answers[at + 1 + DH_PUBLIC_LEN : at + step]))
                at += step
                continue
            if answers is not None:
                self._fell_back("X25519 encap")
                at += step
            try:
                sk_e, pk_e = self._noble.dh_keygen()
                results.append((pk_e, self._noble.dh(sk_e, item)))
            except CryptoError as exc:
                results.append(exc)
        return results

    def dh_keygen_many(self, n: int) -> list[tuple[bytes, bytes]]:
        """``n`` fresh X25519 key pairs behind ONE promise (noble without JSPI)."""
        if n > 0 and self._usable():
            try:
                raw: bytes = self._call("xKeygenMany", n).to_bytes()
            except Exception:  # noqa: BLE001
                self._fell_back("X25519 keygen")
            else:
                self.counts["webcrypto"] += 1
                step = DH_SECRET_LEN + DH_PUBLIC_LEN
                return [(raw[i : i + DH_SECRET_LEN], raw[i + DH_SECRET_LEN : i + step]) for i in range(0, n * step, step)]
        return [self._noble.dh_keygen() for _ in range(n)]

    def dh_keygen(self) -> tuple[bytes, bytes]:
        if self._usable():
            try:
                both = self._call("xKeygen")[1].to_bytes()  # its CryptoKey is not kept
            except Exception:  # noqa: BLE001
                self._fell_back("X25519 keygen")
            else:
                secret, public = both[:DH_SECRET_LEN], both[DH_SECRET_LEN:]
                self.counts["webcrypto"] += 1
                return secret, public
        return self._noble.dh_keygen()

    def dh_public(self, secret: bytes) -> bytes:
        secret = check_len(secret, DH_SECRET_LEN, "X25519 secret key")
        if self._usable():
            try:
                public: bytes = self._call("xPrivate", self._to_js(secret))[1].to_bytes()
            except Exception:  # noqa: BLE001
                self._fell_back("X25519 public key")
            else:
                self.counts["webcrypto"] += 1
                return public
        return self._noble.dh_public(secret)

    def dh(self, secret: bytes, public: bytes) -> bytes:
        secret = check_len(secret, DH_SECRET_LEN, "X25519 secret key")
        public = check_len(public, DH_PUBLIC_LEN, "X25519 public key")
        if self._usable():
            try:
                shared: bytes = self._call("xDhImport", self._to_js(secret + public))[1].to_bytes()
            except Exception:  # noqa: BLE001  (an all-zero secret rejects: noble raises InvalidKey)
                self._fell_back("X25519")
            else:
                self.counts["webcrypto"] += 1
                return shared
        return self._noble.dh(secret, public)


def register(js_module: Any = None) -> None:
    """Offer WebCrypto to ``default_provider()`` above noble, unconditionally.

    The worker does not call this directly but :func:`pyodide_app.crypto_select.select`,
    which first checks that JSPI and WebCrypto's Ed25519/X25519 work here.
    """
    module = js_module if js_module is not None else _load_js_module()
    noble = NobleProvider(module)
    register_backend(NAME, lambda: WebCryptoProvider(module, noble=noble), priority=PRIORITY)
