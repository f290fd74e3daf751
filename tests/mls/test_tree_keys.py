"""KeyIndex (ping_core.mls.tree.keys): exact counts, copy-on-write sharing between tree copies."""

from __future__ import annotations

from dataclasses import replace

from ping_core.mls.structs.leaf import LeafNode
from ping_core.mls.structs.tree_nodes import ParentNode
from ping_core.mls.tree import KeyIndex, RatchetTree
from test_tree_support import Member

MEMBERS = [Member.new(b"k%d" % i) for i in range(3)]


def _leaf(i: int) -> LeafNode:
    lf = MEMBERS[i].leaf
    assert lf is not None
    return lf


def test_counts_are_exact_when_a_tree_repeats_a_key() -> None:
    a = ParentNode(b"\x01" * 32)
    idx = KeyIndex([_leaf(0), a, a, None])
    assert idx.enc[a.encryption_key] == 2
    idx.remove(a)
    # One copy is left: the key is still in use.
    assert idx.enc[a.encryption_key] == 1
    idx.remove(a)
    assert a.encryption_key not in idx.enc
    assert idx.sig == {_leaf(0).signature_key: 1}
    assert idx.ctype == {_leaf(0).credential.credential_type: 1}


def test_a_copy_shares_the_index_until_one_side_changes() -> None:
    t = RatchetTree.create(_leaf(0))
    t.add_leaf(_leaf(1))
    c = t.copy()
    assert c.key_index() is t.key_index()
    c.add_leaf(_leaf(2))
    # The copy's change is its own: the source still has two members' keys.
    assert c.has_signature_key(_leaf(2).signature_key)
    assert not t.has_signature_key(_leaf(2).signature_key)
    assert sum(t.key_index().sig.values()) == 2 and sum(c.key_index().sig.values()) == 3
    # Replacing a leaf moves its keys; the replaced member does not count as "other".
    newer = replace(_leaf(1), encryption_key=b"\x07" * 32)
    t.update_leaf(1, newer)
    assert t.has_encryption_key(b"\x07" * 32) and not c.has_encryption_key(b"\x07" * 32)
    assert not t.has_signature_key(_leaf(1).signature_key, ignore_leaf=1)
    assert c.has_signature_key(_leaf(1).signature_key, ignore_leaf=0)
