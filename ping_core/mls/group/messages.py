"""Framing our own handshake messages, and the MLSMessage envelope.

A proposal or commit we send is a :class:`FramedContent` from our leaf,
signed over the current epoch's GroupContext, then framed as a PublicMessage
(with the membership tag) or encrypted as a PrivateMessage with the sender's
next handshake-ratchet generation.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import Writer, encode, opaque
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.framing.epoch_framing import EpochFraming, sign_framed
from ping_core.mls.framing.private_message import encrypt_private
from ping_core.mls.framing.public_message import frame_public
from ping_core.mls.primitives import make_proposal_ref
from ping_core.mls.structs import (
    Add,
    AuthenticatedContent,
    Commit,
    ProposalOrRefType,
    ProposalType,
    UpdatePath,
    FramedContent,
    FramedContentAuthData,
    PrivateMessage,
    PublicMessage,
    WireFormat,
)
from ping_core.mls.structs.content import Content, content_type_of
from ping_core.mls.structs.proposals import ProposalOrRef, write_proposal_or_ref

__all__ = [
    "PUBLIC_PREFIX",
    "PRIVATE_PREFIX",
    "WELCOME_PREFIX",
    "GROUP_INFO_PREFIX",
    "KEY_PACKAGE_PREFIX",
    "mls_message",
    "sign_content",
    "frame_signed",
    "proposal_ref",
    "PreEncodedCommit",
    "pre_encoded_commit",
]

# MLSMessage = version mls10 (0x0001), wire_format (uint16), body.
PUBLIC_PREFIX = b"\x00\x01\x00\x01"
PRIVATE_PREFIX = b"\x00\x01\x00\x02"
WELCOME_PREFIX = b"\x00\x01\x00\x03"
GROUP_INFO_PREFIX = b"\x00\x01\x00\x04"
KEY_PACKAGE_PREFIX = b"\x00\x01\x00\x05"


def mls_message(body: PublicMessage | PrivateMessage) -> bytes:
    """The TLS-serialized MLSMessage of a PublicMessage or PrivateMessage."""
    prefix = PUBLIC_PREFIX if isinstance(body, PublicMessage) else PRIVATE_PREFIX
    return prefix + encode(body)


def sign_content(
    crypto: CryptoProvider,
    framing: EpochFraming,
    own_leaf: int,
    content: Content,
    signature_key: bytes,
    *,
    encrypt: bool,
    authenticated_data: bytes = b"",
    confirmation_tag: bytes | None = None,
) -> AuthenticatedContent:
    """Our content as a signed AuthenticatedContent (wire format per ``encrypt``).

    ``confirmation_tag`` is attached as is; a commit's tag depends on the
    signature, so commits call this without a tag and :func:`with_tag` after.
    """
    wf = WireFormat.PRIVATE_MESSAGE if encrypt else WireFormat.PUBLIC_MESSAGE
    framed = FramedContent(framing.group_id, framing.epoch, framing.member(own_leaf), authenticated_data, content)
    signature = sign_framed(crypto, framing, wf, framed, signature_key)
    return AuthenticatedContent(wf, framed, FramedContentAuthData(signature, confirmation_tag))


def with_tag(auth: AuthenticatedContent, confirmation_tag: bytes) -> AuthenticatedContent:
    """``auth`` (a commit) with its confirmation tag."""
    return AuthenticatedContent(auth.wire_format, auth.content, FramedContentAuthData(auth.auth.signature, confirmation_tag))


def frame_signed(
    crypto: CryptoProvider, framing: EpochFraming, auth: AuthenticatedContent, *, padding_block: int = 0
) -> bytes:
    """The MLSMessage of a signed content: PublicMessage (membership tag) or
    PrivateMessage (consumes the next handshake generation of our ratchet; the
    plaintext zero-padded to a multiple of ``padding_block`` when above 1)."""
    if auth.wire_format == WireFormat.PUBLIC_MESSAGE:
        return mls_message(frame_public(crypto, framing, auth))
    if auth.wire_format == WireFormat.PRIVATE_MESSAGE:
        padding = 0
        if padding_block > 1:
            # PrivateMessageContent = content || FramedContentAuthData || padding.
            body = auth.content.content
            body_len = len(opaque(body)) if isinstance(body, bytes) else len(encode(body))
            size = body_len + len(auth.auth.encode_for(content_type_of(body)))
            padding = -size % padding_block
        return mls_message(encrypt_private(crypto, framing, auth, padding=padding))
    raise MlsError(f"cannot frame wire format {auth.wire_format}", reason=MlsReason.INVALID_ARGUMENT)


def proposal_ref(crypto: CryptoProvider, auth: AuthenticatedContent) -> bytes:
    """``MakeProposalRef`` over the encoded AuthenticatedContent (§5.2)."""
    return make_proposal_ref(crypto, encode(auth))


class PreEncodedCommit(Commit):
    """A Commit that carries its own encoding, so the many places that encode a
    commit we send (signature, transcript hash, membership tag, message) copy
    bytes instead of re-encoding hundreds of KeyPackages each time."""

    __slots__ = ("_encoding",)
    _encoding: bytes

    def write(self, w: Writer) -> None:
        w.raw(self._encoding)


def pre_encoded_commit(
    proposals: Sequence[ProposalOrRef], path: UpdatePath | None, key_package_bytes: Mapping[int, bytes]
) -> Commit:
    """The Commit of ``proposals`` and ``path``, encoded once. ``key_package_bytes``
    maps ``id(KeyPackage)`` to the KeyPackage's encoding where the caller has it."""
    w = Writer()
    start = w.begin_vector()
    for por in proposals:
        if isinstance(por, Add):
            raw = key_package_bytes.get(id(por.key_package))
            if raw is not None:
                w.u8(ProposalOrRefType.PROPOSAL)
                w.u16(ProposalType.ADD)
                w.raw(raw)
                continue
        write_proposal_or_ref(w, por)
    w.end_vector(start)
    w.optional(path)
    commit = PreEncodedCommit.__new__(PreEncodedCommit)
    object.__setattr__(commit, "proposals", tuple(proposals))
    object.__setattr__(commit, "path", path)
    object.__setattr__(commit, "_encoding", w.getvalue())
    return commit
