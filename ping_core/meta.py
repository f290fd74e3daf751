"""``ConversationMeta``: the SDK-side facts about one conversation, kept next to its MLS state.

CBOR::

    {"v": 1, "id": bstr(16), "name": tstr / null, "epoch": uint,
     "member_count": uint, "is_device_group": bool, "created_at_ms": uint}

It is persisted per conversation and travels inside a ``CatchupSnapshot``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.cbor import MAX_UINT, CborValue, Record, as_map, check_text, decode_record, dumps
from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId

__all__ = ["ConversationMeta", "CONVERSATION_META_VERSION", "MAX_NAME_LEN"]

CONVERSATION_META_VERSION = 1
# Names carry app metadata blobs (e.g. an avatar media id), not only a title.
MAX_NAME_LEN = 4096
_MAX_MEMBERS = (1 << 32) - 1
_KEYS = frozenset({"v", "id", "name", "epoch", "member_count", "is_device_group", "created_at_ms"})


@dataclass(frozen=True, slots=True)
class ConversationMeta:
    """Immutable; update with ``dataclasses.replace``."""

    id: ConversationId
    name: str | None
    epoch: int
    member_count: int
    is_device_group: bool
    created_at_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.id, ConversationId):
            raise InvalidInput("ConversationMeta.id must be a ConversationId")
        if self.name is not None:
            check_text(self.name, "ConversationMeta.name", MAX_NAME_LEN)
        for field, bound in (("epoch", MAX_UINT), ("member_count", _MAX_MEMBERS), ("created_at_ms", MAX_UINT)):
            value = getattr(self, field)
            if type(value) is not int or not 0 <= value <= bound:
                raise InvalidInput(f"ConversationMeta.{field} out of range")
        if type(self.is_device_group) is not bool:
            raise InvalidInput("ConversationMeta.is_device_group must be a bool")

    def to_value(self) -> dict[str, CborValue]:
        return {
            "v": CONVERSATION_META_VERSION,
            "id": self.id.value,
            "name": self.name,
            "epoch": self.epoch,
            "member_count": self.member_count,
            "is_device_group": self.is_device_group,
            "created_at_ms": self.created_at_ms,
        }

    def encode(self) -> bytes:
        return dumps(self.to_value())

    @classmethod
    def from_value(cls, value: object, what: str = "ConversationMeta") -> "ConversationMeta":
        if type(value) is dict and value.get("v") != CONVERSATION_META_VERSION:
            raise InvalidInput(f"{what}: version {value.get('v')!r} is not supported")
        return cls._from_record(as_map(value, what, _KEYS))

    @classmethod
    def decode(cls, data: bytes) -> "ConversationMeta":
        """Parse :meth:`encode` output; ``InvalidInput`` on anything else."""
        rec = decode_record(data, what="ConversationMeta", version=CONVERSATION_META_VERSION, keys=_KEYS - {"v"}, max_size=MAX_NAME_LEN + 256)
        return cls._from_record(rec)

    @classmethod
    def _from_record(cls, rec: Record) -> "ConversationMeta":
        return cls(
            ConversationId(rec.get_bytes("id", length=ConversationId.LENGTH)),
            rec.get_opt_text("name", max_len=MAX_NAME_LEN),
            rec.get_uint("epoch"),
            rec.get_uint("member_count", max_value=_MAX_MEMBERS),
            rec.get_bool("is_device_group"),
            rec.get_uint("created_at_ms"),
        )
