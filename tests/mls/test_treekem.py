"""TreeKEM: groups that evolve through commits with paths (adds, removes,
updates, external joins), joiners' keys from Welcome path secrets, and every
failure path of UpdatePath processing (RFC 9420 §7.4-7.6, §12.4)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ping_core.errors import DecryptionFailed, InvalidSignature, MlsDecodeError, MlsReason
from ping_core.mls.tree import treekem
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.hpke import HPKECiphertext, UpdatePath, UpdatePathNode
from ping_core.mls.structs.leaf import LeafNode
from ping_core.mls.structs.tree_nodes import ParentNode
from ping_core.mls.tree import RatchetTree, check_parent_hashes, common_ancestor, sign_leaf_node, validate_tree
from ping_core.mls.tree.treekem import (
    GeneratedPath,
    PathKeys,
    commit_leaf_maker,
    generate_update_path,
    path_keys_from_path_secret,
    process_update_path,
)
from test_tree_support import GROUP_ID, Member, build_group, context, crypto
from reasons import raises_reason


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9])
def test_a_group_built_by_one_commit_agrees(n: int) -> None:
    g = build_group(n)
    g.check_keys()
    validate_tree(g.tree, crypto, context(g.tree.tree_hash(crypto), g.epoch), now_s=10_000)


def test_a_group_evolves_and_every_member_follows() -> None:
    g = build_group(7)
    g.commit(4)  # self-update
    g.commit(2, removes=[5])
    g.check_keys()
    g.commit(6, adds=[Member.new(b"late 1"), Member.new(b"late 2")])  # fills leaf 5, then 7
    assert sorted(g.members) == [0, 1, 2, 3, 4, 5, 6, 7]
    g.check_keys()
    upd = g.members[1].update_leaf()
    g.commit(3, updates={1: upd})
    g.check_keys()
    g.commit(0, removes=[7, 6])
    g.check_keys()
    g.commit(1, adds=[Member.new(b"late 3")], removes=[2])
    g.check_keys()
    validate_tree(g.tree, crypto, context(g.tree.tree_hash(crypto), g.epoch), now_s=10_000)
    assert len(set(g.commit_secrets)) == len(g.commit_secrets)


def test_unmerged_leaves_are_encrypted_to_directly() -> None:
    """A commit without a path leaves the new member unmerged in the parents
    above it; the next path must encrypt to it directly and it must decrypt."""
    g = build_group(5)  # 8 leaves; the creator's path set nodes 1, 3 and 7
    newcomer = Member.new(b"unmerged")
    assert newcomer.leaf is not None
    # A "partial" commit: only the Add, no path.
    g.tree = g.tree.copy()
    idx = g.tree.add_leaf(newcomer.leaf)
    newcomer.index = idx
    newcomer.keys = PathKeys(newcomer.enc_priv, {})
    g.members[idx] = newcomer
    g.epoch += 1
    path_nodes = [g.tree.node(x) for x in g.tree.direct_path(2 * idx)]
    assert any(isinstance(n, ParentNode) and idx in n.unmerged_leaves for n in path_nodes)
    check_parent_hashes(g.tree, crypto)  # still valid: unmerged leaves are accounted for
    gen = g.commit(1)
    # Leaf 4's own node appears in a resolution (it is unmerged below the root).
    sizes = [len(n.encrypted_path_secret) for n in gen.update_path.nodes]
    assert sum(sizes) >= 2
    g.check_keys()


def test_external_commit_joins_at_the_free_leaf_and_extends_when_full() -> None:
    g = build_group(4)
    joiner = Member.new(b"external")
    gen = g.external_join(joiner)
    assert joiner.index == 4 and g.tree.n_leaves == 8
    assert gen.update_path.leaf_node.leaf_node_source.name == "COMMIT"
    g.check_keys()
    g.commit(2, removes=[1])
    g.external_join(Member.new(b"second external"))
    assert g.members[1].name == b"second external"
    g.check_keys()


def test_generated_path_round_trips_and_is_reproducible() -> None:
    g = build_group(5)
    secret = b"\x11" * 32
    out = []
    for _ in range(2):
        staged = g.tree.copy()
        base = staged.leaf(2)
        assert base is not None
        m = g.members[2]
        gen = generate_update_path(
            crypto,
            staged,
            2,
            make_leaf=commit_leaf_maker(crypto, base, m.sig_priv, GROUP_ID, 2),
            group_context_for=g.context_for(1),
            leaf_secret=secret,
        )
        out.append((gen.commit_secret, gen.keys, staged.encode()))
    assert out[0] == out[1]
    assert "11" * 8 not in repr(gen) and "secret" not in repr(gen.keys).lower().replace("pathkeys", "")


def test_joiner_gets_no_ciphertext_and_its_welcome_secret_works() -> None:
    g = build_group(3)
    adds = [Member.new(b"a"), Member.new(b"b")]
    staged = g.tree.copy()
    added = [staged.add_leaf(m.leaf) for m in adds]
    base = staged.leaf(0)
    assert base is not None
    gen = generate_update_path(
        crypto,
        staged,
        0,
        make_leaf=commit_leaf_maker(crypto, base, g.members[0].sig_priv, GROUP_ID, 0),
        group_context_for=g.context_for(1),
        exclude=added,
    )
    # Leaf 3's node (6) and leaf 4's (8) receive nothing in the path.
    for (_, s), upn in zip(staged.filtered_direct_path_with_copath(0), gen.update_path.nodes):
        expected = [r for r in staged.resolution(s) if r not in (6, 8)]
        assert len(upn.encrypted_path_secret) == len(expected)
    for m, i in zip(adds, added):
        keys = path_keys_from_path_secret(
            crypto, staged, i, common_ancestor(2 * i, 0), gen.path_secret_for(i), m.enc_priv
        )
        for x, priv in keys.node_secrets.items():
            node = staged.node(x)
            assert node is not None and crypto.dh_public(priv) == node.encryption_key
        assert staged.root in keys.node_secrets
    # Processing with the wrong exclusion list counts the ciphertexts wrong.
    other = g.tree.copy()
    for m in adds:
        other.add_leaf(m.leaf)
    receiver_keys = g.members[1].keys
    assert receiver_keys is not None
    with raises_reason(MlsReason.BAD_PATH):
        process_update_path(
            crypto,
            other,
            0,
            gen.update_path,
            own_leaf=1,
            own_keys=receiver_keys,
            group_context_for=g.context_for(1),
        )
    # A new member does not process the commit that added it.
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        process_update_path(
            crypto,
            g.tree.copy(),
            0,
            gen.update_path,
            own_leaf=added[0],
            own_keys=PathKeys(adds[0].enc_priv, {}),
            group_context_for=g.context_for(1),
            exclude=added,
        )


def test_joiner_key_mismatches_are_refused() -> None:
    g = build_group(4)
    gen = g.commit(0, adds=[Member.new(b"j")])
    j = g.members[4]
    tree = g.tree
    start = common_ancestor(2 * 4, 0)
    ps = gen.path_secret_for(4)
    with raises_reason(MlsReason.BAD_PATH):
        path_keys_from_path_secret(crypto, tree, 4, start, ps, crypto.dh_keygen()[0])
    with raises_reason(MlsReason.BAD_PATH):
        path_keys_from_path_secret(crypto, tree, 4, start, b"\x00" * 32, j.enc_priv)
    with raises_reason(MlsReason.BAD_PATH):
        path_keys_from_path_secret(crypto, tree, 4, 1, ps, j.enc_priv)
    no_path = path_keys_from_path_secret(crypto, tree, 4, None, None, j.enc_priv)
    assert no_path.node_secrets == {}


# ---------------------------------------------------------------- failure paths


class Setup:
    """A 6-member group, a fresh path from leaf 1, and leaf 4 ready to process it."""

    def __init__(self) -> None:
        self.g = build_group(6)
        self.g.commit(5)
        self.ctx = self.g.context_for(self.g.epoch + 1)
        staged = self.g.tree.copy()
        self.committer = self.g.members[1]
        self.gen = generate_update_path(
            crypto, staged, 1, make_leaf=self.maker(), group_context_for=self.ctx
        )
        self.after = staged
        self.receiver = self.g.members[4]
        assert self.receiver.keys is not None
        self.keys_before = self.receiver.keys.encode()

    def maker(self, leaf_index: int = 1) -> treekem.MakeLeaf:
        base = self.g.tree.leaf(1)
        assert base is not None
        return commit_leaf_maker(crypto, base, self.committer.sig_priv, GROUP_ID, leaf_index)

    def process(self, path: UpdatePath, sender: int = 1, own: int = 4) -> tuple[bytes, PathKeys]:
        keys = self.g.members[own].keys
        assert keys is not None
        done = process_update_path(
            crypto, self.g.tree.copy(), sender, path, own_leaf=own, own_keys=keys, group_context_for=self.ctx
        )
        return done.commit_secret, done.keys

    def untouched(self) -> None:
        assert self.receiver.keys is not None
        assert self.receiver.keys.encode() == self.keys_before


@pytest.fixture
def setup() -> Setup:
    return Setup()


def test_the_good_path_is_accepted(setup: Setup) -> None:
    secret, keys = setup.process(setup.gen.update_path)
    assert secret == setup.gen.commit_secret
    assert keys.encode() != setup.keys_before
    setup.untouched()  # the input object itself never changes


def test_wrong_path_length_is_refused(setup: Setup) -> None:
    up = setup.gen.update_path
    for nodes in (up.nodes[:-1], up.nodes + up.nodes[-1:]):
        with raises_reason(MlsReason.BAD_PATH):
            setup.process(replace(up, nodes=nodes))
    setup.untouched()


def test_tampered_ciphertext_is_refused(setup: Setup) -> None:
    up = setup.gen.update_path
    nodes = []
    for upn in up.nodes:
        cts = tuple(HPKECiphertext(ct.kem_output, bytes([ct.ciphertext[0] ^ 1]) + ct.ciphertext[1:]) for ct in upn.encrypted_path_secret)
        nodes.append(UpdatePathNode(upn.encryption_key, cts))
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
        setup.process(replace(up, nodes=tuple(nodes)))
    setup.untouched()


def test_wrong_provisional_context_does_not_decrypt(setup: Setup) -> None:
    keys = setup.receiver.keys
    assert keys is not None
    with raises_reason(MlsReason.DECRYPTION_FAILED, DecryptionFailed):
        process_update_path(
            crypto,
            setup.g.tree.copy(),
            1,
            setup.gen.update_path,
            own_leaf=4,
            own_keys=keys,
            group_context_for=setup.g.context_for(99),
        )


def test_mismatching_derived_public_key_is_refused(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A committer that publishes a key not derived from the path secret it sends:
    parent hashes, signature and encryption are all consistent, only the
    derivation check can catch it."""
    real = treekem.node_key_pair
    calls = {"n": 0}
    # The leaf's key pair is derived first, then the path's nodes in order:
    # lie about the root, which every receiver derives.
    lie_at = 1 + len(setup.g.tree.filtered_direct_path(1))

    def lying(c: CryptoProvider, secret: bytes) -> tuple[bytes, bytes]:
        priv, pub = real(c, secret)
        calls["n"] += 1
        if calls["n"] == lie_at:
            return priv, crypto.dh_keygen()[1]
        return priv, pub

    monkeypatch.setattr(treekem, "node_key_pair", lying)
    staged = setup.g.tree.copy()
    bad = generate_update_path(crypto, staged, 1, make_leaf=setup.maker(), group_context_for=setup.ctx)
    monkeypatch.setattr(treekem, "node_key_pair", real)
    assert len(bad.update_path.nodes) >= 2
    with raises_reason(MlsReason.BAD_PATH):
        setup.process(bad.update_path)
    setup.untouched()


def test_bad_parent_hash_in_the_leaf_is_refused(setup: Setup) -> None:
    up = setup.gen.update_path
    leaf = sign_leaf_node(crypto, replace(up.leaf_node, parent_hash=b"\x00" * 32), setup.committer.sig_priv, GROUP_ID, 1)
    with raises_reason(MlsReason.BAD_PARENT_HASH):
        setup.process(replace(up, leaf_node=leaf))
    setup.untouched()


def test_bad_leaf_signature_is_refused(setup: Setup) -> None:
    up = setup.gen.update_path
    sig = bytearray(up.leaf_node.signature)
    sig[10] ^= 0x40
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        setup.process(replace(up, leaf_node=replace(up.leaf_node, signature=bytes(sig))))
    # Signed for another leaf index: the signature binds the position.
    other = sign_leaf_node(crypto, replace(up.leaf_node, signature=b""), setup.committer.sig_priv, GROUP_ID, 2)
    with raises_reason(MlsReason.BAD_SIGNATURE, InvalidSignature):
        setup.process(replace(up, leaf_node=other))
    setup.untouched()


def test_reused_keys_are_refused(setup: Setup) -> None:
    up = setup.gen.update_path
    tree = setup.g.tree
    # The leaf keeps its old encryption key.
    old = tree.leaf(1)
    assert old is not None
    stale = sign_leaf_node(crypto, replace(up.leaf_node, encryption_key=old.encryption_key), setup.committer.sig_priv, GROUP_ID, 1)
    with raises_reason(MlsReason.BAD_LEAF):
        setup.process(replace(up, leaf_node=stale))
    # A path node reuses another node's key.
    leaf3 = tree.leaf(3)
    assert leaf3 is not None
    existing = leaf3.encryption_key
    nodes = (UpdatePathNode(existing, up.nodes[0].encrypted_path_secret),) + up.nodes[1:]
    with raises_reason(MlsReason.BAD_PATH):
        setup.process(replace(up, nodes=nodes))
    # Two path nodes with the same key.
    if len(up.nodes) >= 2:
        nodes = (up.nodes[0], UpdatePathNode(up.nodes[0].encryption_key, up.nodes[1].encrypted_path_secret)) + up.nodes[2:]
        with raises_reason(MlsReason.BAD_PATH):
            setup.process(replace(up, nodes=nodes))
    # A key that is not 32 bytes.
    nodes = (UpdatePathNode(b"\x01" * 31, up.nodes[0].encrypted_path_secret),) + up.nodes[1:]
    with raises_reason(MlsReason.BAD_PATH):
        setup.process(replace(up, nodes=nodes))
    # Another member's signature key.
    thief = sign_leaf_node(
        crypto, replace(up.leaf_node, signature_key=setup.g.members[2].sig_pub), setup.g.members[2].sig_priv, GROUP_ID, 1
    )
    with raises_reason(MlsReason.BAD_LEAF):
        setup.process(replace(up, leaf_node=thief))
    setup.untouched()


def test_wrong_leaf_source_and_own_path_are_refused(setup: Setup) -> None:
    up = setup.gen.update_path
    upd = replace(up.leaf_node, leaf_node_source=type(up.leaf_node.leaf_node_source).UPDATE, parent_hash=None)
    upd = sign_leaf_node(crypto, upd, setup.committer.sig_priv, GROUP_ID, 1)
    with raises_reason(MlsReason.BAD_PARENT_HASH):
        setup.process(replace(up, leaf_node=upd))
    with raises_reason(MlsReason.INVALID_ARGUMENT):
        setup.process(up, own=1)


def test_missing_private_key_is_refused(setup: Setup) -> None:
    keys = setup.receiver.keys
    assert keys is not None
    # Leaf 4 decrypts with a parent key here; without it there is nothing to decrypt with.
    assert keys.node_secrets
    with raises_reason(MlsReason.BAD_PATH):
        process_update_path(
            crypto,
            setup.g.tree.copy(),
            1,
            setup.gen.update_path,
            own_leaf=4,
            own_keys=PathKeys(keys.leaf_secret, {}),
            group_context_for=setup.ctx,
        )


def test_make_leaf_must_use_the_given_values(setup: Setup) -> None:
    def wrong_key(enc: bytes, ph: bytes) -> LeafNode:
        return setup.maker()(crypto.dh_keygen()[1], ph)

    with raises_reason(MlsReason.INVALID_ARGUMENT):
        generate_update_path(crypto, setup.g.tree.copy(), 1, make_leaf=wrong_key, group_context_for=setup.ctx)


# ---------------------------------------------------------------- PathKeys


def test_path_keys_encoding_is_strict_and_repr_is_safe() -> None:
    keys = PathKeys(b"\x01" * 32, {7: b"\x02" * 32, 3: b"\x03" * 32})
    data = keys.encode()
    assert PathKeys.decode(data) == keys
    assert data == PathKeys(b"\x01" * 32, {3: b"\x03" * 32, 7: b"\x02" * 32}).encode()
    text = repr(keys)
    assert "0101" not in text and "\\x01" not in text and "[3, 7]" in text
    for bad in (b"", b"\x02" + data[1:], data + b"\x00", data[:-1]):
        with raises_reason(MlsReason.CORRUPT_STATE, MlsDecodeError):
            PathKeys.decode(bad)
    # Nodes must be ascending parent nodes.
    w = PathKeys(b"\x01" * 32, {2: b"\x02" * 32}).encode()
    with raises_reason(MlsReason.CORRUPT_STATE, MlsDecodeError):
        PathKeys.decode(w)


def test_path_keys_pruned_drops_blank_nodes() -> None:
    g = build_group(4)
    m = g.members[0]
    assert m.keys is not None and m.keys.node_secrets
    t = g.tree.copy()
    t.update_leaf(0, g.members[0].leaf)  # blanks leaf 0's direct path
    assert m.keys.pruned(t).node_secrets == {}
    assert m.keys.pruned(g.tree) is m.keys


def test_generated_path_type() -> None:
    g = build_group(2)
    gen = g.commit(1)
    assert isinstance(gen, GeneratedPath)
    assert gen.path_secret_for(0) == gen.path_secrets[1]
    assert isinstance(RatchetTree.decode(g.tree.encode()), RatchetTree)
