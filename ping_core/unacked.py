"""The durable inbox: decrypted messages the app has not acknowledged yet.

An MLS message decrypts once (its ratchet generation is consumed and that
consumption is checkpointed), so a decrypted message must be on disk no later
than the state that consumed it. The SDK therefore writes every
``IncomingMessage`` it produces as a record of the MLS state store, in the
SAME checkpoint as that state::

    c/<conversation id hex>/i/<name>      an IncomingMessage (CBOR, versioned)

``<name>`` is the message's log position as 16 hex digits (so names sort in
the conversation's order and a message is identified by (conversation_id,
seq)), or, for an envelope without a position (seq 0), ``0-`` and a hash of
its sender device, HLC and epoch (the sender's HLC never repeats).

:class:`Inbox` is one conversation's index of those records: which exist,
and which this client instance has already handed to the app (those are
acknowledged, i.e. deleted, by the next ``sync_conversations`` or by
``ack_messages``; see ``ping_core.client``).
"""

from __future__ import annotations

import hashlib
from typing import Iterable

from ping_core.clock import Hlc
from ping_core.cbor import decode_record, encode_record
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MAX_PAYLOAD_LEN, IncomingMessage

__all__ = ["INBOX_DIR", "Inbox", "inbox_name", "encode_incoming", "decode_incoming"]

#: The record directory of a conversation's inbox (under ``c/<id>/``).
INBOX_DIR = "i/"
_VERSION = 1
_KEYS = ("user", "device", "plaintext", "hlc", "seq", "epoch")


def inbox_name(msg: IncomingMessage) -> str:
    """The record name of ``msg`` in its conversation's inbox (see the module docstring)."""
    if msg.seq:
        return f"{msg.seq:016x}"
    h = hashlib.sha256(
        msg.sender_device.value + msg.hlc.wall_ms.to_bytes(8, "big") + msg.hlc.counter.to_bytes(4, "big") + msg.epoch.to_bytes(8, "big")
    )
    return "0-" + h.hexdigest()[:32]


def encode_incoming(msg: IncomingMessage) -> bytes:
    """SECRET (holds the plaintext): the inbox record of ``msg`` (its conversation is the record's prefix)."""
    return encode_record(
        _VERSION,
        {
            "user": msg.sender_user_id.value,
            "device": msg.sender_device.value,
            "plaintext": msg.plaintext,
            "hlc": msg.hlc.to_value(),
            "seq": msg.seq,
            "epoch": msg.epoch,
        },
    )


def decode_incoming(conv_id: ConversationId, data: bytes) -> IncomingMessage:
    """Inverse of :func:`encode_incoming`; ``InvalidInput`` for anything malformed."""
    rec = decode_record(data, what="InboxMessage", version=_VERSION, keys=_KEYS, max_size=MAX_PAYLOAD_LEN + 1024)
    return IncomingMessage(
        conv_id,
        UserId(rec.get_bytes("user", length=32)),
        DeviceId(rec.get_bytes("device", length=32)),
        rec.get_bytes("plaintext", max_len=MAX_PAYLOAD_LEN),
        Hlc.from_value(rec["hlc"], "InboxMessage.hlc"),
        rec.get_uint("seq", max_value=(1 << 63) - 1),
        rec.get_uint("epoch", max_value=(1 << 64) - 1),
    )


class Inbox:
    """One conversation's inbox index: the stored record names, and those handed to the app.

    In memory only; the records themselves live in the state store. "Handed
    out" is per client instance on purpose: after a restart nothing is, so
    every message still stored is delivered again (a duplicate only across a
    crash, identifiable by (conversation_id, seq)).
    """

    __slots__ = ("_stored", "_handed")

    def __init__(self, names: Iterable[str] = (), handed: Iterable[str] = ()) -> None:
        self._stored = set(names)
        self._handed = self._stored.intersection(handed)

    def __len__(self) -> int:
        return len(self._stored)

    def __contains__(self, name: object) -> bool:
        return name in self._stored

    def __repr__(self) -> str:
        return f"Inbox(stored={len(self._stored)}, handed_out={len(self._handed)})"

    def add(self, name: str) -> None:
        """A record was written (not handed out yet)."""
        self._stored.add(name)

    def undelivered(self) -> list[str]:
        """Stored names not handed out, in log order."""
        return sorted(self._stored - self._handed)

    def handed(self) -> list[str]:
        """Names handed out and not yet acknowledged."""
        return sorted(self._handed)

    def hand_out(self, name: str) -> None:
        if name in self._stored:
            self._handed.add(name)

    def remove(self, name: str) -> None:
        """The record was deleted (acknowledged or unreadable)."""
        self._stored.discard(name)
        self._handed.discard(name)
