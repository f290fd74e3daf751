"""Applying or dropping a staged commit (RFC 9420 §12.4): the group moves to the next epoch.

:func:`merge_staged_commit` is atomic: a stale commit is refused with nothing
changed; otherwise the pending proposals are cleared, the epoch that ends is
kept as a past epoch (``GroupConfig.max_past_epochs``) or its secrets
deleted, and the staged epoch becomes the current one. A commit that removed
us leaves the group at its last epoch, inactive (late messages still
decrypt).
"""

from __future__ import annotations

from ping_core.errors import MlsError, MlsReason

from .epoch import EpochState, PastEpoch, secret_tree_names
from .proposals import ProposalStore
from .results import CommitApplied
from .staged import StagedCommit
from .state import GroupState

__all__ = ["merge_staged_commit", "discard_staged_commit"]


def discard_staged_commit(gs: GroupState) -> None:
    """Forget our pending commit (the server refused it)."""
    if gs.pending_commit is not None:
        gs.pending_commit = None
        gs.drop_record("staged")


def merge_staged_commit(gs: GroupState, staged: StagedCommit) -> CommitApplied:
    """Apply ``staged`` (ours or a received one); ``MlsError`` and no change for a stale one."""
    if staged.base_epoch != gs.epoch or staged.group_id != gs.group_id:
        raise MlsError(
            f"the staged commit is for epoch {staged.base_epoch}, the group is at {gs.epoch}",
            reason=MlsReason.WRONG_STATE,
        )
    if not gs.active:
        raise MlsError("we are no longer a member of this group", reason=MlsReason.WRONG_STATE)
    old = gs.current
    if staged.ratchet_key is not None:
        old.framing.secret_tree.commit(staged.ratchet_key)
    gs.proposals = ProposalStore()
    gs.own_proposal_messages = {}
    gs.touch("proposals")
    discard_staged_commit(gs)
    if staged.next_state is None:
        # The commit removed us: keep the last epoch (late messages), stop being a member.
        gs.active = False
        gs.touch("state")
        return staged.result
    _retire(gs, old)
    gs.current = staged.next_state
    gs.reinit = staged.reinit
    if staged.own and staged.message is not None:
        gs.last_own_commit = (staged.message_hash, staged.result.epoch)
    else:
        gs.last_own_commit = None
    gs.touch("state", "tree")
    gs.fresh_trees.add(gs.epoch)
    return staged.result


def _retire(gs: GroupState, old: EpochState) -> None:
    """Keep the epoch that ends as a past epoch (or delete its secrets), and its resumption PSK."""
    keep_psk = gs.config.resumption_psk_epochs
    if keep_psk:
        gs.resumption[old.epoch] = old.secrets.resumption_psk
        while len(gs.resumption) > keep_psk:
            gs.resumption.popitem(last=False)
    keep = gs.config.max_past_epochs
    if keep:
        gs.past_epochs[old.epoch] = PastEpoch.of(old)
        gs.touch(f"past:{old.epoch}")
    else:
        gs.deleted.update(secret_tree_names(f"st:{old.epoch}:", old.framing.secret_tree))
    while len(gs.past_epochs) > keep:
        epoch, past = gs.past_epochs.popitem(last=False)
        gs.drop_record(f"past:{epoch}")
        gs.deleted.update(secret_tree_names(f"st:{epoch}:", past.framing.secret_tree))
