"""Validation of a ratchet tree and of a leaf entering it (RFC 9420 §7.3, §7.9.2, §12.4.3.1).

* :func:`verify_leaf` — a leaf about to enter a tree (Add, Update,
  UpdatePath): :func:`~ping_core.mls.tree.leaves.check_leaf_content`, then
  :func:`check_leaf_in_tree` (keys new to the tree, credential types
  compatible with every other member);
* :func:`validate_tree` — the full validation of a tree a new member
  receives (§12.4.3.1), built from :func:`check_unmerged_leaves`,
  :func:`check_parent_hashes` and the leaf checks.

Every check raises an :class:`~ping_core.errors.MlsError`
(``InvalidSignature`` for a signature) naming the first failure, and changes
nothing in the tree (only its caches may be filled).
"""

from __future__ import annotations

from typing import cast

from ping_core.errors import CryptoError, InvalidSignature, MlsError, MlsReason
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.crypto.provider import prefetch_verify, wants_prefetch
from ping_core.mls.primitives import sign_content, verify_with_label
from ping_core.mls.structs.enums import LeafNodeSource
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.leaf import LeafNode
from ping_core.mls.structs.tree_nodes import ParentNode

from .leaves import (
    HPKE_PUBLIC_KEY_LEN,
    LEAF_NODE_TBS_LABEL,
    check_leaf_content,
    leaf_tbs,
    required_capabilities,
)
from .ratchet_tree import RatchetTree
from .treemath import MAX_LEAF_WIDTH, children, full_parent, span

__all__ = [
    "verify_leaf",
    "check_leaf_in_tree",
    "check_leaf_signatures",
    "check_parent_hashes",
    "check_unmerged_leaves",
    "validate_tree",
]


def verify_leaf(
    tree: RatchetTree,
    crypto: CryptoProvider,
    leaf: LeafNode,
    leaf_index: int | None,
    group_context: GroupContext,
    *,
    source: LeafNodeSource,
    now_s: int | None = None,
    max_lifetime_s: int | None = None,
) -> None:
    """Validate a leaf that is about to enter ``tree`` (§7.3).

    ``source`` is where it comes from: ``key_package`` (an Add; the
    caller checks the KeyPackage itself, §10.1), ``update`` (an Update
    proposal by ``leaf_index``) or ``commit`` (the leaf of an UpdatePath
    by ``leaf_index``). Checked: the leaf_node_source; the signature (over
    group_id and ``leaf_index`` for update and commit leaves); support for
    the group's version, cipher suite, required_capabilities and every
    GroupContext extension; its own extensions listed in its
    capabilities, no type twice; credential type compatibility with every
    other member both ways; an X25519-sized encryption key that no node
    of the tree has (so an Update or commit leaf must bring a new one); a
    signature key no other member has; for key_package leaves, a total
    lifetime (``not_after - not_before``) of at most ``max_lifetime_s``
    (§7.2; ``None``, the default, sets no maximum) and, with ``now_s``, a
    lifetime that covers it.
    Credential validation by the application's authentication service
    (§5.3.1) is the caller's.
    """
    if type(leaf) is not LeafNode:
        raise MlsError(f"expected a LeafNode, not {type(leaf).__name__}", reason=MlsReason.INVALID_ARGUMENT)
    replaced: int | None = None
    if source != LeafNodeSource.KEY_PACKAGE:
        if leaf_index is None or not 0 <= leaf_index < MAX_LEAF_WIDTH:
            raise MlsError(
                "update and commit leaves are verified at their (valid) leaf index",
                reason=MlsReason.INVALID_ARGUMENT,
            )
        replaced = leaf_index
    check_leaf_content(crypto, leaf, leaf_index, group_context, source=source, now_s=now_s, max_lifetime_s=max_lifetime_s)
    check_leaf_in_tree(tree, leaf, replaces=replaced)


def check_leaf_in_tree(tree: RatchetTree, leaf: LeafNode, *, replaces: int | None) -> None:
    """The part of :func:`verify_leaf` that compares the leaf with the tree (§7.3).

    Its encryption key must be new to the tree (every node, the replaced
    leaf included); its signature key must not be another member's; its
    credential type must be supported by every other member and it must
    support theirs. ``replaces`` is the leaf index it will replace (update
    and commit leaves), whose member does not count as "other".
    """
    idx = tree.key_index()
    old = tree.leaf(replaces) if replaces is not None and 0 <= replaces < tree.n_leaves else None
    where = f"leaf {replaces}" if replaces is not None else "new leaf"
    if leaf.encryption_key in idx.enc:
        raise MlsError(f"{where}: its encryption key is already used in the tree", reason=MlsReason.BAD_LEAF)
    n = idx.sig.get(leaf.signature_key, 0)
    if old is not None and old.signature_key == leaf.signature_key:
        n -= 1
    if n > 0:
        raise MlsError(f"{where}: its signature key is already used by another member", reason=MlsReason.BAD_LEAF)
    # Credential types: the other members' (the replaced leaf's excluded).
    ctype = leaf.credential.credential_type
    ccaps_own = leaf.capabilities.credentials
    old_ctype = old.credential.credential_type if old is not None else None
    old_ccaps = old.capabilities.credentials if old is not None else None
    for t, count in idx.ctype.items():
        if t == old_ctype:
            count -= 1
        if count > 0 and t not in ccaps_own:
            raise MlsError(
                f"{where}: does not support credential type {t} used by another member",
                reason=MlsReason.UNSUPPORTED,
            )
    for caps, count in idx.ccaps.items():
        if caps == old_ccaps:
            count -= 1
        if count > 0 and ctype not in caps:
            raise MlsError(
                f"{where}: its credential type {ctype} is not supported by every member",
                reason=MlsReason.UNSUPPORTED,
            )


def check_leaf_signatures(tree: RatchetTree, crypto: CryptoProvider, group_id: bytes) -> None:
    """Verify every leaf's signature (§7.2; group_id and leaf index for update/commit leaves)."""
    for i, leaf in tree.members():
        tbs = leaf_tbs(leaf, i, group_id, tree.encoding(2 * i))
        try:
            verify_with_label(crypto, leaf.signature_key, LEAF_NODE_TBS_LABEL, tbs, leaf.signature)
        except CryptoError as exc:
            raise InvalidSignature(
                f"leaf {i}: the leaf node signature does not verify ({exc})",
                reason=MlsReason.BAD_SIGNATURE,
            ) from None


def check_parent_hashes(tree: RatchetTree, crypto: CryptoProvider) -> None:
    """Every non-blank parent node is parent-hash valid (§7.9.2), "top down".

    For each non-blank parent P exactly one descendant D must have a
    parent hash valid with respect to P: D's parent_hash equals P's
    parent hash with copath child S, D is in the resolution of the other
    child C, and the rest of C's resolution is exactly P's unmerged leaves
    under C. Since every non-blank parent is checked, each one chains down
    to a leaf.
    """
    nodes = tree.nodes
    # Each child's resolution is computed once: a node is the child of one parent.
    resolutions: dict[int, list[int]] = {}
    for p, node in tree.parents():
        left, right = children(p)
        unmerged = {2 * leaf for leaf in node.unmerged_leaves}
        valid = 0
        for c, s in ((left, right), (right, left)):
            lo, hi = span(c)
            under_c = {u for u in unmerged if lo <= u <= hi}
            rc = resolutions.get(c)
            if rc is None:
                rc = resolutions[c] = tree.resolution(c)
            if len(rc) != len(under_c) + 1:
                continue
            rest = [r for r in rc if r not in under_c]
            if len(rest) != 1:
                continue
            d = nodes[rest[0]]
            assert d is not None  # a resolution holds non-blank nodes only
            ph = d.parent_hash
            if not ph:  # a key_package/update leaf, or the root's empty hash
                continue
            if ph == tree.parent_hash_of(crypto, p, s):
                valid += 1
        if valid != 1:
            why = "no descendant links to it" if valid == 0 else "two descendants link to it"
            raise MlsError(f"parent node {p} is not parent-hash valid ({why})", reason=MlsReason.BAD_PARENT_HASH)


def check_unmerged_leaves(tree: RatchetTree) -> None:
    """§12.4.3.1: every unmerged leaf is a non-blank leaf under its parent, listed once,
    and also listed by every non-blank node between it and that parent."""
    nodes = tree.nodes
    for p, node in tree.parents():
        lo, hi = span(p)
        seen: set[int] = set()
        for leaf in node.unmerged_leaves:
            x = 2 * leaf
            if not lo <= x <= hi:
                raise MlsError(
                    f"parent node {p}: unmerged leaf {leaf} is not in its subtree",
                    reason=MlsReason.BAD_TREE,
                )
            if leaf in seen:
                raise MlsError(f"parent node {p}: unmerged leaf {leaf} is listed twice", reason=MlsReason.BAD_TREE)
            seen.add(leaf)
            if nodes[x] is None:
                raise MlsError(f"parent node {p}: unmerged leaf {leaf} is blank", reason=MlsReason.BAD_TREE)
            y = full_parent(x)
            while y != p:
                mid = cast("ParentNode | None", nodes[y])
                if mid is not None and leaf not in mid.unmerged_leaves:
                    raise MlsError(
                        f"parent node {p}: unmerged leaf {leaf} is missing from node {y}'s unmerged leaves",
                        reason=MlsReason.BAD_TREE,
                    )
                y = full_parent(y)


def validate_tree(
    tree: RatchetTree,
    crypto: CryptoProvider,
    group_context: GroupContext,
    *,
    own_leaf: int | None = None,
    now_s: int | None = None,
    max_lifetime_s: int | None = None,
) -> None:
    """Full validation of a tree received on joining (§12.4.3.1, §7.3, §7.9.2).

    Checks, in order of cost: the tree hash equals
    ``group_context.tree_hash``; unmerged leaves are well formed; every
    encryption key (leaves and parents) and every signature key is
    unique; every credential type in use is supported by every member;
    every non-blank parent is parent-hash valid; then every leaf: it
    supports the group's version, cipher suite, required_capabilities and
    GroupContext extensions and lists its own extension types; with
    ``now_s``, every key_package leaf's lifetime covers it (``None`` skips
    that: §7.3 only recommends the check for received leaves, and reading
    the clock is the caller's); with ``max_lifetime_s``, no key_package
    leaf's lifetime spans more (§7.2, checked with or without ``now_s``);
    its signature verifies. ``own_leaf``, when given, must be a non-blank
    leaf. Raises ``MlsError`` / ``InvalidSignature`` naming the first failure.
    """
    gc = group_context
    if tree.tree_hash(crypto) != gc.tree_hash:
        raise MlsError("the ratchet tree's hash does not match the GroupContext's tree_hash", reason=MlsReason.BAD_TREE)
    if own_leaf is not None and (not 0 <= own_leaf < tree.n_leaves or tree.leaf(own_leaf) is None):
        raise MlsError(f"our leaf {own_leaf} is not in the tree", reason=MlsReason.BAD_TREE)
    check_unmerged_leaves(tree)
    _check_keys(tree)
    req = required_capabilities(gc.extensions)
    check_parent_hashes(tree, crypto)
    members = list(tree.members())
    if wants_prefetch(crypto):
        # Every leaf signature is verified below, one by one in order; a
        # provider with a per-call cost verifies them all in one batch now.
        signed = []
        for i, member in members:
            tbs = leaf_tbs(member, i, gc.group_id, tree.encoding(2 * i))
            signed.append((member.signature_key, sign_content(LEAF_NODE_TBS_LABEL, tbs), member.signature))
        prefetch_verify(crypto, signed)
    for i, leaf in members:
        check_leaf_content(
            crypto,
            leaf,
            i,
            gc,
            source=leaf.leaf_node_source,
            now_s=now_s,
            max_lifetime_s=max_lifetime_s,
            enc=tree.encoding(2 * i),
            required=req,
        )


def _check_keys(tree: RatchetTree) -> None:
    """§12.4.3.1: parent keys are X25519-sized; encryption and signature keys are
    unique; every credential type in use is supported by every member."""
    for x, p in tree.parents():
        if len(p.encryption_key) != HPKE_PUBLIC_KEY_LEN:
            raise MlsError(
                f"parent node {x}: the encryption key is not a {HPKE_PUBLIC_KEY_LEN}-byte X25519 key",
                reason=MlsReason.BAD_TREE,
            )
    # The index counts every node: a count of 2 or more is a duplicate.
    idx = tree.key_index()
    if any(count > 1 for count in idx.enc.values()):
        raise MlsError("an encryption key appears in more than one node of the tree", reason=MlsReason.BAD_TREE)
    if any(count > 1 for count in idx.sig.values()):
        raise MlsError("a signature key is used by more than one member", reason=MlsReason.BAD_TREE)
    for caps in idx.ccaps:
        for t in idx.ctype:
            if t not in caps:
                raise MlsError(
                    f"credential type {t} is in use but not supported by every member",
                    reason=MlsReason.UNSUPPORTED,
                )
