"""treekem.json: process UpdatePaths with known private state (RFC 9420 §7.4-7.6).

For each case: load the tree and every listed leaf's private state (leaf key
and path secrets, each checked against the tree's public keys). For each
UpdatePath, every listed leaf other than the sender processes it on its own
copy of the tree: the path secret it decrypts, the commit secret and the tree
hash after must match. Then each listed leaf generates a fresh UpdatePath
(re-signed with its signature key) and every other listed leaf must process
it to the same commit secret and tree. The provisional GroupContext is
suite 1, ``group_id``, ``epoch``, the new tree hash,
``confirmed_transcript_hash`` and no extensions; nothing is excluded.
"""

from __future__ import annotations

from typing import Any, Callable

from ping_core.mls.tls import decode_exact, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.hpke import UpdatePath
from ping_core.mls.tree import RatchetTree, check_leaf_signatures, check_parent_hashes
from ping_core.mls.tree.treekem import (
    PathKeys,
    commit_leaf_maker,
    generate_update_path,
    node_key_pair,
    process_update_path,
)

from ping_core.testing.vectors.registry import VectorMismatch, expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    group_id = h(case["group_id"])
    epoch = int(case["epoch"])
    cth = h(case["confirmed_transcript_hash"])
    suite = int(case["cipher_suite"])

    def context_for(tree_hash: bytes) -> bytes:
        return encode(
            GroupContext(
                cipher_suite=suite,
                group_id=group_id,
                epoch=epoch,
                tree_hash=tree_hash,
                confirmed_transcript_hash=cth,
            )
        )

    tree = RatchetTree.decode(h(case["ratchet_tree"]))
    check_parent_hashes(tree, crypto)
    check_leaf_signatures(tree, crypto, group_id)

    keys: dict[int, PathKeys] = {}
    signers: dict[int, bytes] = {}
    for priv in case["leaves_private"]:
        index = int(priv["index"])
        leaf = tree.leaf(index)
        if leaf is None:
            raise VectorMismatch(f"private state for blank leaf {index}")
        leaf_secret = h(priv["encryption_priv"])
        expect_equal(f"leaf {index} encryption key", crypto.dh_public(leaf_secret), leaf.encryption_key)
        signers[index] = h(priv["signature_priv"])
        expect_equal(f"leaf {index} signature key", crypto.sign_public(signers[index]), leaf.signature_key)
        nodes: dict[int, bytes] = {}
        for entry in priv["path_secrets"]:
            x = int(entry["node"])
            node_priv, node_pub = node_key_pair(crypto, h(entry["path_secret"]))
            node = tree.node(x)
            if node is None:
                raise VectorMismatch(f"leaf {index} has a path secret for blank node {x}")
            expect_equal(f"leaf {index} key of node {x}", node_pub, node.encryption_key)
            nodes[x] = node_priv
        keys[index] = PathKeys(leaf_secret, nodes)

    for k, up in enumerate(case["update_paths"]):
        sender = int(up["sender"])
        update_path = decode_exact(UpdatePath, h(up["update_path"]))
        want_commit = h(up["commit_secret"])
        want_hash = h(up["tree_hash_after"])
        after: bytes | None = None
        for index, own in keys.items():
            if index == sender:
                continue
            want_ps = up["path_secrets"][index]
            if want_ps is None:
                raise VectorMismatch(f"update path {k}: no path secret given for leaf {index}")
            staged = tree.copy()
            done = process_update_path(
                crypto, staged, sender, update_path, own_leaf=index, own_keys=own, group_context_for=context_for
            )
            expect_equal(f"update path {k}, leaf {index}: path secret", done.path_secret, h(want_ps))
            expect_equal(f"update path {k}, leaf {index}: commit secret", done.commit_secret, want_commit)
            expect_equal(f"update path {k}, leaf {index}: tree hash after", staged.tree_hash(crypto), want_hash)
            if after is None:
                after = staged.encode()
                check_parent_hashes(staged, crypto)
            else:
                expect_equal(f"update path {k}: tree after, leaf {index}", staged.encode(), after)
        # The original tree is untouched by the staged copies.
        expect_equal(f"update path {k}: live tree hash", tree.tree_hash(crypto), RatchetTree.decode(tree.encode()).tree_hash(crypto))

    _round_trip(crypto, tree, keys, signers, group_id, context_for)


def _round_trip(
    crypto: CryptoProvider,
    tree: RatchetTree,
    keys: dict[int, PathKeys],
    signers: dict[int, bytes],
    group_id: bytes,
    context_for: Callable[[bytes], bytes],
) -> None:
    """Each listed leaf commits a fresh path; every other listed leaf follows it."""
    for committer in keys:
        base = tree.leaf(committer)
        assert base is not None
        staged = tree.copy()
        gen = generate_update_path(
            crypto,
            staged,
            committer,
            make_leaf=commit_leaf_maker(crypto, base, signers[committer], group_id, committer),
            group_context_for=context_for,
        )
        check_parent_hashes(staged, crypto)
        check_leaf_signatures(staged, crypto, group_id)
        for index, own in keys.items():
            if index == committer:
                continue
            theirs = tree.copy()
            done = process_update_path(
                crypto,
                theirs,
                committer,
                gen.update_path,
                own_leaf=index,
                own_keys=own,
                group_context_for=context_for,
            )
            expect_equal(f"fresh path from {committer}, leaf {index}: commit secret", done.commit_secret, gen.commit_secret)
            expect_equal(
                f"fresh path from {committer}, leaf {index}: path secret",
                done.path_secret,
                gen.path_secrets[done.path_secret_node],
            )
            expect_equal(f"fresh path from {committer}, leaf {index}: tree", theirs.encode(), staged.encode())
