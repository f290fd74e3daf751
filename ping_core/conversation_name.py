"""Ping's conversation name: a GroupContext extension of the SDK's own.

:class:`ConversationName` is the payload of Ping's private GroupContext
extension :data:`PING_CONVERSATION_NAME` (0xF0A1, in the private-use range
0xF000-0xFFFF of RFC 9420 §17.3): the conversation's display name (UTF-8),
``struct { opaque name<V>; }``. The MLS engine knows nothing of it: the SDK
advertises it in every leaf it makes (:data:`PING_CAPABILITIES`, so every Ping
member can be put in a group that carries a name) and gives the engine
:func:`check_extensions` as the groups' ``extensions_check``, which refuses a
malformed name wherever GroupContext extensions change. The wire format is
unchanged from when the engine carried it (docs/formats.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from ping_core.errors import MlsDecodeError, MlsError, MlsReason
from ping_core.mls.tls import Reader, Writer
from ping_core.mls.group import default_capabilities
from ping_core.mls.structs import Capabilities, Extension, get_extension

__all__ = [
    "PING_CONVERSATION_NAME",
    "MAX_CONVERSATION_NAME",
    "ConversationName",
    "PING_CAPABILITIES",
    "check_extensions",
    "name_of",
    "with_name",
]

#: Ping's GroupContext extension type for the conversation name (private use, RFC 9420 §17.3).
PING_CONVERSATION_NAME = 0xF0A1

#: Bound on the encoded name (bytes of UTF-8); a name is a label, not a document.
MAX_CONVERSATION_NAME = 4096


@dataclass(frozen=True, slots=True)
class ConversationName:
    """``struct { opaque name<V>; } ConversationName``: UTF-8 text, at most
    :data:`MAX_CONVERSATION_NAME` bytes. Decoding refuses invalid UTF-8."""

    EXTENSION_TYPE: ClassVar[int] = PING_CONVERSATION_NAME

    name: str

    def write(self, w: Writer) -> None:
        """The payload; ``MlsError`` for a name over :data:`MAX_CONVERSATION_NAME` bytes."""
        raw = self.name.encode("utf-8")
        if len(raw) > MAX_CONVERSATION_NAME:
            raise MlsError(
                f"conversation name longer than {MAX_CONVERSATION_NAME} bytes",
                reason=MlsReason.INVALID_ARGUMENT,
            )
        w.opaque(raw)

    @classmethod
    def read(cls, r: Reader) -> ConversationName:
        """Inverse of :meth:`write`; ``MlsDecodeError`` for a long or non-UTF-8 name."""
        raw = r.opaque(MAX_CONVERSATION_NAME)
        try:
            return cls(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise MlsDecodeError("conversation name is not UTF-8", reason=MlsReason.MALFORMED) from None


#: What a Ping client's leaves support: the engine's defaults (MLS 1.0, cipher suite 1,
#: basic credentials) and the conversation-name extension.
PING_CAPABILITIES: Capabilities = default_capabilities(extensions=(PING_CONVERSATION_NAME,))


def check_extensions(extensions: Sequence[Extension]) -> None:
    """The groups' ``extensions_check``: a conversation name among ``extensions`` parses
    (``MlsDecodeError`` otherwise, and the engine changes nothing)."""
    get_extension(extensions, ConversationName)


def name_of(extensions: Sequence[Extension]) -> str | None:
    """The conversation name in these GroupContext extensions, if any."""
    ext = get_extension(extensions, ConversationName)
    return None if ext is None else ext.name


def with_name(extensions: Sequence[Extension], name: str | None) -> list[Extension]:
    """``extensions`` with the conversation name set to ``name`` (replacing any), or
    removed for ``None``; the other extensions keep their order."""
    out = [e for e in extensions if e.extension_type != PING_CONVERSATION_NAME]
    if name is not None:
        out.append(Extension.of(ConversationName(name)))
    return out
