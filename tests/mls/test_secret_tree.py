"""The secret tree: laziness, deletion, tolerance, records, and no change on failure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tree import treemath as tm
from ping_core.mls.crypto import default_provider
from ping_core.mls.primitives import derive_tree_secret, expand_with_label
from ping_core.mls.tree.secret_tree import APPLICATION, HANDSHAKE, RatchetConfig, SecretTree
from reasons import raises_reason

crypto = default_provider()
ROOT = bytes(range(32))


def reference_keys(n_leaves: int, leaf: int, kind: int, upto: int) -> list[tuple[bytes, bytes]]:
    """The whole tree derived eagerly, straight from RFC 9420 §9."""
    secrets = {tm.root(n_leaves): ROOT}
    todo = [tm.root(n_leaves)]
    while todo:
        x = todo.pop()
        if tm.is_leaf(x):
            continue
        s = secrets[x]
        secrets[tm.left(x)] = expand_with_label(crypto, s, b"tree", b"left", 32)
        secrets[tm.right(x, n_leaves)] = expand_with_label(crypto, s, b"tree", b"right", 32)
        todo += [tm.left(x), tm.right(x, n_leaves)]
    label = b"handshake" if kind == HANDSHAKE else b"application"
    s = expand_with_label(crypto, secrets[2 * leaf], label, b"", 32)
    out = []
    for j in range(upto + 1):
        out.append((derive_tree_secret(crypto, s, b"key", j, 16), derive_tree_secret(crypto, s, b"nonce", j, 12)))
        s = derive_tree_secret(crypto, s, b"secret", j, 32)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_matches_eager_derivation(n: int) -> None:
    tree = SecretTree(crypto, ROOT, n)
    for leaf in reversed(range(n)):
        for kind in (HANDSHAKE, APPLICATION):
            ref = reference_keys(n, leaf, kind, 3)
            got = [tree.consume(leaf, kind, g) for g in range(4)]
            assert [(k.key, k.nonce) for k in got] == ref


def test_send_side() -> None:
    tree = SecretTree(crypto, ROOT, 4)
    ref = reference_keys(4, 2, APPLICATION, 2)
    for g in range(3):
        step = tree.peek_send(2, APPLICATION)
        assert step.generation == g and (step.key, step.nonce) == ref[g]
        assert tree.peek_send(2, APPLICATION).generation == g  # peeking changes nothing
        tree.commit(step)
    assert tree.next_generation(2, APPLICATION) == 3
    assert tree.next_generation(2, HANDSHAKE) == 0


def test_lazy_for_large_groups() -> None:
    n = 1 << 20
    tree = SecretTree(crypto, ROOT, n)
    tree.consume(12345, APPLICATION, 0)
    records = tree.records()
    # meta + one leaf + one sibling per level on the path.
    assert len(records) == 1 + 1 + 20
    assert sum(name.startswith("node:") for name in records) == 20


def snapshot(tree: SecretTree) -> tuple[dict[str, bytes], object]:
    return tree.records(), tree.changes()


def test_reused_generation_changes_nothing() -> None:
    tree = SecretTree(crypto, ROOT, 4, RatchetConfig(out_of_order_tolerance=3))
    tree.consume(1, APPLICATION, 0)
    tree.consume(1, APPLICATION, 1)
    before = snapshot(tree)
    with raises_reason(MlsReason.REPLAY):
        tree.peek(1, APPLICATION, 1)
    with raises_reason(MlsReason.REPLAY):
        tree.consume(1, APPLICATION, 0)
    assert snapshot(tree) == before


def test_out_of_order_within_and_beyond_tolerance() -> None:
    tree = SecretTree(crypto, ROOT, 4, RatchetConfig(out_of_order_tolerance=3, maximum_forward_distance=10))
    ref = reference_keys(4, 3, HANDSHAKE, 20)
    # Newest received is 6; tolerance 3 keeps generations 3, 4 and 5.
    assert tree.consume(3, HANDSHAKE, 6).key == ref[6][0]
    before = snapshot(tree)
    with raises_reason(MlsReason.TOO_OLD):
        tree.peek(3, HANDSHAKE, 2)
    assert snapshot(tree) == before
    for g in (4, 3, 5):  # late messages inside the window, any order
        assert tree.consume(3, HANDSHAKE, g).key == ref[g][0]
    with raises_reason(MlsReason.REPLAY):
        tree.peek(3, HANDSHAKE, 4)
    # Jumping ahead prunes keys that fall out of the window.
    tree2 = SecretTree(crypto, ROOT, 4, RatchetConfig(out_of_order_tolerance=2, maximum_forward_distance=10))
    tree2.consume(3, HANDSHAKE, 3)  # keeps 1, 2
    tree2.consume(3, HANDSHAKE, 10)  # keeps 8, 9; 1 and 2 are gone
    with raises_reason(MlsReason.TOO_OLD):
        tree2.peek(3, HANDSHAKE, 2)
    assert tree2.consume(3, HANDSHAKE, 9).key == ref[9][0]


def test_strictly_in_order() -> None:
    tree = SecretTree(crypto, ROOT, 2, RatchetConfig(out_of_order_tolerance=0))
    tree.consume(0, APPLICATION, 2)
    for g in (0, 1, 2):
        with pytest.raises(MlsError):
            tree.peek(0, APPLICATION, g)
    assert tree.consume(0, APPLICATION, 3).generation == 3


def test_too_far_ahead_changes_nothing() -> None:
    tree = SecretTree(crypto, ROOT, 4, RatchetConfig(maximum_forward_distance=5))
    before = snapshot(tree)
    with raises_reason(MlsReason.TOO_FAR_AHEAD):
        tree.peek(0, APPLICATION, 6)
    assert snapshot(tree) == before
    tree.consume(0, APPLICATION, 5)
    with raises_reason(MlsReason.TOO_FAR_AHEAD):
        tree.peek(0, APPLICATION, 12)
    assert tree.consume(0, APPLICATION, 11).generation == 11


def test_bad_arguments() -> None:
    tree = SecretTree(crypto, ROOT, 3)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        tree.peek(3, APPLICATION, 0)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        tree.peek(0, 7, 0)
    with raises_reason(MlsReason.LIMIT_EXCEEDED):
        tree.peek(0, APPLICATION, -1)
    with raises_reason(MlsReason.LIMIT_EXCEEDED):
        tree.peek(0, APPLICATION, 1 << 32)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        SecretTree(crypto, b"short", 3)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        SecretTree(crypto, ROOT, 0)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        RatchetConfig(out_of_order_tolerance=-1)


def test_stale_step_is_refused() -> None:
    tree = SecretTree(crypto, ROOT, 4)
    a = tree.peek(0, APPLICATION, 0)
    b = tree.peek(0, APPLICATION, 1)
    tree.commit(a)
    before = snapshot(tree)
    with raises_reason(MlsReason.WRONG_STATE):
        tree.commit(b)
    with raises_reason(MlsReason.WRONG_STATE):
        tree.commit(a)  # committing twice
    assert snapshot(tree) == before
    # Two first uses under the same frontier node: the second must be re-peeked.
    tree = SecretTree(crypto, ROOT, 4)
    a, b = tree.peek(2, APPLICATION, 0), tree.peek(3, APPLICATION, 0)
    tree.commit(a)
    with raises_reason(MlsReason.WRONG_STATE):
        tree.commit(b)
    assert tree.consume(3, APPLICATION, 0).key == b.key


def test_change_tracking() -> None:
    tree = SecretTree(crypto, ROOT, 8)
    first = tree.changes()
    assert set(first.written) == {"meta", "node:7"} and not first.deleted
    tree.mark_saved()
    assert not tree.changes()
    tree.consume(5, APPLICATION, 0)
    ch = tree.changes()
    # Descending to leaf 5 (node 10): root 7 -> 11 -> 9 -> 10; siblings 3, 13, 8 stay.
    assert ch.deleted == frozenset({"node:7"})
    assert set(ch.written) == {"leaf:5", "node:3", "node:13", "node:8"}
    tree.mark_saved()
    tree.consume(5, APPLICATION, 1)
    tree.consume(5, HANDSHAKE, 0)
    ch = tree.changes()
    assert set(ch.written) == {"leaf:5"} and not ch.deleted


def apply_changes(store: dict[str, bytes], tree: SecretTree) -> None:
    ch = tree.changes()
    for name in ch.deleted:
        store.pop(name, None)
    store.update(ch.written)
    tree.mark_saved()


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from([HANDSHAKE, APPLICATION]), st.integers(0, 12)), max_size=25))
def test_incremental_records_restore_the_same_tree(ops: list[tuple[int, int, int]]) -> None:
    tree = SecretTree(crypto, ROOT, 6, RatchetConfig(out_of_order_tolerance=4, maximum_forward_distance=8))
    store: dict[str, bytes] = {}
    apply_changes(store, tree)
    for leaf, kind, gen in ops:
        before = tree.records()
        try:
            got = tree.consume(leaf, kind, gen)
        except MlsError:
            assert tree.records() == before
            continue
        apply_changes(store, tree)
        assert store == tree.records()
        restored = SecretTree.from_records(crypto, store)
        assert restored.records() == tree.records()
        assert got.key == reference_keys(6, leaf, kind, gen)[gen][0]


def test_from_records_refuses_bad_sets() -> None:
    tree = SecretTree(crypto, ROOT, 4)
    tree.consume(1, APPLICATION, 3)
    good = tree.records()
    assert SecretTree.from_records(crypto, good).records() == good
    bad_sets = [
        {k: v for k, v in good.items() if k != "meta"},
        {**good, "meta": b"\x00"},
        {**good, "leaf:1": good["leaf:1"][:-1]},
        {**good, "leaf:1": good["leaf:1"] + b"\x00"},
        {**good, "leaf:0": good["leaf:1"]},  # leaf 0 is also under node:0
        {k: v for k, v in good.items() if k != "node:5"},  # leaves 2, 3 uncovered
        {**good, "node:x": ROOT},
        {**good, "other": b""},
        {**good, "node:99": ROOT},
    ]
    for bad in bad_sets:
        with raises_reason(MlsReason.CORRUPT_STATE):
            SecretTree.from_records(crypto, bad)


def test_repr_hides_secrets() -> None:
    tree = SecretTree(crypto, ROOT, 4)
    step = tree.consume(0, APPLICATION, 0)
    for obj in (tree, step, tree.changes()):
        text = repr(obj)
        assert step.key.hex() not in text and ROOT.hex() not in text
