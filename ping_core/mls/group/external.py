"""Proposals from outside the group (RFC 9420 §12.1.8).

An *external sender* (listed in the group's external_senders extension, e.g.
a delivery service) may propose Add, Remove, PreSharedKey, ReInit and
GroupContextExtensions; a *new member* may propose adding itself
(``new_member_proposal``, signed with its KeyPackage's own key). Both send a
PublicMessage without a membership tag, signed without the GroupContext
(the sender does not have it): only the group id and epoch are needed.
"""

from __future__ import annotations

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.primitives import sign_with_label
from ping_core.mls.structs import (
    Add,
    FramedContent,
    FramedContentAuthData,
    Proposal,
    PublicMessage,
    Sender,
    WireFormat,
    framed_content_tbs,
)

from .messages import PUBLIC_PREFIX
from .validate import check_proposal_sender

__all__ = ["external_proposal"]


def external_proposal(
    crypto: CryptoProvider,
    signature_key: bytes,
    group_id: bytes,
    epoch: int,
    proposal: Proposal,
    *,
    sender_index: int | None = None,
    authenticated_data: bytes = b"",
) -> bytes:
    """A proposal (MLSMessage bytes) for the group ``group_id`` at ``epoch``.

    ``sender_index`` is our index in the group's external_senders extension;
    ``None`` makes it a new_member_proposal, which must be an Add of the
    KeyPackage whose signature key ``signature_key`` (the private key) is.
    """
    sender = Sender.new_member_proposal() if sender_index is None else Sender.external(sender_index)
    check_proposal_sender(proposal, sender)
    if sender_index is None:
        assert isinstance(proposal, Add)  # check_proposal_sender allows only Add here
        if crypto.sign_public(signature_key) != proposal.key_package.leaf_node.signature_key:
            raise MlsError(
                "a new member proposes adding itself: sign with its KeyPackage's key",
                reason=MlsReason.INVALID_ARGUMENT,
            )
    content = FramedContent(group_id, epoch, sender, authenticated_data, proposal)
    tbs = framed_content_tbs(WireFormat.PUBLIC_MESSAGE, content, None)
    signature = sign_with_label(crypto, signature_key, b"FramedContentTBS", tbs)
    return PUBLIC_PREFIX + encode(PublicMessage(content, FramedContentAuthData(signature), None))
