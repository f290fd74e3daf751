"""Validation of proposals and proposal lists (RFC 9420 §12.1, §12.2, §12.4.3.2).

Every check raises ``MlsError`` naming what is wrong; none changes anything.
Leaf-node validation (§7.3: signature, capabilities against the group,
lifetime, unique keys) is the tree layer's (:func:`~ping_core.mls.tree.validation.verify_leaf`);
this module adds what belongs to proposals: who may send which type, the
KeyPackage rules of §10.1, Update and Remove targets, PSK usage, ReInit
version, GroupContextExtensions support, and the list rules of a commit.
A member's credential never changes unless the application's leaf check
accepts the successor (:func:`check_successor`, §5.3.1).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs import (
    Add,
    Commit,
    Extension,
    ExtensionType,
    ExternalInit,
    ExternalSenders,
    FramedContent,
    GroupContext,
    GroupContextExtensions,
    LeafNode,
    LeafNodeSource,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalType,
    ProtocolVersion,
    PSKType,
    ReInit,
    Remove,
    RequiredCapabilities,
    ResumptionPSKUsage,
    Sender,
    SenderType,
    Update,
    get_extension,
    has_unique_types,
)
from ping_core.mls.tree import (
    DEFAULT_EXTENSION_TYPES,
    RatchetTree,
    check_supports_group,
    required_capabilities,
    verify_leaf,
)

from .keypackage import validate_key_package_header
from .results import ExtensionsCheck, LeafCheck, Policy

__all__ = [
    "PATH_REQUIRED",
    "EXTERNAL_SENDER_TYPES",
    "DEFAULT_EXTENSION_TYPES",
    "check_proposal_sender",
    "validate_proposal",
    "validate_received_proposal",
    "validate_add",
    "validate_update",
    "check_successor",
    "validate_remove",
    "validate_psk_id",
    "validate_reinit",
    "validate_resumption_links",
    "validate_group_context_extensions",
    "check_leaf_supports_group",
    "validate_regular_list",
    "validate_external_list",
    "path_required",
    "external_sender_key",
    "sender_signature_key",
]

#: Proposal types whose presence makes a commit's path mandatory (§12.4).
PATH_REQUIRED = frozenset({ProposalType.UPDATE, ProposalType.REMOVE, ProposalType.EXTERNAL_INIT, ProposalType.GROUP_CONTEXT_EXTENSIONS})
#: Proposal types an external sender (external_senders extension) may send (§12.1.8).
EXTERNAL_SENDER_TYPES = frozenset(
    {ProposalType.ADD, ProposalType.REMOVE, ProposalType.PSK, ProposalType.REINIT, ProposalType.GROUP_CONTEXT_EXTENSIONS}
)
#: Extension types that may appear in a GroupContext (§17.3 "Messages" column: GC).
_NOT_IN_GROUP_CONTEXT = frozenset({ExtensionType.APPLICATION_ID, ExtensionType.RATCHET_TREE, ExtensionType.EXTERNAL_PUB})
_NH = 32


def check_proposal_sender(proposal: Proposal, sender: Sender) -> None:
    """§12.1 / §12.1.8: may this kind of sender send this proposal type?"""
    st = sender.sender_type
    pt = proposal.proposal_type
    if pt == ProposalType.EXTERNAL_INIT:
        raise MlsError(
            "an ExternalInit proposal is only valid inside an external commit",
            reason=MlsReason.BAD_PROPOSAL,
        )
    if st == SenderType.MEMBER:
        return
    if st == SenderType.EXTERNAL:
        if pt not in EXTERNAL_SENDER_TYPES:
            raise MlsError(f"an external sender may not send a {pt.name} proposal", reason=MlsReason.SENDER_NOT_ALLOWED)
        return
    if st == SenderType.NEW_MEMBER_PROPOSAL:
        if pt != ProposalType.ADD:
            raise MlsError("a new_member_proposal sender may only propose Add", reason=MlsReason.SENDER_NOT_ALLOWED)
        return
    raise MlsError(f"a {st.name} sender may not send proposals", reason=MlsReason.SENDER_NOT_ALLOWED)


def check_leaf_supports_group(leaf: LeafNode, extensions: Sequence[Extension]) -> None:
    """A leaf fits a group with these GroupContext extensions: it supports each of
    them and the required capabilities (used for members, joiners and GCE)."""
    check_supports_group(leaf, extensions, required_capabilities(extensions), "a member")


def check_group_context_extensions(extensions: Sequence[Extension], extensions_check: ExtensionsCheck | None = None) -> None:
    """Well-formed GroupContext extensions: unique types, none of the kinds that
    live elsewhere, the payloads the engine knows parse; then the application's
    ``extensions_check`` (its own types), if any."""
    if not has_unique_types(extensions):
        raise MlsError("duplicate GroupContext extension types", reason=MlsReason.BAD_PROPOSAL)
    for ext in extensions:
        if ext.extension_type in _NOT_IN_GROUP_CONTEXT:
            raise MlsError(
                f"extension {ext.extension_type} does not belong in a GroupContext",
                reason=MlsReason.BAD_PROPOSAL,
            )
    get_extension(extensions, RequiredCapabilities)
    get_extension(extensions, ExternalSenders)
    if extensions_check is not None:
        extensions_check(tuple(extensions))


def validate_add(
    crypto: CryptoProvider,
    tree: RatchetTree,
    context: GroupContext,
    add: Add,
    *,
    now: int | None,
    key_package_bytes: bytes | None = None,
    max_lifetime_s: int | None = None,
    leaf_check: LeafCheck | None = None,
) -> None:
    """§12.1.1: the KeyPackage is valid (§10.1) for this group; its leaf's total
    lifetime is at most ``max_lifetime_s`` (§7.2; ``None``: no maximum); then
    the application's ``leaf_check(leaf, None)`` accepts it (what it raises
    propagates)."""
    kp = add.key_package
    if kp.version != context.version or kp.cipher_suite != context.cipher_suite:
        raise MlsError(
            "the KeyPackage's version or cipher suite differs from the group's",
            reason=MlsReason.BAD_KEY_PACKAGE,
        )
    validate_key_package_header(crypto, kp, key_package_bytes)
    verify_leaf(
        tree, crypto, kp.leaf_node, None, context, source=LeafNodeSource.KEY_PACKAGE, now_s=now, max_lifetime_s=max_lifetime_s
    )
    check_leaf_supports_group(kp.leaf_node, context.extensions)
    if leaf_check is not None:
        leaf_check(kp.leaf_node, None)


def check_successor(old: LeafNode, new: LeafNode, what: str, leaf_check: LeafCheck | None = None) -> None:
    """§5.3.1: a member's replacement leaf (Update, or a commit's path leaf) must
    present a credential that is a valid successor of the old one. With an
    application ``leaf_check`` that is its decision (it is called with the old
    leaf); without one, the engine's default: the same credential (a member may
    rotate its keys, never become someone else)."""
    if leaf_check is None and new.credential != old.credential:
        raise MlsError(f"{what} may not change the member's credential", reason=MlsReason.BAD_PROPOSAL)


def validate_update(
    crypto: CryptoProvider,
    tree: RatchetTree,
    context: GroupContext,
    update: Update,
    sender_leaf: int,
    *,
    now: int | None,
    leaf_check: LeafCheck | None = None,
) -> None:
    """§12.1.2: a valid update leaf for the sender's leaf, with a new encryption
    key and the same credential (:func:`check_successor`); then the
    application's ``leaf_check(new leaf, sender's current leaf)`` accepts it."""
    old = tree.leaf(sender_leaf)
    if old is None:
        raise MlsError(f"an Update from blank leaf {sender_leaf}", reason=MlsReason.UNKNOWN_SENDER)
    if update.leaf_node.encryption_key == old.encryption_key:
        raise MlsError("an Update must change the leaf's encryption key", reason=MlsReason.BAD_PROPOSAL)
    check_successor(old, update.leaf_node, "an Update", leaf_check)
    verify_leaf(tree, crypto, update.leaf_node, sender_leaf, context, source=LeafNodeSource.UPDATE, now_s=now)
    check_leaf_supports_group(update.leaf_node, context.extensions)
    if leaf_check is not None:
        leaf_check(update.leaf_node, old)


def validate_remove(tree: RatchetTree, remove: Remove) -> None:
    """§12.1.3: ``removed`` names a non-blank leaf."""
    if not 0 <= remove.removed < tree.n_leaves or tree.leaf(remove.removed) is None:
        raise MlsError(
            f"a Remove of leaf {remove.removed}, which is blank or outside the tree",
            reason=MlsReason.BAD_PROPOSAL,
        )


def validate_psk_id(psk: PreSharedKeyID, *, allowed_usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION) -> None:
    """§12.1.4: nonce of Nh bytes; resumption PSKs only with the allowed usage."""
    if len(psk.psk_nonce) != _NH:
        raise MlsError("a PSK nonce must be 32 bytes", reason=MlsReason.BAD_PROPOSAL)
    if psk.psktype == PSKType.RESUMPTION and psk.usage != allowed_usage:
        raise MlsError(f"a resumption PSK with usage {psk.usage!r} is not allowed here", reason=MlsReason.BAD_PROPOSAL)


def validate_resumption_links(psks: Sequence[PreSharedKeyID]) -> None:
    """§11.2/§11.3: at most one resumption PSK with usage reinit or branch (it
    ties the group to the one old group it resumes)."""
    links = [p for p in psks if p.psktype == PSKType.RESUMPTION and p.usage != ResumptionPSKUsage.APPLICATION]
    if len(links) > 1:
        raise MlsError("several resumption PSKs with usage reinit or branch", reason=MlsReason.BAD_PROPOSAL)


def validate_reinit(reinit: ReInit) -> None:
    """§12.1.5: the version must not go down; extensions well-formed."""
    if reinit.version < ProtocolVersion.MLS10:
        raise MlsError("a ReInit may not lower the protocol version", reason=MlsReason.BAD_PROPOSAL)
    if not has_unique_types(reinit.extensions):
        raise MlsError("duplicate extension types in ReInit", reason=MlsReason.BAD_PROPOSAL)


def validate_group_context_extensions(
    gce: GroupContextExtensions, leaves: Iterable[LeafNode], extensions_check: ExtensionsCheck | None = None
) -> None:
    """§12.1.7: well-formed (and accepted by the application's ``extensions_check``),
    and supported by every given leaf (the members after the commit)."""
    check_group_context_extensions(gce.extensions, extensions_check)
    for leaf in leaves:
        check_leaf_supports_group(leaf, gce.extensions)


def validate_proposal(
    crypto: CryptoProvider,
    tree: RatchetTree,
    context: GroupContext,
    proposal: Proposal,
    sender: Sender,
    *,
    now: int | None,
    max_lifetime_s: int | None = None,
    leaf_check: LeafCheck | None = None,
    extensions_check: ExtensionsCheck | None = None,
) -> None:
    """One proposal on its own, against the current epoch (checked when it is
    received; the commit that covers it checks the list again).
    ``max_lifetime_s`` bounds an Add's KeyPackage lifetime (:func:`validate_add`);
    ``leaf_check`` is the application's hook for Add and Update leaves,
    ``extensions_check`` for a GroupContextExtensions' list."""
    check_proposal_sender(proposal, sender)
    if isinstance(proposal, Add):
        # (A new_member_proposal was verified with the KeyPackage's own key:
        # the joiner adds itself, §12.1.8.)
        validate_add(crypto, tree, context, proposal, now=now, max_lifetime_s=max_lifetime_s, leaf_check=leaf_check)
    elif isinstance(proposal, Update):
        if sender.sender_type != SenderType.MEMBER:
            raise MlsError("only members send Update proposals", reason=MlsReason.SENDER_NOT_ALLOWED)
        validate_update(crypto, tree, context, proposal, sender.index, now=now, leaf_check=leaf_check)
    elif isinstance(proposal, Remove):
        validate_remove(tree, proposal)
    elif isinstance(proposal, PreSharedKey):
        validate_psk_id(proposal.psk)
    elif isinstance(proposal, ReInit):
        validate_reinit(proposal)
    elif isinstance(proposal, GroupContextExtensions):
        validate_group_context_extensions(proposal, (leaf for _, leaf in tree.members()), extensions_check)
    elif isinstance(proposal, ExternalInit):
        raise MlsError(
            "an ExternalInit proposal is only valid inside an external commit",
            reason=MlsReason.BAD_PROPOSAL,
        )
    else:  # pragma: no cover - the decoder knows no other types
        raise MlsError(f"unsupported proposal type {proposal.proposal_type}", reason=MlsReason.UNSUPPORTED)


def validate_received_proposal(
    crypto: CryptoProvider, policy: Policy, tree: RatchetTree, context: GroupContext, proposal: Proposal, sender: Sender
) -> None:
    """:func:`validate_proposal` with ``policy``'s clock, ``max_lifetime_s`` and hooks."""
    validate_proposal(
        crypto,
        tree,
        context,
        proposal,
        sender,
        now=policy.now(),
        max_lifetime_s=policy.max_lifetime_s,
        leaf_check=policy.leaf_check,
        extensions_check=policy.extensions_check,
    )


def path_required(proposals: Iterable[Proposal]) -> bool:
    """§12.4: a path is needed for an empty commit or any path-required type."""
    empty = True
    for p in proposals:
        empty = False
        if p.proposal_type in PATH_REQUIRED:
            return True
    return empty


def validate_regular_list(
    items: Sequence[tuple[Proposal, Sender]], committer: int, tree: RatchetTree
) -> None:
    """§12.2 list rules of a regular (member) commit. ``items`` are the resolved
    proposals with their senders, in commit order. Individual validity is
    checked separately."""
    updated_or_removed: set[int] = set()
    add_keys: set[bytes] = set()
    add_enc: set[bytes] = set()
    psk_ids: set[bytes] = set()
    gce = 0
    reinit = 0
    removed: set[int] = set()
    for proposal, _ in items:
        if isinstance(proposal, Remove):
            removed.add(proposal.removed)
    for proposal, sender in items:
        if isinstance(proposal, Update):
            if sender.sender_type != SenderType.MEMBER:
                raise MlsError("an Update from a non-member", reason=MlsReason.UNKNOWN_SENDER)
            if sender.index == committer:
                raise MlsError("the commit contains an Update proposal by the committer", reason=MlsReason.BAD_PROPOSAL)
            if sender.index in updated_or_removed:
                raise MlsError(
                    f"several Update/Remove proposals for leaf {sender.index}",
                    reason=MlsReason.BAD_PROPOSAL,
                )
            updated_or_removed.add(sender.index)
        elif isinstance(proposal, Remove):
            if proposal.removed == committer:
                raise MlsError("the commit removes the committer", reason=MlsReason.BAD_PROPOSAL)
            if proposal.removed in updated_or_removed:
                raise MlsError(
                    f"several Update/Remove proposals for leaf {proposal.removed}",
                    reason=MlsReason.BAD_PROPOSAL,
                )
            updated_or_removed.add(proposal.removed)
        elif isinstance(proposal, Add):
            leaf = proposal.key_package.leaf_node
            if leaf.signature_key in add_keys:
                raise MlsError(
                    "two Add proposals for the same client (same signature key)",
                    reason=MlsReason.BAD_PROPOSAL,
                )
            if leaf.encryption_key in add_enc:
                raise MlsError("two Add proposals with the same encryption key", reason=MlsReason.BAD_PROPOSAL)
            add_keys.add(leaf.signature_key)
            add_enc.add(leaf.encryption_key)
        elif isinstance(proposal, PreSharedKey):
            key = encode(proposal.psk)
            if key in psk_ids:
                raise MlsError("two PreSharedKey proposals for the same PSK", reason=MlsReason.BAD_PROPOSAL)
            psk_ids.add(key)
        elif isinstance(proposal, GroupContextExtensions):
            gce += 1
            if gce > 1:
                raise MlsError("several GroupContextExtensions proposals", reason=MlsReason.BAD_PROPOSAL)
        elif isinstance(proposal, ReInit):
            reinit += 1
        elif isinstance(proposal, ExternalInit):
            raise MlsError("an ExternalInit proposal in a regular commit", reason=MlsReason.BAD_PROPOSAL)
    if reinit and len(items) > 1:
        raise MlsError("a ReInit proposal must be the only proposal of a commit", reason=MlsReason.BAD_PROPOSAL)
    if add_keys:
        # An Add for a client already in the group (same signature key), unless it is removed here.
        for leaf_index, leaf in tree.members():
            if leaf.signature_key in add_keys and leaf_index not in removed:
                raise MlsError("an Add proposal for a client that is already a member", reason=MlsReason.BAD_PROPOSAL)


def validate_external_list(items: Sequence[tuple[Proposal, Sender]]) -> tuple[ExternalInit, Remove | None]:
    """§12.4.3.2: exactly one ExternalInit, at most one Remove, PSKs, nothing else
    (all by value: the caller checks that). Returns the ExternalInit and the Remove."""
    init: ExternalInit | None = None
    remove: Remove | None = None
    psk_ids: set[bytes] = set()
    for proposal, _ in items:
        if isinstance(proposal, ExternalInit):
            if init is not None:
                raise MlsError("an external commit with several ExternalInit proposals", reason=MlsReason.BAD_PROPOSAL)
            init = proposal
        elif isinstance(proposal, Remove):
            if remove is not None:
                raise MlsError("an external commit with several Remove proposals", reason=MlsReason.BAD_PROPOSAL)
            remove = proposal
        elif isinstance(proposal, PreSharedKey):
            key = encode(proposal.psk)
            if key in psk_ids:
                raise MlsError("two PreSharedKey proposals for the same PSK", reason=MlsReason.BAD_PROPOSAL)
            psk_ids.add(key)
        else:
            raise MlsError(
                f"an external commit may not contain a {proposal.proposal_type.name} proposal",
                reason=MlsReason.BAD_PROPOSAL,
            )
    if init is None:
        raise MlsError("an external commit without an ExternalInit proposal", reason=MlsReason.BAD_PROPOSAL)
    return init, remove


def external_sender_key(context: GroupContext, index: int) -> bytes:
    """The signature key of external sender ``index`` (external_senders extension)."""
    senders = get_extension(context.extensions, ExternalSenders)
    if senders is None:
        raise MlsError(
            "an external sender, but the group has no external_senders extension",
            reason=MlsReason.UNKNOWN_SENDER,
        )
    if not 0 <= index < len(senders.senders):
        raise MlsError(f"unknown external sender {index}", reason=MlsReason.UNKNOWN_SENDER)
    return senders.senders[index].signature_key



def sender_signature_key(tree: RatchetTree, context: GroupContext, content: FramedContent) -> bytes:
    """Who may sign a handshake message in this epoch, and with which key
    (§6.1, §12.1.8): a member's leaf key, an external sender's key from the
    external_senders extension, a new member's own key (its KeyPackage's for an
    Add it proposes, its path leaf's for an external commit). ``MlsError`` for
    a blank or out-of-range leaf, an unknown external sender, or content a new
    member may not send."""
    sender = content.sender
    st = sender.sender_type
    if st == SenderType.MEMBER:
        i = sender.index
        leaf = tree.leaf(i) if i < tree.n_leaves else None
        if leaf is None:
            raise MlsError(f"a message from blank leaf {i}", reason=MlsReason.UNKNOWN_SENDER)
        return leaf.signature_key
    if st == SenderType.EXTERNAL:
        return external_sender_key(context, sender.index)
    body = content.content
    if st == SenderType.NEW_MEMBER_PROPOSAL:
        if not isinstance(body, Add):
            raise MlsError("a new_member_proposal sender may only propose Add", reason=MlsReason.SENDER_NOT_ALLOWED)
        return body.key_package.leaf_node.signature_key
    if st == SenderType.NEW_MEMBER_COMMIT:
        if not isinstance(body, Commit) or body.path is None:
            raise MlsError("an external commit must have a path", reason=MlsReason.BAD_COMMIT)
        return body.path.leaf_node.signature_key
    raise MlsError(f"unknown sender type {st}", reason=MlsReason.MALFORMED)  # pragma: no cover
