"""Pending proposals never stall a conversation: ``send`` commits other members' proposals first
(send-then-merge; a lost race is caught up and retried), ``sync`` commits them by policy (the
designated committer at once, the others after ``PROPOSAL_COMMIT_DELAY_MS``), and proposals this
SDK cannot commit are refused when they arrive. The proposals come from a raw engine ``Group``
member (as a ts-mls member would send them)."""

from __future__ import annotations

import time

import dataclasses
from typing import Any

import pytest

from ping_core.conversation_name import PING_CAPABILITIES
from ping_core.client import PROPOSAL_COMMIT_DELAY_MS
from ping_core.clock import Hlc
from ping_core.identity import credential_identity
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.mls.crypto import default_provider
from ping_core.mls.group import (
    ApplicationMessage,
    Group,
    KeyPackageBundle,
    ProposalMessage,
    Signer,
    generate_key_package,
)
from ping_core.mls.structs import Credential
from ping_core.sync import SyncCursor

from .support import NOW, Crash, Device, World, assert_agree, pair

crypto = default_provider()


class RawMember:
    """A member of an SDK conversation that runs the bare engine (no SDK): it joins by Welcome,
    follows the log itself and sends proposals the SDK would never send."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.signer = Signer(
            Credential.basic(credential_identity(device.identity.device_binding(device.local.device_id))),
            device.local.signing_secret,
            device.local.signing_public_key,
        )
        self.bundle: KeyPackageBundle = generate_key_package(crypto, self.signer, now=int(time.time()), capabilities=PING_CAPABILITIES)
        self.group: Group | None = None
        self.cursor = SyncCursor()
        self.received: list[bytes] = []

    @property
    def key_package(self) -> bytes:
        return self.bundle.message()

    async def join(self) -> None:
        (welcome,) = [w for w in await self.device.raw_transport.fetch_welcomes() if not w.conversation_id.is_device_group_id]
        self.group = Group.join(crypto, welcome.payload, self.bundle, self.signer, clock=time.time)
        # As Ping clients send them: handshake messages the delivery service can verify.
        self.group.config = dataclasses.replace(self.group.config, encrypt_handshake=False)
        self.conv = welcome.conversation_id
        self.cursor = SyncCursor()
        await self.follow(skip_before=self.group.epoch)

    async def follow(self, skip_before: int | None = None) -> None:
        """Process the conversation's log since the cursor (application data is kept)."""
        assert self.group is not None
        batch = await self.device.raw_transport.fetch_since(self.conv, self.cursor, 1000)
        for env in batch:
            self.cursor = self.cursor.advance(env.seq)
            if skip_before is not None and env.epoch < skip_before:
                continue
            if env.kind is MessageKind.APPLICATION and env.sender_device == self.device.device_id:
                continue
            out = self.group.process_message(env.payload)
            if isinstance(out, ApplicationMessage):
                self.received.append(out.data)

    async def post(self, proposal: ProposalMessage) -> MessageEnvelope:
        assert self.group is not None
        env = MessageEnvelope(self.conv, self.group.epoch, MessageKind.PROPOSAL, self.device.device_id, 0, Hlc(NOW, 0), proposal.message)
        seq = await self.device.raw_transport.send(env)
        return env.with_seq(seq)


async def _setup(*, crashable: bool = False) -> tuple[World, Device, Device, RawMember, ConversationId]:
    """alice (leaf 0) and bob (leaf 1) on the SDK, dave (leaf 2) on the raw engine."""
    w = World()
    a = await w.device("alice")
    b = await w.device("bob", crashable=crashable)
    conv = await pair(w, a, b)
    dave = RawMember(await w.device("dave"))
    await a.client.add_members(conv, [(dave.device.device_id, dave.key_package)], NOW)
    await dave.join()
    await b.sync()
    assert dave.group is not None and dave.group.own_leaf_index == 2
    return w, a, b, dave, conv


def _authenticators(devices: list[Device], dave: RawMember, conv: ConversationId) -> set[bytes]:
    assert dave.group is not None
    return {d.epoch_authenticator(conv) for d in devices} | {dave.group.epoch_authenticator}


async def test_send_commits_a_pending_proposal_first() -> None:
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    await dave.post(dave.group.propose_update())
    # bob is neither the designated committer nor past the delay: his sync only stores it.
    assert await b.client.sync_conversations(NOW) == []
    group = b.client._state.convs[conv].group
    assert group is not None and len(group.pending_proposals) == 1
    epoch = group.epoch
    env = await b.client.send(conv, b"not stalled", NOW)
    assert env.epoch == epoch + 1 and group.pending_proposals == []
    log = w.service.log(conv)
    assert [e.kind for e in log[-3:]] == [MessageKind.PROPOSAL, MessageKind.COMMIT, MessageKind.APPLICATION]
    assert [m.plaintext for m in await a.sync()] == [b"not stalled"]
    await dave.follow()
    assert dave.received == [b"not stalled"]
    assert len(_authenticators([a, b], dave, conv)) == 1  # dave's Update was committed: everyone agrees


async def test_send_that_loses_the_race_catches_up_and_retries() -> None:
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    await dave.post(dave.group.propose_update())
    await b.client.sync_conversations(NOW)
    # Meanwhile alice (not synced) renames the conversation and says something: her commit wins.
    await a.client.set_conversation_name(conv, "alice first", NOW)
    await a.client.send(conv, b"while you were away", NOW)
    env = await b.client.send(conv, b"after the race", NOW)
    kinds = [(e.kind, e.sender_device) for e in w.service.log(conv)]
    assert (MessageKind.COMMIT, b.device_id) not in kinds[-3:]  # bob's commit lost; alice's cleared the proposal
    assert env.epoch == b.client._state.convs[conv].group.epoch  # type: ignore[union-attr]
    assert b.client._state.convs[conv].meta.name == "alice first"
    # What bob decrypted while catching up waits in the inbox and comes first at his next sync.
    assert [m.plaintext for m in await b.client.pending_messages()] == [b"while you were away"]
    assert [m.plaintext for m in await a.sync()] == [b"after the race"]
    await dave.follow()
    assert len(_authenticators([a, b], dave, conv)) == 1


async def test_send_retries_when_the_winning_commit_leaves_proposals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice's winning commit was built before she saw dave's second proposal: bob catches up,
    finds a proposal still pending, and commits that one."""
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    await dave.post(dave.group.propose_update())
    await b.client.sync_conversations(NOW)
    # alice commits (without seeing dave's proposal), then dave proposes again in the new epoch.
    await a.client.set_conversation_name(conv, "x", NOW)
    await dave.follow()
    await dave.post(dave.group.propose_update())
    epoch_before = w.service.log(conv)[-1].epoch
    env = await b.client.send(conv, b"hello", NOW)
    assert env.epoch == epoch_before + 1
    commits = [e for e in w.service.log(conv) if e.kind is MessageKind.COMMIT]
    assert commits[-1].sender_device == b.device_id
    await a.sync()
    await dave.follow()
    assert len(_authenticators([a, b], dave, conv)) == 1


async def test_sync_policy_designated_committer_commits_at_once() -> None:
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    await dave.post(dave.group.propose_update())
    await b.sync()  # bob (leaf 1) waits
    assert [e.kind for e in w.service.log(conv)][-1] is MessageKind.PROPOSAL
    await a.sync()  # alice (leaf 0) is the designated committer
    last = w.service.log(conv)[-1]
    assert last.kind is MessageKind.COMMIT and last.sender_device == a.device_id
    await b.sync()
    await dave.follow()
    assert len(_authenticators([a, b], dave, conv)) == 1


async def test_sync_policy_others_commit_after_the_delay() -> None:
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    await dave.post(dave.group.propose_update())
    await b.client.sync_conversations(NOW)
    await b.client.sync_conversations(NOW + PROPOSAL_COMMIT_DELAY_MS - 1)
    assert w.service.log(conv)[-1].kind is MessageKind.PROPOSAL
    assert await b.client.commit_pending_proposals(NOW + PROPOSAL_COMMIT_DELAY_MS - 1) == []
    assert await b.client.commit_pending_proposals(NOW + PROPOSAL_COMMIT_DELAY_MS) == [conv]
    last = w.service.log(conv)[-1]
    assert last.kind is MessageKind.COMMIT and last.sender_device == b.device_id
    await a.sync()
    await dave.follow()
    assert len(_authenticators([a, b], dave, conv)) == 1


async def test_sync_without_commit_proposals_only_stores_them() -> None:
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    await dave.post(dave.group.propose_update())
    await a.client.sync_conversations(NOW, commit_proposals=False)
    assert w.service.log(conv)[-1].kind is MessageKind.PROPOSAL
    assert await a.client.commit_pending_proposals(NOW) == [conv]
    assert w.service.log(conv)[-1].kind is MessageKind.COMMIT


async def test_designated_committer_skips_a_member_being_removed() -> None:
    """dave proposes removing alice (leaf 0): bob (leaf 1) is then the designated committer,
    and the removal is announced to the delivery service with bob's commit."""
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    await dave.post(dave.group.propose_remove(0))
    await b.sync()
    last = w.service.log(conv)[-1]
    assert last.kind is MessageKind.COMMIT and last.sender_device == b.device_id
    assert w.service.members(conv) == {b.device_id, dave.device.device_id}
    await dave.follow()
    assert len(_authenticators([b], dave, conv)) == 1


async def test_a_proposed_add_gets_its_welcome() -> None:
    """dave proposes adding erin's device; the SDK commit that includes it primes the delivery
    service with erin's device id, so erin's Welcome reaches her inbox."""
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    erin = await w.device("erin")
    await dave.post(dave.group.propose_add(await erin.claim()))
    await b.sync()
    await b.client.send(conv, b"welcome erin", NOW)
    assert await erin.join_welcomes() == [conv]
    await a.sync()
    await dave.follow()
    assert len(_authenticators([a, b, erin], dave, conv)) == 1
    await erin.client.send(conv, b"hi all", NOW)
    assert [m.plaintext for m in await b.sync()] == [b"hi all"]


@pytest.mark.parametrize("kind", ["reinit", "external_psk"])
async def test_uncommittable_proposals_are_refused_and_do_not_stall(kind: str) -> None:
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    proposal = dave.group.propose_reinit() if kind == "reinit" else dave.group.propose_external_psk(b"psk id")
    await dave.post(proposal)
    assert await b.sync() == []
    group = b.client._state.convs[conv].group
    assert group is not None and group.pending_proposals == []  # refused by the sender check, never stored
    assert b.client._state.convs[conv].cursor.seq == w.service.log(conv)[-1].seq  # and skipped for good
    await b.client.send(conv, b"still sending", NOW)
    assert [m.plaintext for m in await a.sync()] == [b"still sending"]


async def test_uncommittable_pending_proposal_falls_back_to_an_empty_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    await dave.post(dave.group.propose_update())
    await b.client.sync_conversations(NOW)
    real = Group.commit
    calls: list[bool] = []

    def commit(self: Group, **kw: Any) -> Any:
        calls.append(kw.get("include_pending", True))
        if kw.get("include_pending", True):
            from ping_core.errors import MlsError, MlsReason

            raise MlsError("pretend a pending proposal cannot be committed", reason=MlsReason.BAD_KEY_PACKAGE)
        return real(self, **kw)

    monkeypatch.setattr(Group, "commit", commit)
    await b.client.send(conv, b"after the fallback", NOW)
    monkeypatch.setattr(Group, "commit", real)
    assert calls == [True, False]
    group = b.client._state.convs[conv].group
    assert group is not None and group.pending_proposals == []
    assert [m.plaintext for m in await a.sync()] == [b"after the fallback"]
    await dave.follow()
    assert len(_authenticators([a, b], dave, conv)) == 1


async def test_crash_while_send_commits_proposals() -> None:
    """The proposals commit of a send follows the commit discipline: a crash at any of its step
    boundaries, a restart and a sync leave no fork, and the next send goes through."""
    w0, a0, b0, dave0, conv0 = await _setup(crashable=True)
    assert dave0.group is not None and b0.plan is not None
    await dave0.post(dave0.group.propose_update())
    await b0.client.sync_conversations(NOW)
    b0.plan.mark()
    await b0.client.send(conv0, b"x", NOW)
    steps = b0.plan.since_mark()
    assert steps == ["blob.commit", "set_next_commit_group_info", "send.commit", "blob.commit", "blob.commit", "send.application"], steps
    for index in range(len(steps)):
        for when in ("before", "after"):
            w, a, b, dave, conv = await _setup(crashable=True)
            assert dave.group is not None and b.plan is not None
            await dave.post(dave.group.propose_update())
            await b.client.sync_conversations(NOW)
            b.plan.arm(index, when)
            with pytest.raises(Crash):
                await b.client.send(conv, b"crashed send", NOW)
            await b.restart()
            await b.client.sync_conversations(NOW)
            await b.client.send(conv, b"after restart", NOW)
            got = [m.plaintext for m in await a.sync()]
            assert got[-1] == b"after restart" and got.count(b"crashed send") <= 1, (steps[index], when, got)
            await dave.follow()
            assert len(_authenticators([a, b], dave, conv)) == 1, (steps[index], when)
            assert_agree(conv, [a, b])


class _Deferring:
    """A blob store that says its commits are buffered (as pyodide_app's does during a sync)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.deferring = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_no_commit_is_sent_while_checkpoints_are_buffered() -> None:
    from ping_core.errors import StorageError

    w, a, b, dave, conv = await _setup()
    assert dave.group is not None
    deferring = _Deferring(a.client._state.store.blob_store)
    a.client._state.store._blobs = deferring  # what StorageBackend.Custom(deferring) would have opened
    await dave.post(dave.group.propose_update())
    deferring.deferring = True
    await a.sync()  # alice is the designated committer, but her checkpoints are not durable now
    assert w.service.log(conv)[-1].kind is MessageKind.PROPOSAL
    with pytest.raises(StorageError):
        await a.client.send(conv, b"needs a commit first", NOW)
    with pytest.raises(StorageError):
        await a.client.set_conversation_name(conv, "no", NOW)
    assert await a.client.commit_pending_proposals(NOW) == []
    deferring.deferring = False  # flushed
    assert await a.client.commit_pending_proposals(NOW) == [conv]
    await a.client.send(conv, b"now it goes", NOW)
    assert [m.plaintext for m in await b.sync()] == [b"now it goes"]
