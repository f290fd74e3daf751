"""Other members' proposals in the web chat, and messages the SDK decrypted outside a sync.

Alice and Bob are browser users with live sync off (``live=0``: each sync is
one ``sync`` call, so the order of events is the test's). Dave is a member
that runs the bare MLS engine in this process over HTTP and sends proposals,
as another client (ts-mls, say) may; the SDK never sends one itself.

* The IndexedDB store defers a sync's checkpoints, and no commit goes out on
  deferred checkpoints: after the flush the browser commits pending proposals
  by the SDK's policy (Alice, the lowest leaf, at once).
* A ``send`` that first commits pending proposals and loses the epoch catches
  up with the log: what it decrypts then waits in the SDK's inbox, not in the
  page's store. Opening the account (a reload) hands it to the page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from chatui import ChatUser
from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.identity import Identity, credential_identity
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.mls.crypto import default_provider
from ping_core.conversation_name import PING_CAPABILITIES
from ping_core.mls.group import Group, Signer, generate_key_package
from ping_core.mls.structs import Credential
from ping_core.sync import SyncCursor
from ping_core.transport.http import HttpTransport
from pingpage import wait_ready

T = TypeVar("T")
QUERY = "dev=1&live=0&sw=0"
crypto = default_provider()


def _now() -> int:
    return time.time_ns() // 1_000_000


class EngineMember:
    """A device that runs the bare MLS engine over HTTP: registers, publishes one KeyPackage,
    joins by Welcome, follows a conversation's log and posts Update proposals.

    Its coroutines run on an event loop of its own thread (the Playwright tests
    keep an event loop running in the test's thread)."""

    def __init__(self, server_url: str) -> None:
        self.identity = Identity.generate()
        self.local = LocalDevice.generate(self.identity.user_id, "dave", _now())
        self.signer = Signer(
            Credential.basic(credential_identity(self.identity.device_binding(self.local.device_id))),
            self.local.signing_secret,
            self.local.signing_public_key,
        )
        # A Ping device's leaf: it supports the conversation-name extension every Ping group requires.
        self.bundle = generate_key_package(crypto, self.signer, now=int(time.time()), capabilities=PING_CAPABILITIES)
        self.group: Group | None = None
        self.conv: ConversationId | None = None
        self.cursor = SyncCursor()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.transport = HttpTransport(server_url, self.local.signing_secret)
        self._run(self._register())

    @property
    def user_hex(self) -> str:
        return self.identity.user_id.as_hex()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    async def _register(self) -> None:
        await self.transport.register_device(
            self.local.info(_now()), self.identity.device_binding(self.local.device_id)
        )
        await self.transport.publish_key_packages([self.bundle.message()])

    def join(self) -> None:
        async def run() -> None:
            (welcome,) = [w for w in await self.transport.fetch_welcomes() if not w.conversation_id.is_device_group_id]
            self.group = Group.join(crypto, welcome.payload, self.bundle, self.signer, clock=time.time)
            # As Ping clients send them: handshake messages the delivery service can verify.
            self.group.config = dataclasses.replace(self.group.config, encrypt_handshake=False)
            self.conv = welcome.conversation_id

        self._run(run())
        self.follow()

    def follow(self) -> None:
        """Process the log since the cursor (envelopes of earlier epochs and our own are skipped)."""
        assert self.group is not None and self.conv is not None
        group, conv = self.group, self.conv

        async def run() -> None:
            while batch := await self.transport.fetch_since(conv, self.cursor, 100):
                for env in batch:
                    self.cursor = self.cursor.advance(env.seq)
                    if env.epoch < group.epoch or env.sender_device == self.local.device_id:
                        continue
                    if env.kind in (MessageKind.COMMIT, MessageKind.PROPOSAL):
                        group.process_message(env.payload)

        self._run(run())

    def propose_update(self) -> int:
        """Post an Update proposal; its log position."""
        assert self.group is not None and self.conv is not None
        proposal = self.group.propose_update()
        env = MessageEnvelope(
            self.conv, self.group.epoch, MessageKind.PROPOSAL, self.local.device_id, 0, Hlc(_now(), 0), proposal.message
        )
        return self._run(self.transport.send(env))

    def secret(self) -> str:
        """The exporter secret the page's ``dev.sdk.state`` shows for this epoch."""
        assert self.group is not None
        return self.group.export_secret("ping browser test", b"", 16).hex()

    def close(self) -> None:
        self._run(self.transport.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def users(browser: Any, server_url: str) -> Iterator[tuple[ChatUser, ChatUser, EngineMember]]:
    """Alice and Bob (browsers, live sync off) and Dave (the engine member)."""
    contexts = [browser.new_context(), browser.new_context()]
    dave = EngineMember(server_url)
    try:
        alice = ChatUser.open(contexts[0], server_url, query=QUERY)
        bob = ChatUser.open(contexts[1], server_url, query=QUERY)
        alice.create_account("alice")
        bob.create_account("bob")
        yield alice, bob, dave
    finally:
        dave.close()
        for context in contexts:
            context.close()


def _epoch(user: ChatUser, conv: str) -> int:
    epoch: int = user.state()["conversations"][conv]["epoch"]
    return epoch


def _stored(user: ChatUser, conv: str) -> list[str]:
    return [m["text"] for m in user.call("conversation.messages", {"conv": conv})]


def test_a_sync_commits_other_members_proposals(users: tuple[ChatUser, ChatUser, EngineMember]) -> None:
    alice, _, dave = users
    conv = alice.create_conversation("proposals")
    alice.invite(dave.user_hex)
    dave.join()
    assert _epoch(alice, conv) == dave.group.epoch == 1  # type: ignore[union-attr]

    dave.propose_update()
    alice.call("sync.run")
    # Alice (leaf 0) is the designated committer: her sync committed Dave's Update.
    assert _epoch(alice, conv) == 2
    dave.follow()
    assert dave.group.epoch == 2  # type: ignore[union-attr]  # Dave processed her Commit
    assert alice.state()["conversations"][conv]["secret"] == dave.secret()

    # The long poll's position: everything in the log, once her next sync consumed her own Commit.
    alice.call("sync.run")
    assert alice.state()["positions"][conv] == dave.cursor.seq > 0


def test_messages_decrypted_by_a_send_appear_after_a_reload(
    users: tuple[ChatUser, ChatUser, EngineMember], server_url: str
) -> None:
    alice, bob, dave = users
    conv = alice.create_conversation("race")
    alice.invite(bob.user_id)
    alice.invite(dave.user_hex)
    bob.call("sync.run")  # gets the invitation (both adds are in his Welcome's epoch or after it)
    bob.call("invitation.accept", {"conv": conv})
    bob.call("sync.run")  # the commit that added dave, after his Welcome's epoch
    dave.join()
    assert _epoch(bob, conv) == _epoch(alice, conv) == 2

    dave.propose_update()
    bob.call("sync.run")  # Bob (leaf 1) keeps the proposal pending: not the designated committer
    assert _epoch(bob, conv) == 2
    alice.call("sync.run")  # Alice commits it at once
    alice.call("conversation.send", {"conv": conv, "payload": "while you were away"})
    # Bob's send commits the proposal first, loses the epoch to Alice's Commit, catches up
    # (decrypting her message into the SDK's inbox) and sends in the new epoch.
    bob.call("conversation.send", {"conv": conv, "payload": "after the race"})
    assert _epoch(bob, conv) == 3
    assert _stored(bob, conv) == ["after the race"]  # the page's store has not got hers

    bob.page.goto(f"{server_url}/?{QUERY}")
    wait_ready(bob.page)
    bob.page.wait_for_selector("#app:not([hidden])")
    assert _stored(bob, conv) == ["while you were away", "after the race"]  # no sync ran
    bob.select(conv)
    bob.wait_message("while you were away")
    assert bob.shown_texts() == ["while you were away", "after the race"]
