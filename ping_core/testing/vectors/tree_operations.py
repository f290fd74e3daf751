"""tree-operations.json: apply one Add, Update or Remove to a tree (RFC 9420 §12.1.1-3).

Checks the tree hash before, applies ``proposal`` (an Update as from
``proposal_sender``), and compares the encoding and tree hash after.
"""

from __future__ import annotations

from typing import Any

from ping_core.mls.tls import decode_exact
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.proposals import Add, Proposal, Remove, Update
from ping_core.mls.tree import RatchetTree

from ping_core.testing.vectors.registry import VectorMismatch, expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    before = h(case["tree_before"])
    tree = RatchetTree.decode(before)
    expect_equal("tree_before re-encoding", tree.encode(), before)
    expect_equal("tree_hash_before", tree.tree_hash(crypto), h(case["tree_hash_before"]))
    live = tree.copy()
    proposal = decode_exact(Proposal, h(case["proposal"]))
    if isinstance(proposal, Add):
        tree.add_leaf(proposal.key_package.leaf_node)
    elif isinstance(proposal, Update):
        tree.update_leaf(int(case["proposal_sender"]), proposal.leaf_node)
    elif isinstance(proposal, Remove):
        tree.remove_leaf(proposal.removed)
    else:
        raise VectorMismatch(f"unexpected proposal type {type(proposal).__name__}")
    expect_equal("tree_after", tree.encode(), h(case["tree_after"]))
    expect_equal("tree_hash_after", tree.tree_hash(crypto), h(case["tree_hash_after"]))
    # The same tree from scratch hashes the same (the cache was right), and
    # the copy taken before the change still is the old tree.
    expect_equal("tree_hash_after (uncached)", RatchetTree.decode(tree.encode()).tree_hash(crypto), h(case["tree_hash_after"]))
    expect_equal("untouched copy", live.encode(), before)
    expect_equal("untouched copy hash", live.tree_hash(crypto), h(case["tree_hash_before"]))
