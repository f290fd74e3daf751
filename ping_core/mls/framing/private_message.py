"""PrivateMessage (RFC 9420 §6.3): a signed content, encrypted with the sender's ratchet key.

Sending::

    msg = protect_private(crypto, ep, leaf, content, signature_key)

Commits carry a confirmation tag that depends on their own signature; the
group layer therefore signs with :func:`~ping_core.mls.framing.epoch_framing.sign_framed`,
derives the tag, and encrypts the finished :class:`AuthenticatedContent` with
:func:`encrypt_private`. The ratchet generation is consumed only when
encryption succeeded.

Receiving::

    result = unprotect_private(crypto, ep, private_message, signer_key)

``signer_key(framed_content) -> bytes`` returns the sender's signature public
key (from the ratchet tree) and raises ``MlsError`` when the sender is not
acceptable (a blank leaf, say).

Guarantees of :func:`unprotect_private`:

* every check runs before anything changes: group id, epoch, sender data
  (:mod:`~ping_core.mls.framing.sender_data`), the ratchet generation, content
  decryption, padding and the signature;
* the secret tree is consumed only after all of them passed (with
  ``defer_commit=True`` not even then: the caller commits
  ``result.ratchet_key`` after it has applied the message);
* failures raise ``MlsError`` subclasses (``DecryptionFailed``,
  ``InvalidSignature``, ``MlsDecodeError``) and leave the tree unchanged.

A commit's confirmation tag is *not* checked here (it needs the next epoch's
key schedule); :mod:`ping_core.mls.schedule.transcript` has the check.
"""

from __future__ import annotations

from ping_core.errors import DecryptionFailed, MlsDecodeError, MlsError, MlsReason
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.crypto.provider import SIGNATURE_LEN, sign_and_encrypt
from ping_core.mls.structs.commit import Commit
from ping_core.mls.structs.content import (
    AuthenticatedContent,
    Content,
    FramedContent,
    FramedContentAuthData,
    PrivateMessage,
    content_type_of,
)
from ping_core.mls.structs.enums import ContentType, SenderType, WireFormat
from ping_core.mls.structs.proposals import Proposal
from ping_core.mls.tls import Reader, encode, opaque, varint
from ping_core.mls.tree.secret_tree import APPLICATION, HANDSHAKE, RatchetKey

from ping_core.mls.framing.epoch_framing import (
    TBS_LABEL,
    EpochFraming,
    SignerKey,
    Unprotected,
    auth_data,
    check_group_epoch,
)
from ping_core.mls.framing.sender_data import (
    SD_KEY_INFO,
    SD_NONCE_INFO,
    SENDER_DATA_CT_LEN,
    guarded_nonce,
    sender_data_bytes,
    sender_data_key_nonce,
)

__all__ = ["encrypt_private", "protect_private", "unprotect_private", "MAX_PADDING"]

_APPLICATION = ContentType.APPLICATION
_PROPOSAL = ContentType.PROPOSAL
_COMMIT = ContentType.COMMIT
_PRIVATE = WireFormat.PRIVATE_MESSAGE
_MEMBER = SenderType.MEMBER
MAX_PADDING = 1 << 16
"""The most zero bytes of padding a PrivateMessage we send may carry."""
# opaque signature<V> of an Ed25519 signature (64 bytes): its varint length prefix.
_SIGNATURE_PREFIX = varint(SIGNATURE_LEN)


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
    return step, reuse_guard, guarded_nonce(step.nonce, reuse_guard)


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
    aad = ep.sender_data_aad[ct] + opaque(authenticated_data)
    ciphertext = crypto.aead_seal(step.key, nonce, aad, plaintext)
    sd_key, sd_nonce = sender_data_key_nonce(crypto, ep.sender_data_secret, ciphertext)
    sender_data = sender_data_bytes(leaf, step, reuse_guard)
    encrypted_sender_data = crypto.aead_seal(sd_key, sd_nonce, ep.sender_data_aad[ct], sender_data)
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
    check_group_epoch(ep.group_id, ep.epoch, content)
    if not 0 <= padding <= MAX_PADDING:
        raise MlsError("padding out of range", reason=MlsReason.INVALID_ARGUMENT)
    ct = content_type_of(content.content)
    auth_data(content, authenticated.auth.signature, authenticated.auth.confirmation_tag)
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
        + ep.gid_epoch
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
    sd_aad = ep.sender_data_aad[ct]
    _, ciphertext, encrypted_sender_data = sign_and_encrypt(
        crypto,
        signature_key,
        TBS_LABEL + opaque(tbs),
        (step.key, nonce, sd_aad + opaque(authenticated_data), content_bytes + _SIGNATURE_PREFIX, tail),
        (ep.sender_data_secret, SD_KEY_INFO, SD_NONCE_INFO, sd_aad, sender_data_bytes(sender_leaf, step, reuse_guard)),
    )
    ep.secret_tree.commit(step)
    return PrivateMessage(ep.group_id, ep.epoch, ct, authenticated_data, encrypted_sender_data, ciphertext)


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
    if len(esd) != SENDER_DATA_CT_LEN:
        raise DecryptionFailed("encrypted sender data has the wrong length", reason=MlsReason.DECRYPTION_FAILED)
    ciphertext = msg.ciphertext
    sd_key, sd_nonce = sender_data_key_nonce(crypto, ep.sender_data_secret, ciphertext)
    sd_aad = ep.sender_data_aad[ct]
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
    plaintext = crypto.aead_open(step.key, guarded_nonce(step.nonce, reuse_guard), sd_aad + ad_bytes, ciphertext)
    body, end, auth = _read_private_content(plaintext, ct)
    framed = FramedContent(ep.group_id, ep.epoch, ep.member(leaf), ad, body)
    tbs = (
        b"\x00\x01\x00\x02"
        + ep.gid_epoch
        + b"\x01"
        + sender_data[0:4]
        + ad_bytes
        + bytes((ct,))
        + plaintext[:end]  # the content exactly as the sender encoded it
        + ep.group_context
    )
    crypto.verify(signer_key(framed), TBS_LABEL + opaque(tbs), auth.signature)
    if not defer_commit:
        ep.secret_tree.commit(step)
    return Unprotected(AuthenticatedContent(_PRIVATE, framed, auth), step)
