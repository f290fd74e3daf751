"""The commits a device owes a conversation once it has read its log.

* **Rejoin** a group this device no longer follows (a commit of our epoch it could not process,
  a later epoch's commit, or envelopes held for an epoch whose commit never came) by an external
  commit, resync (RFC 9420 §12.4.3.2: our old leaf is replaced), from the GroupInfo the
  delivery service keeps. At most once per epoch of ours.
* **Pending proposals** of other members, by a policy that lets a group converge without every
  member racing to commit: the designated committer (the active member with the lowest leaf
  index that no pending Remove removes) commits at once; any other member once the proposals
  have been pending for :data:`PROPOSAL_COMMIT_DELAY_MS` by its clock. MLS forbids sending
  application data while proposals are pending (§12.1), so ``send`` commits them first too.
* **Our own leaf** still carrying a credential made before account bindings is migrated by a
  commit of our path (peers refuse messages from an unverified leaf).

Every commit follows the state machine of ``ping_core.commitflow``; one that loses the epoch to
another commit catches up on the log and is tried again, at most ``PROPOSAL_COMMIT_ATTEMPTS``
times. Nothing is committed while the blob store buffers its commits.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from ping_core.clientstate import ClientState
from ping_core.commitflow import CommitFlow
from ping_core.conversation import MAX_LEAF_LIFETIME_S, CommitKind, Conversation, StoreUndo, hlc_aad
from ping_core.conversation_name import PING_CAPABILITIES, check_extensions
from ping_core.errors import InvalidInput, MlsError, PingError, TransportError
from ping_core.ids import ConversationId
from ping_core.message import IncomingMessage, MessageEnvelope, MessageKind
from ping_core.mls.group import Group, StagedCommit
from ping_core.mls.structs import Remove
from ping_core.receive import report
from ping_core.sync import SyncCursor, SyncProblemKind
from ping_core.wallclock import wall_clock_s

__all__ = ["Owed", "PROPOSAL_COMMIT_DELAY_MS", "PROPOSAL_COMMIT_ATTEMPTS", "designated_committer"]

log = logging.getLogger("ping_core.client")

#: How long a member that is not the designated committer lets proposals of others stay pending
#: before its sync commits them (see :meth:`MessagingClient.commit_pending_proposals`).
PROPOSAL_COMMIT_DELAY_MS = 10_000
#: Attempts to commit pending proposals when other commits keep winning the epoch.
PROPOSAL_COMMIT_ATTEMPTS = 3

#: Reads the rest of a conversation's log into the inbox and a sink (``Syncer.sync_one``).
CatchUp = Callable[[Conversation, int, list[IncomingMessage]], Awaitable[None]]


def _commit_pending(group: Group) -> StagedCommit:
    """A commit of the pending proposals. If the engine refuses them (one this device cannot
    commit, e.g. a KeyPackage that expired since it was proposed), an empty commit instead: the
    epoch change drops them all, as RFC 9420 lets a committer leave proposals out."""
    try:
        return group.commit()
    except MlsError as exc:
        log.warning("pending proposals cannot be committed (%s); committing without them", exc)
        return group.commit(include_pending=False)


def designated_committer(group: Group) -> bool:
    """Whether we are the member that commits pending proposals at once: the lowest leaf index
    that no pending Remove proposal removes."""
    removed = {p.proposal.removed for p in group.pending_proposals if isinstance(p.proposal, Remove)}
    for member in group.members():
        if member.leaf_index not in removed:
            return member.leaf_index == group.own_leaf_index
    return False


class Owed:
    """Makes the commits this client owes (every method: caller holds ``conv.lock``)."""

    def __init__(self, state: ClientState, commits: CommitFlow, catch_up: CatchUp) -> None:
        self.st = state
        self.commits = commits
        self.catch_up = catch_up

    async def run_all(self, now_ms: int) -> list[ConversationId]:
        """``MessagingClient.commit_pending_proposals``: :meth:`run` on every conversation (each
        under its lock, a failing one logged and skipped); where a commit of ours took effect."""
        committed = []
        for conv in list(self.st.convs.values()):
            try:
                async with conv.lock:
                    if await self.run(conv, now_ms, []):
                        committed.append(conv.id)
            except PingError as exc:
                log.warning("conversation %s: pending proposals not committed: %s", conv.id.as_hex(), type(exc).__name__)
        return committed

    async def send(self, conv: Conversation, plaintext: bytes, now_ms: int) -> MessageEnvelope:
        """``MessagingClient.send`` (caller holds ``conv.lock``): what is owed first (pending
        proposals, a stale leaf: peers would refuse a message from an unverified leaf), then the
        message, its advanced ratchet and clock checkpointed BEFORE the transport sees it."""
        st = self.st
        group = st.live(conv)
        if group.pending_proposals:
            await self.commit_proposals(conv, now_ms, [])
            group = st.live(conv)
        if self.leaf_is_stale(group):
            await self.refresh_own_leaf(conv, now_ms, [])
            group = st.live(conv)
        hlc = conv.hlc.tick(now_ms)
        payload = group.protect(plaintext, hlc_aad(hlc))
        conv.set_hlc(hlc)
        await st.persist(conv)
        env = MessageEnvelope(conv.id, group.epoch, MessageKind.APPLICATION, st.device_id(), 0, hlc, payload)
        seq = await st.transport.send(env)
        return env.with_seq(seq) if seq else env

    async def run(self, conv: Conversation, now_ms: int, sink: list[IncomingMessage]) -> bool:
        """Rejoin, commit pending proposals by the policy, migrate our leaf: True when a commit of
        ours took effect. Nothing while the blob store buffers its commits."""
        if not self.st.checkpoints_durable():
            return False
        done = False
        if self._needs_heal(conv) and await self._heal(conv, now_ms):
            done = True
            await self.catch_up(conv, now_ms, sink)  # what came after our rejoin
        done = await self._proposals_by_policy(conv, now_ms, sink) or done
        group = self.st.group(conv)
        if group is not None and group.active and self.leaf_is_stale(group):
            done = await self.refresh_own_leaf(conv, now_ms, sink) or done
        return done

    async def _proposals_by_policy(self, conv: Conversation, now_ms: int, sink: list[IncomingMessage]) -> bool:
        group = self.st.group(conv)
        if group is None or not group.active or not group.pending_proposals or not self.st.checkpoints_durable():
            return False
        since = conv.proposals_pending_since(group.epoch, now_ms)
        if now_ms - since < PROPOSAL_COMMIT_DELAY_MS and not designated_committer(group):
            return False
        return await self.commit_proposals(conv, now_ms, sink)

    async def commit_proposals(self, conv: Conversation, now_ms: int, sink: list[IncomingMessage]) -> bool:
        """Commit the pending proposals: True once a commit of ours took effect, False when another
        commit cleared them first (see :meth:`_commit_while`)."""
        return await self._commit_while(conv, now_ms, sink, CommitKind.PROPOSALS, lambda g: bool(g.pending_proposals), _commit_pending)

    def leaf_is_stale(self, group: Group) -> bool:
        """Whether our leaf in ``group`` still carries another credential than this client's (a
        leaf made before account bindings: peers show it unverified and refuse its messages)."""
        own = group.member(group.own_leaf_index) if group.active else None
        return own is not None and own.credential != self.st.signer.credential

    async def refresh_own_leaf(self, conv: Conversation, now_ms: int, sink: list[IncomingMessage]) -> bool:
        """Migrate our leaf to this client's credential (the account binding) with a commit of our
        path (it commits pending proposals too)."""
        return await self._commit_while(conv, now_ms, sink, CommitKind.UPDATE, self.leaf_is_stale, lambda g: g.commit(force_path=True))

    async def _commit_while(
        self,
        conv: Conversation,
        now_ms: int,
        sink: list[IncomingMessage],
        kind: CommitKind,
        needed: Callable[[Group], bool],
        build: Callable[[Group], StagedCommit],
    ) -> bool:
        """Commit ``build`` while ``needed`` holds: True once a commit of ours took effect, False
        when another commit made it unneeded first. A commit that loses the epoch is dropped; the
        log is caught up (its messages go to the inbox and ``sink``) and it is tried again."""
        for _ in range(PROPOSAL_COMMIT_ATTEMPTS):
            if not needed(self.st.live(conv)):
                return False
            try:
                await self.commits.commit(conv, kind, build, now_ms)
                return True
            except TransportError as exc:
                if exc.code != "epoch_advanced":
                    raise
            await self.catch_up(conv, now_ms, sink)
        if needed(self.st.live(conv)):
            raise TransportError(
                f"other commits kept winning the epoch; our {kind.value} commit did not get in", status=409, code="epoch_advanced"
            )
        return False

    # -- healing a group this device no longer follows -------------------------------------

    def _needs_heal(self, conv: Conversation) -> bool:
        """Whether this sync found that the group moved on without us: a commit of our epoch we
        could not process, a later epoch's commit, or (the log read to its end, unbroken)
        envelopes held for an epoch whose commit never came."""
        group = conv.group if conv.loaded else None
        if group is None or not group.active:
            return False
        if SyncProblemKind.LOG_DISCONTINUITY in {p.kind for p in conv.problems}:
            return False  # first read the log as it is; the gap may be the server's to fill
        return conv.desynced or any(env is not None and env.epoch > group.epoch for _, env in conv.held(1 << 62))

    async def _heal(self, conv: Conversation, now_ms: int) -> bool:
        """Rejoin by an external commit; True when healed. What was held for the epochs we missed
        is reported UNREADABLE; the log is read on from our commit."""
        st = self.st
        group = st.live(conv)
        if conv.heal_tried == group.epoch or not st.checkpoints_durable():
            return False
        conv.heal_tried = group.epoch
        try:
            joined = await self._rejoin_external(conv)
            if joined is None:
                return False
            rejoined, commit = joined
            await st.transport.set_next_commit_group_info(conv.id, rejoined.group_info())
            hlc = conv.hlc.tick(now_ms)
            env = MessageEnvelope(conv.id, rejoined.epoch - 1, MessageKind.COMMIT, st.device_id(), 0, hlc, commit)
            seq = await st.transport.send(env)
        except PingError as exc:
            log.warning("conversation %s: rejoining failed: %s: %s", conv.id.as_hex(), type(exc).__name__, exc)
            report(conv, SyncProblemKind.DESYNCED, None, f"rejoining failed: {type(exc).__name__}")
            return False
        undo = StoreUndo(st.store)
        for key, held in conv.held(1 << 62):
            undo.delete(key)
            if held is not None:
                report(conv, SyncProblemKind.UNREADABLE, held, "sent in an epoch this device missed")
        conv.replace_group(rejoined, undo)
        conv.set_joined_epoch(rejoined.epoch)
        conv.set_hlc(hlc)
        self.commits.reset(conv)
        if seq:
            conv.set_cursor(SyncCursor(seq))
        conv.refresh_from_group()
        await st.persist(conv, undo)
        conv.desynced = False
        report(conv, SyncProblemKind.HEALED, None, f"rejoined at epoch {rejoined.epoch}")
        return True

    async def _rejoin_external(self, conv: Conversation) -> tuple[Group, bytes] | None:
        """The group rejoined from the server's GroupInfo and our external commit (nothing sent);
        ``None`` (reported DESYNCED) when the server keeps no GroupInfo."""
        st = self.st
        info = await st.transport.fetch_group_info(conv.id)
        if info is None:
            report(conv, SyncProblemKind.DESYNCED, None, "the server keeps no GroupInfo to rejoin from")
            return None
        rejoined, commit = Group.join_external(
            st.crypto,
            info,
            st.signer,
            resync=True,
            capabilities=PING_CAPABILITIES,
            clock=wall_clock_s,
            check_lifetimes=False,
            max_lifetime_s=MAX_LEAF_LIFETIME_S,
            leaf_check=st.verifier.check_joined_leaf,
            extensions_check=check_extensions,
        )
        if rejoined.group_id != conv.id.value:
            raise InvalidInput("the server's GroupInfo is for another group")
        rejoined.leaf_check = st.verifier.check_leaf
        st.adopt(rejoined)
        return rejoined, commit

