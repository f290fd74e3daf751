"""The read-only side of a group, and its policy: :class:`GroupView` over a :class:`.state.GroupState`.

What a member can read of its group (epoch, roster, secrets it exports,
GroupInfo, retained epochs) and the application's policy (clock,
``max_lifetime_s``, hooks), settable. :class:`.group.Group` extends it with the
operations. Reading changes nothing.
"""

from __future__ import annotations

from typing import Callable

from ping_core.errors import MlsError, MlsReason
from ping_core.mls.tls import encode
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.schedule.key_schedule import mls_exporter
from ping_core.mls.structs import Extension, GroupContext, PreSharedKeyID, ReInit

from .commit import group_info_for
from .config import GroupConfig
from .history import HistoryView, view_of_epochs
from .keypackage import Signer
from .messages import GROUP_INFO_PREFIX
from .proposals import PendingProposal
from .results import Clock, ExtensionsCheck, LeafCheck, Member
from .staged import StagedCommit
from .state import GroupState, check_max_lifetime

__all__ = ["GroupView"]


class GroupView:
    """A member's group, read-only, and its policy (see the module docstring). ``state``
    is its :class:`.state.GroupState` (SECRET)."""

    def __init__(self, state: GroupState) -> None:
        """Internal: use the class methods."""
        self.state = state

    def __repr__(self) -> str:
        return (
            f"Group(group_id={self.group_id.hex()}, epoch={self.epoch}, own_leaf={self.own_leaf_index}, "
            f"members={self.member_count}, active={self.state.active})"
        )

    # -- policy (not stored; settable) ---------------------------------------

    @property
    def crypto(self) -> CryptoProvider:
        return self.state.crypto

    @property
    def signer(self) -> Signer:
        """Our signer (credential and key pair); settable (e.g. a replaced credential, same key)."""
        return self.state.signer

    @signer.setter
    def signer(self, value: Signer) -> None:
        self.state.signer = value

    @property
    def config(self) -> GroupConfig:
        """The group's :class:`.config.GroupConfig` (stored with it); settable."""
        return self.state.config

    @config.setter
    def config(self, value: GroupConfig) -> None:
        self.state.config = value

    @property
    def clock(self) -> Clock:
        """The application's clock (:data:`.results.Clock`): dates KeyPackage lifetimes."""
        return self.state.clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        self.state.clock = value

    @property
    def leaf_check(self) -> LeafCheck | None:
        """The application's leaf policy (:data:`.results.LeafCheck`), or ``None``. A branch
        or reinitialised successor inherits it."""
        return self.state.leaf_check

    @leaf_check.setter
    def leaf_check(self, value: LeafCheck | None) -> None:
        self.state.leaf_check = value

    @property
    def extensions_check(self) -> ExtensionsCheck | None:
        """The application's check of GroupContext extensions (:data:`.results.ExtensionsCheck`),
        or ``None``. A branch or reinitialised successor inherits it."""
        return self.state.extensions_check

    @extensions_check.setter
    def extensions_check(self, value: ExtensionsCheck | None) -> None:
        self.state.extensions_check = value

    @property
    def max_lifetime_s(self) -> int | None:
        """The application's maximum total lifetime of a key_package leaf, in seconds
        (RFC 9420 §7.2: "Applications MUST define a maximum total lifetime that is
        acceptable for a LeafNode"), or ``None`` for none (the engine default: peers
        such as ts-mls and the test vectors use very long lifetimes).

        Applied to every Add this group validates: our own (:meth:`commit`,
        :meth:`propose_add`), Add proposals received (by reference) and Adds in
        received commits (by value); the joins check the received tree with it.
        A refusal is an ``MlsError`` and changes nothing."""
        return self.state.max_lifetime_s

    @max_lifetime_s.setter
    def max_lifetime_s(self, value: int | None) -> None:
        self.state.max_lifetime_s = check_max_lifetime(value)

    def now(self) -> int:
        """The application's time (``clock``), in whole seconds."""
        return self.state.now()

    # -- what the group is -------------------------------------------------

    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def group_id(self) -> bytes:
        return self.state.group_id

    @property
    def group_context(self) -> GroupContext:
        return self.state.current.context

    @property
    def extensions(self) -> tuple[Extension, ...]:
        """The GroupContext extensions."""
        return self.state.current.context.extensions

    @property
    def own_leaf_index(self) -> int:
        return self.state.own_leaf_index

    @property
    def epoch_authenticator(self) -> bytes:
        return self.state.current.secrets.epoch_authenticator

    @property
    def tree_hash(self) -> bytes:
        return self.state.current.context.tree_hash

    @property
    def active(self) -> bool:
        """False once a commit removed us (or the group was reinitialised)."""
        return self.state.active and self.state.reinit is None

    @property
    def removed(self) -> bool:
        """True once a commit removed us from the group."""
        return not self.state.active

    @property
    def pending_reinit(self) -> ReInit | None:
        """The ReInit a merged commit carried: the group may not send any more."""
        return self.state.reinit

    @property
    def member_count(self) -> int:
        return sum(1 for _ in self.state.current.tree.members())

    def members(self) -> list[Member]:
        """The roster, by ascending leaf index."""
        return [Member(i, leaf.credential, leaf.signature_key, leaf.encryption_key) for i, leaf in self.state.current.tree.members()]

    def member(self, leaf_index: int) -> Member | None:
        """The member at ``leaf_index``, or ``None`` for a blank or absent leaf."""
        tree = self.state.current.tree
        leaf = tree.leaf(leaf_index) if 0 <= leaf_index < tree.n_leaves else None
        return None if leaf is None else Member(leaf_index, leaf.credential, leaf.signature_key, leaf.encryption_key)

    def leaf_of(self, *, identity: bytes | None = None, signature_key: bytes | None = None) -> list[int]:
        """Leaf indices of the members with this credential identity or signature key."""
        return [
            i
            for i, leaf in self.state.current.tree.members()
            if (identity is not None and leaf.credential.identity == identity)
            or (signature_key is not None and leaf.signature_key == signature_key)
        ]

    @property
    def pending_proposals(self) -> list[PendingProposal]:
        """Proposals stored in this epoch, in arrival order."""
        return list(self.state.proposals)

    @property
    def pending_commit(self) -> StagedCommit | None:
        """Our own staged commit, awaiting :meth:`merge_staged_commit`."""
        return self.state.pending_commit

    def signature_key(self, leaf_index: int, epoch: int | None = None) -> bytes | None:
        """The signature key of the member at ``leaf_index`` in ``epoch`` (default: the
        current one; a retained past epoch keeps its roster's keys, so a late message's
        sender can be told even after it left). ``None`` for a blank leaf or an epoch
        whose state is gone."""
        if epoch is None or epoch == self.epoch:
            member = self.member(leaf_index)
            return None if member is None else member.signature_key
        past = self.state.past_epochs.get(epoch)
        return None if past is None else past.signature_keys.get(leaf_index)

    @property
    def retained_epochs(self) -> tuple[int, ...]:
        """The epochs whose application messages still decrypt: the retained past ones and the current one."""
        return (*self.state.past_epochs, self.epoch)

    def export_history_view(self) -> HistoryView:
        """SECRET: a :class:`HistoryView` of the current and retained past epochs: an
        independent copy that decrypts those epochs' application messages (from where
        our ratchets are now) and nothing else — no signing key, no path keys, no secret
        that derives another epoch. For a device of the same account that must read
        this conversation's recent messages."""
        return view_of_epochs(self.crypto, self.state.current, self.state.past_epochs)

    def export_secret(self, label: bytes | str, context: bytes, length: int) -> bytes:
        """``MLS-Exporter(label, context, length)`` of the current epoch (§8.5)."""
        raw = label.encode("utf-8") if isinstance(label, str) else label
        return mls_exporter(self.crypto, self.state.current.secrets.exporter_secret, raw, context, length)

    def ratchet_tree(self) -> bytes:
        """The public ratchet tree, encoded as the ratchet_tree extension payload."""
        return self.state.current.tree.encode()

    def group_info(self, *, ratchet_tree: bool = True, external_pub: bool = True) -> bytes:
        """A signed GroupInfo of the current epoch as an MLSMessage (for external
        joins: with the external_pub extension and, by default, the tree)."""
        self.state.require_active()
        info = group_info_for(self.crypto, self.state, ratchet_tree=ratchet_tree, external_pub=external_pub)
        return GROUP_INFO_PREFIX + encode(info)

    def group_info_after(self, staged: StagedCommit, *, ratchet_tree: bool = True, external_pub: bool = True) -> bytes:
        """A signed GroupInfo (MLSMessage) of the epoch our staged commit starts, before it is
        merged: the delivery service checks it against the commit and keeps it for members
        that rejoin by external commit (§12.4.3.2)."""
        if not staged.own or staged.next_state is None or staged.base_epoch != self.epoch:
            raise MlsError(
                "a GroupInfo after a commit needs our own commit staged in this epoch",
                reason=MlsReason.WRONG_STATE,
            )
        info = group_info_for(
            self.crypto, self.state, ratchet_tree=ratchet_tree, external_pub=external_pub, state=staged.next_state
        )
        return GROUP_INFO_PREFIX + encode(info)

    def resumption_psk(self, epoch: int | None = None) -> bytes:
        """This group's resumption_psk of ``epoch`` (default: the current one), if
        still retained (``GroupConfig.resumption_psk_epochs``); ``MlsError`` otherwise."""
        e = self.epoch if epoch is None else epoch
        value = self.state.resumption_psks().get(e)
        if value is None:
            raise MlsError(f"the resumption PSK of epoch {e} is not retained", reason=MlsReason.TOO_OLD)
        return value

    def psk_source(self) -> Callable[[PreSharedKeyID], bytes | None]:
        """A PskSource resolving this group's retained resumption PSKs (for another
        group: a reinitialised one, or a branch), as they are now."""
        return self.state.psk_source()
