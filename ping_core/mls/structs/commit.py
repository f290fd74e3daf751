"""Commit (RFC 9420 §12.4)."""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer

from .hpke import UpdatePath
from .proposals import ProposalOrRef, read_proposal_or_ref, write_proposal_or_ref

__all__ = ["Commit"]


@dataclass(frozen=True, slots=True)
class Commit:
    """``struct { ProposalOrRef proposals<V>; optional<UpdatePath> path; } Commit``.

    ``proposals`` holds :class:`Proposal` values and ``bytes`` references.
    """

    proposals: tuple[ProposalOrRef, ...] = ()
    path: UpdatePath | None = None

    def write(self, w: Writer) -> None:
        w.vector(self.proposals, write_proposal_or_ref)
        w.optional(self.path)

    @classmethod
    def read(cls, r: Reader) -> Commit:
        proposals = tuple(r.vector(read_proposal_or_ref))
        flag = r.u8()
        if flag == 0:
            return cls(proposals, None)
        if flag == 1:
            return cls(proposals, UpdatePath.read(r))
        raise MlsDecodeError(f"invalid optional presence byte {flag}", reason=MlsReason.MALFORMED)
