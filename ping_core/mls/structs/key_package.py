"""KeyPackage and KeyPackageTBS (RFC 9420 §10)."""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.mls.tls import Reader, Writer

from .enums import ProtocolVersion
from .extensions import Extension
from .leaf import LeafNode
from .limits import MAX_HPKE_PUBLIC_KEY, MAX_SIGNATURE

__all__ = ["KeyPackage"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPackage:
    """``struct { ProtocolVersion version; CipherSuite cipher_suite;
    HPKEPublicKey init_key; LeafNode leaf_node; Extension extensions<V>;
    opaque signature<V>; } KeyPackage``.

    ``version`` and ``cipher_suite`` are carried as read (plain ``int`` when
    unknown); whether they are acceptable is the validator's decision.
    Keyword-only (fields in RFC order; ``version`` defaults to mls10).
    ``signature`` is over :meth:`tbs` with label ``"KeyPackageTBS"``.
    """

    version: int = ProtocolVersion.MLS10
    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""

    def _write_content(self, w: Writer) -> None:
        w.u16(self.version)
        w.u16(self.cipher_suite)
        w.opaque(self.init_key)
        self.leaf_node.write(w)
        w.structs(self.extensions)

    def write(self, w: Writer) -> None:
        self._write_content(w)
        w.opaque(self.signature)

    def tbs(self) -> bytes:
        """The KeyPackageTBS encoding (every field but the signature)."""
        w = Writer()
        self._write_content(w)
        return bytes(w.buf)

    @classmethod
    def read(cls, r: Reader) -> KeyPackage:
        version = r.u16()
        cipher_suite = r.u16()
        init_key = r.opaque(MAX_HPKE_PUBLIC_KEY)
        leaf_node = LeafNode.read(r)
        extensions = r.structs(Extension)
        signature = r.opaque(MAX_SIGNATURE)
        return cls(
            version=version,
            cipher_suite=cipher_suite,
            init_key=init_key,
            leaf_node=leaf_node,
            extensions=extensions,
            signature=signature,
        )
