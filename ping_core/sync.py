"""The catch-up cursor of one conversation.

The delivery service keeps one append-only log per conversation and numbers
its envelopes 1, 2, 3, ... (``MessageEnvelope.seq``). A :class:`SyncCursor`
is the highest sequence number this device has consumed; ``fetch_since``
returns envelopes with ``seq > cursor.seq`` in order. ``SyncCursor()``
(seq 0) means "from the beginning".

CBOR: ``{"v": 1, "seq": uint}``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable

from ping_core.cbor import MAX_UINT, decode_record, encode_record
from ping_core.errors import InvalidInput, MlsReason
from ping_core.ids import ConversationId, DeviceId

from ping_core.message import IncomingMessage

__all__ = ["SyncCursor", "SYNC_CURSOR_VERSION", "SYNC_PAGE", "News", "SyncProblem", "SyncProblemKind", "SyncResult"]

SYNC_CURSOR_VERSION = 1
#: Envelopes per ``fetch_since`` page when a client reads a conversation's log (read at call
#: time by ``ping_core.syncer`` and ``ping_core.commitflow``).
SYNC_PAGE = 256
_MAX_SEQ = (1 << 63) - 1  # fits a signed 64-bit column in the server's database


@dataclass(frozen=True, order=True, slots=True)
class SyncCursor:
    """Position in a conversation's log: everything up to and including ``seq`` is consumed."""

    seq: int = 0

    def __post_init__(self) -> None:
        if type(self.seq) is not int or not 0 <= self.seq <= _MAX_SEQ:
            raise InvalidInput("SyncCursor.seq out of range")

    def advance(self, seq: int) -> "SyncCursor":
        """The cursor after consuming the envelope numbered ``seq`` (never moves backwards)."""
        if type(seq) is not int or not 0 <= seq <= _MAX_SEQ:
            raise InvalidInput("seq out of range")
        return self if seq <= self.seq else SyncCursor(seq)

    def advance_past(self, seqs: Iterable[int]) -> "SyncCursor":
        """The cursor after consuming every sequence number in ``seqs``."""
        cursor = self
        for seq in seqs:
            cursor = cursor.advance(seq)
        return cursor

    def encode(self) -> bytes:
        return encode_record(SYNC_CURSOR_VERSION, {"seq": self.seq})

    @classmethod
    def decode(cls, data: bytes) -> "SyncCursor":
        """Parse :meth:`encode` output; ``InvalidInput`` on anything else."""
        rec = decode_record(data, what="SyncCursor", version=SYNC_CURSOR_VERSION, keys=("seq",), max_size=32)
        return cls(rec.get_uint("seq", max_value=min(MAX_UINT, _MAX_SEQ)))


@dataclass(frozen=True, slots=True)
class News:
    """What ``MessagingClient.wait_for_news`` found; all empty when the wait ran out.

    ``conversations``: open conversations with envelopes beyond their sync
    position (a :meth:`~ping_core.client.MessagingClient.sync_conversations`
    fetches them). ``forbidden``: open conversations this device may no longer
    read (removed, revoked, or a history-only chat before its Welcome),
    reported once. ``welcomes``: the device's Welcome inbox is not empty.
    """

    conversations: tuple[ConversationId, ...] = ()
    forbidden: tuple[ConversationId, ...] = ()
    welcomes: bool = False

    def __bool__(self) -> bool:
        return bool(self.conversations or self.forbidden or self.welcomes)


class SyncProblemKind(enum.Enum):
    """What went wrong while following a conversation's log (see :class:`SyncProblem`)."""

    #: The server's page did not continue the cursor exactly (a gap, a reorder, a duplicate or
    #: an absurd seq). Nothing past the break was consumed; the next sync fetches it again.
    LOG_DISCONTINUITY = "log_discontinuity"
    #: An envelope this device could not read and will never read (refused by a check, or
    #: undecryptable); ``seq`` and ``sender_device`` say which.
    UNREADABLE = "unreadable"
    #: A message of a later epoch than ours: kept (durably) until the commit that opens it is
    #: processed. Reported once per envelope.
    HELD = "held"
    #: A commit this device could not process, or a later epoch seen without its commit: this
    #: device no longer follows the group (it heals by rejoining when it can).
    DESYNCED = "desynced"
    #: The device rejoined the group from the server's GroupInfo (an external commit); what
    #: was sent in between is reported UNREADABLE.
    HEALED = "healed"


@dataclass(frozen=True, slots=True)
class SyncProblem:
    """One problem a sync met in one conversation (never carries plaintext or secrets)."""

    conversation_id: ConversationId
    kind: SyncProblemKind
    seq: int | None = None
    sender_device: DeviceId | None = None
    detail: str = ""
    #: For an envelope the MLS engine refused: its :class:`~ping_core.errors.MlsReason`
    #: (``reason.origin`` says whether the sender's message was bad or this device's state).
    reason: MlsReason | None = None


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What :meth:`~ping_core.client.MessagingClient.sync` returns: the new messages (as
    ``sync_conversations`` returns them) and the problems met, in the order they were met."""

    messages: tuple["IncomingMessage", ...] = ()
    problems: tuple[SyncProblem, ...] = ()
