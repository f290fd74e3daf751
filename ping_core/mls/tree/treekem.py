"""TreeKEM: UpdatePath generation and processing (RFC 9420 §7.4-7.6, §12.4.1-2).

* :func:`generate_update_path` — the committer's side: fresh leaf key pair
  and path secrets up the filtered direct path, node key pairs by
  ``DeriveKeyPair(DeriveSecret(path_secret, "node"))``, parent hashes, the
  re-signed leaf (``leaf_node_source = commit``), then each path secret
  encrypted with ``EncryptWithLabel(., "UpdatePathNode", provisional
  GroupContext, .)`` to every node in the resolution of the copath child,
  leaves added by the same commit excluded.
* :func:`process_update_path` — every other
  member's side: the path's length, keys and leaf are checked, the path is
  merged and its parent-hash chain verified (:func:`merge_update_path`, the
  part a non-member such as a delivery service can check too), the path
  secret decrypted where our subtree meets the sender's path, every later
  path secret derived and every derived public key compared with the one
  sent (:func:`decrypt_update_path`).
* :func:`path_keys_from_path_secret` — a joiner's private path keys from the
  Welcome's ``path_secret``.

The path secret chain: ``leaf_secret`` (random) gives the leaf key pair via
``DeriveSecret(leaf_secret, "node")``; ``path_secret[0] =
DeriveSecret(leaf_secret, "path")``; ``path_secret[n] =
DeriveSecret(path_secret[n-1], "path")``; ``commit_secret`` is one step past
the last one (``DeriveSecret(leaf_secret, "path")`` when the path is empty).

Private keys live in :class:`PathKeys` (never in the tree). These functions
mutate only the tree they are given — the caller's staged copy — and never
the caller's ``PathKeys``: on ``MlsError`` the caller discards its copy and
nothing else changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from ping_core.errors import CryptoError, DecryptionFailed, MlsDecodeError, MlsError, MlsReason, stored_state
from ping_core.mls.tls import Reader, Writer, decode_exact, decode_with
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.enums import LeafNodeSource
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.hpke import HPKECiphertext, UpdatePath, UpdatePathNode
from ping_core.mls.structs.leaf import LeafNode
from ping_core.mls.structs.limits import MAX_HASH

from ping_core.mls.hpke import derive_key_pair
from ping_core.mls.primitives import NH, LabeledEncryption, decrypt_with_label, derive_secret

from .leaves import HPKE_PUBLIC_KEY_LEN, check_leaf_content, sign_leaf_node
from .ratchet_tree import RatchetTree
from .treemath import common_ancestor, is_in_subtree
from .validation import check_leaf_in_tree

__all__ = [
    "PathKeys",
    "GeneratedPath",
    "ProcessedPath",
    "MakeLeaf",
    "GroupContextFor",
    "generate_update_path",
    "process_update_path",
    "MergedPath",
    "merge_update_path",
    "decrypt_update_path",
    "check_receiver",
    "path_keys_from_path_secret",
    "node_key_pair",
    "commit_leaf_maker",
]

MakeLeaf = Callable[[bytes, bytes], LeafNode]
"""``make_leaf(encryption_key, parent_hash)``: the committer's new leaf, signed (source commit)."""

GroupContextFor = Callable[[bytes], bytes]
"""``group_context_for(tree_hash)``: the encoded provisional GroupContext for that tree hash."""

_LABEL = b"UpdatePathNode"
_PATH_KEYS_VERSION = 1


def node_key_pair(crypto: CryptoProvider, path_secret: bytes) -> tuple[bytes, bytes]:
    """``(private, public)`` of the node a path secret belongs to:
    ``DeriveKeyPair(DeriveSecret(path_secret, "node"))`` (§7.4)."""
    return derive_key_pair(crypto, derive_secret(crypto, path_secret, b"node"))


@dataclass(frozen=True, eq=False, repr=False)
class PathKeys:
    """Our private HPKE keys in the tree: the leaf's and ``{node index: private key}``
    for the parent nodes on our direct path whose secrets we know.

    ``leaf_secret`` is the leaf's HPKE *private key* (not RFC 9420's
    ``leaf_secret``). Immutable: updates return a new object. Secrets never
    appear in ``repr``; :meth:`encode` is the form to store (encrypted).
    """

    leaf_secret: bytes
    node_secrets: dict[int, bytes]

    def __repr__(self) -> str:
        return f"PathKeys(nodes={sorted(self.node_secrets)})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PathKeys)
            and self.leaf_secret == other.leaf_secret
            and self.node_secrets == other.node_secrets
        )

    # Defining __eq__ without __hash__ makes instances unhashable (they are mutable).

    def encode(self) -> bytes:
        """``uint8 version = 1; opaque leaf<V>; struct { uint32 node; opaque key<V>; } nodes<V>``,
        nodes ascending (deterministic)."""
        w = Writer()
        w.u8(_PATH_KEYS_VERSION)
        w.opaque(self.leaf_secret)
        w.u32_map(self.node_secrets)
        return w.getvalue()

    @classmethod
    @stored_state
    def decode(cls, data: bytes) -> PathKeys:
        """Strict inverse of :meth:`encode`; ``MlsDecodeError`` otherwise."""
        return decode_with(cls._read, data)

    @classmethod
    def _read(cls, r: Reader) -> PathKeys:
        version = r.u8()
        if version != _PATH_KEYS_VERSION:
            raise MlsDecodeError(f"unknown PathKeys version {version}", reason=MlsReason.CORRUPT_STATE)
        leaf = r.opaque(MAX_HASH)
        nodes = r.u32_map(MAX_HASH)
        for node in nodes:
            if not node & 1:
                raise MlsDecodeError(f"PathKeys node {node} is not a parent node", reason=MlsReason.CORRUPT_STATE)
        return cls(leaf, nodes)

    def pruned(self, tree: RatchetTree) -> PathKeys:
        """Without the keys of nodes that are blank or no longer in ``tree`` (deleted for FS)."""
        n = tree.n_nodes
        kept = {x: k for x, k in self.node_secrets.items() if x < n and tree.node(x) is not None}
        return self if len(kept) == len(self.node_secrets) else PathKeys(self.leaf_secret, kept)


@dataclass(frozen=True, eq=False, repr=False)
class GeneratedPath:
    """What :func:`generate_update_path` produced.

    ``update_path`` goes into the Commit; ``commit_secret`` into the key
    schedule; ``keys`` are the committer's private keys once the commit is
    merged; ``path_secrets`` maps each node of the filtered direct path to its
    path secret (see :meth:`path_secret_for` for Welcomes).
    """

    leaf_index: int
    update_path: UpdatePath
    commit_secret: bytes
    keys: PathKeys
    path_secrets: dict[int, bytes]

    def __repr__(self) -> str:
        return f"GeneratedPath(leaf_index={self.leaf_index}, nodes={sorted(self.path_secrets)})"

    def path_secret_for(self, joiner_leaf: int) -> bytes | None:
        """The Welcome ``path_secret`` for a member added at ``joiner_leaf``: the path
        secret of the lowest common ancestor of the joiner's and our leaf (§12.4.3.1)."""
        return self.path_secrets.get(common_ancestor(2 * self.leaf_index, 2 * joiner_leaf))


@dataclass(frozen=True, eq=False, repr=False)
class ProcessedPath:
    """What :func:`process_update_path` learnt: ``commit_secret``, our new ``keys``,
    and the ``path_secret`` we decrypted, which belongs to node ``path_secret_node``."""

    commit_secret: bytes
    keys: PathKeys
    path_secret: bytes
    path_secret_node: int

    def __repr__(self) -> str:
        return f"ProcessedPath(path_secret_node={self.path_secret_node}, keys={self.keys!r})"


def commit_leaf_maker(
    crypto: CryptoProvider,
    base: LeafNode,
    signature_secret: bytes,
    group_id: bytes,
    leaf_index: int,
) -> MakeLeaf:
    """A ``make_leaf`` that copies ``base`` (credential, keys, capabilities,
    extensions), sets the new encryption key, source commit and parent hash,
    and signs it for ``group_id`` at ``leaf_index``."""

    def make(encryption_key: bytes, parent_hash: bytes) -> LeafNode:
        leaf = LeafNode(
            encryption_key,
            base.signature_key,
            base.credential,
            base.capabilities,
            LeafNodeSource.COMMIT,
            None,
            parent_hash,
            base.extensions,
        )
        return sign_leaf_node(crypto, leaf, signature_secret, group_id, leaf_index)

    return make


def _excluded_nodes(exclude: Iterable[int]) -> frozenset[int]:
    return frozenset(2 * leaf for leaf in exclude)


def generate_update_path(
    crypto: CryptoProvider,
    tree: RatchetTree,
    leaf_index: int,
    *,
    make_leaf: MakeLeaf,
    group_context_for: GroupContextFor,
    exclude: Iterable[int] = (),
    leaf_secret: bytes | None = None,
) -> GeneratedPath:
    """Create an UpdatePath from ``leaf_index`` and merge it into ``tree`` (§7.4-7.6, §12.4.1).

    ``tree`` is the caller's staged copy with the commit's proposals applied;
    it is extended first if ``leaf_index`` lies beyond it (external commit).
    Afterwards it holds the new path keys, parent hashes and the new leaf
    from ``make_leaf(encryption_key, parent_hash)``, which must carry exactly
    those two values with source commit (``MlsError`` otherwise). The tree
    hash of the result is passed to ``group_context_for`` and the returned
    provisional GroupContext bytes are the encryption context. ``exclude``
    lists the leaf indices added by this commit. ``leaf_secret`` (``Nh``
    random bytes when ``None``) makes the path reproducible for tests.
    """
    tree.ensure_leaf(leaf_index)
    pairs = tree.filtered_direct_path_with_copath(leaf_index)
    if leaf_secret is None:
        leaf_secret = crypto.random(NH)
    elif len(leaf_secret) != NH:
        raise MlsError(f"leaf_secret must be {NH} bytes", reason=MlsReason.INVALID_ARGUMENT)
    leaf_priv, leaf_pub = node_key_pair(crypto, leaf_secret)
    path_secrets: dict[int, bytes] = {}
    node_privs: dict[int, bytes] = {}
    publics: list[bytes] = []
    secret = leaf_secret
    for p, _ in pairs:
        secret = derive_secret(crypto, secret, b"path")
        path_secrets[p] = secret
        priv, pub = node_key_pair(crypto, secret)
        node_privs[p] = priv
        publics.append(pub)
    commit_secret = derive_secret(crypto, secret, b"path")

    parent_hash = tree.merge_path(crypto, leaf_index, publics)
    leaf = make_leaf(leaf_pub, parent_hash)
    if type(leaf) is not LeafNode:
        raise MlsError("make_leaf must return a LeafNode", reason=MlsReason.INVALID_ARGUMENT)
    if leaf.encryption_key != leaf_pub or leaf.parent_hash != parent_hash:
        raise MlsError("make_leaf must use the given encryption key and parent hash", reason=MlsReason.INVALID_ARGUMENT)
    if leaf.leaf_node_source != LeafNodeSource.COMMIT:
        raise MlsError("an UpdatePath leaf node has leaf_node_source commit", reason=MlsReason.INVALID_ARGUMENT)
    tree.set_leaf(leaf_index, leaf)

    context = group_context_for(tree.tree_hash(crypto))
    nodes = _encrypt_path_secrets(crypto, tree, pairs, path_secrets, publics, context, _excluded_nodes(exclude))
    return GeneratedPath(
        leaf_index,
        UpdatePath(leaf, tuple(nodes)),
        commit_secret,
        PathKeys(leaf_priv, node_privs),
        path_secrets,
    )


def _encrypt_path_secrets(
    crypto: CryptoProvider,
    tree: RatchetTree,
    pairs: list[tuple[int, int]],
    path_secrets: dict[int, bytes],
    publics: list[bytes],
    context: bytes,
    excluded: frozenset[int],
) -> list[UpdatePathNode]:
    """The UpdatePath nodes (§7.6): each path secret encrypted with
    ``EncryptWithLabel(., "UpdatePathNode", context, .)`` to every node of its
    copath child's resolution but the ``excluded`` (newly added) leaves."""
    # One HPKE info (the new GroupContext) for every path secret: hashed once.
    sealer = LabeledEncryption(crypto, _LABEL, context)
    # Every path secret to every node of its copath child's resolution, as ONE
    # batch of encryptions (one crossing per kind of operation in the browser).
    counts: list[int] = []
    items: list[tuple[bytes, bytes]] = []
    for p, s in pairs:
        secret = path_secrets[p]
        before = len(items)
        for r in tree.resolution(s):
            if r in excluded:
                continue
            target = tree.node(r)
            assert target is not None
            items.append((target.encryption_key, secret))
        counts.append(len(items) - before)
    sealed = iter(sealer.encrypt_many(items))
    nodes: list[UpdatePathNode] = []
    for count, pub in zip(counts, publics):
        cts = tuple(HPKECiphertext(*next(sealed)) for _ in range(count))
        nodes.append(UpdatePathNode(pub, cts))
    return nodes


@dataclass(frozen=True, eq=False)
class MergedPath:
    """An UpdatePath verified and merged into a tree by :func:`merge_update_path`.

    ``pairs``: the sender's filtered direct path with each node's copath child
    (§4.1.2); ``resolutions``: for each of them, the copath child's resolution
    without the excluded (newly added) leaves, one ciphertext each;
    ``context``: the encoded provisional GroupContext the path secrets are
    encrypted to.
    """

    pairs: list[tuple[int, int]]
    resolutions: list[list[int]]
    context: bytes


def merge_update_path(
    crypto: CryptoProvider,
    tree: RatchetTree,
    sender: int,
    update_path: UpdatePath,
    *,
    group_context_for: GroupContextFor,
    exclude: Iterable[int] = (),
) -> MergedPath:
    """Verify the public part of ``sender``'s UpdatePath and merge it into ``tree``
    (§7.5, §7.9, §12.4.2): what anyone holding the public tree can check, a
    member or a delivery service.

    ``tree`` is the caller's staged copy with the commit's proposals applied
    (extended first if ``sender`` lies beyond it: external commit). Checked,
    each failure an ``MlsError`` naming it: the number of path nodes equals
    the sender's filtered direct path; every ciphertext list has one entry
    per resolution node (``exclude`` — leaves added by this commit — left
    out); the path's encryption keys are X25519-sized, distinct and new to
    the tree; the leaf (source commit) has an encryption key new to the tree
    and a signature key no other member has, supports the group, and its
    signature verifies (group_id from the provisional GroupContext, leaf index
    ``sender``); its parent_hash equals the one the merged path gives (the
    parent-hash chain of §7.9.2 along the new path). On failure ``tree`` may
    be partly changed: discard it.
    """
    excluded = _excluded_nodes(exclude)
    tree.ensure_leaf(sender)
    pairs = tree.filtered_direct_path_with_copath(sender)
    path_nodes = update_path.nodes
    if len(path_nodes) != len(pairs):
        raise MlsError(f"the UpdatePath has {len(path_nodes)} nodes but the sender's filtered direct path has {len(pairs)}", reason=MlsReason.BAD_PATH)
    resolutions: list[list[int]] = []
    for (p, s), upn in zip(pairs, path_nodes):
        res = [r for r in tree.resolution(s) if r not in excluded]
        if len(upn.encrypted_path_secret) != len(res):
            raise MlsError(
                f"UpdatePath node for {p} has {len(upn.encrypted_path_secret)} ciphertexts "
                f"for a copath resolution of {len(res)}",
                reason=MlsReason.BAD_PATH,
            )
        resolutions.append(res)

    leaf = update_path.leaf_node
    if type(leaf) is not LeafNode:
        raise MlsError("the UpdatePath leaf is not a LeafNode", reason=MlsReason.MALFORMED)
    seen: set[bytes] = {leaf.encryption_key}
    for i, upn in enumerate(path_nodes):
        key = upn.encryption_key
        if len(key) != HPKE_PUBLIC_KEY_LEN:
            raise MlsError(f"UpdatePath node {pairs[i][0]}: the encryption key is not a {HPKE_PUBLIC_KEY_LEN}-byte X25519 key", reason=MlsReason.BAD_PATH)
        if key in seen or tree.has_encryption_key(key):
            raise MlsError(f"UpdatePath node {pairs[i][0]}: the encryption key is already used", reason=MlsReason.BAD_PATH)
        seen.add(key)
    check_leaf_in_tree(tree, leaf, replaces=sender)

    parent_hash = tree.merge_path(crypto, sender, [upn.encryption_key for upn in path_nodes])
    if leaf.parent_hash != parent_hash:
        raise MlsError("the UpdatePath leaf's parent_hash does not match the merged path", reason=MlsReason.BAD_PARENT_HASH)
    tree.set_leaf(sender, leaf)
    context = group_context_for(tree.tree_hash(crypto))
    try:
        gc = decode_exact(GroupContext, context)
    except MlsDecodeError as exc:
        raise MlsError(f"group_context_for returned a malformed GroupContext: {exc}", reason=MlsReason.INVALID_ARGUMENT) from None
    check_leaf_content(crypto, leaf, sender, gc, source=LeafNodeSource.COMMIT)
    return MergedPath(pairs, resolutions, context)


def decrypt_update_path(
    crypto: CryptoProvider,
    tree: RatchetTree,
    sender: int,
    update_path: UpdatePath,
    merged: MergedPath,
    *,
    own_leaf: int,
    own_keys: PathKeys,
) -> ProcessedPath:
    """Our side of an UpdatePath that :func:`merge_update_path` merged into ``tree``
    (§12.4.2): decrypt the path secret where our subtree meets the sender's
    path (``DecryptionFailed`` otherwise), derive every later one and check
    each derived public key equals the one in the path (``MlsError``).
    ``own_keys`` is not modified; the result carries our new keys (keys of the
    sender's direct path replaced, keys of blank nodes dropped)."""
    own_node = 2 * own_leaf
    pairs, path_nodes = merged.pairs, update_path.nodes
    # Where our subtree meets the sender's path: the copath child containing our leaf.
    pos = next((i for i, (_, s) in enumerate(pairs) if is_in_subtree(s, own_node)), -1)
    if pos < 0:
        raise MlsError("our leaf is not below the sender's filtered direct path", reason=MlsReason.BAD_PATH)
    target_res = merged.resolutions[pos]

    # Decrypt with the first resolution node we hold a key for: our leaf or
    # one of our ancestors.
    p0, s0 = pairs[pos]
    found: tuple[int, int, bytes] | None = None
    for j, r in enumerate(target_res):
        if r == own_node:
            found = (j, r, own_keys.leaf_secret)
            break
        node_key = own_keys.node_secrets.get(r)
        if node_key is not None and is_in_subtree(r, own_node):
            found = (j, r, node_key)
            break
    if found is None:
        raise MlsError(f"we hold no private key for any node of the resolution of copath node {s0}", reason=MlsReason.BAD_PATH)
    j, r, priv = found
    ct = path_nodes[pos].encrypted_path_secret[j]
    holder = tree.node(r)
    assert holder is not None
    try:
        path_secret = decrypt_with_label(
            crypto, priv, _LABEL, merged.context, ct.kem_output, ct.ciphertext, public=holder.encryption_key
        )
    except CryptoError as exc:
        raise DecryptionFailed(f"the path secret for node {p0} does not decrypt with node {r}'s key ({exc})", reason=MlsReason.DECRYPTION_FAILED) from None
    if len(path_secret) != NH:
        raise MlsError(f"the path secret for node {p0} is {len(path_secret)} bytes, not {NH}", reason=MlsReason.BAD_PATH)

    derived: dict[int, bytes] = {}
    secret = path_secret
    for (p, _), upn in zip(pairs[pos:], path_nodes[pos:]):
        node_priv, node_pub = node_key_pair(crypto, secret)
        if node_pub != upn.encryption_key:
            raise MlsError(f"the public key derived for node {p} does not match the UpdatePath", reason=MlsReason.BAD_PATH)
        derived[p] = node_priv
        secret = derive_secret(crypto, secret, b"path")

    on_path = set(tree.direct_path(2 * sender))
    n = tree.n_nodes
    kept = {
        x: k
        for x, k in own_keys.node_secrets.items()
        if x not in on_path and x < n and tree.node(x) is not None
    }
    kept.update(derived)
    return ProcessedPath(secret, PathKeys(own_keys.leaf_secret, kept), path_secret, p0)


def process_update_path(
    crypto: CryptoProvider,
    tree: RatchetTree,
    sender: int,
    update_path: UpdatePath,
    *,
    own_leaf: int,
    own_keys: PathKeys,
    group_context_for: GroupContextFor,
    exclude: Iterable[int] = (),
) -> ProcessedPath:
    """Verify the UpdatePath of ``sender``, merge it into ``tree`` and decrypt it (§7.5, §12.4.2):
    :func:`merge_update_path` (every public check), then
    :func:`decrypt_update_path` (our path secret and the keys it derives).

    ``own_keys`` is not modified; the result carries our new keys (keys of
    the sender's direct path replaced, keys of blank nodes dropped).
    """
    check_receiver(tree, sender, own_leaf, exclude)
    merged = merge_update_path(crypto, tree, sender, update_path, group_context_for=group_context_for, exclude=exclude)
    return decrypt_update_path(crypto, tree, sender, update_path, merged, own_leaf=own_leaf, own_keys=own_keys)


def check_receiver(tree: RatchetTree, sender: int, own_leaf: int, exclude: Iterable[int] = ()) -> None:
    """We may process ``sender``'s UpdatePath: we are not its sender, not added by
    the same commit (a joiner's path secret comes in the Welcome), and our leaf
    is in ``tree``. ``MlsError`` otherwise."""
    if sender == own_leaf:
        raise MlsError("the committer does not process its own UpdatePath (it keeps its GeneratedPath)", reason=MlsReason.INVALID_ARGUMENT)
    if 2 * own_leaf in _excluded_nodes(exclude):
        raise MlsError("a member added by this commit gets its path secret from the Welcome", reason=MlsReason.INVALID_ARGUMENT)
    if tree.leaf(own_leaf) is None:
        raise MlsError(f"our leaf {own_leaf} is blank in this tree", reason=MlsReason.BAD_TREE)


def path_keys_from_path_secret(
    crypto: CryptoProvider,
    tree: RatchetTree,
    own_leaf: int,
    start_node: int | None,
    path_secret: bytes | None,
    leaf_secret: bytes,
) -> PathKeys:
    """A joiner's private keys (§12.4.3.1).

    ``leaf_secret`` is the private key of our leaf's encryption key (from our
    KeyPackage) and must match the tree. ``path_secret`` from the Welcome (or
    ``None`` when the commit had no path) belongs to ``start_node``, the
    lowest common ancestor of our leaf and the committer's
    (:func:`~ping_core.mls.tree.treemath.common_ancestor` of the two leaves' nodes); the secrets of the
    non-blank nodes above it follow by ``DeriveSecret(., "path")``. Every
    derived public key must equal the node's (``MlsError`` otherwise).
    """
    own = tree.leaf(own_leaf)
    if own is None:
        raise MlsError(f"our leaf {own_leaf} is blank in this tree", reason=MlsReason.BAD_TREE)
    if crypto.dh_public(leaf_secret) != own.encryption_key:
        raise MlsError("our leaf's private key does not match its encryption key in the tree", reason=MlsReason.BAD_PATH)
    nodes: dict[int, bytes] = {}
    if path_secret is None:
        return PathKeys(leaf_secret, nodes)
    if start_node is None or not start_node & 1 or not 0 <= start_node < tree.n_nodes:
        raise MlsError("a path secret needs the parent node it belongs to", reason=MlsReason.BAD_PATH)
    if not is_in_subtree(start_node, 2 * own_leaf):
        raise MlsError(f"node {start_node} is not an ancestor of our leaf {own_leaf}", reason=MlsReason.BAD_PATH)
    if tree.node(start_node) is None:
        raise MlsError(f"the Welcome's path secret is for node {start_node}, which is blank", reason=MlsReason.BAD_PATH)
    secret = path_secret
    for x in [start_node, *tree.direct_path(start_node)]:
        node = tree.node(x)
        if node is None:
            continue  # not on the committer's filtered direct path
        priv, pub = node_key_pair(crypto, secret)
        if pub != node.encryption_key:
            raise MlsError(f"the public key derived for node {x} does not match the tree", reason=MlsReason.BAD_PATH)
        nodes[x] = priv
        secret = derive_secret(crypto, secret, b"path")
    return PathKeys(leaf_secret, nodes)

