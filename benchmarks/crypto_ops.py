"""The per-operation timing loop shared by CPython and Pyodide runs.

Self-contained (imports only the standard library and the provider given):
crypto_bench.py also sends this file's source into Pyodide.
"""

from __future__ import annotations

import time
from typing import Any, Callable

TARGET_SECONDS = 0.25


def _time(fn: Callable[[], Any]) -> float:
    """Microseconds per call: calibrate to ~TARGET_SECONDS, best of 3 rounds."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed > 0.05 or n >= 1 << 20:
            break
        n *= 4
    n = max(1, int(n * TARGET_SECONDS / max(elapsed, 1e-9) / 3))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def run(crypto: Any) -> dict[str, float]:
    """Per-op microseconds for every primitive of ``crypto``."""
    key, nonce, aad = bytes(range(16)), bytes(12), b"a" * 32
    small, kib, big = b"m" * 100, b"k" * 1024, b"b" * 65536
    sk, pk = crypto.sign_keygen()
    sig = crypto.sign(sk, small)
    dh_a, _ = crypto.dh_keygen()
    _, dh_b_pub = crypto.dh_keygen()
    ct_small = crypto.aead_seal(key, nonce, aad, small)
    ct_kib = crypto.aead_seal(key, nonce, aad, kib)
    ct_big = crypto.aead_seal(key, nonce, aad, big)
    prk = crypto.hkdf_extract(b"salt", b"ikm" * 10)
    kib4, kib16 = b"k" * 4096, b"k" * 16384
    ct_kib4 = crypto.aead_seal(key, nonce, aad, kib4)
    ct_kib16 = crypto.aead_seal(key, nonce, aad, kib16)
    # Fresh keys per call (more than any backend caches): what a new member's
    # signature, a derived TreeKEM node key or an HPKE encap costs.
    fresh = _Cycle([bytes([i & 0xFF, i >> 8]) + b"\x11" * 30 for i in range(1024)])
    signed = _Cycle([(pub, crypto.sign(s, small)) for s, pub in (crypto.sign_keygen() for _ in range(300))])

    def verify_fresh() -> None:
        public, signature = signed.next()
        crypto.verify(public, small, signature)

    def sign_fresh() -> None:
        crypto.sign(fresh.next(), small)

    def dh_fresh() -> None:
        secret = fresh.next()
        crypto.dh_public(secret)
        crypto.dh(secret, dh_b_pub)

    def encap() -> None:
        eph, _ = crypto.dh_keygen()
        crypto.dh(eph, dh_b_pub)
    ops: dict[str, Callable[[], Any]] = {
        "random(32)": lambda: crypto.random(32),
        "hash(100 B)": lambda: crypto.hash(small),
        "hash(1 KiB)": lambda: crypto.hash(kib),
        "hmac(1 KiB)": lambda: crypto.hmac(key, kib),
        "hkdf_extract": lambda: crypto.hkdf_extract(b"salt" * 8, prk),
        "hkdf_expand(32)": lambda: crypto.hkdf_expand(prk, b"info" * 8, 32),
        "hkdf_expand(80)": lambda: crypto.hkdf_expand(prk, b"info" * 8, 80),
        "aead_seal(100 B)": lambda: crypto.aead_seal(key, nonce, aad, small),
        "aead_open(100 B)": lambda: crypto.aead_open(key, nonce, aad, ct_small),
        "aead_seal(1 KiB)": lambda: crypto.aead_seal(key, nonce, aad, kib),
        "aead_open(1 KiB)": lambda: crypto.aead_open(key, nonce, aad, ct_kib),
        "aead_seal(4 KiB)": lambda: crypto.aead_seal(key, nonce, aad, kib4),
        "aead_open(4 KiB)": lambda: crypto.aead_open(key, nonce, aad, ct_kib4),
        "aead_seal(16 KiB)": lambda: crypto.aead_seal(key, nonce, aad, kib16),
        "aead_open(16 KiB)": lambda: crypto.aead_open(key, nonce, aad, ct_kib16),
        "aead_seal(64 KiB)": lambda: crypto.aead_seal(key, nonce, aad, big),
        "aead_open(64 KiB)": lambda: crypto.aead_open(key, nonce, aad, ct_big),
        "sign_keygen": crypto.sign_keygen,
        "sign_public": lambda: crypto.sign_public(sk),
        "sign(100 B)": lambda: crypto.sign(sk, small),
        "verify(100 B)": lambda: crypto.verify(pk, small, sig),
        "dh_keygen": crypto.dh_keygen,
        "dh_public": lambda: crypto.dh_public(dh_a),
        "dh": lambda: crypto.dh(dh_a, dh_b_pub),
        "sign(100 B), new key each": sign_fresh,
        "verify(100 B), new key each": verify_fresh,
        "dh_public+dh, new key each": dh_fresh,
        "encap: dh_keygen+dh": encap,
    }
    return {name: _time(fn) for name, fn in ops.items()}


class _Cycle:
    """Hands out the items of a list round and round."""

    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self._i = 0

    def next(self) -> Any:
        item = self._items[self._i]
        self._i = (self._i + 1) % len(self._items)
        return item
