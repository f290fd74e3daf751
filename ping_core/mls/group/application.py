"""Application messages (RFC 9420 §6.3, §15): protect in the current epoch,
unprotect in the current or a retained past epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ping_core.errors import MlsError
from ping_core.mls.codec import encode, varint
from ping_core.mls.framing import EpochFraming, protect_private, unprotect_private
from ping_core.mls.structs import FramedContent, PrivateMessage

from .messages import PRIVATE_PREFIX
from .results import ApplicationMessage

if TYPE_CHECKING:
    from .group import Group

__all__ = ["protect", "unprotect_application"]

_SIGNATURE_FIELD = len(varint(64)) + 64


def protect(group: Group, data: bytes, authenticated_data: bytes = b"") -> bytes:
    """``data`` as a PrivateMessage (MLSMessage bytes) from our leaf.

    Refused while proposals are pending (§12.4: a member that saw valid
    proposals commits before it sends application data), when the group is
    inactive, or after a ReInit.
    """
    group._require_active()
    if len(group._proposals):
        raise MlsError("proposals are pending: commit them before sending application data")
    if not isinstance(data, bytes) or not isinstance(authenticated_data, bytes):
        raise MlsError("application data and authenticated data must be bytes")
    state = group._state
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


def unprotect_application(group: Group, msg: PrivateMessage) -> ApplicationMessage:
    """Decrypt an application PrivateMessage of the current or a retained past epoch.

    After a commit removed us the group stays at its last epoch, whose
    messages still decrypt. The ratchet generation is consumed only when the
    message authenticated.
    """
    state = group._state
    framing: EpochFraming
    if msg.epoch == state.epoch:
        framing = state.framing
        tree = state.tree

        def signer_key(content: FramedContent) -> bytes:
            i = content.sender.index
            leaf = tree.leaf(i) if i < tree.n_leaves else None
            if leaf is None:
                raise MlsError(f"a message from blank leaf {i}")
            return leaf.signature_key

    else:
        past = group._past_epochs.get(msg.epoch)
        if past is None:
            if msg.epoch > state.epoch:
                raise MlsError(f"an application message for future epoch {msg.epoch} (we are at {state.epoch})")
            raise MlsError(f"an application message for epoch {msg.epoch}, whose secrets are gone")
        framing = past.framing
        keys = past.signature_keys

        def signer_key(content: FramedContent) -> bytes:
            key = keys.get(content.sender.index)
            if key is None:
                raise MlsError(f"a message from blank leaf {content.sender.index}")
            return key

    used: list[bytes] = []

    def recording_signer_key(content: FramedContent) -> bytes:
        key = signer_key(content)
        used.append(key)
        return key

    un = unprotect_private(group.crypto, framing, msg, recording_signer_key, defer_commit=True)
    framed = un.content.content
    data = framed.content
    step = un.ratchet_key
    if not isinstance(data, bytes) or step is None:  # pragma: no cover - the content type said application
        raise MlsError("not application data")
    framing.secret_tree.commit(step)
    return ApplicationMessage(
        sender=framed.sender.index,
        data=data,
        authenticated_data=msg.authenticated_data,
        epoch=msg.epoch,
        generation=step.generation,
        sender_signature_key=used[-1],
    )
