"""Tree math: the RFC's full trees and left-balanced trees of any size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ping_core.errors import MlsReason
from ping_core.mls.tree import treemath as tm
from reasons import raises_reason


def _check_tree(n: int) -> None:
    w = tm.node_width(n)
    r = tm.root(n)
    # An in-order walk from the root through left/right visits every node once, in order.
    order: list[int] = []
    stack: list[int] = []
    x: int | None = r
    while stack or x is not None:
        while x is not None:
            stack.append(x)
            x = tm.left(x) if not tm.is_leaf(x) else None
        x = stack.pop()
        order.append(x)
        x = tm.right(x, n) if not tm.is_leaf(x) else None
    assert order == list(range(w))
    for x in range(w):
        if x != r:
            p = tm.parent(x, n)
            assert x in (tm.left(p), tm.right(p, n))
            s = tm.sibling(x, n)
            assert {x, s} == {tm.left(p), tm.right(p, n)}
            path = tm.direct_path(x, n)
            assert path[0] == p and path[-1] == r
            assert len(tm.copath(x, n)) == len(path)
        else:
            with raises_reason(MlsReason.INVALID_ARGUMENT):
                tm.parent(x, n)
            assert tm.direct_path(x, n) == [] and tm.copath(x, n) == []
    assert tm.leaf_width(w) == n


@pytest.mark.parametrize("n", list(range(1, 70)))
def test_any_leaf_count(n: int) -> None:
    _check_tree(n)


def test_full_tree_matches_rfc_formulas() -> None:
    for k in range(8):
        n = 1 << k
        for x in range(tm.node_width(n)):
            if x == tm.root(n):
                continue
            lvl = tm.level(x)
            b = (x >> (lvl + 1)) & 1
            assert tm.parent(x, n) == (x | (1 << lvl)) ^ (b << (lvl + 1))


def test_leaf_and_bounds_errors() -> None:
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        tm.left(4)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        tm.right(0)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        tm.parent(7, 4)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        tm.root(0)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        tm.node_to_leaf(3)
    assert tm.node_to_leaf(tm.leaf_to_node(9)) == 9


@given(st.integers(0, 1 << 12), st.integers(0, 1 << 12))
def test_common_ancestor(x: int, y: int) -> None:
    a = tm.common_ancestor(x, y)
    assert tm.is_in_subtree(a, x) and tm.is_in_subtree(a, y)
    if not tm.is_leaf(a) and x != a and y != a:
        # x and y lie on different sides of a: a is the lowest such node.
        assert (x < a) != (y < a)


@given(st.integers(0, 1 << 16))
def test_subtree_leaves(x: int) -> None:
    first, end = tm.subtree_leaves(x)
    assert end - first == 1 << tm.level(x)
    assert all(tm.is_in_subtree(x, 2 * leaf) for leaf in (first, end - 1))
    assert not tm.is_in_subtree(x, 2 * end)


@given(st.integers(1, 1 << 20), st.data())
def test_large_trees_are_consistent(n: int, data: st.DataObject) -> None:
    leaf = data.draw(st.integers(0, n - 1))
    x = tm.leaf_to_node(leaf)
    path = tm.direct_path(x, n)
    cop = tm.copath(x, n)
    # Each copath node is the sibling of the node below the matching path node.
    below = [x, *path[:-1]]
    assert [tm.parent(c, n) for c in cop] == path
    assert all(tm.sibling(b, n) == c for b, c in zip(below, cop))
    assert len(path) <= tm.log2(tm.node_width(n)) + 1


def test_common_ancestor_of_two_leaves_is_where_a_welcome_path_secret_belongs() -> None:
    # RFC 9420 §12.4.3.1: the lowest common ancestor of the joiner's and the
    # committer's leaf (leaf a is node 2a).
    assert tm.common_ancestor(0, 2) == 1
    assert tm.common_ancestor(0, 6) == 3
    assert tm.common_ancestor(10, 4) == 7
    assert tm.common_ancestor(8, 10) == 9
    assert tm.common_ancestor(4, 4) == 4


@given(st.integers(0, 12), st.data())
def test_full_tree_helpers_agree_with_the_checked_functions(k: int, data: st.DataObject) -> None:
    # The ratchet tree's hot loops use children/full_parent/span on full trees.
    n = 1 << k
    x = data.draw(st.integers(0, tm.node_width(n) - 1))
    if not tm.is_leaf(x):
        assert tm.children(x) == (tm.left(x), tm.right(x, n))
    if x != tm.root(n):
        assert tm.full_parent(x) == tm.parent(x, n)
    lo, hi = tm.span(x)
    first, end = tm.subtree_leaves(x)
    assert (lo, hi) == (2 * first, 2 * end - 2)
    assert tm.is_in_subtree(x, lo) and tm.is_in_subtree(x, hi)
    assert not tm.is_in_subtree(x, hi + 1) and (lo == 0 or not tm.is_in_subtree(x, lo - 1))
