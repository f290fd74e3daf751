"""What travels through the delivery service (:class:`MessageEnvelope`) and what the app receives
(:class:`IncomingMessage`).

Envelope CBOR (canonical, see ``docs/formats.md``)::

    {"v": 1,
     "conversation_id": bstr(16),
     "epoch": uint,            # MLS epoch the payload was produced in
     "kind": uint,             # 0 Application, 1 Commit, 2 Welcome, 3 Proposal
     "sender_device": bstr(32),
     "seq": uint,              # delivery-service log position; 0 until assigned
     "hlc": [wall_ms, counter],
     "payload": bstr}          # a TLS-serialized MLSMessage, at most MAX_PAYLOAD_LEN bytes

The payload is opaque here: the MLS layer authenticates and decrypts it. The
envelope fields are routing metadata the server reads (it refuses a Commit
whose ``epoch`` it has moved past, and a ``sender_device`` that is not the
authenticated device).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from ping_core.clock import Hlc
from ping_core.cbor import CborValue, MAX_UINT, Record, as_map, decode_record, dumps
from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId, DeviceId, UserId

__all__ = [
    "ConversationId",
    "MessageKind",
    "MessageEnvelope",
    "IncomingMessage",
    "ENVELOPE_VERSION",
    "MAX_PAYLOAD_LEN",
    "MAX_ENVELOPE_SIZE",
]

ENVELOPE_VERSION = 1
# A Welcome carries the ratchet tree: about 300 bytes per member, so a few
# thousand members fit comfortably. The server refuses larger with "too_large".
MAX_PAYLOAD_LEN = 4 * 1024 * 1024
MAX_ENVELOPE_SIZE = MAX_PAYLOAD_LEN + 1024
_MAX_SEQ = (1 << 63) - 1

_ENVELOPE_KEYS = frozenset({"v", "conversation_id", "epoch", "kind", "sender_device", "seq", "hlc", "payload"})


class MessageKind(enum.IntEnum):
    """What an envelope's payload is. The value is the wire code."""

    APPLICATION = 0
    COMMIT = 1
    WELCOME = 2
    PROPOSAL = 3


_KINDS = {k.value: k for k in MessageKind}


@dataclass(frozen=True, slots=True)
class MessageEnvelope:
    """One MLS message with the routing metadata the delivery service needs. Immutable.

    ``seq`` is 0 in an envelope the client builds; the delivery service
    assigns the log position (``Transport.send`` returns it) and envelopes
    fetched from the log carry it.
    """

    conversation_id: ConversationId
    epoch: int
    kind: MessageKind
    sender_device: DeviceId
    seq: int
    hlc: Hlc
    payload: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.conversation_id, ConversationId):
            raise InvalidInput("MessageEnvelope.conversation_id must be a ConversationId")
        if type(self.epoch) is not int or not 0 <= self.epoch <= MAX_UINT:
            raise InvalidInput("MessageEnvelope.epoch out of range")
        if not isinstance(self.kind, MessageKind):
            raise InvalidInput("MessageEnvelope.kind must be a MessageKind")
        if not isinstance(self.sender_device, DeviceId):
            raise InvalidInput("MessageEnvelope.sender_device must be a DeviceId")
        if type(self.seq) is not int or not 0 <= self.seq <= _MAX_SEQ:
            raise InvalidInput("MessageEnvelope.seq out of range")
        if not isinstance(self.hlc, Hlc):
            raise InvalidInput("MessageEnvelope.hlc must be an Hlc")
        if type(self.payload) is not bytes:
            raise InvalidInput("MessageEnvelope.payload must be bytes")
        if len(self.payload) > MAX_PAYLOAD_LEN:
            raise InvalidInput(f"MessageEnvelope.payload exceeds {MAX_PAYLOAD_LEN} bytes")

    @classmethod
    def new(
        cls,
        conversation_id: ConversationId,
        epoch: int,
        kind: MessageKind,
        sender_device: DeviceId,
        seq: int,
        hlc: Hlc,
        payload: bytes,
    ) -> "MessageEnvelope":
        """Same as the constructor (the spec's ``MessageEnvelope::new``)."""
        return cls(conversation_id, epoch, kind, sender_device, seq, hlc, payload)

    def with_seq(self, seq: int) -> "MessageEnvelope":
        """A copy carrying the server-assigned ``seq``."""
        return replace(self, seq=seq)

    def to_value(self) -> dict[str, CborValue]:
        """The envelope as a CBOR map (to embed in another record, e.g. a list the server returns)."""
        return {
            "v": ENVELOPE_VERSION,
            "conversation_id": self.conversation_id.value,
            "epoch": self.epoch,
            "kind": int(self.kind),
            "sender_device": self.sender_device.value,
            "seq": self.seq,
            "hlc": self.hlc.to_value(),
            "payload": self.payload,
        }

    def encode(self) -> bytes:
        """Canonical CBOR of :meth:`to_value`."""
        return dumps(self.to_value())

    @classmethod
    def from_value(cls, value: object, what: str = "MessageEnvelope") -> "MessageEnvelope":
        """Parse a decoded map (as :meth:`to_value` gives); ``InvalidInput`` on anything else."""
        if type(value) is dict and value.get("v") != ENVELOPE_VERSION:
            raise InvalidInput(f"{what}: version {value.get('v')!r} is not supported (this SDK reads {ENVELOPE_VERSION})")
        return cls._from_record(as_map(value, what, _ENVELOPE_KEYS))

    @classmethod
    def decode(cls, data: bytes) -> "MessageEnvelope":
        """Parse :meth:`encode` output. Anything else raises ``InvalidInput``; nothing else escapes."""
        rec = decode_record(
            data, what="MessageEnvelope", version=ENVELOPE_VERSION, keys=_ENVELOPE_KEYS - {"v"}, max_size=MAX_ENVELOPE_SIZE
        )
        return cls._from_record(rec)

    @classmethod
    def _from_record(cls, rec: Record) -> "MessageEnvelope":
        kind_code = rec.get_uint("kind", max_value=255)
        kind = _KINDS.get(kind_code)
        if kind is None:
            raise InvalidInput(f"{rec.what}.kind: unknown kind {kind_code}")
        return cls(
            ConversationId(rec.get_bytes("conversation_id", length=ConversationId.LENGTH)),
            rec.get_uint("epoch"),
            kind,
            DeviceId(rec.get_bytes("sender_device", length=DeviceId.LENGTH)),
            rec.get_uint("seq", max_value=_MAX_SEQ),
            Hlc.from_value(rec["hlc"], f"{rec.what}.hlc"),
            rec.get_bytes("payload", max_len=MAX_PAYLOAD_LEN),
        )

    def __repr__(self) -> str:
        return (
            f"MessageEnvelope(conversation_id={self.conversation_id.as_hex()}, epoch={self.epoch}, "
            f"kind={self.kind.name}, sender_device={self.sender_device.as_hex()[:16]}..., seq={self.seq}, "
            f"hlc=({self.hlc.wall_ms}, {self.hlc.counter}), payload=<{len(self.payload)} bytes>)"
        )


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A decrypted application message, as the SDK hands it to the app.

    ``repr`` never shows the plaintext (only its length).
    """

    conversation_id: ConversationId
    sender_user_id: UserId
    sender_device: DeviceId
    plaintext: bytes
    hlc: Hlc
    seq: int
    epoch: int

    def __repr__(self) -> str:
        return (
            f"IncomingMessage(conversation_id={self.conversation_id.as_hex()}, "
            f"sender_user_id={self.sender_user_id.as_hex()[:16]}..., sender_device={self.sender_device.as_hex()[:16]}..., "
            f"plaintext=<{len(self.plaintext)} bytes>, hlc=({self.hlc.wall_ms}, {self.hlc.counter}), "
            f"seq={self.seq}, epoch={self.epoch})"
        )
