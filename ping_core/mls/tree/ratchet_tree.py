"""The public ratchet tree: nodes, navigation and mutation (RFC 9420 §4, §7.4-§7.9, §12.1).

:class:`RatchetTree` holds the nodes of the tree in array order (RFC 9420
Appendix C) with a leaf width that is always a power of two, ``None`` for a
blank node. Nodes are the immutable structs of :mod:`ping_core.mls.structs`;
the tree changes only through its methods, normally on a :meth:`copy` (a
staged commit works on a copy and the live tree is never touched).

What it offers:

* shape: :meth:`add_leaf` (§12.1.1, extends the tree when full),
  :meth:`update_leaf` (§12.1.2), :meth:`remove_leaf` (§12.1.3, truncates),
  :meth:`merge_path` (§7.5), :meth:`resolution` and
  :meth:`filtered_direct_path` (§4.1.2);
* hashes: :meth:`tree_hash` (§7.8) and :meth:`parent_hash_of` (§7.9), from
  the per-node cache of :class:`~ping_core.mls.tree.hashes.TreeHashes`. Each
  node's encoding is cached too (taken from the wire when the tree was
  decoded). :meth:`copy` shares both caches;
* the wire form: :meth:`decode` and :meth:`encode` (§12.4.3.3, see
  :mod:`ping_core.mls.tree.encoding`);
* the key index the validation looks up (:meth:`key_index`).

Validation is in :mod:`ping_core.mls.tree.validation`, TreeKEM in
:mod:`ping_core.mls.tree.treekem`. A method that raises ``MlsError`` leaves
the tree exactly as it was.
"""

from __future__ import annotations

from typing import Iterator, Sequence, cast

from ping_core.errors import MlsDecodeError, MlsError, MlsReason
from ping_core.mls.tls import Reader, decode_with
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs import tree_nodes
from ping_core.mls.structs.leaf import LeafNode
from ping_core.mls.structs.tree_nodes import Node, ParentNode

from ping_core.mls.tree.encoding import encoding_at, read_nodes, write_nodes
from .hashes import TreeHashes
from .keys import KeyIndex
from .treemath import MAX_LEAF_WIDTH, children, full_parent, span
from .treemath import direct_path as _direct_path

__all__ = ["RatchetTree"]


class RatchetTree:
    """The public ratchet tree, array representation, leaf width a power of two.

    Build one with :meth:`decode`, :meth:`from_struct` or :meth:`from_nodes`
    (or :meth:`create` for a one-member tree). Mutators check their arguments
    first and change nothing when they raise.
    """

    __slots__ = ("_nodes", "_enc", "_hashes", "_n_leaves", "_index", "_index_owned", "_free_from")

    def __init__(self, nodes: list[Node | None], encodings: list[bytes | None] | None = None) -> None:
        """Internal: ``nodes`` must already have full width (use the class methods)."""
        self._nodes = nodes
        self._n_leaves = (len(nodes) >> 1) + 1
        self._enc: list[bytes | None] = encodings if encodings is not None else [None] * len(nodes)
        self._hashes = TreeHashes(self._nodes, self._enc)
        self._index: KeyIndex | None = None
        self._index_owned = True
        # Every leaf below this index is non-blank: free_leaf_index scans from
        # here, so adding N members one at a time is O(N), not O(N^2). It only
        # moves back when a leaf is blanked (in _set).
        self._free_from = 0

    # ------------------------------------------------------------------ building

    @classmethod
    def create(cls, leaf: LeafNode) -> RatchetTree:
        """A tree of one leaf (a new group's creator)."""
        return cls([leaf])

    @classmethod
    def from_nodes(cls, nodes: Sequence[Node | None]) -> RatchetTree:
        """A tree from nodes in array order, padded with blanks to full width.

        Raises ``MlsError`` for an empty list, a leaf at an odd index or a
        parent at an even one, or an all-blank tree.
        """
        items = list(nodes)
        while items and items[-1] is None:
            items.pop()
        if not items:
            raise MlsError("a ratchet tree needs at least one non-blank node", reason=MlsReason.INVALID_ARGUMENT)
        for i, n in enumerate(items):
            if n is None:
                continue
            if i & 1:
                if type(n) is not ParentNode:
                    raise MlsError(
                        f"node {i} is a parent position but holds {type(n).__name__}",
                        reason=MlsReason.MALFORMED,
                    )
            elif type(n) is not LeafNode:
                raise MlsError(f"node {i} is a leaf position but holds {type(n).__name__}", reason=MlsReason.MALFORMED)
        return cls._padded(items, None)

    @classmethod
    def _padded(cls, items: list[Node | None], encodings: list[bytes | None] | None) -> RatchetTree:
        n_leaves = 1
        while 2 * (n_leaves - 1) + 1 < len(items):
            n_leaves <<= 1
        if n_leaves > MAX_LEAF_WIDTH:
            raise MlsError(
                f"a tree of {n_leaves} leaves exceeds the limit of {MAX_LEAF_WIDTH}",
                reason=MlsReason.LIMIT_EXCEEDED,
            )
        width = 2 * (n_leaves - 1) + 1
        pad = width - len(items)
        items.extend([None] * pad)
        if encodings is not None:
            encodings.extend([None] * pad)
        return cls(items, encodings)

    @classmethod
    def from_struct(cls, payload: tree_nodes.RatchetTree) -> RatchetTree:
        """The tree of a decoded ratchet_tree extension payload."""
        return cls.from_nodes(payload.nodes)

    @classmethod
    def decode(cls, data: bytes) -> RatchetTree:
        """Decode ``optional<Node> ratchet_tree<V>`` strictly (§12.4.3.3).

        Only ``MlsDecodeError`` leaves: for malformed bytes, an empty tree, a
        trailing blank node, a node of the wrong kind for its position, or a
        tree wider than the engine accepts. The wire bytes of each node are
        kept as its cached encoding.
        """
        return decode_with(cls._read, data)

    @classmethod
    def _read(cls, r: Reader) -> RatchetTree:
        nodes, encodings = read_nodes(r)
        try:
            return cls._padded(nodes, encodings)
        except MlsError as exc:
            # Only MlsDecodeError leaves a decoder; a tree over the width limit stays LIMIT_EXCEEDED.
            reason = MlsReason.LIMIT_EXCEEDED if exc.reason is MlsReason.LIMIT_EXCEEDED else MlsReason.MALFORMED
            raise MlsDecodeError(str(exc), reason=reason) from None

    def to_struct(self) -> tree_nodes.RatchetTree:
        """The ratchet_tree extension payload (trailing blank nodes left off)."""
        return tree_nodes.RatchetTree.from_nodes(self._nodes)

    def encode(self) -> bytes:
        """``optional<Node> ratchet_tree<V>``, trailing blanks left off (cached node encodings)."""
        return write_nodes(self._nodes, self._enc)

    def copy(self) -> RatchetTree:
        """An independent tree sharing nodes, encodings and cached hashes (O(n) list copies)."""
        other = RatchetTree.__new__(RatchetTree)
        other._nodes = self._nodes[:]
        other._enc = self._enc[:]
        other._hashes = self._hashes.copy(other._nodes, other._enc)
        other._n_leaves = self._n_leaves
        other._free_from = self._free_from
        # The key index is built once on the source (a live tree is copied for
        # every staged commit) and copied on write: whichever tree changes first.
        other._index = self.key_index()
        other._index_owned = False
        self._index_owned = False
        return other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RatchetTree) and self._nodes == other._nodes

    # Defining __eq__ without __hash__ makes instances unhashable (they are mutable).

    def __repr__(self) -> str:
        return f"RatchetTree(n_leaves={self._n_leaves}, members={self.member_count()})"

    # ------------------------------------------------------------------ reading

    @property
    def n_leaves(self) -> int:
        """The leaf width (a power of two), blank leaves included."""
        return self._n_leaves

    @property
    def n_nodes(self) -> int:
        return len(self._nodes)

    @property
    def root(self) -> int:
        return self._n_leaves - 1

    @property
    def nodes(self) -> Sequence[Node | None]:
        """Every node in array order (``None`` when blank); read only: change the tree through its methods."""
        return self._nodes

    def node(self, x: int) -> Node | None:
        """Node ``x`` (``None`` when blank); ``MlsError`` outside the tree."""
        if not 0 <= x < len(self._nodes):
            raise MlsError(f"node {x} is outside a tree of {len(self._nodes)} nodes", reason=MlsReason.INVALID_ARGUMENT)
        return self._nodes[x]

    def leaf(self, leaf_index: int) -> LeafNode | None:
        """The leaf at ``leaf_index`` (``None`` when blank); ``MlsError`` outside the tree."""
        if not 0 <= leaf_index < self._n_leaves:
            raise MlsError(
                f"leaf {leaf_index} is outside a tree of {self._n_leaves} leaves",
                reason=MlsReason.INVALID_ARGUMENT,
            )
        # Even array positions hold leaves only (checked where trees are built).
        return cast("LeafNode | None", self._nodes[2 * leaf_index])

    def encoding(self, x: int) -> bytes:
        """The encoding of non-blank node ``x`` (``LeafNode`` or ``ParentNode``, no type byte), cached."""
        nodes = self._nodes
        if not 0 <= x < len(nodes):
            raise MlsError(f"node {x} is outside a tree of {len(nodes)} nodes", reason=MlsReason.INVALID_ARGUMENT)
        if nodes[x] is None:
            raise MlsError(f"node {x} is blank: it has no encoding", reason=MlsReason.INVALID_ARGUMENT)
        enc = self._enc[x]
        return enc if enc is not None else encoding_at(nodes, self._enc, x)

    def members(self) -> Iterator[tuple[int, LeafNode]]:
        """``(leaf_index, leaf)`` of every non-blank leaf, ascending."""
        nodes = self._nodes
        for x in range(0, len(nodes), 2):
            node = nodes[x]
            if node is not None:
                yield x >> 1, cast(LeafNode, node)

    def signature_keys(self) -> dict[int, bytes]:
        """``leaf_index -> signature_key`` of every non-blank leaf (what :meth:`members` gives,
        in one comprehension: a commit keeps this map for its past epoch)."""
        leaves = self._nodes[0::2]
        return {i: cast(LeafNode, leaf).signature_key for i, leaf in enumerate(leaves) if leaf is not None}

    def parents(self) -> Iterator[tuple[int, ParentNode]]:
        """``(node index, node)`` of every non-blank parent node, ascending."""
        nodes = self._nodes
        for x in range(1, len(nodes), 2):
            node = nodes[x]
            if node is not None:
                yield x, cast(ParentNode, node)

    def member_count(self) -> int:
        nodes = self._nodes
        return sum(1 for x in range(0, len(nodes), 2) if nodes[x] is not None)

    def free_leaf_index(self) -> int:
        """The leaf :meth:`add_leaf` would fill: the leftmost blank leaf, or ``n_leaves``.

        O(1) amortised: the scan starts after the leaves known to be filled.
        """
        nodes = self._nodes
        n = len(nodes)
        x = 2 * self._free_from
        while x < n and nodes[x] is not None:
            x += 2
        self._free_from = x >> 1
        return x >> 1

    def direct_path(self, x: int) -> list[int]:
        """The ancestors of node ``x``, nearest first, root last (empty for the root)."""
        self.node(x)
        return _direct_path(x, self._n_leaves)

    def copath(self, x: int) -> list[int]:
        """The sibling of ``x`` and of each node on its direct path except the root."""
        out: list[int] = []
        for p in self.direct_path(x):
            left, right = children(p)
            out.append(right if x == left else left)
            x = p
        return out

    def resolution(self, x: int) -> list[int]:
        """The resolution of node ``x`` (§4.1.1), as node indices.

        A non-blank node and then its unmerged leaves (in list order); for a
        blank parent the resolutions of its left then right child; nothing
        for a blank leaf.
        """
        if not 0 <= x < len(self._nodes):
            raise MlsError(f"node {x} is outside a tree of {len(self._nodes)} nodes", reason=MlsReason.INVALID_ARGUMENT)
        # Depth first with a stack, left before right: the recursive definition without a
        # Python call per node. A blank parent whose subtree holds no non-blank parent (most of
        # a sparse tree: after a big add, every subtree off the committer's path) resolves to
        # its non-blank leaves, left to right, taken in one pass over its span.
        nodes = self._nodes
        out: list[int] = []
        stack = [x]
        pop, push = stack.pop, stack.append
        while stack:
            y = pop()
            node = nodes[y]
            if node is not None:
                out.append(y)
                if y & 1:
                    out.extend([2 * leaf for leaf in cast(ParentNode, node).unmerged_leaves])
            elif y & 1:
                lo, hi = span(y)
                if any(nodes[lo + 1 : hi : 2]):
                    left, right = children(y)
                    push(right)
                    push(left)
                else:
                    out.extend([lo + 2 * i for i, leaf in enumerate(nodes[lo : hi + 1 : 2]) if leaf is not None])
        return out

    def _nonempty(self, x: int) -> bool:
        """Whether the resolution of ``x`` is non-empty: some node under it is non-blank."""
        lo, hi = span(x)
        nodes = self._nodes
        if lo == hi:
            return nodes[lo] is not None
        return any(nodes[lo : hi + 1])

    def filtered_direct_path(self, leaf_index: int) -> list[int]:
        """The leaf's direct path without the nodes whose copath child has an empty resolution (§4.1.2)."""
        return [p for p, _ in self.filtered_direct_path_with_copath(leaf_index)]

    def filtered_direct_path_with_copath(self, leaf_index: int) -> list[tuple[int, int]]:
        """``(node, copath child)`` for each node of the filtered direct path, nearest first.

        The copath child is the child of the node that is not on the leaf's
        direct path: the subtree a path secret for that node is encrypted to.
        """
        self.leaf(leaf_index)
        root = self._n_leaves - 1
        x = 2 * leaf_index
        out: list[tuple[int, int]] = []
        while x != root:
            p = full_parent(x)
            left, right = children(p)
            s = right if x == left else left
            if self._nonempty(s):
                out.append((p, s))
            x = p
        return out

    # ------------------------------------------------------------------ hashes

    def tree_hash(self, crypto: CryptoProvider) -> bytes:
        """The tree hash of the root (§7.8), from cached node hashes where still valid."""
        return self._hashes.tree_hash(crypto, self._n_leaves - 1)

    def node_tree_hash(self, crypto: CryptoProvider, x: int) -> bytes:
        """The tree hash of the subtree under node ``x``."""
        self.node(x)
        return self._hashes.tree_hash(crypto, x)

    def parent_hash_of(self, crypto: CryptoProvider, p: int, sibling: int) -> bytes:
        """The parent hash of non-blank parent ``p`` with copath child ``sibling`` (§7.9).

        ``MlsError`` when ``p`` is not a non-blank parent node.
        """
        n = len(self._nodes)
        if not (0 <= p < n and 0 <= sibling < n):
            raise MlsError(f"node {p} or {sibling} is outside a tree of {n} nodes", reason=MlsReason.INVALID_ARGUMENT)
        return self._hashes.parent_hash(crypto, p, sibling)

    # ------------------------------------------------------------------ mutation

    def _own_index(self) -> KeyIndex | None:
        idx = self._index
        if idx is not None and not self._index_owned:
            idx = idx.copy()
            self._index = idx
            self._index_owned = True
        return idx

    def _set(self, x: int, node: Node | None, enc: bytes | None = None) -> None:
        """The one place a node changes: keeps the key index, drops stale caches."""
        nodes = self._nodes
        old = nodes[x]
        if old is node:
            return
        idx = self._own_index()
        if idx is not None:
            if old is not None:
                idx.remove(old)
            if node is not None:
                idx.add(node)
        nodes[x] = node
        self._enc[x] = enc
        if node is None and not x & 1 and x >> 1 < self._free_from:
            self._free_from = x >> 1
        self._hashes.invalidate(x, self._n_leaves - 1)

    def _blank_direct_path(self, leaf_index: int) -> None:
        root = self._n_leaves - 1
        x = 2 * leaf_index
        while x != root:
            x = full_parent(x)
            if self._nodes[x] is not None:
                self._set(x, None)

    def _extend(self) -> None:
        """Double the leaf width: the old tree becomes the left subtree of a new blank root."""
        if self._n_leaves >= MAX_LEAF_WIDTH:
            raise MlsError(f"the tree cannot grow beyond {MAX_LEAF_WIDTH} leaves", reason=MlsReason.LIMIT_EXCEEDED)
        extra = len(self._nodes) + 1
        self._nodes.extend([None] * extra)
        self._enc.extend([None] * extra)
        self._hashes.grow(extra)
        self._n_leaves <<= 1

    def _truncate(self) -> None:
        """Drop the right half while it holds no non-blank leaf (§12.1.3)."""
        nodes = self._nodes
        while self._n_leaves > 1:
            half = self._n_leaves  # the root's index + 1: the right subtree's first (leaf) node
            if any(nodes[x] is not None for x in range(half, len(nodes), 2)):
                break
            idx = self._own_index()
            if idx is not None:
                for node in nodes[half - 1 :]:
                    if node is not None:
                        idx.remove(node)
            del nodes[half - 1 :]
            del self._enc[half - 1 :]
            self._hashes.shrink(half - 1)
            self._n_leaves >>= 1

    def ensure_leaf(self, leaf_index: int) -> None:
        """Extend the tree until ``leaf_index`` lies inside it (an external joiner's new leaf)."""
        if leaf_index < 0 or leaf_index >= MAX_LEAF_WIDTH:
            raise MlsError(f"leaf index {leaf_index} is out of range", reason=MlsReason.INVALID_ARGUMENT)
        while leaf_index >= self._n_leaves:
            self._extend()

    def add_leaf(self, leaf: LeafNode) -> int:
        """Add a member (§12.1.1) and return its leaf index.

        The leftmost blank leaf is used, or the tree is extended to the right.
        The new leaf index is appended to the unmerged_leaves of every
        non-blank parent on its direct path. The leaf is not validated here
        (see :func:`~ping_core.mls.tree.validation.verify_leaf`).
        """
        if type(leaf) is not LeafNode:
            raise MlsError(f"add_leaf needs a LeafNode, not {type(leaf).__name__}", reason=MlsReason.INVALID_ARGUMENT)
        index = self.free_leaf_index()
        self.ensure_leaf(index)
        self._set(2 * index, leaf)
        root = self._n_leaves - 1
        x = 2 * index
        while x != root:
            x = full_parent(x)
            p = self._nodes[x]
            if p is not None:
                assert type(p) is ParentNode
                self._set(x, ParentNode(p.encryption_key, p.parent_hash, p.unmerged_leaves + (index,)))
        return index

    def update_leaf(self, leaf_index: int, leaf: LeafNode) -> None:
        """Replace a member's leaf and blank its direct path (§12.1.2, and UpdatePath leaves)."""
        if type(leaf) is not LeafNode:
            raise MlsError(
                f"update_leaf needs a LeafNode, not {type(leaf).__name__}",
                reason=MlsReason.INVALID_ARGUMENT,
            )
        if self.leaf(leaf_index) is None:
            raise MlsError(
                f"leaf {leaf_index} is blank: there is no member to update",
                reason=MlsReason.INVALID_ARGUMENT,
            )
        self._set(2 * leaf_index, leaf)
        self._blank_direct_path(leaf_index)

    def remove_leaf(self, leaf_index: int) -> None:
        """Remove a member (§12.1.3): blank the leaf and its direct path, then truncate."""
        if self.leaf(leaf_index) is None:
            raise MlsError(
                f"leaf {leaf_index} is blank: there is no member to remove",
                reason=MlsReason.INVALID_ARGUMENT,
            )
        self._set(2 * leaf_index, None)
        self._blank_direct_path(leaf_index)
        self._truncate()

    def set_leaf(self, leaf_index: int, leaf: LeafNode) -> None:
        """Put ``leaf`` at ``leaf_index`` without touching any other node (TreeKEM's use)."""
        if type(leaf) is not LeafNode:
            raise MlsError(f"set_leaf needs a LeafNode, not {type(leaf).__name__}", reason=MlsReason.INVALID_ARGUMENT)
        self.leaf(leaf_index)
        self._set(2 * leaf_index, leaf)

    def merge_path(self, crypto: CryptoProvider, leaf_index: int, public_keys: Sequence[bytes]) -> bytes:
        """Merge the public keys of an UpdatePath (§7.5) and return the leaf's parent hash.

        Blanks the direct path of ``leaf_index``, sets each node of its
        filtered direct path (as computed before this call) to a parent node
        with the given key, empty unmerged_leaves and the parent hash of the
        node above it, computed from the root down (§7.9). The returned value
        is the parent hash the new leaf must carry (empty when the path is
        empty). The leaf itself is not changed. ``MlsError`` (tree unchanged)
        when the number of keys is not the filtered direct path's length.
        """
        pairs = self.filtered_direct_path_with_copath(leaf_index)
        if len(public_keys) != len(pairs):
            raise MlsError(
                f"the UpdatePath has {len(public_keys)} nodes but the sender's filtered direct path has {len(pairs)}",
                reason=MlsReason.BAD_PATH,
            )
        self._blank_direct_path(leaf_index)
        parent_hash = b""
        hashes = self._hashes
        for (p, s), key in zip(reversed(pairs), reversed(public_keys)):
            self._set(p, ParentNode(key, parent_hash, ()))
            parent_hash = hashes.parent_hash(crypto, p, s)
        return parent_hash

    # ------------------------------------------------------------------ key index

    def key_index(self) -> KeyIndex:
        """The key index of the current nodes (built on first use, then kept up to date).

        Read only: it is shared with copies until one of them changes.
        """
        idx = self._index
        if idx is None:
            idx = KeyIndex(self._nodes)
            self._index = idx
            self._index_owned = True
        return idx

    def has_encryption_key(self, key: bytes) -> bool:
        """Whether any node of the tree (leaf or parent) has this HPKE public key."""
        return key in self.key_index().enc

    def has_signature_key(self, key: bytes, *, ignore_leaf: int | None = None) -> bool:
        """Whether a member other than ``ignore_leaf`` has this signature key."""
        n = self.key_index().sig.get(key, 0)
        if n and ignore_leaf is not None and 0 <= ignore_leaf < self._n_leaves:
            leaf = self.leaf(ignore_leaf)
            if leaf is not None and leaf.signature_key == key:
                n -= 1
        return n > 0
