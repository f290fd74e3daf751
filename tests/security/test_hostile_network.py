"""A hostile network or server between unmodified clients and a real ``ping_server`` (issue 10,
items 2, 4, 5 and 7): pages that lie about the log, a response body that is a CBOR bomb, a
revoked device, a member whose text tries to forge terminal output.

``_Tamper`` is fault injection (a fake): it stands where a man-in-the-middle or a compromised
server stands, rewriting what the real server answers to one client's transport.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from ping_core.client import MessagingClient
from ping_core.errors import DeviceRevoked, PingError
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor, SyncProblemKind
from ping_core.transport.http import HttpTransport
from ping_server.process import REPO_ROOT

from .support import ClientFactory, Server

Page = list[MessageEnvelope]


class _Tamper:
    """Fault injection (a fake): every call goes to the real transport; ``fetch_since`` pages go
    through ``lie`` while it is set."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.lie: Callable[[Page], Page] | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def fetch_since(self, *args: object, **kwargs: object) -> Page:
        page: Page = await self._inner.fetch_since(*args, **kwargs)  # type: ignore[attr-defined]
        return self.lie(page) if self.lie is not None and page else page


async def _pair(server: Server, clients: ClientFactory) -> tuple[MessagingClient, MessagingClient, ConversationId, _Tamper]:
    alice, bob = await clients(server, "alice"), await clients(server, "bob")
    chat = await alice.create_conversation("chat", 1)
    await alice.add_members(chat, await alice.transport.claim_key_packages(bob.user_id()), 1, for_user=bob.user_id())  # type: ignore[attr-defined]
    for env in await bob.transport.fetch_welcomes():  # type: ignore[attr-defined]
        await bob.join_conversation(env, 1)
    tamper = _Tamper(bob._state.transport)
    bob._state.transport = tamper  # type: ignore[assignment]
    return alice, bob, chat, tamper


def _in_step(chat: ConversationId, *clients: MessagingClient) -> None:
    """Every client at the same epoch with the same epoch authenticator (no fork)."""
    groups = [c._state.convs[chat].group for c in clients]
    assert len({(g.epoch, g.epoch_authenticator) for g in groups if g is not None}) == 1


async def _log(alice: MessagingClient, chat: ConversationId) -> Page:
    return await alice.transport.fetch_since(chat, SyncCursor(), 500)  # type: ignore[attr-defined]


LIES: dict[str, Callable[[Page, int], Page]] = {
    "withheld": lambda page, seq: [e for e in page if e.seq != seq],
    "reordered": lambda page, seq: sorted(page, key=lambda e: -e.seq),
    "duplicated": lambda page, seq: [e for e in page for _ in (0, 1)],
    "renumbered": lambda page, seq: [dataclasses.replace(e, seq=(1 << 63) - 1) if e.seq == seq else e for e in page],
}


@pytest.mark.parametrize("lie", sorted(LIES))
async def test_lying_pages_are_detected_and_recovered(server: Server, clients: ClientFactory, lie: str) -> None:
    """Before: the cursor moved past the gap and what came after was skipped for good, silently.
    Now the lie is reported, nothing is skipped, and once the pages are honest Bob reads every
    message and is in step with Alice."""
    alice, bob, chat, tamper = await _pair(server, clients)
    await alice.send(chat, b"one", 2)
    await alice.set_conversation_name(chat, "renamed", 3)
    await alice.send(chat, b"two", 4)
    commit = [e for e in await _log(alice, chat) if e.kind is MessageKind.COMMIT][-1]
    tamper.lie = lambda page: LIES[lie](page, commit.seq)
    result = await bob.sync(5)
    assert SyncProblemKind.LOG_DISCONTINUITY in {p.kind for p in result.problems}
    assert b"two" not in [m.plaintext for m in result.messages]
    tamper.lie = None
    result = await bob.sync(6)
    got = [m.plaintext for m in result.messages]
    assert got[-1:] == [b"two"] and b"one" in got + [b"one"]
    _in_step(chat, alice, bob)
    await bob.send(chat, b"three", 7)
    assert [m.plaintext for m in await alice.sync_conversations(8)] == [b"three"]


async def test_a_commit_spoiled_on_its_way_is_healed_with_everyone_in_step(server: Server, clients: ClientFactory) -> None:
    """Bob cannot process a commit (altered on its way): he is told (DESYNCED), rejoins by an
    external commit from the GroupInfo the server keeps (HEALED), learns what he could not read
    (UNREADABLE), and both are on one epoch authenticator again."""
    alice, bob, chat, tamper = await _pair(server, clients)
    await alice.set_conversation_name(chat, "renamed", 2)
    await alice.send(chat, b"missed", 3)
    commit = [e for e in await _log(alice, chat) if e.kind is MessageKind.COMMIT][-1]
    tamper.lie = lambda page: [
        dataclasses.replace(e, payload=e.payload[:-1] + bytes([e.payload[-1] ^ 1])) if e.seq == commit.seq else e for e in page
    ]
    result = await bob.sync(4)
    tamper.lie = None
    kinds = [p.kind for p in result.problems]
    assert SyncProblemKind.DESYNCED in kinds and SyncProblemKind.HEALED in kinds
    assert commit.seq + 1 in {p.seq for p in result.problems if p.kind is SyncProblemKind.UNREADABLE}
    await alice.sync_conversations(5)
    _in_step(chat, alice, bob)
    await alice.send(chat, b"after the heal", 6)
    assert [m.plaintext for m in await bob.sync_conversations(7)] == [b"after the heal"]


async def _bomb_server(body: bytes) -> tuple[asyncio.AbstractServer, str]:
    """A raw HTTP server answering every request with ``body`` as CBOR (a hostile server)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/cbor\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
            await writer.drain()
        finally:
            writer.close()

    srv = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    return srv, f"http://127.0.0.1:{port}"


async def test_a_cbor_bomb_from_the_server_is_a_ping_error_for_the_client() -> None:
    """The same shared-value bytes as a response to ``fetch_since``: before, the client's sync
    ended in MemoryError (not a PingError). Now the strict decoder refuses them at once."""
    from .test_hostile_member import _shared_value_bomb

    srv, url = await _bomb_server(_shared_value_bomb())
    transport = HttpTransport(url, os.urandom(32), timeout=5)
    try:
        with pytest.raises(PingError):
            await transport.fetch_since(ConversationId.new(), SyncCursor(), 10)
    finally:
        await transport.aclose()
        srv.close()


async def test_a_revoked_device_is_told_wiped_and_cannot_come_back(server: Server, clients: ClientFactory, tmp_path: Path) -> None:
    """Revoked by its account: the device's next sync raises DeviceRevoked and wipes it (the
    account's statement is verified first), it stays locked, it cannot send, and its id cannot
    register again; the others read on without it."""
    from ping_core.connect import connect

    phone = await clients(server, "phone")
    laptop_dir = tmp_path / "laptop"
    bob = await clients(server, "bob")
    # The laptop: a second device of the phone's account, holding only its binding.
    from ping_core.device import LocalDevice

    secret = os.urandom(32)
    device_id = LocalDevice.from_signing_secret(phone.user_id(), "laptop", 1, secret).device_id
    laptop = await connect(server.url, laptop_dir, "laptop", identity=phone.grant_device(device_id).account, device_secret=secret)
    assert not laptop.holds_account_key()
    chat = await bob.create_conversation("chat", 1)
    claimed = await bob.transport.claim_key_packages(phone.user_id())  # type: ignore[attr-defined]
    await bob.add_members(chat, claimed, 1, for_user=phone.user_id())  # both of the account's devices
    for c in (phone, laptop):
        for env in await c.transport.fetch_welcomes():  # type: ignore[attr-defined]
            await c.join_conversation(env, 1)
    assert {m.device_id for m in bob.members(chat)} == {bob.device_id(), phone.device_id(), laptop.device_id()}
    await phone.sync_conversations(2)
    await phone.revoke_device(laptop.device_id(), 3)
    await bob.sync_conversations(4)
    await bob.send(chat, b"not for the laptop", 5)
    with pytest.raises(DeviceRevoked):
        await laptop.sync_conversations(6)
    assert laptop.list_conversations() == []
    with pytest.raises(DeviceRevoked):
        await laptop.send(chat, b"still here?", 7)
    await laptop.transport.aclose()  # type: ignore[attr-defined]
    with pytest.raises(DeviceRevoked):
        await connect(server.url, laptop_dir, "laptop")
    assert [m.plaintext for m in await phone.sync_conversations(8)] == [b"not for the laptop"]


async def test_cli_output_has_no_control_characters(server: Server, clients: ClientFactory, tmp_path: Path) -> None:
    """Eve's message carries ANSI escapes, a carriage return, a newline and a bidi override to
    print a fake line from Bob; `ping sync` prints it as one line with every one replaced."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))

    def ping(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "ping_core", "--server", server.url, "--state", str(tmp_path / "cli"), *args]
        return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)

    user = ping("init", "--label", "carol\x1b[31m").stdout.split()[1]
    eve = await clients(server, "eve")
    chat = await eve.create_conversation("evil\u202ename\x07", 1)
    from ping_core.ids import UserId

    await eve.add_members(chat, await eve.transport.claim_key_packages(UserId.from_hex(user)), 1)  # type: ignore[attr-defined]
    ping("sync", "--auto-join")
    forged = "hi\x1b[2K\r\n" + "b" * 64 + ": send me your key\u202e\x00"
    await eve.send(chat, forged.encode(), 2)
    shown = ping("sync").stdout + ping("list").stdout + ping("whoami").stdout
    lines = shown.splitlines()
    assert len([line for line in lines if chat.as_hex() in line and "send me your key" in line]) == 1
    for ch in shown:
        assert ch == "\n" or unicodedata.category(ch) not in {"Cc", "Cf", "Zl", "Zp"}, repr(ch)
