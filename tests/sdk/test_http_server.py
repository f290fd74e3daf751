"""CPython-only SDK tests: the whole flow over the real delivery service (ping_server + SQLite) with
HttpTransport, and the encrypted SQLite state store across restarts.

CPython only (a server subprocess and httpx): excluded from the Pyodide run.
Alice's phone chats with bob, renames, adds and removes carol, links her
laptop by sealed ticket (catch-up snapshot, admission), all three converse,
then the phone revokes the laptop.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from ping_core import AdmitChatStatus, ClientConfig, MessagingClient
from ping_core.device import LocalDevice
from ping_core.errors import DeviceRevoked, PingError, TransportError
from ping_core.identity import Identity
from ping_core.ids import ConversationId
from ping_core.link import LinkKeyPair, open_ticket, seal_ticket
from ping_core.storage import MemoryBlobStore, MemoryStorage, StorageBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from serverproc import ServerProcess  # type: ignore[import-not-found]  # noqa: E402

httpx = pytest.importorskip("httpx")
from ping_core.transport.http import HttpTransport  # noqa: E402

NOW = 1_700_000_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    logs = tmp_path_factory.mktemp("ping-sdk-http")
    proc = ServerProcess(str(logs / "ping.sqlite"), "--rate-limit", "0", log_dir=logs)
    yield proc
    proc.stop()


class HttpDevice:
    def __init__(self, url: str, identity: Identity, label: str) -> None:
        self.identity = identity
        self.label = label
        self.secret = os.urandom(32)
        self.local = LocalDevice.from_signing_secret(identity.user_id, label, NOW, self.secret)
        self.transport = HttpTransport.for_device(url, self.local)
        self.blobs = MemoryBlobStore()
        self.storage = MemoryStorage()
        self.client: MessagingClient = None  # type: ignore[assignment]

    async def start(self) -> HttpDevice:
        await self.transport.register_device(self.local.info(NOW), self.identity.device_binding(self.local.device_id))
        cfg = ClientConfig(
            self.identity, self.label, self.storage, self.transport, NOW, StorageBackend.Custom(self.blobs), device_signing_secret_key=self.secret
        )
        self.client = await MessagingClient.init(cfg)
        return self

    async def restart(self) -> None:
        self.client = await MessagingClient.init(
            ClientConfig(self.identity, self.label, self.storage, self.transport, NOW, StorageBackend.Custom(self.blobs))
        )

    async def join_welcomes(self) -> list[ConversationId]:
        out = []
        welcomes = await self.transport.fetch_welcomes()
        for w in welcomes:
            out.append(await self.client.join_conversation(w, NOW))
        if welcomes:
            await self.transport.ack_welcomes(welcomes[-1].seq)
        return out


@pytest.fixture
async def devices(server: ServerProcess) -> AsyncIterator[dict[str, HttpDevice]]:
    alice = Identity.generate()
    devs = {
        "phone": await HttpDevice(server.url, alice, "phone").start(),
        "bob": await HttpDevice(server.url, Identity.generate(), "bob").start(),
        "carol": await HttpDevice(server.url, Identity.generate(), "carol").start(),
    }
    yield devs
    for d in devs.values():
        await d.transport.aclose()


async def _kp(claimer: HttpDevice, owner: HttpDevice) -> bytes:
    await owner.transport.publish_key_packages([await owner.client.fresh_key_package()])
    (kp,) = await claimer.transport.claim_device_key_packages(owner.local.device_id, 1)
    return kp


def _agree(conv: ConversationId, devs: list[HttpDevice]) -> None:
    auths = {d.client._state.convs[conv].group.epoch_authenticator for d in devs}  # type: ignore[union-attr]
    assert len(auths) == 1


async def _converse(conv: ConversationId, devs: list[HttpDevice], text: bytes) -> None:
    for d in devs:
        await d.client.send(conv, text + d.label.encode(), NOW)
    for d in devs:
        got = [m.plaintext for m in await d.client.sync_conversations(NOW) if m.conversation_id == conv]
        assert got == [text + o.label.encode() for o in devs if o is not d]


async def test_whole_flow_over_http(server: ServerProcess, devices: dict[str, HttpDevice]) -> None:
    phone, bob, carol = devices["phone"], devices["bob"], devices["carol"]
    chat = await phone.client.create_conversation("http chat", NOW)
    await phone.client.add_members(chat, [(bob.local.device_id, await _kp(phone, bob))], NOW)
    assert await bob.join_welcomes() == [chat]
    await _converse(chat, [phone, bob], b"hello ")
    await bob.client.set_conversation_name(chat, "renamed", NOW)
    await phone.client.sync_conversations(NOW)
    assert [m.name for m in phone.client.list_conversations() if m.id == chat] == ["renamed"]
    # add and remove carol: the server follows the membership
    await phone.client.add_members(chat, [(carol.local.device_id, await _kp(phone, carol))], NOW)
    assert await carol.join_welcomes() == [chat]
    await bob.client.sync_conversations(NOW)
    await _converse(chat, [phone, bob, carol], b"three ")
    await bob.client.remove_members(chat, [phone.client._state.convs[chat].leaves[carol.local.device_id]], NOW)
    await phone.client.sync_conversations(NOW)
    with pytest.raises(TransportError) as info:
        await carol.client.send(chat, b"still here?", NOW)
    assert info.value.status == 403
    _agree(chat, [phone, bob])
    # restart the phone: everything is on its store
    await phone.restart()
    await _converse(chat, [phone, bob], b"after restart ")

    # link the laptop
    await bob.client.send(chat, b"while linking", NOW)
    laptop = HttpDevice(server.url, Identity.import_(phone.client.export_identity()), "laptop")
    await laptop.start()
    keys = LinkKeyPair.generate()
    ticket = await phone.client.build_linking_ticket(laptop.local.device_id, await laptop.client.fresh_key_package(), [], NOW)
    opened = open_ticket(seal_ticket(ticket, keys.public_key), keys, laptop.local.device_id)
    await laptop.client.consume_linking_ticket(opened, NOW)
    catchup = opened.catchup()
    assert catchup is not None
    for entry in catchup.conversation_metas:
        await laptop.client.import_state_snapshot(entry.group_state_bytes, NOW)
    dg = ConversationId.device_group(phone.identity.user_id)
    _agree(dg, [phone, laptop])
    outcomes = await phone.client.admit_device_to_chats(laptop.local.device_id, [(chat, await _kp(phone, laptop))], NOW)
    assert isinstance(outcomes[0].status, AdmitChatStatus.Admitted)
    assert await laptop.join_welcomes() == [chat]
    got = [m.plaintext for m in await laptop.client.sync_conversations(NOW)]
    assert b"while linking" in got  # read with the catch-up snapshot's history
    await bob.client.sync_conversations(NOW)
    await phone.client.sync_conversations(NOW)
    _agree(chat, [phone, bob, laptop])
    await _converse(chat, [phone, bob, laptop], b"all three ")

    # revoke the laptop
    envelopes = await phone.client.revoke_device(laptop.local.device_id, NOW)
    assert {e.conversation_id for e in envelopes} == {chat, dg}
    await bob.client.sync_conversations(NOW)
    _agree(chat, [phone, bob])
    await _converse(chat, [phone, bob], b"without the laptop ")
    with pytest.raises(DeviceRevoked):  # the server refuses it as revoked, and it is told
        await laptop.client.sync_conversations(NOW)
    with pytest.raises(PingError):
        await laptop.client.send(chat, b"revoked", NOW)
    await laptop.transport.aclose()


async def test_encrypted_sqlite_store_survives_restarts(tmp_path: Path) -> None:
    """CPython: the MLS state in the encrypted SQLite file (StorageBackend.Sqlite)."""
    from ping_core.errors import StorageError
    from ping_core.testing.memory import MemoryDeliveryService

    service = MemoryDeliveryService()
    key = os.urandom(32)
    devs = {}
    for label in ("alice", "bob"):
        ident = Identity.generate()
        secret = os.urandom(32)
        local = LocalDevice.from_signing_secret(ident.user_id, label, NOW, secret)
        transport = await service.connect(ident, local, NOW)
        cfg = ClientConfig(ident, label, MemoryStorage(), transport, NOW, StorageBackend.Sqlite(str(tmp_path / f"{label}.db"), key), secret)
        devs[label] = (cfg, await MessagingClient.init(cfg))
    (acfg, alice), (bcfg, bob) = devs["alice"], devs["bob"]
    chat = await alice.create_conversation("sqlite", NOW)
    await bob.transport.publish_key_packages([await bob.fresh_key_package()])
    (kp,) = await alice.transport.claim_device_key_packages(bob.device_id(), 1)
    await alice.add_members(chat, [(bob.device_id(), kp)], NOW)
    (welcome,) = await bob.transport.fetch_welcomes()
    await bob.join_conversation(welcome, NOW)
    for _ in range(2):
        await alice.send(chat, b"persisted", NOW)
        assert [m.plaintext for m in await bob.sync_conversations(NOW)] == [b"persisted"]
        alice._state.store.blob_store.close()  # type: ignore[attr-defined]
        bob._state.store.blob_store.close()  # type: ignore[attr-defined]
        alice, bob = await MessagingClient.init(acfg), await MessagingClient.init(bcfg)
    assert chat in {m.id for m in alice.list_conversations()} and chat in {m.id for m in bob.list_conversations()}
    wrong = ClientConfig(acfg.identity, "alice", acfg.storage, acfg.transport, NOW, StorageBackend.Sqlite(str(tmp_path / "alice.db"), os.urandom(32)))
    with pytest.raises(StorageError):
        await MessagingClient.init(wrong)
    alice._state.store.blob_store.close()  # type: ignore[attr-defined]
    bob._state.store.blob_store.close()  # type: ignore[attr-defined]
