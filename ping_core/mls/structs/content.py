"""Message framing structs (RFC 9420 §6): Sender, FramedContent and what signs,
MACs and encrypts it.

Contents are ``bytes`` (application data), a :class:`Proposal` or a
:class:`Commit`; ``content_type`` is derived from the content, so a struct
can never disagree with itself. Structs whose body depends on a
``content_type`` known only from outside (FramedContentAuthData,
PrivateMessageContent) have ``read_for(r, content_type)`` instead of ``read``.

These are on the hot path of every application message: decoders read fields
straight off the :class:`Reader` and build each object once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer, decode_with, encode

from ping_core.mls.structs.commit import Commit
from ping_core.mls.structs.enums import (
    CONTENT_TYPE_BY_VALUE,
    SENDER_TYPE_BY_VALUE,
    WIRE_FORMAT_BY_VALUE,
    ContentType,
    ProtocolVersion,
    SenderType,
    WireFormat,
)
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.limits import MAX_GROUP_ID, MAX_HASH, MAX_SENDER_DATA, MAX_SIGNATURE
from ping_core.mls.structs.proposals import Proposal

__all__ = [
    "Content",
    "content_type_of",
    "Sender",
    "FramedContent",
    "FramedContentAuthData",
    "AuthenticatedContent",
    "PublicMessage",
    "PrivateMessage",
    "SenderData",
    "SenderDataAAD",
    "PrivateContentAAD",
    "PrivateMessageContent",
    "framed_content_tbs",
    "confirmed_transcript_hash_input",
    "interim_transcript_hash_input",
]

Content = Union[bytes, Proposal, Commit]
"""The body of a FramedContent: application data, a proposal or a commit."""

_APPLICATION = ContentType.APPLICATION
_PROPOSAL = ContentType.PROPOSAL
_COMMIT = ContentType.COMMIT
_MEMBER = SenderType.MEMBER


def content_type_of(content: Content) -> ContentType:
    """The ContentType of a content value."""
    if isinstance(content, bytes):
        return _APPLICATION
    if isinstance(content, Proposal):
        return _PROPOSAL
    if isinstance(content, Commit):
        return _COMMIT
    raise TypeError(f"not a content: {type(content).__name__}")


def _write_content(w: Writer, content: Content) -> None:
    if isinstance(content, bytes):
        w.opaque(content)
    else:
        content.write(w)


def _read_content(r: Reader, content_type: int) -> Content:
    if content_type == 1:
        return r.opaque()
    if content_type == 2:
        return Proposal.read(r)
    if content_type == 3:
        return Commit.read(r)
    raise MlsDecodeError(f"unknown content type {content_type}", reason=MlsReason.MALFORMED)


def _content_repr(content: Content) -> str:
    # Application data is the user's plaintext: never put it in a repr.
    if isinstance(content, bytes):
        return f"<{len(content)} bytes of application data>"
    return repr(content)


def _write_aad_head(w: Writer, group_id: bytes, epoch: int, content_type: int) -> None:
    # group_id, epoch, content_type: the start of PrivateMessage and of both AADs.
    w.opaque(group_id)
    w.u64(epoch)
    w.u8(content_type)


def _read_content_type(r: Reader) -> ContentType:
    raw = r.u8()
    ct = CONTENT_TYPE_BY_VALUE.get(raw)
    if ct is None:
        raise MlsDecodeError(f"unknown content type {raw}", reason=MlsReason.MALFORMED)
    return ct


@dataclass(frozen=True, slots=True)
class Sender:
    """``struct { SenderType sender_type; select {...} } Sender``.

    ``index`` is the ``leaf_index`` of a member or the ``sender_index`` of an
    external sender (into the external_senders extension); it is 0 for the
    new-member sender types, which carry no index.
    """

    sender_type: SenderType
    index: int = 0

    @classmethod
    def member(cls, leaf_index: int) -> Sender:
        return cls(SenderType.MEMBER, leaf_index)

    @classmethod
    def external(cls, sender_index: int) -> Sender:
        return cls(SenderType.EXTERNAL, sender_index)

    @classmethod
    def new_member_proposal(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_PROPOSAL)

    @classmethod
    def new_member_commit(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_COMMIT)

    @property
    def leaf_index(self) -> int:
        """The member's leaf index; ``ValueError`` for any other sender type."""
        if self.sender_type != SenderType.MEMBER:
            raise ValueError(f"a {self.sender_type.name.lower()} sender has no leaf index")
        return self.index

    def write(self, w: Writer) -> None:
        t = self.sender_type
        w.u8(t)
        if t == SenderType.MEMBER or t == SenderType.EXTERNAL:
            w.u32(self.index)
        elif self.index != 0:
            raise ValueError(f"a {t.name.lower()} sender carries no index")

    @classmethod
    def read(cls, r: Reader) -> Sender:
        raw = r.u8()
        t = SENDER_TYPE_BY_VALUE.get(raw)
        if t is None:
            raise MlsDecodeError(f"unknown sender type {raw}", reason=MlsReason.MALFORMED)
        if raw <= 2:  # member, external
            return cls(t, r.u32())
        return cls(t, 0)


@dataclass(frozen=True, slots=True)
class FramedContent:
    """``struct { opaque group_id<V>; uint64 epoch; Sender sender;
    opaque authenticated_data<V>; ContentType content_type; select {...} }``.

    ``content`` is application data (``bytes``), a Proposal or a Commit.
    """

    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes
    content: Content

    @property
    def content_type(self) -> ContentType:
        return content_type_of(self.content)

    def __repr__(self) -> str:
        return (
            f"FramedContent(group_id={self.group_id!r}, epoch={self.epoch}, sender={self.sender!r}, "
            f"authenticated_data={self.authenticated_data!r}, content={_content_repr(self.content)})"
        )

    def write(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u64(self.epoch)
        self.sender.write(w)
        w.opaque(self.authenticated_data)
        content = self.content
        w.u8(content_type_of(content))
        _write_content(w, content)

    @classmethod
    def read(cls, r: Reader) -> FramedContent:
        group_id = r.opaque(MAX_GROUP_ID)
        epoch = r.u64()
        sender = Sender.read(r)
        authenticated_data = r.opaque()
        content = _read_content(r, r.u8())
        return cls(group_id, epoch, sender, authenticated_data, content)


@dataclass(frozen=True, slots=True)
class FramedContentAuthData:
    """``struct { opaque signature<V>; select (content_type) { case commit:
    MAC confirmation_tag; ... } } FramedContentAuthData``.

    ``confirmation_tag`` is present exactly for commits; the enclosing
    struct's encoder checks that against its content.
    """

    signature: bytes
    confirmation_tag: bytes | None = None

    def write_for(self, w: Writer, content_type: int) -> None:
        """Encode for a content of ``content_type`` (checks the tag's presence)."""
        w.opaque(self.signature)
        tag = self.confirmation_tag
        if content_type == _COMMIT:
            if tag is None:
                raise ValueError("a commit's auth data needs a confirmation_tag")
            w.opaque(tag)
        elif tag is not None:
            raise ValueError("only a commit's auth data has a confirmation_tag")

    def encode_for(self, content_type: int) -> bytes:
        w = Writer()
        self.write_for(w, content_type)
        return bytes(w.buf)

    @classmethod
    def read_for(cls, r: Reader, content_type: int) -> FramedContentAuthData:
        signature = r.opaque(MAX_SIGNATURE)
        if content_type == _COMMIT:
            return cls(signature, r.opaque(MAX_HASH))
        return cls(signature, None)


def framed_content_tbs(wire_format: int, content: FramedContent, context: GroupContext | bytes | None) -> bytes:
    """The FramedContentTBS encoding that a framed content's signature covers.

    ``context`` (a GroupContext or its encoding) is required for ``member``
    and ``new_member_commit`` senders and must be ``None`` for the others.
    """
    w = Writer()
    w.u16(ProtocolVersion.MLS10)
    w.u16(wire_format)
    content.write(w)
    st = content.sender.sender_type
    if st == SenderType.MEMBER or st == SenderType.NEW_MEMBER_COMMIT:
        if context is None:
            raise ValueError("member and new_member_commit senders sign the group context")
        if isinstance(context, GroupContext):
            context.write(w)
        else:
            w.raw(context)
    elif context is not None:
        raise ValueError("external and new_member_proposal senders do not sign the group context")
    return bytes(w.buf)


def confirmed_transcript_hash_input(wire_format: int, content: FramedContent, signature: bytes) -> bytes:
    """``ConfirmedTranscriptHashInput`` (§8.2): wire_format, content, signature."""
    w = Writer()
    w.u16(wire_format)
    content.write(w)
    w.opaque(signature)
    return bytes(w.buf)


def interim_transcript_hash_input(confirmation_tag: bytes) -> bytes:
    """``InterimTranscriptHashInput`` (§8.2): the confirmation tag as ``opaque<V>``."""
    w = Writer()
    w.opaque(confirmation_tag)
    return bytes(w.buf)


@dataclass(frozen=True, slots=True)
class AuthenticatedContent:
    """``struct { WireFormat wire_format; FramedContent content;
    FramedContentAuthData auth; } AuthenticatedContent`` (hashed into a
    ProposalRef and the transcript)."""

    wire_format: WireFormat
    content: FramedContent
    auth: FramedContentAuthData

    def write(self, w: Writer) -> None:
        w.u16(self.wire_format)
        content = self.content
        content.write(w)
        self.auth.write_for(w, content_type_of(content.content))

    @classmethod
    def read(cls, r: Reader) -> AuthenticatedContent:
        raw = r.u16()
        wf = WIRE_FORMAT_BY_VALUE.get(raw)
        if wf is None:
            raise MlsDecodeError(f"unknown wire format {raw}", reason=MlsReason.MALFORMED)
        content = FramedContent.read(r)
        auth = FramedContentAuthData.read_for(r, content_type_of(content.content))
        return cls(wf, content, auth)

    def tbs(self, context: GroupContext | bytes | None) -> bytes:
        """The FramedContentTBS of this content (see :func:`framed_content_tbs`)."""
        return framed_content_tbs(self.wire_format, self.content, context)

    def confirmed_transcript_hash_input(self) -> bytes:
        """``ConfirmedTranscriptHashInput`` of this (commit) content."""
        return confirmed_transcript_hash_input(self.wire_format, self.content, self.auth.signature)


@dataclass(frozen=True, slots=True)
class PublicMessage:
    """``struct { FramedContent content; FramedContentAuthData auth;
    select (sender_type) { case member: MAC membership_tag; ... } }``.

    ``membership_tag`` is present exactly for member senders.
    """

    content: FramedContent
    auth: FramedContentAuthData
    membership_tag: bytes | None = None

    def write(self, w: Writer) -> None:
        content = self.content
        content.write(w)
        self.auth.write_for(w, content_type_of(content.content))
        tag = self.membership_tag
        if content.sender.sender_type == _MEMBER:
            if tag is None:
                raise ValueError("a member's PublicMessage needs a membership_tag")
            w.opaque(tag)
        elif tag is not None:
            raise ValueError("only a member's PublicMessage has a membership_tag")

    @classmethod
    def read(cls, r: Reader) -> PublicMessage:
        content = FramedContent.read(r)
        auth = FramedContentAuthData.read_for(r, content_type_of(content.content))
        if content.sender.sender_type == _MEMBER:
            return cls(content, auth, r.opaque(MAX_HASH))
        return cls(content, auth, None)

    def authenticated_content(self) -> AuthenticatedContent:
        return AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, self.content, self.auth)

    def tbm(self, context: GroupContext | bytes) -> bytes:
        """``AuthenticatedContentTBM`` (§6.2): FramedContentTBS then the auth
        data — what the membership tag MACs. Only for member senders."""
        tbs = framed_content_tbs(WireFormat.PUBLIC_MESSAGE, self.content, context)
        return tbs + self.auth.encode_for(content_type_of(self.content.content))


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """``struct { opaque group_id<V>; uint64 epoch; ContentType content_type;
    opaque authenticated_data<V>; opaque encrypted_sender_data<V>;
    opaque ciphertext<V>; } PrivateMessage``."""

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes
    encrypted_sender_data: bytes
    ciphertext: bytes

    def write(self, w: Writer) -> None:
        _write_aad_head(w, self.group_id, self.epoch, self.content_type)
        w.opaque(self.authenticated_data)
        w.opaque(self.encrypted_sender_data)
        w.opaque(self.ciphertext)

    @classmethod
    def read(cls, r: Reader) -> PrivateMessage:
        group_id = r.opaque(MAX_GROUP_ID)
        epoch = r.u64()
        content_type = _read_content_type(r)
        authenticated_data = r.opaque()
        encrypted_sender_data = r.opaque(MAX_SENDER_DATA)
        ciphertext = r.opaque()
        return cls(group_id, epoch, content_type, authenticated_data, encrypted_sender_data, ciphertext)

    def content_aad(self) -> bytes:
        """The PrivateContentAAD encoding for this message's fields."""
        w = Writer()
        _write_aad_head(w, self.group_id, self.epoch, self.content_type)
        w.opaque(self.authenticated_data)
        return bytes(w.buf)

    def sender_data_aad(self) -> bytes:
        """The SenderDataAAD encoding for this message's fields."""
        w = Writer()
        _write_aad_head(w, self.group_id, self.epoch, self.content_type)
        return bytes(w.buf)


@dataclass(frozen=True, slots=True)
class SenderData:
    """``struct { uint32 leaf_index; uint32 generation; opaque reuse_guard[4]; }``."""

    leaf_index: int
    generation: int
    reuse_guard: bytes

    def write(self, w: Writer) -> None:
        if len(self.reuse_guard) != 4:
            raise ValueError("reuse_guard is 4 bytes")
        w.u32(self.leaf_index)
        w.u32(self.generation)
        w.raw(self.reuse_guard)

    @classmethod
    def read(cls, r: Reader) -> SenderData:
        return cls(r.u32(), r.u32(), r.fixed(4))


@dataclass(frozen=True, slots=True)
class SenderDataAAD:
    """``struct { opaque group_id<V>; uint64 epoch; ContentType content_type; }``."""

    group_id: bytes
    epoch: int
    content_type: ContentType

    def write(self, w: Writer) -> None:
        _write_aad_head(w, self.group_id, self.epoch, self.content_type)

    @classmethod
    def read(cls, r: Reader) -> SenderDataAAD:
        return cls(r.opaque(MAX_GROUP_ID), r.u64(), _read_content_type(r))


@dataclass(frozen=True, slots=True)
class PrivateContentAAD:
    """``struct { opaque group_id<V>; uint64 epoch; ContentType content_type;
    opaque authenticated_data<V>; } PrivateContentAAD``."""

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes

    def write(self, w: Writer) -> None:
        _write_aad_head(w, self.group_id, self.epoch, self.content_type)
        w.opaque(self.authenticated_data)

    @classmethod
    def read(cls, r: Reader) -> PrivateContentAAD:
        return cls(r.opaque(MAX_GROUP_ID), r.u64(), _read_content_type(r), r.opaque())


@dataclass(frozen=True, slots=True)
class PrivateMessageContent:
    """The plaintext of a PrivateMessage: ``struct { select (content_type)
    {...}; FramedContentAuthData auth; opaque padding[length_of_padding]; }``.

    ``padding`` is the number of zero bytes at the end. Decoding needs the
    content type from the PrivateMessage (:meth:`decode`); every padding byte
    must be zero (§6.3.1), else ``MlsDecodeError``.
    """

    content: Content
    auth: FramedContentAuthData
    padding: int = 0

    @property
    def content_type(self) -> ContentType:
        return content_type_of(self.content)

    def __repr__(self) -> str:
        return (
            f"PrivateMessageContent(content={_content_repr(self.content)}, auth={self.auth!r}, "
            f"padding={self.padding})"
        )

    def write(self, w: Writer) -> None:
        content = self.content
        _write_content(w, content)
        self.auth.write_for(w, content_type_of(content))
        if self.padding:
            w.raw(bytes(self.padding))

    @classmethod
    def read_for(cls, r: Reader, content_type: int) -> PrivateMessageContent:
        """Read to the end of ``r``: content, auth data, then zero padding."""
        content = _read_content(r, content_type)
        auth = FramedContentAuthData.read_for(r, content_type)
        pos, end = r.pos, r.end
        n = end - pos
        if n and r.data.count(0, pos, end) != n:
            raise MlsDecodeError("non-zero padding in PrivateMessageContent", reason=MlsReason.MALFORMED)
        r.pos = end
        return cls(content, auth, n)

    @classmethod
    def decode(cls, data: bytes, content_type: int) -> PrivateMessageContent:
        """Decode a whole decrypted plaintext; only ``MlsDecodeError`` escapes."""
        return decode_with(lambda r: cls.read_for(r, content_type), data)

    def to_bytes(self) -> bytes:
        return encode(self)
