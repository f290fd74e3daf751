"""UpdatePathNode's own reader and its kept encoding (ping_core.mls.structs.hpke): the same values,
bytes and errors as the generic codec (an opaque<V> key, then Reader.structs(HPKECiphertext))."""

from __future__ import annotations

import os

import pytest

from ping_core.errors import MlsDecodeError
from ping_core.mls.tls import Reader, Writer, decode_exact, encode
from ping_core.mls.structs.hpke import HPKECiphertext, UpdatePathNode
from ping_core.mls.structs.limits import MAX_HPKE_PUBLIC_KEY


def _generic(data: bytes, max_vector: int | None = None) -> UpdatePathNode:
    r = Reader(data) if max_vector is None else Reader(data, max_vector)
    node = UpdatePathNode(r.opaque(MAX_HPKE_PUBLIC_KEY), r.structs(HPKECiphertext))
    r.expect_end()
    return node


def _ours(data: bytes, max_vector: int | None = None) -> UpdatePathNode:
    r = Reader(data) if max_vector is None else Reader(data, max_vector)
    node = UpdatePathNode.read(r)
    r.expect_end()
    return node


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
    wire = encode(_node(sizes))
    for cut in range(len(wire)):
        assert _outcome(_ours, wire[:cut]) == _outcome(_generic, wire[:cut])
    for i in range(len(wire)):
        for flip in (0x01, 0x40, 0x80, 0xFF):
            bad = bytearray(wire)
            bad[i] ^= flip
            assert _outcome(_ours, bytes(bad)) == _outcome(_generic, bytes(bad)), (i, flip)


def test_a_tight_vector_bound_is_enforced_on_the_fast_path() -> None:
    wire = encode(_node([(32, 48)] * 2))
    got = _outcome(_ours, wire, 40)
    assert got == _outcome(_generic, wire, 40)
    assert isinstance(got, tuple) and "exceeds" in got[1]
