"""Forward secrecy in the crypto provider: one-time secrets leave no copy behind.

MLS deletes a message key once used and an HPKE private key once its epoch
(or its encap) is over. A provider that cached them by key bytes would keep
them alive after the engine deleted its own copy, so the pyca provider caches
only signature keys (long-lived by nature).
"""

from __future__ import annotations

import os
from typing import Any

from ping_core.mls.crypto.pyca import PycaProvider


def _bytes_held_by(obj: Any, seen: set[int] | None = None) -> set[bytes]:
    """Every bytes object reachable from ``obj`` through attributes, slots, dicts and sequences."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    if isinstance(obj, bytes):
        return {obj}
    found: set[bytes] = set()
    children: list[Any] = []
    if isinstance(obj, dict):
        children += list(obj.keys()) + list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children += list(obj)
    else:
        children += list(getattr(obj, "__dict__", {}).values())
        for cls in type(obj).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if hasattr(obj, slot):
                    children.append(getattr(obj, slot))
    for child in children:
        found |= _bytes_held_by(child, seen)
    return found


def test_pyca_keeps_no_aead_or_x25519_secret() -> None:
    p = PycaProvider()
    key, nonce = os.urandom(16), os.urandom(12)
    assert p.aead_open(key, nonce, b"aad", p.aead_seal(key, nonce, b"aad", b"message")) == b"message"
    mine, _ = p.dh_keygen()
    theirs, their_public = p.dh_keygen()
    p.dh(mine, their_public)
    p.dh_public(theirs)
    held = _bytes_held_by(p)
    assert key not in held
    assert mine not in held and theirs not in held


def test_pyca_still_caches_signature_keys() -> None:
    # The walk above can see into the caches: a signing key it must find proves it looks.
    p = PycaProvider()
    secret, public = p.sign_keygen()
    p.verify(public, b"m", p.sign(secret, b"m"))
    held = _bytes_held_by(p)
    assert secret in held and public in held
