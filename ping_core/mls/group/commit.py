"""Commits: building our own and staging received ones (RFC 9420 §12.2-§12.4).

Both directions end in a :class:`StagedCommit`: the complete next epoch,
computed on copies, that changes nothing until the group merges it
(:func:`.merge.merge_staged_commit`) and can simply be dropped instead.

Building (:func:`create_commit`): pick the pending proposals that may go
together (§12.2; a Remove beats an Update of the same leaf, the most recent
Update wins, our own Updates are left to the path), add the proposals given
by value, validate, apply them to a copy of the tree (§12.3), generate an
UpdatePath when required or asked for, sign, run the key schedule, attach the
confirmation tag, frame the commit in the old epoch, and build the GroupInfo
and the Welcome for the new members (with each joiner's path secret).

Staging (:func:`stage_commit`): resolve references, validate the list and
every proposal, check the path rule, apply the proposals
(:func:`check_received_commit`), verify and merge the path's public part
(:func:`merge_commit_path`), decrypt our path secret, derive the epoch and
verify the confirmation tag. Any failure raises ``MlsError`` and there is
nothing to undo. The first two steps need no secret: a verifier outside the
group (:class:`~.public.PublicGroup`, a delivery service) runs the very same
functions.
"""

from __future__ import annotations

import hmac as _hmac
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ping_core.errors import MlsError, MlsReason
from ping_core.mls import hpke
from ping_core.mls.tls import encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.crypto.provider import prefetch_verify, wants_prefetch
from ping_core.mls.framing.epoch_framing import Unprotected
from ping_core.mls.primitives import make_key_package_ref
from ping_core.mls.schedule.psk_secret import psk_secret as compute_psk_secret
from ping_core.mls.schedule.key_schedule import EpochSecrets, epoch_secrets, external_key_pair
from ping_core.mls.structs import (
    Add,
    AuthenticatedContent,
    Commit,
    Extension,
    ExternalInit,
    ExternalPub,
    GroupContext,
    GroupContextExtensions,
    GroupInfo,
    LeafNode,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Sender,
    SenderType,
    Update,
    WireFormat,
)
from ping_core.mls.structs.proposals import ProposalOrRef
from ping_core.mls.structs.tree_nodes import RatchetTree as RatchetTreeExt
from ping_core.mls.schedule.transcript import confirmation_tag, confirmed_transcript_hash, interim_transcript_hash
from ping_core.mls.tree import RatchetTree, common_ancestor
from ping_core.mls.tree.treekem import (
    GeneratedPath,
    MergedPath,
    PathKeys,
    check_receiver,
    commit_leaf_maker,
    decrypt_update_path,
    generate_update_path,
    merge_update_path,
)
from ping_core.mls.welcome_seal import WelcomeRecipient, seal_welcome, sign_group_info

from .keypackage import key_package_signatures
from .messages import WELCOME_PREFIX, frame_signed, pre_encoded_commit, sign_content, with_tag
from .proposals import PendingProposal
from ping_core.mls.group.psk_sources import PskSource, resolve_psks
from .results import CommitApplied, ExtensionsCheck, LeafCheck, Policy
from .epoch import EpochState
from .staged import StagedCommit
from .state import GroupState
from .validate import (
    check_leaf_supports_group,
    check_proposal_sender,
    check_successor,
    path_required,
    validate_add,
    validate_external_list,
    validate_group_context_extensions,
    validate_psk_id,
    validate_regular_list,
    validate_reinit,
    validate_remove,
    validate_resumption_links,
    validate_update,
)


__all__ = [
    "Applied",
    "ReceivedCommit",
    "apply_proposals",
    "check_received_commit",
    "merge_commit_path",
    "next_group_context",
    "context_bytes_for",
    "group_info_for",
    "create_commit",
    "stage_commit",
    "EXTERNAL_INIT_LABEL",
]

EXTERNAL_INIT_LABEL = b"MLS 1.0 external init secret"
_NH = 32


@dataclass
class Applied:
    """The effect of a proposal list on a copy of the tree and context."""

    tree: RatchetTree
    extensions: tuple[Extension, ...]
    extensions_changed: bool = False
    added: list[tuple[int, Add]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    own_update_secret: bytes | None = None
    psks: list[PreSharedKeyID] = field(default_factory=list)
    external_init: ExternalInit | None = None
    reinit: ReInit | None = None
    path_required: bool = True


Item = tuple[Proposal, Sender, "PendingProposal | None"]


def _provisional(context: GroupContext, extensions: tuple[Extension, ...]) -> GroupContext:
    """The context proposals are validated against (the new extensions, §12.3)."""
    if extensions is context.extensions:
        return context
    return GroupContext(
        version=context.version,
        cipher_suite=context.cipher_suite,
        group_id=context.group_id,
        epoch=context.epoch,
        tree_hash=context.tree_hash,
        confirmed_transcript_hash=context.confirmed_transcript_hash,
        extensions=extensions,
    )


@dataclass(frozen=True)
class AddChecks:
    """What validating an Add needs besides the tree (see :func:`.validate.validate_add`)."""

    context: GroupContext
    now: int | None
    key_package_bytes: Mapping[int, bytes]
    max_lifetime_s: int | None
    leaf_check: LeafCheck | None


def _add_validated(crypto: CryptoProvider, tree: RatchetTree, adds: Sequence[Add], applied: Applied, checks: AddChecks) -> None:
    """Validate and add each of ``adds`` to ``tree`` in order, noting them in ``applied``.

    Each is checked against the tree as it is by then (Updates, Removes and the earlier
    Adds applied): a removed client may come back in the same commit, two Adds may not
    share keys."""
    raws = checks.key_package_bytes
    if adds and wants_prefetch(crypto):
        # Each Add's two signatures are verified in the loop below, in order;
        # a provider with a per-call cost verifies them all in one batch now.
        prefetch_verify(
            crypto, [item for add in adds for item in key_package_signatures(add.key_package, raws.get(id(add.key_package)))]
        )
    for add in adds:
        validate_add(
            crypto, tree, checks.context, add, now=checks.now, key_package_bytes=raws.get(id(add.key_package)),
            max_lifetime_s=checks.max_lifetime_s, leaf_check=checks.leaf_check,
        )  # fmt: skip
        applied.added.append((tree.add_leaf(add.key_package.leaf_node), add))


def apply_proposals(
    crypto: CryptoProvider,
    tree: RatchetTree,
    context: GroupContext,
    items: Sequence[Item],
    *,
    own_leaf: int | None,
    now: int | None,
    validate: bool = True,
    key_package_bytes: Mapping[int, bytes] | None = None,
    psk_usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION,
    max_lifetime_s: int | None = None,
    leaf_check: LeafCheck | None = None,
    extensions_check: ExtensionsCheck | None = None,
) -> Applied:
    """Validate each proposal (when ``validate``) and apply the list to a copy of
    the tree in the order of §12.3: GroupContextExtensions, Updates, Removes,
    Adds (in list order); note PSKs, ExternalInit and ReInit. ``max_lifetime_s``
    bounds each Add's KeyPackage lifetime (§7.2, :func:`.validate.validate_add`);
    ``leaf_check`` (when ``validate``) is asked about every Add and Update leaf,
    ``extensions_check`` about a GroupContextExtensions' list.
    ``own_leaf``: our leaf (an Update of it takes the private key we kept with
    our proposal), ``None`` for a verifier outside the group. ``tree`` is not
    changed (``Applied.tree`` is a copy when anything changed)."""
    gces = [p for p, _, _ in items if isinstance(p, GroupContextExtensions)]
    gce = gces[-1] if gces else None
    extensions = context.extensions if gce is None else gce.extensions
    ctx = _provisional(context, extensions)
    applied = Applied(tree, extensions, extensions_changed=gce is not None)
    applied.path_required = path_required(p for p, _, _ in items)
    updates: list[tuple[int, Update, PendingProposal | None]] = []
    removes: list[Remove] = []
    adds: list[Add] = []
    for proposal, sender, pending in items:
        if isinstance(proposal, Update):
            if sender.sender_type != SenderType.MEMBER:
                raise MlsError("an Update from a non-member", reason=MlsReason.UNKNOWN_SENDER)
            if validate:
                validate_update(crypto, tree, ctx, proposal, sender.index, now=now, leaf_check=leaf_check)
            updates.append((sender.index, proposal, pending))
        elif isinstance(proposal, Remove):
            if validate:
                validate_remove(tree, proposal)
            removes.append(proposal)
        elif isinstance(proposal, Add):
            adds.append(proposal)
        elif isinstance(proposal, PreSharedKey):
            if validate:
                validate_psk_id(proposal.psk, allowed_usage=psk_usage)
            applied.psks.append(proposal.psk)
        elif isinstance(proposal, ReInit):
            if validate:
                validate_reinit(proposal)
            applied.reinit = proposal
        elif isinstance(proposal, ExternalInit):
            applied.external_init = proposal
    if validate:
        validate_resumption_links(applied.psks)
    if updates or removes or adds:
        tree = tree.copy()
        for leaf_index, update, pending in updates:
            tree.update_leaf(leaf_index, update.leaf_node)
            applied.updated.append(leaf_index)
            if leaf_index == own_leaf:
                if pending is None or pending.leaf_secret is None:
                    raise MlsError("an Update of our leaf that we did not propose", reason=MlsReason.BAD_PROPOSAL)
                applied.own_update_secret = pending.leaf_secret
        for remove in removes:
            tree.remove_leaf(remove.removed)
            applied.removed.append(remove.removed)
        if validate:
            checks = AddChecks(ctx, now, key_package_bytes or {}, max_lifetime_s, leaf_check)
            _add_validated(crypto, tree, adds, applied, checks)
        else:
            applied.added += [(tree.add_leaf(add.key_package.leaf_node), add) for add in adds]
        applied.tree = tree
    if gce is not None and validate:
        validate_group_context_extensions(gce, (leaf for _, leaf in tree.members()), extensions_check)
    return applied


def _pruned_keys(keys: PathKeys, tree: RatchetTree, leaf_secret: bytes | None) -> PathKeys:
    """Our private keys after proposals blanked nodes (and maybe replaced our leaf)."""
    keys = keys.pruned(tree)
    return keys if leaf_secret is None else PathKeys(leaf_secret, keys.node_secrets)


def next_group_context(
    context: GroupContext, tree_hash: bytes, confirmed_transcript_hash: bytes, extensions: tuple[Extension, ...]
) -> GroupContext:
    """The GroupContext of the epoch after ``context`` (§8.1, §12.4.2): epoch + 1,
    same version, cipher suite and group id, the given tree hash, confirmed
    transcript hash and extensions."""
    return GroupContext(
        version=context.version,
        cipher_suite=context.cipher_suite,
        group_id=context.group_id,
        epoch=context.epoch + 1,
        tree_hash=tree_hash,
        confirmed_transcript_hash=confirmed_transcript_hash,
        extensions=extensions,
    )


def context_bytes_for(context: GroupContext, extensions: tuple[Extension, ...]) -> Callable[[bytes], bytes]:
    """``group_context_for(tree_hash)``: the provisional GroupContext of §12.4.1,
    encoded: new epoch and tree hash, OLD confirmed transcript hash, new extensions."""

    def f(tree_hash: bytes) -> bytes:
        return encode(next_group_context(context, tree_hash, context.confirmed_transcript_hash, extensions))

    return f


def _psk_secret(group: GroupState, applied: Applied, psks: PskSource) -> tuple[bytes | None, list[tuple[PreSharedKeyID, bytes]]]:
    if not applied.psks:
        return None, []
    resolved = resolve_psks(applied.psks, psks, group_id=group.group_id, resumption=group.resumption_psks())
    return compute_psk_secret(group.crypto, resolved), resolved


def _next_epoch(
    crypto: CryptoProvider,
    group: GroupState,
    applied: Applied,
    auth: AuthenticatedContent,
    init_secret: bytes,
    commit_secret: bytes | None,
    psk_secret: bytes | None,
    own_leaf: int,
    keys: PathKeys,
) -> tuple[GroupContext, EpochSecrets, bytes, bytes]:
    """The new GroupContext, epoch secrets, confirmation tag and interim hash."""
    state = group.current
    confirmed = confirmed_transcript_hash(crypto, state.interim, auth.confirmed_transcript_hash_input())
    ctx = next_group_context(state.context, applied.tree.tree_hash(crypto), confirmed, applied.extensions)
    secrets = epoch_secrets(crypto, init_secret, commit_secret, psk_secret, encode(ctx))
    tag = confirmation_tag(crypto, secrets.confirmation_key, confirmed)
    return ctx, secrets, tag, interim_transcript_hash(crypto, confirmed, tag)


# -- building our own commit ---------------------------------------------------


def _select_pending(group: GroupState, by_value: Sequence[Proposal]) -> list[Item]:
    """The pending proposals that can go into our commit together (§12.2 SHOULDs)."""
    state = group.current
    own = state.own_leaf
    pending = list(group.proposals)
    removed = {p.proposal.removed for p in pending if isinstance(p.proposal, Remove)}
    removed |= {p.removed for p in by_value if isinstance(p, Remove)}
    chosen: list[Item] = []
    seen_update: set[int] = set()
    seen_remove: set[int] = set()
    seen_add: set[bytes] = {p.key_package.leaf_node.signature_key for p in by_value if isinstance(p, Add)}
    seen_psk: set[bytes] = {encode(p.psk) for p in by_value if isinstance(p, PreSharedKey)}
    has_gce = any(isinstance(p, GroupContextExtensions) for p in by_value)
    members_keys: dict[bytes, int] | None = None  # built on the first pending Add: O(n)
    # The most recent Update of each leaf wins: walk backwards for Updates.
    latest_update: dict[int, bytes] = {}
    for p in reversed(pending):
        if isinstance(p.proposal, Update) and p.sender.index not in latest_update:
            latest_update[p.sender.index] = p.ref
    for p in pending:
        prop = p.proposal
        if isinstance(prop, Update):
            leaf = p.sender.index
            if leaf == own or leaf in removed or latest_update.get(leaf) != p.ref or leaf in seen_update:
                continue
            seen_update.add(leaf)
        elif isinstance(prop, Remove):
            if prop.removed == own or prop.removed in seen_remove:
                continue
            if any(isinstance(v, Remove) and v.removed == prop.removed for v in by_value):
                continue
            seen_remove.add(prop.removed)
        elif isinstance(prop, Add):
            key = prop.key_package.leaf_node.signature_key
            if members_keys is None:
                members_keys = {leaf.signature_key: i for i, leaf in state.tree.members()}
            if key in seen_add or (key in members_keys and members_keys[key] not in removed):
                continue
            seen_add.add(key)
        elif isinstance(prop, PreSharedKey):
            k = encode(prop.psk)
            if k in seen_psk:
                continue
            seen_psk.add(k)
        elif isinstance(prop, GroupContextExtensions):
            if has_gce:
                continue
            has_gce = True
        elif isinstance(prop, ReInit):
            continue  # only committed on its own; see below
        else:
            continue
        chosen.append((prop, p.sender, p))
    if not chosen and not by_value:
        # A pending ReInit is committed alone, when nothing else is pending (§12.2 SHOULD).
        for p in pending:
            if isinstance(p.proposal, ReInit):
                return [(p.proposal, p.sender, p)]
    return chosen


def _own_items(group: GroupState, by_value: Sequence[Proposal], include_pending: bool) -> tuple[list[Item], list[ProposalOrRef]]:
    """Our commit's proposals: the pending ones that go together (by reference: ``refs``),
    then ``by_value``; checked against the §12.2 list rules. No Update of our own by value."""
    own = group.own_leaf_index
    own_sender = Sender.member(own)
    for p in by_value:
        check_proposal_sender(p, own_sender)
        if isinstance(p, Update):
            raise MlsError(
                "a committer cannot commit its own Update: the commit's path updates its leaf",
                reason=MlsReason.INVALID_ARGUMENT,
            )
    items: list[Item] = _select_pending(group, by_value) if include_pending else []
    refs: list[ProposalOrRef] = [p.ref for _, _, p in items if p is not None]
    items += [(p, own_sender, None) for p in by_value]
    validate_regular_list([(p, s) for p, s, _ in items], own, group.current.tree)
    return items, refs


def _own_path(group: GroupState, applied: Applied, added_leaves: list[int]) -> GeneratedPath:
    """Our commit's UpdatePath over the staged tree (§7.5, §12.4.1), with our new leaf
    (which must support the new extensions); ``applied.tree`` becomes a copy we own."""
    crypto, state, signer = group.crypto, group.current, group.signer
    own = state.own_leaf
    tree = applied.tree if applied.tree is not state.tree else state.tree.copy()
    applied.tree = tree
    own_leaf_node = state.own_leaf_node()
    check_leaf_supports_group(own_leaf_node, applied.extensions)
    if own_leaf_node.credential != signer.credential and own_leaf_node.signature_key == signer.public_key:
        # The signer's credential changed (same key): the path's new leaf carries it, as an
        # Update's would (RFC 9420 §7.3 lets a member replace its credential; the
        # application's leaf check decides whether the new one is acceptable).
        own_leaf_node = dataclasses.replace(own_leaf_node, credential=signer.credential)
    make_leaf = commit_leaf_maker(crypto, own_leaf_node, signer.private_key, state.context.group_id, own)
    return generate_update_path(
        crypto, tree, own, make_leaf=make_leaf, group_context_for=context_bytes_for(state.context, applied.extensions),
        exclude=added_leaves,
    )  # fmt: skip


def create_commit(
    group: GroupState,
    *,
    by_value: Sequence[Proposal] = (),
    include_pending: bool = True,
    force_path: bool = False,
    encrypt: bool | None = None,
    ratchet_tree_extension: bool | None = None,
    authenticated_data: bytes = b"",
    psks: PskSource = None,
    key_package_bytes: Mapping[int, bytes] | None = None,
    psk_usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION,
) -> StagedCommit:
    """Build our commit (see the module docstring). Changes nothing in the
    group, except that an encrypted commit consumes one generation of our
    handshake ratchet (a key is never used twice, even for a discarded commit).

    ``key_package_bytes`` maps ``id(KeyPackage)`` of by-value Adds to their
    encodings, when the caller has them (saves re-encoding each KeyPackage).
    ``psk_usage`` is the resumption usage PreSharedKey proposals may have
    (``reinit`` only for the first commit of a reinitialised group, §11.2)."""
    raw_kps: Mapping[int, bytes] = key_package_bytes or {}
    crypto = group.crypto
    state = group.current
    own = state.own_leaf
    cfg = group.config
    encrypt = cfg.encrypt_handshake if encrypt is None else encrypt
    rt_ext = cfg.ratchet_tree_extension if ratchet_tree_extension is None else ratchet_tree_extension
    items, refs = _own_items(group, by_value, include_pending)
    applied = apply_proposals(
        crypto, state.tree, state.context, items, own_leaf=own, now=group.now(), key_package_bytes=raw_kps,
        psk_usage=psk_usage, max_lifetime_s=group.max_lifetime_s, leaf_check=group.leaf_check,
        extensions_check=group.extensions_check,
    )  # fmt: skip
    proposals: list[ProposalOrRef] = refs + list(by_value)
    added_leaves = [i for i, _ in applied.added]
    path = _own_path(group, applied, added_leaves) if applied.path_required or force_path else None
    keys = _pruned_keys(state.keys, applied.tree, None) if path is None else path.keys
    commit = pre_encoded_commit(proposals, None if path is None else path.update_path, raw_kps)
    commit_secret = None if path is None else path.commit_secret
    path_secrets: dict[int, bytes] = {} if path is None else path.path_secrets
    psk_secret, resolved_psks = _psk_secret(group, applied, psks)
    auth = sign_content(
        crypto, state.framing, own, commit, group.signer.private_key, encrypt=encrypt, authenticated_data=authenticated_data
    )
    ctx, secrets, tag, interim = _next_epoch(
        crypto, group, applied, auth, state.secrets.init_secret, commit_secret, psk_secret, own, keys
    )
    auth = with_tag(auth, tag)
    ctx_bytes = encode(ctx)
    next_state = EpochState.new(
        crypto, ctx, applied.tree, own, keys, secrets, interim, tag, cfg.ratchet, context_bytes=ctx_bytes
    )
    welcome: bytes | None = None
    recipients: list[bytes] = []
    if applied.added:
        welcome, recipients = _welcome(
            crypto, group, next_state, secrets, tag, applied, path_secrets, resolved_psks, rt_ext, raw_kps
        )
    message = frame_signed(crypto, state.framing, auth, padding_block=cfg.padding_block)
    result = CommitApplied(
        epoch=ctx.epoch, committer=own, added=tuple(added_leaves), removed=tuple(applied.removed),
        updated=tuple(applied.updated), own=True, extensions_changed=applied.extensions_changed,
        psks=len(applied.psks), reinit=applied.reinit,
    )  # fmt: skip
    return StagedCommit(
        base_epoch=state.epoch, result=result, own=True, message=message, welcome=welcome,
        welcome_recipients=tuple(recipients), message_hash=crypto.hash(message), next_state=next_state,
        reinit=applied.reinit, group_id=state.context.group_id,
    )  # fmt: skip


def _welcome(
    crypto: CryptoProvider,
    group: GroupState,
    next_state: EpochState,
    secrets: EpochSecrets,
    tag: bytes,
    applied: Applied,
    path_secrets: dict[int, bytes],
    psks: list[tuple[PreSharedKeyID, bytes]],
    ratchet_tree_extension: bool,
    raw_kps: Mapping[int, bytes],
) -> tuple[bytes, list[bytes]]:
    """The Welcome for the members ``applied`` added (§12.4.3.1)."""
    extensions: list[Extension] = []
    if ratchet_tree_extension:
        extensions.append(Extension(RatchetTreeExt.EXTENSION_TYPE, next_state.tree.encode()))
    own = next_state.own_leaf
    info = sign_group_info(crypto, GroupInfo(next_state.context, tuple(extensions), tag, own), group.signer.private_key)
    recipients: list[WelcomeRecipient] = []
    refs: list[bytes] = []
    own_node = 2 * own
    for leaf_index, add in applied.added:
        kp = add.key_package
        raw = raw_kps.get(id(kp))
        ref = make_key_package_ref(crypto, encode(kp) if raw is None else raw)
        path_secret = None
        if path_secrets:
            path_secret = path_secrets.get(common_ancestor(own_node, 2 * leaf_index))
            if path_secret is None:
                raise MlsError("no path secret for a new member's common ancestor", reason=MlsReason.WRONG_STATE)
        recipients.append(WelcomeRecipient(ref, kp.init_key, path_secret))
        refs.append(ref)
    joiner = secrets.joiner_secret
    if joiner is None:  # pragma: no cover - fresh secrets always carry it
        raise MlsError("the joiner secret is gone", reason=MlsReason.WRONG_STATE)
    welcome = seal_welcome(crypto, info, joiner, psks, recipients)
    return WELCOME_PREFIX + encode(welcome), refs


def group_info_for(
    crypto: CryptoProvider, group: GroupState, *, ratchet_tree: bool, external_pub: bool, state: EpochState | None = None
) -> GroupInfo:
    """A signed GroupInfo of the current epoch (§12.4.3), or of ``state`` (the next epoch of a
    commit of ours, staged: what a delivery service keeps for members that rejoin)."""
    state = group.current if state is None else state
    extensions: list[Extension] = []
    if ratchet_tree:
        extensions.append(Extension(RatchetTreeExt.EXTENSION_TYPE, state.tree.encode()))
    if external_pub:
        _, pub = external_key_pair(crypto, state.secrets.external_secret)
        extensions.append(Extension.of(ExternalPub(pub)))
    info = GroupInfo(state.context, tuple(extensions), state.confirmation_tag, state.own_leaf)
    return sign_group_info(crypto, info, group.signer.private_key)


# -- staging a received commit -------------------------------------------------


@dataclass
class ReceivedCommit:
    """A received commit whose proposals are resolved, validated and applied to a
    copy of the tree (:func:`check_received_commit`); its path not yet merged.

    ``committer`` is the committer's leaf index in the new epoch (for an
    external commit the joiner's: the leftmost blank leaf after the
    proposals); ``previous_leaf`` the committer's current leaf (``None`` for an
    external commit); ``resync`` the Remove of an external resync.
    """

    commit: Commit
    sender: Sender
    external: bool
    committer: int
    previous_leaf: LeafNode | None
    applied: Applied
    base_tree: RatchetTree
    resync: Remove | None = None

    @property
    def added_leaves(self) -> list[int]:
        return [i for i, _ in self.applied.added]


def _external_items(commit: Commit, sender: Sender) -> list[Item]:
    """An external commit's proposals: all by value (§12.4.3.2), and a path."""
    items: list[Item] = []
    for por in commit.proposals:
        if isinstance(por, bytes):
            raise MlsError("an external commit may not include proposals by reference", reason=MlsReason.BAD_COMMIT)
        items.append((por, sender, None))
    if commit.path is None:
        raise MlsError("an external commit must have a path", reason=MlsReason.BAD_COMMIT)
    return items


def _member_items(commit: Commit, sender: Sender, pending: Callable[[bytes], PendingProposal | None]) -> list[Item]:
    """A member's commit's proposals: references resolved through ``pending`` (proposals
    verified this epoch), values checked for their sender (§12.2)."""
    items: list[Item] = []
    for por in commit.proposals:
        if isinstance(por, bytes):
            found = pending(por)
            if found is None:
                raise MlsError(f"the commit references an unknown proposal {por.hex()}", reason=MlsReason.BAD_COMMIT)
            items.append((found.proposal, found.sender, found))
        else:
            check_proposal_sender(por, sender)
            items.append((por, sender, None))
    return items


def _check_resync(old: LeafNode | None, new: LeafNode, leaf_check: LeafCheck | None) -> None:
    """An external resync removes the joiner's own old leaf (§12.4.3.2): same credential or,
    when the application checks leaves, same signature key (the application deciding
    whether the credential may change); the new leaf meets an Update's criteria."""
    same_key = leaf_check is not None and old is not None and old.signature_key == new.signature_key
    if old is None or (old.credential != new.credential and not same_key):
        raise MlsError(
            "an external resync may only remove a leaf with the joiner's own credential",
            reason=MlsReason.BAD_COMMIT,
        )
    if leaf_check is not None:
        leaf_check(new, old)
    if old.encryption_key == new.encryption_key:
        raise MlsError("an external resync must change the leaf's encryption key", reason=MlsReason.BAD_COMMIT)


def check_received_commit(
    crypto: CryptoProvider,
    tree: RatchetTree,
    context: GroupContext,
    auth: AuthenticatedContent,
    pending: Callable[[bytes], PendingProposal | None],
    *,
    own_leaf: int | None,
    policy: Policy,
) -> ReceivedCommit:
    """Everything a received, authenticated commit must satisfy before its path
    (§12.2, §12.4.2, §12.4.3.2), for a member and for a verifier outside the
    group alike: the sender may commit (a member, not ``own_leaf``, or a new
    member by external commit in a PublicMessage); proposals by reference
    resolve through ``pending`` (ProposalRef -> a proposal verified this epoch);
    each proposal's sender may send it; the list rules (regular or external);
    each proposal is valid and applied to a copy of ``tree`` (§12.3, with
    ``policy``'s clock, ``max_lifetime_s`` and ``leaf_check``); the path is there when the proposals require it
    (an external commit always has one); a path leaf keeps the committer's
    credential; an external resync removes the joiner's own old leaf.
    Changes nothing; ``MlsError`` for the first rule broken."""
    content = auth.content
    commit = content.content
    if not isinstance(commit, Commit):  # pragma: no cover - the callers dispatch on the type
        raise MlsError("not a commit", reason=MlsReason.MALFORMED)
    sender = content.sender
    external = sender.sender_type == SenderType.NEW_MEMBER_COMMIT
    resync: Remove | None = None
    if external:
        if auth.wire_format != WireFormat.PUBLIC_MESSAGE:
            raise MlsError("an external commit must be a PublicMessage", reason=MlsReason.BAD_COMMIT)
        items = _external_items(commit, sender)
        _, resync = validate_external_list([(p, s) for p, s, _ in items])
        committer = -1
    elif sender.sender_type == SenderType.MEMBER:
        committer = sender.index
        if committer == own_leaf:
            raise MlsError("a commit from our own leaf that is not our pending commit", reason=MlsReason.BAD_COMMIT)
        items = _member_items(commit, sender, pending)
        validate_regular_list([(p, s) for p, s, _ in items], committer, tree)
    else:
        raise MlsError(f"a {sender.sender_type.name} sender may not commit", reason=MlsReason.SENDER_NOT_ALLOWED)
    applied = apply_proposals(
        crypto,
        tree,
        context,
        items,
        own_leaf=own_leaf,
        now=policy.now(),
        max_lifetime_s=policy.max_lifetime_s,
        leaf_check=policy.leaf_check,
        extensions_check=policy.extensions_check,
    )
    if applied.path_required and commit.path is None:
        raise MlsError("the commit lacks the path its proposals require", reason=MlsReason.BAD_COMMIT)
    previous_leaf = None
    if not external and commit.path is not None:
        previous_leaf = tree.leaf(committer)
        if previous_leaf is None:  # pragma: no cover - its signature was verified with this leaf's key
            raise MlsError(f"a commit from blank leaf {committer}", reason=MlsReason.UNKNOWN_SENDER)
        check_successor(previous_leaf, commit.path.leaf_node, "a commit's path", policy.leaf_check)
    if external:
        assert commit.path is not None
        if resync is not None:
            _check_resync(tree.leaf(resync.removed), commit.path.leaf_node, policy.leaf_check)
        # The joiner takes the leftmost blank leaf (or extends the tree): the
        # path processing puts its leaf there.
        committer = applied.tree.free_leaf_index()
    return ReceivedCommit(commit, sender, external, committer, previous_leaf, applied, tree, resync)


def merge_commit_path(
    crypto: CryptoProvider, context: GroupContext, received: ReceivedCommit, *, leaf_check: LeafCheck | None = None
) -> MergedPath | None:
    """Verify the public part of a received commit's UpdatePath and merge it
    into the staged tree (``received.applied.tree``, copied first if the
    proposals left it shared): path length, ciphertext counts, new keys, the
    leaf (source commit, signature, capabilities) and the parent-hash chain
    (:func:`~ping_core.mls.tree.treekem.merge_update_path`, §7.9, §12.4.2); then the
    application's ``leaf_check(path leaf, committer's current leaf)``. ``None``
    for a commit without a path. Only the staged tree changes."""
    path = received.commit.path
    if path is None:
        return None
    applied = received.applied
    if applied.tree is received.base_tree:
        applied.tree = applied.tree.copy()
    merged = merge_update_path(
        crypto,
        applied.tree,
        received.committer,
        path,
        group_context_for=context_bytes_for(context, applied.extensions),
        exclude=received.added_leaves,
    )
    if leaf_check is not None:
        leaf_check(path.leaf_node, received.previous_leaf)
    return merged


def stage_commit(group: GroupState, un: Unprotected, message_hash: bytes, *, psks: PskSource = None) -> StagedCommit:
    """Validate and compute a received commit (see the module docstring)."""
    crypto = group.crypto
    state = group.current
    auth = un.content
    own = state.own_leaf
    received = check_received_commit(crypto, state.tree, state.context, auth, group.proposals.get, own_leaf=own, policy=group)
    applied = received.applied
    committer, external = received.committer, received.external
    added_leaves = received.added_leaves
    removed_self = own in applied.removed
    psk_secret, _ = _psk_secret(group, applied, psks)
    result = CommitApplied(
        epoch=state.epoch + 1,
        committer=committer,
        added=tuple(added_leaves),
        removed=tuple(applied.removed),
        updated=tuple(applied.updated),
        removed_self=removed_self,
        external=external,
        extensions_changed=applied.extensions_changed,
        psks=len(applied.psks),
        reinit=applied.reinit,
    )
    merged = merge_commit_path(crypto, state.context, received, leaf_check=group.leaf_check)
    if removed_self:
        # We cannot follow into the new epoch (the path is not encrypted to us);
        # everything verifiable was verified: signature, tags, proposals, the path's public part.
        return _received(state, result, message_hash, None, un, applied)
    keys = _pruned_keys(state.keys, applied.tree, applied.own_update_secret)
    commit_secret: bytes | None = None
    path = received.commit.path
    if merged is not None and path is not None:
        check_receiver(applied.tree, committer, own, added_leaves)
        done = decrypt_update_path(crypto, applied.tree, committer, path, merged, own_leaf=own, own_keys=keys)
        commit_secret, keys = done.commit_secret, done.keys
    if external:
        assert applied.external_init is not None
        ext_priv, _ = external_key_pair(crypto, state.secrets.external_secret)
        init_secret = hpke.receive_export(crypto, applied.external_init.kem_output, ext_priv, b"", EXTERNAL_INIT_LABEL, _NH)
    else:
        init_secret = state.secrets.init_secret
    ctx, secrets, tag, interim = _next_epoch(crypto, group, applied, auth, init_secret, commit_secret, psk_secret, own, keys)
    got = auth.auth.confirmation_tag
    if got is None or not _hmac.compare_digest(tag, got):
        raise MlsError("confirmation tag does not verify", reason=MlsReason.BAD_TAG)
    next_state = EpochState.new(crypto, ctx, applied.tree, own, keys, secrets, interim, tag, group.config.ratchet)
    return _received(state, result, message_hash, next_state, un, applied)


def _received(
    state: EpochState,
    result: CommitApplied,
    message_hash: bytes,
    next_state: EpochState | None,
    un: Unprotected,
    applied: Applied,
) -> StagedCommit:
    return StagedCommit(
        base_epoch=state.epoch,
        result=result,
        own=False,
        message_hash=message_hash,
        next_state=next_state,
        ratchet_key=un.ratchet_key,
        reinit=applied.reinit,
        group_id=state.context.group_id,
    )

