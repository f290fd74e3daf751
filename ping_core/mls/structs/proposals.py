"""Proposals (RFC 9420 §12.1) and ProposalOrRef (§12.4).

:class:`Proposal` is the common base of the seven proposal classes. Its
``write``/``read`` are the tagged ``Proposal`` struct (proposal_type, then
the body); each subclass's ``write_body``/``read_body`` are the bare body
(``Add``, ``Update``, ...), as RFC 9420 names those structs. An unknown
proposal type fails to decode: its body has no length prefix to skip it by.

In a Commit, a proposal is either a :class:`Proposal` (by value) or
``bytes`` (a ProposalRef, by reference): see :func:`read_proposal_or_ref`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar, Union

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer

from .enums import ProposalOrRefType, ProposalType, ProtocolVersion
from .extensions import Extension
from .key_package import KeyPackage
from .leaf import LeafNode
from .limits import MAX_GROUP_ID, MAX_HASH, MAX_KEM_OUTPUT
from ping_core.mls.structs.psk_id import PreSharedKeyID

__all__ = [
    "Proposal",
    "Add",
    "Update",
    "Remove",
    "PreSharedKey",
    "ReInit",
    "ExternalInit",
    "GroupContextExtensions",
    "ProposalOrRef",
    "read_proposal_or_ref",
    "write_proposal_or_ref",
]

P = TypeVar("P", bound="Proposal")


class Proposal:
    """Base of every proposal; ``proposal_type`` is a class constant."""

    __slots__ = ()
    proposal_type: ClassVar[ProposalType]

    def write_body(self, w: Writer) -> None:
        raise NotImplementedError

    @classmethod
    def read_body(cls: type[P], r: Reader) -> P:
        raise NotImplementedError

    def write(self, w: Writer) -> None:
        """The tagged ``Proposal`` struct."""
        w.u16(self.proposal_type)
        self.write_body(w)

    @classmethod
    def read(cls: type[P], r: Reader) -> P:
        """A tagged ``Proposal``; on a subclass, the proposal must be of that class."""
        t = r.u16()
        body_cls = _BY_TYPE.get(t)
        if body_cls is None:
            raise MlsDecodeError(f"unknown proposal type {t}", reason=MlsReason.MALFORMED)
        proposal = body_cls.read_body(r)
        if not isinstance(proposal, cls):
            raise MlsDecodeError(
                f"expected a {cls.__name__} proposal, got {body_cls.__name__}",
                reason=MlsReason.MALFORMED,
            )
        return proposal


@dataclass(frozen=True, slots=True)
class Add(Proposal):
    """``struct { KeyPackage key_package; } Add``."""

    proposal_type: ClassVar[ProposalType] = ProposalType.ADD
    key_package: KeyPackage

    def write_body(self, w: Writer) -> None:
        self.key_package.write(w)

    @classmethod
    def read_body(cls, r: Reader) -> Add:
        return cls(KeyPackage.read(r))


@dataclass(frozen=True, slots=True)
class Update(Proposal):
    """``struct { LeafNode leaf_node; } Update``."""

    proposal_type: ClassVar[ProposalType] = ProposalType.UPDATE
    leaf_node: LeafNode

    def write_body(self, w: Writer) -> None:
        self.leaf_node.write(w)

    @classmethod
    def read_body(cls, r: Reader) -> Update:
        return cls(LeafNode.read(r))


@dataclass(frozen=True, slots=True)
class Remove(Proposal):
    """``struct { uint32 removed; } Remove`` (a leaf index)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.REMOVE
    removed: int

    def write_body(self, w: Writer) -> None:
        w.u32(self.removed)

    @classmethod
    def read_body(cls, r: Reader) -> Remove:
        return cls(r.u32())


@dataclass(frozen=True, slots=True)
class PreSharedKey(Proposal):
    """``struct { PreSharedKeyID psk; } PreSharedKey``."""

    proposal_type: ClassVar[ProposalType] = ProposalType.PSK
    psk: PreSharedKeyID

    def write_body(self, w: Writer) -> None:
        self.psk.write(w)

    @classmethod
    def read_body(cls, r: Reader) -> PreSharedKey:
        return cls(PreSharedKeyID.read(r))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReInit(Proposal):
    """``struct { opaque group_id<V>; ProtocolVersion version;
    CipherSuite cipher_suite; Extension extensions<V>; } ReInit``
    (keyword-only; version and suite carried as read)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.REINIT
    group_id: bytes
    version: int = ProtocolVersion.MLS10
    cipher_suite: int
    extensions: tuple[Extension, ...] = ()

    def write_body(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u16(self.version)
        w.u16(self.cipher_suite)
        w.structs(self.extensions)

    @classmethod
    def read_body(cls, r: Reader) -> ReInit:
        group_id = r.opaque(MAX_GROUP_ID)
        version = r.u16()
        cipher_suite = r.u16()
        return cls(group_id=group_id, version=version, cipher_suite=cipher_suite, extensions=r.structs(Extension))


@dataclass(frozen=True, slots=True)
class ExternalInit(Proposal):
    """``struct { opaque kem_output<V>; } ExternalInit``."""

    proposal_type: ClassVar[ProposalType] = ProposalType.EXTERNAL_INIT
    kem_output: bytes

    def write_body(self, w: Writer) -> None:
        w.opaque(self.kem_output)

    @classmethod
    def read_body(cls, r: Reader) -> ExternalInit:
        return cls(r.opaque(MAX_KEM_OUTPUT))


@dataclass(frozen=True, slots=True)
class GroupContextExtensions(Proposal):
    """``struct { Extension extensions<V>; } GroupContextExtensions``."""

    proposal_type: ClassVar[ProposalType] = ProposalType.GROUP_CONTEXT_EXTENSIONS
    extensions: tuple[Extension, ...] = ()

    def write_body(self, w: Writer) -> None:
        w.structs(self.extensions)

    @classmethod
    def read_body(cls, r: Reader) -> GroupContextExtensions:
        return cls(r.structs(Extension))


_BY_TYPE: dict[int, type[Proposal]] = {
    int(c.proposal_type): c
    for c in (Add, Update, Remove, PreSharedKey, ReInit, ExternalInit, GroupContextExtensions)
}

ProposalOrRef = Union[Proposal, bytes]
"""A proposal by value, or ``bytes``: a ProposalRef (§5.2) by reference."""


def write_proposal_or_ref(w: Writer, item: ProposalOrRef) -> None:
    """``struct { ProposalOrRefType type; select {...} } ProposalOrRef``."""
    if isinstance(item, Proposal):
        w.u8(ProposalOrRefType.PROPOSAL)
        item.write(w)
    elif isinstance(item, bytes):
        w.u8(ProposalOrRefType.REFERENCE)
        w.opaque(item)
    else:
        raise TypeError(f"not a proposal or a proposal reference: {type(item).__name__}")


def read_proposal_or_ref(r: Reader) -> ProposalOrRef:
    """A ProposalOrRef: a :class:`Proposal` or the reference ``bytes``."""
    t = r.u8()
    if t == 1:
        return Proposal.read(r)
    if t == 2:
        return r.opaque(MAX_HASH)
    raise MlsDecodeError(f"unknown ProposalOrRef type {t}", reason=MlsReason.MALFORMED)
