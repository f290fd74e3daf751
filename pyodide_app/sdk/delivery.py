"""Decrypted messages into the account's app store, made durable with the state that consumed them.

A message the SDK hands out is acknowledged to it (not handed out again once
the state is checkpointed); so the app records of those messages are written
in the SAME IndexedDB transaction as that state (:func:`store_messages`): a
crash loses both or neither, never a message. In the manual acknowledgement
mode (``account.settings`` ``ack: "manual"``) each new message also gets an
"unacked" marker, and the page gets it again (:func:`unacked`) until
``message.ack`` deletes the marker.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ping_core.device import CatchupAppEventEntry
from ping_core.errors import InvalidInput
from ping_core.message import IncomingMessage

from .. import inbox
from ..session import AccountSession

__all__ = ["store_messages", "unacked", "import_history"]

log = logging.getLogger("pyodide_app.sdk")


async def store_messages(
    s: AccountSession, take: Callable[[], Awaitable[list[IncomingMessage]]], *, manual: bool
) -> list[dict[str, Any]]:
    """Run ``take`` (an SDK call that returns, and so acknowledges, messages) with deferred
    checkpoints, and write its state and the messages' app records in ONE transaction
    (with ``manual``, also an unacked marker per new message).

    Returns the messages the app store did not hold yet, in log order per
    conversation. Inside :meth:`AccountSession.use` only.
    """
    with s.deferring():
        incoming = await take()
        records = dict(inbox.incoming_record(m) for m in incoming)
        # The SDK may hand a message out again (to another context, after a
        # restart) until it is acknowledged: storing it again is harmless (same
        # key, same value), announcing it again is not useful.
        known = {k for k in records if await s.db.app.get(k) is not None}
        markers = {}
        if manual:
            # The page acknowledges (message.ack); until then the message is delivered again.
            markers = {inbox.unacked_key(m.conversation_id.as_hex(), m.seq): b"1" for m in incoming}
            markers = {k: v for k, v in markers.items() if inbox.message_of_unacked(k) not in known}
        await s.db.state.flush({**records, **markers})
    return [inbox.message_view(k, v) for k, v in sorted(records.items()) if k not in known]


async def unacked(s: AccountSession) -> list[dict[str, Any]]:
    """The stored messages the page has not acknowledged (manual mode), in key order."""
    out = []
    for key in sorted(await s.db.app.list(inbox.UNACKED_PREFIX)):
        raw = await s.db.app.get(inbox.message_of_unacked(key))
        if raw is not None:
            out.append(inbox.message_view(inbox.message_of_unacked(key), raw))
    return out


async def import_history(s: AccountSession, events: Sequence[CatchupAppEventEntry]) -> None:
    """Store the linking device's latest messages (its ticket's app events) for display."""
    records: dict[str, bytes] = {}
    for event in events:
        try:
            records.update(inbox.records_from_history_event(event.conversation_id.as_hex(), event.app_event_bytes))
        except InvalidInput as exc:  # another host's events (e.g. none from the CLI): not ours to show
            log.info("history event skipped: %s", exc)
    await s.db.state.flush(records)
