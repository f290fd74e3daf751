"""Extensions (RFC 9420 §13) and the typed payloads of the standard ones.

An :class:`Extension` is ``struct { ExtensionType extension_type; opaque
extension_data<V>; }``: any type decodes (unknown ones are carried through
byte for byte), and the payload is decoded only when asked for, with
:meth:`Extension.parse` or :func:`get_extension`.

Payload classes here: :class:`ApplicationId`, :class:`RequiredCapabilities`,
:class:`ExternalPub`, :class:`ExternalSenders` (of :class:`ExternalSender`).
The ratchet_tree payload is ``RatchetTree`` in ``tree_nodes`` (it needs the
leaf node structs, which need this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterable, Protocol, TypeVar

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer, decode_with, encode

from .credential import Credential
from .enums import ExtensionType
from .limits import MAX_CAPABILITY_LIST, MAX_HPKE_PUBLIC_KEY, MAX_SIGNATURE_KEY

__all__ = [
    "Extension",
    "ExtensionPayload",
    "ApplicationId",
    "RequiredCapabilities",
    "ExternalPub",
    "ExternalSender",
    "ExternalSenders",
    "find_extension",
    "get_extension",
    "has_unique_types",
    "write_extensions",
    "read_extensions",
]

P = TypeVar("P", bound="ExtensionPayload")


class ExtensionPayload(Protocol):
    """A typed extension payload: knows its type and its own encoding."""

    EXTENSION_TYPE: ClassVar[int]

    def write(self, w: Writer) -> None: ...

    @classmethod
    def read(cls: type[P], r: Reader) -> P: ...


@dataclass(frozen=True, slots=True)
class Extension:
    """One extension; ``extension_type`` is an ``int`` (known or not)."""

    extension_type: int
    extension_data: bytes

    def write(self, w: Writer) -> None:
        w.u16(self.extension_type)
        w.opaque(self.extension_data)

    @classmethod
    def read(cls, r: Reader) -> Extension:
        return cls(r.u16(), r.opaque())

    @classmethod
    def of(cls, payload: ExtensionPayload) -> Extension:
        """The extension carrying ``payload`` (its type from the payload class)."""
        return cls(payload.EXTENSION_TYPE, encode(payload))

    def parse(self, payload_cls: type[P]) -> P:
        """Decode the payload strictly as ``payload_cls``.

        Raises ``MlsDecodeError`` if the type differs or the data is malformed.
        """
        if self.extension_type != payload_cls.EXTENSION_TYPE:
            raise MlsDecodeError(
                f"extension type {self.extension_type} is not {payload_cls.EXTENSION_TYPE}",
                reason=MlsReason.MALFORMED,
            )
        return decode_with(payload_cls.read, self.extension_data)


def write_extensions(w: Writer, extensions: Iterable[Extension]) -> None:
    """``Extension extensions<V>``."""
    w.structs(extensions)


def read_extensions(r: Reader) -> tuple[Extension, ...]:
    """``Extension extensions<V>`` (duplicates are the validator's business)."""
    # Most lists are empty: skip the generic vector machinery for them.
    pos = r.pos
    if pos < r.end and r.data[pos] == 0:
        r.pos = pos + 1
        return ()
    return r.structs(Extension)


def find_extension(extensions: Iterable[Extension], extension_type: int) -> Extension | None:
    """The first extension of ``extension_type``, or ``None``."""
    for ext in extensions:
        if ext.extension_type == extension_type:
            return ext
    return None


def get_extension(extensions: Iterable[Extension], payload_cls: type[P]) -> P | None:
    """The decoded payload of the ``payload_cls`` extension, or ``None`` if absent.

    Raises ``MlsDecodeError`` when present but malformed.
    """
    ext = find_extension(extensions, payload_cls.EXTENSION_TYPE)
    return None if ext is None else ext.parse(payload_cls)


def has_unique_types(extensions: Iterable[Extension]) -> bool:
    """True when no extension type occurs twice (RFC 9420 §13.4 requires it)."""
    seen: set[int] = set()
    for ext in extensions:
        if ext.extension_type in seen:
            return False
        seen.add(ext.extension_type)
    return True


@dataclass(frozen=True, slots=True)
class ApplicationId:
    """``struct { opaque application_id<V>; } ApplicationId`` (§5.3.3)."""

    EXTENSION_TYPE: ClassVar[int] = ExtensionType.APPLICATION_ID

    application_id: bytes

    def write(self, w: Writer) -> None:
        w.opaque(self.application_id)

    @classmethod
    def read(cls, r: Reader) -> ApplicationId:
        return cls(r.opaque())


@dataclass(frozen=True, slots=True)
class RequiredCapabilities:
    """The required_capabilities payload (§11.1); types are plain ints."""

    EXTENSION_TYPE: ClassVar[int] = ExtensionType.REQUIRED_CAPABILITIES

    extension_types: tuple[int, ...] = ()
    proposal_types: tuple[int, ...] = ()
    credential_types: tuple[int, ...] = ()

    def write(self, w: Writer) -> None:
        w.uint16s(self.extension_types)
        w.uint16s(self.proposal_types)
        w.uint16s(self.credential_types)

    @classmethod
    def read(cls, r: Reader) -> RequiredCapabilities:
        return cls(
            r.uint16s(MAX_CAPABILITY_LIST),
            r.uint16s(MAX_CAPABILITY_LIST),
            r.uint16s(MAX_CAPABILITY_LIST),
        )


@dataclass(frozen=True, slots=True)
class ExternalPub:
    """``struct { HPKEPublicKey external_pub; } ExternalPub`` (§12.4.3.2)."""

    EXTENSION_TYPE: ClassVar[int] = ExtensionType.EXTERNAL_PUB

    external_pub: bytes

    def write(self, w: Writer) -> None:
        w.opaque(self.external_pub)

    @classmethod
    def read(cls, r: Reader) -> ExternalPub:
        return cls(r.opaque(MAX_HPKE_PUBLIC_KEY))


@dataclass(frozen=True, slots=True)
class ExternalSender:
    """``struct { SignaturePublicKey signature_key; Credential credential; }`` (§12.1.8.1)."""

    signature_key: bytes
    credential: Credential

    def write(self, w: Writer) -> None:
        w.opaque(self.signature_key)
        self.credential.write(w)

    @classmethod
    def read(cls, r: Reader) -> ExternalSender:
        return cls(r.opaque(MAX_SIGNATURE_KEY), Credential.read(r))


@dataclass(frozen=True, slots=True)
class ExternalSenders:
    """The external_senders payload: ``ExternalSender external_senders<V>``."""

    EXTENSION_TYPE: ClassVar[int] = ExtensionType.EXTERNAL_SENDERS

    senders: tuple[ExternalSender, ...] = ()

    def write(self, w: Writer) -> None:
        w.structs(self.senders)

    @classmethod
    def read(cls, r: Reader) -> ExternalSenders:
        return cls(r.structs(ExternalSender))
