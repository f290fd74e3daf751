"""ping_core.connect: a state folder + a real server -> a ready MessagingClient, across restarts."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess

from ping_core.connect import HOST_DB, KEY_FILE, STATE_DB, connect
from ping_core.errors import IdentityError, StorageError
from ping_core.identity import Identity
from ping_core.ids import ConversationId

NOW = 1_700_000_000_000


async def _join_welcomes(client: Any) -> list[ConversationId]:
    welcomes = await client.transport.fetch_welcomes()
    joined = [await client.join_conversation(w, NOW) for w in welcomes]
    if welcomes:
        await client.transport.ack_welcomes(welcomes[-1].seq)
    return joined


async def test_connect_chat_and_restart(server: ServerProcess, tmp_path: Path) -> None:
    alice = await connect(server.url, tmp_path / "alice", "alice-phone", key_packages=3, now_ms=NOW)
    bob = await connect(server.url, tmp_path / "bob", "bob-laptop", key_packages=3, now_ms=NOW)
    try:
        folder = tmp_path / "alice"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / KEY_FILE).stat().st_mode) == 0o600
        assert (folder / HOST_DB).exists() and (folder / STATE_DB).exists()
        # Registered, with KeyPackages in the directory (3 one-time + the last resort).
        (info,) = await bob.transport.list_devices(alice.user_id())
        assert info.device_id == alice.device_id() and info.label == "alice-phone"
        chat = await alice.create_conversation("lunch", NOW)
        claimed = await alice.transport.claim_key_packages(bob.user_id())
        assert [d for d, _ in claimed] == [bob.device_id()]
        await alice.add_members(chat, claimed, NOW)
        assert await _join_welcomes(bob) == [chat]
        await alice.send(chat, b"hi bob", NOW)
        got = await bob.sync_conversations(NOW)
        assert [(m.conversation_id, m.sender_user_id, m.plaintext) for m in got] == [(chat, alice.user_id(), b"hi bob")]
    finally:
        await alice.transport.aclose()  # type: ignore[attr-defined]

    # A restart: same account, device and conversations; no second batch of KeyPackages.
    again = await connect(server.url, tmp_path / "alice", "ignored-label", now_ms=NOW)
    try:
        assert (again.user_id(), again.device_id()) == (alice.user_id(), alice.device_id())
        assert chat in {m.id for m in again.list_conversations()}
        await again.send(chat, b"still me", NOW)
        got = await bob.sync_conversations(NOW)
        assert [m.plaintext for m in got] == [b"still me"]
        await bob.send(chat, b"welcome back", NOW)
        assert [m.plaintext for m in await again.sync_conversations(NOW)] == [b"welcome back"]
        # The one-time KeyPackages of the first connect: 3, then the last resort again and again.
        kps = await again.transport.claim_device_key_packages(bob.device_id(), 5)
        assert len(kps) == 5 and kps[2] == kps[3] == kps[4] and len(set(kps)) == 3  # 2 left + last resort
    finally:
        await again.transport.aclose()  # type: ignore[attr-defined]
        await bob.transport.aclose()  # type: ignore[attr-defined]


async def test_connect_refusals(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    first = await connect(sqlite_server.url, tmp_path / "a", key_packages=0, now_ms=NOW)
    await first.transport.aclose()  # type: ignore[attr-defined]
    with pytest.raises(IdentityError):
        await connect(sqlite_server.url, tmp_path / "a", identity=Identity.generate(), now_ms=NOW)
    with pytest.raises(StorageError):
        await connect(sqlite_server.url, tmp_path / "a", storage_key=bytes(32), now_ms=NOW)  # not the folder's key
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / KEY_FILE).write_bytes(b"short")
    with pytest.raises(StorageError):
        await connect(sqlite_server.url, tmp_path / "b", now_ms=NOW)
    # An identity given on first use (e.g. moved here by linking) becomes the folder's account.
    ident = Identity.generate()
    moved = await connect(sqlite_server.url, tmp_path / "c", identity=ident, key_packages=0, now_ms=NOW)
    try:
        assert moved.user_id() == ident.user_id
    finally:
        await moved.transport.aclose()  # type: ignore[attr-defined]
