"""A group's whole state as plain data (:class:`GroupState`), and its records.

Every operation of ``ping_core.mls.group`` is a function over a GroupState
(create, join, commit, process, ...); :class:`.Group` is the façade that holds
one and offers them as methods. A GroupState holds the current epoch
(:class:`.epoch.EpochState`), the retained past epochs, the pending
proposals and our pending commit, the resumption PSKs kept, and the record
bookkeeping (what changed since the last save), plus the application's policy
(clock, ``max_lifetime_s``, ``leaf_check``, ``extensions_check``), which is not
stored.

Records: a group's state is a set of named records (str -> bytes) so that
what changes with every message is stored apart from what changes once per
epoch:

  "state"          config, signer, the epoch's context/secrets/keys, flags,
                   resumption PSKs, the list of retained past epochs
  "tree"           the public ratchet tree (once per epoch)
  "proposals"      pending proposals of this epoch
  "staged"         our own pending commit, if any
  "past:<e>"       a retained past epoch: framing secrets and roster keys
  "st:<e>:<name>"  the secret tree of epoch <e> (current or past); an
                   application message changes one "st:<e>:leaf:<l>" record

:func:`group_changes` gives the puts and deletes since
:meth:`GroupState.mark_saved`; a send costs the sender's leaf record (a few
hundred bytes at most, independent of the group's size). Encodings are
versioned and deterministic; decoders raise ``MlsError`` (``MlsDecodeError``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypedDict

from ping_core.errors import MlsDecodeError, MlsError, MlsReason, stored_state
from ping_core.mls.tls import Reader, Writer, decode_exact, decode_with
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.tree.secret_tree import RecordChanges
from ping_core.mls.structs import GroupContext, PreSharedKeyID, PSKType, ReInit

from .config import GroupConfig
from .epoch import EpochState, PastEpoch, secret_tree_records, split_prefixed
from .keypackage import Signer
from .proposals import ProposalStore
from .results import Clock, ExtensionsCheck, LeafCheck
from .staged import StagedCommit, decode_staged, encode_staged

__all__ = [
    "GroupState",
    "PolicyArgs",
    "check_max_lifetime",
    "group_records",
    "group_changes",
    "group_from_records",
    "records_to_bytes",
    "bytes_to_records",
]

_STATE_VERSION = 1
_BLOB_MAGIC = b"PMLSG\x01"


class PolicyArgs(TypedDict, total=False):
    """The application's policy besides the clock, as keyword arguments of :class:`GroupState`."""

    max_lifetime_s: int | None
    leaf_check: LeafCheck | None
    extensions_check: ExtensionsCheck | None


def check_max_lifetime(value: int | None) -> int | None:
    """``value`` if it is a valid ``max_lifetime_s`` (a non-negative int of seconds, or
    ``None``); ``MlsError`` otherwise."""
    if value is not None and (type(value) is not int or value < 0):
        raise MlsError("max_lifetime_s is a non-negative int of seconds, or None", reason=MlsReason.INVALID_ARGUMENT)
    return value


@dataclass(eq=False, repr=False)
class GroupState:
    """SECRET: one member's state of one group (see the module docstring). Plain data:
    the operations are the functions of this package, the façade is :class:`.Group`.
    Not thread-safe (one writer). Its repr names no secret."""

    crypto: CryptoProvider
    signer: Signer
    current: EpochState
    config: GroupConfig
    #: The application's clock (:data:`.results.Clock`); policy, not stored.
    clock: Clock
    #: The application's maximum KeyPackage leaf lifetime (RFC 9420 §7.2); policy.
    max_lifetime_s: int | None = None
    #: The application's leaf policy (:data:`.results.LeafCheck`); policy.
    leaf_check: LeafCheck | None = None
    #: The application's GroupContext extension check (:data:`.results.ExtensionsCheck`); policy.
    extensions_check: ExtensionsCheck | None = None
    proposals: ProposalStore = field(default_factory=ProposalStore)
    past_epochs: OrderedDict[int, PastEpoch] = field(default_factory=OrderedDict)
    resumption: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    pending_commit: StagedCommit | None = None
    #: Hash and epoch of our last merged commit (its echo is recognised).
    last_own_commit: tuple[bytes, int] | None = None
    #: Hash of each of our pending proposal messages -> its ProposalRef.
    own_proposal_messages: dict[bytes, bytes] = field(default_factory=dict)
    active: bool = True
    reinit: ReInit | None = None
    # Record bookkeeping: names rewritten / deleted since the last save.
    dirty: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    all_dirty: bool = True
    #: Epochs whose secret tree must be written whole.
    fresh_trees: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        check_max_lifetime(self.max_lifetime_s)

    def __repr__(self) -> str:
        return f"GroupState(group_id={self.group_id.hex()}, epoch={self.epoch}, active={self.active})"

    @property
    def epoch(self) -> int:
        return self.current.context.epoch

    @property
    def group_id(self) -> bytes:
        return self.current.context.group_id

    @property
    def own_leaf_index(self) -> int:
        return self.current.own_leaf

    def policy(self) -> PolicyArgs:
        """The application's policy (besides the clock), for a successor group."""
        return PolicyArgs(
            max_lifetime_s=self.max_lifetime_s, leaf_check=self.leaf_check, extensions_check=self.extensions_check
        )

    def now(self) -> int:
        """The application's time (``clock``), in whole seconds."""
        return int(self.clock())

    def require_active(self) -> None:
        """``MlsError`` unless we may still send in this group (a member, not reinitialised)."""
        if not self.active:
            raise MlsError("we are no longer a member of this group", reason=MlsReason.WRONG_STATE)
        if self.reinit is not None:
            raise MlsError(
                "the group was reinitialised: it may not be used to send any more",
                reason=MlsReason.WRONG_STATE,
            )

    def resumption_psks(self) -> dict[int, bytes]:
        """SECRET: the retained resumption PSKs by epoch, the current one's included."""
        out = dict(self.resumption)
        out[self.epoch] = self.current.secrets.resumption_psk
        return out

    def psk_source(self) -> Callable[[PreSharedKeyID], bytes | None]:
        """A PskSource resolving this group's retained resumption PSKs (for another group:
        a reinitialised one, or a branch), as they are now."""
        gid = self.group_id
        psks = self.resumption_psks()

        def source(psk: PreSharedKeyID) -> bytes | None:
            if psk.psktype == PSKType.RESUMPTION and psk.psk_group_id == gid:
                return psks.get(psk.psk_epoch)
            return None

        return source

    def touch(self, *names: str) -> None:
        """The records ``names`` changed (written at the next save)."""
        for name in names:
            self.dirty.add(name)
            self.deleted.discard(name)

    def drop_record(self, name: str) -> None:
        """The record ``name`` is gone (deleted at the next save)."""
        self.dirty.discard(name)
        self.deleted.add(name)

    def mark_saved(self) -> None:
        """The caller persisted :func:`group_changes`: start counting afresh."""
        self.dirty.clear()
        self.deleted.clear()
        self.all_dirty = False
        self.fresh_trees.clear()
        self.current.framing.secret_tree.mark_saved()
        for past in self.past_epochs.values():
            past.framing.secret_tree.mark_saved()


def _encode_state(gs: GroupState) -> bytes:
    w = Writer()
    w.u8(_STATE_VERSION)
    w.opaque(gs.config.encode())
    w.opaque(gs.signer.encode())
    w.opaque(gs.current.encode_core())
    w.u8(1 if gs.active else 0)
    w.optional(gs.reinit)
    last = gs.last_own_commit
    if last is None:
        w.u8(0)
    else:
        w.u8(1)
        w.opaque(last[0])
        w.u64(last[1])
    start = w.begin_vector()
    for epoch, psk in gs.resumption.items():
        w.u64(epoch)
        w.opaque(psk)
    w.end_vector(start)
    start = w.begin_vector()
    for epoch in gs.past_epochs:
        w.u64(epoch)
    w.end_vector(start)
    return w.getvalue()


def _encode_proposals(gs: GroupState) -> bytes:
    w = Writer()
    w.opaque(gs.proposals.encode())
    start = w.begin_vector()
    for digest in sorted(gs.own_proposal_messages):
        w.opaque(digest)
        w.opaque(gs.own_proposal_messages[digest])
    w.end_vector(start)
    return w.getvalue()


def _record(gs: GroupState, name: str) -> bytes | None:
    if name == "state":
        return _encode_state(gs)
    if name == "tree":
        return gs.current.tree.encode()
    if name == "proposals":
        return _encode_proposals(gs)
    if name == "staged":
        return None if gs.pending_commit is None else encode_staged(gs.pending_commit)
    if name.startswith("past:"):
        past = gs.past_epochs.get(int(name[5:]))
        return None if past is None else past.encode_meta()
    raise MlsError(f"unknown group record {name!r}", reason=MlsReason.CORRUPT_STATE)  # pragma: no cover


def group_records(gs: GroupState) -> dict[str, bytes]:
    """Every record of the group (see the comment above)."""
    out = {"state": _encode_state(gs), "tree": gs.current.tree.encode(), "proposals": _encode_proposals(gs)}
    if gs.pending_commit is not None:
        out["staged"] = encode_staged(gs.pending_commit)
    out.update(secret_tree_records(f"st:{gs.epoch}:", gs.current.framing.secret_tree))
    for epoch, past in gs.past_epochs.items():
        out[f"past:{epoch}"] = past.encode_meta()
        out.update(secret_tree_records(f"st:{epoch}:", past.framing.secret_tree))
    return out


def group_changes(gs: GroupState) -> RecordChanges:
    """Puts and deletes since the last ``mark_saved``."""
    if gs.all_dirty:
        return RecordChanges(group_records(gs), frozenset(gs.deleted))
    written: dict[str, bytes] = {}
    deleted = set(gs.deleted)
    for name in gs.dirty:
        value = _record(gs, name)
        if value is None:
            deleted.add(name)
        else:
            written[name] = value
    trees = [(gs.epoch, gs.current.framing.secret_tree)]
    trees += [(e, p.framing.secret_tree) for e, p in gs.past_epochs.items()]
    fresh = gs.fresh_trees
    for epoch, tree in trees:
        prefix = f"st:{epoch}:"
        if epoch in fresh:
            written.update(secret_tree_records(prefix, tree))
            continue
        ch = tree.changes()
        for n, v in ch.written.items():
            written[prefix + n] = v
        for n in ch.deleted:
            deleted.add(prefix + n)
    deleted.difference_update(written)
    return RecordChanges(written, frozenset(deleted))


def records_to_bytes(records: Mapping[str, bytes]) -> bytes:
    """One deterministic blob: a magic/version prefix, then the records sorted by name."""
    w = Writer()
    w.raw(_BLOB_MAGIC)
    start = w.begin_vector()
    for name in sorted(records):
        w.opaque(name.encode("ascii"))
        w.opaque(records[name])
    w.end_vector(start)
    return w.getvalue()


@stored_state
def bytes_to_records(data: bytes) -> dict[str, bytes]:
    """Inverse of :func:`records_to_bytes`; ``MlsError`` for anything else."""
    if not isinstance(data, bytes) or not data.startswith(_BLOB_MAGIC):
        raise MlsDecodeError("not a Ping group state (bad magic or version)", reason=MlsReason.CORRUPT_STATE)

    def read(r: Reader) -> dict[str, bytes]:
        r.fixed(len(_BLOB_MAGIC))
        out: dict[str, bytes] = {}
        last = None
        for raw, value in r.vector(lambda rr: (rr.opaque(256), rr.opaque())):
            name = raw.decode("ascii")
            if last is not None and name <= last:
                raise MlsDecodeError("group state records out of order", reason=MlsReason.CORRUPT_STATE)
            last = name
            out[name] = value
        return out

    return decode_with(read, data)


def group_from_records(
    crypto: CryptoProvider, records: Mapping[str, bytes], *, clock: Clock, policy: PolicyArgs | None = None
) -> GroupState:
    """Rebuild a group's state; every record must be one the state names. ``clock`` and
    ``policy`` (``max_lifetime_s``, ``leaf_check``, ``extensions_check``) are not stored:
    a bad policy value is the caller's INVALID_ARGUMENT, a bad record CORRUPT_STATE."""
    check_max_lifetime((policy or {}).get("max_lifetime_s"))
    return _group_from_records(crypto, records, clock=clock, policy=policy)


@stored_state
def _group_from_records(
    crypto: CryptoProvider, records: Mapping[str, bytes], *, clock: Clock, policy: PolicyArgs | None
) -> GroupState:
    raw = records.get("state")
    if raw is None or "tree" not in records or "proposals" not in records:
        raise MlsError("group records lack state, tree or proposals", reason=MlsReason.CORRUPT_STATE)

    def read(r: Reader) -> tuple[Any, ...]:
        if r.u8() != _STATE_VERSION:
            raise MlsDecodeError("unknown group state version", reason=MlsReason.CORRUPT_STATE)
        config = GroupConfig.decode(r.opaque())
        signer = Signer.decode(r.opaque())
        core = r.opaque()
        flags = r.u8()
        if flags > 1:
            raise MlsDecodeError("unknown group state flags", reason=MlsReason.CORRUPT_STATE)
        reinit = r.optional(ReInit.read)
        last = None
        if r.boolean():
            last = (r.opaque(), r.u64())
        resumption = r.vector(lambda rr: (rr.u64(), rr.opaque(64)))
        past = r.vector(lambda rr: rr.u64())
        return config, signer, core, bool(flags), reinit, last, resumption, past

    config, signer, core, active, reinit, last, resumption, past_list = decode_with(read, raw)
    context = decode_exact(GroupContext, _peek_context(core))
    epoch = context.epoch
    known = {"state", "tree", "proposals", "staged"}
    prefixes = [f"st:{epoch}:"]
    for e in past_list:
        known.add(f"past:{e}")
        prefixes.append(f"st:{e}:")
    for name in records:
        if name not in known and not any(name.startswith(p) for p in prefixes):
            raise MlsError(f"unexpected group record {name!r}", reason=MlsReason.CORRUPT_STATE)
    current = EpochState.decode(crypto, core, records["tree"], split_prefixed(records, f"st:{epoch}:"))
    gs = GroupState(crypto, signer, current, config, clock, **(policy or {}))
    gs.active, gs.reinit, gs.last_own_commit = active, reinit, last
    gs.resumption = OrderedDict(resumption)
    for e in past_list:
        meta = records.get(f"past:{e}")
        if meta is None:
            raise MlsError(f"the record of past epoch {e} is missing", reason=MlsReason.CORRUPT_STATE)
        gs.past_epochs[e] = PastEpoch.decode(crypto, meta, split_prefixed(records, f"st:{e}:"))

    def read_props(r: Reader) -> tuple[ProposalStore, dict[bytes, bytes]]:
        store = ProposalStore.decode(r.opaque())
        own = dict(r.vector(lambda rr: (rr.opaque(255), rr.opaque(255))))
        return store, own

    gs.proposals, gs.own_proposal_messages = decode_with(read_props, records["proposals"])
    staged = records.get("staged")
    if staged is not None:
        gs.pending_commit = decode_staged(crypto, staged)
    gs.all_dirty = False
    return gs


def _peek_context(core: bytes) -> bytes:
    r = Reader(core)
    r.u8()
    return r.opaque()
