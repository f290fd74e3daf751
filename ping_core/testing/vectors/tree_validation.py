"""tree-validation.json: resolutions, tree hashes, parent hashes and leaf signatures.

For every node the resolution and tree hash must match; the tree must be
parent-hash valid and every leaf signature must verify with ``group_id``.
Then the full join-time validation (``validate_tree``) runs against a
GroupContext for suite 1 with this tree's hash and no extensions.
"""

from __future__ import annotations

from typing import Any

from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.tree import RatchetTree, check_leaf_signatures, check_parent_hashes, validate_tree

from ping_core.testing.vectors.registry import expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    tree = RatchetTree.decode(h(case["tree"]))
    resolutions = case["resolutions"]
    hashes = case["tree_hashes"]
    expect_equal("node count", tree.n_nodes, len(resolutions))
    expect_equal("node count (hashes)", tree.n_nodes, len(hashes))
    for x, want in enumerate(resolutions):
        expect_equal(f"resolution of node {x}", tree.resolution(x), list(want))
    # Fresh tree: hashes computed bottom-up from the root's request.
    group_id = h(case["group_id"])
    root_hash = tree.tree_hash(crypto)
    for x, want in enumerate(hashes):
        expect_equal(f"tree hash of node {x}", tree.node_tree_hash(crypto, x), h(want))
    check_parent_hashes(tree, crypto)
    check_leaf_signatures(tree, crypto, group_id)
    gc = GroupContext(
        cipher_suite=int(case["cipher_suite"]),
        group_id=group_id,
        epoch=0,
        tree_hash=root_hash,
        confirmed_transcript_hash=b"",
    )
    validate_tree(tree, crypto, gc)
