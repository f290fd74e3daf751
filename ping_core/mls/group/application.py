"""Application messages (RFC 9420 §6.3, §15): protect in the current epoch,
unprotect in the current or a retained past epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ping_core.errors import MlsError
from ping_core.mls.framing import EpochFraming, protect_private, unprotect_private
from ping_core.mls.structs import FramedContent, PrivateMessage

from .messages import PRIVATE_PREFIX
from .results import ApplicationMessage

if TYPE_CHECKING:
    from .group import Group

__all__ = ["protect", "unprotect_application"]


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
    # Padding: PrivateMessageContent = opaque data<V> || signature<V> (64 B) || padding.
    padding = group.config.padding_for(len(data) + 4 + 65)
    msg = protect_private(
        group.crypto,
        state.framing,
        state.own_leaf,
        data,
        group.signer.private_key,
        authenticated_data=authenticated_data,
        padding=padding,
    )
    return PRIVATE_PREFIX + _encode(msg)


def _encode(msg: PrivateMessage) -> bytes:
    from ping_core.mls.codec import encode

    return encode(msg)


def unprotect_application(group: Group, msg: PrivateMessage) -> ApplicationMessage:
    """Decrypt an application PrivateMessage of the current or a retained past epoch.

    The ratchet generation is consumed only when the message authenticated.
    """
    state = group._state
    if msg.epoch == state.epoch and group.active:
        framing: EpochFraming = state.framing
        tree = state.tree

        def signer_key(content: FramedContent) -> bytes:
            leaf = tree.leaf(content.sender.index) if content.sender.index < tree.n_leaves else None
            if leaf is None:
                raise MlsError(f"a message from blank leaf {content.sender.index}")
            return leaf.signature_key

    else:
        past = group._past_epochs.get(msg.epoch)
        if past is None and msg.epoch == state.epoch:
            # Removed from the group: the last epoch's secrets still read late messages.
            framing = state.framing
            keys = {i: leaf.signature_key for i, leaf in state.tree.members()}
        elif past is None:
            if msg.epoch > state.epoch:
                raise MlsError(f"an application message for future epoch {msg.epoch} (we are at {state.epoch})")
            raise MlsError(f"an application message for epoch {msg.epoch}, whose secrets are gone")
        else:
            framing = past.framing
            keys = past.signature_keys

        def signer_key(content: FramedContent) -> bytes:
            key = keys.get(content.sender.index)
            if key is None:
                raise MlsError(f"a message from blank leaf {content.sender.index}")
            return key

    un = unprotect_private(group.crypto, framing, msg, signer_key, defer_commit=True)
    data = un.content.content.content
    if not isinstance(data, bytes):  # pragma: no cover - the content type said application
        raise MlsError("not application data")
    step = un.ratchet_key
    assert step is not None
    framing.secret_tree.commit(step)
    return ApplicationMessage(
        sender=un.content.content.sender.index,
        data=data,
        authenticated_data=msg.authenticated_data,
        epoch=msg.epoch,
        generation=step.generation,
    )
