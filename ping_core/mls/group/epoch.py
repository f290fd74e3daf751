"""The state of one epoch: what a member holds for it, and its record encodings.

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

from typing import Mapping

from ping_core.errors import MlsDecodeError, MlsError, MlsReason, stored_state
from ping_core.mls.tls import Reader, Writer, decode_exact, decode_with, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.framing.epoch_framing import EpochFraming
from ping_core.mls.primitives import zero_secret
from ping_core.mls.schedule.key_schedule import EpochSecrets
from ping_core.mls.tree.secret_tree import RatchetConfig, SecretTree
from ping_core.mls.structs import GroupContext, LeafNode
from ping_core.mls.tree import RatchetTree
from ping_core.mls.tree.treekem import PathKeys

__all__ = [
    "EpochState",
    "PastEpoch",
    "secret_tree_records",
    "secret_tree_names",
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
            raise MlsError("our own leaf is blank", reason=MlsReason.WRONG_STATE)
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
    @stored_state
    def decode(
        cls, crypto: CryptoProvider, core: bytes, tree_bytes: bytes, secret_tree: Mapping[str, bytes]
    ) -> EpochState:
        """An epoch from :meth:`encode_core`, the tree encoding and the secret tree records."""

        def read(r: Reader) -> tuple[bytes, int, bytes, bytes, bytes, bytes]:
            if r.u8() != _EPOCH_VERSION:
                raise MlsDecodeError("unknown epoch state version", reason=MlsReason.CORRUPT_STATE)
            return r.opaque(), r.u32(), r.opaque(), r.opaque(), r.opaque(), r.opaque()

        cb, own_leaf, interim, tag, raw_secrets, raw_keys = decode_with(read, core)
        context = decode_exact(GroupContext, cb)
        secrets = EpochSecrets.decode(raw_secrets)
        keys = PathKeys.decode(raw_keys)
        tree = RatchetTree.decode(tree_bytes)
        st = SecretTree.from_records(crypto, secret_tree)
        if st.n_leaves != tree.n_leaves:
            raise MlsError("the secret tree does not match the ratchet tree", reason=MlsReason.CORRUPT_STATE)
        if own_leaf >= tree.n_leaves or tree.leaf(own_leaf) is None:
            raise MlsError("the stored state's own leaf is blank or outside the tree", reason=MlsReason.CORRUPT_STATE)
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
        keys = state.tree.signature_keys()
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
    @stored_state
    def decode(cls, crypto: CryptoProvider, meta: bytes, secret_tree: Mapping[str, bytes]) -> PastEpoch:
        def read(r: Reader) -> tuple[bytes, bytes, bytes, dict[int, bytes]]:
            if r.u8() != _PAST_VERSION:
                raise MlsDecodeError("unknown past epoch version", reason=MlsReason.CORRUPT_STATE)
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


def secret_tree_names(prefix: str, tree: SecretTree) -> set[str]:
    """Every record name a secret tree has or had since its last save (to delete them all)."""
    names = {prefix + n for n in tree.records()}
    names.update(prefix + n for n in tree.changes().deleted)
    return names
