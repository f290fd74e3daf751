"""HPKE ciphertexts and the UpdatePath of a commit (RFC 9420 §7.6, §12.4.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ping_core.mls.tls import Reader, Writer

from .leaf import LeafNode
from .limits import MAX_HPKE_PUBLIC_KEY, MAX_KEM_OUTPUT

__all__ = ["HPKECiphertext", "UpdatePathNode", "UpdatePath"]


class HPKECiphertext(NamedTuple):
    """``struct { opaque kem_output<V>; opaque ciphertext<V>; } HPKECiphertext``.

    A named tuple (immutable like the other structs): a commit's UpdatePath holds one per
    member of the copath resolutions, ~N in a large group, and a tuple is made several times
    faster than a frozen dataclass.
    """

    kem_output: bytes
    ciphertext: bytes

    def write(self, w: Writer) -> None:
        w.opaque(self.kem_output)
        w.opaque(self.ciphertext)

    @classmethod
    def read(cls, r: Reader) -> HPKECiphertext:
        return cls(r.opaque(MAX_KEM_OUTPUT), r.opaque())


@dataclass(frozen=True, slots=True)
class UpdatePathNode:
    """``struct { HPKEPublicKey encryption_key;
    HPKECiphertext encrypted_path_secret<V>; } UpdatePathNode``.

    A commit's content is encoded three times (its signature, its membership tag, the confirmed
    transcript hash, RFC 9420 §6.1, §6.2, §8.2), and in a large group nearly all of it is these
    ciphertexts. So a node keeps its encoding: the bytes it was read from, or the first one
    written. Both are the same bytes, since every field is an opaque<V> or a vector whose minimal
    length prefix the decoder enforces (§2.1.2): decoding then encoding is the identity.
    """

    encryption_key: bytes
    encrypted_path_secret: tuple[HPKECiphertext, ...] = ()
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def write(self, w: Writer) -> None:
        wire = self._wire
        if wire is None:
            start = len(w.buf)
            w.opaque(self.encryption_key)
            w.structs(self.encrypted_path_secret)
            object.__setattr__(self, "_wire", bytes(w.buf[start:]))
        else:
            w.raw(wire)

    @classmethod
    def read(cls, r: Reader) -> UpdatePathNode:
        start = r.pos
        key = r.opaque(MAX_HPKE_PUBLIC_KEY)
        # The HPKECiphertext vector, read inline (each item two opaque<V>): the same checks as
        # Reader.structs(HPKECiphertext). An item whose two lengths take one byte each (all of
        # them, for X25519 and a path secret) is sliced here directly; any other goes through
        # Reader.opaque, which raises what it always raises.
        n = r._length()
        stop = r.pos + n
        saved_end = r.end
        r.end = stop
        data = r.data
        short = min(0x3F, r.max_vector, MAX_KEM_OUTPUT)  # a one-byte length within every bound
        new = tuple.__new__
        cls_ct = HPKECiphertext
        items: list[HPKECiphertext] = []
        append = items.append
        try:
            pos = r.pos
            while pos < stop:
                k = data[pos]
                a = pos + 1 + k
                if k <= short and a < stop:
                    c = data[a]
                    b = a + 1 + c
                    if c <= short and b <= stop:
                        append(new(cls_ct, (data[pos + 1 : a], data[a + 1 : b])))
                        pos = b
                        continue
                r.pos = pos
                append(cls_ct(r.opaque(MAX_KEM_OUTPUT), r.opaque()))
                pos = r.pos
            r.pos = pos
        finally:
            r.end = saved_end
        node = cls(key, tuple(items))
        object.__setattr__(node, "_wire", r.data[start:r.pos])
        return node


@dataclass(frozen=True, slots=True)
class UpdatePath:
    """``struct { LeafNode leaf_node; UpdatePathNode nodes<V>; } UpdatePath``."""

    leaf_node: LeafNode
    nodes: tuple[UpdatePathNode, ...] = ()

    def write(self, w: Writer) -> None:
        self.leaf_node.write(w)
        w.structs(self.nodes)

    @classmethod
    def read(cls, r: Reader) -> UpdatePath:
        return cls(LeafNode.read(r), r.structs(UpdatePathNode))
