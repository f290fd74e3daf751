"""Which crypto backend the worker uses: decided once, at boot, never failing.

noble is always registered (priority 50). WebCrypto (priority 75, see
:mod:`pyodide_app.webcrypto`) is registered on top only when all of these hold:

1. the host did not ask for noble (``mode="noble"``);
2. JSPI works right now: ``can_run_sync()`` inside :func:`select`, which the
   host calls from an asynchronous entry (worker.mjs boots Python through
   ``callPromising`` when the runtime has JSPI). A synchronous entry, or a
   runtime without stack switching (Safari; Node 20 without its flag), fails
   this, and the host is taken to enter every later call the same way;
3. the runtime has ``crypto.subtle`` (secure contexts only);
4. a probe through a strict :class:`~pyodide_app.webcrypto.WebCryptoProvider`
   (no noble fallback) reproduces RFC 8032, RFC 7748 and AES-GCM vectors,
   refuses a bad signature and a low-order X25519 point, and round-trips a
   fresh key pair of each kind: a browser whose WebCrypto lacks Ed25519 or
   X25519, or computes anything else, keeps noble.

Otherwise the worker runs on noble and says why (``Selection.reason``).
:func:`decide` is the pure part (testable on CPython); :func:`select` runs it
inside Pyodide and registers the backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ping_core.errors import InvalidSignature

__all__ = ["Selection", "MODES", "decide", "probe", "select", "last_selection"]

MODES = ("auto", "noble")


@dataclass(frozen=True)
class Selection:
    """The boot-time choice: ``backend`` is "webcrypto" or "noble"; ``reason`` says why."""

    backend: str
    reason: str
    probe_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "reason": self.reason, "probe_ms": self.probe_ms}


_last: Selection | None = None


def last_selection() -> Selection | None:
    """What :func:`select` decided in this interpreter (None before boot)."""
    return _last


def decide(
    mode: object,
    *,
    jspi: Callable[[], bool],
    subtle: Callable[[], bool],
    run_probe: Callable[[], str | None],
) -> Selection:
    """The choice for ``mode`` given the checks (each is only run when needed).

    ``run_probe`` returns None when WebCrypto passed, else what went wrong.
    An unknown ``mode`` is treated as "auto" (boot never fails over it).
    """
    if mode == "noble":
        return Selection("noble", "noble requested by the host")
    if not jspi():
        return Selection(
            "noble",
            "no JSPI: Python was entered synchronously or the runtime cannot switch stacks (e.g. Safari)",
        )
    if not subtle():
        return Selection("noble", "no crypto.subtle here (WebCrypto needs a secure context)")
    t0 = time.perf_counter()
    problem = run_probe()
    ms = round((time.perf_counter() - t0) * 1000, 1)
    if problem is not None:
        return Selection("noble", f"WebCrypto probe failed: {problem}", ms)
    return Selection("webcrypto", "JSPI and WebCrypto Ed25519/X25519 work here", ms)


# Known answers (RFC 8032 7.1 test 2, RFC 7748 5.2 vector 2, GCM spec case 2).
_H = bytes.fromhex
_ED_SECRET = _H("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
_ED_PUBLIC = _H("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
_ED_SIG = _H(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)
_X_SCALAR = _H("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d")
_X_U = _H("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493")
_X_OUT = _H("95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957")
_GCM_OUT = _H("0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf")


def probe(provider: Any) -> str | None:
    """Run the known answers through ``provider`` (a strict WebCryptoProvider).

    Returns None when all match, else a short description (no key material).
    """
    try:
        if provider.sign_public(_ED_SECRET) != _ED_PUBLIC:
            return "Ed25519 public key differs from RFC 8032"
        if provider.sign(_ED_SECRET, b"\x72") != _ED_SIG:
            return "Ed25519 signature differs from RFC 8032 (not deterministic?)"
        provider.verify(_ED_PUBLIC, b"\x72", _ED_SIG)
        try:
            provider.verify(_ED_PUBLIC, b"\x73", _ED_SIG)
            return "Ed25519 accepted a signature of another message"
        except InvalidSignature:
            pass
        secret, public = provider.sign_keygen()
        provider.verify(public, b"probe", provider.sign(secret, b"probe"))
        if provider.dh(_X_SCALAR, _X_U) != _X_OUT:
            return "X25519 differs from RFC 7748"
        a, a_pub = provider.dh_keygen()
        b, b_pub = provider.dh_keygen()
        if provider.dh(a, b_pub) != provider.dh(b, a_pub) or provider.dh_public(a) != a_pub:
            return "X25519 key agreement does not agree"
        if provider.aead_seal(bytes(16), bytes(12), b"", bytes(16)) != _GCM_OUT:
            return "AES-128-GCM differs from the GCM specification"
    except Exception as exc:  # noqa: BLE001  (boot never fails over the probe)
        return f"{type(exc).__name__}: {exc}"
    try:
        provider.dh(_X_SCALAR, bytes(32))
    except Exception:  # noqa: BLE001  (the strict provider raises CryptoError on WebCrypto's rejection)
        return None
    return "X25519 accepted the all-zero point"


def select(mode: object = "auto", js_module: Any = None) -> Selection:
    """Register the backends for this interpreter and return the choice.

    Always registers noble; registers WebCrypto above it when :func:`decide`
    says so. Never raises: a failing check means noble.
    """
    global _last
    from pyodide.ffi import can_run_sync  # type: ignore[import-not-found,unused-ignore]

    from . import crypto, webcrypto
    from .crypto import _load_js_module

    module = js_module if js_module is not None else _load_js_module()
    crypto.register(module)

    def subtle() -> bool:
        try:
            return bool(module.webcrypto.available())
        except Exception:  # noqa: BLE001
            return False

    def run_probe() -> str | None:
        try:
            strict = webcrypto.WebCryptoProvider(module, aead_min=0, strict=True)
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}"
        return probe(strict)

    choice = decide(mode, jspi=can_run_sync, subtle=subtle, run_probe=run_probe)
    if choice.backend == "webcrypto":
        webcrypto.register(module)
    _last = choice
    return choice
