"""Application messages (RFC 9420 §6.3, §15): protect in the current epoch,
unprotect in the current or a retained past epoch."""

from __future__ import annotations

from typing import Callable

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import encode, varint
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.framing.epoch_framing import EpochFraming
from ping_core.mls.framing.private_message import protect_private, unprotect_private
from ping_core.mls.structs import ContentType, FramedContent, PrivateMessage

from .messages import PRIVATE_PREFIX
from .results import ApplicationMessage, SenderCheck, SenderInfo
from .state import GroupState


__all__ = ["protect", "unprotect_application", "open_application"]

_SIGNATURE_FIELD = len(varint(64)) + 64


def protect(group: GroupState, data: bytes, authenticated_data: bytes = b"") -> bytes:
    """``data`` as a PrivateMessage (MLSMessage bytes) from our leaf.

    Refused while proposals are pending (§12.4: a member that saw valid
    proposals commits before it sends application data), when the group is
    inactive, or after a ReInit.
    """
    group.require_active()
    if len(group.proposals):
        raise MlsError(
            "proposals are pending: commit them before sending application data",
            reason=MlsReason.WRONG_STATE,
        )
    if not isinstance(data, bytes) or not isinstance(authenticated_data, bytes):
        raise MlsError("application data and authenticated data must be bytes", reason=MlsReason.INVALID_ARGUMENT)
    state = group.current
    # PrivateMessageContent = opaque data<V> || opaque signature<V> || padding;
    # an Ed25519 signature is 64 bytes, its length prefix 2.
    padding = group.config.padding_for(len(varint(len(data))) + len(data) + _SIGNATURE_FIELD)
    msg = protect_private(
        group.crypto,
        state.framing,
        state.own_leaf,
        data,
        group.signer.private_key,
        authenticated_data=authenticated_data,
        padding=padding,
    )
    return PRIVATE_PREFIX + encode(msg)


def unprotect_application(group: GroupState, msg: PrivateMessage, check_sender: SenderCheck | None = None) -> ApplicationMessage:
    """Decrypt an application PrivateMessage of the current or a retained past epoch.

    After a commit removed us the group stays at its last epoch, whose
    messages still decrypt. The ratchet generation is consumed only when the
    message authenticated and ``check_sender`` (if given) accepted it.
    """
    state = group.current
    if msg.epoch == state.epoch:
        tree = state.tree

        def key_of(leaf_index: int) -> bytes | None:
            leaf = tree.leaf(leaf_index) if leaf_index < tree.n_leaves else None
            return None if leaf is None else leaf.signature_key

        return open_application(group.crypto, state.framing, key_of, msg, check_sender)
    past = group.past_epochs.get(msg.epoch)
    if past is None:
        if msg.epoch > state.epoch:
            raise MlsError(
                f"an application message for future epoch {msg.epoch} (we are at {state.epoch})",
                reason=MlsReason.TOO_FAR_AHEAD,
            )
        raise MlsError(
            f"an application message for epoch {msg.epoch}, whose secrets are gone",
            reason=MlsReason.TOO_OLD,
        )
    return open_application(group.crypto, past.framing, past.signature_keys.get, msg, check_sender)


def open_application(
    crypto: CryptoProvider,
    framing: EpochFraming,
    key_of: Callable[[int], bytes | None],
    msg: PrivateMessage,
    check_sender: SenderCheck | None = None,
) -> ApplicationMessage:
    """Decrypt and verify an application PrivateMessage of the epoch ``framing``
    belongs to (``key_of(leaf)``: the member's signature key in that epoch, or
    ``None`` for a blank leaf), let ``check_sender`` refuse it, and only then
    consume its ratchet generation. On failure nothing changed."""
    used: list[bytes] = []

    def signer_key(content: FramedContent) -> bytes:
        key = key_of(content.sender.index)
        if key is None:
            raise MlsError(f"a message from blank leaf {content.sender.index}", reason=MlsReason.UNKNOWN_SENDER)
        used.append(key)
        return key

    un = unprotect_private(crypto, framing, msg, signer_key, defer_commit=True)
    framed = un.content.content
    data = framed.content
    step = un.ratchet_key
    if not isinstance(data, bytes) or step is None:  # pragma: no cover - the content type said application
        raise MlsError("not application data", reason=MlsReason.MALFORMED)
    if check_sender is not None:
        check_sender(SenderInfo(framed.sender, used[-1], msg.epoch, ContentType.APPLICATION, msg.authenticated_data))
    framing.secret_tree.commit(step)
    return ApplicationMessage(
        sender=framed.sender.index,
        data=data,
        authenticated_data=msg.authenticated_data,
        epoch=msg.epoch,
        generation=step.generation,
        sender_signature_key=used[-1],
    )
