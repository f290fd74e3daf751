"""Ed25519 verification and X25519 on two threads, through the OpenSSL that CPython's hashlib uses.

pyca ``cryptography`` holds the GIL while it verifies an Ed25519 signature or computes an X25519
shared secret (two threads doing either take as long as one: measured), so the batches of them a
large group brings (a joiner verifies every leaf of the ratchet tree, RFC 9420 §7.3, §12.4.3.1; a
commit encrypts to ~N keys, §7.6, §12.4.3.1) run on one core however many the machine has.
``ctypes`` releases the GIL for the length of each foreign call, so the same OpenSSL routines
called through it (``EVP_DigestVerify`` with a raw Ed25519 key: RFC 8032 verification;
``EVP_PKEY_derive`` with raw X25519 keys: RFC 7748) run on two cores at once.

:func:`verify_many` gives one verdict per item: ``True`` (verifies), ``False`` (does not) or
``None`` (OpenSSL reported an error). :func:`encap_dh_many` gives, per public key and ephemeral
secret, ``(ephemeral public, shared secret)`` or ``None`` (an error, such as the all-zero secret
of a low-order point). A ``None`` tells the caller to redo that item on its own path, so its
outcome and error are exactly that path's. The library is looked for once; where it is missing,
too old (before OpenSSL 1.1.1: no raw keys) or the process may use one CPU only,
:data:`AVAILABLE` is false and callers keep to their own path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

__all__ = ["AVAILABLE", "MIN_BATCH", "encap_dh_many", "verify_many"]

#: Below this many items a second thread costs more than it saves.
MIN_BATCH = 16

_OPENSSL_1_1_1 = 0x10101000
T = TypeVar("T")
R = TypeVar("R")


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _load() -> tuple[Any, int, int] | None:
    """The library with its prototypes set, and the Ed25519 and X25519 key types; None if unusable."""
    if _usable_cpus() < 2:
        return None
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.OpenSSL_version_num.restype = ctypes.c_ulong
        lib.OpenSSL_version_num.argtypes = []
        if lib.OpenSSL_version_num() < _OPENSSL_1_1_1:
            return None
        lib.OBJ_sn2nid.restype = ctypes.c_int
        lib.OBJ_sn2nid.argtypes = [ctypes.c_char_p]
        ed, x = lib.OBJ_sn2nid(b"ED25519"), lib.OBJ_sn2nid(b"X25519")
        if ed <= 0 or x <= 0:
            return None
        p, i, z, b = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p
        zp = ctypes.POINTER(ctypes.c_size_t)
        for fn, res, args in (
            ("EVP_PKEY_new_raw_public_key", p, [i, p, b, z]),
            ("EVP_PKEY_new_raw_private_key", p, [i, p, b, z]),
            ("EVP_PKEY_get_raw_public_key", i, [p, b, zp]),
            ("EVP_PKEY_free", None, [p]),
            ("EVP_PKEY_CTX_new", p, [p, p]),
            ("EVP_PKEY_CTX_free", None, [p]),
            ("EVP_PKEY_derive_init", i, [p]),
            ("EVP_PKEY_derive_set_peer", i, [p, p]),
            ("EVP_PKEY_derive", i, [p, b, zp]),
            ("EVP_MD_CTX_new", p, []),
            ("EVP_MD_CTX_free", None, [p]),
            ("EVP_DigestVerifyInit", i, [p, p, p, p, p]),
            ("EVP_DigestVerify", i, [p, b, z, b, z]),
            ("ERR_clear_error", None, []),
        ):
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
    except (OSError, AttributeError):
        return None
    return lib, ed, x


_LOADED = _load()
AVAILABLE = _LOADED is not None
_pool: ThreadPoolExecutor | None = None


def _lib() -> tuple[Any, int, int]:
    if _LOADED is None:
        raise RuntimeError("threaded OpenSSL is not available here")
    return _LOADED


def _split(work: Callable[[Sequence[T], int, int], list[R]], items: Sequence[T]) -> list[R]:
    """``work(items, 0, len(items))``, the first half on the worker thread when there are enough."""
    global _pool
    n = len(items)
    if n < MIN_BATCH:
        return work(items, 0, n)
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ping-openssl")
    half = n // 2
    other = _pool.submit(work, items, 0, half)
    mine = work(items, half, n)
    return other.result() + mine


def _verify_range(items: Sequence[tuple[bytes, bytes, bytes]], lo: int, hi: int) -> list[bool | None]:
    lib, ed, _ = _lib()
    new_key, free_key = lib.EVP_PKEY_new_raw_public_key, lib.EVP_PKEY_free
    new_ctx, free_ctx = lib.EVP_MD_CTX_new, lib.EVP_MD_CTX_free
    init, verify, clear = lib.EVP_DigestVerifyInit, lib.EVP_DigestVerify, lib.ERR_clear_error
    out: list[bool | None] = []
    for k in range(lo, hi):
        public, message, signature = items[k]
        verdict: bool | None = None
        key = new_key(ed, None, public, len(public))
        if key:
            ctx = new_ctx()
            if ctx:
                if init(ctx, None, None, None, key) == 1:
                    rc = verify(ctx, signature, len(signature), message, len(message))
                    verdict = True if rc == 1 else False if rc == 0 else None
                free_ctx(ctx)
            free_key(key)
        if verdict is not True:
            clear()  # a refusal leaves an entry in this thread's OpenSSL error queue
        out.append(verdict)
    return out


def verify_many(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool | None]:
    """The verdict on each ``(public, message, signature)``, half of them on a second thread.

    Items must be exact ``bytes``; the caller has checked each key (32 bytes, canonical, not of
    small order). Requires :data:`AVAILABLE`.
    """
    return _split(_verify_range, items)


def _encap_range(items: Sequence[tuple[bytes, bytes]], lo: int, hi: int) -> list[tuple[bytes, bytes] | None]:
    lib, _, x = _lib()
    new_priv, new_pub, free_key = lib.EVP_PKEY_new_raw_private_key, lib.EVP_PKEY_new_raw_public_key, lib.EVP_PKEY_free
    get_pub, clear = lib.EVP_PKEY_get_raw_public_key, lib.ERR_clear_error
    new_ctx, free_ctx = lib.EVP_PKEY_CTX_new, lib.EVP_PKEY_CTX_free
    init, set_peer, derive = lib.EVP_PKEY_derive_init, lib.EVP_PKEY_derive_set_peer, lib.EVP_PKEY_derive
    pub_buf, out_buf = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
    size = ctypes.c_size_t()
    out: list[tuple[bytes, bytes] | None] = []
    for k in range(lo, hi):
        secret, public = items[k]
        result: tuple[bytes, bytes] | None = None
        own = new_priv(x, None, secret, len(secret))
        peer = new_pub(x, None, public, len(public)) if own else None
        ctx = new_ctx(own, None) if peer else None
        if ctx:
            size.value = 32
            if get_pub(own, pub_buf, ctypes.byref(size)) == 1 and size.value == 32:
                ephemeral = pub_buf.raw
                size.value = 32
                derived = init(ctx) == 1 and set_peer(ctx, peer) == 1 and derive(ctx, out_buf, ctypes.byref(size)) == 1
                if derived and size.value == 32:
                    result = (ephemeral, out_buf.raw)
            free_ctx(ctx)
        if peer:
            free_key(peer)
        if own:
            free_key(own)
        if result is None:
            clear()
        out.append(result)
    ctypes.memset(out_buf, 0, 32)  # the last shared secret: wipe the scratch buffer
    return out


def encap_dh_many(items: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes] | None]:
    """For each ``(ephemeral secret, peer public)`` of 32 bytes each: the ephemeral public key
    and the X25519 shared secret, or None; half of them on a second thread. Requires
    :data:`AVAILABLE`."""
    return _split(_encap_range, items)
