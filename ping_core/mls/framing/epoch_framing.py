"""What one epoch needs to frame messages, and the signatures both wire formats share (RFC 9420 §6, §6.1).

An :class:`EpochFraming` holds the epoch's group id and epoch, the encoded
GroupContext, the sender-data secret, the membership key and the epoch's
:class:`SecretTree`, and caches the encodings that are the same for every
message of the epoch. :class:`Unprotected` is what the unprotect functions of
:mod:`~ping_core.mls.framing.private_message` and :mod:`~ping_core.mls.framing.public_message`
return. The signature over ``FramedContentTBS`` (§6.1) is made and checked here
for both.
"""

from __future__ import annotations

from typing import Callable

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.schedule.key_schedule import EpochSecrets
from ping_core.mls.structs.content import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    Sender,
    content_type_of,
)
from ping_core.mls.structs.enums import ContentType, SenderType
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.tls import encode, opaque
from ping_core.mls.tree.secret_tree import RatchetConfig, RatchetKey, SecretTree

__all__ = [
    "EpochFraming",
    "SignerKey",
    "Unprotected",
    "TBS_LABEL",
    "framed_content_tbs",
    "sign_framed",
    "verify_framed",
    "verify_signature",
    "check_group_epoch",
    "auth_data",
]

SignerKey = Callable[[FramedContent], bytes]
"""Returns the signature public key of a message's sender, or raises ``MlsError``."""

_APPLICATION = ContentType.APPLICATION
_PROPOSAL = ContentType.PROPOSAL
_COMMIT = ContentType.COMMIT
_MEMBER = SenderType.MEMBER
TBS_LABEL = opaque(b"MLS 1.0 FramedContentTBS")
"""The label of ``SignWithLabel(., "FramedContentTBS", .)`` (§5.1.2), encoded."""


class EpochFraming:
    """The per-epoch state and cached encodings of message framing.

    The secret tree is the one stateful part; everything else is fixed for
    the epoch. Secrets never appear in ``repr``.
    """

    __slots__ = (
        "group_id",
        "epoch",
        "group_context",
        "sender_data_secret",
        "membership_key",
        "secret_tree",
        "gid_epoch",
        "sender_data_aad",
        "_senders",
    )

    def __init__(
        self,
        group_id: bytes,
        epoch: int,
        group_context: bytes,
        sender_data_secret: bytes,
        membership_key: bytes,
        secret_tree: SecretTree,
    ) -> None:
        """``group_context`` is this epoch's GroupContext, encoded (its group id and epoch must match)."""
        self.group_id = group_id
        self.epoch = epoch
        self.group_context = group_context
        self.sender_data_secret = sender_data_secret
        self.membership_key = membership_key
        self.secret_tree = secret_tree
        # opaque group_id<V> || uint64 epoch opens SenderDataAAD,
        # PrivateContentAAD, FramedContent and so FramedContentTBS.
        self.gid_epoch = opaque(group_id) + epoch.to_bytes(8, "big")
        self.sender_data_aad: dict[int, bytes] = {ct: self.gid_epoch + bytes((ct,)) for ct in (_APPLICATION, _PROPOSAL, _COMMIT)}
        self._senders: dict[int, Sender] = {}  # leaf -> Sender: shared, they are immutable
        # GroupContext = version, cipher_suite, group_id, epoch, ...: check they agree.
        if group_context[4 : 4 + len(self.gid_epoch)] != self.gid_epoch:
            raise MlsError("the group context does not match the group id and epoch", reason=MlsReason.INVALID_ARGUMENT)

    @classmethod
    def create(
        cls,
        crypto: CryptoProvider,
        context: GroupContext,
        secrets: EpochSecrets,
        n_leaves: int,
        config: RatchetConfig | None = None,
    ) -> EpochFraming:
        """The framing state of a new epoch, with a fresh secret tree."""
        tree = SecretTree(crypto, secrets.encryption_secret, n_leaves, config)
        return cls(context.group_id, context.epoch, encode(context), secrets.sender_data_secret, secrets.membership_key, tree)

    def __repr__(self) -> str:
        return f"EpochFraming(group_id={self.group_id!r}, epoch={self.epoch}, tree={self.secret_tree!r})"

    def member(self, leaf: int) -> Sender:
        """The (shared) ``Sender`` of member ``leaf``."""
        sender = self._senders.get(leaf)
        if sender is None:
            sender = self._senders[leaf] = Sender(_MEMBER, leaf)
        return sender


class Unprotected:
    """An authenticated message: its content, and the ratchet step it used.

    ``ratchet_key`` is the secret-tree step of a PrivateMessage (``None`` for
    a PublicMessage). It is already committed unless ``defer_commit`` was
    asked for; then the caller commits it with ``ep.secret_tree.commit``.
    """

    __slots__ = ("content", "ratchet_key")

    def __init__(self, content: AuthenticatedContent, ratchet_key: RatchetKey | None = None) -> None:
        self.content = content
        self.ratchet_key = ratchet_key

    def __repr__(self) -> str:
        return f"Unprotected({self.content!r}, {self.ratchet_key!r})"


def framed_content_tbs(group_context: bytes, wire_format: int, content: FramedContent) -> bytes:
    """FramedContentTBS (§6.1); the encoded GroupContext is included for member and
    new_member_commit senders."""
    head = b"\x00\x01" + wire_format.to_bytes(2, "big")
    body = encode(content)
    st = content.sender.sender_type
    if st == _MEMBER or st == SenderType.NEW_MEMBER_COMMIT:
        return head + body + group_context
    return head + body


def sign_framed(
    crypto: CryptoProvider, ep: EpochFraming, wire_format: int, content: FramedContent, signature_key: bytes
) -> bytes:
    """The signature of ``content`` sent as ``wire_format``: ``SignWithLabel(., "FramedContentTBS", TBS)``."""
    tbs = framed_content_tbs(ep.group_context, wire_format, content)
    return crypto.sign(signature_key, TBS_LABEL + opaque(tbs))


def verify_framed(crypto: CryptoProvider, ep: EpochFraming, auth: AuthenticatedContent, public_key: bytes) -> None:
    """Verify an AuthenticatedContent's signature; ``InvalidSignature`` otherwise."""
    verify_signature(crypto, ep.group_context, auth, public_key)


def verify_signature(crypto: CryptoProvider, group_context: bytes, auth: AuthenticatedContent, public_key: bytes) -> None:
    """Verify ``auth``'s signature over its FramedContentTBS with GroupContext ``group_context``."""
    tbs = framed_content_tbs(group_context, auth.wire_format, auth.content)
    crypto.verify(public_key, TBS_LABEL + opaque(tbs), auth.auth.signature)


def check_group_epoch(group_id: bytes, epoch: int, content: FramedContent) -> None:
    """``MlsError`` unless ``content`` is for epoch ``epoch`` of group ``group_id`` (§6)."""
    if content.group_id != group_id:
        raise MlsError("the message is for another group", reason=MlsReason.WRONG_GROUP)
    if content.epoch != epoch:
        raise MlsError(f"the message is for epoch {content.epoch}, not {epoch}", reason=MlsReason.WRONG_EPOCH)


def auth_data(framed: FramedContent, signature: bytes, confirmation_tag: bytes | None) -> FramedContentAuthData:
    """FramedContentAuthData (§6.1): a commit, and only a commit, carries a confirmation tag."""
    is_commit = content_type_of(framed.content) == _COMMIT
    if is_commit != (confirmation_tag is not None):
        raise MlsError("a commit, and only a commit, carries a confirmation tag", reason=MlsReason.INVALID_ARGUMENT)
    return FramedContentAuthData(signature, confirmation_tag)
