"""The :class:`Group`: one member's view of one MLS group, and every operation on it.

See the package docstring (``ping_core.mls.group``) for the API tour. The
state is a plain :class:`.state.GroupState`; the operations are functions over
it in the sibling modules (create, join, outgoing, commit, merge, process,
application, resumption, history, state); this class holds one and offers
them as methods. Nothing imports this module but the package: it is the top
of the group's layers. Nothing here does I/O; the clock is the caller's
(``clock=``), read only to check lifetimes.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.tree.secret_tree import RecordChanges
from ping_core.mls.structs import (
    Add,
    Capabilities,
    Extension,
    GroupContextExtensions,
    KeyPackage,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ReInit,
    Remove,
    ResumptionPSKUsage,
)

from . import outgoing
from .application import protect
from .config import GroupConfig
from .create import create_group
from .join import join_external, join_welcome
from .keypackage import KeyPackageBundle, Signer, key_package_of
from .merge import discard_staged_commit, merge_staged_commit
from .process import process_message
from ping_core.mls.group.psk_sources import PskSource
from .results import Clock, CommitApplied, ExtensionsCheck, LeafCheck, ProcessResult, ProposalMessage, SenderCheck
from .resumption import branch_group, reinit_group
from .staged import StagedCommit
from .view import GroupView
from .state import (
    PolicyArgs,
    bytes_to_records,
    group_changes,
    group_from_records,
    group_records,
    records_to_bytes,
)

__all__ = ["Group"]

KeyPackageLike = KeyPackage | KeyPackageBundle | bytes


class Group(GroupView):
    """One member's state of one MLS group (cipher suite 1). Not thread-safe:
    one writer per group (the SDK serialises access).

    Build one with :meth:`create`, :meth:`join` or :meth:`join_external`, or
    restore one with :meth:`from_bytes` / :meth:`from_records`. ``state`` is its
    :class:`.state.GroupState` (SECRET).
    """

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
        return cls(
            create_group(
                crypto, signer, group_id=group_id, config=config, extensions=extensions, capabilities=capabilities,
                clock=clock, max_lifetime_s=max_lifetime_s, leaf_check=leaf_check, extensions_check=extensions_check,
            )
        )  # fmt: skip

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
        return cls(
            join_welcome(
                crypto, welcome, key_packages, signer, ratchet_tree=ratchet_tree, config=config, psks=psks,
                reinit_from=None if reinit_from is None else reinit_from.state,
                branch_from=None if branch_from is None else branch_from.state,
                clock=clock, check_lifetimes=check_lifetimes, max_lifetime_s=max_lifetime_s, leaf_check=leaf_check,
                extensions_check=extensions_check,
            )
        )  # fmt: skip

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
        """Join by external commit: ``(group, commit)``. See :func:`.join.join_external`."""
        state, commit = join_external(
            crypto, group_info, signer, ratchet_tree=ratchet_tree, config=config, resync=resync, psk_ids=psk_ids,
            psks=psks, authenticated_data=authenticated_data, capabilities=capabilities, clock=clock,
            check_lifetimes=check_lifetimes, max_lifetime_s=max_lifetime_s, leaf_check=leaf_check,
            extensions_check=extensions_check,
        )  # fmt: skip
        return cls(state), commit

    # -- proposals (by reference, §12.1) -------------------------------------

    def _propose(self, proposal: Proposal, encrypt: bool | None, authenticated_data: bytes) -> ProposalMessage:
        return outgoing.propose(self.state, proposal, encrypt=encrypt, authenticated_data=authenticated_data)

    def propose_add(
        self, key_package: KeyPackageLike, *, encrypt: bool | None = None, authenticated_data: bytes = b""
    ) -> ProposalMessage:
        """Propose adding the member of ``key_package`` (struct, encoding or MLSMessage)."""
        return self._propose(Add(key_package_of(key_package)), encrypt, authenticated_data)

    def propose_remove(self, leaf_index: int, *, encrypt: bool | None = None, authenticated_data: bytes = b"") -> ProposalMessage:
        """Propose removing the member at ``leaf_index``."""
        return self._propose(Remove(leaf_index), encrypt, authenticated_data)

    def propose_update(self, *, encrypt: bool | None = None, authenticated_data: bytes = b"") -> ProposalMessage:
        """Propose a fresh encryption key for our leaf (an Update proposal, §12.1.2).

        A commit by another member applies it; we keep the new private key until then.
        """
        update, secret = outgoing.update_proposal(self.state)
        return outgoing.propose(self.state, update, encrypt=encrypt, authenticated_data=authenticated_data, leaf_secret=secret)

    def propose_external_psk(self, psk_id: bytes, *, encrypt: bool | None = None, authenticated_data: bytes = b"") -> ProposalMessage:
        """Propose injecting the external PSK ``psk_id`` (every member must know it)."""
        return self._propose(PreSharedKey(PreSharedKeyID.external(psk_id, self.crypto.random(32))), encrypt, authenticated_data)

    def propose_resumption_psk(
        self, epoch: int | None = None, *, encrypt: bool | None = None, authenticated_data: bytes = b""
    ) -> ProposalMessage:
        """Propose injecting this group's resumption PSK of ``epoch`` (default: the current one)."""
        e = self.epoch if epoch is None else epoch
        psk = PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, self.group_id, e, self.crypto.random(32))
        return self._propose(PreSharedKey(psk), encrypt, authenticated_data)

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
            cipher_suite=self.group_context.cipher_suite,
            extensions=tuple(self.extensions if extensions is None else extensions),
        )
        return self._propose(proposal, encrypt, authenticated_data)

    def propose_group_context_extensions(
        self, extensions: Sequence[Extension], *, encrypt: bool | None = None, authenticated_data: bytes = b""
    ) -> ProposalMessage:
        """Propose replacing the GroupContext extensions wholesale (checked by ``extensions_check``)."""
        return self._propose(GroupContextExtensions(tuple(extensions)), encrypt, authenticated_data)

    # -- commits -----------------------------------------------------------

    def commit(
        self,
        *,
        add: Sequence[KeyPackageLike] = (),
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
        (``extensions``: the new list, whole), and any further ``proposals``.
        With nothing to commit it is an empty commit: a self-update. The path is
        included whenever the RFC requires it, or if ``force_path``.

        Returns the :class:`StagedCommit` (send ``.message``, then
        :meth:`merge_staged_commit`; deliver ``.welcome`` to the new members
        once merged). The group keeps it as :attr:`pending_commit` (and
        persists it) but is otherwise unchanged until the merge.
        """
        return outgoing.commit(
            self.state, add=add, remove=remove, external_psks=external_psks, extensions=extensions, proposals=proposals,
            include_pending=include_pending, force_path=force_path, encrypt=encrypt,
            ratchet_tree_extension=ratchet_tree_extension, authenticated_data=authenticated_data, psks=psks,
        )  # fmt: skip

    def reinit_group(
        self,
        key_packages: Sequence[KeyPackageLike],
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
        new, staged = reinit_group(
            self.state, key_packages, config=config, encrypt=encrypt, ratchet_tree_extension=ratchet_tree_extension
        )
        return Group(new), staged

    def branch(
        self,
        key_packages: Sequence[KeyPackageLike],
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
        new, staged = branch_group(
            self.state, key_packages, group_id=group_id, extensions=extensions, config=config, encrypt=encrypt,
            ratchet_tree_extension=ratchet_tree_extension,
        )  # fmt: skip
        return Group(new), staged

    def discard_staged_commit(self) -> None:
        """Forget our pending commit (the server refused it)."""
        discard_staged_commit(self.state)

    def merge_staged_commit(self, staged: StagedCommit) -> CommitApplied:
        """Apply a staged commit: ours (after the server accepted it) or a received
        one (from ``process_message(..., merge=False)``). Atomic: either the group
        moves to the new epoch or, for a stale commit, ``MlsError`` and no change."""
        return merge_staged_commit(self.state, staged)

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
        return process_message(self.state, data, merge=merge, psks=psks, check_sender=check_sender)

    def protect(self, data: bytes, authenticated_data: bytes = b"") -> bytes:
        """Encrypt application ``data`` as a PrivateMessage (MLSMessage bytes)."""
        return protect(self.state, data, authenticated_data)

    # -- persistence -------------------------------------------------------

    def records(self) -> dict[str, bytes]:
        """Every record of the group state (name -> bytes). See :mod:`.state`."""
        return group_records(self.state)

    def changed_records(self) -> RecordChanges:
        """Records written and deleted since the last :meth:`mark_saved`."""
        return group_changes(self.state)

    def mark_saved(self) -> None:
        """The caller persisted :meth:`changed_records`: start counting afresh."""
        self.state.mark_saved()

    def to_bytes(self) -> bytes:
        """The whole state, versioned and deterministic."""
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
        Policy as for :meth:`from_bytes`."""
        policy = PolicyArgs(max_lifetime_s=max_lifetime_s, leaf_check=leaf_check, extensions_check=extensions_check)
        return cls(group_from_records(crypto, records, clock=clock, policy=policy))
