"""The public ratchet tree (RFC 9420 §4, §7, §12.1, §12.4.3.1).

:class:`RatchetTree` holds the nodes of the tree in array order (§4.2,
Appendix C) with a leaf width that is always a power of two, ``None`` for a
blank node. Nodes are the immutable structs of :mod:`ping_core.mls.structs`;
the tree changes only through its methods, normally on a :meth:`copy` (a
staged commit works on a copy and the live tree is never touched).

What it offers:

* shape: :meth:`add_leaf` (§12.1.1, extends the tree when full),
  :meth:`update_leaf` (§12.1.2), :meth:`remove_leaf` (§12.1.3, truncates),
  :meth:`resolution` and :meth:`filtered_direct_path` (§4.1.2);
* hashes: :meth:`tree_hash` (§7.8) and parent hashes (§7.9). Every node's
  tree hash is cached; a change clears the cache of the changed node and of
  its direct path only, so a commit rehashes ``O(log n)`` nodes. Each node's
  encoding is cached too (taken from the wire when the tree was decoded).
  :meth:`copy` shares both caches;
* checks: :meth:`verify_leaf` (§7.3, for Add, Update and UpdatePath leaves),
  :meth:`check_parent_hashes` (§7.9.2) and :meth:`validate`, the full
  validation of a tree a new member receives (§12.4.3.1).

Every check raises an :class:`~ping_core.errors.MlsError` (``InvalidSignature``
for a signature) that says what is wrong; a method that raises leaves the tree
exactly as it was. TreeKEM (path secrets, UpdatePath) is in
:mod:`ping_core.mls.treekem`.
"""

from __future__ import annotations

from struct import Struct
from typing import Callable, Iterator, Literal, Sequence, TypeVar, cast

from ping_core.errors import CryptoError, InvalidSignature, MlsDecodeError, MlsError
from ping_core.mls.codec import Reader, decode_with, encode, opaque, varint
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.crypto.provider import prefetch_verify, wants_prefetch
from ping_core.mls.structs import tree_nodes
from ping_core.mls.structs.enums import ExtensionType, LeafNodeSource, ProposalType
from ping_core.mls.structs.extensions import Extension, RequiredCapabilities, has_unique_types
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.leaf import Capabilities, LeafNode, Lifetime
from ping_core.mls.structs.tree_nodes import Node, ParentNode

from .primitives import sign_content, sign_with_label, verify_with_label

__all__ = [
    "RatchetTree",
    "DEFAULT_EXTENSION_TYPES",
    "DEFAULT_PROPOSAL_TYPES",
    "HPKE_PUBLIC_KEY_LEN",
    "sign_leaf_node",
    "check_extensions_listed",
    "check_lifetime_span",
    "check_supports_group",
    "required_capabilities",
    "lowest_common_ancestor",
]

# The proposal and extension types every client implements (§7.2): they are
# never listed in capabilities and are always supported.
DEFAULT_EXTENSION_TYPES = frozenset(int(t) for t in ExtensionType)
DEFAULT_PROPOSAL_TYPES = frozenset(int(t) for t in ProposalType)
HPKE_PUBLIC_KEY_LEN = 32  # X25519 (cipher suite 1)

_U32 = Struct(">I")
_LEAF_BLANK = Struct(">BIB")  # node_type, leaf_index, optional presence
_LEAF = LeafNodeSource
_LEAF_NODE_TBS_LABEL = b"LeafNodeTBS"
# Largest tree this engine accepts: 2^20 leaves (a million members).
MAX_LEAF_WIDTH = 1 << 20

_K = TypeVar("_K")


def _level(x: int) -> int:
    return (~x & (x + 1)).bit_length() - 1


def _parent(x: int) -> int:
    """The parent of ``x`` in a full tree (the caller stops at the root)."""
    k = (~x & (x + 1)).bit_length() - 1
    return (x | (1 << k)) & ~(1 << (k + 1))


def _span(x: int) -> tuple[int, int]:
    """The first and last node index of the subtree under ``x`` (inclusive)."""
    half = (1 << _level(x)) - 1
    return x - half, x + half


def lowest_common_ancestor(leaf_a: int, leaf_b: int) -> int:
    """The node index of the lowest common ancestor of two distinct leaves.

    For a joiner this is where the committer's Welcome ``path_secret``
    belongs (§12.4.3.1).
    """
    if leaf_a == leaf_b:
        raise MlsError("a leaf has no common ancestor with itself")
    x, y = 2 * leaf_a, 2 * leaf_b
    k = 0
    while x != y:
        x >>= 1
        y >>= 1
        k += 1
    return (x << k) + (1 << (k - 1)) - 1


def sign_leaf_node(
    crypto: CryptoProvider,
    leaf: LeafNode,
    signature_secret: bytes,
    group_id: bytes | None = None,
    leaf_index: int | None = None,
) -> LeafNode:
    """``leaf`` with its signature set: ``SignWithLabel(., "LeafNodeTBS", LeafNodeTBS)``.

    ``group_id`` and ``leaf_index`` are required for update and commit leaves
    and refused for key_package leaves (see ``LeafNode.tbs``).
    """
    try:
        tbs = leaf.tbs(group_id, leaf_index)
    except ValueError as exc:
        raise MlsError(f"cannot sign this leaf node: {exc}") from None
    signature = sign_with_label(crypto, signature_secret, _LEAF_NODE_TBS_LABEL, tbs)
    return LeafNode(
        leaf.encryption_key,
        leaf.signature_key,
        leaf.credential,
        leaf.capabilities,
        leaf.leaf_node_source,
        leaf.lifetime,
        leaf.parent_hash,
        leaf.extensions,
        signature,
    )


class _Index:
    """Multisets over the tree that the uniqueness and compatibility checks need.

    ``enc``: HPKE public keys of every node; ``sig``: signature keys of the
    leaves; ``ctype``: credential types in use; ``ccaps``: the distinct
    ``capabilities.credentials`` lists of the leaves. Counts, so a removal is
    exact even in a tree that (invalidly) repeats a key.
    """

    __slots__ = ("enc", "sig", "ctype", "ccaps")

    def __init__(self) -> None:
        self.enc: dict[bytes, int] = {}
        self.sig: dict[bytes, int] = {}
        self.ctype: dict[int, int] = {}
        self.ccaps: dict[tuple[int, ...], int] = {}

    def copy(self) -> _Index:
        other = _Index()
        other.enc = self.enc.copy()
        other.sig = self.sig.copy()
        other.ctype = self.ctype.copy()
        other.ccaps = self.ccaps.copy()
        return other

    @staticmethod
    def _inc(d: dict[_K, int], key: _K) -> None:
        d[key] = d.get(key, 0) + 1

    @staticmethod
    def _dec(d: dict[_K, int], key: _K) -> None:
        n = d[key] - 1
        if n:
            d[key] = n
        else:
            del d[key]

    def add(self, node: Node) -> None:
        self._inc(self.enc, node.encryption_key)
        if type(node) is LeafNode:
            self._inc(self.sig, node.signature_key)
            self._inc(self.ctype, node.credential.credential_type)
            self._inc(self.ccaps, node.capabilities.credentials)

    def remove(self, node: Node) -> None:
        self._dec(self.enc, node.encryption_key)
        if type(node) is LeafNode:
            self._dec(self.sig, node.signature_key)
            self._dec(self.ctype, node.credential.credential_type)
            self._dec(self.ccaps, node.capabilities.credentials)


def _node_encoding(node: Node) -> bytes:
    return encode(node)


def _leaf_content(leaf: LeafNode, enc: bytes) -> bytes:
    """The LeafNodeTBS prefix of a leaf's encoding: everything but ``opaque signature<V>``."""
    n = len(leaf.signature)
    return enc[: len(enc) - n - len(varint(n))]


class RatchetTree:
    """The public ratchet tree, array representation, leaf width a power of two.

    Build one with :meth:`decode`, :meth:`from_struct` or :meth:`from_nodes`
    (or :meth:`create` for a one-member tree). Mutators check their arguments
    first and change nothing when they raise.
    """

    __slots__ = ("_nodes", "_enc", "_hash", "_n_leaves", "_index", "_index_owned", "_free_from")

    def __init__(self, nodes: list[Node | None], encodings: list[bytes | None] | None = None) -> None:
        """Internal: ``nodes`` must already have full width (use the class methods)."""
        self._nodes = nodes
        self._n_leaves = (len(nodes) >> 1) + 1
        self._enc: list[bytes | None] = encodings if encodings is not None else [None] * len(nodes)
        self._hash: list[bytes | None] = [None] * len(nodes)
        self._index: _Index | None = None
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
            raise MlsError("a ratchet tree needs at least one non-blank node")
        for i, n in enumerate(items):
            if n is None:
                continue
            if i & 1:
                if type(n) is not ParentNode:
                    raise MlsError(f"node {i} is a parent position but holds {type(n).__name__}")
            elif type(n) is not LeafNode:
                raise MlsError(f"node {i} is a leaf position but holds {type(n).__name__}")
        return cls._padded(items, None)

    @classmethod
    def _padded(cls, items: list[Node | None], encodings: list[bytes | None] | None) -> RatchetTree:
        n_leaves = 1
        while 2 * (n_leaves - 1) + 1 < len(items):
            n_leaves <<= 1
        if n_leaves > MAX_LEAF_WIDTH:
            raise MlsError(f"a tree of {n_leaves} leaves exceeds the limit of {MAX_LEAF_WIDTH}")
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
        trailing blank node, or a node of the wrong kind for its position.
        The wire bytes of each node are kept as its cached encoding.
        """
        return decode_with(cls._read, data)

    @classmethod
    def _read(cls, r: Reader) -> RatchetTree:
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
                    raise MlsDecodeError(f"invalid optional presence byte {flag}")
                if pos + 1 >= stop:
                    raise MlsDecodeError("truncated input")
                t = data[pos + 1]
                start = r.pos = pos + 2
                odd = len(nodes) & 1
                node: Node
                if t == 1:
                    if odd:
                        raise MlsDecodeError(f"node {len(nodes)} is a parent position but holds a leaf node")
                    node = leaf_read(r)
                elif t == 2:
                    if not odd:
                        raise MlsDecodeError(f"node {len(nodes)} is a leaf position but holds a parent node")
                    node = parent_read(r)
                else:
                    raise MlsDecodeError(f"unknown node type {t}")
                pos = r.pos
                append_node(node)
                append_enc(data[start:pos])
            r.pos = pos
        finally:
            r.end = saved_end
        if not nodes:
            raise MlsDecodeError("empty ratchet tree")
        if nodes[-1] is None:
            raise MlsDecodeError("ratchet tree ends with a blank node")
        try:
            return cls._padded(nodes, encs)
        except MlsError as exc:
            raise MlsDecodeError(str(exc)) from None

    def to_struct(self) -> tree_nodes.RatchetTree:
        """The ratchet_tree extension payload (trailing blank nodes left off)."""
        return tree_nodes.RatchetTree.from_nodes(self._nodes)

    def encode(self) -> bytes:
        """``optional<Node> ratchet_tree<V>``, trailing blanks left off (cached node encodings)."""
        nodes = self._nodes
        last = len(nodes) - 1
        while last >= 0 and nodes[last] is None:
            last -= 1
        parts: list[bytes] = []
        append = parts.append
        for x in range(last + 1):
            node = nodes[x]
            if node is None:
                append(b"\x00")
            else:
                append(b"\x01\x02" if x & 1 else b"\x01\x01")
                append(self._encoding(x))
        body = b"".join(parts)
        return varint(len(body)) + body

    def copy(self) -> RatchetTree:
        """An independent tree sharing nodes, encodings and cached hashes (O(n) list copies)."""
        other = RatchetTree.__new__(RatchetTree)
        other._nodes = self._nodes[:]
        other._enc = self._enc[:]
        other._hash = self._hash[:]
        other._n_leaves = self._n_leaves
        other._free_from = self._free_from
        # The key index is built once on the source (a live tree is copied for
        # every staged commit) and copied on write: whichever tree changes first.
        other._index = self._keys()
        other._index_owned = False
        self._index_owned = False
        return other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RatchetTree) and self._nodes == other._nodes

    # Defining __eq__ without __hash__ makes instances unhashable (they are mutable).

    def __repr__(self) -> str:
        return f"RatchetTree(n_leaves={self._n_leaves}, members={sum(1 for _ in self.members())})"

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

    def node(self, x: int) -> Node | None:
        """Node ``x`` (``None`` when blank); ``MlsError`` outside the tree."""
        if not 0 <= x < len(self._nodes):
            raise MlsError(f"node {x} is outside a tree of {len(self._nodes)} nodes")
        return self._nodes[x]

    def leaf(self, leaf_index: int) -> LeafNode | None:
        """The leaf at ``leaf_index`` (``None`` when blank); ``MlsError`` outside the tree."""
        if not 0 <= leaf_index < self._n_leaves:
            raise MlsError(f"leaf {leaf_index} is outside a tree of {self._n_leaves} leaves")
        return self._leaf_at(leaf_index)

    def _leaf_at(self, leaf_index: int) -> LeafNode | None:
        # Even array positions hold leaves only (checked where trees are built).
        return cast("LeafNode | None", self._nodes[2 * leaf_index])

    def members(self) -> Iterator[tuple[int, LeafNode]]:
        """``(leaf_index, leaf)`` of every non-blank leaf, ascending."""
        nodes = self._nodes
        for x in range(0, len(nodes), 2):
            node = nodes[x]
            if node is not None:
                yield x >> 1, cast(LeafNode, node)

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

    def find_leaf(self, predicate: Callable[[LeafNode], bool]) -> int | None:
        """The index of the first leaf for which ``predicate`` holds, or ``None``."""
        for i, leaf in self.members():
            if predicate(leaf):
                return i
        return None

    def direct_path(self, x: int) -> list[int]:
        """The ancestors of node ``x``, nearest first, root last (empty for the root)."""
        self.node(x)
        root = self._n_leaves - 1
        path: list[int] = []
        while x != root:
            x = _parent(x)
            path.append(x)
        return path

    def copath(self, x: int) -> list[int]:
        """The sibling of ``x`` and of each node on its direct path except the root."""
        out: list[int] = []
        for p in self.direct_path(x):
            k = _level(p)
            left = p ^ (1 << (k - 1))
            out.append(p ^ (3 << (k - 1)) if x == left else left)
            x = p
        return out

    def resolution(self, x: int) -> list[int]:
        """The resolution of node ``x`` (§4.1.1), as node indices.

        A non-blank node and then its unmerged leaves (in list order); for a
        blank parent the resolutions of its left then right child; nothing
        for a blank leaf.
        """
        self.node(x)
        out: list[int] = []
        self._resolve(x, out)
        return out

    def _resolve(self, x: int, out: list[int]) -> None:
        node = self._nodes[x]
        if node is not None:
            out.append(x)
            if x & 1:
                out.extend([2 * leaf for leaf in cast(ParentNode, node).unmerged_leaves])
            return
        if not x & 1:
            return
        k = _level(x)
        self._resolve(x ^ (1 << (k - 1)), out)
        self._resolve(x ^ (3 << (k - 1)), out)

    def _nonempty(self, x: int) -> bool:
        """Whether the resolution of ``x`` is non-empty: some node under it is non-blank."""
        lo, hi = _span(x)
        nodes = self._nodes
        if lo == hi:
            return nodes[lo] is not None
        return any(nodes[lo : hi + 1])

    def filtered_direct_path(self, leaf_index: int) -> list[int]:
        """The leaf's direct path without the nodes whose copath child has an empty resolution (§4.1.2)."""
        self.leaf(leaf_index)
        return [p for p, _ in self._filtered_path_pairs(leaf_index)]

    def filtered_direct_path_with_copath(self, leaf_index: int) -> list[tuple[int, int]]:
        """``(node, copath child)`` for each node of the filtered direct path, nearest first.

        The copath child is the child of the node that is not on the leaf's
        direct path: the subtree a path secret for that node is encrypted to.
        """
        self.leaf(leaf_index)
        return self._filtered_path_pairs(leaf_index)

    def _filtered_path_pairs(self, leaf_index: int) -> list[tuple[int, int]]:
        root = self._n_leaves - 1
        x = 2 * leaf_index
        out: list[tuple[int, int]] = []
        while x != root:
            p = _parent(x)
            k = _level(p)
            left = p ^ (1 << (k - 1))
            s = p ^ (3 << (k - 1)) if x == left else left
            if self._nonempty(s):
                out.append((p, s))
            x = p
        return out

    # ------------------------------------------------------------------ hashes

    def _encoding(self, x: int) -> bytes:
        enc = self._enc[x]
        if enc is None:
            node = self._nodes[x]
            assert node is not None
            enc = _node_encoding(node)
            self._enc[x] = enc
        return enc

    def tree_hash(self, crypto: CryptoProvider) -> bytes:
        """The tree hash of the root (§7.8), from cached node hashes where still valid."""
        return self._th(crypto, self._n_leaves - 1)

    def node_tree_hash(self, crypto: CryptoProvider, x: int) -> bytes:
        """The tree hash of the subtree under node ``x``."""
        self.node(x)
        return self._th(crypto, x)

    def _th(self, crypto: CryptoProvider, x: int) -> bytes:
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
                h = crypto.hash(_LEAF_BLANK.pack(1, x >> 1, 0))
            else:
                enc = self._enc[x]
                if enc is None:
                    enc = self._encoding(x)
                h = crypto.hash(_LEAF_BLANK.pack(1, x >> 1, 1) + enc)
        else:
            k = _level(x)
            lx = x ^ (1 << (k - 1))
            rx = x ^ (3 << (k - 1))
            left = hashes[lx] or self._th(crypto, lx)
            right = hashes[rx] or self._th(crypto, rx)
            # uint8 node_type = parent; optional<ParentNode>; opaque left_hash<V>; opaque right_hash<V>
            body = b"\x02\x01" + self._encoding(x) if node is not None else b"\x02\x00"
            if len(left) < 64 and len(right) < 64:
                h = crypto.hash(body + bytes((len(left),)) + left + bytes((len(right),)) + right)
            else:
                h = crypto.hash(body + opaque(left) + opaque(right))
        hashes[x] = h
        return h

    def _th_without(self, crypto: CryptoProvider, x: int, removed: frozenset[int]) -> bytes:
        """Tree hash of ``x`` with the leaves ``removed`` (node indices) blanked and
        taken out of every unmerged_leaves list (the "original" tree of §7.9)."""
        lo, hi = _span(x)
        if not any(lo <= r <= hi for r in removed):
            return self._th(crypto, x)
        if not x & 1:  # one of the removed leaves: hash it as blank
            return crypto.hash(b"\x01" + _U32.pack(x >> 1) + b"\x00")
        node = self._nodes[x]
        k = _level(x)
        left = self._th_without(crypto, x ^ (1 << (k - 1)), removed)
        right = self._th_without(crypto, x ^ (3 << (k - 1)), removed)
        if node is None:
            body = b"\x02\x00"
        else:
            assert type(node) is ParentNode
            kept = tuple(leaf for leaf in node.unmerged_leaves if 2 * leaf not in removed)
            enc = self._encoding(x) if len(kept) == len(node.unmerged_leaves) else encode(
                ParentNode(node.encryption_key, node.parent_hash, kept)
            )
            body = b"\x02\x01" + enc
        return crypto.hash(body + opaque(left) + opaque(right))

    def parent_hash_of(self, crypto: CryptoProvider, p: int, sibling: int) -> bytes:
        """The parent hash of non-blank parent ``p`` with copath child ``sibling`` (§7.9).

        ``original_sibling_tree_hash`` is the sibling's tree hash with ``p``'s
        unmerged leaves blanked (no recomputation when none is under it).
        """
        node = self._nodes[p]
        if type(node) is not ParentNode:
            raise MlsError(f"node {p} is not a non-blank parent node")
        lo, hi = _span(sibling)
        removed = frozenset(2 * leaf for leaf in node.unmerged_leaves if lo <= 2 * leaf <= hi)
        th = self._th_without(crypto, sibling, removed) if removed else self._th(crypto, sibling)
        # ParentHashInput: encryption_key<V>, parent_hash<V>, original_sibling_tree_hash<V>
        return crypto.hash(opaque(node.encryption_key) + opaque(node.parent_hash) + opaque(th))

    # ------------------------------------------------------------------ mutation

    def _own_index(self) -> _Index | None:
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
        hashes = self._hash
        hashes[x] = None
        root = self._n_leaves - 1
        while x != root:
            x = _parent(x)
            if hashes[x] is None:
                break  # dirty nodes' ancestors are already dirty
            hashes[x] = None

    def _blank_direct_path(self, leaf_index: int) -> None:
        root = self._n_leaves - 1
        x = 2 * leaf_index
        while x != root:
            x = _parent(x)
            if self._nodes[x] is not None:
                self._set(x, None)

    def _extend(self) -> None:
        """Double the leaf width: the old tree becomes the left subtree of a new blank root."""
        if self._n_leaves >= MAX_LEAF_WIDTH:
            raise MlsError(f"the tree cannot grow beyond {MAX_LEAF_WIDTH} leaves")
        extra = len(self._nodes) + 1
        self._nodes.extend([None] * extra)
        self._enc.extend([None] * extra)
        self._hash.extend([None] * extra)
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
            del self._hash[half - 1 :]
            self._n_leaves >>= 1

    def ensure_leaf(self, leaf_index: int) -> None:
        """Extend the tree until ``leaf_index`` lies inside it (an external joiner's new leaf)."""
        if leaf_index < 0 or leaf_index >= MAX_LEAF_WIDTH:
            raise MlsError(f"leaf index {leaf_index} is out of range")
        while leaf_index >= self._n_leaves:
            self._extend()

    def add_leaf(self, leaf: LeafNode) -> int:
        """Add a member (§12.1.1) and return its leaf index.

        The leftmost blank leaf is used, or the tree is extended to the right.
        The new leaf index is appended to the unmerged_leaves of every
        non-blank parent on its direct path. The leaf is not validated here
        (see :meth:`verify_leaf`).
        """
        if type(leaf) is not LeafNode:
            raise MlsError(f"add_leaf needs a LeafNode, not {type(leaf).__name__}")
        index = self.free_leaf_index()
        self.ensure_leaf(index)
        self._set(2 * index, leaf)
        root = self._n_leaves - 1
        x = 2 * index
        while x != root:
            x = _parent(x)
            p = self._nodes[x]
            if p is not None:
                assert type(p) is ParentNode
                self._set(x, ParentNode(p.encryption_key, p.parent_hash, p.unmerged_leaves + (index,)))
        return index

    def update_leaf(self, leaf_index: int, leaf: LeafNode) -> None:
        """Replace a member's leaf and blank its direct path (§12.1.2, and UpdatePath leaves)."""
        if type(leaf) is not LeafNode:
            raise MlsError(f"update_leaf needs a LeafNode, not {type(leaf).__name__}")
        if self.leaf(leaf_index) is None:
            raise MlsError(f"leaf {leaf_index} is blank: there is no member to update")
        self._set(2 * leaf_index, leaf)
        self._blank_direct_path(leaf_index)

    def remove_leaf(self, leaf_index: int) -> None:
        """Remove a member (§12.1.3): blank the leaf and its direct path, then truncate."""
        if self.leaf(leaf_index) is None:
            raise MlsError(f"leaf {leaf_index} is blank: there is no member to remove")
        self._set(2 * leaf_index, None)
        self._blank_direct_path(leaf_index)
        self._truncate()

    def set_leaf(self, leaf_index: int, leaf: LeafNode) -> None:
        """Put ``leaf`` at ``leaf_index`` without touching any other node (TreeKEM's use)."""
        if type(leaf) is not LeafNode:
            raise MlsError(f"set_leaf needs a LeafNode, not {type(leaf).__name__}")
        self.leaf(leaf_index)
        self._set(2 * leaf_index, leaf)

    def merge_path(
        self, crypto: CryptoProvider, leaf_index: int, public_keys: Sequence[bytes]
    ) -> bytes:
        """Merge the public keys of an UpdatePath (§7.5) and return the leaf's parent hash.

        Blanks the direct path of ``leaf_index``, sets each node of its
        filtered direct path (as computed before this call) to a parent node
        with the given key, empty unmerged_leaves and the parent hash of the
        node above it, computed from the root down. The returned value is the
        parent hash the new leaf must carry (empty when the path is empty).
        The leaf itself is not changed. ``MlsError`` (tree unchanged) when the
        number of keys is not the filtered direct path's length.
        """
        pairs = self._filtered_path_pairs(leaf_index)
        if len(public_keys) != len(pairs):
            raise MlsError(
                f"the UpdatePath has {len(public_keys)} nodes but the sender's filtered direct path has {len(pairs)}"
            )
        self._blank_direct_path(leaf_index)
        parent_hash = b""
        for (p, s), key in zip(reversed(pairs), reversed(public_keys)):
            self._set(p, ParentNode(key, parent_hash, ()))
            parent_hash = self.parent_hash_of(crypto, p, s)
        return parent_hash

    # ------------------------------------------------------------------ key index

    def _keys(self) -> _Index:
        idx = self._index
        if idx is None:
            idx = _Index()
            for node in self._nodes:
                if node is not None:
                    idx.add(node)
            self._index = idx
            self._index_owned = True
        return idx

    def has_encryption_key(self, key: bytes) -> bool:
        """Whether any node of the tree (leaf or parent) has this HPKE public key."""
        return key in self._keys().enc

    def has_signature_key(self, key: bytes, *, ignore_leaf: int | None = None) -> bool:
        """Whether a member other than ``ignore_leaf`` has this signature key."""
        n = self._keys().sig.get(key, 0)
        if n and ignore_leaf is not None:
            leaf = self._leaf_at(ignore_leaf) if 0 <= ignore_leaf < self._n_leaves else None
            if leaf is not None and leaf.signature_key == key:
                n -= 1
        return n > 0

    # ------------------------------------------------------------------ validation

    def verify_leaf(
        self,
        crypto: CryptoProvider,
        leaf: LeafNode,
        leaf_index: int | None,
        group_context: GroupContext,
        *,
        source: LeafNodeSource,
        now_s: int | None = None,
        max_lifetime_s: int | None = None,
    ) -> None:
        """Validate a leaf that is about to enter this tree (§7.3).

        ``source`` is where it comes from: ``key_package`` (an Add; the
        caller checks the KeyPackage itself, §10.1), ``update`` (an Update
        proposal by ``leaf_index``) or ``commit`` (the leaf of an UpdatePath
        by ``leaf_index``). Checked: the leaf_node_source; the signature (over
        group_id and ``leaf_index`` for update and commit leaves); support for
        the group's version, cipher suite, required_capabilities and every
        GroupContext extension; its own extensions listed in its
        capabilities, no type twice; credential type compatibility with every
        other member both ways; an X25519-sized encryption key that no node
        of the tree has (so an Update or commit leaf must bring a new one); a
        signature key no other member has; for key_package leaves, a total
        lifetime (``not_after - not_before``) of at most ``max_lifetime_s``
        (§7.2; ``None``, the default, sets no maximum) and, with ``now_s``, a
        lifetime that covers it.
        Credential validation by the application's authentication service
        (§5.3.1) is the caller's.
        """
        if type(leaf) is not LeafNode:
            raise MlsError(f"expected a LeafNode, not {type(leaf).__name__}")
        replaced: int | None = None
        if source != _LEAF.KEY_PACKAGE:
            if leaf_index is None or not 0 <= leaf_index < MAX_LEAF_WIDTH:
                raise MlsError("update and commit leaves are verified at their (valid) leaf index")
            replaced = leaf_index
        self.check_leaf_content(
            crypto, leaf, leaf_index, group_context, source=source, now_s=now_s, max_lifetime_s=max_lifetime_s
        )
        self.check_leaf_in_tree(leaf, replaces=replaced)

    def check_leaf_content(
        self,
        crypto: CryptoProvider,
        leaf: LeafNode,
        leaf_index: int | None,
        gc: GroupContext,
        *,
        source: LeafNodeSource,
        now_s: int | None = None,
        max_lifetime_s: int | None = None,
        enc: bytes | None = None,
        required: RequiredCapabilities | None | Literal[False] = False,
    ) -> None:
        """The part of :meth:`verify_leaf` that looks at the leaf and the group context only.

        Source, key size, capabilities (version, suite, own credential type,
        own extensions, GroupContext extensions, required_capabilities),
        lifetime (its span with ``max_lifetime_s``, the current time with
        ``now_s``) and, last, the signature. ``enc`` (the
        leaf's encoding) and ``required`` (the parsed required_capabilities,
        or ``None``) are internal shortcuts for :meth:`validate`.
        """
        where = f"leaf {leaf_index}" if leaf_index is not None else "leaf node"
        if source != _LEAF.KEY_PACKAGE and (leaf_index is None or not 0 <= leaf_index < MAX_LEAF_WIDTH):
            raise MlsError("update and commit leaves are verified at their (valid) leaf index")
        if leaf.leaf_node_source != source:
            raise MlsError(f"{where}: leaf_node_source is {leaf.leaf_node_source.name}, expected {source.name}")
        if len(leaf.encryption_key) != HPKE_PUBLIC_KEY_LEN:
            raise MlsError(f"{where}: the encryption key is not a {HPKE_PUBLIC_KEY_LEN}-byte X25519 key")
        caps = leaf.capabilities
        if gc.version not in caps.versions:
            raise MlsError(f"{where}: its capabilities do not list protocol version {gc.version}")
        if gc.cipher_suite not in caps.cipher_suites:
            raise MlsError(f"{where}: its capabilities do not list cipher suite {gc.cipher_suite}")
        if leaf.credential.credential_type not in caps.credentials:
            raise MlsError(f"{where}: its capabilities do not list its own credential type")
        if leaf.extensions:
            if not has_unique_types(leaf.extensions):
                raise MlsError(f"{where}: an extension type occurs twice")
            check_extensions_listed(leaf.extensions, caps, where)
        req = required_capabilities(gc.extensions) if required is False else required
        check_supports_group(leaf, gc.extensions, req, where)
        if source == _LEAF.KEY_PACKAGE:
            lt = leaf.lifetime
            # The span is checked with or without a clock: it is a property of the leaf alone.
            check_lifetime_span(lt, max_lifetime_s, where)
            assert lt is not None  # check_lifetime_span refuses a missing one
            if now_s is not None and not lt.not_before <= now_s <= lt.not_after:
                raise MlsError(
                    f"{where}: its lifetime {lt.not_before}..{lt.not_after} does not cover the current time {now_s}"
                )
        # The signature last: the cheapest checks refuse garbage first.
        tbs = _leaf_tbs(leaf, leaf_index, gc.group_id, source, enc)
        try:
            verify_with_label(crypto, leaf.signature_key, _LEAF_NODE_TBS_LABEL, tbs, leaf.signature)
        except CryptoError as exc:
            raise InvalidSignature(f"{where}: the leaf node signature does not verify ({exc})") from None

    def check_leaf_in_tree(self, leaf: LeafNode, *, replaces: int | None) -> None:
        """The part of :meth:`verify_leaf` that compares the leaf with the tree.

        Its encryption key must be new to the tree (every node, the replaced
        leaf included); its signature key must not be another member's; its
        credential type must be supported by every other member and it must
        support theirs. ``replaces`` is the leaf index it will replace (update
        and commit leaves), whose member does not count as "other".
        """
        replaced = replaces
        idx = self._keys()
        old = None
        if replaced is not None and replaced < self._n_leaves:
            old = self._leaf_at(replaced)
        where = f"leaf {replaced}" if replaced is not None else "new leaf"
        if leaf.encryption_key in idx.enc:
            raise MlsError(f"{where}: its encryption key is already used in the tree")
        n = idx.sig.get(leaf.signature_key, 0)
        if old is not None and old.signature_key == leaf.signature_key:
            n -= 1
        if n > 0:
            raise MlsError(f"{where}: its signature key is already used by another member")
        # Credential types: the other members' (the replaced leaf's excluded).
        ctype = leaf.credential.credential_type
        ccaps_own = leaf.capabilities.credentials
        old_ctype = old.credential.credential_type if old is not None else None
        old_ccaps = old.capabilities.credentials if old is not None else None
        for t, count in idx.ctype.items():
            if t == old_ctype:
                count -= 1
            if count > 0 and t not in ccaps_own:
                raise MlsError(f"{where}: does not support credential type {t} used by another member")
        for caps, count in idx.ccaps.items():
            if caps == old_ccaps:
                count -= 1
            if count > 0 and ctype not in caps:
                raise MlsError(f"{where}: its credential type {ctype} is not supported by every member")

    def check_leaf_signatures(self, crypto: CryptoProvider, group_id: bytes) -> None:
        """Verify every leaf's signature (group_id and leaf index for update/commit leaves)."""
        nodes = self._nodes
        for x in range(0, len(nodes), 2):
            leaf = nodes[x]
            if leaf is None:
                continue
            assert type(leaf) is LeafNode
            tbs = _leaf_content(leaf, self._encoding(x))
            if leaf.leaf_node_source != _LEAF.KEY_PACKAGE:
                tbs = tbs + opaque(group_id) + _U32.pack(x >> 1)
            try:
                verify_with_label(crypto, leaf.signature_key, _LEAF_NODE_TBS_LABEL, tbs, leaf.signature)
            except CryptoError as exc:
                raise InvalidSignature(f"leaf {x >> 1}: the leaf node signature does not verify ({exc})") from None

    def check_parent_hashes(self, crypto: CryptoProvider) -> None:
        """Every non-blank parent node is parent-hash valid (§7.9.2), "top down".

        For each non-blank parent P exactly one descendant D must have a
        parent hash valid with respect to P: D's parent_hash equals P's
        parent hash with copath child S, D is in the resolution of the other
        child C, and the rest of C's resolution is exactly P's unmerged leaves
        under C. Since every non-blank parent is checked, each one chains down
        to a leaf.
        """
        nodes = self._nodes
        resolutions: dict[int, list[int]] = {}

        def res(c: int) -> list[int]:
            r = resolutions.get(c)
            if r is None:
                r = []
                self._resolve(c, r)
                resolutions[c] = r
            return r

        for p in range(1, len(nodes), 2):
            node = nodes[p]
            if node is None:
                continue
            assert type(node) is ParentNode
            k = _level(p)
            left, right = p ^ (1 << (k - 1)), p ^ (3 << (k - 1))
            unmerged = {2 * leaf for leaf in node.unmerged_leaves}
            valid = 0
            for c, s in ((left, right), (right, left)):
                lo, hi = _span(c)
                under_c = {u for u in unmerged if lo <= u <= hi}
                rc = res(c)
                if len(rc) != len(under_c) + 1:
                    continue
                rest = [r for r in rc if r not in under_c]
                if len(rest) != 1:
                    continue
                d = nodes[rest[0]]
                assert d is not None  # a resolution holds non-blank nodes only
                ph = d.parent_hash
                if not ph:  # a key_package/update leaf, or the root's empty hash
                    continue
                if ph == self.parent_hash_of(crypto, p, s):
                    valid += 1
            if valid != 1:
                why = "no descendant links to it" if valid == 0 else "two descendants link to it"
                raise MlsError(f"parent node {p} is not parent-hash valid ({why})")

    def check_unmerged_leaves(self) -> None:
        """§12.4.3.1: every unmerged leaf is a non-blank leaf under its parent, listed once,
        and also listed by every non-blank node between it and that parent."""
        nodes = self._nodes
        for p in range(1, len(nodes), 2):
            node = nodes[p]
            if node is None:
                continue
            assert type(node) is ParentNode
            lo, hi = _span(p)
            seen: set[int] = set()
            for leaf in node.unmerged_leaves:
                x = 2 * leaf
                if not lo <= x <= hi:
                    raise MlsError(f"parent node {p}: unmerged leaf {leaf} is not in its subtree")
                if leaf in seen:
                    raise MlsError(f"parent node {p}: unmerged leaf {leaf} is listed twice")
                seen.add(leaf)
                if nodes[x] is None:
                    raise MlsError(f"parent node {p}: unmerged leaf {leaf} is blank")
                y = _parent(x)
                while y != p:
                    mid = cast("ParentNode | None", nodes[y])
                    if mid is not None and leaf not in mid.unmerged_leaves:
                        raise MlsError(
                            f"parent node {p}: unmerged leaf {leaf} is missing from node {y}'s unmerged leaves"
                        )
                    y = _parent(y)

    def validate(
        self,
        crypto: CryptoProvider,
        group_context: GroupContext,
        *,
        own_leaf: int | None = None,
        now_s: int | None = None,
        max_lifetime_s: int | None = None,
    ) -> None:
        """Full validation of a tree received on joining (§12.4.3.1, §7.3, §7.9.2).

        Checks, in order of cost: the tree hash equals
        ``group_context.tree_hash``; unmerged leaves are well formed; every
        encryption key (leaves and parents) and every signature key is
        unique; every credential type in use is supported by every member;
        every leaf supports the group's version, cipher suite,
        required_capabilities and GroupContext extensions and lists its own
        extension types; with ``now_s``, every key_package leaf's lifetime
        covers it (``None`` skips that: §7.3 only recommends the check
        for received leaves, and reading the clock is the caller's); with
        ``max_lifetime_s``, no key_package leaf's lifetime spans more (§7.2,
        checked with or without ``now_s``); every
        non-blank parent is parent-hash valid; every leaf signature verifies.
        ``own_leaf``, when given, must be a non-blank leaf. Raises
        ``MlsError`` / ``InvalidSignature`` naming the first failure.
        """
        gc = group_context
        if self.tree_hash(crypto) != gc.tree_hash:
            raise MlsError("the ratchet tree's hash does not match the GroupContext's tree_hash")
        if own_leaf is not None and (not 0 <= own_leaf < self._n_leaves or self._nodes[2 * own_leaf] is None):
            raise MlsError(f"our leaf {own_leaf} is not in the tree")
        self.check_unmerged_leaves()
        nodes = self._nodes
        for x in range(1, len(nodes), 2):
            p = nodes[x]
            if p is not None and len(p.encryption_key) != HPKE_PUBLIC_KEY_LEN:
                raise MlsError(f"parent node {x}: the encryption key is not a {HPKE_PUBLIC_KEY_LEN}-byte X25519 key")
        # A fresh index: counts of 2 or more are duplicates.
        self._index = None
        idx = self._keys()
        if any(count > 1 for count in idx.enc.values()):
            raise MlsError("an encryption key appears in more than one node of the tree")
        for count in idx.sig.values():
            if count > 1:
                raise MlsError("a signature key is used by more than one member")
        for caps in idx.ccaps:
            for t in idx.ctype:
                if t not in caps:
                    raise MlsError(f"credential type {t} is in use but not supported by every member")
        req = required_capabilities(gc.extensions)
        self.check_parent_hashes(crypto)
        if wants_prefetch(crypto):
            # Every leaf signature is verified below, one by one in order; a
            # provider with a per-call cost verifies them all in one batch now.
            signed = []
            for x in range(0, len(nodes), 2):
                member = cast("LeafNode | None", nodes[x])
                if member is not None:
                    tbs = _leaf_tbs(member, x >> 1, gc.group_id, member.leaf_node_source, self._encoding(x))
                    signed.append((member.signature_key, sign_content(_LEAF_NODE_TBS_LABEL, tbs), member.signature))
            prefetch_verify(crypto, signed)
        for x in range(0, len(nodes), 2):
            leaf = nodes[x]
            if leaf is None:
                continue
            assert type(leaf) is LeafNode
            self.check_leaf_content(
                crypto,
                leaf,
                x >> 1,
                gc,
                source=leaf.leaf_node_source,
                now_s=now_s,
                max_lifetime_s=max_lifetime_s,
                enc=self._encoding(x),
                required=req,
            )


def _leaf_tbs(leaf: LeafNode, leaf_index: int | None, group_id: bytes, source: LeafNodeSource, enc: bytes | None) -> bytes:
    """The LeafNodeTBS of ``leaf`` (§7.2): group id and leaf index only for update
    and commit leaves; ``enc`` is the leaf's encoding when at hand."""
    if enc is None:
        return leaf.tbs(None, None) if source == _LEAF.KEY_PACKAGE else leaf.tbs(group_id, leaf_index)
    tbs = _leaf_content(leaf, enc)
    if source != _LEAF.KEY_PACKAGE:
        tbs = tbs + opaque(group_id) + _U32.pack(leaf_index)
    return tbs


def required_capabilities(extensions: Sequence[Extension]) -> RequiredCapabilities | None:
    """The parsed required_capabilities extension among GroupContext ``extensions``, if any."""
    for ext in extensions:
        if ext.extension_type == ExtensionType.REQUIRED_CAPABILITIES:
            try:
                return ext.parse(RequiredCapabilities)
            except MlsDecodeError as exc:
                raise MlsError(f"malformed required_capabilities extension: {exc}") from None
    return None


def check_extensions_listed(extensions: Sequence[Extension], caps: Capabilities, where: str = "leaf node") -> None:
    """§7.2/§7.3: every non-default extension type a leaf carries is listed in its
    capabilities (default types are not listed: §7.2 says they MUST NOT be)."""
    for ext in extensions:
        t = ext.extension_type
        if t not in DEFAULT_EXTENSION_TYPES and t not in caps.extensions:
            raise MlsError(f"{where}: extension type {t} is not listed in its capabilities")


def check_lifetime_span(lifetime: Lifetime | None, max_lifetime_s: int | None, where: str = "leaf node") -> None:
    """RFC 9420 §7.2: the application's maximum total lifetime of a key_package
    leaf. ``MlsError`` when ``not_after - not_before`` exceeds ``max_lifetime_s``
    (``None``: no maximum, the engine's default, for peers and test vectors
    with very long lifetimes) or when the leaf has no lifetime at all."""
    if lifetime is None:
        raise MlsError(f"{where}: a key_package leaf node needs a lifetime")
    if max_lifetime_s is None:
        return
    span = lifetime.not_after - lifetime.not_before
    if span > max_lifetime_s:
        raise MlsError(
            f"{where}: its lifetime {lifetime.not_before}..{lifetime.not_after} spans {span} s, "
            f"more than the maximum of {max_lifetime_s} s this application accepts (RFC 9420 §7.2)"
        )


def check_supports_group(
    leaf: LeafNode, extensions: Sequence[Extension], required: RequiredCapabilities | None, where: str = "leaf node"
) -> None:
    """§7.3, §12.1.7: the leaf supports every non-default extension type of the
    GroupContext ``extensions`` and every type ``required`` (their parsed
    required_capabilities) names."""
    listed = leaf.capabilities.extensions
    for ext in extensions:
        t = ext.extension_type
        if t not in DEFAULT_EXTENSION_TYPES and t not in listed:
            raise MlsError(f"{where}: does not support the group's extension type {t}")
    if required is not None:
        _check_required(where, leaf, required)


def _check_required(where: str, leaf: LeafNode, req: RequiredCapabilities) -> None:
    caps = leaf.capabilities
    for t in req.extension_types:
        if t not in DEFAULT_EXTENSION_TYPES and t not in caps.extensions:
            raise MlsError(f"{where}: does not support required extension type {t}")
    for t in req.proposal_types:
        if t not in DEFAULT_PROPOSAL_TYPES and t not in caps.proposals:
            raise MlsError(f"{where}: does not support required proposal type {t}")
    for t in req.credential_types:
        if t not in caps.credentials:
            raise MlsError(f"{where}: does not support required credential type {t}")
