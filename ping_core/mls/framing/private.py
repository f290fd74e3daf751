"""Protect and unprotect PublicMessage and PrivateMessage (RFC 9420 §6).

An :class:`EpochFraming` holds what one epoch needs to frame messages: its
group id and epoch, the encoded GroupContext, the sender-data secret, the
membership key and the epoch's :class:`SecretTree`. It also caches the
encodings that are the same for every message of the epoch.

Sending::

    msg = protect_private(crypto, ep, leaf, content, signature_key)   # PrivateMessage
    msg = protect_public(crypto, ep, leaf, proposal, signature_key)   # PublicMessage

Commits carry a confirmation tag that depends on their own signature; the
group layer therefore signs with :func:`sign_content`, derives the tag, and
frames the finished :class:`AuthenticatedContent` with :func:`encrypt_private`
or :func:`frame_public`.

Receiving::

    result = unprotect_private(crypto, ep, private_message, signer_key)
    content = unprotect_public(crypto, ep, public_message, signer_key)

``signer_key(framed_content) -> bytes`` returns the sender's signature public
key (from the ratchet tree for a member, from the external_senders extension
or the message itself otherwise) and raises ``MlsError`` when the sender is
not acceptable (a blank leaf, say).

Guarantees of the unprotect functions:

* every check runs before anything changes: group id, epoch, content type
  rules, sender data, the ratchet generation, content decryption, padding,
  the membership tag and the signature;
* the secret tree is consumed only after all of them passed (with
  ``defer_commit=True`` not even then: the caller commits
  ``result.ratchet_key`` after it has applied the message);
* failures raise ``MlsError`` subclasses (``DecryptionFailed``,
  ``InvalidSignature``, ``MlsDecodeError``) and leave the tree unchanged.

A commit's confirmation tag is *not* checked here (it needs the next epoch's
key schedule); :mod:`ping_core.mls.schedule.transcript` has the check.
"""

from __future__ import annotations

import hmac as _hmac
from typing import Callable

from ping_core.errors import DecryptionFailed, MlsDecodeError, MlsError, MlsReason
from ping_core.mls.tls import Reader, opaque, varint
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.crypto.provider import SIGNATURE_LEN, sample_context, sign_and_encrypt
from ping_core.mls.structs.commit import Commit
from ping_core.mls.structs.enums import ContentType, SenderType, WireFormat
from ping_core.mls.structs.content import (
    AuthenticatedContent,
    Content,
    FramedContent,
    FramedContentAuthData,
    PrivateMessage,
    PublicMessage,
    Sender,
    content_type_of,
)
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.structs.proposals import Proposal

from ping_core.mls.tls import encode
from ping_core.mls.primitives import NK, NN
from ping_core.mls.schedule.key_schedule import EpochSecrets
from ping_core.mls.tree.secret_tree import APPLICATION, HANDSHAKE, RatchetConfig, RatchetKey, SecretTree

__all__ = [
    "EpochFraming",
    "SignerKey",
    "Unprotected",
    "sign_framed",
    "verify_framed",
    "encrypt_private",
    "protect_private",
    "unprotect_private",
    "frame_public",
    "protect_public",
    "unprotect_public",
    "verify_public",
    "MAX_PADDING",
]

SignerKey = Callable[[FramedContent], bytes]
"""Returns the signature public key of a message's sender, or raises ``MlsError``."""

_APPLICATION = ContentType.APPLICATION
_PROPOSAL = ContentType.PROPOSAL
_COMMIT = ContentType.COMMIT
_PUBLIC = WireFormat.PUBLIC_MESSAGE
_PRIVATE = WireFormat.PRIVATE_MESSAGE
_MEMBER = SenderType.MEMBER
_TBS_LABEL = opaque(b"MLS 1.0 FramedContentTBS")
_SENDER_DATA_LEN = 12  # uint32 leaf_index, uint32 generation, reuse_guard[4]
_SENDER_DATA_CT_LEN = _SENDER_DATA_LEN + 16  # + AEAD tag
MAX_PADDING = 1 << 16
_AEAD_TAG = 16
# opaque signature<V> of an Ed25519 signature (64 bytes): its varint length prefix.
_SIGNATURE_PREFIX = varint(SIGNATURE_LEN)


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
        "_gid_epoch",
        "_sender_data_aad",
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
        self._gid_epoch = opaque(group_id) + epoch.to_bytes(8, "big")
        self._sender_data_aad: dict[int, bytes] = {ct: self._gid_epoch + bytes((ct,)) for ct in (_APPLICATION, _PROPOSAL, _COMMIT)}
        self._senders: dict[int, Sender] = {}  # leaf -> Sender: shared, they are immutable
        # GroupContext = version, cipher_suite, group_id, epoch, ...: check they agree.
        if group_context[4 : 4 + len(self._gid_epoch)] != self._gid_epoch:
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


# -- signatures ------------------------------------------------------------


def _tbs(group_context: bytes, wire_format: int, content: FramedContent) -> bytes:
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
    tbs = _tbs(ep.group_context, wire_format, content)
    return crypto.sign(signature_key, _TBS_LABEL + opaque(tbs))


def verify_framed(crypto: CryptoProvider, ep: EpochFraming, auth: AuthenticatedContent, public_key: bytes) -> None:
    """Verify an AuthenticatedContent's signature; ``InvalidSignature`` otherwise."""
    _verify_signature(crypto, ep.group_context, auth, public_key)


def _verify_signature(crypto: CryptoProvider, group_context: bytes, auth: AuthenticatedContent, public_key: bytes) -> None:
    tbs = _tbs(group_context, auth.wire_format, auth.content)
    crypto.verify(public_key, _TBS_LABEL + opaque(tbs), auth.auth.signature)


def _check_content(ep: EpochFraming, content: FramedContent) -> None:
    _check_group_epoch(ep.group_id, ep.epoch, content)


def _check_group_epoch(group_id: bytes, epoch: int, content: FramedContent) -> None:
    if content.group_id != group_id:
        raise MlsError("the message is for another group", reason=MlsReason.WRONG_GROUP)
    if content.epoch != epoch:
        raise MlsError(f"the message is for epoch {content.epoch}, not {epoch}", reason=MlsReason.WRONG_EPOCH)


def _member_content(
    ep: EpochFraming, sender_leaf: int, content: Content, authenticated_data: bytes
) -> FramedContent:
    return FramedContent(ep.group_id, ep.epoch, Sender(_MEMBER, sender_leaf), authenticated_data, content)


# -- PrivateMessage --------------------------------------------------------


# ExpandWithLabel(sender_data_secret, "key"/"nonce", ciphertext_sample, ...):
# the KDFLabel up to the sample is fixed.
_SD_KEY_INFO = NK.to_bytes(2, "big") + opaque(b"MLS 1.0 key")
_SD_NONCE_INFO = NN.to_bytes(2, "big") + opaque(b"MLS 1.0 nonce")


def _sender_data_key_nonce(crypto: CryptoProvider, secret: bytes, ciphertext: bytes) -> list[bytes]:
    """``[key, nonce]`` of the sender data: ExpandWithLabel of one secret, twice."""
    sample = sample_context(ciphertext)
    return crypto.hkdf_expand_many(secret, ((_SD_KEY_INFO + sample, NK), (_SD_NONCE_INFO + sample, NN)))


def _guarded_nonce(nonce: bytes, reuse_guard: bytes) -> bytes:
    # §6.3.1: the first four bytes of the nonce are XORed with reuse_guard.
    head = int.from_bytes(nonce[:4], "big") ^ int.from_bytes(reuse_guard, "big")
    return head.to_bytes(4, "big") + nonce[4:]


def _content_bytes(content: Content) -> bytes:
    """The encoding of a FramedContent's body (after its content_type byte)."""
    return opaque(content) if isinstance(content, bytes) else encode(content)


def _send_step(
    crypto: CryptoProvider, ep: EpochFraming, leaf: int, ct: ContentType, reuse_guard: bytes | None
) -> tuple[RatchetKey, bytes, bytes]:
    """The next sending ratchet step of ``leaf`` (not consumed yet), its reuse_guard
    (random unless given, tests only) and its guarded content nonce (§6.3.1)."""
    step = ep.secret_tree.peek_send(leaf, APPLICATION if ct == _APPLICATION else HANDSHAKE)
    if reuse_guard is None:
        reuse_guard = crypto.random(4)
    elif len(reuse_guard) != 4:
        raise MlsError("reuse_guard is 4 bytes", reason=MlsReason.INVALID_ARGUMENT)
    return step, reuse_guard, _guarded_nonce(step.nonce, reuse_guard)


def _sender_data(leaf: int, step: RatchetKey, reuse_guard: bytes) -> bytes:
    # SenderData = uint32 leaf_index, uint32 generation, opaque reuse_guard[4] (§6.3.2).
    return leaf.to_bytes(4, "big") + step.generation.to_bytes(4, "big") + reuse_guard


def _encrypt(
    crypto: CryptoProvider,
    ep: EpochFraming,
    leaf: int,
    ct: ContentType,
    authenticated_data: bytes,
    plaintext: bytes,
    reuse_guard: bytes | None,
) -> PrivateMessage:
    step, reuse_guard, nonce = _send_step(crypto, ep, leaf, ct, reuse_guard)
    aad = ep._sender_data_aad[ct] + opaque(authenticated_data)
    ciphertext = crypto.aead_seal(step.key, nonce, aad, plaintext)
    sd_key, sd_nonce = _sender_data_key_nonce(crypto, ep.sender_data_secret, ciphertext)
    sender_data = _sender_data(leaf, step, reuse_guard)
    encrypted_sender_data = crypto.aead_seal(sd_key, sd_nonce, ep._sender_data_aad[ct], sender_data)
    ep.secret_tree.commit(step)
    return PrivateMessage(ep.group_id, ep.epoch, ct, authenticated_data, encrypted_sender_data, ciphertext)


def _plaintext(content_bytes: bytes, auth: FramedContentAuthData, padding: int) -> bytes:
    # PrivateMessageContent = content, FramedContentAuthData, zero padding.
    out = content_bytes + opaque(auth.signature)
    if auth.confirmation_tag is not None:
        out += opaque(auth.confirmation_tag)
    if padding:
        out += bytes(padding)
    return out


def encrypt_private(
    crypto: CryptoProvider,
    ep: EpochFraming,
    authenticated: AuthenticatedContent,
    *,
    padding: int = 0,
    reuse_guard: bytes | None = None,
) -> PrivateMessage:
    """Encrypt a signed member content as a PrivateMessage and consume its ratchet generation.

    ``padding`` zero bytes are appended to the plaintext. ``reuse_guard`` is
    random unless given (tests only). The ratchet step is committed only
    when encryption succeeded.
    """
    content = authenticated.content
    if authenticated.wire_format != _PRIVATE:
        raise MlsError("a PrivateMessage carries private_message content", reason=MlsReason.INVALID_ARGUMENT)
    if content.sender.sender_type != _MEMBER:
        raise MlsError("only members send PrivateMessages", reason=MlsReason.INVALID_ARGUMENT)
    _check_content(ep, content)
    if not 0 <= padding <= MAX_PADDING:
        raise MlsError("padding out of range", reason=MlsReason.INVALID_ARGUMENT)
    ct = content_type_of(content.content)
    _auth_data(content, authenticated.auth.signature, authenticated.auth.confirmation_tag)
    plaintext = _plaintext(_content_bytes(content.content), authenticated.auth, padding)
    return _encrypt(crypto, ep, content.sender.index, ct, content.authenticated_data, plaintext, reuse_guard)


def protect_private(
    crypto: CryptoProvider,
    ep: EpochFraming,
    sender_leaf: int,
    content: Content,
    signature_key: bytes,
    *,
    authenticated_data: bytes = b"",
    confirmation_tag: bytes | None = None,
    padding: int = 0,
    reuse_guard: bytes | None = None,
) -> PrivateMessage:
    """Sign and encrypt ``content`` (application data, a Proposal or a Commit) from ``sender_leaf``.

    A Commit needs its ``confirmation_tag``, which depends on the signature:
    build commits with :func:`sign_framed` and :func:`encrypt_private`
    instead (this function refuses a commit without a tag).
    """
    ct = content_type_of(content)
    if (ct == _COMMIT) != (confirmation_tag is not None):
        raise MlsError("a commit, and only a commit, carries a confirmation tag", reason=MlsReason.INVALID_ARGUMENT)
    if not 0 <= padding <= MAX_PADDING:
        raise MlsError("padding out of range", reason=MlsReason.INVALID_ARGUMENT)
    if not 0 <= sender_leaf < ep.secret_tree.n_leaves:
        raise MlsError(f"leaf index {sender_leaf} is outside the tree", reason=MlsReason.INVALID_ARGUMENT)
    content_bytes = _content_bytes(content)
    # FramedContentTBS = version, wire_format, FramedContent, GroupContext;
    # FramedContent = group_id, epoch, Sender, authenticated_data, content_type, body.
    tbs = (
        b"\x00\x01\x00\x02"
        + ep._gid_epoch
        + b"\x01"
        + sender_leaf.to_bytes(4, "big")
        + opaque(authenticated_data)
        + bytes((ct,))
        + content_bytes
        + ep.group_context
    )
    # PrivateMessageContent = body, signature<V>, [confirmation_tag<V>], zero padding;
    # signing, the content's and the sender data's encryption in one provider call
    # (one stack switch in the browser).
    tail = b"" if confirmation_tag is None else opaque(confirmation_tag)
    if padding:
        tail += bytes(padding)
    step, reuse_guard, nonce = _send_step(crypto, ep, sender_leaf, ct, reuse_guard)
    sd_aad = ep._sender_data_aad[ct]
    _, ciphertext, encrypted_sender_data = sign_and_encrypt(
        crypto,
        signature_key,
        _TBS_LABEL + opaque(tbs),
        (step.key, nonce, sd_aad + opaque(authenticated_data), content_bytes + _SIGNATURE_PREFIX, tail),
        (ep.sender_data_secret, _SD_KEY_INFO, _SD_NONCE_INFO, sd_aad, _sender_data(sender_leaf, step, reuse_guard)),
    )
    ep.secret_tree.commit(step)
    return PrivateMessage(ep.group_id, ep.epoch, ct, authenticated_data, encrypted_sender_data, ciphertext)


def _auth_data(framed: FramedContent, signature: bytes, confirmation_tag: bytes | None) -> FramedContentAuthData:
    is_commit = content_type_of(framed.content) == _COMMIT
    if is_commit != (confirmation_tag is not None):
        raise MlsError("a commit, and only a commit, carries a confirmation tag", reason=MlsReason.INVALID_ARGUMENT)
    return FramedContentAuthData(signature, confirmation_tag)


def _read_private_content(plaintext: bytes, ct: int) -> tuple[Content, int, FramedContentAuthData]:
    """Decode PrivateMessageContent: ``(content, end of the content's encoding, auth)``."""
    r = Reader(plaintext)
    try:
        content: Content
        if ct == _APPLICATION:
            content = r.opaque()
        elif ct == _PROPOSAL:
            content = Proposal.read(r)
        else:
            content = Commit.read(r)
        end = r.pos
        auth = FramedContentAuthData.read_for(r, ct)
    except MlsDecodeError:
        raise
    except (ValueError, IndexError, OverflowError, UnicodeDecodeError, TypeError) as exc:
        raise MlsDecodeError(
            f"malformed PrivateMessageContent: {type(exc).__name__}",
            reason=MlsReason.MALFORMED,
        ) from None
    pos = r.pos
    n = len(plaintext) - pos
    if n and plaintext.count(0, pos) != n:  # §6.3.1: padding is all zero
        raise MlsDecodeError("non-zero padding in PrivateMessageContent", reason=MlsReason.MALFORMED)
    return content, end, auth


def unprotect_private(
    crypto: CryptoProvider,
    ep: EpochFraming,
    msg: PrivateMessage,
    signer_key: SignerKey,
    *,
    defer_commit: bool = False,
) -> Unprotected:
    """Decrypt and verify a PrivateMessage; consume its generation only if it authenticates.

    See the module docstring for the checks and the failure guarantee.
    """
    if msg.group_id != ep.group_id:
        raise MlsError("the message is for another group", reason=MlsReason.WRONG_GROUP)
    if msg.epoch != ep.epoch:
        raise MlsError(f"the message is for epoch {msg.epoch}, not {ep.epoch}", reason=MlsReason.WRONG_EPOCH)
    ct = msg.content_type
    esd = msg.encrypted_sender_data
    if len(esd) != _SENDER_DATA_CT_LEN:
        raise DecryptionFailed("encrypted sender data has the wrong length", reason=MlsReason.DECRYPTION_FAILED)
    ciphertext = msg.ciphertext
    sd_key, sd_nonce = _sender_data_key_nonce(crypto, ep.sender_data_secret, ciphertext)
    sd_aad = ep._sender_data_aad[ct]
    sender_data = crypto.aead_open(sd_key, sd_nonce, sd_aad, esd)
    leaf = int.from_bytes(sender_data[0:4], "big")
    if leaf >= ep.secret_tree.n_leaves:  # sender data from a member that names no leaf (§6.3.2)
        raise MlsError(f"the sender data names leaf {leaf}, outside the tree", reason=MlsReason.UNKNOWN_SENDER)
    generation = int.from_bytes(sender_data[4:8], "big")
    reuse_guard = sender_data[8:12]
    # Raises for a reused/too-old/too-far generation.
    step = ep.secret_tree.peek(leaf, APPLICATION if ct == _APPLICATION else HANDSHAKE, generation)
    ad = msg.authenticated_data
    ad_bytes = opaque(ad)
    plaintext = crypto.aead_open(step.key, _guarded_nonce(step.nonce, reuse_guard), sd_aad + ad_bytes, ciphertext)
    body, end, auth = _read_private_content(plaintext, ct)
    framed = FramedContent(ep.group_id, ep.epoch, ep.member(leaf), ad, body)
    tbs = (
        b"\x00\x01\x00\x02"
        + ep._gid_epoch
        + b"\x01"
        + sender_data[0:4]
        + ad_bytes
        + bytes((ct,))
        + plaintext[:end]  # the content exactly as the sender encoded it
        + ep.group_context
    )
    crypto.verify(signer_key(framed), _TBS_LABEL + opaque(tbs), auth.signature)
    if not defer_commit:
        ep.secret_tree.commit(step)
    return Unprotected(AuthenticatedContent(_PRIVATE, framed, auth), step)


# -- PublicMessage ---------------------------------------------------------


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
    return _tbs(group_context, _PUBLIC, content) + auth.encode_for(content_type_of(content.content))


def frame_public(crypto: CryptoProvider, ep: EpochFraming, authenticated: AuthenticatedContent) -> PublicMessage:
    """A signed content as a PublicMessage, with the membership tag for a member sender."""
    content = authenticated.content
    if authenticated.wire_format != _PUBLIC:
        raise MlsError("a PublicMessage carries public_message content", reason=MlsReason.INVALID_ARGUMENT)
    _check_content(ep, content)
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
    framed = _member_content(ep, sender_leaf, content, authenticated_data)
    _check_public_sender(framed, MlsReason.INVALID_ARGUMENT)
    signature = sign_framed(crypto, ep, _PUBLIC, framed, signature_key)
    auth = _auth_data(framed, signature, confirmation_tag)
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
    _check_group_epoch(group_id, epoch, content)
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
    _verify_signature(crypto, group_context, authenticated, signer_key(content))
    return authenticated
