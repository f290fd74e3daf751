"""The state of one epoch, and the encodings the group's records are made of.

:class:`EpochState` is everything a member holds for one epoch: the
GroupContext (and its encoding, reused for signatures and the key schedule),
the public ratchet tree, our leaf index and private path keys, the epoch's
secrets, the interim transcript hash, the confirmation tag of the commit that
started the epoch (GroupInfo needs it) and the framing state (sender-data
secret, membership key and the secret tree).

:class:`PastEpoch` is what a past epoch keeps so late application messages
still decrypt: framing state and the signature keys of that epoch's members.

Record encodings here are versioned and deterministic (fixed field order,
sorted maps); decoders raise ``MlsError`` (``MlsDecodeError``) for anything
malformed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ping_core.errors import MlsDecodeError, MlsError
from ping_core.mls.codec import Reader, Writer, decode_exact, decode_with, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.framing import EpochFraming
from ping_core.mls.primitives import zero_secret
from ping_core.mls.schedule import EpochSecrets
from ping_core.mls.tree.secret_tree import RatchetConfig, RecordChanges, SecretTree
from ping_core.mls.structs import GroupContext, LeafNode, ReInit
from ping_core.mls.tree import RatchetTree
from ping_core.mls.tree.treekem import PathKeys

__all__ = [
    "EpochState",
    "PastEpoch",
    "secret_tree_records",
    "split_prefixed",
]

_EPOCH_VERSION = 1
_PAST_VERSION = 1


class EpochState:
    """One epoch of a group, as a member sees it. Replaced wholesale by a commit:
    nothing in it is mutated except the framing's secret tree."""

    __slots__ = (
        "context",
        "context_bytes",
        "tree",
        "own_leaf",
        "keys",
        "secrets",
        "interim",
        "confirmation_tag",
        "framing",
    )

    def __init__(
        self,
        context: GroupContext,
        tree: RatchetTree,
        own_leaf: int,
        keys: PathKeys,
        secrets: EpochSecrets,
        interim: bytes,
        confirmation_tag: bytes,
        framing: EpochFraming,
        *,
        context_bytes: bytes | None = None,
    ) -> None:
        self.context = context
        self.context_bytes = encode(context) if context_bytes is None else context_bytes
        self.tree = tree
        self.own_leaf = own_leaf
        self.keys = keys
        # The secret tree holds the encryption secret now; §9.2 wants it gone.
        self.secrets = secrets.without_encryption_secret().without_welcome()
        self.interim = interim
        self.confirmation_tag = confirmation_tag
        self.framing = framing

    def __repr__(self) -> str:
        return f"EpochState(epoch={self.context.epoch}, own_leaf={self.own_leaf}, n_leaves={self.tree.n_leaves})"

    @classmethod
    def new(
        cls,
        crypto: CryptoProvider,
        context: GroupContext,
        tree: RatchetTree,
        own_leaf: int,
        keys: PathKeys,
        secrets: EpochSecrets,
        interim: bytes,
        confirmation_tag: bytes,
        ratchet: RatchetConfig,
        *,
        context_bytes: bytes | None = None,
    ) -> EpochState:
        """A new epoch with a fresh secret tree seeded from ``secrets.encryption_secret``."""
        cb = encode(context) if context_bytes is None else context_bytes
        st = SecretTree(crypto, secrets.encryption_secret, tree.n_leaves, ratchet)
        framing = EpochFraming(context.group_id, context.epoch, cb, secrets.sender_data_secret, secrets.membership_key, st)
        return cls(context, tree, own_leaf, keys, secrets, interim, confirmation_tag, framing, context_bytes=cb)

    @property
    def epoch(self) -> int:
        return self.context.epoch

    def own_leaf_node(self) -> LeafNode:
        leaf = self.tree.leaf(self.own_leaf)
        if leaf is None:
            raise MlsError("our own leaf is blank")
        return leaf

    # -- records -----------------------------------------------------------

    def encode_core(self) -> bytes:
        """Everything but the tree and the secret tree (those are records of their own)."""
        w = Writer()
        w.u8(_EPOCH_VERSION)
        w.opaque(self.context_bytes)
        w.u32(self.own_leaf)
        w.opaque(self.interim)
        w.opaque(self.confirmation_tag)
        w.opaque(self.secrets.encode())
        w.opaque(self.keys.encode())
        return w.getvalue()

    @classmethod
    def decode(
        cls, crypto: CryptoProvider, core: bytes, tree_bytes: bytes, secret_tree: Mapping[str, bytes]
    ) -> EpochState:
        """An epoch from :meth:`encode_core`, the tree encoding and the secret tree records."""

        def read(r: Reader) -> tuple[bytes, int, bytes, bytes, bytes, bytes]:
            if r.u8() != _EPOCH_VERSION:
                raise MlsDecodeError("unknown epoch state version")
            return r.opaque(), r.u32(), r.opaque(), r.opaque(), r.opaque(), r.opaque()

        cb, own_leaf, interim, tag, raw_secrets, raw_keys = decode_with(read, core)
        context = decode_exact(GroupContext, cb)
        secrets = EpochSecrets.decode(raw_secrets)
        keys = PathKeys.decode(raw_keys)
        tree = RatchetTree.decode(tree_bytes)
        st = SecretTree.from_records(crypto, secret_tree)
        if st.n_leaves != tree.n_leaves:
            raise MlsError("the secret tree does not match the ratchet tree")
        if tree.leaf(own_leaf) is None:
            raise MlsError("the stored state's own leaf is blank")
        framing = EpochFraming(context.group_id, context.epoch, cb, secrets.sender_data_secret, secrets.membership_key, st)
        return cls(context, tree, own_leaf, keys, secrets, interim, tag, framing, context_bytes=cb)


class PastEpoch:
    """A past epoch kept for late application messages: its framing state and
    the signature keys of its members (leaf index -> key)."""

    __slots__ = ("epoch", "framing", "signature_keys")

    def __init__(self, epoch: int, framing: EpochFraming, signature_keys: dict[int, bytes]) -> None:
        self.epoch = epoch
        self.framing = framing
        self.signature_keys = signature_keys

    def __repr__(self) -> str:
        return f"PastEpoch(epoch={self.epoch}, members={len(self.signature_keys)})"

    @classmethod
    def of(cls, state: EpochState) -> PastEpoch:
        """Keep what late application messages need: ``state``'s sender-data
        secret and secret tree (the same object), and the roster's signature
        keys. The membership key is erased: it only tags PublicMessages, and a
        past epoch accepts nothing but application PrivateMessages."""
        f = state.framing
        framing = EpochFraming(f.group_id, f.epoch, f.group_context, f.sender_data_secret, zero_secret(), f.secret_tree)
        keys = {i: leaf.signature_key for i, leaf in state.tree.members()}
        return cls(state.epoch, framing, keys)

    def encode_meta(self) -> bytes:
        f = self.framing
        w = Writer()
        w.u8(_PAST_VERSION)
        w.opaque(f.group_context)
        w.opaque(f.sender_data_secret)
        w.opaque(f.membership_key)
        w.u32_map(self.signature_keys)
        return w.getvalue()

    @classmethod
    def decode(cls, crypto: CryptoProvider, meta: bytes, secret_tree: Mapping[str, bytes]) -> PastEpoch:
        def read(r: Reader) -> tuple[bytes, bytes, bytes, dict[int, bytes]]:
            if r.u8() != _PAST_VERSION:
                raise MlsDecodeError("unknown past epoch version")
            cb, sds, mk = r.opaque(), r.opaque(64), r.opaque(64)
            return cb, sds, mk, r.u32_map(64)

        cb, sds, mk, keys = decode_with(read, meta)
        context = decode_exact(GroupContext, cb)
        st = SecretTree.from_records(crypto, secret_tree)
        framing = EpochFraming(context.group_id, context.epoch, cb, sds, mk, st)
        return cls(context.epoch, framing, keys)


def secret_tree_records(prefix: str, tree: SecretTree) -> dict[str, bytes]:
    """All records of a secret tree, names prefixed."""
    return {prefix + name: value for name, value in tree.records().items()}


def split_prefixed(records: Mapping[str, bytes], prefix: str) -> dict[str, bytes]:
    """The records whose name starts with ``prefix``, with the prefix removed."""
    n = len(prefix)
    return {name[n:]: value for name, value in records.items() if name.startswith(prefix)}


# ---------------------------------------------------------------------------
# Group records
#
# A group's state is a set of named records (str -> bytes) so that what
# changes with every message is stored apart from what changes once per epoch:
#
#   "state"          config, signer, the epoch's context/secrets/keys, flags,
#                    resumption PSKs, the list of retained past epochs
#   "tree"           the public ratchet tree (once per epoch)
#   "proposals"      pending proposals of this epoch
#   "staged"         our own pending commit, if any
#   "past:<e>"       a retained past epoch: framing secrets and roster keys
#   "st:<e>:<name>"  the secret tree of epoch <e> (current or past); an
#                    application message changes one "st:<e>:leaf:<l>" record
#
# ``changed_records`` gives the puts and deletes since ``mark_saved``; a send
# costs the sender's leaf record (a few hundred bytes at most, independent of
# the group's size).

if TYPE_CHECKING:
    from .commit import StagedCommit
    from .group import Group

_STATE_VERSION = 1
_STAGED_VERSION = 1
_BLOB_MAGIC = b"PMLSG\x01"


def secret_tree_names(prefix: str, tree: SecretTree) -> set[str]:
    """Every record name a secret tree has or had since its last save (to delete them all)."""
    names = {prefix + n for n in tree.records()}
    names.update(prefix + n for n in tree.changes().deleted)
    return names


def _encode_state(group: Group) -> bytes:
    w = Writer()
    w.u8(_STATE_VERSION)
    w.opaque(group.config.encode())
    w.opaque(group.signer.encode())
    w.opaque(group._state.encode_core())
    w.u8(1 if group._active else 0)
    w.optional(group._reinit)
    last = group._last_own_commit
    if last is None:
        w.u8(0)
    else:
        w.u8(1)
        w.opaque(last[0])
        w.u64(last[1])
    start = w.begin_vector()
    for epoch, psk in group._resumption.items():
        w.u64(epoch)
        w.opaque(psk)
    w.end_vector(start)
    start = w.begin_vector()
    for epoch in group._past_epochs:
        w.u64(epoch)
    w.end_vector(start)
    return w.getvalue()


def _encode_proposals(group: Group) -> bytes:
    w = Writer()
    w.opaque(group._proposals.encode())
    start = w.begin_vector()
    for digest in sorted(group._own_proposal_messages):
        w.opaque(digest)
        w.opaque(group._own_proposal_messages[digest])
    w.end_vector(start)
    return w.getvalue()


def _encode_result(w: Writer, r: Any) -> None:
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


def _read_result(r: Reader) -> Any:
    from .results import CommitApplied

    epoch = r.u64()
    committer = r.u32()
    added, removed, updated = r.uint32s(), r.uint32s(), r.uint32s()
    flags = r.u8()
    if flags > 31:
        raise MlsDecodeError("unknown commit result flags")
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
        raise MlsError("only our own commits are persisted")
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


def decode_staged(crypto: CryptoProvider, data: bytes) -> StagedCommit:
    from .commit import StagedCommit

    def read(r: Reader) -> StagedCommit:
        if r.u8() != _STAGED_VERSION:
            raise MlsDecodeError("unknown staged commit version")
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


def _record(group: Group, name: str) -> bytes | None:
    if name == "state":
        return _encode_state(group)
    if name == "tree":
        return group._state.tree.encode()
    if name == "proposals":
        return _encode_proposals(group)
    if name == "staged":
        return None if group._pending_commit is None else encode_staged(group._pending_commit)
    if name.startswith("past:"):
        past = group._past_epochs.get(int(name[5:]))
        return None if past is None else past.encode_meta()
    raise MlsError(f"unknown group record {name!r}")  # pragma: no cover


def group_records(group: Group) -> dict[str, bytes]:
    """Every record of the group (see the comment above)."""
    out = {"state": _encode_state(group), "tree": group._state.tree.encode(), "proposals": _encode_proposals(group)}
    if group._pending_commit is not None:
        out["staged"] = encode_staged(group._pending_commit)
    out.update(secret_tree_records(f"st:{group.epoch}:", group._state.framing.secret_tree))
    for epoch, past in group._past_epochs.items():
        out[f"past:{epoch}"] = past.encode_meta()
        out.update(secret_tree_records(f"st:{epoch}:", past.framing.secret_tree))
    return out


def group_changes(group: Group) -> RecordChanges:
    """Puts and deletes since the last ``mark_saved``."""
    if group._all_dirty:
        return RecordChanges(group_records(group), frozenset(group._deleted))
    written: dict[str, bytes] = {}
    deleted = set(group._deleted)
    for name in group._dirty:
        value = _record(group, name)
        if value is None:
            deleted.add(name)
        else:
            written[name] = value
    trees = [(group.epoch, group._state.framing.secret_tree)]
    trees += [(e, p.framing.secret_tree) for e, p in group._past_epochs.items()]
    fresh = group._fresh_trees
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


def bytes_to_records(data: bytes) -> dict[str, bytes]:
    """Inverse of :func:`records_to_bytes`; ``MlsError`` for anything else."""
    if not isinstance(data, bytes) or not data.startswith(_BLOB_MAGIC):
        raise MlsDecodeError("not a Ping group state (bad magic or version)")

    def read(r: Reader) -> dict[str, bytes]:
        r.fixed(len(_BLOB_MAGIC))
        out: dict[str, bytes] = {}
        last = None
        for raw, value in r.vector(lambda rr: (rr.opaque(256), rr.opaque())):
            name = raw.decode("ascii")
            if last is not None and name <= last:
                raise MlsDecodeError("group state records out of order")
            last = name
            out[name] = value
        return out

    return decode_with(read, data)


def group_from_records(cls: type[Group], crypto: CryptoProvider, records: Mapping[str, bytes], *, clock: Any) -> Group:
    """Rebuild a group; every record must be one the state names."""
    from collections import OrderedDict

    from .config import GroupConfig
    from .keypackage import Signer
    from .proposals import ProposalStore

    raw = records.get("state")
    if raw is None or "tree" not in records or "proposals" not in records:
        raise MlsError("group records lack state, tree or proposals")

    def read(r: Reader) -> tuple[Any, ...]:
        if r.u8() != _STATE_VERSION:
            raise MlsDecodeError("unknown group state version")
        config = GroupConfig.decode(r.opaque())
        signer = Signer.decode(r.opaque())
        core = r.opaque()
        flags = r.u8()
        if flags > 1:
            raise MlsDecodeError("unknown group state flags")
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
            raise MlsError(f"unexpected group record {name!r}")
    state = EpochState.decode(crypto, core, records["tree"], split_prefixed(records, f"st:{epoch}:"))
    group = cls(crypto, signer, state, config, clock=clock)
    group._active = active
    group._reinit = reinit
    group._last_own_commit = last
    group._resumption = OrderedDict(resumption)
    for e in past_list:
        meta = records.get(f"past:{e}")
        if meta is None:
            raise MlsError(f"the record of past epoch {e} is missing")
        group._past_epochs[e] = PastEpoch.decode(crypto, meta, split_prefixed(records, f"st:{e}:"))

    def read_props(r: Reader) -> tuple[ProposalStore, dict[bytes, bytes]]:
        store = ProposalStore.decode(r.opaque())
        own = dict(r.vector(lambda rr: (rr.opaque(255), rr.opaque(255))))
        return store, own

    group._proposals, group._own_proposal_messages = decode_with(read_props, records["proposals"])
    staged = records.get("staged")
    if staged is not None:
        group._pending_commit = decode_staged(crypto, staged)
    group._all_dirty = False
    return group


def _peek_context(core: bytes) -> bytes:
    r = Reader(core)
    r.u8()
    return r.opaque()
