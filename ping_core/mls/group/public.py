"""A group as a non-member sees it: :class:`PublicGroup` (RFC 9420 §6.2, §12.4).

A delivery service orders a group's handshake messages without being a
member. :class:`PublicGroup` keeps what it can verify that with, none of it
secret: the GroupContext (epoch, tree hash, confirmed transcript hash,
extensions), the public ratchet tree, the interim transcript hash and the
proposals seen this epoch. With it the service refuses a Commit that is not
signed by a current member (or an external joiner) for the current epoch, or
whose content a member would refuse, *before* it advances the conversation's
epoch.

Getting one: :meth:`PublicGroup.from_group_info` (a GroupInfo a member
uploaded: its signature, its ratchet tree and the tree's full validation, as
a joiner checks them) or :meth:`PublicGroup.from_bytes`.

Following the group:

* :meth:`~PublicGroup.process_proposal` verifies a proposal (PublicMessage)
  and keeps it so a later commit may name it by reference;
* :meth:`~PublicGroup.process_commit` verifies a commit and returns a
  :class:`PublicCommit` describing the next epoch — it changes nothing;
  :meth:`~PublicGroup.merge` moves to that epoch once the caller has
  accepted (stored) the commit;
* :meth:`~PublicGroup.check_group_info` checks that a GroupInfo a member
  uploads for the current epoch matches this state (the server keeps it for
  members that rejoin by external commit).

What a commit must satisfy here is what a member checks, by the same
functions (:func:`.commit.check_received_commit`,
:func:`.commit.merge_commit_path`): PublicMessage framing, sender a current
member (or ``new_member_commit``), epoch, the signature over FramedContentTBS
with the current GroupContext (§6.1), proposals by value and by reference,
the proposal-list rules (§12.2), every proposal's validity (§12.1), the
UpdatePath's structure, leaf and parent-hash chain (§7.9, §12.4.2); then the
new tree hash and GroupContext, with the confirmed and interim transcript
hashes from the commit (§8.2).

What a non-member cannot check, by construction:

* the **membership tag** of a member's PublicMessage is a MAC keyed by the
  epoch's membership key (§6.2), which only members have: its presence is
  checked, not its value. The signature, which covers the GroupContext, is
  what authenticates the sender here;
* the **confirmation tag** of a commit is a MAC keyed by the *new* epoch's
  confirmation key (§8.1): it is taken as sent into the interim transcript
  hash; a member that finds it wrong refuses the commit (and the epochs of
  the members and of this PublicGroup would then differ);
* **PrivateMessage** handshake messages are encrypted to the members: they
  are refused. A group a delivery service follows must send its proposals
  and commits as PublicMessages (``GroupConfig(encrypt_handshake=False)``);
* the contents a member decrypts or derives: path secrets, PSK values, the
  ExternalInit's KEM output, the GroupInfo's external_pub.

Every failure is an ``MlsError`` (or what ``leaf_check`` raised) and leaves
the PublicGroup exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ping_core.errors import MlsDecodeError, MlsError, MlsReason, stored_state
from ping_core.mls.tls import Reader, Writer, decode_exact, decode_with, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.framing.public_message import verify_public
from ping_core.mls.primitives import make_key_package_ref
from ping_core.mls.structs import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    GroupContext,
    GroupInfo,
    LeafNode,
    MLSMessage,
    PreSharedKeyID,
    PrivateMessage,
    Proposal,
    PublicMessage,
    ReInit,
    find_extension,
)
from ping_core.mls.structs.content import content_type_of
from ping_core.mls.structs.tree_nodes import RatchetTree as RatchetTreeExt
from ping_core.mls.schedule.transcript import commit_transcript_hashes, interim_transcript_hash
from ping_core.mls.tree import RatchetTree
from ping_core.mls.welcome_seal import verify_group_info

from .commit import check_received_commit, merge_commit_path, next_group_context
from .join import check_group_info, group_info_of, seconds_of, signer_leaf, verified_group_info
from .messages import proposal_ref
from .proposals import PendingProposal, ProposalStore
from .results import Clock, ExtensionsCheck, LeafCheck, ProposalStored
from .validate import sender_signature_key, validate_received_proposal

__all__ = ["PublicGroup", "PublicCommit", "AddedMember", "RemovedMember", "UpdatedMember"]

_MAGIC = b"PMLSPG"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class AddedMember:
    """A member a commit adds: its leaf index in the new epoch, its leaf, and the
    KeyPackageRef of the KeyPackage that added it (the Welcome is addressed to it)."""

    leaf_index: int
    leaf_node: LeafNode
    key_package_ref: bytes


@dataclass(frozen=True, slots=True)
class RemovedMember:
    """A member a commit removes: its leaf index and the leaf it had."""

    leaf_index: int
    leaf_node: LeafNode


@dataclass(frozen=True, slots=True)
class UpdatedMember:
    """A member whose Update proposal a commit applies: its new and previous leaf."""

    leaf_index: int
    leaf_node: LeafNode
    previous: LeafNode


@dataclass(frozen=True, eq=False)
class PublicCommit:
    """A verified commit and the epoch it leads to, not yet applied: give it to
    :meth:`PublicGroup.merge` once the commit is accepted, or drop it.

    ``committer`` is the committer's leaf index in the new epoch (for an
    external commit, ``external``, the joiner's new leaf); ``path_leaf`` its
    new leaf when the commit has a path. ``added``/``removed``/``updated``:
    the Add, Remove and Update proposals applied, in the order §12.3 applies
    them. ``psks``: the PSKs injected (their values are not known here);
    ``reinit``: the ReInit committed (the group ends). ``group_context`` is the
    new epoch's.
    """

    base_context: GroupContext = field(repr=False)
    group_context: GroupContext = field(repr=False)
    committer: int
    external: bool
    added: tuple[AddedMember, ...]
    removed: tuple[RemovedMember, ...]
    updated: tuple[UpdatedMember, ...]
    path_leaf: LeafNode | None = field(repr=False)
    psks: tuple[PreSharedKeyID, ...]
    reinit: ReInit | None
    extensions_changed: bool
    confirmation_tag: bytes = field(repr=False)
    interim_transcript_hash: bytes = field(repr=False)
    tree: RatchetTree = field(repr=False)

    @property
    def group_id(self) -> bytes:
        return self.group_context.group_id

    @property
    def base_epoch(self) -> int:
        """The epoch the commit was sent in."""
        return self.base_context.epoch

    @property
    def epoch(self) -> int:
        """The epoch the commit leads to."""
        return self.group_context.epoch

    @property
    def tree_hash(self) -> bytes:
        """The new epoch's tree hash."""
        return self.group_context.tree_hash


class PublicGroup:
    """What a non-member keeps to verify a group's handshake messages (see the
    module docstring). Not thread-safe: one writer per group.

    ``leaf_check``, ``clock`` and ``max_lifetime_s`` are policy, as for
    :class:`.Group` (not stored by :meth:`to_bytes`; give them again on load):
    ``leaf_check(new_leaf, previous_leaf)`` is asked about every leaf that
    enters the group (Adds, Updates, commit path leaves, the tree given to
    :meth:`from_group_info`); ``clock`` dates KeyPackage lifetimes;
    ``max_lifetime_s`` bounds them (§7.2).
    """

    def __init__(
        self,
        crypto: CryptoProvider,
        context: GroupContext,
        tree: RatchetTree,
        confirmation_tag: bytes,
        *,
        proposals: ProposalStore | None = None,
        reinit: ReInit | None = None,
        clock: Clock,
        max_lifetime_s: int | None = None,
        leaf_check: LeafCheck | None = None,
        extensions_check: ExtensionsCheck | None = None,
    ) -> None:
        """Internal: use :meth:`from_group_info` or :meth:`from_bytes`."""
        self.crypto = crypto
        self.clock: Clock = clock
        self.max_lifetime_s = max_lifetime_s
        self.leaf_check: LeafCheck | None = leaf_check
        self.extensions_check: ExtensionsCheck | None = extensions_check
        self._context = context
        self._context_bytes = encode(context)
        self._tree = tree
        self._tag = confirmation_tag
        # §8.2: interim_transcript_hash = Hash(confirmed_transcript_hash || InterimTranscriptHashInput).
        self._interim = interim_transcript_hash(crypto, context.confirmed_transcript_hash, confirmation_tag)
        self._proposals = proposals if proposals is not None else ProposalStore()
        self._reinit = reinit

    def __repr__(self) -> str:
        return f"PublicGroup(group_id={self.group_id.hex()}, epoch={self.epoch}, members={len(self.members())})"

    # -- construction ------------------------------------------------------

    @classmethod
    def from_group_info(
        cls,
        crypto: CryptoProvider,
        group_info: bytes | GroupInfo,
        ratchet_tree: bytes | None = None,
        *,
        clock: Clock,
        check_lifetimes: bool = True,
        max_lifetime_s: int | None = None,
        leaf_check: LeafCheck | None = None,
        extensions_check: ExtensionsCheck | None = None,
    ) -> PublicGroup:
        """The public state of the epoch a GroupInfo (MLSMessage, bare encoding or
        struct) describes, verified as an external joiner verifies it
        (§12.4.3.2): version and cipher suite, the ratchet tree (its
        ratchet_tree extension, else ``ratchet_tree``), the signature with the
        signer's leaf key, the tree's full validation — its hash equals the
        GroupContext's, parent hashes, every leaf (lifetimes at ``clock`` unless
        ``check_lifetimes`` is false; ``max_lifetime_s``) — then
        ``leaf_check(leaf, None)`` for every leaf. ``MlsError`` otherwise."""
        info = group_info_of(group_info)
        now_s = seconds_of(clock) if check_lifetimes else None
        tree = verified_group_info(crypto, info, ratchet_tree, now_s, max_lifetime_s, leaf_check)
        return cls(
            crypto, info.group_context, tree, info.confirmation_tag, clock=clock, max_lifetime_s=max_lifetime_s,
            leaf_check=leaf_check, extensions_check=extensions_check,
        )  # fmt: skip

    # -- what the group is -------------------------------------------------

    @property
    def group_context(self) -> GroupContext:
        return self._context

    @property
    def group_id(self) -> bytes:
        return self._context.group_id

    @property
    def epoch(self) -> int:
        return self._context.epoch

    @property
    def tree_hash(self) -> bytes:
        return self._context.tree_hash

    @property
    def confirmed_transcript_hash(self) -> bytes:
        return self._context.confirmed_transcript_hash

    @property
    def interim_transcript_hash(self) -> bytes:
        return self._interim

    @property
    def confirmation_tag(self) -> bytes:
        """The confirmation tag of the commit that started this epoch (as sent: see the module docstring)."""
        return self._tag

    @property
    def pending_reinit(self) -> ReInit | None:
        """The ReInit a merged commit carried: the group takes no more handshake messages."""
        return self._reinit

    @property
    def pending_proposals(self) -> list[PendingProposal]:
        """The proposals verified this epoch, in arrival order."""
        return list(self._proposals)

    def members(self) -> dict[int, LeafNode]:
        """The roster: leaf index -> LeafNode, ascending."""
        return dict(self._tree.members())

    def member(self, leaf_index: int) -> LeafNode | None:
        """The leaf at ``leaf_index``; ``None`` when blank or outside the tree."""
        tree = self._tree
        return tree.leaf(leaf_index) if 0 <= leaf_index < tree.n_leaves else None

    def ratchet_tree(self) -> bytes:
        """The public ratchet tree, encoded as the ratchet_tree extension payload."""
        return self._tree.encode()

    # -- handshake messages ------------------------------------------------

    def process_proposal(self, data: bytes) -> ProposalStored:
        """Verify a proposal (a PublicMessage, MLSMessage bytes) of the current
        epoch and keep it, so a later commit may name it by reference.

        Checked: the framing and sender rules, the group and epoch, the
        signature with the sender's key (a member's leaf, an external sender of
        the external_senders extension, or a new member's own KeyPackage) over
        the current GroupContext; not the membership tag (see the module
        docstring); the proposal's validity (§12.1, ``leaf_check`` for Add and
        Update leaves). Returns the ProposalRef, proposal and sender; a
        proposal already kept is returned again and kept once. On failure
        ``MlsError`` and nothing is kept.
        """
        auth = self._verify(data, ContentType.PROPOSAL)
        content = auth.content
        proposal = content.content
        assert isinstance(proposal, Proposal)
        sender = content.sender
        validate_received_proposal(self.crypto, self, self._tree, self._context, proposal, sender)
        ref = proposal_ref(self.crypto, auth)
        self._proposals.add(PendingProposal(ref, proposal, sender))
        return ProposalStored(ref, proposal, sender)

    def process_commit(self, data: bytes) -> PublicCommit:
        """Verify a commit (a PublicMessage, MLSMessage bytes) of the current
        epoch and compute the epoch it leads to. Changes nothing: pass the
        result to :meth:`merge` once the commit is accepted.

        Checked (see the module docstring): PublicMessage framing (a
        PrivateMessage is refused); the sender is a current member or an
        external joiner; group and epoch; the signature over FramedContentTBS
        with the current GroupContext (§6.1); proposals by reference resolve to
        proposals :meth:`process_proposal` kept this epoch; the list and every
        proposal as a member checks them (§12.2, §12.1); the UpdatePath (node
        count, ciphertext counts, fresh keys, its leaf, the parent-hash chain).
        Then the new tree hash, confirmed transcript hash (§8.2) and
        GroupContext. ``MlsError`` (or what ``leaf_check`` raised) otherwise.
        """
        crypto = self.crypto
        auth = self._verify(data, ContentType.COMMIT)
        received = check_received_commit(crypto, self._tree, self._context, auth, self._proposals.get, own_leaf=None, policy=self)
        merge_commit_path(crypto, self._context, received, leaf_check=self.leaf_check)
        applied = received.applied
        tree = applied.tree
        # §8.2: the confirmed transcript hash covers the commit; the interim one its confirmation tag.
        confirmed, interim = commit_transcript_hashes(crypto, self._interim, auth)
        context = next_group_context(self._context, tree.tree_hash(crypto), confirmed, applied.extensions)
        old = self._tree
        path = received.commit.path
        tag = auth.auth.confirmation_tag
        assert tag is not None  # commit_transcript_hashes refuses a commit without one
        return PublicCommit(
            base_context=self._context,
            group_context=context,
            committer=received.committer,
            external=received.external,
            added=tuple(
                AddedMember(i, add.key_package.leaf_node, make_key_package_ref(crypto, encode(add.key_package)))
                for i, add in applied.added
            ),
            removed=tuple(RemovedMember(i, _leaf(old, i)) for i in applied.removed),
            updated=tuple(UpdatedMember(i, _leaf(tree, i), _leaf(old, i)) for i in applied.updated),
            path_leaf=None if path is None else path.leaf_node,
            psks=tuple(applied.psks),
            reinit=applied.reinit,
            extensions_changed=applied.extensions_changed,
            confirmation_tag=tag,
            interim_transcript_hash=interim,
            tree=tree,
        )

    def merge(self, commit: PublicCommit) -> None:
        """Move to the epoch ``commit`` (from :meth:`process_commit` on this state)
        leads to; the proposals of the old epoch are dropped. ``MlsError`` and no
        change when ``commit`` was not computed from the current state."""
        if commit.base_context != self._context:
            raise MlsError(
                f"the commit is for epoch {commit.base_epoch} of this group's state, which is at {self.epoch}",
                reason=MlsReason.WRONG_EPOCH,
            )
        self._context = commit.group_context
        self._context_bytes = encode(commit.group_context)
        self._tree = commit.tree
        self._tag = commit.confirmation_tag
        self._interim = commit.interim_transcript_hash
        self._proposals = ProposalStore()
        self._reinit = commit.reinit

    def check_group_info(self, data: bytes | GroupInfo) -> GroupInfo:
        """A GroupInfo (MLSMessage, bare encoding or struct) a member publishes for
        the current epoch matches this state: the same GroupContext (group,
        epoch, tree hash, confirmed transcript hash, extensions), the same
        confirmation tag, a ratchet_tree extension (if any) equal to our tree,
        and a signature by the current member at ``signer``. Returns it;
        ``MlsError`` otherwise. The external_pub extension cannot be checked
        here (it derives from the epoch's secrets)."""
        info = group_info_of(data)
        check_group_info(info)
        gc, ours = info.group_context, self._context
        if gc.group_id != ours.group_id:
            raise MlsError("the GroupInfo is for another group", reason=MlsReason.WRONG_GROUP)
        if gc.epoch != ours.epoch:
            raise MlsError(
                f"the GroupInfo is for epoch {gc.epoch}, the group is at epoch {ours.epoch}",
                reason=MlsReason.WRONG_EPOCH,
            )
        if gc != ours:
            raise MlsError(
                "the GroupInfo's GroupContext differs from the group's (tree hash, transcript or extensions)",
                reason=MlsReason.BAD_WELCOME,
            )
        if info.confirmation_tag != self._tag:
            raise MlsError(
                "the GroupInfo's confirmation tag differs from the commit's that started the epoch",
                reason=MlsReason.BAD_WELCOME,
            )
        ext = find_extension(info.extensions, RatchetTreeExt.EXTENSION_TYPE)
        if ext is not None and ext.extension_data != self._tree.encode():
            raise MlsError("the GroupInfo's ratchet tree differs from the group's", reason=MlsReason.BAD_WELCOME)
        verify_group_info(self.crypto, info, signer_leaf(self._tree, info).signature_key)
        return info

    # -- persistence -------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The state, versioned and deterministic: GroupContext, tree,
        confirmation tag, the proposals kept this epoch, the ReInit if any.
        Policy (``clock``, ``max_lifetime_s``, ``leaf_check``) is not stored."""
        w = Writer()
        w.raw(_MAGIC)
        w.u8(_VERSION)
        w.opaque(self._context_bytes)
        w.opaque(self._tree.encode())
        w.opaque(self._tag)
        w.opaque(self._proposals.encode())
        w.optional(self._reinit)
        return w.getvalue()

    @classmethod
    @stored_state
    def from_bytes(
        cls,
        crypto: CryptoProvider,
        data: bytes,
        *,
        clock: Clock,
        max_lifetime_s: int | None = None,
        leaf_check: LeafCheck | None = None,
        extensions_check: ExtensionsCheck | None = None,
    ) -> PublicGroup:
        """Inverse of :meth:`to_bytes`, strict: anything else (wrong magic or
        version, truncated, trailing bytes, a tree whose hash is not the
        GroupContext's) is ``MlsError`` (``MlsDecodeError``). The tree is trusted
        as stored (not re-validated). Policy as for :meth:`from_group_info`."""
        if not isinstance(data, bytes) or not data.startswith(_MAGIC):
            raise MlsDecodeError("not a Ping public group state (bad magic)", reason=MlsReason.CORRUPT_STATE)

        def read(r: Reader) -> tuple[bytes, bytes, bytes, bytes, ReInit | None]:
            r.fixed(len(_MAGIC))
            if r.u8() != _VERSION:
                raise MlsDecodeError("unknown public group state version", reason=MlsReason.CORRUPT_STATE)
            return r.opaque(), r.opaque(), r.opaque(255), r.opaque(), r.optional(ReInit.read)

        context_bytes, tree_bytes, tag, proposals, reinit = decode_with(read, data)
        context = decode_exact(GroupContext, context_bytes)
        tree = RatchetTree.decode(tree_bytes)
        if tree.tree_hash(crypto) != context.tree_hash:
            raise MlsDecodeError(
                "the stored ratchet tree does not match the stored GroupContext",
                reason=MlsReason.CORRUPT_STATE,
            )
        return cls(
            crypto, context, tree, tag, proposals=ProposalStore.decode(proposals), reinit=reinit, clock=clock,
            max_lifetime_s=max_lifetime_s, leaf_check=leaf_check, extensions_check=extensions_check,
        )  # fmt: skip

    # -- internals ---------------------------------------------------------

    def now(self) -> int:
        """The policy's current time (``clock``), in whole seconds."""
        return int(self.clock())

    def _verify(self, data: bytes, content_type: ContentType) -> AuthenticatedContent:
        """Decode ``data`` as a PublicMessage of ``content_type`` and verify it for
        the current epoch (§6.2 without the membership tag, §6.1 signature)."""
        if not isinstance(data, bytes):
            raise MlsError("a message must be bytes", reason=MlsReason.INVALID_ARGUMENT)
        body = decode_exact(MLSMessage, data).body
        if isinstance(body, PrivateMessage):
            raise MlsError(
                "a PrivateMessage handshake message cannot be verified outside the group: "
                "the group must send its proposals and commits as PublicMessages",
                reason=MlsReason.UNSUPPORTED,
            )
        if not isinstance(body, PublicMessage):
            raise MlsError(f"a {type(body).__name__} is not a handshake message", reason=MlsReason.MALFORMED)
        got = content_type_of(body.content.content)
        if got != content_type:
            raise MlsError(
                f"expected a {content_type.name.lower()}, got a {got.name.lower()}",
                reason=MlsReason.MALFORMED,
            )
        if self._reinit is not None:
            raise MlsError(
                "the group was reinitialised: it takes no more handshake messages",
                reason=MlsReason.WRONG_STATE,
            )
        tree, context = self._tree, self._context

        def signer_key(content: FramedContent) -> bytes:
            return sender_signature_key(tree, context, content)

        return verify_public(
            self.crypto, context.group_id, context.epoch, self._context_bytes, body, signer_key, membership_key=None
        )


def _leaf(tree: RatchetTree, index: int) -> LeafNode:
    leaf = tree.leaf(index)
    if leaf is None:  # pragma: no cover - the proposals named a non-blank leaf
        raise MlsError(f"leaf {index} is blank", reason=MlsReason.BAD_PROPOSAL)
    return leaf

