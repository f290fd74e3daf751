"""Pre-shared key identifiers (RFC 9420 §8.4): PreSharedKeyID and PSKLabel."""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer

from ping_core.mls.structs.enums import RESUMPTION_USAGE_BY_VALUE, PSKType, ResumptionPSKUsage
from ping_core.mls.structs.limits import MAX_GROUP_ID, MAX_HASH, MAX_PSK_ID

__all__ = ["PreSharedKeyID", "PSKLabel"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PreSharedKeyID:
    """``struct { PSKType psktype; select {...}; opaque psk_nonce<V>; } PreSharedKeyID``.

    An ``external`` PSK has ``psk_id``; a ``resumption`` PSK has ``usage``,
    ``psk_group_id`` and ``psk_epoch``. The fields of the other kind keep
    their defaults (the encoder refuses anything else). Unknown PSK types
    and resumption usages fail to decode. Keyword-only; see :meth:`external`
    and :meth:`resumption`.
    """

    psktype: PSKType
    psk_id: bytes = b""
    usage: ResumptionPSKUsage | None = None
    psk_group_id: bytes = b""
    psk_epoch: int = 0
    psk_nonce: bytes = b""

    @classmethod
    def external(cls, psk_id: bytes, psk_nonce: bytes) -> PreSharedKeyID:
        return cls(psktype=PSKType.EXTERNAL, psk_id=psk_id, psk_nonce=psk_nonce)

    @classmethod
    def resumption(
        cls, usage: ResumptionPSKUsage, psk_group_id: bytes, psk_epoch: int, psk_nonce: bytes
    ) -> PreSharedKeyID:
        return cls(
            psktype=PSKType.RESUMPTION,
            usage=usage,
            psk_group_id=psk_group_id,
            psk_epoch=psk_epoch,
            psk_nonce=psk_nonce,
        )

    def write(self, w: Writer) -> None:
        t = self.psktype
        w.u8(t)
        if t == PSKType.EXTERNAL:
            if self.usage is not None or self.psk_group_id or self.psk_epoch:
                raise ValueError("an external PSK id has no resumption fields")
            w.opaque(self.psk_id)
        elif t == PSKType.RESUMPTION:
            if self.usage is None or self.psk_id:
                raise ValueError("a resumption PSK id has a usage and no psk_id")
            w.u8(self.usage)
            w.opaque(self.psk_group_id)
            w.u64(self.psk_epoch)
        else:
            raise ValueError(f"cannot encode PSK type {t}")
        w.opaque(self.psk_nonce)

    @classmethod
    def read(cls, r: Reader) -> PreSharedKeyID:
        t = r.u8()
        if t == 1:
            psk_id = r.opaque(MAX_PSK_ID)
            return cls(psktype=PSKType.EXTERNAL, psk_id=psk_id, psk_nonce=r.opaque(MAX_HASH))
        if t == 2:
            raw_usage = r.u8()
            usage = RESUMPTION_USAGE_BY_VALUE.get(raw_usage)
            if usage is None:
                raise MlsDecodeError(f"unknown resumption PSK usage {raw_usage}", reason=MlsReason.MALFORMED)
            group_id = r.opaque(MAX_GROUP_ID)
            epoch = r.u64()
            return cls(
                psktype=PSKType.RESUMPTION,
                usage=usage,
                psk_group_id=group_id,
                psk_epoch=epoch,
                psk_nonce=r.opaque(MAX_HASH),
            )
        raise MlsDecodeError(f"unknown PSK type {t}", reason=MlsReason.MALFORMED)


@dataclass(frozen=True, slots=True)
class PSKLabel:
    """``struct { PreSharedKeyID id; uint16 index; uint16 count; } PSKLabel``
    (the context of the per-PSK ExpandWithLabel, §8.4)."""

    id: PreSharedKeyID
    index: int
    count: int

    def write(self, w: Writer) -> None:
        self.id.write(w)
        w.u16(self.index)
        w.u16(self.count)

    @classmethod
    def read(cls, r: Reader) -> PSKLabel:
        return cls(PreSharedKeyID.read(r), r.u16(), r.u16())
