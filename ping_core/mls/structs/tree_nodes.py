"""Tree nodes (RFC 9420 §7.1, §7.8) and the ratchet_tree extension payload.

A node is a :class:`LeafNode` or a :class:`ParentNode`; a blank node is
``None``. The wire form is ``struct { NodeType node_type; select {...} } Node``
and the tree ``optional<Node> ratchet_tree<V>`` (§12.4.3.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterable, Union

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer

from .enums import ExtensionType, NodeType
from .leaf import LeafNode
from .limits import MAX_HASH, MAX_HPKE_PUBLIC_KEY

__all__ = ["ParentNode", "Node", "read_node", "write_node", "RatchetTree"]


@dataclass(frozen=True, slots=True)
class ParentNode:
    """``struct { HPKEPublicKey encryption_key; opaque parent_hash<V>;
    uint32 unmerged_leaves<V>; } ParentNode`` (leaf indices, not node indices)."""

    encryption_key: bytes
    parent_hash: bytes = b""
    unmerged_leaves: tuple[int, ...] = ()

    def write(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.opaque(self.parent_hash)
        w.uint32s(self.unmerged_leaves)

    @classmethod
    def read(cls, r: Reader) -> ParentNode:
        return cls(r.opaque(MAX_HPKE_PUBLIC_KEY), r.opaque(MAX_HASH), r.uint32s())


Node = Union[LeafNode, ParentNode]


def write_node(w: Writer, node: Node) -> None:
    """``Node``: the node type byte, then the node."""
    if isinstance(node, LeafNode):
        w.u8(NodeType.LEAF)
    elif isinstance(node, ParentNode):
        w.u8(NodeType.PARENT)
    else:
        raise TypeError(f"not a tree node: {type(node).__name__}")
    node.write(w)


def read_node(r: Reader) -> Node:
    """``Node``; an unknown node type is a decode error."""
    t = r.u8()
    if t == 1:
        return LeafNode.read(r)
    if t == 2:
        return ParentNode.read(r)
    raise MlsDecodeError(f"unknown node type {t}", reason=MlsReason.MALFORMED)


def _read_optional_node(r: Reader) -> Node | None:
    flag = r.u8()
    if flag == 0:
        return None
    if flag != 1:
        raise MlsDecodeError(f"invalid optional presence byte {flag}", reason=MlsReason.MALFORMED)
    return read_node(r)


def _write_optional_node(w: Writer, node: Node | None) -> None:
    if node is None:
        w.u8(0)
    else:
        w.u8(1)
        write_node(w, node)


@dataclass(frozen=True, slots=True)
class RatchetTree:
    """The ratchet_tree extension payload: nodes in array order (§4.1.2),
    ``None`` for blank, with the trailing blanks left off.

    Decoding checks the array shape only: the list is non-empty, its last
    node is not blank (§12.4.3.3), leaves sit at even and parent nodes at odd
    indices. Hashes, signatures and unmerged leaves are the tree validator's.
    """

    EXTENSION_TYPE: ClassVar[int] = ExtensionType.RATCHET_TREE

    nodes: tuple[Node | None, ...]

    def write(self, w: Writer) -> None:
        w.vector(self.nodes, _write_optional_node)

    @classmethod
    def read(cls, r: Reader) -> RatchetTree:
        nodes = tuple(r.vector(_read_optional_node))
        if not nodes:
            raise MlsDecodeError("empty ratchet tree", reason=MlsReason.MALFORMED)
        if nodes[-1] is None:
            raise MlsDecodeError("ratchet tree ends with a blank node", reason=MlsReason.MALFORMED)
        for i in range(0, len(nodes), 2):
            n = nodes[i]
            if n is not None and type(n) is not LeafNode:
                raise MlsDecodeError(f"node {i} is a leaf position but holds a parent node", reason=MlsReason.MALFORMED)
        for i in range(1, len(nodes), 2):
            n = nodes[i]
            if n is not None and type(n) is not ParentNode:
                raise MlsDecodeError(f"node {i} is a parent position but holds a leaf node", reason=MlsReason.MALFORMED)
        return cls(nodes)

    @classmethod
    def from_nodes(cls, nodes: Iterable[Node | None]) -> RatchetTree:
        """A payload from a full node array: trailing blank nodes are dropped."""
        items = list(nodes)
        while items and items[-1] is None:
            items.pop()
        return cls(tuple(items))
