"""Our own commits: one explicit state machine (stage, checkpoint, send, merge).

A conversation's commit of ours is always in one :class:`CommitState`, read off the two records
that hold it durably: the engine's staged commit (``Group.pending_commit``) and the SDK's
:class:`~ping_core.conversation.PendingOp` (``c/<id>/op``). The rules, once::

    state    event        next     effect
    IDLE     STAGE        STAGED   build the commit, checkpoint it with its op, THEN send it
    STAGED   ACCEPTED     MERGED   the server took it (send returned, or the log shows it): merge, checkpoint
    STAGED   REJECTED     IDLE     definite rejection, or the log shows another commit at its epoch: drop it
    STAGED   SUPERSEDED   IDLE     another member's commit for its epoch was processed (the engine dropped ours)
    STAGED   RESEND       STAGED   ambiguous failure, the log does not have it: send the same commit once more
    STAGED   UNRESOLVED   STAGED   ambiguous failure and the log cannot tell now: stays durable, settled later
    MERGED   DELIVERED    IDLE     its Welcome went out (or failed, logged); at once when it has none to deliver
    STRAY    RESUME       STAGED   a staged commit without its op (crash between the two): the op is rebuilt
    STRAY    FORGET       IDLE     an op whose staged commit is gone: the op is dropped
    any      RESET        IDLE     the group was replaced (a Welcome, or our external commit when healing)

Every other (state, event) is refused with :class:`IllegalCommitTransition` before anything
changes, e.g. staging a commit while an earlier one is unresolved.

Why it is safe (RFC 9420 §14: the delivery service applies at most one commit per epoch):

* a commit is sent only once it is durable (staged and checkpointed), so a crash after the send
  finds it on restart and :meth:`CommitFlow.settle` resolves it against the log;
* an ambiguous failure never merges blindly (that forks the group when the server did NOT apply
  it) and never drops blindly (that strands us when it did): the log decides. Re-sending the
  same commit is safe because the server takes at most one commit per epoch;
* who gets the Welcome and whose membership ends are read off the staged commit (see
  :func:`pending_op`), so the proposals of others it includes are served too; the Welcome's
  recipients are primed, the removed devices announced, before each (re)send.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Callable

from ping_core.clientstate import ClientState
from ping_core.conversation import CommitKind, Conversation, PendingOp
from ping_core.errors import MlsError, MlsReason, StorageError, TransportError
from ping_core.ids import DeviceId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.meta import ConversationMeta
from ping_core.mls.group import Group, StagedCommit
from ping_core import sync as sync_types

__all__ = [
    "CommitState",
    "CommitEvent",
    "LogVerdict",
    "TRANSITIONS",
    "IllegalCommitTransition",
    "commit_state",
    "transition",
    "pending_op",
    "CommitFlow",
]

log = logging.getLogger("ping_core.client")


class CommitState(Enum):
    """Where our commit in a conversation stands (read off its durable records)."""

    IDLE = "idle"  # no commit of ours in flight
    STAGED = "staged"  # staged and durable with its op; maybe sent, not known to have taken effect
    MERGED = "merged"  # took effect; only its Welcome is left to deliver
    STRAY = "stray"  # the two records disagree (a crash between their writes); settled first


class CommitEvent(Enum):
    """What happened to our commit (see the table in the module docstring)."""

    STAGE = "stage"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"
    RESEND = "resend"
    UNRESOLVED = "unresolved"
    DELIVERED = "delivered"
    RESUME = "resume"
    FORGET = "forget"
    RESET = "reset"


class LogVerdict(Enum):
    """What the conversation's log says about the epoch of our staged commit."""

    OURS = "ours"  # our commit is there: it took effect
    THEIRS = "theirs"  # another commit took the epoch: ours never will
    ABSENT = "absent"  # no commit for that epoch (yet)


_S, _E = CommitState, CommitEvent
#: The allowed transitions: state -> event -> next state. Nothing else is allowed.
TRANSITIONS: dict[CommitState, dict[CommitEvent, CommitState]] = {
    _S.IDLE: {_E.STAGE: _S.STAGED, _E.RESET: _S.IDLE},
    _S.STAGED: {
        _E.ACCEPTED: _S.MERGED,
        _E.REJECTED: _S.IDLE,
        _E.SUPERSEDED: _S.IDLE,
        _E.RESEND: _S.STAGED,
        _E.UNRESOLVED: _S.STAGED,
        _E.RESET: _S.IDLE,
    },
    _S.MERGED: {_E.DELIVERED: _S.IDLE, _E.RESET: _S.IDLE},
    _S.STRAY: {_E.RESUME: _S.STAGED, _E.FORGET: _S.IDLE, _E.RESET: _S.IDLE},
}


class IllegalCommitTransition(MlsError):
    """An event the commit state machine does not allow in the current state (nothing changed)."""

    def __init__(self, state: CommitState, event: CommitEvent) -> None:
        hint = " (an earlier commit of ours is still unresolved; sync and retry)" if event is _E.STAGE else ""
        super().__init__(
            f"commit protocol: {event.name} is not allowed in state {state.name}{hint}", reason=MlsReason.WRONG_STATE
        )
        self.state = state
        self.event = event


def commit_state(group: Group | None, op: PendingOp | None) -> CommitState:
    """The state of our commit, from the staged commit of ``group`` and the conversation's op."""
    staged = group.pending_commit if group is not None else None
    if staged is None:
        if op is None:
            return _S.IDLE
        return _S.MERGED if op.merged else _S.STRAY
    if op is None or op.merged or op.base_epoch != staged.base_epoch:
        return _S.STRAY
    return _S.STAGED


def transition(state: CommitState, event: CommitEvent) -> CommitState:
    """The state ``event`` leads to from ``state``; ``IllegalCommitTransition`` if it is not allowed."""
    nxt = TRANSITIONS[state].get(event)
    if nxt is None:
        raise IllegalCommitTransition(state, event)
    return nxt


def pending_op(kind: CommitKind, conv: Conversation, group: Group, staged: StagedCommit, *, deliver_welcome: bool) -> PendingOp:
    """The PendingOp of our ``staged`` commit in ``group``: its Welcome goes to the devices it adds
    (device id = SHA-256 of the new leaf's key), and the devices whose leaves it removes are
    announced to the delivery service before each send."""
    welcome_to: tuple[DeviceId, ...] = ()
    if deliver_welcome and staged.welcome is not None:
        welcome_to = tuple(conv.device_of_key(m.signature_key) for m in staged.added_members())
    removals = []
    for leaf in staged.result.removed:
        key = group.signature_key(leaf)
        if key is not None:
            removals.append(conv.device_of_key(key))
    return PendingOp(kind, staged.base_epoch, staged.welcome, welcome_to, tuple(removals))


class CommitFlow:
    """Runs the state machine for one client's conversations (every method: caller holds ``conv.lock``)."""

    def __init__(self, state: ClientState) -> None:
        self.st = state

    def step(self, conv: Conversation, event: CommitEvent) -> CommitState:
        """Check that ``event`` is allowed now (``IllegalCommitTransition`` otherwise); the state it leads to."""
        return transition(commit_state(conv.group if conv.loaded else None, conv.op), event)

    async def commit(
        self,
        conv: Conversation,
        kind: CommitKind,
        build: Callable[[Group], StagedCommit],
        now_ms: int,
        *,
        deliver_welcome: bool = True,
    ) -> tuple[StagedCommit, MessageEnvelope]:
        """IDLE -STAGE-> STAGED, then deliver: returns the staged commit (for its Welcome) and the
        Commit envelope. An interrupted commit of ours is settled first (raises if it cannot be
        now). ``deliver_welcome=False``: the Welcome travels another way (a linking ticket)."""
        if not self.st.checkpoints_durable():
            raise StorageError("checkpoints are buffered (not durable yet): a commit is never sent before its staged state is durable")
        await self.settle(conv)
        group = self.st.live(conv)
        self.step(conv, _E.STAGE)
        staged = build(group)
        conv.set_op(pending_op(kind, conv, group, staged, deliver_welcome=deliver_welcome))
        conv.set_hlc(conv.hlc.tick(now_ms))
        await self.st.persist(conv)
        env = self._envelope(conv, staged)
        await self._deliver(conv, staged, may_resend=True, raise_welcome=True)
        return staged, env

    def _envelope(self, conv: Conversation, staged: StagedCommit) -> MessageEnvelope:
        assert staged.message is not None
        return MessageEnvelope(conv.id, staged.base_epoch, MessageKind.COMMIT, self.st.device_id(), 0, conv.hlc, staged.message)

    async def _send(self, conv: Conversation, staged: StagedCommit) -> None:
        op = conv.op
        transport = self.st.transport
        if op is not None and op.removals:
            await transport.set_next_commit_removals(conv.id, list(op.removals))
        # The new epoch's GroupInfo: the service checks the commit against it and keeps it
        # for members that must rejoin (healing by external commit).
        await transport.set_next_commit_group_info(conv.id, self.st.live(conv).group_info_after(staged))
        await transport.send(self._envelope(conv, staged))

    async def _deliver(self, conv: Conversation, staged: StagedCommit, *, may_resend: bool, raise_welcome: bool) -> None:
        """Send our STAGED commit; ACCEPTED merges it, any failure is resolved by the rules above."""
        try:
            await self._send(conv, staged)
        except TransportError as exc:
            if exc.is_definite_rejection and exc.code != "epoch_advanced":
                await self._drop(conv, _E.REJECTED)
                raise
            # epoch_advanced (maybe our own earlier attempt) or ambiguous: the log decides.
            try:
                verdict = await self.find(conv, staged)
            except TransportError:
                if exc.is_definite_rejection:
                    await self._drop(conv, _E.REJECTED)
                else:
                    self.step(conv, _E.UNRESOLVED)  # stays staged (durable) until settled
                raise exc from None
            if verdict is LogVerdict.OURS:
                await self._merge_own(conv, staged, raise_welcome=raise_welcome)
                return
            if verdict is LogVerdict.THEIRS:
                await self._drop(conv, _E.REJECTED)
                raise TransportError(
                    f"another commit took epoch {staged.base_epoch} first; sync and retry", status=409, code="epoch_advanced"
                ) from exc
            if exc.is_definite_rejection:
                await self._drop(conv, _E.REJECTED)
                raise
            if not may_resend:
                self.step(conv, _E.UNRESOLVED)
                raise
            self.step(conv, _E.RESEND)
            log.info("conversation %s: commit for epoch %d not in the log; re-sending it", conv.id.as_hex(), staged.base_epoch)
            await self._deliver(conv, staged, may_resend=False, raise_welcome=raise_welcome)
            return
        await self._merge_own(conv, staged, raise_welcome=raise_welcome)

    async def find(self, conv: Conversation, staged: StagedCommit) -> LogVerdict:
        """Read the log after our cursor for the Commit of ``staged.base_epoch``. Consumes nothing."""
        cursor = conv.cursor
        page = sync_types.SYNC_PAGE
        while True:
            batch = await self.st.transport.fetch_since(conv.id, cursor, page)
            for env in batch:
                if env.kind is MessageKind.COMMIT and env.epoch == staged.base_epoch:
                    return LogVerdict.OURS if env.payload == staged.message else LogVerdict.THEIRS
                cursor = cursor.advance(env.seq)
            if len(batch) < page or not batch:
                return LogVerdict.ABSENT

    async def _merge_own(self, conv: Conversation, staged: StagedCommit, *, raise_welcome: bool) -> None:
        """STAGED -ACCEPTED-> MERGED (checkpointed), then MERGED -DELIVERED-> IDLE."""
        self.step(conv, _E.ACCEPTED)
        group = self.st.live(conv)
        group.merge_staged_commit(staged)
        self.after_commit(conv, group, own=True)
        await self.st.persist(conv)
        await self.finish(conv, raise_errors=raise_welcome)

    async def _drop(self, conv: Conversation, event: CommitEvent) -> None:
        """STAGED -REJECTED-> IDLE: discard our staged commit. If that cannot be checkpointed now,
        the commit stays staged on disk and is settled later (against the log, so still safe)."""
        self.step(conv, event)
        group = self.st.live(conv)
        group.discard_staged_commit()
        conv.set_op(None)
        try:
            await self.st.persist(conv)
        except StorageError:
            log.warning("conversation %s: could not persist dropping a refused commit; it will be settled later", conv.id.as_hex())

    def merge_received(self, conv: Conversation, group: Group, staged: StagedCommit) -> None:
        """Merge a commit read from the log: ours echoed back (STAGED -ACCEPTED-> MERGED) or another
        member's (STAGED -SUPERSEDED-> IDLE: the engine dropped ours; a STRAY op is forgotten)."""
        state = commit_state(group, conv.op)
        if state is _S.STAGED:
            self.step(conv, _E.ACCEPTED if staged.own else _E.SUPERSEDED)
        elif state is _S.STRAY and group.pending_commit is None:
            self.step(conv, _E.FORGET)
        group.merge_staged_commit(staged)
        self.after_commit(conv, group, own=staged.own)

    def after_commit(self, conv: Conversation, group: Group, *, own: bool) -> None:
        """Bookkeeping after a merged commit, ours (ACCEPTED: MERGED while its Welcome is left to
        deliver, else IDLE at once) or another member's (SUPERSEDED: our staged commit of that
        epoch is gone; a merged one keeps its Welcome to deliver)."""
        conv.desynced = False  # following the group again
        op = conv.op
        if op is not None and not op.merged:
            keep = own and op.welcome is not None and bool(op.welcome_to)
            if keep:
                conv.set_op(PendingOp(op.kind, op.base_epoch, op.welcome, op.welcome_to, op.removals, True))
            else:
                conv.set_op(None)  # SUPERSEDED, or ACCEPTED with nothing to deliver (DELIVERED at once)
        if group.active:
            conv.refresh_from_group()
        else:
            conv.set_meta(ConversationMeta(conv.id, conv.meta.name, group.epoch, 0, conv.meta.is_device_group, conv.meta.created_at_ms))
        if conv.history is not None:
            # Imported history lives as long as the live group keeps its own past epochs.
            conv.request_prune(group.epoch - group.config.max_past_epochs)

    async def finish(self, conv: Conversation, *, raise_errors: bool) -> None:
        """MERGED -DELIVERED-> IDLE: deliver the Welcome of our merged commit, then forget the op
        (a failed delivery is logged, and raised with ``raise_errors``; the commit stays)."""
        op = conv.op
        if op is None or not op.merged:
            return
        self.step(conv, _E.DELIVERED)
        error: TransportError | None = None
        if op.welcome is not None and op.welcome_to:
            env = MessageEnvelope(conv.id, op.base_epoch + 1, MessageKind.WELCOME, self.st.device_id(), 0, conv.hlc, op.welcome)
            try:
                await self.st.transport.set_next_welcome_recipients(conv.id, list(op.welcome_to))
                await self.st.transport.send(env)
            except TransportError as exc:
                log.warning("conversation %s: Welcome delivery failed (%s); the commit stays", conv.id.as_hex(), exc.code)
                error = exc
        conv.set_op(None)
        await self.st.persist(conv)
        if error is not None and raise_errors:
            raise error

    def reset(self, conv: Conversation) -> None:
        """any -RESET-> IDLE: the conversation's group was replaced; no commit of ours is in flight."""
        self.step(conv, _E.RESET)
        conv.set_op(None)

    async def settle(self, conv: Conversation) -> None:
        """Bring an interrupted commit of ours (crash, ambiguous failure) back to IDLE: a MERGED one
        delivers its Welcome; a STAGED one is merged if the log has it, dropped if another commit
        took its epoch, else re-sent once; a STRAY one is resumed or forgotten first."""
        group = self.st.group(conv)
        if group is None:
            return
        state = commit_state(group, conv.op)
        if state is _S.IDLE:
            return
        if state is _S.MERGED:
            await self.finish(conv, raise_errors=False)
            return
        staged = group.pending_commit
        if staged is None:  # STRAY: an op whose commit is gone
            self.step(conv, _E.FORGET)
            conv.set_op(None)
            await self.st.persist(conv)
            return
        if state is _S.STRAY:
            self.step(conv, _E.RESUME)
            conv.set_op(pending_op(CommitKind.RESUME, conv, group, staged, deliver_welcome=True))
        verdict = await self.find(conv, staged)
        if verdict is LogVerdict.OURS:
            await self._merge_own(conv, staged, raise_welcome=False)
        elif verdict is LogVerdict.THEIRS:
            await self._drop(conv, _E.REJECTED)
        else:
            await self._deliver(conv, staged, may_resend=False, raise_welcome=False)
