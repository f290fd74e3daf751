"""LeafNode's decoder for the usual shape and the Capabilities kept per encoding
(ping_core.mls.structs.leaf): the same values and errors as the generic decoder."""

from __future__ import annotations

import os

import pytest

from ping_core.errors import MlsDecodeError
from ping_core.mls.tls import Reader, encode
from ping_core.mls.structs.credential import Credential
from ping_core.mls.structs.enums import LeafNodeSource
from ping_core.mls.structs.extensions import Extension
from ping_core.mls.structs.leaf import Capabilities, LeafNode, Lifetime, _read_plain


def _leaf(source: LeafNodeSource, identity: bytes = b"alice", extensions: tuple[Extension, ...] = (),
          caps: Capabilities | None = None, signature: bytes | None = None) -> LeafNode:
    return LeafNode(
        os.urandom(32), os.urandom(32), Credential.basic(identity), caps or Capabilities(extensions=(0x0A0A,)), source,
        Lifetime(1, 2**40) if source == LeafNodeSource.KEY_PACKAGE else None,
        os.urandom(32) if source == LeafNodeSource.COMMIT else None,
        extensions, os.urandom(64) if signature is None else signature,
    )  # fmt: skip


def _outcome(read, data: bytes, max_vector: int | None = None) -> object:
    r = Reader(data) if max_vector is None else Reader(data, max_vector)
    try:
        leaf = read(r)
        r.expect_end()
        return leaf
    except MlsDecodeError as exc:
        return ("error", str(exc))


LEAVES = [
    _leaf(LeafNodeSource.KEY_PACKAGE),
    _leaf(LeafNodeSource.UPDATE, b""),
    _leaf(LeafNodeSource.COMMIT, b"x" * 63),
    _leaf(LeafNodeSource.COMMIT, b"x" * 64),  # a two-byte identity length: the generic decoder
    _leaf(LeafNodeSource.KEY_PACKAGE, extensions=(Extension(0x0A0A, b"grease"),)),  # extensions: generic
    _leaf(LeafNodeSource.UPDATE, signature=os.urandom(10)),  # one-byte signature length
]


@pytest.mark.parametrize("leaf", LEAVES)
def test_values_and_every_corruption_as_the_generic_decoder(leaf: LeafNode) -> None:
    wire = encode(leaf)
    assert _outcome(LeafNode.read, wire) == leaf == _outcome(LeafNode._read, wire)
    for cut in range(len(wire)):
        assert _outcome(LeafNode.read, wire[:cut]) == _outcome(LeafNode._read, wire[:cut]), cut
    for i in range(len(wire)):
        for flip in (0x01, 0x02, 0x40, 0x80, 0xFF):
            bad = bytearray(wire)
            bad[i] ^= flip
            assert _outcome(LeafNode.read, bytes(bad)) == _outcome(LeafNode._read, bytes(bad)), (i, flip)


def test_the_usual_shape_takes_the_slicing_decoder() -> None:
    """So the equivalence above covers it (a shape it declines is covered trivially)."""
    for leaf in LEAVES[:3]:
        assert _read_plain(Reader(encode(leaf))) == leaf
    for leaf in LEAVES[3:5]:
        assert _read_plain(Reader(encode(leaf))) is None


def test_kept_capabilities_are_shared_and_bounded_like_the_generic_reader() -> None:
    caps = Capabilities(extensions=(0x1A1A, 0x2A2A), proposals=(0x3A3A,))
    a, b = encode(_leaf(LeafNodeSource.UPDATE, caps=caps)), encode(_leaf(LeafNodeSource.UPDATE, caps=caps))
    first, second = LeafNode.read(Reader(a)), LeafNode.read(Reader(b))
    assert first.capabilities == caps and second.capabilities is first.capabilities
    # A reader bound below a list's length refuses it, cached or not.
    assert _outcome(LeafNode.read, a, 3) == _outcome(LeafNode._read, a, 3)
    assert isinstance(_outcome(LeafNode.read, a, 3), tuple)
