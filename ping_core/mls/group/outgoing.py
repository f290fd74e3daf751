"""What we send: proposals by reference (RFC 9420 §12.1) and our own commits (§12.4).

:func:`propose` validates, signs and frames one proposal of ours and keeps
it pending (its message's hash is remembered so the echo from the delivery
service is recognised). :func:`commit` stages our commit of the pending
proposals plus the proposals given by value, and keeps it as the group's
pending commit until it is merged or discarded. Nothing else changes, except
that an encrypted message consumes a handshake-ratchet generation.
"""

from __future__ import annotations

from typing import Sequence

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.primitives import sign_with_label
from ping_core.mls.structs import (
    Extension,
    GroupContextExtensions,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    Remove,
    Update,
)

from .commit import create_commit
from .keypackage import KeyPackageBundle, adds_of
from .messages import frame_signed, proposal_ref, sign_content
from .proposals import PendingProposal
from ping_core.mls.group.psk_sources import PskSource
from .results import ProposalMessage
from .staged import StagedCommit
from .state import GroupState
from .validate import check_proposal_sender, validate_received_proposal

__all__ = ["propose", "update_proposal", "commit"]


def propose(
    gs: GroupState, proposal: Proposal, *, encrypt: bool | None, authenticated_data: bytes, leaf_secret: bytes | None = None
) -> ProposalMessage:
    """Our ``proposal`` as a message, stored as pending (``leaf_secret``: an Update's new
    private key, kept until a commit applies it). ``MlsError`` and no change when it is
    invalid or already pending, or we may not send."""
    gs.require_active()
    state = gs.current
    sender = state.framing.member(state.own_leaf)
    check_proposal_sender(proposal, sender)
    if not isinstance(proposal, Update):
        validate_received_proposal(gs.crypto, gs, state.tree, state.context, proposal, sender)
    enc = gs.config.encrypt_handshake if encrypt is None else encrypt
    auth = sign_content(
        gs.crypto, state.framing, state.own_leaf, proposal, gs.signer.private_key, encrypt=enc,
        authenticated_data=authenticated_data,
    )  # fmt: skip
    ref = proposal_ref(gs.crypto, auth)
    if ref in gs.proposals:
        raise MlsError("this proposal is already pending", reason=MlsReason.WRONG_STATE)
    message = frame_signed(gs.crypto, state.framing, auth, padding_block=gs.config.padding_block)
    gs.proposals.add(PendingProposal(ref, proposal, sender, leaf_secret))
    gs.own_proposal_messages[gs.crypto.hash(message)] = ref
    gs.touch("proposals")
    return ProposalMessage(message, ref)


def update_proposal(gs: GroupState) -> tuple[Update, bytes]:
    """An Update of our leaf with a fresh encryption key (§12.1.2), and its private key."""
    old = gs.current.own_leaf_node()
    signer = gs.signer
    priv, pub = gs.crypto.dh_keygen()
    leaf = LeafNode(pub, signer.public_key, signer.credential, old.capabilities, LeafNodeSource.UPDATE, None, None, old.extensions)
    sig = sign_with_label(gs.crypto, signer.private_key, b"LeafNodeTBS", leaf.tbs(gs.group_id, gs.own_leaf_index))
    leaf = LeafNode(pub, leaf.signature_key, leaf.credential, leaf.capabilities, leaf.leaf_node_source, None, None, leaf.extensions, sig)
    return Update(leaf), priv


def commit(
    gs: GroupState,
    *,
    add: Sequence[KeyPackage | KeyPackageBundle | bytes] = (),
    remove: Sequence[int] = (),
    external_psks: Sequence[bytes] = (),
    extensions: Sequence[Extension] | None = None,
    proposals: Sequence[Proposal] = (),
    include_pending: bool = True,
    force_path: bool = False,
    encrypt: bool | None = None,
    ratchet_tree_extension: bool | None = None,
    authenticated_data: bytes = b"",
    psks: PskSource = None,
) -> StagedCommit:
    """Stage our commit (see :meth:`.Group.commit`) and keep it as the pending commit."""
    gs.require_active()
    by_value, raw_kps = adds_of(add)
    by_value += [Remove(i) for i in remove]
    by_value += [PreSharedKey(PreSharedKeyID.external(pid, gs.crypto.random(32))) for pid in external_psks]
    if extensions is not None:
        by_value.append(GroupContextExtensions(tuple(extensions)))
    by_value += list(proposals)
    staged = create_commit(
        gs,
        by_value=by_value,
        include_pending=include_pending,
        force_path=force_path,
        encrypt=encrypt,
        ratchet_tree_extension=ratchet_tree_extension,
        authenticated_data=authenticated_data,
        psks=psks,
        key_package_bytes=raw_kps,
    )
    gs.pending_commit = staged
    gs.touch("staged")
    return staged
