"""Plain-data views of the SDK's records, as the RPC results and events carry them (ids in lowercase hex)."""

from __future__ import annotations

from typing import Any

from ping_core.admit import AdmitChatOutcome
from ping_core.invitation import Invitation
from ping_core.meta import ConversationMeta
from ping_core.sync import SyncProblem

__all__ = ["conv_view", "problem_view", "invitation_view", "outcome_view"]


def conv_view(meta: ConversationMeta, last: dict[str, Any] | None = None, *, removed: bool = False) -> dict[str, Any]:
    """A conversation: ``{id, removed, name, epoch, member_count, created_at, last}`` (``last``: its
    latest stored message; ``removed``: the server no longer lets this device read it)."""
    return {
        "id": meta.id.as_hex(),
        "removed": removed,
        "name": meta.name,
        "epoch": meta.epoch,
        "member_count": meta.member_count,
        "created_at": meta.created_at_ms,
        "last": last,
    }


def problem_view(p: SyncProblem) -> dict[str, Any]:
    """What a sync met: ``{conv, kind, seq, sender_device, detail}`` (``kind``: a ``SyncProblemKind`` value)."""
    return {
        "conv": p.conversation_id.as_hex(),
        "kind": p.kind.value,
        "seq": p.seq,
        "sender_device": p.sender_device.as_hex() if p.sender_device is not None else None,
        "detail": p.detail,
    }


def invitation_view(inv: Invitation) -> dict[str, Any]:
    """A pending invitation: ``{conv, name, inviter, inviter_device, members, received_ms}``."""
    return {
        "conv": inv.conversation_id.as_hex(),
        "name": inv.name,
        # None: the inviter's leaf proves no account; shown as such, never as anybody.
        "inviter": inv.inviter_user_id.as_hex() if inv.inviter_user_id is not None else None,
        "inviter_device": inv.inviter_device.as_hex(),
        "members": inv.member_count,
        "received_ms": inv.received_ms,
    }


def outcome_view(outcome: AdmitChatOutcome) -> dict[str, Any]:
    """One chat of a device admission: ``{conv, status, detail}`` (status "Admitted", "Skipped" or "Failed")."""
    status = outcome.status
    return {"conv": outcome.conversation_id.as_hex(), "status": status.kind, "detail": status.detail}
