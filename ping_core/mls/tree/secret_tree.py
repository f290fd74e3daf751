"""The secret tree of one epoch and its per-sender ratchets (RFC 9420 §9).

Structure. The root secret is the epoch's ``encryption_secret``; a node's
children are ``ExpandWithLabel(secret, "tree", "left"|"right", Nh)``. A leaf's
secret seeds two ratchets, handshake and application; generation ``j`` of a
ratchet gives ``key = DeriveTreeSecret(s_j, "key", j, Nk)``, ``nonce =
DeriveTreeSecret(s_j, "nonce", j, Nn)`` and ``s_{j+1} = DeriveTreeSecret(s_j,
"secret", j, Nh)``.

Laziness. Only the *frontier* is stored: the secrets of the not-yet-descended
nodes whose subtrees cover every leaf nobody has used. Using a leaf for the
first time descends from its frontier ancestor to it (O(log n) derivations),
keeping each sibling met on the way and deleting the node descended through;
the leaf secret itself is deleted as soon as both ratchets are seeded. A
group of 10,000 members costs nothing for the leaves that never send.

Deletion (§9.2). A ratchet keeps only its next secret ``s_G`` and the keys of
*skipped* generations it still tolerates; every key that decrypted a message
(or encrypted one) is deleted when the step is committed.

Tolerance. ``RatchetConfig.out_of_order_tolerance`` is how many generations
below the newest one received a ratchet keeps keys for (messages that arrive
late; 0 means strictly in order); ``maximum_forward_distance`` bounds a jump ahead (how many keys one
message may make us derive). Outside these bounds, and for a generation that
was already used, the request fails with ``MlsError`` and nothing changes.

Two-phase use. :meth:`SecretTree.peek` (receive) and
:meth:`SecretTree.peek_send` (send) compute a :class:`RatchetKey` *without
changing the tree*; :meth:`SecretTree.commit` applies it. A receiver commits
only after the message authenticated, so a forged message consumes nothing.
Committing a step the tree has moved past since (two steps peeked from one
state) raises ``MlsError``.

Persistence. The tree is a set of small records (``str`` name -> ``bytes``):

* ``"meta"``: leaf count and configuration (written once);
* ``"node:<x>"``: a frontier node's secret (added/removed when a leaf is
  first used);
* ``"leaf:<l>"``: both ratchets of leaf ``l`` (changes with each message
  that leaf sends).

Advancing one leaf's ratchet changes exactly that leaf's record.
:meth:`SecretTree.changes` lists the records written and deleted since the
last :meth:`SecretTree.mark_saved`; :meth:`SecretTree.records` gives all of
them and :meth:`SecretTree.from_records` restores a tree. Encodings are
deterministic (fixed-width integers, skipped generations in ascending order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ping_core.errors import MlsError, MlsReason, stored_state
from ping_core.mls.crypto import CryptoProvider

from ping_core.mls.tls import opaque
from ping_core.mls.primitives import NH, NK, NN

from . import treemath as tm

__all__ = [
    "HANDSHAKE",
    "APPLICATION",
    "RatchetConfig",
    "RatchetKey",
    "RecordChanges",
    "SecretTree",
    "MAX_GENERATION",
]

HANDSHAKE = 0
APPLICATION = 1
_KIND_NAMES = ("handshake", "application")

# Generations are uint32 on the wire; the last one is reserved so the next
# generation always fits the record's uint32.
MAX_GENERATION = 0xFFFFFFFE

# DeriveTreeSecret(s, label, generation, length) = Expand(s, KDFLabel): the
# KDFLabel prefix up to the uint32 generation is fixed per label. These three
# expansions run for every message, so the prefixes are built once here.
_KEY_INFO = NK.to_bytes(2, "big") + opaque(b"MLS 1.0 key") + b"\x04"
_NONCE_INFO = NN.to_bytes(2, "big") + opaque(b"MLS 1.0 nonce") + b"\x04"
_SECRET_INFO = NH.to_bytes(2, "big") + opaque(b"MLS 1.0 secret") + b"\x04"
# ExpandWithLabel(s, "tree", "left"/"right", Nh) and (s, "handshake"/"application", "", Nh).
_LEFT_INFO = NH.to_bytes(2, "big") + opaque(b"MLS 1.0 tree") + opaque(b"left")
_RIGHT_INFO = NH.to_bytes(2, "big") + opaque(b"MLS 1.0 tree") + opaque(b"right")
_HANDSHAKE_INFO = NH.to_bytes(2, "big") + opaque(b"MLS 1.0 handshake") + b"\x00"
_APPLICATION_INFO = NH.to_bytes(2, "big") + opaque(b"MLS 1.0 application") + b"\x00"

_META = "meta"
_NODE = "node:"
_LEAF = "leaf:"


@dataclass(frozen=True, slots=True)
class RatchetConfig:
    """How forgiving a receiving ratchet is.

    ``out_of_order_tolerance``: a message may arrive this many generations
    after a newer one of the same ratchet: keys are kept for skipped
    generations at most this far below the newest generation received
    (0: strictly in order). At most this many keys are kept per ratchet.
    ``maximum_forward_distance``: a received generation may be at most this
    far above the next expected one.
    """

    out_of_order_tolerance: int = 5
    maximum_forward_distance: int = 1000

    def __post_init__(self) -> None:
        if not 0 <= self.out_of_order_tolerance <= 0xFFFF:
            raise MlsError("out_of_order_tolerance must be in 0..65535", reason=MlsReason.INVALID_ARGUMENT)
        if not 0 <= self.maximum_forward_distance <= MAX_GENERATION:
            raise MlsError("maximum_forward_distance out of range", reason=MlsReason.INVALID_ARGUMENT)


class _Ratchet:
    """One ratchet's state; never mutated once built (steps build new ones)."""

    __slots__ = ("generation", "secret", "skipped")

    def __init__(self, generation: int, secret: bytes, skipped: dict[int, tuple[bytes, bytes]]) -> None:
        self.generation = generation  # the next generation not yet derived
        self.secret = secret  # the ratchet secret of ``generation``
        self.skipped = skipped  # generation -> (key, nonce), all < generation

    def __repr__(self) -> str:
        return f"_Ratchet(generation={self.generation}, skipped={sorted(self.skipped)})"


class RatchetKey:
    """The AEAD key and nonce of one generation of one leaf's ratchet.

    Returned by :meth:`SecretTree.peek`/:meth:`SecretTree.peek_send`; pass it
    to :meth:`SecretTree.commit` to consume the generation. Holding one
    changes nothing. Treat it as immutable. (A plain slotted class, not a
    frozen dataclass: one is built for every message sent and received.)
    """

    __slots__ = ("leaf", "kind", "generation", "key", "nonce", "_base", "_new", "_frontier_node", "_frontier_secret", "_frontier_add")

    def __init__(
        self,
        leaf: int,
        kind: int,
        generation: int,
        key: bytes,
        nonce: bytes,
        base: _Ratchet | None,
        new: tuple[_Ratchet, _Ratchet],
        frontier_node: int,
        frontier_secret: bytes | None,
        frontier_add: tuple[tuple[int, bytes], ...],
    ) -> None:
        self.leaf = leaf
        self.kind = kind
        self.generation = generation
        self.key = key
        self.nonce = nonce
        # The state the step was computed from and the state it leads to.
        self._base = base
        self._new = new
        self._frontier_node = frontier_node
        self._frontier_secret = frontier_secret
        self._frontier_add = frontier_add

    def __repr__(self) -> str:
        return f"RatchetKey(leaf={self.leaf}, kind={_KIND_NAMES[self.kind]}, generation={self.generation})"


@dataclass(frozen=True, slots=True)
class RecordChanges:
    """Records to write (name -> bytes) and names to delete since the last save."""

    written: dict[str, bytes]
    deleted: frozenset[str]

    def __repr__(self) -> str:
        return f"RecordChanges(written={sorted(self.written)}, deleted={sorted(self.deleted)})"

    def __bool__(self) -> bool:
        return bool(self.written or self.deleted)


def _encode_ratchet(r: _Ratchet, out: bytearray) -> None:
    out += r.generation.to_bytes(4, "big")
    out += r.secret
    out += len(r.skipped).to_bytes(2, "big")
    for g in sorted(r.skipped):
        key, nonce = r.skipped[g]
        out += g.to_bytes(4, "big")
        out += key
        out += nonce


def _decode_ratchet(data: bytes, pos: int) -> tuple[_Ratchet, int]:
    if len(data) < pos + 38:
        raise MlsError("truncated ratchet record", reason=MlsReason.CORRUPT_STATE)
    generation = int.from_bytes(data[pos : pos + 4], "big")
    secret = data[pos + 4 : pos + 36]
    count = int.from_bytes(data[pos + 36 : pos + 38], "big")
    pos += 38
    skipped: dict[int, tuple[bytes, bytes]] = {}
    last = -1
    entry = 4 + NK + NN
    if len(data) < pos + count * entry:
        raise MlsError("truncated ratchet record", reason=MlsReason.CORRUPT_STATE)
    for _ in range(count):
        g = int.from_bytes(data[pos : pos + 4], "big")
        if g <= last or g >= generation:
            raise MlsError("malformed ratchet record: skipped generations out of order", reason=MlsReason.CORRUPT_STATE)
        last = g
        skipped[g] = (data[pos + 4 : pos + 4 + NK], data[pos + 4 + NK : pos + entry])
        pos += entry
    if generation > MAX_GENERATION + 1:
        raise MlsError("malformed ratchet record: generation out of range", reason=MlsReason.CORRUPT_STATE)
    return _Ratchet(generation, secret, skipped), pos


class SecretTree:
    """One epoch's secret tree for ``n_leaves`` leaves. See the module docstring.

    Not thread-safe (nothing in the engine is): one writer per group.
    """

    __slots__ = ("_crypto", "n_leaves", "config", "_frontier", "_leaves", "_dirty_nodes", "_dirty_leaves", "_meta_dirty")

    def __init__(
        self,
        crypto: CryptoProvider,
        encryption_secret: bytes,
        n_leaves: int,
        config: RatchetConfig | None = None,
    ) -> None:
        """A fresh tree whose root secret is ``encryption_secret``.

        ``n_leaves`` is the ratchet tree's leaf count (its width in leaves).
        """
        if not isinstance(n_leaves, int) or not 1 <= n_leaves <= 1 << 31:
            raise MlsError("a secret tree needs between 1 and 2^31 leaves", reason=MlsReason.INVALID_ARGUMENT)
        if not isinstance(encryption_secret, bytes) or len(encryption_secret) != NH:
            raise MlsError("encryption_secret must be 32 bytes", reason=MlsReason.INVALID_ARGUMENT)
        self._crypto = crypto
        self.n_leaves = n_leaves
        self.config = config or RatchetConfig()
        root = tm.root(n_leaves)
        self._frontier: dict[int, bytes] = {root: encryption_secret}
        self._leaves: dict[int, tuple[_Ratchet, _Ratchet]] = {}
        # A fresh tree has never been saved: everything is dirty.
        self._dirty_nodes: set[int] = {root}
        self._dirty_leaves: set[int] = set()
        self._meta_dirty = True

    def __repr__(self) -> str:
        return f"SecretTree(n_leaves={self.n_leaves}, used_leaves={len(self._leaves)})"

    # -- deriving keys -----------------------------------------------------

    def _check(self, leaf: int, kind: int) -> None:
        if not isinstance(leaf, int) or not 0 <= leaf < self.n_leaves:
            raise MlsError(
                f"leaf index {leaf} is outside the tree of {self.n_leaves} leaves",
                reason=MlsReason.INVALID_ARGUMENT,
            )
        if kind not in (HANDSHAKE, APPLICATION):
            raise MlsError(f"unknown ratchet kind {kind}", reason=MlsReason.INVALID_ARGUMENT)

    def _seed_leaf(self, leaf: int) -> tuple[tuple[_Ratchet, _Ratchet], int, bytes, tuple[tuple[int, bytes], ...]]:
        """Both fresh ratchets of an unused leaf, computed without changing the tree."""
        x = 2 * leaf
        n = self.n_leaves
        anc = x
        frontier = self._frontier
        while anc not in frontier:
            anc = tm.parent(anc, n)  # an unused leaf always has a frontier ancestor
        expand_many = self._crypto.hkdf_expand_many
        node, secret = anc, frontier[anc]
        added: list[tuple[int, bytes]] = []
        while node != x:
            left, right = tm.left(node), tm.right(node, n)
            ls, rs = expand_many(secret, ((_LEFT_INFO, NH), (_RIGHT_INFO, NH)))
            if x < node:
                added.append((right, rs))
                node, secret = left, ls
            else:
                added.append((left, ls))
                node, secret = right, rs
        hs, app = expand_many(secret, ((_HANDSHAKE_INFO, NH), (_APPLICATION_INFO, NH)))
        return (_Ratchet(0, hs, {}), _Ratchet(0, app, {})), anc, frontier[anc], tuple(added)

    def _ratchet_step(self, secret: bytes, generation: int) -> list[bytes]:
        """``[key, nonce, next secret]`` of ``generation`` from its ratchet secret: one PRK, three expansions."""
        g = generation.to_bytes(4, "big")
        return self._crypto.hkdf_expand_many(
            secret, ((_KEY_INFO + g, NK), (_NONCE_INFO + g, NN), (_SECRET_INFO + g, NH))
        )

    def _step(self, leaf: int, kind: int, generation: int | None) -> RatchetKey:
        ratchets = self._leaves.get(leaf)
        frontier_node, frontier_secret = -1, None
        added: tuple[tuple[int, bytes], ...] = ()
        base: _Ratchet | None
        if ratchets is None:
            self._check(leaf, kind)
            ratchets, frontier_node, frontier_secret, added = self._seed_leaf(leaf)
            base = None
        else:
            if kind != HANDSHAKE and kind != APPLICATION:
                self._check(leaf, kind)
            base = ratchets[kind]
        r = ratchets[kind]
        g_next = r.generation
        if generation is None:  # sending: the next generation, nothing skipped
            generation = g_next
        if not isinstance(generation, int) or not 0 <= generation <= MAX_GENERATION:
            raise MlsError(f"generation {generation} out of range", reason=MlsReason.LIMIT_EXCEEDED)
        tolerance = self.config.out_of_order_tolerance
        if generation < g_next:
            kn = r.skipped.get(generation)
            if kn is None:
                what = f"{_KIND_NAMES[kind]} ratchet of leaf {leaf}"
                if generation < g_next - 1 - tolerance:
                    raise MlsError(
                        f"generation {generation} of the {what} is too old or already used "
                        f"(next expected {g_next}, out-of-order tolerance {tolerance})",
                        reason=MlsReason.TOO_OLD,
                    )
                raise MlsError(f"generation {generation} of the {what} was already used", reason=MlsReason.REPLAY)
            skipped = dict(r.skipped)
            del skipped[generation]
            new = _Ratchet(g_next, r.secret, skipped)
            key, nonce = kn
        else:
            distance = generation - g_next
            if distance > self.config.maximum_forward_distance:
                raise MlsError(
                    f"generation {generation} of the {_KIND_NAMES[kind]} ratchet of leaf {leaf} is too far ahead "
                    f"(next expected {g_next}, maximum forward distance {self.config.maximum_forward_distance})",
                    reason=MlsReason.TOO_FAR_AHEAD,
                )
            if distance == 0 and not r.skipped:  # the common case: the next message, in order
                key, nonce, secret = self._ratchet_step(r.secret, generation)
                new = _Ratchet(generation + 1, secret, {})
            else:
                expand = self._crypto.hkdf_expand
                secret = r.secret
                keep_from = generation - tolerance
                skipped = {g: kn for g, kn in r.skipped.items() if g >= keep_from}
                for j in range(g_next, generation):
                    if j >= keep_from:
                        k, n, secret = self._ratchet_step(secret, j)
                        skipped[j] = (k, n)
                    else:  # too old to keep: only the next secret is needed
                        secret = expand(secret, _SECRET_INFO + j.to_bytes(4, "big"), NH)
                key, nonce, secret = self._ratchet_step(secret, generation)
                new = _Ratchet(generation + 1, secret, skipped)
        pair = (new, ratchets[1]) if kind == HANDSHAKE else (ratchets[0], new)
        return RatchetKey(leaf, kind, generation, key, nonce, base, pair, frontier_node, frontier_secret, added)

    def peek(self, leaf: int, kind: int, generation: int) -> RatchetKey:
        """The key and nonce of a *received* generation; the tree does not change.

        Raises ``MlsError`` when the generation was already used, is older
        than the out-of-order tolerance keeps, or lies beyond the maximum
        forward distance, and for an out-of-range leaf.
        """
        return self._step(leaf, kind, generation)

    def peek_send(self, leaf: int, kind: int) -> RatchetKey:
        """The key and nonce of the next generation to *send* from ``leaf``; the tree does not change."""
        return self._step(leaf, kind, None)

    def commit(self, step: RatchetKey) -> None:
        """Consume ``step``'s generation: delete its key, advance the ratchet.

        Raises ``MlsError`` (and changes nothing) when the tree changed in a
        way the step did not see since it was peeked.
        """
        leaf = step.leaf
        current = self._leaves.get(leaf)
        if step._base is None:
            if current is not None or self._frontier.get(step._frontier_node) is not step._frontier_secret:
                raise MlsError("the secret tree changed since this key was derived", reason=MlsReason.WRONG_STATE)
            frontier = self._frontier
            del frontier[step._frontier_node]
            self._dirty_nodes.add(step._frontier_node)
            for node, secret in step._frontier_add:
                frontier[node] = secret
                self._dirty_nodes.add(node)
        elif current is None or current[step.kind] is not step._base:
            raise MlsError("the secret tree changed since this key was derived", reason=MlsReason.WRONG_STATE)
        self._leaves[leaf] = step._new
        self._dirty_leaves.add(leaf)

    def consume(self, leaf: int, kind: int, generation: int) -> RatchetKey:
        """``peek`` then ``commit``: for callers with nothing left to verify."""
        step = self._step(leaf, kind, generation)
        self.commit(step)
        return step

    def next_generation(self, leaf: int, kind: int) -> int:
        """The next generation ``leaf`` will send or is expected to send on this ratchet."""
        self._check(leaf, kind)
        ratchets = self._leaves.get(leaf)
        return 0 if ratchets is None else ratchets[kind].generation

    # -- records -----------------------------------------------------------

    def _meta_record(self) -> bytes:
        c = self.config
        return (
            self.n_leaves.to_bytes(4, "big")
            + c.out_of_order_tolerance.to_bytes(2, "big")
            + c.maximum_forward_distance.to_bytes(4, "big")
        )

    def _leaf_record(self, leaf: int) -> bytes:
        out = bytearray()
        hs, app = self._leaves[leaf]
        _encode_ratchet(hs, out)
        _encode_ratchet(app, out)
        return bytes(out)

    def records(self) -> dict[str, bytes]:
        """Every record of the tree (name -> bytes)."""
        out = {_META: self._meta_record()}
        for node, secret in self._frontier.items():
            out[f"{_NODE}{node}"] = secret
        for leaf in self._leaves:
            out[f"{_LEAF}{leaf}"] = self._leaf_record(leaf)
        return out

    def changes(self) -> RecordChanges:
        """The records written and deleted since the last :meth:`mark_saved` (or creation)."""
        written: dict[str, bytes] = {}
        deleted: set[str] = set()
        if self._meta_dirty:
            written[_META] = self._meta_record()
        for node in self._dirty_nodes:
            secret = self._frontier.get(node)
            if secret is None:
                deleted.add(f"{_NODE}{node}")
            else:
                written[f"{_NODE}{node}"] = secret
        for leaf in self._dirty_leaves:
            written[f"{_LEAF}{leaf}"] = self._leaf_record(leaf)
        return RecordChanges(written, frozenset(deleted))

    def mark_saved(self) -> None:
        """Forget the pending changes: the caller persisted them."""
        self._dirty_nodes.clear()
        self._dirty_leaves.clear()
        self._meta_dirty = False

    @classmethod
    @stored_state
    def from_records(cls, crypto: CryptoProvider, records: Mapping[str, bytes]) -> SecretTree:
        """The tree those records describe, with no pending changes.

        Raises ``MlsError`` for a malformed or inconsistent record set.
        """
        meta = records.get(_META)
        if meta is None or len(meta) != 10:
            raise MlsError("secret tree records lack a valid meta record", reason=MlsReason.CORRUPT_STATE)
        n_leaves = int.from_bytes(meta[:4], "big")
        config = RatchetConfig(int.from_bytes(meta[4:6], "big"), int.from_bytes(meta[6:10], "big"))
        tree = cls.__new__(cls)
        tree._crypto = crypto
        if not 1 <= n_leaves <= 1 << 31:
            raise MlsError("secret tree records have an invalid leaf count", reason=MlsReason.CORRUPT_STATE)
        tree.n_leaves = n_leaves
        tree.config = config
        tree._frontier = {}
        tree._leaves = {}
        width = tm.node_width(n_leaves)
        for name, value in records.items():
            if name == _META:
                continue
            try:
                if name.startswith(_NODE):
                    node = int(name[len(_NODE) :])
                    if not 0 <= node < width or len(value) != NH:
                        raise MlsError(f"malformed secret tree record {name!r}", reason=MlsReason.CORRUPT_STATE)
                    tree._frontier[node] = bytes(value)
                elif name.startswith(_LEAF):
                    leaf = int(name[len(_LEAF) :])
                    if not 0 <= leaf < n_leaves:
                        raise MlsError(f"malformed secret tree record {name!r}", reason=MlsReason.CORRUPT_STATE)
                    value = bytes(value)
                    hs, pos = _decode_ratchet(value, 0)
                    app, pos = _decode_ratchet(value, pos)
                    if pos != len(value):
                        raise MlsError(f"malformed secret tree record {name!r}", reason=MlsReason.CORRUPT_STATE)
                    tree._leaves[leaf] = (hs, app)
                else:
                    raise MlsError(f"unknown secret tree record {name!r}", reason=MlsReason.CORRUPT_STATE)
            except ValueError:
                raise MlsError(f"malformed secret tree record name {name!r}", reason=MlsReason.CORRUPT_STATE) from None
        tree._check_cover()
        tree._dirty_nodes = set()
        tree._dirty_leaves = set()
        tree._meta_dirty = False
        return tree

    def _check_cover(self) -> None:
        # Every leaf must be either used or under exactly one frontier node:
        # otherwise a key could be derived twice or not at all.
        spans = sorted((*tm.subtree_leaves(node), node) for node in self._frontier)
        used = sorted(self._leaves)
        covered = 0
        prev_end = 0
        i = 0
        for first, end, _node in spans:
            end = min(end, self.n_leaves)
            if first < prev_end or first >= end:
                raise MlsError("inconsistent secret tree records: overlapping frontier", reason=MlsReason.CORRUPT_STATE)
            while i < len(used) and used[i] < first:
                i += 1
            if i < len(used) and used[i] < end:
                raise MlsError(
                    "inconsistent secret tree records: a used leaf under the frontier",
                    reason=MlsReason.CORRUPT_STATE,
                )
            covered += end - first
            prev_end = end
        if covered + len(used) != self.n_leaves:
            raise MlsError("inconsistent secret tree records: leaves not covered", reason=MlsReason.CORRUPT_STATE)
