"""The one tree math of the engine: array-represented trees (RFC 9420 §4.1, Appendix C).

Nodes of a tree with ``n`` leaves are numbered ``0 .. node_width(n) - 1``;
leaves are the even indices (leaf ``L`` is node ``2L``), parents the odd ones,
and a node's level is its number of trailing one bits.

RFC 9420 trees always have a power-of-two leaf count. These functions also
accept any ``n >= 1`` and then describe the *left-balanced* tree of ``n``
leaves (a child that would lie beyond the last node is replaced by its
leftmost descendant that exists, and a parent beyond the last node by the next
ancestor that exists); for powers of two this is exactly the RFC's full tree.

Everything is integer bit arithmetic, O(1) per call except the path
functions, which are O(log n). Invalid arguments (a leaf's child, the root's
parent, a node outside the tree) raise ``MlsError``.

The ratchet tree always has a power-of-two leaf width, and its hot loops
(hashing, resolutions, paths) use the unchecked full-tree helpers
:func:`children`, :func:`full_parent` and :func:`span`: the caller guarantees
a parent node, or a node below the root.
"""

from __future__ import annotations

from ping_core.errors import MlsError, MlsReason

__all__ = [
    "MAX_LEAF_WIDTH",
    "log2",
    "level",
    "is_leaf",
    "node_width",
    "leaf_width",
    "root",
    "left",
    "right",
    "parent",
    "sibling",
    "direct_path",
    "copath",
    "leaf_to_node",
    "node_to_leaf",
    "common_ancestor",
    "subtree_leaves",
    "is_in_subtree",
    "children",
    "full_parent",
    "span",
]

# The largest tree this engine accepts: 2^20 leaves (a million members).
MAX_LEAF_WIDTH = 1 << 20


def log2(x: int) -> int:
    """floor(log2(x)) for x >= 1; 0 for x == 0 (as in RFC 9420 Appendix C)."""
    return x.bit_length() - 1 if x > 0 else 0


def level(x: int) -> int:
    """The level of node ``x``: 0 for leaves, the count of trailing one bits."""
    # (~x & (x + 1)) isolates the lowest zero bit of x.
    return (~x & (x + 1)).bit_length() - 1


def is_leaf(x: int) -> bool:
    return x & 1 == 0


def node_width(n: int) -> int:
    """The number of nodes of a tree with ``n`` leaves."""
    return 0 if n == 0 else 2 * (n - 1) + 1


def leaf_width(w: int) -> int:
    """The number of leaves of a tree with ``w`` nodes (``w`` odd, or 0)."""
    return 0 if w == 0 else (w >> 1) + 1


def _check_node(x: int, n: int) -> None:
    if n < 1:
        raise MlsError("a tree needs at least one leaf", reason=MlsReason.INVALID_ARGUMENT)
    if not 0 <= x < 2 * (n - 1) + 1:
        raise MlsError(f"node {x} is outside a tree of {n} leaves", reason=MlsReason.INVALID_ARGUMENT)


def root(n: int) -> int:
    """The root node of a tree with ``n >= 1`` leaves."""
    if n < 1:
        raise MlsError("a tree needs at least one leaf", reason=MlsReason.INVALID_ARGUMENT)
    w = 2 * (n - 1) + 1
    return (1 << (w.bit_length() - 1)) - 1


def left(x: int) -> int:
    """The left child of parent node ``x``."""
    k = level(x)
    if k == 0:
        raise MlsError(f"leaf node {x} has no children", reason=MlsReason.INVALID_ARGUMENT)
    return x ^ (1 << (k - 1))


def right(x: int, n: int | None = None) -> int:
    """The right child of parent node ``x``.

    Without ``n`` (or for a full tree) this is the RFC's ``right(x)``; with
    ``n`` leaves of a left-balanced tree, a child beyond the last node is
    replaced by its leftmost descendant inside the tree.
    """
    k = level(x)
    if k == 0:
        raise MlsError(f"leaf node {x} has no children", reason=MlsReason.INVALID_ARGUMENT)
    r = x ^ (3 << (k - 1))
    if n is not None:
        w = 2 * (n - 1) + 1
        while r >= w:
            r = left(r)
    return r


def _parent_step(x: int) -> int:
    k = level(x)
    b = (x >> (k + 1)) & 1
    return (x | (1 << k)) ^ (b << (k + 1))


def parent(x: int, n: int) -> int:
    """The parent of node ``x`` in a tree of ``n`` leaves; the root has none."""
    _check_node(x, n)
    if x == root(n):
        raise MlsError(f"root node {x} has no parent", reason=MlsReason.INVALID_ARGUMENT)
    w = 2 * (n - 1) + 1
    p = _parent_step(x)
    while p >= w:
        p = _parent_step(p)
    return p


def sibling(x: int, n: int) -> int:
    """The other child of ``x``'s parent."""
    p = parent(x, n)
    return right(p, n) if x < p else left(p)


def direct_path(x: int, n: int) -> list[int]:
    """The parents of ``x`` up to and including the root, nearest first (empty for the root)."""
    _check_node(x, n)
    r = root(n)
    w = 2 * (n - 1) + 1
    path: list[int] = []
    while x != r:
        x = _parent_step(x)
        while x >= w:
            x = _parent_step(x)
        path.append(x)
    return path


def copath(x: int, n: int) -> list[int]:
    """The siblings of ``x`` and of each node of its direct path but the root."""
    path = direct_path(x, n)
    if not path:
        return []
    return [sibling(y, n) for y in [x, *path[:-1]]]


def leaf_to_node(leaf: int) -> int:
    return 2 * leaf


def node_to_leaf(x: int) -> int:
    if x & 1:
        raise MlsError(f"node {x} is not a leaf", reason=MlsReason.INVALID_ARGUMENT)
    return x >> 1


def common_ancestor(x: int, y: int) -> int:
    """The lowest common ancestor of nodes ``x`` and ``y`` in the (full) tree.

    Computed directly from the bits: it is the node whose level is the
    length of the two indices' differing suffix. For two leaves ``2a`` and
    ``2b`` it is where the committer's Welcome ``path_secret`` for a joiner
    belongs (RFC 9420 §12.4.3.1); for one leaf with itself, that leaf.
    """
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and x >> ly == y >> ly:
        return y
    if ly <= lx and x >> lx == y >> lx:
        return x
    xn, yn, k = x, y, 0
    while xn != yn:
        xn >>= 1
        yn >>= 1
        k += 1
    return (xn << k) + (1 << (k - 1)) - 1


def subtree_leaves(x: int) -> tuple[int, int]:
    """The leaves under node ``x`` of a full tree as ``(first, end)``, leaf indices, end exclusive."""
    k = level(x)
    first_node = x - ((1 << k) - 1)
    return first_node >> 1, (first_node >> 1) + (1 << k)


def is_in_subtree(x: int, y: int) -> bool:
    """True when node ``y`` is ``x`` or a descendant of ``x``."""
    lo, hi = span(x)
    return lo <= y <= hi


def children(x: int) -> tuple[int, int]:
    """``(left, right)`` of parent node ``x`` in a full tree; unchecked (``x`` must be odd)."""
    k = (~x & (x + 1)).bit_length() - 1
    return x ^ (1 << (k - 1)), x ^ (3 << (k - 1))


def full_parent(x: int) -> int:
    """The parent of node ``x`` in a full tree; unchecked (the caller stops at the root)."""
    k = (~x & (x + 1)).bit_length() - 1
    return (x | (1 << k)) & ~(1 << (k + 1))


def span(x: int) -> tuple[int, int]:
    """The first and last node index (inclusive) of the subtree under node ``x``."""
    half = (1 << ((~x & (x + 1)).bit_length() - 1)) - 1
    return x - half, x + half
