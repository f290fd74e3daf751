"""UpdatePathNode's own reader and its kept encoding (ping_core.mls.structs.hpke), and the Welcome's
secrets reader (ping_core.mls.structs.welcome): the same values, bytes and errors as the generic
codec (Reader.opaque / Reader.structs)."""

from __future__ import annotations

import os
from typing import Callable, TypeVar

import pytest

from ping_core.errors import MlsDecodeError
from ping_core.mls.tls import Reader, Writer, decode_exact, encode
from ping_core.mls.structs.hpke import HPKECiphertext, UpdatePathNode
from ping_core.mls.structs.limits import MAX_HPKE_PUBLIC_KEY
from ping_core.mls.structs.welcome import EncryptedGroupSecrets, Welcome

T = TypeVar("T")


def _whole(read: Callable[[Reader], T]) -> Callable[[bytes, int | None], T]:
    """A decoder of exactly one value with ``read`` (no trailing bytes), under a vector bound."""
    def decode(data: bytes, max_vector: int | None = None) -> T:
        r = Reader(data) if max_vector is None else Reader(data, max_vector)
        value = read(r)
        r.expect_end()
        return value
    return decode


_generic = _whole(lambda r: UpdatePathNode(r.opaque(MAX_HPKE_PUBLIC_KEY), r.structs(HPKECiphertext)))
_ours = _whole(UpdatePathNode.read)


def _outcome(decode, data: bytes, max_vector: int | None = None) -> object:
    try:
        return decode(data, max_vector)
    except MlsDecodeError as exc:
        return ("error", str(exc))


def _node(sizes: list[tuple[int, int]]) -> UpdatePathNode:
    return UpdatePathNode(os.urandom(32), tuple(HPKECiphertext(os.urandom(k), os.urandom(c)) for k, c in sizes))


# One-byte lengths (the fast path), two-byte lengths (the generic one), and both mixed.
SHAPES = [[(32, 48)] * 5, [(32, 100), (70, 48), (32, 48)], [], [(0, 0), (63, 63), (64, 64)]]


@pytest.mark.parametrize("sizes", SHAPES)
def test_round_trip_and_the_kept_encoding(sizes: list[tuple[int, int]]) -> None:
    node = _node(sizes)
    wire = encode(node)
    assert encode(node) == wire  # the kept bytes, written again
    w = Writer()
    node.write(w)
    assert bytes(w.buf) == wire
    back = decode_exact(UpdatePathNode, wire)
    assert back == node == _generic(wire)
    assert encode(back) == wire


@pytest.mark.parametrize("sizes", SHAPES)
def test_every_truncation_and_corruption_fails_as_the_generic_reader_does(sizes: list[tuple[int, int]]) -> None:
    _same_on_every_damage(_ours, _generic, encode(_node(sizes)))


def _same_on_every_damage(ours: Callable[..., object], generic: Callable[..., object], wire: bytes) -> None:
    """Every truncation and a few flips of every byte decode (or fail) alike with both."""
    for cut in range(len(wire)):
        assert _outcome(ours, wire[:cut]) == _outcome(generic, wire[:cut])
    for i in range(len(wire)):
        for flip in (0x01, 0x40, 0x80, 0xFF):
            bad = bytearray(wire)
            bad[i] ^= flip
            assert _outcome(ours, bytes(bad)) == _outcome(generic, bytes(bad)), (i, flip)


def test_a_tight_vector_bound_is_enforced_on_the_fast_path() -> None:
    wire = encode(_node([(32, 48)] * 2))
    got = _outcome(_ours, wire, 40)
    assert got == _outcome(_generic, wire, 40)
    assert isinstance(got, tuple) and "exceeds" in got[1]


# -- the Welcome's EncryptedGroupSecrets vector (ping_core.mls.structs.welcome) ---------------


_generic_welcome = _whole(lambda r: Welcome(r.u16(), r.structs(EncryptedGroupSecrets), r.opaque()))
_our_welcome = _whole(Welcome.read)


@pytest.mark.parametrize("sizes", [[(32, 32, 84)] * 4, [(32, 32, 300), (70, 32, 84)], [(0, 0, 0), (63, 64, 64)]])
def test_welcome_secrets_read_as_the_generic_reader_does(sizes: list[tuple[int, int, int]]) -> None:
    entries = tuple(EncryptedGroupSecrets(os.urandom(r), HPKECiphertext(os.urandom(k), os.urandom(c))) for r, k, c in sizes)
    wire = encode(Welcome(1, entries, os.urandom(20)))
    assert _our_welcome(wire) == _generic_welcome(wire) == Welcome(1, entries, wire[-20:])
    _same_on_every_damage(_our_welcome, _generic_welcome, wire)
