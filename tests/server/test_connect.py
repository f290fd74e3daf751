"""ping_core.connect: a state folder + a real server -> a ready MessagingClient, across restarts."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess

from ping_core import ClientConfig, MessagingClient
from ping_core.connect import HOST_DB, KEY_FILE, STATE_DB, connect, top_up_key_packages
from ping_core.device import LocalDevice
from ping_core.storage import MemoryBlobStore, MemoryStorage, StorageBackend
from ping_core.transport import KeyPackageCount
from ping_core.testing.memory import MemoryDeliveryService
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

    # A restart: same account, device and conversations.
    again = await connect(server.url, tmp_path / "alice", "ignored-label", key_packages=3, now_ms=NOW)
    try:
        assert (again.user_id(), again.device_id()) == (alice.user_id(), alice.device_id())
        assert chat in {m.id for m in again.list_conversations()}
        await again.send(chat, b"still me", NOW)
        got = await bob.sync_conversations(NOW)
        assert [m.plaintext for m in got] == [b"still me"]
        await bob.send(chat, b"welcome back", NOW)
        assert [m.plaintext for m in await again.sync_conversations(NOW)] == [b"welcome back"]
        # Bob's KeyPackages of the first connect: 3 (alice claimed one), then the last resort again and again.
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


async def test_key_package_top_up(server: ServerProcess, tmp_path: Path) -> None:
    """connect() tops the device's stock up to ``key_packages`` when it is below half of that, and
    publishes a last resort only when the server has none (the one peers may hold is kept)."""
    alice = await connect(server.url, tmp_path / "alice", "alice", key_packages=6, now_ms=NOW)
    bob = await connect(server.url, tmp_path / "bob", "bob", key_packages=0, now_ms=NOW)
    try:
        t = alice.transport
        assert await t.key_package_count() == KeyPackageCount(6, True)  # type: ignore[attr-defined]
        (last_resort,) = (await bob.transport.claim_device_key_packages(alice.device_id(), 7))[6:]
        assert await t.key_package_count() == KeyPackageCount(0, True)  # type: ignore[attr-defined]
        await alice.transport.aclose()  # type: ignore[attr-defined]
        # A restart with the stock used up: 6 fresh ones, the last resort kept.
        alice = await connect(server.url, tmp_path / "alice", "alice", key_packages=6, now_ms=NOW)
        t = alice.transport
        assert await t.key_package_count() == KeyPackageCount(6, True)  # type: ignore[attr-defined]
        claimed = await bob.transport.claim_device_key_packages(alice.device_id(), 7)
        assert last_resort not in claimed[:6] and claimed[6] == last_resort
        # Above the low-water mark (3 of 6) nothing is published; below it, the stock is refilled.
        await alice.transport.publish_key_packages([await alice.fresh_key_package() for _ in range(4)])
        assert await top_up_key_packages(alice, 6) == 0
        assert await t.key_package_count() == KeyPackageCount(4, True)  # type: ignore[attr-defined]
        await bob.transport.claim_device_key_packages(alice.device_id(), 2)
        assert await top_up_key_packages(alice, 6) == 4
        assert await t.key_package_count() == KeyPackageCount(6, True)  # type: ignore[attr-defined]
        assert await top_up_key_packages(alice, 6, low_water=7) == 0  # already at the target
        # A claimed KeyPackage of the top-up works: bob adds alice with one.
        chat = await bob.create_conversation("topped up", NOW)
        await bob.add_members(chat, await bob.transport.claim_key_packages(alice.user_id()), NOW)
        welcomes = await alice.transport.fetch_welcomes()
        assert await alice.join_conversation(welcomes[0], NOW) == chat
    finally:
        await alice.transport.aclose()  # type: ignore[attr-defined]
        await bob.transport.aclose()  # type: ignore[attr-defined]


async def test_top_up_on_the_memory_service() -> None:
    """The same rules on any transport that counts KeyPackages (here the in-memory reference)."""
    service = MemoryDeliveryService()
    ident = Identity.generate()
    device = LocalDevice.generate(ident.user_id, "d", NOW)
    transport = await service.connect(ident, device, NOW)
    client = await MessagingClient.init(
        ClientConfig(
            identity=ident,
            device_label="d",
            storage=MemoryStorage(),
            transport=transport,
            now_ms=NOW,
            storage_backend=StorageBackend.Custom(MemoryBlobStore()),
            device_signing_secret_key=device.signing_secret,
        )
    )
    assert client.device_id() == device.device_id
    assert await top_up_key_packages(client, 4) == 4
    assert await transport.key_package_count() == KeyPackageCount(4, True)
    assert service.key_package_count(device.device_id) == 4
    assert await top_up_key_packages(client, 4) == 0
