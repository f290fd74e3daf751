"""RatchetTree: shape operations, hashes and their caches, decoding, and every
validation failure path (RFC 9420 §4, §7, §12.1, §12.4.3.1)."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ping_core.errors import InvalidSignature, MlsDecodeError, MlsReason
from ping_core.mls.tls import encode, varint
from ping_core.mls.structs.credential import Credential
from ping_core.mls.structs.enums import CredentialType, ExtensionType, LeafNodeSource
from ping_core.mls.structs.extensions import Extension, RequiredCapabilities
from ping_core.mls.structs.leaf import Capabilities, LeafNode
from ping_core.mls.structs.tree_nodes import Node, ParentNode
from ping_core.mls.tree import (
    RatchetTree,
    check_leaf_signatures,
    check_parent_hashes,
    check_unmerged_leaves,
    sign_leaf_node,
    validate_tree,
    verify_leaf,
)
from test_tree_support import GROUP_ID, Member, build_group, context, crypto
from reasons import raises_reason

# A few members with real keys, made once (key generation and signing cost time).
MEMBERS = [Member.new(b"m%d" % i) for i in range(12)]


def leaf(i: int) -> LeafNode:
    lf = MEMBERS[i].leaf
    assert lf is not None
    return lf


def parent(tag: int, unmerged: tuple[int, ...] = ()) -> ParentNode:
    return ParentNode(bytes([tag]) * 32, b"", unmerged)


def fresh_hash(tree: RatchetTree) -> bytes:
    """The tree hash computed with no cache at all."""
    return RatchetTree.decode(tree.encode()).tree_hash(crypto)


# ---------------------------------------------------------------- shape


def test_create_and_add_extend_the_tree_by_doubling() -> None:
    t = RatchetTree.create(leaf(0))
    assert (t.n_leaves, t.n_nodes, t.root) == (1, 1, 0)
    assert t.add_leaf(leaf(1)) == 1
    assert (t.n_leaves, t.n_nodes) == (2, 3)
    assert t.add_leaf(leaf(2)) == 2
    assert (t.n_leaves, t.n_nodes, t.root) == (4, 7, 3)
    assert t.free_leaf_index() == 3
    assert [i for i, _ in t.members()] == [0, 1, 2]
    assert t.member_count() == 3


def test_add_fills_the_leftmost_blank_leaf_and_marks_unmerged() -> None:
    t = RatchetTree.from_nodes([leaf(0), parent(1), leaf(1), parent(2), None, None, leaf(3)])
    assert t.add_leaf(leaf(2)) == 2
    # Node 1 is not on leaf 2's direct path; node 3 (root) is and gets it.
    assert t.node(1) == parent(1)
    assert t.node(3) == parent(2, (2,))
    assert t.resolution(3) == [3, 4]


def test_remove_blanks_the_path_and_truncates() -> None:
    t = RatchetTree.from_nodes([leaf(0), parent(1), leaf(1), parent(2), leaf(2), None, None])
    t.remove_leaf(2)
    # The right half has no leaf left: back to two leaves, the root gone.
    assert (t.n_leaves, t.n_nodes) == (2, 3)
    assert t.node(1) == parent(1)
    t.remove_leaf(1)
    assert (t.n_leaves, t.n_nodes) == (1, 1)
    assert t.encode() == RatchetTree.create(leaf(0)).encode()


def test_remove_keeps_width_while_the_right_half_has_a_member() -> None:
    t = RatchetTree.create(leaf(0))
    for i in range(1, 5):
        t.add_leaf(leaf(i))
    assert t.n_leaves == 8
    t.remove_leaf(1)
    assert t.n_leaves == 8 and t.leaf(1) is None
    assert t.free_leaf_index() == 1
    t.remove_leaf(4)
    assert t.n_leaves == 4


def _leftmost_blank(t: RatchetTree) -> int:
    return next((i for i in range(t.n_leaves) if t.leaf(i) is None), t.n_leaves)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 11)), max_size=40))
def test_free_leaf_index_is_the_leftmost_blank_through_adds_removes_and_copies(ops: list[tuple[bool, int]]) -> None:
    # free_leaf_index remembers where its last scan stopped; removals below
    # that point, truncation and copies must not make it skip a blank leaf.
    t = RatchetTree.create(leaf(0))
    snapshots: list[tuple[RatchetTree, int]] = []
    for add, k in ops:
        if add:
            expected = _leftmost_blank(t)
            assert t.add_leaf(leaf(k)) == expected
        else:
            members = [i for i, _ in t.members()]
            if len(members) > 1:
                t.remove_leaf(members[k % len(members)])
        assert t.free_leaf_index() == _leftmost_blank(t)
        snapshots.append((t.copy(), _leftmost_blank(t)))
    for snap, expected in snapshots:  # later changes to t never leak into a copy
        assert snap.free_leaf_index() == expected


def test_free_leaf_index_goes_back_to_a_removed_leaf() -> None:
    t = RatchetTree.create(leaf(0))
    for i in range(1, 6):
        assert t.add_leaf(leaf(i)) == i
    c = t.copy()
    t.remove_leaf(2)
    assert t.free_leaf_index() == 2 and c.free_leaf_index() == 6
    assert t.add_leaf(leaf(6)) == 2
    assert t.free_leaf_index() == 6
    c.remove_leaf(1)
    assert c.add_leaf(leaf(7)) == 1 and t.leaf(1) == leaf(1)


def test_update_replaces_the_leaf_and_blanks_its_direct_path() -> None:
    t = RatchetTree.from_nodes([leaf(0), parent(1), leaf(1), parent(2), leaf(2), parent(3), leaf(3)])
    t.update_leaf(1, leaf(5))
    assert t.leaf(1) == leaf(5)
    assert t.node(1) is None and t.node(3) is None
    assert t.node(5) == parent(3)


def test_blank_leaf_operations_are_refused_and_change_nothing() -> None:
    t = RatchetTree.from_nodes([leaf(0), None, None, None, leaf(2)])
    before = t.encode()
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        t.remove_leaf(1)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        t.update_leaf(1, leaf(1))
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        t.remove_leaf(7)
    assert t.encode() == before


def test_parents_and_encodings_of_the_nodes() -> None:
    t = RatchetTree.from_nodes([leaf(0), parent(1), leaf(1), None, None, parent(2, (2,)), leaf(2)])
    assert [x for x, _ in t.parents()] == [1, 5]
    assert all(t.encoding(x) == encode(n) for x, n in enumerate(t.nodes) if n is not None)
    # Decoded from the wire, a node's encoding is its wire bytes.
    d = RatchetTree.decode(t.encode())
    assert [d.encoding(x) for x in (0, 1, 5)] == [t.encoding(x) for x in (0, 1, 5)]
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        t.encoding(3)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        t.encoding(7)
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        t.parent_hash_of(crypto, 3, 1)


def test_resolution_and_filtered_direct_path() -> None:
    #            7
    #      3           11
    #   1     5     9     13
    #  0 2   4 6   8 10 12  14
    t = RatchetTree.from_nodes(
        [leaf(0), None, leaf(1), parent(3, (1,)), None, None, None, None, leaf(4), None, None, None, None, None, None]
    )
    assert t.resolution(7) == [3, 2, 8]
    assert t.resolution(3) == [3, 2]
    assert t.resolution(5) == []
    assert t.resolution(11) == [8]
    assert t.resolution(4) == []
    assert t.direct_path(0) == [1, 3, 7]
    assert t.copath(0) == [2, 5, 11]
    # Leaf 0: node 3's copath child 5 is empty, so 3 is filtered out.
    assert t.filtered_direct_path(0) == [1, 7]
    assert t.filtered_direct_path_with_copath(0) == [(1, 2), (7, 11)]
    assert t.filtered_direct_path(4) == [7]



# ---------------------------------------------------------------- hashes and caches

OPS = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "update", "path", "copy"]), st.integers(0, 11)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60)
@given(OPS)
def test_cached_tree_hash_always_equals_a_fresh_one(ops: list[tuple[str, int]]) -> None:
    """Any sequence of changes: the incrementally maintained hash equals the
    hash of the same tree decoded afresh, and a copy taken earlier is unchanged."""
    t = RatchetTree.create(leaf(0))
    used = {leaf(0).encryption_key}
    snapshots: list[tuple[RatchetTree, bytes, bytes]] = []
    tag = 0
    for op, k in ops:
        members = [i for i, _ in t.members()]
        if op == "add":
            t.add_leaf(leaf(k))
        elif op == "remove" and len(members) > 1:
            t.remove_leaf(members[k % len(members)])
        elif op == "update":
            t.update_leaf(members[k % len(members)], leaf(k))
        elif op == "path":
            i = members[k % len(members)]
            keys = []
            for _ in t.filtered_direct_path(i):
                tag += 1
                keys.append(tag.to_bytes(32, "big"))
            t.merge_path(crypto, i, keys)
        elif op == "copy":
            snapshots.append((t.copy(), t.encode(), t.tree_hash(crypto)))
        assert t.tree_hash(crypto) == fresh_hash(t)
    del used
    for snap, enc, h in snapshots:
        assert snap.encode() == enc
        assert snap.tree_hash(crypto) == h


def test_a_change_rehashes_only_the_direct_path() -> None:
    t = RatchetTree.create(leaf(0))
    for i in range(1, 8):
        t.add_leaf(leaf(i))
    t.tree_hash(crypto)
    calls = []

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(crypto, name)

        def hash(self, data: bytes) -> bytes:
            calls.append(len(data))
            return crypto.hash(data)

    c = t.copy()
    c.update_leaf(5, leaf(9))
    c.tree_hash(Counting())  # type: ignore[arg-type]
    assert len(calls) == 4  # the leaf and its 3 ancestors
    assert c.tree_hash(crypto) == fresh_hash(c)
    calls.clear()
    t.tree_hash(Counting())  # type: ignore[arg-type]
    assert calls == []  # the original keeps its cache


def test_tree_hash_of_blank_and_full_nodes_follows_the_rfc_structs() -> None:
    t = RatchetTree.from_nodes([leaf(0), None, None, None, leaf(2)])
    h0 = crypto.hash(b"\x01" + (0).to_bytes(4, "big") + b"\x01" + encode(leaf(0)))
    h1 = crypto.hash(b"\x01" + (1).to_bytes(4, "big") + b"\x00")
    node1 = crypto.hash(b"\x02\x00" + varint(32) + h0 + varint(32) + h1)
    assert t.node_tree_hash(crypto, 1) == node1
    assert t.node_tree_hash(crypto, 2) == h1
    assert t.tree_hash(crypto) == fresh_hash(t)


# ---------------------------------------------------------------- decoding


def test_decode_roundtrip_and_strictness() -> None:
    g = build_group(5)
    data = g.tree.encode()
    again = RatchetTree.decode(data)
    assert again == g.tree and again.encode() == data
    assert again.to_struct() == g.tree.to_struct()
    assert RatchetTree.from_struct(g.tree.to_struct()).encode() == data
    bad = [
        b"\x00",  # empty vector
        b"\x01\x00",  # one blank node
        varint(3) + b"\x01\x02\x00",  # parent node at a leaf position (truncated too)
        data + b"\x00",  # trailing byte
        data[:-1],  # truncated
    ]
    for b in bad:
        with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
            RatchetTree.decode(b)
    # A leaf at an odd position.
    enc_leaf = b"\x01\x01" + encode(leaf(0))
    body = enc_leaf + enc_leaf
    with raises_reason(MlsReason.MALFORMED, MlsDecodeError):
        RatchetTree.decode(varint(len(body)) + body)


def test_from_nodes_checks_positions() -> None:
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        RatchetTree.from_nodes([])
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        RatchetTree.from_nodes([None, None, None])
    with raises_reason(MlsReason.MALFORMED):
        RatchetTree.from_nodes([parent(1)])
    with raises_reason(MlsReason.MALFORMED):
        RatchetTree.from_nodes([leaf(0), leaf(1)])
    t = RatchetTree.from_nodes([leaf(0), None, leaf(1), None, leaf(2)])
    assert (t.n_leaves, t.n_nodes) == (4, 7)


# ---------------------------------------------------------------- validation


def joined_tree(n: int = 6) -> tuple[RatchetTree, bytes]:
    g = build_group(n)
    g.commit(3)  # a second path, so some parents carry a non-trivial chain
    return g.tree.copy(), g.tree.tree_hash(crypto)


def test_a_real_group_tree_validates() -> None:
    tree, th = joined_tree()
    validate_tree(tree, crypto, context(th, 2), own_leaf=2, now_s=10_000)
    check_parent_hashes(tree, crypto)
    check_leaf_signatures(tree, crypto, GROUP_ID)


def test_validate_refuses_a_wrong_tree_hash() -> None:
    tree, th = joined_tree()
    with raises_reason(MlsReason.BAD_TREE):
        validate_tree(tree, crypto, context(b"\x00" * 32, 2))


def test_validate_refuses_a_missing_own_leaf() -> None:
    tree, th = joined_tree(5)
    with raises_reason(MlsReason.BAD_TREE):
        validate_tree(tree, crypto, context(th, 2), own_leaf=6)


def _tampered_parent(tree: RatchetTree) -> RatchetTree:
    nodes = [tree.node(x) for x in range(tree.n_nodes)]
    x = next(i for i, n in enumerate(nodes) if isinstance(n, ParentNode) and n.parent_hash)
    p = nodes[x]
    assert isinstance(p, ParentNode)
    nodes[x] = replace(p, parent_hash=bytes(32))
    return RatchetTree.from_nodes(nodes)


def test_bad_parent_hash_is_refused() -> None:
    tree, _ = joined_tree()
    bad = _tampered_parent(tree)
    with raises_reason(MlsReason.BAD_PARENT_HASH):
        check_parent_hashes(bad, crypto)
    with raises_reason(MlsReason.BAD_PARENT_HASH):
        validate_tree(bad, crypto, context(bad.tree_hash(crypto), 2))


def test_parent_node_with_a_foreign_key_is_refused() -> None:
    tree, _ = joined_tree()
    nodes = [tree.node(x) for x in range(tree.n_nodes)]
    x = tree.root
    p = nodes[x]
    assert isinstance(p, ParentNode)
    nodes[x] = replace(p, encryption_key=b"\x42" * 32)  # an attacker's key at the root
    bad = RatchetTree.from_nodes(nodes)
    with raises_reason(MlsReason.BAD_PARENT_HASH):
        check_parent_hashes(bad, crypto)


def test_bad_leaf_signature_is_refused() -> None:
    tree, _ = joined_tree()
    nodes = [tree.node(x) for x in range(tree.n_nodes)]
    lf = nodes[4]
    assert isinstance(lf, LeafNode)
    sig = bytearray(lf.signature)
    sig[0] ^= 1
    nodes[4] = replace(lf, signature=bytes(sig))
    bad = RatchetTree.from_nodes(nodes)
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        check_leaf_signatures(bad, crypto, GROUP_ID)
    # In a tree with parent nodes the change also breaks the parent-hash chain
    # over it, which validate() checks first.
    with raises_reason(MlsReason.BAD_PARENT_HASH):
        validate_tree(bad, crypto, context(bad.tree_hash(crypto), 2))
    flat = RatchetTree.from_nodes([leaf(0), None, replace(leaf(1), signature=bytes(sig))])
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        validate_tree(flat, crypto, context(flat.tree_hash(crypto), 2))
    # The right signature under another group id fails too (commit leaves are bound to the group).
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        check_leaf_signatures(tree, crypto, b"another group")


def test_duplicate_encryption_and_signature_keys_are_refused() -> None:
    m = MEMBERS
    twin = sign_leaf_node(crypto, replace(leaf(1), encryption_key=leaf(0).encryption_key), m[1].sig_priv)
    t = RatchetTree.from_nodes([leaf(0), None, twin])
    with raises_reason(MlsReason.BAD_TREE):
        validate_tree(t, crypto, context(t.tree_hash(crypto), 1))
    same_sig = Member.new(b"x")
    assert same_sig.leaf is not None
    clone = sign_leaf_node(crypto, replace(same_sig.leaf, signature_key=m[0].sig_pub), m[0].sig_priv)
    t = RatchetTree.from_nodes([leaf(0), None, clone])
    with raises_reason(MlsReason.BAD_TREE):
        validate_tree(t, crypto, context(t.tree_hash(crypto), 1))
    # A parent node reusing a leaf's key.
    t = RatchetTree.from_nodes([leaf(0), ParentNode(leaf(1).encryption_key), leaf(1)])
    with raises_reason(MlsReason.BAD_TREE):
        validate_tree(t, crypto, context(t.tree_hash(crypto), 1))


def test_short_parent_key_is_refused() -> None:
    t = RatchetTree.from_nodes([leaf(0), ParentNode(b"\x05" * 31), leaf(1)])
    with raises_reason(MlsReason.BAD_TREE):
        validate_tree(t, crypto, context(t.tree_hash(crypto), 1))


def test_malformed_unmerged_leaves_are_refused() -> None:
    cases: list[tuple[list[Node | None], str]] = [
        ([leaf(0), parent(1, (1,)), None], "blank"),
        ([leaf(0), parent(1, (2,)), leaf(1), None, leaf(2)], "not in its subtree"),
        ([leaf(0), parent(1, (1, 1)), leaf(1)], "twice"),
        ([leaf(0), parent(1), leaf(1), parent(2, (1,)), leaf(2)], "missing from node 1"),
    ]
    for nodes, why in cases:
        # All four are BAD_TREE; the message says which rule broke (what this test tells apart).
        with raises_reason(MlsReason.BAD_TREE) as info:
            check_unmerged_leaves(RatchetTree.from_nodes(nodes))
        assert why in str(info.value)


def _member_with(caps: Capabilities, **changes: Any) -> LeafNode:
    mem = Member.new(b"special", caps)
    assert mem.leaf is not None
    lf = replace(mem.leaf, **changes) if changes else mem.leaf
    return sign_leaf_node(crypto, lf, mem.sig_priv)


def test_capability_checks_of_a_leaf() -> None:
    base = RatchetTree.from_nodes([leaf(0), None, None])
    gc = context(base.tree_hash(crypto), 1)
    verify = functools.partial(verify_leaf, base)
    ks = LeafNodeSource.KEY_PACKAGE
    verify(crypto, leaf(1), None, gc, source=ks, now_s=10_000)
    with raises_reason(MlsReason.UNSUPPORTED):
        verify(crypto, _member_with(Capabilities(cipher_suites=(2,))), None, gc, source=ks)
    with raises_reason(MlsReason.UNSUPPORTED):
        verify(crypto, _member_with(Capabilities(versions=(7,))), None, gc, source=ks)
    with raises_reason(MlsReason.BAD_LEAF):
        verify(crypto, _member_with(Capabilities(), extensions=(Extension(4096, b""),)), None, gc, source=ks)
    ok_ext = _member_with(Capabilities(extensions=(4096,)), extensions=(Extension(4096, b"x"),))
    verify(crypto, ok_ext, None, gc, source=ks)
    with raises_reason(MlsReason.BAD_LEAF):
        verify(
            crypto,
            _member_with(Capabilities(extensions=(4096,)), extensions=(Extension(4096, b""), Extension(4096, b""))),
            None,
            gc,
            source=ks,
        )
    with raises_reason(MlsReason.BAD_LEAF):
        verify(crypto, leaf(1), 1, gc, source=LeafNodeSource.UPDATE)
    with raises_reason(MlsReason.BAD_LIFETIME):
        verify(crypto, leaf(1), None, gc, source=ks, now_s=5)
    with raises_reason(MlsReason.LIFETIME_TOO_LONG):
        verify(crypto, leaf(1), None, gc, source=ks, now_s=10_000, max_lifetime_s=3600)
    # The group's extensions and required capabilities.
    req = Extension.of(RequiredCapabilities(extension_types=(4096,), proposal_types=(77,)))
    gc_req = context(gc.tree_hash, 1, (req,))
    with raises_reason(MlsReason.UNSUPPORTED):
        verify(crypto, leaf(1), None, gc_req, source=ks)
    with raises_reason(MlsReason.UNSUPPORTED):
        verify(crypto, _member_with(Capabilities(extensions=(4096,))), None, gc_req, source=ks)
    verify(crypto, _member_with(Capabilities(extensions=(4096,), proposals=(77,))), None, gc_req, source=ks)
    gc_ext = context(gc.tree_hash, 1, (Extension(5000, b""),))
    with raises_reason(MlsReason.UNSUPPORTED):
        verify(crypto, leaf(1), None, gc_ext, source=ks)
    # Default extension types need not (and must not) be listed.
    gc_default = context(gc.tree_hash, 1, (Extension(ExtensionType.EXTERNAL_SENDERS, b"\x00"),))
    verify(crypto, leaf(1), None, gc_default, source=ks)
    # A bad signature.
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        verify(crypto, replace(leaf(1), signature=bytes(64)), None, gc, source=ks)


def test_credential_types_must_be_mutually_supported() -> None:
    x509_only = _member_with(
        Capabilities(credentials=(CredentialType.X509,)), credential=Credential.x509((b"cert",))
    )
    t = RatchetTree.from_nodes([leaf(0), None, None])
    gc = context(t.tree_hash(crypto), 1)
    with raises_reason(MlsReason.UNSUPPORTED):
        verify_leaf(t, crypto, x509_only, None, gc, source=LeafNodeSource.KEY_PACKAGE)
    both = _member_with(
        Capabilities(credentials=(CredentialType.BASIC, CredentialType.X509)), credential=Credential.x509((b"c",))
    )
    # Member 0 lists only basic: it cannot verify an x509 newcomer.
    with raises_reason(MlsReason.UNSUPPORTED):
        verify_leaf(t, crypto, both, None, gc, source=LeafNodeSource.KEY_PACKAGE)
    mixed = RatchetTree.from_nodes([leaf(0), None, both])
    with raises_reason(MlsReason.UNSUPPORTED):
        validate_tree(mixed, crypto, context(mixed.tree_hash(crypto), 1))


def test_update_and_commit_leaf_uniqueness() -> None:
    g = build_group(4)
    t = g.tree
    gc = context(t.tree_hash(crypto), 1)
    m1 = g.members[1]
    fresh = m1.update_leaf()
    verify_leaf(t, crypto, fresh, 1, gc, source=LeafNodeSource.UPDATE)  # same signature key is fine
    current = t.leaf(1)
    assert current is not None
    stale = sign_leaf_node(crypto, replace(fresh, encryption_key=current.encryption_key), m1.sig_priv, GROUP_ID, 1)
    with raises_reason(MlsReason.BAD_LEAF):
        verify_leaf(t, crypto, stale, 1, gc, source=LeafNodeSource.UPDATE)
    # Leaf 2 may not take leaf 1's signature key.
    stolen = sign_leaf_node(crypto, replace(fresh, signature_key=m1.sig_pub), m1.sig_priv, GROUP_ID, 2)
    with raises_reason(MlsReason.BAD_LEAF):
        verify_leaf(t, crypto, stolen, 2, gc, source=LeafNodeSource.UPDATE)
    # The signature binds the leaf index.
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        verify_leaf(t, crypto, fresh, 2, gc, source=LeafNodeSource.UPDATE)
    # A KeyPackage leaf equal to a member's: its keys are taken.
    with raises_reason(MlsReason.BAD_LEAF):
        verify_leaf(t, crypto, g.members[2].leaf, None, gc, source=LeafNodeSource.KEY_PACKAGE)


def test_key_index_follows_changes_and_copies() -> None:
    t = RatchetTree.create(leaf(0))
    assert t.has_encryption_key(leaf(0).encryption_key)
    c = t.copy()
    c.add_leaf(leaf(1))
    assert c.has_signature_key(leaf(1).signature_key)
    assert not t.has_signature_key(leaf(1).signature_key)  # copy-on-write: original unaffected
    c.remove_leaf(1)
    assert not c.has_encryption_key(leaf(1).encryption_key)
    assert c.has_signature_key(leaf(0).signature_key)
    assert not c.has_signature_key(leaf(0).signature_key, ignore_leaf=0)
