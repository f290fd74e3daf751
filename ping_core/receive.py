"""Receiving: one envelope of a conversation's log, checked, processed, and durable with its effect.

Guarantees (every method: caller holds ``conv.lock``):

* **Sender checks before any change.** The envelope must agree with its MLS message
  (conversation, epoch, kind); its ``sender_device`` must be the MLS sender (DeviceId = SHA-256
  of the leaf signature key, RFC 9420 §5.3 credentials being the account binding); an
  application message must carry the envelope's HLC authenticated (MLS authenticated data,
  §6.3.2); a proposal must be of a kind this SDK can commit (:data:`COMMITTABLE_PROPOSALS`).
  The checks run in the engine's ``check_sender`` hook, before the group changes, so a refused
  envelope leaves the conversation exactly as it was, in memory and in storage.
* **Later epochs wait.** An envelope of an epoch after ours is held durably until the commit
  that opens its epoch is processed (at most ``MAX_EPOCHS_AHEAD`` ahead).
* **Durable delivery.** A decrypted message is written to the conversation's inbox in the same
  working-set change as the state that consumed it.
"""

from __future__ import annotations

from ping_core.clientstate import ClientState
from ping_core.clock import Hlc
from ping_core.commitflow import CommitFlow
from ping_core.conversation import Conversation, StoreUndo, hlc_from_aad, peek_mls
from ping_core.errors import IdentityError, InvalidInput, MlsError, MlsReason, PingError
from ping_core.identity import DeviceRevocation
from ping_core.ids import DeviceId, UserId
from ping_core.unacked import inbox_name
from ping_core.message import IncomingMessage, MessageEnvelope, MessageKind
from ping_core.mls.group import ApplicationMessage, Group, SenderCheck, SenderInfo, StagedCommit
from ping_core.mls.structs import Add, ContentType, GroupContextExtensions, Remove, SenderType, Update
from ping_core.sync import SyncProblem, SyncProblemKind

__all__ = ["Receiver", "WaitForWelcome", "COMMITTABLE_PROPOSALS", "MAX_EPOCHS_AHEAD", "report"]

#: Proposals accepted from other members: the ones this SDK can commit. A ReInit (this SDK
#: cannot move a conversation to a new group), a PreSharedKey (external PSKs are not
#: distributed) or any other kind is refused when it arrives, so it can never stall sending.
COMMITTABLE_PROPOSALS = (Add, Remove, Update, GroupContextExtensions)
#: An envelope further ahead of our epoch than this is not held.
MAX_EPOCHS_AHEAD = 1000


class WaitForWelcome(InvalidInput):
    """A history-only conversation met a handshake message: it must wait for its own Welcome."""


def report(
    conv: Conversation, kind: SyncProblemKind, env: MessageEnvelope | None, detail: str, reason: MlsReason | None = None
) -> None:
    """Record a problem of following ``conv``'s log for the next sync report (a DESYNCED one marks
    the conversation as not following its group until a commit is processed or we rejoin)."""
    if kind is SyncProblemKind.DESYNCED:
        conv.desynced = True
    conv.problems.append(
        SyncProblem(
            conv.id, kind, env.seq if env is not None else None, env.sender_device if env is not None else None, detail, reason
        )
    )


def report_refused(conv: Conversation, env: MessageEnvelope, exc: PingError) -> None:
    """Report an envelope refused for good as UNREADABLE: the error's class as the detail (never
    its message, which may quote the message's fields) and, for an engine refusal, its reason."""
    report(conv, SyncProblemKind.UNREADABLE, env, type(exc).__name__, exc.reason if isinstance(exc, MlsError) else None)


class Receiver:
    """Processes envelopes for one client."""

    def __init__(self, state: ClientState, commits: CommitFlow) -> None:
        self.st = state
        self.commits = commits

    async def process_envelope(self, conv: Conversation, env: MessageEnvelope, now_ms: int) -> IncomingMessage | None:
        """``MessagingClient.process_envelope`` once its input is checked (takes ``conv.lock``)."""
        st = self.st
        async with conv.lock:
            undo = StoreUndo(st.store)
            # Without explicit acks this call's return acknowledges the message, in the same
            # checkpoint that would store it: so it is not stored at all.
            msg = self.process_one(conv, env, now_ms, undo, keep=st.explicit_ack)
            if env.kind is MessageKind.COMMIT:
                self.release_held(conv, now_ms, undo, keep=True)  # returned by the next sync
            await st.persist(conv, undo)
            if st.revoked_by is not None:
                await st.lock_out()
            if conv.op is not None and conv.op.merged:
                await self.commits.finish(conv, raise_errors=False)
            if msg is not None and st.explicit_ack:
                conv.inbox.hand_out(inbox_name(msg))  # only now: if we raised, the next sync returns it
            return msg

    def process_one(
        self, conv: Conversation, env: MessageEnvelope, now_ms: int, undo: StoreUndo, *, in_order: bool = False, keep: bool = True
    ) -> IncomingMessage | None:
        """Process ``env`` and write the result to the working set (synchronous: no other task
        sees a half-applied envelope). On failure the cached conversation is restored.

        ``in_order``: the envelope comes from ``fetch_since`` (the log is
        authoritative, the cursor moves to it); otherwise (a live push) the
        cursor only moves over contiguous positions, so a gap is still fetched
        by the next sync. ``keep``: store the message in the inbox with that state."""
        seq = env.seq
        if seq and (seq <= conv.cursor.seq or seq in conv.seen_above_cursor):
            return None  # already consumed
        msg = None  # our own application message: its keys are gone, nothing to deliver
        if env.sender_device != self.st.device_id() or env.kind is not MessageKind.APPLICATION:
            msg = self._process_new(conv, env, now_ms, undo)
        if seq:
            if in_order or seq == conv.cursor.seq + 1:
                cursor = conv.cursor.advance(seq)
                while cursor.seq + 1 in conv.seen_above_cursor:
                    cursor = cursor.advance(cursor.seq + 1)
                conv.set_cursor(cursor)
            else:
                conv.seen_above_cursor.add(seq)  # out of order (a live push): the cursor waits for the gap
                undo.seen.append((conv.seen_above_cursor, seq))
        if msg is not None and keep:
            conv.keep_incoming(msg, undo)  # in the inbox, durable with the state that consumed it
        conv.save(undo)
        return msg

    def _process_new(self, conv: Conversation, env: MessageEnvelope, now_ms: int, undo: StoreUndo) -> IncomingMessage | None:
        peek = peek_mls(env.payload)
        if peek.group_id != conv.id.value:
            raise InvalidInput("the payload is for another conversation than the envelope")
        if peek.epoch != env.epoch or peek.kind is not env.kind:
            raise InvalidInput("the envelope's epoch or kind disagrees with its MLS message")
        group = self.st.group(conv)
        if group is not None and group.active and env.epoch > group.epoch and env.seq:
            self._hold(conv, group, env, undo)
            return None
        try:
            return self.process_mls(conv, group, env, now_ms, undo)
        except PingError:
            raise  # refused before anything changed (see process_mls)
        except BaseException:
            conv.reload()  # not a refusal: do not trust the cached state
            raise

    @staticmethod
    def _hold(conv: Conversation, group: Group, env: MessageEnvelope, undo: StoreUndo) -> None:
        """Keep an envelope of a later epoch than ours until the commit that opens it (its log
        position is consumed). A later epoch seen without its commit means this device does not
        follow the group any more: reported as DESYNCED (once per epoch of ours)."""
        if env.epoch > group.epoch + MAX_EPOCHS_AHEAD or not conv.hold(env, undo):
            report(conv, SyncProblemKind.UNREADABLE, env, "of an epoch too far ahead, or too many held")
            return
        report(conv, SyncProblemKind.HELD, env, f"epoch {env.epoch}, ours is {group.epoch}")
        if env.kind is MessageKind.COMMIT and env.epoch > group.epoch:
            report(conv, SyncProblemKind.DESYNCED, env, f"a commit of epoch {env.epoch} came before one of {group.epoch}")

    def release_held(self, conv: Conversation, now_ms: int, undo: StoreUndo, keep: bool) -> list[IncomingMessage]:
        """Process the held envelopes our epoch has reached (after a commit), oldest first; each is
        processed or reported UNREADABLE, and its record goes in the same checkpoint."""
        out: list[IncomingMessage] = []
        while True:
            group = self.st.group(conv)
            if group is None or not group.active:
                return out
            ready = conv.held(group.epoch)
            if not ready:
                return out
            progressed = False
            for key, env in ready:
                undo.delete(key)
                if env is None or env.conversation_id != conv.id:
                    continue
                if env.epoch < group.epoch and env.kind is not MessageKind.APPLICATION:
                    report(conv, SyncProblemKind.UNREADABLE, env, "its epoch ended before it could be processed")
                    continue
                try:
                    msg = self.process_mls(conv, group, env, now_ms, undo)
                except PingError as exc:
                    report_refused(conv, env, exc)
                    continue
                if msg is not None:
                    if keep:
                        conv.keep_incoming(msg, undo)
                    out.append(msg)
                progressed = progressed or self.st.group(conv) is not group or group.epoch != env.epoch
                if group.epoch != env.epoch:
                    break  # a held commit moved us on: re-read what is ready now
            conv.save(undo)
            if not progressed:
                return out

    def process_mls(
        self, conv: Conversation, group: Group | None, env: MessageEnvelope, now_ms: int, undo: StoreUndo
    ) -> IncomingMessage | None:
        """Process ``env``'s MLS message. Every check that can refuse it runs in the engine's
        ``check_sender`` hook, before the group changes: a ``PingError`` means nothing changed."""
        history = conv.history
        if group is None:
            if env.kind is not MessageKind.APPLICATION:
                raise WaitForWelcome(
                    f"conversation {conv.id.as_hex()} is history-only: a handshake message waits for this device's Welcome"
                )
            return self._decrypt_history(conv, env, now_ms)
        if env.epoch < conv.joined_epoch:
            if env.kind is MessageKind.APPLICATION and history is not None and env.epoch in history.epochs:
                return self._decrypt_history(conv, env, now_ms)
            return None  # from before we joined: not for us
        if env.kind is MessageKind.COMMIT and env.epoch < group.epoch:
            return None  # a commit we are already past (exactly one commit per epoch)
        facts: list[tuple[UserId, Hlc]] = []
        revocations: list[DeviceRevocation] = []
        out = group.process_message(env.payload, merge=False, check_sender=self.sender_check(conv, env, facts, revocations))
        if isinstance(out, StagedCommit):
            for rev in revocations:
                self.st.learn_revocation(rev, undo)
            for leaf_index in out.result.removed:
                m = group.member(leaf_index)
                user = self.st.verifier.user_of(m) if m is not None else None
                if m is not None and user is not None:
                    conv.departed[conv.device_of_key(m.signature_key)] = user
            self.commits.merge_received(conv, group, out)
            return None
        if isinstance(out, ApplicationMessage):
            return self._delivered(conv, env, facts[-1], out, now_ms)
        return None  # a proposal (stored) or our own commit, already merged

    def sender_check(
        self,
        conv: Conversation,
        env: MessageEnvelope,
        facts: list[tuple[UserId, Hlc]],
        revocations: list[DeviceRevocation] | None = None,
    ) -> SenderCheck:
        """The SDK's sender rules as the engine's ``check_sender`` hook for ``env``: the MLS
        sender must be ``env.sender_device``; proposals must come from members and be of a kind
        this SDK can commit (see :data:`COMMITTABLE_PROPOSALS`); an application message's
        authenticated HLC must be the envelope's and its sender's account must be verified (the
        sender's account and HLC are appended to ``facts``). A commit's authenticated data may
        carry an account's revocation of a device (appended to ``revocations`` when it verifies)."""

        def check(info: SenderInfo) -> None:
            if conv.device_of_key(info.signature_key) != env.sender_device:
                raise InvalidInput("the envelope's sender_device is not the MLS sender of its message")
            if info.content_type == ContentType.PROPOSAL and not info.own:
                if info.sender.sender_type != SenderType.MEMBER:
                    raise InvalidInput("only member proposals are accepted")
                if not isinstance(info.proposal, COMMITTABLE_PROPOSALS):
                    raise InvalidInput(f"a {type(info.proposal).__name__} proposal is not accepted (this SDK cannot commit it)")
            elif info.content_type == ContentType.APPLICATION:
                hlc = hlc_from_aad(info.authenticated_data)
                if hlc is None:
                    hlc = env.hlc  # a sender that does not authenticate its clock
                elif hlc != env.hlc:
                    raise InvalidInput("the envelope's HLC is not the one authenticated in the message")
                facts.append((self._user_of(conv, env.sender_device), hlc))
            elif info.content_type == ContentType.COMMIT and revocations is not None:
                rev = self.st.verifier.parse(info.authenticated_data)
                if rev is not None:
                    revocations.append(rev)

        return check

    def _user_of(self, conv: Conversation, device: DeviceId) -> UserId:
        """The verified account of a sending device (``IdentityError`` when its leaf proves none)."""
        group = conv.group
        leaf = conv.leaves.get(device)
        if group is not None and leaf is not None:
            m = group.member(leaf)
            if m is not None:
                user = self.st.verifier.user_of(m)
                if user is None:
                    raise IdentityError("the sender's leaf carries no valid binding to an account; its message is refused")
                return user
        history = conv.history
        if history is not None:
            for info in history.roster:
                if info.device_id == device and info.user_id is not None:
                    return info.user_id
        user = conv.departed.get(device)
        if user is None:
            raise MlsError(
                "the sender left the conversation and its account is not known any more",
                reason=MlsReason.UNKNOWN_SENDER,
            )
        return user

    @staticmethod
    def _delivered(
        conv: Conversation, env: MessageEnvelope, facts: tuple[UserId, Hlc], app: ApplicationMessage, now_ms: int
    ) -> IncomingMessage:
        """The IncomingMessage of an accepted application message; this device's clock moves past the sender's."""
        user, hlc = facts
        conv.set_hlc(conv.hlc.receive(hlc, now_ms))
        return IncomingMessage(conv.id, user, env.sender_device, app.data, hlc, env.seq, app.epoch)

    def _decrypt_history(self, conv: Conversation, env: MessageEnvelope, now_ms: int) -> IncomingMessage | None:
        history = conv.history
        if history is None or env.epoch not in history.epochs:
            if conv.group is None and (history is None or env.epoch > max(history.epochs)):
                # A later epoch: this device's own Welcome will bring its keys. Do not consume it.
                raise WaitForWelcome(f"conversation {conv.id.as_hex()}: epoch {env.epoch} waits for this device's Welcome")
            return None  # an epoch before everything this device holds keys for
        facts: list[tuple[UserId, Hlc]] = []
        app = history.decrypt(env.payload, self.sender_check(conv, env, facts))
        return self._delivered(conv, env, facts[-1], app, now_ms)
