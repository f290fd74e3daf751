"""History-only state: what a device of the same account may read, handed over and imported.

A ``GroupStateSnapshot`` (``ping_core.conversation``) carries the current and retained epochs'
message secrets, the roster, meta and cursor of one conversation, and never this device's
signing key, HPKE path keys or the secrets that derive a later epoch (RFC 9420 §8: the epoch
secrets of later epochs come only from a commit's path or a Welcome). So the importer can read
those epochs' messages but can neither send as this device nor follow the group after it is
removed. Sending and commits wait for the importer's own Welcome, which turns the conversation
into a live one.
"""

from __future__ import annotations

from ping_core.checks import check_bytes
from ping_core.clientstate import ClientState
from ping_core.conversation import Conversation, StoreUndo, decode_history_snapshot, encode_history_snapshot
from ping_core.device import CatchupConversationEntry
from ping_core.errors import InvalidInput, StorageError
from ping_core.ids import ConversationId

__all__ = ["export_snapshot", "import_snapshot", "catchup_entries"]


def export_snapshot(state: ClientState, conv: Conversation, now_ms: int) -> bytes:
    """SECRET: the history-only snapshot of ``conv`` (``InvalidInput`` for a history-only one)."""
    return encode_history_snapshot(conv, state.live(conv), now_ms)


async def import_snapshot(state: ClientState, snapshot_bytes: object, now_ms: int) -> ConversationId:
    """Install another device's snapshot as a history-only conversation, durable on return.
    Refused (``InvalidInput``, nothing stored): a malformed snapshot, an unknown
    ``storage_version``, the DeviceGroup, a conversation already open."""
    snap = decode_history_snapshot(state.crypto, check_bytes(snapshot_bytes, "snapshot"))
    conv_id = snap.meta.id
    async with state.create_lock:
        if conv_id in state.convs:
            raise InvalidInput(f"conversation {conv_id.as_hex()} is already open")
        undo = StoreUndo(state.store)
        conv = Conversation.create(
            state.store,
            state.crypto,
            None,
            snap.meta,
            undo,
            cursor=snap.cursor,
            history=(snap.history, snap.records),
            verifier=state.verifier,
        )
        state.install(conv)
        await state.checkpoint(undo)
        state.convs[conv_id] = conv
    return conv_id


async def catchup_entries(state: ClientState, now_ms: int) -> list[CatchupConversationEntry]:
    """SECRET: a history-only snapshot of every conversation this device is an active member
    of (not the DeviceGroup); one with corrupt stored state is left out."""
    entries = []
    for conv in list(state.convs.values()):
        if conv.meta.is_device_group or conv.id == state.dg_id:
            continue
        async with conv.lock:
            try:
                group = state.group(conv)
            except StorageError:
                continue
            if group is not None and group.active:
                entries.append(CatchupConversationEntry(conv.id, conv.meta, encode_history_snapshot(conv, group, now_ms)))
    return entries
