"""Tree hashes (RFC 9420 §7.8) and parent hashes (RFC 9420 §7.9) of a ratchet tree.

:class:`TreeHashes` caches the tree hash of every node. A change to a node
clears the cache of that node and of its direct path only
(:meth:`TreeHashes.invalidate`), so a commit rehashes ``O(log n)`` nodes; a
copy of the tree shares the cached values.
"""

from __future__ import annotations

from struct import Struct

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import encode, opaque
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.tree_nodes import Node, ParentNode

from ping_core.mls.tree.encoding import encoding_at
from .treemath import children, full_parent, span

__all__ = ["TreeHashes"]

# LeafNodeHashInput prefix: uint8 node_type = leaf; uint32 leaf_index; optional presence.
_LEAF_PREFIX = Struct(">BIB")


class TreeHashes:
    """The tree hash cache of one ratchet tree.

    ``nodes`` and ``encodings`` are the owning tree's lists (shared, not
    copied: the tree changes them in place and calls :meth:`invalidate` for
    every changed node); the cache holds ``None`` for a node whose hash is not
    known.
    """

    __slots__ = ("_nodes", "_enc", "_hash")

    def __init__(
        self, nodes: list[Node | None], encodings: list[bytes | None], hashes: list[bytes | None] | None = None
    ) -> None:
        self._nodes = nodes
        self._enc = encodings
        self._hash: list[bytes | None] = hashes if hashes is not None else [None] * len(nodes)

    def copy(self, nodes: list[Node | None], encodings: list[bytes | None]) -> TreeHashes:
        """The cache for a copy of the tree made of ``nodes`` and ``encodings`` (same values)."""
        return TreeHashes(nodes, encodings, self._hash[:])

    def grow(self, extra: int) -> None:
        """The tree gained ``extra`` nodes at the end (all blank)."""
        self._hash.extend([None] * extra)

    def shrink(self, width: int) -> None:
        """The tree was truncated to ``width`` nodes."""
        del self._hash[width:]

    def invalidate(self, x: int, root: int) -> None:
        """Node ``x`` changed: forget its hash and those of its direct path up to ``root``."""
        hashes = self._hash
        hashes[x] = None
        while x != root:
            x = full_parent(x)
            if hashes[x] is None:
                break  # a dirty node's ancestors are already dirty
            hashes[x] = None

    def tree_hash(self, crypto: CryptoProvider, x: int) -> bytes:
        """The tree hash of the subtree under node ``x`` (§7.8), from cached hashes where still valid."""
        # Hot: every node of a fresh tree passes here once. Hash inputs are
        # built by concatenation (hashes are < 64 bytes: one-byte length).
        hashes = self._hash
        h = hashes[x]
        if h is not None:
            return h
        node = self._nodes[x]
        if not x & 1:
            # LeafNodeHashInput: uint8 node_type = leaf; uint32 leaf_index; optional<LeafNode>
            if node is None:
                h = crypto.hash(_LEAF_PREFIX.pack(1, x >> 1, 0))
            else:
                enc = self._enc[x]
                if enc is None:
                    enc = encoding_at(self._nodes, self._enc, x)
                h = crypto.hash(_LEAF_PREFIX.pack(1, x >> 1, 1) + enc)
        else:
            lx, rx = children(x)
            left = hashes[lx] or self.tree_hash(crypto, lx)
            right = hashes[rx] or self.tree_hash(crypto, rx)
            # ParentNodeHashInput: uint8 node_type = parent; optional<ParentNode>;
            # opaque left_hash<V>; opaque right_hash<V>
            body = b"\x02\x01" + encoding_at(self._nodes, self._enc, x) if node is not None else b"\x02\x00"
            if len(left) < 64 and len(right) < 64:
                h = crypto.hash(body + bytes((len(left),)) + left + bytes((len(right),)) + right)
            else:
                h = crypto.hash(body + opaque(left) + opaque(right))
        hashes[x] = h
        return h

    def parent_hash(self, crypto: CryptoProvider, p: int, sibling: int) -> bytes:
        """The parent hash of non-blank parent ``p`` with copath child ``sibling`` (§7.9).

        ``original_sibling_tree_hash`` is the sibling's tree hash with ``p``'s
        unmerged leaves blanked (no recomputation when none is under it).
        ``MlsError`` when ``p`` is not a non-blank parent.
        """
        node = self._nodes[p]
        if type(node) is not ParentNode:
            raise MlsError(f"node {p} is not a non-blank parent node", reason=MlsReason.INVALID_ARGUMENT)
        lo, hi = span(sibling)
        removed = frozenset(2 * leaf for leaf in node.unmerged_leaves if lo <= 2 * leaf <= hi)
        th = self._hash_without(crypto, sibling, removed) if removed else self.tree_hash(crypto, sibling)
        # ParentHashInput: encryption_key<V>, parent_hash<V>, original_sibling_tree_hash<V>
        return crypto.hash(opaque(node.encryption_key) + opaque(node.parent_hash) + opaque(th))

    def _hash_without(self, crypto: CryptoProvider, x: int, removed: frozenset[int]) -> bytes:
        """Tree hash of ``x`` with the leaves ``removed`` (node indices) blanked and
        taken out of every unmerged_leaves list (the "original" tree of §7.9)."""
        lo, hi = span(x)
        if not any(lo <= r <= hi for r in removed):
            return self.tree_hash(crypto, x)
        if not x & 1:  # one of the removed leaves: hash it as blank
            return crypto.hash(_LEAF_PREFIX.pack(1, x >> 1, 0))
        node = self._nodes[x]
        lx, rx = children(x)
        left = self._hash_without(crypto, lx, removed)
        right = self._hash_without(crypto, rx, removed)
        if node is None:
            body = b"\x02\x00"
        else:
            assert type(node) is ParentNode
            kept = tuple(leaf for leaf in node.unmerged_leaves if 2 * leaf not in removed)
            if len(kept) == len(node.unmerged_leaves):
                enc = encoding_at(self._nodes, self._enc, x)
            else:
                enc = encode(ParentNode(node.encryption_key, node.parent_hash, kept))
            body = b"\x02\x01" + enc
        return crypto.hash(body + opaque(left) + opaque(right))
