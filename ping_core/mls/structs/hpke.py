"""HPKE ciphertexts and the UpdatePath of a commit (RFC 9420 §7.6, §12.4.1)."""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.mls.codec import Reader, Writer

from .leaf import LeafNode
from .limits import MAX_HPKE_PUBLIC_KEY, MAX_KEM_OUTPUT

__all__ = ["HPKECiphertext", "UpdatePathNode", "UpdatePath"]


@dataclass(frozen=True, slots=True)
class HPKECiphertext:
    """``struct { opaque kem_output<V>; opaque ciphertext<V>; } HPKECiphertext``."""

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
    HPKECiphertext encrypted_path_secret<V>; } UpdatePathNode``."""

    encryption_key: bytes
    encrypted_path_secret: tuple[HPKECiphertext, ...] = ()

    def write(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.structs(self.encrypted_path_secret)

    @classmethod
    def read(cls, r: Reader) -> UpdatePathNode:
        return cls(r.opaque(MAX_HPKE_PUBLIC_KEY), r.structs(HPKECiphertext))


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
