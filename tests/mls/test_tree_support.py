"""Support for the ratchet tree and TreeKEM tests: members with real keys and a
small group simulator that drives ``RatchetTree`` and ``treekem`` the way the
group layer does (proposals on a staged copy, then an UpdatePath that every
other member processes on its own copy). No tests here; the tests import it
(pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from ping_core.mls.tls import encode
from ping_core.mls.crypto import default_provider
from ping_core.mls.structs.credential import Credential
from ping_core.mls.structs.enums import LeafNodeSource
from ping_core.mls.structs.extensions import Extension
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.leaf import Capabilities, LeafNode, Lifetime
from ping_core.mls.tree import RatchetTree, common_ancestor, sign_leaf_node
from ping_core.mls.tree.treekem import (
    GeneratedPath,
    PathKeys,
    commit_leaf_maker,
    generate_update_path,
    path_keys_from_path_secret,
    process_update_path,
)

crypto = default_provider()
GROUP_ID = b"tree test group"
SUITE = 1


_DEFAULT_CAPABILITIES = Capabilities()  # frozen: one shared default is safe


@dataclass(eq=False)
class Member:
    """A client: signature key pair, a KeyPackage-style leaf, and (once in) its PathKeys."""

    name: bytes
    sig_priv: bytes
    sig_pub: bytes
    enc_priv: bytes
    leaf: LeafNode
    index: int = -1
    keys: PathKeys | None = None
    pending: dict[bytes, bytes] = field(default_factory=dict)

    @classmethod
    def new(cls, name: bytes, capabilities: Capabilities = _DEFAULT_CAPABILITIES) -> Member:
        sig_priv, sig_pub = crypto.sign_keygen()
        enc_priv, enc_pub = crypto.dh_keygen()
        leaf = LeafNode(
            enc_pub,
            sig_pub,
            Credential.basic(name),
            capabilities,
            LeafNodeSource.KEY_PACKAGE,
            Lifetime(1_000, 2_000_000_000),
        )
        return cls(name, sig_priv, sig_pub, enc_priv, sign_leaf_node(crypto, leaf, sig_priv))

    def update_leaf(self) -> LeafNode:
        """A fresh Update-proposal leaf for this member (its private key kept in ``pending``)."""
        enc_priv, enc_pub = crypto.dh_keygen()
        assert self.leaf is not None
        leaf = replace(
            self.leaf, encryption_key=enc_pub, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None, parent_hash=None
        )
        self.pending[enc_pub] = enc_priv
        return sign_leaf_node(crypto, leaf, self.sig_priv, GROUP_ID, self.index)


def context(tree_hash: bytes, epoch: int, extensions: tuple[Extension, ...] = ()) -> GroupContext:
    return GroupContext(
        cipher_suite=SUITE,
        group_id=GROUP_ID,
        epoch=epoch,
        tree_hash=tree_hash,
        confirmed_transcript_hash=b"\x07" * 32,
        extensions=extensions,
    )


class Group:
    """Everyone's shared view: one live tree (all members agree on it) and the members."""

    def __init__(self, creator: Member) -> None:
        assert creator.leaf is not None
        self.tree = RatchetTree.create(creator.leaf)
        creator.index = 0
        creator.keys = PathKeys(creator.enc_priv, {})
        self.members: dict[int, Member] = {0: creator}
        self.epoch = 0
        self.commit_secrets: list[bytes] = []

    def context_for(self, epoch: int) -> Callable[[bytes], bytes]:
        def make(tree_hash: bytes) -> bytes:
            return encode(context(tree_hash, epoch))

        return make

    def _apply(self, tree: RatchetTree, adds: list[Member], removes: list[int], updates: dict[int, LeafNode]) -> list[int]:
        for i, leaf in updates.items():
            tree.update_leaf(i, leaf)
        for i in removes:
            tree.remove_leaf(i)
        added = []
        for m in adds:
            assert m.leaf is not None
            added.append(tree.add_leaf(m.leaf))
        return added

    def commit(
        self,
        committer: int,
        *,
        adds: list[Member] = [],  # noqa: B006 - read only
        removes: list[int] = [],  # noqa: B006
        updates: dict[int, LeafNode] | None = None,
    ) -> GeneratedPath:
        """A full commit by ``committer``: every other member follows it; joiners join."""
        updates = updates or {}
        new_epoch = self.epoch + 1
        ctx = self.context_for(new_epoch)
        staged = self.tree.copy()
        added = self._apply(staged, adds, removes, updates)
        c = self.members[committer]
        base = staged.leaf(committer)
        assert base is not None
        gen = generate_update_path(
            crypto,
            staged,
            committer,
            make_leaf=commit_leaf_maker(crypto, base, c.sig_priv, GROUP_ID, committer),
            group_context_for=ctx,
            exclude=added,
        )
        for i, m in list(self.members.items()):
            if i == committer or i in removes:
                continue
            theirs = self.tree.copy()
            self._apply(theirs, adds, removes, updates)
            keys = m.keys
            assert keys is not None
            if i in updates:  # our own Update was committed: switch to its private key
                keys = PathKeys(m.pending.pop(updates[i].encryption_key), keys.node_secrets)
            done = process_update_path(
                crypto, theirs, committer, gen.update_path, own_leaf=i, own_keys=keys, group_context_for=ctx, exclude=added
            )
            secret, new_keys = done.commit_secret, done.keys
            assert secret == gen.commit_secret, f"member {i} derived another commit secret"
            assert theirs == staged, f"member {i} has another tree"
            m.keys = new_keys
        for i in removes:
            del self.members[i]
        for m, i in zip(adds, added):
            m.index = i
            m.keys = path_keys_from_path_secret(
                crypto, staged, i, common_ancestor(2 * i, 2 * committer), gen.path_secret_for(i), m.enc_priv
            )
            self.members[i] = m
        c.keys = gen.keys
        c.leaf = gen.update_path.leaf_node
        self.tree = staged
        self.epoch = new_epoch
        self.commit_secrets.append(gen.commit_secret)
        return gen

    def external_join(self, joiner: Member) -> GeneratedPath:
        """An external commit: the joiner takes the leftmost free leaf and commits a path."""
        new_epoch = self.epoch + 1
        ctx = self.context_for(new_epoch)
        staged = self.tree.copy()
        index = staged.free_leaf_index()
        assert joiner.leaf is not None
        base = joiner.leaf
        gen = generate_update_path(
            crypto,
            staged,
            index,
            make_leaf=commit_leaf_maker(crypto, base, joiner.sig_priv, GROUP_ID, index),
            group_context_for=ctx,
        )
        for i, m in self.members.items():
            theirs = self.tree.copy()
            assert m.keys is not None
            done = process_update_path(
                crypto, theirs, index, gen.update_path, own_leaf=i, own_keys=m.keys, group_context_for=ctx
            )
            m.keys = done.keys
            assert done.commit_secret == gen.commit_secret
            assert theirs == staged
        joiner.index = index
        joiner.keys = gen.keys
        joiner.leaf = gen.update_path.leaf_node
        self.members[index] = joiner
        self.tree = staged
        self.epoch = new_epoch
        return gen

    def check_keys(self) -> None:
        """Every member's private keys match the public tree (the tree invariant)."""
        for i, m in self.members.items():
            assert m.keys is not None
            leaf = self.tree.leaf(i)
            assert leaf is not None
            assert crypto.dh_public(m.keys.leaf_secret) == leaf.encryption_key
            for x, priv in m.keys.node_secrets.items():
                node = self.tree.node(x)
                assert node is not None, f"member {i} keeps a key for blank node {x}"
                assert crypto.dh_public(priv) == node.encryption_key, f"member {i}: stale key for node {x}"
                assert x in self.tree.direct_path(2 * i)


def build_group(n: int) -> Group:
    """A group of ``n`` built by one commit of the creator adding ``n - 1`` members."""
    g = Group(Member.new(b"member 0"))
    if n > 1:
        g.commit(0, adds=[Member.new(b"member %d" % i) for i in range(1, n)])
    return g
