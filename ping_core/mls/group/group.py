"""The :class:`Group`: one member's view of one MLS group, and every operation on it.

See the package docstring (``ping_core.mls.group``) for the API tour. The
operations live in the sibling modules (create, join, resumption, proposals,
commit, process, application, state); this class holds the state and offers them as
methods. Nothing here does I/O; the clock is the caller's (``clock=``), read only to check lifetimes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterable, Mapping, Sequence

from ping_core.errors import MlsError
from ping_core.mls.codec import decode_exact, encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.schedule import mls_exporter
from ping_core.mls.tree.secret_tree import RecordChanges
from ping_core.mls.structs import (
    Add,
    Capabilities,
    Extension,
    GroupContext,
    GroupContextExtensions,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    MLSMessage,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    PSKType,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Sender,
    Update,
)

from .commit import StagedCommit, create_commit, group_info_for
from .history import HistoryView, view_of_epochs
from .config import GroupConfig
from .keypackage import KeyPackageBundle, Signer
from .messages import GROUP_INFO_PREFIX, frame_signed, proposal_ref, sign_content
from .proposals import PendingProposal, ProposalStore
from .psks import PskSource
from .results import Clock, CommitApplied, ExtensionsCheck, LeafCheck, Member, ProcessResult, ProposalMessage, SenderCheck
from .state import EpochState, PastEpoch
from .validate import check_group_context_extensions, check_proposal_sender, validate_received_proposal

__all__ = ["Group"]


class Group:
    """One member's state of one MLS group (cipher suite 1). Not thread-safe:
    one writer per group (the SDK serialises access).

    Build one with :meth:`create`, :meth:`join` or :meth:`join_external`, or
    restore one with :meth:`from_bytes` / :meth:`from_records`.
    """

    def __init__(
        self,
        crypto: CryptoProvider,
        signer: Signer,
        state: EpochState,
        config: GroupConfig,
        *,
        clock: Clock,
        max_lifetime_s: int | None = None,
        leaf_check: LeafCheck | None = None,
        extensions_check: ExtensionsCheck | None = None,
    ) -> None:
        """Internal: use the class methods."""
        self.crypto = crypto
        self.signer = signer
        self.config = config
        #: The application's clock (:data:`.results.Clock`): policy, not state; settable.
        self.clock: Clock = clock
        self.max_lifetime_s = max_lifetime_s
        #: The application's leaf policy (:data:`.results.LeafCheck`), or ``None``.
        #: Policy, not state: not stored by :meth:`to_bytes`; settable; a branch or
        #: reinitialised successor inherits it.
        self.leaf_check: LeafCheck | None = leaf_check
        #: The application's check of GroupContext extensions (:data:`.results.ExtensionsCheck`),
        #: or ``None``. Policy like ``leaf_check``: not stored, settable, inherited.
        self.extensions_check: ExtensionsCheck | None = extensions_check
        self._state = state
        self._proposals = ProposalStore()
        self._past_epochs: OrderedDict[int, PastEpoch] = OrderedDict()
        self._resumption: OrderedDict[int, bytes] = OrderedDict()
        self._pending_commit: StagedCommit | None = None
        self._last_own_commit: tuple[bytes, int] | None = None
        self._own_proposal_messages: dict[bytes, bytes] = {}
        self._active = True
        self._reinit: ReInit | None = None
        # Record bookkeeping (see state.py): names rewritten / deleted since the last save.
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._all_dirty = True
        self._fresh_trees: set[int] = set()  # epochs whose secret tree must be written whole

    def __repr__(self) -> str:
        return (
            f"Group(group_id={self.group_id.hex()}, epoch={self.epoch}, own_leaf={self.own_leaf_index}, "
            f"members={self.member_count}, active={self._active})"
        )

    # -- construction ------------------------------------------------------

    @classmethod
    def create(
        cls,
        crypto: CryptoProvider,
        signer: Signer,
        *,
        group_id: bytes | None = None,
        config: GroupConfig | None = None,
        extensions: Sequence[Extension] = (),
        capabilities: Capabilities | None = None,
        clock: Clock,
        max_lifetime_s: int | None = None,
        leaf_check: LeafCheck | None = None,
        extensions_check: ExtensionsCheck | None = None,
    ) -> Group:
        """A new one-member group at epoch 0 (RFC 9420 §11). See :func:`.create.create_group`."""
        from .create import create_group

        return create_group(
            crypto,
            signer,
            group_id=group_id,
            config=config,
            extensions=extensions,
            capabilities=capabilities,
            clock=clock,
            max_lifetime_s=max_lifetime_s,
            leaf_check=leaf_check, extensions_check=extensions_check,
        )

    @classmethod
    def join(
        cls,
        crypto: CryptoProvider,
        welcome: bytes,
        key_packages: KeyPackageBundle | Iterable[KeyPackageBundle] | Mapping[bytes, KeyPackageBundle],
        signer: Signer,
        *,
        ratchet_tree: bytes | None = None,
        config: GroupConfig | None = None,
        psks: PskSource = None,
        reinit_from: Group | None = None,
        branch_from: Group | None = None,
        clock: Clock,
        check_lifetimes: bool = True,
        max_lifetime_s: int | None = None,
        leaf_check: LeafCheck | None = None,
        extensions_check: ExtensionsCheck | None = None,
    ) -> Group:
        """Join from a Welcome (MLSMessage bytes). See :func:`.join.join_welcome`."""
        from .join import join_welcome

        return join_welcome(
            crypto,
            welcome,
            key_packages,
            signer,
            ratchet_tree=ratchet_tree,
            config=config,
            psks=psks,
            reinit_from=reinit_from,
            branch_from=branch_from,
            clock=clock,
            check_lifetimes=check_lifetimes,
            max_lifetime_s=max_lifetime_s,
            leaf_check=leaf_check, extensions_check=extensions_check,
        )

    @classmethod
    def join_external(
        cls,
        crypto: CryptoProvider,
        group_info: bytes,
        signer: Signer,
        *,
        ratchet_tree: bytes | None = None,
        config: GroupConfig | None = None,
        resync: bool = False,
        psk_ids: Sequence[PreSharedKeyID] = (),
        psks: PskSource = None,
        authenticated_data: bytes = b"",
        capabilities: Capabilities | None = None,
        clock: Clock,
        check_lifetimes: bool = True,
        max_lifetime_s: int | None = None,
        leaf_check: LeafCheck | None = None,
        extensions_check: ExtensionsCheck | None = None,
    ) -> tuple[Group, bytes]:
        """Join by external commit. See :func:`.join.join_external`."""
        from .join import join_external

        return join_external(
            crypto,
            group_info,
            signer,
            ratchet_tree=ratchet_tree,
            config=config,
            resync=resync,
            psk_ids=psk_ids,
            psks=psks,
            authenticated_data=authenticated_data,
            capabilities=capabilities,
            clock=clock,
            check_lifetimes=check_lifetimes,
            max_lifetime_s=max_lifetime_s,
            leaf_check=leaf_check, extensions_check=extensions_check,
        )

    # -- what the group is -------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._state.context.epoch

    @property
    def group_id(self) -> bytes:
        return self._state.context.group_id

    @property
    def group_context(self) -> GroupContext:
        return self._state.context

    @property
    def extensions(self) -> tuple[Extension, ...]:
        """The GroupContext extensions."""
        return self._state.context.extensions

    @property
    def own_leaf_index(self) -> int:
        return self._state.own_leaf

    @property
    def epoch_authenticator(self) -> bytes:
        return self._state.secrets.epoch_authenticator

    @property
    def tree_hash(self) -> bytes:
        return self._state.context.tree_hash

    @property
    def active(self) -> bool:
        """False once a commit removed us (or the group was reinitialised)."""
        return self._active and self._reinit is None

    @property
    def removed(self) -> bool:
        """True once a commit removed us from the group."""
        return not self._active

    @property
    def pending_reinit(self) -> ReInit | None:
        """The ReInit a merged commit carried: the group may not send any more."""
        return self._reinit

    @property
    def member_count(self) -> int:
        return sum(1 for _ in self._state.tree.members())

    def members(self) -> list[Member]:
        """The roster, by ascending leaf index."""
        return [
            Member(i, leaf.credential, leaf.signature_key, leaf.encryption_key) for i, leaf in self._state.tree.members()
        ]

    def member(self, leaf_index: int) -> Member | None:
        tree = self._state.tree
        leaf = tree.leaf(leaf_index) if 0 <= leaf_index < tree.n_leaves else None
        return None if leaf is None else Member(leaf_index, leaf.credential, leaf.signature_key, leaf.encryption_key)

    def leaf_of(self, *, identity: bytes | None = None, signature_key: bytes | None = None) -> list[int]:
        """Leaf indices of the members with this credential identity or signature key."""
        out = []
        for i, leaf in self._state.tree.members():
            if (identity is not None and leaf.credential.identity == identity) or (
                signature_key is not None and leaf.signature_key == signature_key
            ):
                out.append(i)
        return out

    @property
    def pending_proposals(self) -> list[PendingProposal]:
        """Proposals stored in this epoch, in arrival order."""
        return list(self._proposals)

    @property
    def pending_commit(self) -> StagedCommit | None:
        """Our own staged commit, awaiting :meth:`merge_staged_commit`."""
        return self._pending_commit

    def signature_key(self, leaf_index: int, epoch: int | None = None) -> bytes | None:
        """The signature key of the member at ``leaf_index`` in ``epoch`` (default:
        the current one; a retained past epoch keeps its roster's keys, so a late
        message's sender can be told even after it left). ``None`` for a blank
        leaf or an epoch whose state is gone."""
        if epoch is None or epoch == self.epoch:
            member = self.member(leaf_index)
            return None if member is None else member.signature_key
        past = self._past_epochs.get(epoch)
        return None if past is None else past.signature_keys.get(leaf_index)

    @property
    def retained_epochs(self) -> tuple[int, ...]:
        """The epochs whose application messages still decrypt: the retained past ones and the current one."""
        return (*self._past_epochs, self.epoch)

    def export_history_view(self) -> HistoryView:
        """SECRET: a :class:`HistoryView` of the current and retained past epochs: an
        independent copy that decrypts those epochs' application messages (from
        where our ratchets are now) and nothing else — no signing key, no path
        keys, no secret that derives another epoch. For a device of the same
        account that must read this conversation's recent messages."""
        return view_of_epochs(self.crypto, self._state, self._past_epochs)

    def export_secret(self, label: bytes | str, context: bytes, length: int) -> bytes:
        """``MLS-Exporter(label, context, length)`` of the current epoch (§8.5)."""
        raw = label.encode("utf-8") if isinstance(label, str) else label
        return mls_exporter(self.crypto, self._state.secrets.exporter_secret, raw, context, length)

    def ratchet_tree(self) -> bytes:
        """The public ratchet tree, encoded as the ratchet_tree extension payload."""
        return self._state.tree.encode()

    def group_info(self, *, ratchet_tree: bool = True, external_pub: bool = True) -> bytes:
        """A signed GroupInfo of the current epoch as an MLSMessage (for external
        joins: with the external_pub extension and, by default, the tree)."""
        self._require_active()
        return GROUP_INFO_PREFIX + encode(group_info_for(self.crypto, self, ratchet_tree=ratchet_tree, external_pub=external_pub))

    def group_info_after(self, staged: StagedCommit, *, ratchet_tree: bool = True, external_pub: bool = True) -> bytes:
        """A signed GroupInfo (MLSMessage) of the epoch our staged commit starts, before it is
        merged: the delivery service checks it against the commit and keeps it for members
        that rejoin by external commit (§12.4.3.2)."""
        if not staged.own or staged.next_state is None or staged.base_epoch != self.epoch:
            raise MlsError("a GroupInfo after a commit needs our own commit staged in this epoch")
        info = group_info_for(self.crypto, self, ratchet_tree=ratchet_tree, external_pub=external_pub, state=staged.next_state)
        return GROUP_INFO_PREFIX + encode(info)

    def now(self) -> int:
        return int(self.clock())

    @property
    def max_lifetime_s(self) -> int | None:
        """The application's maximum total lifetime of a key_package leaf, in
        seconds (RFC 9420 §7.2: "Applications MUST define a maximum total
        lifetime that is acceptable for a LeafNode"), or ``None`` for none.

        Applied to every Add this group validates: our own (:meth:`commit`,
        :meth:`propose_add`), Add proposals received (by reference) and Adds in
        received commits (by value); the joins check the received tree with
        it. A refusal is an ``MlsError`` and changes nothing. The engine
        default is ``None`` (peers such as ts-mls and the test vectors use
        very long lifetimes); the application sets its limit. Like ``clock``
        it is policy, not state: :meth:`to_bytes` does not store it, so give
        it again to :meth:`from_bytes` / :meth:`from_records` (or set it)."""
        return self._max_lifetime_s

    @max_lifetime_s.setter
    def max_lifetime_s(self, value: int | None) -> None:
        if value is not None and (type(value) is not int or value < 0):
            raise MlsError("max_lifetime_s is a non-negative int of seconds, or None")
        self._max_lifetime_s = value

    def _require_active(self) -> None:
        if not self._active:
            raise MlsError("we are no longer a member of this group")
        if self._reinit is not None:
            raise MlsError("the group was reinitialised: it may not be used to send any more")

    def resumption_psk(self, epoch: int | None = None) -> bytes:
        """This group's resumption_psk of ``epoch`` (default: the current one), if
        still retained (``GroupConfig.resumption_psk_epochs``); ``MlsError`` otherwise."""
        e = self.epoch if epoch is None else epoch
        value = self._resumption_psks().get(e)
        if value is None:
            raise MlsError(f"the resumption PSK of epoch {e} is not retained")
        return value

    def psk_source(self) -> Callable[[PreSharedKeyID], bytes | None]:
        """A PskSource resolving this group's retained resumption PSKs (for another
        group: a reinitialised one, or a branch), as they are now."""
        gid = self.group_id
        psks = self._resumption_psks()

        def source(psk: PreSharedKeyID) -> bytes | None:
            if psk.psktype == PSKType.RESUMPTION and psk.psk_group_id == gid:
                return psks.get(psk.psk_epoch)
            return None

        return source

    def _resumption_psks(self) -> dict[int, bytes]:
        out = dict(self._resumption)
        out[self.epoch] = self._state.secrets.resumption_psk
        return out

    def _touch(self, *names: str) -> None:
        for name in names:
            self._dirty.add(name)
            self._deleted.discard(name)

    # -- proposals ---------------------------------------------------------

    def _validate_proposal(self, proposal: Proposal, sender: Sender) -> None:
        """One proposal against the current epoch with this group's policy
        (clock, ``max_lifetime_s``, ``leaf_check``); see :func:`.validate.validate_proposal`."""
        state = self._state
        validate_received_proposal(self.crypto, self, state.tree, state.context, proposal, sender)

    def _propose(
        self, proposal: Proposal, *, encrypt: bool | None, authenticated_data: bytes, leaf_secret: bytes | None = None
    ) -> ProposalMessage:
        self._require_active()
        state = self._state
        sender = state.framing.member(state.own_leaf)
        check_proposal_sender(proposal, sender)
        if not isinstance(proposal, Update):
            self._validate_proposal(proposal, sender)
        enc = self.config.encrypt_handshake if encrypt is None else encrypt
        auth = sign_content(
            self.crypto, state.framing, state.own_leaf, proposal, self.signer.private_key, encrypt=enc,
            authenticated_data=authenticated_data,
        )
        ref = proposal_ref(self.crypto, auth)
        if ref in self._proposals:
            raise MlsError("this proposal is already pending")
        message = frame_signed(self.crypto, state.framing, auth, padding_block=self.config.padding_block)
        self._proposals.add(PendingProposal(ref, proposal, sender, leaf_secret))
        self._own_proposal_messages[self.crypto.hash(message)] = ref
        self._touch("proposals")
        return ProposalMessage(message, ref)

    def propose_add(
        self, key_package: KeyPackage | KeyPackageBundle | bytes, *, encrypt: bool | None = None, authenticated_data: bytes = b""
    ) -> ProposalMessage:
        """Propose adding the member of ``key_package`` (struct, encoding or MLSMessage)."""
        return self._propose(Add(_key_package(key_package)), encrypt=encrypt, authenticated_data=authenticated_data)

    def propose_remove(self, leaf_index: int, *, encrypt: bool | None = None, authenticated_data: bytes = b"") -> ProposalMessage:
        """Propose removing the member at ``leaf_index``."""
        return self._propose(Remove(leaf_index), encrypt=encrypt, authenticated_data=authenticated_data)

    def propose_update(self, *, encrypt: bool | None = None, authenticated_data: bytes = b"") -> ProposalMessage:
        """Propose a fresh encryption key for our leaf (an Update proposal, §12.1.2).

        A commit by another member applies it; we keep the new private key until then.
        """
        from ping_core.mls.primitives import sign_with_label

        state = self._state
        old = state.own_leaf_node()
        priv, pub = self.crypto.dh_keygen()
        leaf = LeafNode(pub, self.signer.public_key, self.signer.credential, old.capabilities, LeafNodeSource.UPDATE, None, None, old.extensions)
        sig = sign_with_label(self.crypto, self.signer.private_key, b"LeafNodeTBS", leaf.tbs(self.group_id, state.own_leaf))
        leaf = LeafNode(pub, leaf.signature_key, leaf.credential, leaf.capabilities, leaf.leaf_node_source, None, None, leaf.extensions, sig)
        return self._propose(Update(leaf), encrypt=encrypt, authenticated_data=authenticated_data, leaf_secret=priv)

    def propose_external_psk(self, psk_id: bytes, *, encrypt: bool | None = None, authenticated_data: bytes = b"") -> ProposalMessage:
        """Propose injecting the external PSK ``psk_id`` (every member must know it)."""
        psk = PreSharedKeyID.external(psk_id, self.crypto.random(32))
        return self._propose(PreSharedKey(psk), encrypt=encrypt, authenticated_data=authenticated_data)

    def propose_resumption_psk(self, epoch: int | None = None, *, encrypt: bool | None = None, authenticated_data: bytes = b"") -> ProposalMessage:
        """Propose injecting this group's resumption PSK of ``epoch`` (default: the current one)."""
        e = self.epoch if epoch is None else epoch
        psk = PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, self.group_id, e, self.crypto.random(32))
        return self._propose(PreSharedKey(psk), encrypt=encrypt, authenticated_data=authenticated_data)

    def propose_reinit(
        self,
        *,
        group_id: bytes | None = None,
        extensions: Sequence[Extension] | None = None,
        encrypt: bool | None = None,
        authenticated_data: bytes = b"",
    ) -> ProposalMessage:
        """Propose reinitialising the group (same suite; new group id and extensions)."""
        proposal = ReInit(
            group_id=self.crypto.random(32) if group_id is None else group_id,
            cipher_suite=self._state.context.cipher_suite,
            extensions=tuple(self.extensions if extensions is None else extensions),
        )
        return self._propose(proposal, encrypt=encrypt, authenticated_data=authenticated_data)

    def propose_group_context_extensions(
        self, extensions: Sequence[Extension], *, encrypt: bool | None = None, authenticated_data: bytes = b""
    ) -> ProposalMessage:
        """Propose replacing the GroupContext extensions wholesale."""
        check_group_context_extensions(tuple(extensions), self.extensions_check)
        return self._propose(GroupContextExtensions(tuple(extensions)), encrypt=encrypt, authenticated_data=authenticated_data)

    # -- commits -----------------------------------------------------------

    def commit(
        self,
        *,
        add: Sequence[KeyPackage | KeyPackageBundle | bytes] = (),
        remove: Sequence[int] = (),
        external_psks: Sequence[bytes] = (),
        extensions: Sequence[Extension] | None = None,
        proposals: Sequence[Proposal] = (),
        include_pending: bool = True,
        force_path: bool = False,
        encrypt: bool | None = None,
        ratchet_tree_extension: bool | None = None,
        authenticated_data: bytes = b"",
        psks: PskSource = None,
    ) -> StagedCommit:
        """Stage a commit of the pending proposals (unless ``include_pending`` is
        false) plus, by value: Adds for ``add`` (KeyPackages), Removes for the
        leaf indices in ``remove``, external PSKs, a GroupContextExtensions
        (``extensions``: the new list, whole),
        and any further ``proposals``. With nothing to commit it is an empty
        commit: a self-update. The path is included whenever the RFC requires
        it, or if ``force_path``.

        Returns the :class:`StagedCommit` (send ``.message``, then
        :meth:`merge_staged_commit`; deliver ``.welcome`` to the new members
        once merged). The group keeps it as :attr:`pending_commit` (and
        persists it) but is otherwise unchanged until the merge.
        """
        self._require_active()
        by_value, raw_kps = _adds(add)
        by_value += [Remove(i) for i in remove]
        by_value += [PreSharedKey(PreSharedKeyID.external(pid, self.crypto.random(32))) for pid in external_psks]
        if extensions is not None:
            by_value.append(GroupContextExtensions(tuple(extensions)))
        by_value += list(proposals)
        staged = create_commit(
            self,
            by_value=by_value,
            include_pending=include_pending,
            force_path=force_path,
            encrypt=encrypt,
            ratchet_tree_extension=ratchet_tree_extension,
            authenticated_data=authenticated_data,
            psks=psks,
            key_package_bytes=raw_kps,
        )
        self._pending_commit = staged
        self._touch("staged")
        return staged

    def reinit_group(
        self,
        key_packages: Sequence[KeyPackage | KeyPackageBundle | bytes],
        *,
        config: GroupConfig | None = None,
        encrypt: bool | None = None,
        ratchet_tree_extension: bool | None = None,
    ) -> tuple[Group, StagedCommit]:
        """After a commit carrying a ReInit (§11.2): the new group (the ReInit's
        group id and extensions, us as its creator) and its first commit, which
        adds the members' new ``key_packages`` and injects this group's
        resumption PSK (usage reinit) of the current epoch.

        Send the commit's Welcome once the staged commit is merged into the new
        group; joiners pass this old group to :meth:`join` as ``reinit_from``.
        """
        from .resumption import reinit_group

        return reinit_group(
            self, key_packages, config=config, encrypt=encrypt, ratchet_tree_extension=ratchet_tree_extension
        )

    def branch(
        self,
        key_packages: Sequence[KeyPackage | KeyPackageBundle | bytes],
        *,
        group_id: bytes | None = None,
        extensions: Sequence[Extension] | None = None,
        config: GroupConfig | None = None,
        encrypt: bool | None = None,
        ratchet_tree_extension: bool | None = None,
    ) -> tuple[Group, StagedCommit]:
        """Branch a subgroup off this group (§11.3): a new group (``group_id``,
        default 32 random bytes, never this group's; same protocol version and
        cipher suite; ``extensions`` default to this group's; us as its creator)
        and its staged first commit, which adds ``key_packages`` — fresh
        KeyPackages of members of this group, at least one — and injects this
        group's resumption PSK (usage branch) of the current epoch.

        Each KeyPackage must be of a current member: same credential and same
        signature key (the same client, not just the same account); our own is
        refused (we are already in). ``MlsError`` otherwise. This group is not
        changed and carries on as before. Merge the staged commit into the new
        group, then deliver its Welcome; joiners pass this group (at this epoch)
        to :meth:`join` as ``branch_from``.
        """
        from .resumption import branch_group

        return branch_group(
            self,
            key_packages,
            group_id=group_id,
            extensions=extensions,
            config=config,
            encrypt=encrypt,
            ratchet_tree_extension=ratchet_tree_extension,
        )

    def discard_staged_commit(self) -> None:
        """Forget our pending commit (the server refused it)."""
        if self._pending_commit is not None:
            self._pending_commit = None
            self._dirty.discard("staged")
            self._deleted.add("staged")

    def merge_staged_commit(self, staged: StagedCommit) -> CommitApplied:
        """Apply a staged commit: ours (after the server accepted it) or a received
        one (from ``process_message(..., merge=False)``). Atomic: either the group
        moves to the new epoch or, for a stale commit, ``MlsError`` and no change."""
        if staged.base_epoch != self.epoch or staged.group_id != self.group_id:
            raise MlsError(f"the staged commit is for epoch {staged.base_epoch}, the group is at {self.epoch}")
        if not self._active:
            raise MlsError("we are no longer a member of this group")
        old = self._state
        if staged.ratchet_key is not None:
            old.framing.secret_tree.commit(staged.ratchet_key)
        self._proposals = ProposalStore()
        self._own_proposal_messages = {}
        self._touch("proposals")
        if self._pending_commit is not None:
            self._pending_commit = None
            self._dirty.discard("staged")
            self._deleted.add("staged")
        if staged.next_state is None:
            # The commit removed us: keep the last epoch (late messages), stop being a member.
            self._active = False
            self._touch("state")
            return staged.result
        self._retire(old)
        self._state = staged.next_state
        self._reinit = staged.reinit
        if staged.own and staged.message is not None:
            self._last_own_commit = (staged.message_hash, staged.result.epoch)
        else:
            self._last_own_commit = None
        self._touch("state", "tree")
        self._fresh_trees.add(self.epoch)
        return staged.result

    def _retire(self, old: EpochState) -> None:
        """Keep the epoch that ends as a past epoch (or delete its secrets)."""
        from .state import secret_tree_names

        keep_psk = self.config.resumption_psk_epochs
        if keep_psk:
            self._resumption[old.epoch] = old.secrets.resumption_psk
            while len(self._resumption) > keep_psk:
                self._resumption.popitem(last=False)
        keep = self.config.max_past_epochs
        if keep:
            self._past_epochs[old.epoch] = PastEpoch.of(old)
            self._touch(f"past:{old.epoch}")
        else:
            self._deleted.update(secret_tree_names(f"st:{old.epoch}:", old.framing.secret_tree))
        while len(self._past_epochs) > keep:
            epoch, past = self._past_epochs.popitem(last=False)
            self._dirty.discard(f"past:{epoch}")
            self._deleted.add(f"past:{epoch}")
            self._deleted.update(secret_tree_names(f"st:{epoch}:", past.framing.secret_tree))

    # -- messages ----------------------------------------------------------

    def process_message(
        self,
        data: bytes,
        *,
        merge: bool = True,
        psks: PskSource = None,
        check_sender: SenderCheck | None = None,
    ) -> ProcessResult | StagedCommit:
        """Process a received MLSMessage. See :mod:`.process`. Returns an
        :class:`ApplicationMessage`, a :class:`ProposalStored`, a
        :class:`CommitApplied` or (``merge=False``) a :class:`StagedCommit`.
        On failure ``MlsError`` and the group is unchanged.

        ``check_sender(info)`` (a :class:`SenderInfo`: sender, its signature
        key, epoch, content type, authenticated data, the proposal of a
        proposal message) is called once the sender is authenticated and
        before ANY state changes (no ratchet generation consumed, no proposal
        stored, no commit staged); whatever it raises propagates and the group
        is unchanged. Our own echoed messages are checked too (``own=True``).
        """
        from .process import process_message

        return process_message(self, data, merge=merge, psks=psks, check_sender=check_sender)

    def protect(self, data: bytes, authenticated_data: bytes = b"") -> bytes:
        """Encrypt application ``data`` as a PrivateMessage (MLSMessage bytes)."""
        from .application import protect

        return protect(self, data, authenticated_data)

    # -- persistence -------------------------------------------------------

    def records(self) -> dict[str, bytes]:
        """Every record of the group state (name -> bytes). See :mod:`.state`."""
        from .state import group_records

        return group_records(self)

    def changed_records(self) -> RecordChanges:
        """Records written and deleted since the last :meth:`mark_saved`."""
        from .state import group_changes

        return group_changes(self)

    def mark_saved(self) -> None:
        """The caller persisted :meth:`changed_records`: start counting afresh."""
        self._dirty.clear()
        self._deleted.clear()
        self._all_dirty = False
        self._fresh_trees.clear()
        self._state.framing.secret_tree.mark_saved()
        for past in self._past_epochs.values():
            past.framing.secret_tree.mark_saved()

    def to_bytes(self) -> bytes:
        """The whole state, versioned and deterministic."""
        from .state import records_to_bytes

        return records_to_bytes(self.records())

    @classmethod
    def from_bytes(
        cls,
        crypto: CryptoProvider,
        data: bytes,
        *,
        clock: Clock,
        max_lifetime_s: int | None = None,
        leaf_check: LeafCheck | None = None,
        extensions_check: ExtensionsCheck | None = None,
    ) -> Group:
        """Inverse of :meth:`to_bytes`. ``clock``, ``max_lifetime_s``, ``leaf_check``
        and ``extensions_check`` are policy, not stored: give them again (see
        :attr:`max_lifetime_s`, :attr:`leaf_check`, :attr:`extensions_check`)."""
        from .state import bytes_to_records

        return cls.from_records(
            crypto, bytes_to_records(data), clock=clock, max_lifetime_s=max_lifetime_s, leaf_check=leaf_check,
            extensions_check=extensions_check,
        )  # fmt: skip

    @classmethod
    def from_records(
        cls,
        crypto: CryptoProvider,
        records: Mapping[str, bytes],
        *,
        clock: Clock,
        max_lifetime_s: int | None = None,
        leaf_check: LeafCheck | None = None,
        extensions_check: ExtensionsCheck | None = None,
    ) -> Group:
        """A group from its records (as :meth:`records` gave them, or as
        applied from :meth:`changed_records`). ``MlsError`` for a malformed set.
        ``clock``, ``max_lifetime_s`` and ``leaf_check`` as for :meth:`from_bytes`."""
        from .state import group_from_records

        group = group_from_records(cls, crypto, records, clock=clock)
        group.max_lifetime_s = max_lifetime_s
        group.leaf_check = leaf_check
        group.extensions_check = extensions_check
        return group


def _adds(values: Sequence[KeyPackage | KeyPackageBundle | bytes]) -> tuple[list[Proposal], dict[int, bytes]]:
    """Add proposals for ``values``, and each KeyPackage's encoding by ``id``."""
    raw_kps: dict[int, bytes] = {}
    adds: list[Proposal] = []
    for value in values:
        kp, raw = _key_package_and_bytes(value)
        raw_kps[id(kp)] = raw
        adds.append(Add(kp))
    return adds, raw_kps


def _key_package_and_bytes(value: KeyPackage | KeyPackageBundle | bytes) -> tuple[KeyPackage, bytes]:
    """A KeyPackage and its encoding (kept as received when given as bytes)."""
    if isinstance(value, KeyPackageBundle):
        return value.key_package, value.key_package_bytes
    if isinstance(value, bytes):
        kp = _key_package(value)
        return kp, value[4:] if value[:4] == b"\x00\x01\x00\x05" else value
    kp = _key_package(value)
    return kp, encode(kp)


def _key_package(value: KeyPackage | KeyPackageBundle | bytes) -> KeyPackage:
    """A KeyPackage from a struct, a bundle, its encoding or its MLSMessage."""
    if isinstance(value, KeyPackage):
        return value
    if isinstance(value, KeyPackageBundle):
        return value.key_package
    if not isinstance(value, bytes):
        raise MlsError("a KeyPackage must be a KeyPackage, a bundle or bytes")
    if value[:4] == b"\x00\x01\x00\x05":
        body = decode_exact(MLSMessage, value).body
        if isinstance(body, KeyPackage):
            return body
    return decode_exact(KeyPackage, value)
