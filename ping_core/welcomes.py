"""Joining by Welcome (RFC 9420 §12.4.3.1) and the pending invitations a Welcome becomes.

Guarantees:

* A Welcome joins only with one of this device's KeyPackages; the joined group's id must be the
  envelope's conversation id; every leaf of the tree must carry its account's binding (a leaf
  made before bindings is tolerated as an unverified member) and no leaf's lifetime may span
  more than Ping's maximum (§7.2). A one-time KeyPackage's private keys are deleted in the same
  checkpoint that stores the group (a last-resort one is kept).
* A Welcome into a DeviceGroup is accepted only for this account's own DeviceGroup and only
  when every member is a device of this account (``IdentityError``).
* A Welcome for a conversation held history-only upgrades it; one for a conversation we are an
  active member of is refused (``InvalidInput``); one after we were removed rejoins.
* An invitation is checked as a join is, without joining; joining it is the user's decision.
"""

from __future__ import annotations

import logging
from typing import Iterable

from ping_core.checks import check_conv_id, check_now
from ping_core.clientstate import ClientState
from ping_core.commitflow import CommitFlow
from ping_core.conversation import MAX_LEAF_LIFETIME_S, Conversation, StoreUndo
from ping_core.conversation_name import check_extensions, name_of
from ping_core.errors import IdentityError, InvalidInput, MlsError, PingError, StorageError, UnknownConversation, MlsReason
from ping_core.identity import LEGACY_CREDENTIAL_IDENTITY_LEN, claimed_user_of_credential
from ping_core.ids import ConversationId, DeviceId
from ping_core.invitation import INVITATIONS_PREFIX, MAX_INVITATIONS, Invitation, decode_invitation, encode_invitation
from ping_core.keypackages import KeyPackages
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.meta import ConversationMeta
from ping_core.mls.group import Group, welcome_key_package_refs
from ping_core.wallclock import wall_clock_s

__all__ = ["Welcomes"]

log = logging.getLogger("ping_core.client")


class Welcomes:
    """Joins and invitations of one client."""

    def __init__(self, state: ClientState, commits: CommitFlow, key_packages: KeyPackages) -> None:
        self.st = state
        self.commits = commits
        self.kps = key_packages

    async def join(self, welcome_envelope: MessageEnvelope, now_ms: int, *, relink: bool) -> ConversationId:
        """Join (or rejoin) from a Welcome envelope. ``relink``: our one-member DeviceGroup may be
        replaced by the account's (a linking ticket)."""
        st = self.st
        now_ms = check_now(now_ms)
        group, used = self.group_from_welcome(welcome_envelope)
        conv_id = ConversationId(group.group_id)
        if st.store.get(INVITATIONS_PREFIX + conv_id.as_hex()) is not None:
            used = [*used, INVITATIONS_PREFIX + conv_id.as_hex()]  # accepted: forgotten with the join
        async with st.create_lock:
            existing = st.convs.get(conv_id)
            if existing is None:
                meta = ConversationMeta(
                    conv_id, name_of(group.extensions), group.epoch, group.member_count, conv_id.is_device_group_id, now_ms
                )
                undo = StoreUndo(st.store)
                conv = Conversation.create(st.store, st.crypto, group, meta, undo, joined_epoch=group.epoch, verifier=st.verifier)
                st.install(conv)
                for key in used:
                    undo.delete(key)
                await st.checkpoint(undo)
                st.convs[conv_id] = conv
                return conv_id
        async with existing.lock:
            await self._rejoin(existing, group, used, relink=relink)
        return conv_id

    def group_from_welcome(self, env: MessageEnvelope) -> tuple[Group, list[str]]:
        """The group a Welcome envelope joins with one of this device's KeyPackages, checked
        against the envelope (and, for a DeviceGroup, against this account), and the records of
        the one-time KeyPackages it used (to delete with the join). Nothing is stored."""
        if not isinstance(env, MessageEnvelope):
            raise InvalidInput("join_conversation needs a MessageEnvelope")
        if env.kind is not MessageKind.WELCOME:
            raise InvalidInput("expected a Welcome envelope")
        try:
            refs = welcome_key_package_refs(env.payload)
        except MlsError:
            raise InvalidInput("the envelope's payload is not an MLS Welcome") from None
        bundles = self.kps.bundles_for(refs)
        if not bundles:
            raise MlsError("no KeyPackage of this device matches the Welcome", reason=MlsReason.BAD_WELCOME)
        st = self.st
        # No check of the received tree's lifetimes against the clock: a member who only chats
        # keeps its KeyPackage's 90-day lifetime in its leaf, and one such member would make the
        # conversation unjoinable (§7.3 only recommends the check). Members are authenticated by
        # their device bindings. Their spans are checked: none may exceed Ping's maximum (§7.2).
        # Every leaf of the tree must carry its account's binding (a leaf made before bindings
        # existed is tolerated as an unverified member); every later change is checked strictly.
        group = Group.join(
            st.crypto,
            env.payload,
            {ref: b for ref, (_, b) in bundles.items()},
            st.signer,
            clock=wall_clock_s,
            check_lifetimes=False,
            max_lifetime_s=MAX_LEAF_LIFETIME_S,
            leaf_check=st.verifier.check_joined_leaf,
            extensions_check=check_extensions,
        )
        group.leaf_check = st.verifier.check_leaf
        st.adopt(group)
        if len(group.group_id) != ConversationId.LENGTH:
            raise InvalidInput("the Welcome's group id is not a Ping conversation id")
        conv_id = ConversationId(group.group_id)
        if conv_id != env.conversation_id:
            raise InvalidInput("the envelope names another conversation than its Welcome")
        if conv_id.is_device_group_id:
            self._check_device_group(conv_id, group)
        return group, [key for key, _ in bundles.values() if self.kps.is_one_time(key)]

    async def _rejoin(self, conv: Conversation, group: Group, used: list[str], *, relink: bool) -> None:
        """Install a joined group in a conversation we hold (history-only, removed, or our own
        one-member DeviceGroup being replaced by the account's when linking). Caller holds the lock."""
        old = self.st.group(conv)
        replaceable = relink and conv.id == self.st.dg_id and old is not None and old.member_count == 1
        if old is not None and old.active and not replaceable:
            raise InvalidInput(f"already a member of conversation {conv.id.as_hex()}")
        undo = StoreUndo(self.st.store)
        conv.replace_group(group, undo)
        conv.set_joined_epoch(group.epoch)
        conv.refresh_from_group()
        self.commits.reset(conv)
        conv.prune_history(undo, group.epoch - group.config.max_past_epochs)
        for key in used:
            undo.delete(key)
        await self.st.persist(conv, undo)

    def _check_device_group(self, conv_id: ConversationId, group: Group) -> None:
        """Every member of our DeviceGroup must be a device of this account: proven by its
        binding, or (a leaf made before bindings, only ever added by our own devices) naming it."""
        if conv_id != self.st.dg_id:
            raise IdentityError("a Welcome into another account's DeviceGroup")
        for m in group.members():
            user = self.st.verifier.user_of(m)
            if user is None and len(m.identity) == LEGACY_CREDENTIAL_IDENTITY_LEN:
                user = claimed_user_of_credential(m.identity)
            if user != self.st.user_id():
                raise IdentityError("the DeviceGroup has a member that is not a device of this account")

    # -- invitations ---------------------------------------------------------------

    async def add_invitations(self, welcomes: Iterable[MessageEnvelope], now_ms: int) -> list[Invitation]:
        """``MessagingClient.add_invitations`` once ``now_ms`` is checked."""
        st = self.st
        undo = StoreUndo(st.store)
        out: list[Invitation] = []
        count = len(st.store.keys(INVITATIONS_PREFIX))
        for env in welcomes:
            if not isinstance(env, MessageEnvelope) or env.kind is not MessageKind.WELCOME:
                raise InvalidInput("add_invitations needs Welcome envelopes")
            key = INVITATIONS_PREFIX + env.conversation_id.as_hex()
            if env.conversation_id.is_device_group_id or st.store.get(key) is not None:
                continue
            group = self._invited_group(env)
            if group is None:
                continue
            if count >= MAX_INVITATIONS:
                log.warning("too many pending invitations; a Welcome for %s is left out", env.conversation_id.as_hex())
                continue
            inviter = next((m for m in group.members() if DeviceId.from_public_key(m.signature_key) == env.sender_device), None)
            inv = Invitation(
                env.conversation_id,
                st.verifier.user_of(inviter) if inviter is not None else None,
                env.sender_device,
                name_of(group.extensions),
                group.member_count,
                now_ms,
            )
            undo.put(key, encode_invitation(env, inv))
            count += 1
            out.append(inv)
        if out:
            await st.checkpoint(undo)
        return out

    def _invited_group(self, env: MessageEnvelope) -> Group | None:
        """The group ``env`` would join, checked as a join is; ``None`` (logged) when it fails or we
        are an active member already."""
        existing = self.st.convs.get(env.conversation_id)
        try:
            if existing is not None and (g := self.st.group(existing)) is not None and g.active:
                return None
            return self.group_from_welcome(env)[0]
        except PingError as exc:
            log.warning("a Welcome for %s is refused: %s: %s", env.conversation_id.as_hex(), type(exc).__name__, exc)
            return None

    def invitations(self) -> list[Invitation]:
        """The pending invitations, oldest first (no network)."""
        out = []
        for _, raw in self.st.store.items(INVITATIONS_PREFIX):
            try:
                out.append(decode_invitation(raw)[1])
            except PingError:
                log.warning("a stored invitation is corrupt; ignored")
        return sorted(out, key=lambda i: (i.received_ms, i.conversation_id.value))

    def _invitation(self, conv_id: object) -> tuple[str, MessageEnvelope]:
        key = INVITATIONS_PREFIX + check_conv_id(conv_id).as_hex()
        raw = self.st.store.get(key)
        if raw is None:
            raise UnknownConversation(f"no pending invitation to {conv_id}")
        try:
            return key, decode_invitation(raw)[0]
        except InvalidInput:
            raise StorageError("the stored invitation is corrupt") from None

    async def accept(self, conv_id: ConversationId, now_ms: int) -> ConversationId:
        """Join a pending invitation; a Welcome that no longer joins raises and is forgotten."""
        key, env = self._invitation(conv_id)
        try:
            return await self.join(env, now_ms, relink=False)  # deletes the invitation with the join
        except (MlsError, IdentityError, InvalidInput):
            undo = StoreUndo(self.st.store)
            undo.delete(key)
            await self.st.checkpoint(undo)
            raise

    async def decline(self, conv_id: ConversationId) -> None:
        """Refuse a pending invitation (the delivery service ends the membership; the invitation
        and the one-time KeyPackage it would have used are deleted)."""
        key, env = self._invitation(conv_id)
        await self.st.transport.leave_conversation(env.conversation_id)
        undo = StoreUndo(self.st.store)
        undo.delete(key)
        try:
            refs = welcome_key_package_refs(env.payload)
        except MlsError:
            refs = []
        for bundle_key, _ in self.kps.bundles_for(refs).values():
            if self.kps.is_one_time(bundle_key):
                undo.delete(bundle_key)
        await self.st.checkpoint(undo)
