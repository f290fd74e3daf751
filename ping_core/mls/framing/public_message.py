"""PublicMessage (RFC 9420 §6.2): a signed content with a membership tag for a member's message.

Sending::

    msg = protect_public(crypto, ep, leaf, proposal, signature_key)

Commits carry a confirmation tag that depends on their own signature; the
group layer therefore signs with :func:`~ping_core.mls.framing.epoch_framing.sign_framed`,
derives the tag, and frames the finished :class:`AuthenticatedContent` with
:func:`frame_public`.

Receiving::

    content = unprotect_public(crypto, ep, public_message, signer_key)

The checks (group id, epoch, the sender and content-type rules, the membership
tag of a member's message, the signature) all run before anything is returned,
and none changes state; a failure raises an ``MlsError`` subclass
(``InvalidSignature``, ``MlsDecodeError``). :func:`verify_public` is the same
check for a verifier outside the group (a delivery service). A commit's
confirmation tag is *not* checked here (it needs the next epoch's key
schedule); :mod:`ping_core.mls.schedule.transcript` has the check.
"""

from __future__ import annotations

import hmac as _hmac

from ping_core.errors import MlsDecodeError, MlsError, MlsReason
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.structs.content import (
    AuthenticatedContent,
    Content,
    FramedContent,
    FramedContentAuthData,
    PublicMessage,
    Sender,
    content_type_of,
)
from ping_core.mls.structs.enums import ContentType, SenderType, WireFormat

from ping_core.mls.framing.epoch_framing import (
    EpochFraming,
    SignerKey,
    Unprotected,
    auth_data,
    check_group_epoch,
    framed_content_tbs,
    sign_framed,
    verify_signature,
)

__all__ = ["frame_public", "protect_public", "unprotect_public", "verify_public"]

_APPLICATION = ContentType.APPLICATION
_PROPOSAL = ContentType.PROPOSAL
_COMMIT = ContentType.COMMIT
_PUBLIC = WireFormat.PUBLIC_MESSAGE
_MEMBER = SenderType.MEMBER


def _check_public_sender(content: FramedContent, reason: MlsReason) -> None:
    """The sender may send this content type as a PublicMessage (RFC 9420 §6.2); ``reason``
    is the caller's: INVALID_ARGUMENT when we frame, SENDER_NOT_ALLOWED when we verify."""
    ct = content_type_of(content.content)
    st = content.sender.sender_type
    if ct == _APPLICATION:
        raise MlsError("application data must not be sent as a PublicMessage", reason=reason)
    if st == SenderType.EXTERNAL and ct != _PROPOSAL:
        raise MlsError("an external sender may only send proposals", reason=reason)
    if st == SenderType.NEW_MEMBER_PROPOSAL and ct != _PROPOSAL:
        raise MlsError("a new_member_proposal sender may only send proposals", reason=reason)
    if st == SenderType.NEW_MEMBER_COMMIT and ct != _COMMIT:
        raise MlsError("a new_member_commit sender may only send commits", reason=reason)


def _tbm(group_context: bytes, content: FramedContent, auth: FramedContentAuthData) -> bytes:
    # AuthenticatedContentTBM = FramedContentTBS || FramedContentAuthData.
    return framed_content_tbs(group_context, _PUBLIC, content) + auth.encode_for(content_type_of(content.content))


def frame_public(crypto: CryptoProvider, ep: EpochFraming, authenticated: AuthenticatedContent) -> PublicMessage:
    """A signed content as a PublicMessage, with the membership tag for a member sender."""
    content = authenticated.content
    if authenticated.wire_format != _PUBLIC:
        raise MlsError("a PublicMessage carries public_message content", reason=MlsReason.INVALID_ARGUMENT)
    check_group_epoch(ep.group_id, ep.epoch, content)
    _check_public_sender(content, MlsReason.INVALID_ARGUMENT)
    if content.sender.sender_type != _MEMBER:
        return PublicMessage(content, authenticated.auth, None)
    tag = crypto.hmac(ep.membership_key, _tbm(ep.group_context, content, authenticated.auth))
    return PublicMessage(content, authenticated.auth, tag)


def protect_public(
    crypto: CryptoProvider,
    ep: EpochFraming,
    sender_leaf: int,
    content: Content,
    signature_key: bytes,
    *,
    authenticated_data: bytes = b"",
    confirmation_tag: bytes | None = None,
) -> PublicMessage:
    """Sign a Proposal (or a Commit with its tag) from member ``sender_leaf`` as a PublicMessage."""
    framed = FramedContent(ep.group_id, ep.epoch, Sender(_MEMBER, sender_leaf), authenticated_data, content)
    _check_public_sender(framed, MlsReason.INVALID_ARGUMENT)
    signature = sign_framed(crypto, ep, _PUBLIC, framed, signature_key)
    auth = auth_data(framed, signature, confirmation_tag)
    return frame_public(crypto, ep, AuthenticatedContent(_PUBLIC, framed, auth))


def unprotect_public(crypto: CryptoProvider, ep: EpochFraming, msg: PublicMessage, signer_key: SignerKey) -> Unprotected:
    """Verify a PublicMessage: group, epoch, sender rules, membership tag, signature.

    Changes no state. Raises ``MlsError`` (``InvalidSignature`` for the
    signature) when anything does not verify.
    """
    authenticated = verify_public(
        crypto, ep.group_id, ep.epoch, ep.group_context, msg, signer_key, membership_key=ep.membership_key
    )
    return Unprotected(authenticated, None)


def verify_public(
    crypto: CryptoProvider,
    group_id: bytes,
    epoch: int,
    group_context: bytes,
    msg: PublicMessage,
    signer_key: SignerKey,
    *,
    membership_key: bytes | None,
) -> AuthenticatedContent:
    """Verify a PublicMessage of epoch ``epoch`` of group ``group_id`` whose
    GroupContext encodes to ``group_context`` (§6.2): group and epoch, the
    sender/content-type rules, the membership tag of a member's message, and
    the signature over FramedContentTBS (§6.1) with ``signer_key(content)``.

    ``membership_key=None`` is for a verifier outside the group (a delivery
    service): it cannot compute the tag, which is keyed by the epoch's
    membership key, so only its presence (member senders) or absence (others)
    is checked; the signature, which binds the GroupContext, is checked as
    always. Changes nothing; ``MlsError`` (``InvalidSignature``,
    ``MlsDecodeError``) when anything does not verify.
    """
    content = msg.content
    check_group_epoch(group_id, epoch, content)
    _check_public_sender(content, MlsReason.SENDER_NOT_ALLOWED)
    if content.sender.sender_type == _MEMBER:
        tag = msg.membership_tag
        if tag is None:
            raise MlsDecodeError("a member's PublicMessage lacks its membership tag", reason=MlsReason.MALFORMED)
        if membership_key is not None:
            want = crypto.hmac(membership_key, _tbm(group_context, content, msg.auth))
            if not _hmac.compare_digest(want, tag):
                raise MlsError("membership tag does not verify", reason=MlsReason.BAD_TAG)
    elif msg.membership_tag is not None:
        raise MlsDecodeError("only a member's PublicMessage has a membership tag", reason=MlsReason.MALFORMED)
    authenticated = AuthenticatedContent(_PUBLIC, content, msg.auth)
    verify_signature(crypto, group_context, authenticated, signer_key(content))
    return authenticated
