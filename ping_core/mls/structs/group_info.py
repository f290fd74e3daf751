"""GroupContext (RFC 9420 §8.1) and GroupInfo / GroupInfoTBS (§12.4.3)."""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.mls.tls import Reader, Writer

from .enums import ProtocolVersion
from .extensions import Extension
from .limits import MAX_GROUP_ID, MAX_HASH, MAX_SIGNATURE

__all__ = ["GroupContext", "GroupInfo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupContext:
    """``struct { ProtocolVersion version = mls10; CipherSuite cipher_suite;
    opaque group_id<V>; uint64 epoch; opaque tree_hash<V>;
    opaque confirmed_transcript_hash<V>; Extension extensions<V>; }``.

    ``version`` and ``cipher_suite`` are carried as read (checked by callers).
    Keyword-only (fields in RFC order; ``version`` defaults to mls10).
    """

    version: int = ProtocolVersion.MLS10
    cipher_suite: int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: tuple[Extension, ...] = ()

    def write(self, w: Writer) -> None:
        w.u16(self.version)
        w.u16(self.cipher_suite)
        w.opaque(self.group_id)
        w.u64(self.epoch)
        w.opaque(self.tree_hash)
        w.opaque(self.confirmed_transcript_hash)
        w.structs(self.extensions)

    @classmethod
    def read(cls, r: Reader) -> GroupContext:
        version = r.u16()
        cipher_suite = r.u16()
        group_id = r.opaque(MAX_GROUP_ID)
        epoch = r.u64()
        tree_hash = r.opaque(MAX_HASH)
        confirmed = r.opaque(MAX_HASH)
        extensions = r.structs(Extension)
        return cls(
            version=version,
            cipher_suite=cipher_suite,
            group_id=group_id,
            epoch=epoch,
            tree_hash=tree_hash,
            confirmed_transcript_hash=confirmed,
            extensions=extensions,
        )


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """``struct { GroupContext group_context; Extension extensions<V>;
    MAC confirmation_tag; uint32 signer; opaque signature<V>; } GroupInfo``.

    ``signature`` is over :meth:`tbs` with label ``"GroupInfoTBS"`` by the
    member at leaf index ``signer``.
    """

    group_context: GroupContext
    extensions: tuple[Extension, ...]
    confirmation_tag: bytes
    signer: int
    signature: bytes = b""

    def _write_content(self, w: Writer) -> None:
        self.group_context.write(w)
        w.structs(self.extensions)
        w.opaque(self.confirmation_tag)
        w.u32(self.signer)

    def write(self, w: Writer) -> None:
        self._write_content(w)
        w.opaque(self.signature)

    def tbs(self) -> bytes:
        """The GroupInfoTBS encoding (every field but the signature)."""
        w = Writer()
        self._write_content(w)
        return bytes(w.buf)

    @classmethod
    def read(cls, r: Reader) -> GroupInfo:
        group_context = GroupContext.read(r)
        extensions = r.structs(Extension)
        confirmation_tag = r.opaque(MAX_HASH)
        signer = r.u32()
        signature = r.opaque(MAX_SIGNATURE)
        return cls(group_context, extensions, confirmation_tag, signer, signature)
