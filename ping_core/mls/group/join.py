"""Joining a group: from a Welcome (RFC 9420 §12.4.3.1) or by external commit (§12.4.3.2).

Both verify the GroupInfo's signature with the signer's leaf in the ratchet
tree (from the ratchet_tree extension, or given out of band) and validate the
whole tree (tree hash, parent hashes, every leaf) before anything is built.
A Welcome that resumes another group (reinit §11.2, branch §11.3) is checked
against that group by :mod:`.resumption`.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from ping_core.errors import MlsError, MlsReason
from ping_core.mls import hpke
from ping_core.mls.tls import decode_exact, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.primitives import sign_with_label
from ping_core.mls.schedule.psk_secret import psk_secret as compute_psk_secret
from ping_core.mls.schedule.key_schedule import epoch_secrets
from ping_core.mls.structs import (
    AuthenticatedContent,
    Capabilities,
    Commit,
    ExternalInit,
    ExternalPub,
    FramedContent,
    FramedContentAuthData,
    GroupInfo,
    LeafNode,
    LeafNodeSource,
    MLSMessage,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProtocolVersion,
    PSKType,
    PublicMessage,
    Remove,
    ResumptionPSKUsage,
    Sender,
    Welcome,
    WireFormat,
    find_extension,
    framed_content_tbs,
    has_unique_types,
)
from ping_core.mls.structs.tree_nodes import RatchetTree as RatchetTreeExt
from ping_core.mls.schedule.transcript import confirmation_tag, confirmed_transcript_hash, interim_transcript_hash
from ping_core.mls.tree import RatchetTree, common_ancestor, validate_tree
from ping_core.mls.tree.treekem import PathKeys, commit_leaf_maker, generate_update_path, path_keys_from_path_secret
from ping_core.mls.welcome_seal import decrypt_welcome, verify_group_info

from .commit import EXTERNAL_INIT_LABEL, context_bytes_for, next_group_context
from .config import SUITE, GroupConfig, default_capabilities
from .keypackage import KeyPackageBundle, Signer
from .messages import PUBLIC_PREFIX
from ping_core.mls.group.psk_sources import PskSource, resolve_psks
from .results import Clock, ExtensionsCheck, LeafCheck
from .resumption import check_branch_members, check_resumption_welcome, resumption_psk_lookup
from .epoch import EpochState
from .state import GroupState
from .validate import check_leaf_supports_group, validate_resumption_links

__all__ = [
    "join_welcome",
    "join_external",
    "welcome_key_package_refs",
    "group_info_of",
    "verified_group_info",
    "check_group_info",
    "signer_leaf",
    "seconds_of",
]

_NH = 32


def _welcome_of(data: bytes) -> Welcome:
    if data[:4] == b"\x00\x01\x00\x03":
        body = decode_exact(MLSMessage, data).body
        if not isinstance(body, Welcome):  # pragma: no cover - the prefix says it is
            raise MlsError("not a Welcome", reason=MlsReason.MALFORMED)
        return body
    if data[:2] == b"\x00\x01" and len(data) > 4 and data[2:4] != b"\x00\x01":
        raise MlsError("an MLSMessage that is not a Welcome", reason=MlsReason.MALFORMED)
    return decode_exact(Welcome, data)


def welcome_key_package_refs(welcome: bytes) -> list[bytes]:
    """The KeyPackageRefs a Welcome (MLSMessage bytes) is encrypted to."""
    return [s.new_member for s in _welcome_of(welcome).secrets]


def _bundles(value: KeyPackageBundle | Iterable[KeyPackageBundle] | Mapping[bytes, KeyPackageBundle]) -> dict[bytes, KeyPackageBundle]:
    if isinstance(value, KeyPackageBundle):
        return {value.ref: value}
    if isinstance(value, Mapping):
        return dict(value)
    return {b.ref: b for b in value}


def _tree_from(info: GroupInfo, given: bytes | None) -> RatchetTree:
    ext = find_extension(info.extensions, RatchetTreeExt.EXTENSION_TYPE)
    if ext is not None:
        return RatchetTree.decode(ext.extension_data)
    if given is not None:
        return RatchetTree.decode(given)
    raise MlsError("no ratchet tree: the GroupInfo carries none and none was given", reason=MlsReason.BAD_WELCOME)


def signer_leaf(tree: RatchetTree, info: GroupInfo) -> LeafNode:
    leaf = tree.leaf(info.signer) if 0 <= info.signer < tree.n_leaves else None
    if leaf is None:
        raise MlsError(f"the GroupInfo signer {info.signer} is a blank leaf", reason=MlsReason.UNKNOWN_SENDER)
    return leaf


def seconds_of(clock: Clock) -> int:
    """The application's clock in whole seconds."""
    return int(clock())


def check_group_info(info: GroupInfo) -> None:
    """A GroupInfo of MLS 1.0 and our cipher suite, without duplicate extension types."""
    gc = info.group_context
    if gc.version != ProtocolVersion.MLS10 or gc.cipher_suite != SUITE:
        raise MlsError("the GroupInfo is for another protocol version or cipher suite", reason=MlsReason.UNSUPPORTED)
    if not has_unique_types(info.extensions) or not has_unique_types(gc.extensions):
        raise MlsError("duplicate extension types in the GroupInfo", reason=MlsReason.BAD_WELCOME)


def join_welcome(
    crypto: CryptoProvider,
    welcome: bytes,
    key_packages: KeyPackageBundle | Iterable[KeyPackageBundle] | Mapping[bytes, KeyPackageBundle],
    signer: Signer,
    *,
    ratchet_tree: bytes | None = None,
    config: GroupConfig | None = None,
    psks: PskSource = None,
    reinit_from: GroupState | None = None,
    branch_from: GroupState | None = None,
    clock: Clock,
    check_lifetimes: bool = True,
    max_lifetime_s: int | None = None,
    leaf_check: LeafCheck | None = None,
    extensions_check: ExtensionsCheck | None = None,
) -> GroupState:
    """Join the group a Welcome (MLSMessage or bare Welcome bytes) invites us to.

    ``key_packages``: our bundle(s) (the one the Welcome names is used), made by
    ``signer``. ``ratchet_tree``: the tree out of band, when the GroupInfo lacks
    it. ``psks``: external PSKs the Welcome may list.
    ``reinit_from``: for the Welcome of a reinitialised group (§11.2), the old
    group, whose ReInit the new group must match and whose resumption PSK the
    Welcome uses. ``branch_from``: for the Welcome of a subgroup branched off
    a group (§11.3), that group at the epoch the branch PSK names; the new
    group must keep its version and cipher suite, have another group id, and
    each of its leaves must be a client of it (same credential and signature
    key). See :mod:`.resumption`. ``check_lifetimes``: every leaf of the
    tree that still carries its KeyPackage's lifetime must cover the
    current time (``clock``), as §7.3 recommends; pass ``False`` where
    members may go months without an Update, since one such member would
    otherwise make the group unjoinable. ``max_lifetime_s``: no leaf of
    the tree that carries a KeyPackage's lifetime may span more (§7.2,
    checked even without ``check_lifetimes``); the group keeps it as its
    :attr:`.Group.max_lifetime_s`. ``leaf_check`` (:attr:`.Group.leaf_check`) is
    called as ``leaf_check(leaf, None)`` for every leaf once the tree validated;
    it and ``extensions_check`` default to the old group's of a reinit or branch.
    ``MlsError`` (or what a hook raised) for anything that does not verify;
    nothing is kept then, and the old group is never changed.
    """
    cfg = config or GroupConfig()
    w = _welcome_of(welcome)
    bundle = _our_bundle(w, _bundles(key_packages), signer)
    kp = bundle.key_package
    trees: list[RatchetTree] = []

    def signer_key(info: GroupInfo) -> bytes:
        check_group_info(info)
        tree = _tree_from(info, ratchet_tree)
        trees.append(tree)
        return signer_leaf(tree, info).signature_key

    psk_lookup = resumption_psk_lookup(reinit_from, branch_from, lambda psk: resolve_psks([psk], psks)[0][1])
    joined = decrypt_welcome(
        crypto, w, bundle.ref, bundle.init_private, signer_key, init_public_key=kp.init_key, psk_lookup=psk_lookup
    )
    _check_welcome_psks(joined.psk_ids, joined.group_info.group_context.epoch)
    info = joined.group_info
    gc = info.group_context
    branched_from = check_resumption_welcome(joined.psk_ids, gc, reinit_from, branch_from)
    tree = trees[-1]
    validate_tree(tree, crypto, gc, now_s=seconds_of(clock) if check_lifetimes else None, max_lifetime_s=max_lifetime_s)
    if branched_from is not None:
        check_branch_members(tree, branched_from.current.tree)
    predecessor = reinit_from if reinit_from is not None else branch_from
    if predecessor is not None:  # a successor inherits the old group's hooks unless given its own
        leaf_check, extensions_check = leaf_check or predecessor.leaf_check, extensions_check or predecessor.extensions_check
    check_tree_leaves(tree, leaf_check)
    own = _find_own_leaf(tree, kp.leaf_node)
    check_leaf_supports_group(kp.leaf_node, gc.extensions)
    keys = _joiner_keys(crypto, tree, own, info.signer, joined.path_secret, bundle.encryption_private)
    state = EpochState.new(
        crypto, gc, tree, own, keys, joined.epoch_secrets, joined.interim_transcript_hash, info.confirmation_tag,
        cfg.ratchet, context_bytes=joined.group_context_bytes,
    )  # fmt: skip
    return GroupState(
        crypto, signer, state, cfg, clock, max_lifetime_s=max_lifetime_s, leaf_check=leaf_check, extensions_check=extensions_check
    )


def _our_bundle(w: Welcome, bundles: Mapping[bytes, KeyPackageBundle], signer: Signer) -> KeyPackageBundle:
    """The bundle of ours the Welcome is addressed to, of its cipher suite and ``signer``'s."""
    bundle = None
    for entry in w.secrets:
        bundle = bundles.get(entry.new_member)
        if bundle is not None:
            break
    if bundle is None:
        raise MlsError("the Welcome is not addressed to any of our KeyPackages", reason=MlsReason.BAD_WELCOME)
    kp = bundle.key_package
    if kp.cipher_suite != w.cipher_suite:
        raise MlsError("the Welcome's cipher suite differs from our KeyPackage's", reason=MlsReason.UNSUPPORTED)
    if kp.leaf_node.signature_key != signer.public_key:
        raise MlsError("the signer does not match the KeyPackage", reason=MlsReason.INVALID_ARGUMENT)
    return bundle


def _joiner_keys(
    crypto: CryptoProvider, tree: RatchetTree, own: int, signer: int, path_secret: bytes | None, leaf_secret: bytes
) -> PathKeys:
    """Our private path keys: from the Welcome's path secret (§12.4.3.1: the nodes from our
    common ancestor with the committer ``signer`` up), or our leaf's alone."""
    if path_secret is None:
        return PathKeys(leaf_secret, {})
    if signer == own:
        raise MlsError("the GroupInfo signer is our own leaf", reason=MlsReason.BAD_WELCOME)
    start = common_ancestor(2 * own, 2 * signer)
    return path_keys_from_path_secret(crypto, tree, own, start, path_secret, leaf_secret)


def check_tree_leaves(tree: RatchetTree, leaf_check: LeafCheck | None) -> None:
    """The application's ``leaf_check(leaf, None)`` for every leaf of a received,
    validated tree (joining, §12.4.3.1); what it raises propagates."""
    if leaf_check is not None:
        for _, leaf in tree.members():
            leaf_check(leaf, None)


def _check_welcome_psks(psk_ids: Sequence[PreSharedKeyID], epoch: int) -> None:
    validate_resumption_links(psk_ids)
    special = [p for p in psk_ids if p.psktype == PSKType.RESUMPTION and p.usage != ResumptionPSKUsage.APPLICATION]
    if special and epoch != 1:
        raise MlsError("a reinit/branch Welcome must start the group at epoch 1", reason=MlsReason.BAD_WELCOME)
    for p in psk_ids:
        if len(p.psk_nonce) != _NH:
            raise MlsError("a PSK nonce must be 32 bytes", reason=MlsReason.MALFORMED)


def _find_own_leaf(tree: RatchetTree, leaf: LeafNode) -> int:
    key = leaf.encryption_key
    for i, candidate in tree.members():
        if candidate.encryption_key == key:
            if candidate != leaf:
                raise MlsError("our leaf in the tree differs from our KeyPackage's", reason=MlsReason.BAD_WELCOME)
            return i
    raise MlsError("our KeyPackage's leaf is not in the tree", reason=MlsReason.BAD_WELCOME)


def _external_pub(info: GroupInfo) -> bytes:
    """The external_pub key of a GroupInfo (§12.4.3.2).

    RFC 9420 encodes it as ``struct { HPKEPublicKey external_pub; }``, so the
    extension data is a length-prefixed key (33 bytes for X25519); that is
    what Ping writes. ts-mls 1.x writes the bare 32-byte key (fixed upstream
    in ts-mls PR #449); that form is unambiguous for X25519, so it is
    accepted too.
    """
    ext = find_extension(info.extensions, ExternalPub.EXTENSION_TYPE)
    if ext is None:
        raise MlsError("the GroupInfo has no external_pub extension", reason=MlsReason.BAD_WELCOME)
    data = ext.extension_data
    if len(data) == _NH:
        return data
    return ext.parse(ExternalPub).external_pub


def group_info_of(data: bytes | GroupInfo) -> GroupInfo:
    """A GroupInfo from its MLSMessage or bare encoding (strictly decoded), or as given."""
    if isinstance(data, GroupInfo):
        return data
    if not isinstance(data, bytes):
        raise MlsError("a GroupInfo must be bytes", reason=MlsReason.INVALID_ARGUMENT)
    if data[:4] == b"\x00\x01\x00\x04":
        body = decode_exact(MLSMessage, data).body
        if not isinstance(body, GroupInfo):  # pragma: no cover
            raise MlsError("not a GroupInfo", reason=MlsReason.MALFORMED)
        return body
    return decode_exact(GroupInfo, data)


def verified_group_info(
    crypto: CryptoProvider,
    info: GroupInfo,
    ratchet_tree: bytes | None,
    now_s: int | None,
    max_lifetime_s: int | None,
    leaf_check: LeafCheck | None,
) -> RatchetTree:
    """The validated ratchet tree of a GroupInfo received outside a Welcome
    (§12.4.3.2; an external joiner, or a delivery service's PublicGroup):
    protocol version and cipher suite, unique extension types, the tree (from
    the ratchet_tree extension, else ``ratchet_tree``), the signature with the
    signer's leaf key, the full tree validation against the GroupContext (tree
    hash, parent hashes, every leaf; lifetimes at ``now_s`` unless ``None``,
    ``max_lifetime_s``), then ``leaf_check(leaf, None)`` for every leaf.
    ``MlsError`` (or what ``leaf_check`` raises) otherwise."""
    check_group_info(info)
    tree = _tree_from(info, ratchet_tree)
    verify_group_info(crypto, info, signer_leaf(tree, info).signature_key)
    validate_tree(tree, crypto, info.group_context, now_s=now_s, max_lifetime_s=max_lifetime_s)
    check_tree_leaves(tree, leaf_check)
    return tree


def join_external(
    crypto: CryptoProvider,
    group_info: bytes,
    signer: Signer,
    *,
    ratchet_tree: bytes | None = None,
    config: GroupConfig | None = None,
    resync: bool = False,
    psk_ids: Sequence[PreSharedKeyID] = (),
    psks: PskSource = None,
    authenticated_data: bytes = b"",
    capabilities: Capabilities | None = None,
    clock: Clock,
    check_lifetimes: bool = True,
    max_lifetime_s: int | None = None,
    leaf_check: LeafCheck | None = None,
    extensions_check: ExtensionsCheck | None = None,
) -> tuple[GroupState, bytes]:
    """Join by external commit from a GroupInfo (MLSMessage or bare bytes) that
    carries external_pub.

    Returns ``(group, commit)``: the group already at the new epoch and the
    commit (a PublicMessage, MLSMessage bytes) every member must process. If
    the delivery service refuses the commit, drop the group. ``resync``
    removes our old leaf (same credential) in the same commit. ``psk_ids``
    are injected as PreSharedKey proposals (their secrets from ``psks``).
    ``check_lifetimes``, ``max_lifetime_s`` and ``leaf_check`` (every leaf of
    the tree, once it validated) as for :func:`join_welcome`.
    """
    cfg = config or GroupConfig()
    info = group_info_of(group_info)
    gc = info.group_context
    now_s = seconds_of(clock) if check_lifetimes else None
    tree = verified_group_info(crypto, info, ratchet_tree, now_s, max_lifetime_s, leaf_check)
    external_pub = _external_pub(info)
    kem_output, init_secret = hpke.export(crypto, external_pub, b"", EXTERNAL_INIT_LABEL, _NH)
    proposals: list[Proposal] = [ExternalInit(kem_output)]
    new_tree = tree.copy()
    gid = gc.group_id
    if resync:
        # Our old leaf: the one with our credential, else the one with our signature key (a
        # credential the application has since replaced, e.g. migrated to a new format).
        old = [i for i, leaf in tree.members() if leaf.credential == signer.credential] or [
            i for i, leaf in tree.members() if leaf.signature_key == signer.public_key
        ]
        if len(old) != 1:
            raise MlsError(f"resync needs exactly one leaf with our credential, found {len(old)}", reason=MlsReason.WRONG_STATE)
        proposals.append(Remove(old[0]))
        new_tree.remove_leaf(old[0])
    proposals += [PreSharedKey(p) for p in psk_ids]
    caps = default_capabilities() if capabilities is None else capabilities
    own = new_tree.free_leaf_index()
    base = LeafNode(b"", signer.public_key, signer.credential, caps, LeafNodeSource.COMMIT, None, b"", ())
    check_leaf_supports_group(base, gc.extensions)
    make_leaf = commit_leaf_maker(crypto, base, signer.private_key, gid, own)
    gen = generate_update_path(
        crypto, new_tree, own, make_leaf=make_leaf, group_context_for=context_bytes_for(gc, gc.extensions), exclude=()
    )
    commit = Commit(tuple(proposals), gen.update_path)
    content = FramedContent(gid, gc.epoch, Sender.new_member_commit(), authenticated_data, commit)
    gc_bytes = encode(gc)
    tbs = framed_content_tbs(WireFormat.PUBLIC_MESSAGE, content, gc_bytes)
    signature = sign_with_label(crypto, signer.private_key, b"FramedContentTBS", tbs)
    auth = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content, FramedContentAuthData(signature, b""))
    interim_before = interim_transcript_hash(crypto, gc.confirmed_transcript_hash, info.confirmation_tag)
    confirmed = confirmed_transcript_hash(crypto, interim_before, auth.confirmed_transcript_hash_input())
    ctx = next_group_context(gc, new_tree.tree_hash(crypto), confirmed, gc.extensions)
    psk_secret = compute_psk_secret(crypto, resolve_psks(list(psk_ids), psks)) if psk_ids else None
    ctx_bytes = encode(ctx)
    secrets = epoch_secrets(crypto, init_secret, gen.commit_secret, psk_secret, ctx_bytes)
    tag = confirmation_tag(crypto, secrets.confirmation_key, confirmed)
    interim = interim_transcript_hash(crypto, confirmed, tag)
    message = PUBLIC_PREFIX + encode(PublicMessage(content, FramedContentAuthData(signature, tag), None))
    state = EpochState.new(crypto, ctx, new_tree, own, gen.keys, secrets, interim, tag, cfg.ratchet, context_bytes=ctx_bytes)
    gs = GroupState(
        crypto, signer, state, cfg, clock, max_lifetime_s=max_lifetime_s, leaf_check=leaf_check, extensions_check=extensions_check
    )
    gs.last_own_commit = (crypto.hash(message), ctx.epoch)
    return gs, message
