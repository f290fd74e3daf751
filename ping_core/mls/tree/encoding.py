"""The TLS wire form of a ratchet tree: ``optional<Node> ratchet_tree<V>`` (RFC 9420 §12.4.3.3).

The tree keeps, next to each node, the bytes of its ``LeafNode`` or
``ParentNode`` encoding (without the node type byte): the tree hash
(§7.8) and leaf signatures (§7.2) hash exactly these bytes, so a tree decoded
from the wire never re-encodes a node, and a node built in memory is encoded
once (:func:`encoding_at`).
"""

from __future__ import annotations

from typing import Sequence

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, encode, varint
from ping_core.mls.structs.leaf import LeafNode
from ping_core.mls.structs.tree_nodes import Node, ParentNode

__all__ = ["read_nodes", "write_nodes", "encoding_at"]


def encoding_at(nodes: Sequence[Node | None], encodings: list[bytes | None], x: int) -> bytes:
    """The encoding of non-blank node ``x``, from ``encodings`` or computed once and stored there."""
    enc = encodings[x]
    if enc is None:
        node = nodes[x]
        assert node is not None, "a blank node has no encoding"
        enc = encode(node)
        encodings[x] = enc
    return enc


def read_nodes(r: Reader) -> tuple[list[Node | None], list[bytes | None]]:
    """Read ``optional<Node> ratchet_tree<V>`` strictly: the nodes in array order and
    the wire bytes of each (``None`` for a blank node).

    ``MlsDecodeError`` for malformed bytes, an empty tree, a trailing blank
    node, or a node of the wrong kind for its position (leaves at even
    indices, parents at odd ones: RFC 9420 Appendix C).
    """
    n = r._length()
    stop = r.pos + n
    saved_end = r.end
    r.end = stop
    data = r.data
    nodes: list[Node | None] = []
    encs: list[bytes | None] = []
    leaf_read = LeafNode.read
    parent_read = ParentNode.read
    append_node = nodes.append
    append_enc = encs.append
    pos = r.pos
    try:
        # Presence and type bytes read inline: this loop runs once per node.
        while pos < stop:
            flag = data[pos]
            if flag == 0:
                append_node(None)
                append_enc(None)
                pos += 1
                continue
            if flag != 1:
                raise MlsDecodeError(f"invalid optional presence byte {flag}", reason=MlsReason.MALFORMED)
            if pos + 1 >= stop:
                raise MlsDecodeError("truncated input", reason=MlsReason.MALFORMED)
            t = data[pos + 1]
            start = r.pos = pos + 2
            odd = len(nodes) & 1
            node: Node
            if t == 1:
                if odd:
                    raise MlsDecodeError(
                        f"node {len(nodes)} is a parent position but holds a leaf node",
                        reason=MlsReason.MALFORMED,
                    )
                node = leaf_read(r)
            elif t == 2:
                if not odd:
                    raise MlsDecodeError(
                        f"node {len(nodes)} is a leaf position but holds a parent node",
                        reason=MlsReason.MALFORMED,
                    )
                node = parent_read(r)
            else:
                raise MlsDecodeError(f"unknown node type {t}", reason=MlsReason.MALFORMED)
            pos = r.pos
            append_node(node)
            append_enc(data[start:pos])
        r.pos = pos
    finally:
        r.end = saved_end
    if not nodes:
        raise MlsDecodeError("empty ratchet tree", reason=MlsReason.MALFORMED)
    if nodes[-1] is None:
        raise MlsDecodeError("ratchet tree ends with a blank node", reason=MlsReason.MALFORMED)
    return nodes, encs


def write_nodes(nodes: Sequence[Node | None], encodings: list[bytes | None]) -> bytes:
    """``optional<Node> ratchet_tree<V>`` of ``nodes``, trailing blanks left off
    (§12.4.3.3), each node's bytes from ``encodings`` where cached."""
    last = len(nodes) - 1
    while last >= 0 and nodes[last] is None:
        last -= 1
    parts: list[bytes] = []
    append = parts.append
    for x in range(last + 1):
        if nodes[x] is None:
            append(b"\x00")
        else:
            append(b"\x01\x02" if x & 1 else b"\x01\x01")
            append(encoding_at(nodes, encodings, x))
    body = b"".join(parts)
    return varint(len(body)) + body
