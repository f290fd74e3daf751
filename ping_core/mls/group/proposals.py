"""Pending proposals of the current epoch (RFC 9420 §12.1), stored by ProposalRef.

A proposal becomes pending when we send it or when a received one verified;
a commit of the same epoch may then name it by reference. The store keeps
arrival order (a committer includes pending proposals in that order) and is
emptied when the epoch changes.

For our own Update proposals the store also keeps the private key of the new
leaf: when someone commits the Update we need it.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from ping_core.errors import MlsDecodeError, MlsError, MlsReason, stored_state
from ping_core.mls.tls import Reader, Writer, decode_with
from ping_core.mls.structs import Proposal, Sender

__all__ = ["PendingProposal", "ProposalStore", "MAX_PENDING_PROPOSALS"]

#: Bound on proposals pending in one epoch: a flood of valid proposals must not
#: make a member hold unbounded state.
MAX_PENDING_PROPOSALS = 10_000
_VERSION = 1


class PendingProposal:
    """A verified proposal: its ref, the proposal, who sent it, and (for our
    own Update) the new leaf's private key (secret: never in repr)."""

    __slots__ = ("ref", "proposal", "sender", "leaf_secret")

    def __init__(self, ref: bytes, proposal: Proposal, sender: Sender, leaf_secret: bytes | None = None) -> None:
        self.ref = ref
        self.proposal = proposal
        self.sender = sender
        self.leaf_secret = leaf_secret

    def __repr__(self) -> str:
        return f"PendingProposal(ref={self.ref.hex()}, {type(self.proposal).__name__}, sender={self.sender!r})"

    def write(self, w: Writer) -> None:
        w.opaque(self.ref)
        self.sender.write(w)
        self.proposal.write(w)
        w.optional_opaque(self.leaf_secret)

    @classmethod
    def read(cls, r: Reader) -> PendingProposal:
        ref = r.opaque(255)
        sender = Sender.read(r)
        proposal = Proposal.read(r)
        secret = r.optional_opaque()
        return cls(ref, proposal, sender, secret)


class ProposalStore:
    """Pending proposals by ref, in arrival order."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[PendingProposal] = ()) -> None:
        self._items: dict[bytes, PendingProposal] = {p.ref: p for p in items}

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[PendingProposal]:
        return iter(list(self._items.values()))

    def __contains__(self, ref: object) -> bool:
        return ref in self._items

    def __repr__(self) -> str:
        return f"ProposalStore({len(self._items)} pending)"

    def get(self, ref: bytes) -> PendingProposal | None:
        return self._items.get(ref)

    def add(self, item: PendingProposal) -> bool:
        """Store ``item``; False (and nothing changes) when its ref is already stored."""
        if item.ref in self._items:
            return False
        if len(self._items) >= MAX_PENDING_PROPOSALS:
            raise MlsError(
                f"more than {MAX_PENDING_PROPOSALS} proposals pending in this epoch",
                reason=MlsReason.LIMIT_EXCEEDED,
            )
        self._items[item.ref] = item
        return True

    def copy(self) -> ProposalStore:
        return ProposalStore(self._items.values())

    def encode(self) -> bytes:
        w = Writer()
        w.u8(_VERSION)
        w.structs(self._items.values())
        return w.getvalue()

    @classmethod
    @stored_state
    def decode(cls, data: bytes) -> ProposalStore:
        def read(r: Reader) -> ProposalStore:
            if r.u8() != _VERSION:
                raise MlsDecodeError("unknown proposal store version", reason=MlsReason.CORRUPT_STATE)
            store = cls()
            for item in r.structs(PendingProposal):
                if not store.add(item):
                    raise MlsDecodeError("duplicate proposal ref in the store", reason=MlsReason.CORRUPT_STATE)
            return store

        return decode_with(read, data)
