"""Processing received messages (RFC 9420 §6, §12.1, §12.4.2).

:func:`process_message` takes a TLS-serialized MLSMessage (PublicMessage or
PrivateMessage) and returns what it was: application data, a stored
proposal, or a commit (applied, or staged when the caller asked to merge it
itself). Every check runs before anything changes; on failure an
``MlsError`` is raised and the group is exactly as it was.

Our own messages echoed back by the delivery service are recognised by
their bytes: our commit that is still pending is merged (the server took
it), one we already merged is reported as such, our own proposals as stored;
none of them is processed again (we could not decrypt our own path or reuse
our own ratchet generation anyway).
"""

from __future__ import annotations

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import decode_exact
from ping_core.mls.framing.epoch_framing import SignerKey
from ping_core.mls.framing.private_message import unprotect_private
from ping_core.mls.framing.public_message import unprotect_public
from ping_core.mls.structs import (
    Commit,
    ContentType,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    Proposal,
    PublicMessage,
    Sender,
)
from ping_core.mls.structs.content import content_type_of

from .application import unprotect_application
from .commit import stage_commit
from .merge import merge_staged_commit
from .staged import StagedCommit
from .state import GroupState
from .messages import proposal_ref
from .proposals import PendingProposal
from ping_core.mls.group.psk_sources import PskSource
from .results import CommitApplied, ProcessResult, ProposalStored, SenderCheck, SenderInfo
from .validate import sender_signature_key, validate_received_proposal


__all__ = ["process_message"]


def _signer_key_for(group: GroupState, used: list[bytes]) -> SignerKey:
    """Who may sign a handshake message in the current epoch, and with which key
    (each key handed out is appended to ``used``)."""
    state = group.current

    def signer_key(content: FramedContent) -> bytes:
        key = sender_signature_key(state.tree, state.context, content)
        used.append(key)
        return key

    return signer_key


def process_message(
    group: GroupState,
    data: bytes,
    *,
    merge: bool = True,
    psks: PskSource = None,
    check_sender: SenderCheck | None = None,
) -> ProcessResult | StagedCommit:
    """See the module docstring. With ``merge=False`` a valid commit is returned
    as a :class:`StagedCommit` for the caller to merge or drop.

    ``check_sender`` is called once the message's sender is authenticated
    (signature, and membership tag or AEAD, verified; for our own echoed
    messages: recognised by their bytes) and before anything changes; if it
    raises, the exception propagates and the group is unchanged. A commit is
    checked before it is staged (the cheap refusal comes first)."""
    if not isinstance(data, bytes):
        raise MlsError("a message must be bytes", reason=MlsReason.INVALID_ARGUMENT)
    crypto = group.crypto
    msg = decode_exact(MLSMessage, data)
    body = msg.body
    if not isinstance(body, (PublicMessage, PrivateMessage)):
        raise MlsError(
            f"a {type(body).__name__} is not a group message (use join for a Welcome)",
            reason=MlsReason.MALFORMED,
        )
    digest = crypto.hash(data)
    echo = _own_echo(group, digest, merge, body, check_sender)
    if echo is not None:
        return echo
    state = group.current
    group_id = body.content.group_id if isinstance(body, PublicMessage) else body.group_id
    epoch = body.content.epoch if isinstance(body, PublicMessage) else body.epoch
    if group_id != state.context.group_id:
        raise MlsError("the message is for another group", reason=MlsReason.WRONG_GROUP)
    if isinstance(body, PrivateMessage) and body.content_type == ContentType.APPLICATION:
        return unprotect_application(group, body, check_sender)
    if not group.active:
        raise MlsError("we are no longer a member of this group", reason=MlsReason.WRONG_STATE)
    if epoch != state.epoch:
        raise MlsError(
            f"a handshake message for epoch {epoch}, but the group is at epoch {state.epoch}",
            reason=MlsReason.WRONG_EPOCH,
        )
    used: list[bytes] = []
    signer_key = _signer_key_for(group, used)
    if isinstance(body, PublicMessage):
        un = unprotect_public(crypto, state.framing, body, signer_key)
    else:
        un = unprotect_private(crypto, state.framing, body, signer_key, defer_commit=True)
    auth = un.content
    framed = auth.content
    content = framed.content
    if check_sender is not None:
        check_sender(
            SenderInfo(
                framed.sender,
                used[-1],
                epoch,
                content_type_of(content),
                framed.authenticated_data,
                content if isinstance(content, Proposal) else None,
            )
        )
    if isinstance(content, Proposal):
        sender = framed.sender
        validate_received_proposal(crypto, group, state.tree, state.context, content, sender)
        ref = proposal_ref(crypto, auth)
        # Store first (it may refuse: too many pending), then consume the generation.
        if group.proposals.add(PendingProposal(ref, content, sender)):
            group.touch("proposals")
        if un.ratchet_key is not None:
            state.framing.secret_tree.commit(un.ratchet_key)
        return ProposalStored(ref, content, sender)
    if isinstance(content, Commit):
        staged = stage_commit(group, un, digest, psks=psks)
        if not merge:
            return staged
        return merge_staged_commit(group, staged)
    raise MlsError("application data must be sent as a PrivateMessage", reason=MlsReason.SENDER_NOT_ALLOWED)


def _own_echo(
    group: GroupState,
    digest: bytes,
    merge: bool,
    body: PublicMessage | PrivateMessage,
    check_sender: SenderCheck | None,
) -> ProcessResult | StagedCommit | None:
    """Our own commit or proposal, recognised by the hash of its bytes (``None``: not ours)."""
    staged = group.pending_commit
    last = group.last_own_commit
    if staged is not None and staged.message_hash == digest:
        _check_own(group, staged.base_epoch, body, None, check_sender)
        if not merge:
            return staged
        return merge_staged_commit(group, staged)
    if last is not None and last[0] == digest:
        _check_own(group, last[1] - 1, body, None, check_sender)
        return CommitApplied(epoch=last[1], committer=group.own_leaf_index, own=True, already_applied=True)
    ref = group.own_proposal_messages.get(digest)
    if ref is not None:
        pending = group.proposals.get(ref)
        if pending is not None:
            _check_own(group, group.epoch, body, pending.proposal, check_sender)
            return ProposalStored(ref, pending.proposal, pending.sender, own=True)
    return None


def _check_own(
    group: GroupState, epoch: int, body: PublicMessage | PrivateMessage, proposal: Proposal | None, check_sender: SenderCheck | None
) -> None:
    if check_sender is None:
        return
    aad = body.content.authenticated_data if isinstance(body, PublicMessage) else body.authenticated_data
    content_type = ContentType.PROPOSAL if proposal is not None else ContentType.COMMIT
    info = SenderInfo(Sender.member(group.own_leaf_index), group.signer.public_key, epoch, content_type, aad, proposal, own=True)
    check_sender(info)
