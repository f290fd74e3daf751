"""A computed next epoch not yet applied (:class:`StagedCommit`), and its record.

Both our own commits (:func:`.commit.create_commit`) and received ones
(:func:`.commit.stage_commit`) end in a StagedCommit; the group merges it
(:func:`.merge.merge_staged_commit`) or drops it. Our own pending one is
persisted with the group (record ``staged``, versioned and deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ping_core.errors import MlsDecodeError, MlsError, MlsReason, stored_state
from ping_core.mls.tls import Reader, Writer, decode_with
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.tree.secret_tree import RatchetKey
from ping_core.mls.structs import ReInit

from .epoch import EpochState
from .results import CommitApplied, Member

__all__ = ["StagedCommit", "encode_staged", "decode_staged"]

_STAGED_VERSION = 1


@dataclass(eq=False)
class StagedCommit:
    """A computed next epoch, not yet applied.

    For our own commit: ``message`` (the commit as a TLS-serialized
    MLSMessage, to send), ``welcome`` (MLSMessage or ``None`` when nobody was
    added), ``welcome_recipients`` (the KeyPackageRefs the Welcome is
    encrypted to, in order: the SDK addresses each new member by its ref) and
    ``ratchet_tree`` (the new tree, encoded, for joiners that get it out of
    band). ``result`` describes the change. Merge with
    :meth:`Group.merge_staged_commit`, or drop it.
    """

    base_epoch: int
    result: CommitApplied
    own: bool
    message: bytes | None = None
    welcome: bytes | None = None
    welcome_recipients: tuple[bytes, ...] = ()
    message_hash: bytes = b""
    next_state: EpochState | None = field(default=None, repr=False)
    ratchet_key: RatchetKey | None = field(default=None, repr=False)
    reinit: ReInit | None = None
    group_id: bytes = b""

    @property
    def epoch(self) -> int:
        """The epoch the commit leads to."""
        return self.result.epoch

    def added_members(self) -> list[Member]:
        """The members this commit adds (``result.added``), as leaves of the new epoch: for
        our own commit, whom its Welcome goes to; for an external commit, the joiner."""
        ns = self.next_state
        if ns is None:
            return []
        leaves = sorted({*self.result.added, *((self.result.committer,) if self.result.external else ())})
        out = []
        for i in leaves:
            leaf = ns.tree.leaf(i)
            if leaf is not None:
                out.append(Member(i, leaf.credential, leaf.signature_key, leaf.encryption_key))
        return out

    @property
    def ratchet_tree(self) -> bytes | None:
        """The new epoch's ratchet tree, encoded (``None`` when we were removed)."""
        return None if self.next_state is None else self.next_state.tree.encode()


def _encode_result(w: Writer, r: CommitApplied) -> None:
    w.u64(r.epoch)
    w.u32(r.committer & 0xFFFFFFFF)
    w.uint32s(r.added)
    w.uint32s(r.removed)
    w.uint32s(r.updated)
    flags = (
        int(r.removed_self) | int(r.own) << 1 | int(r.already_applied) << 2 | int(r.external) << 3 | int(r.extensions_changed) << 4
    )
    w.u8(flags)
    w.u16(r.psks)
    w.optional(r.reinit)


def _read_result(r: Reader) -> CommitApplied:
    epoch = r.u64()
    committer = r.u32()
    added, removed, updated = r.uint32s(), r.uint32s(), r.uint32s()
    flags = r.u8()
    if flags > 31:
        raise MlsDecodeError("unknown commit result flags", reason=MlsReason.CORRUPT_STATE)
    psks = r.u16()
    reinit = r.optional(ReInit.read)
    return CommitApplied(
        epoch=epoch,
        committer=committer,
        added=added,
        removed=removed,
        updated=updated,
        removed_self=bool(flags & 1),
        own=bool(flags & 2),
        already_applied=bool(flags & 4),
        external=bool(flags & 8),
        extensions_changed=bool(flags & 16),
        psks=psks,
        reinit=reinit,
    )


def encode_staged(staged: StagedCommit) -> bytes:
    """Our own pending commit, with the whole next epoch (it holds secrets)."""
    ns = staged.next_state
    if ns is None or staged.message is None:
        raise MlsError("only our own commits are persisted", reason=MlsReason.INVALID_ARGUMENT)
    w = Writer()
    w.u8(_STAGED_VERSION)
    w.opaque(staged.group_id)
    w.u64(staged.base_epoch)
    w.opaque(staged.message)
    w.optional_opaque(staged.welcome)
    w.opaques(staged.welcome_recipients)
    w.opaque(staged.message_hash)
    _encode_result(w, staged.result)
    w.opaque(ns.encode_core())
    w.opaque(ns.tree.encode())
    st = ns.framing.secret_tree.records()
    start = w.begin_vector()
    for name in sorted(st):
        w.opaque(name.encode())
        w.opaque(st[name])
    w.end_vector(start)
    return w.getvalue()


@stored_state
def decode_staged(crypto: CryptoProvider, data: bytes) -> StagedCommit:
    """Inverse of :func:`encode_staged`; ``MlsError`` (``MlsDecodeError``) for anything else."""

    def read(r: Reader) -> StagedCommit:
        if r.u8() != _STAGED_VERSION:
            raise MlsDecodeError("unknown staged commit version", reason=MlsReason.CORRUPT_STATE)
        group_id = r.opaque()
        base = r.u64()
        message = r.opaque()
        welcome = r.optional_opaque()
        recipients = r.opaques()
        digest = r.opaque()
        result = _read_result(r)
        core = r.opaque()
        tree_bytes = r.opaque()
        st: dict[str, bytes] = {}
        for name, value in r.vector(lambda rr: (rr.opaque(), rr.opaque())):
            st[name.decode("ascii")] = value
        ns = EpochState.decode(crypto, core, tree_bytes, st)
        return StagedCommit(
            base_epoch=base,
            result=result,
            own=True,
            message=message,
            welcome=welcome,
            welcome_recipients=recipients,
            message_hash=digest,
            next_state=ns,
            reinit=result.reinit,
            group_id=group_id,
        )

    return decode_with(read, data)
