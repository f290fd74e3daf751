"""SDK figures: send+process throughput, checkpoint bytes per send, cold init.

    python benchmarks/sdk_bench.py [--messages N] [--dir DIR] [--profile]

Prints:

* send+process throughput: alice sends, bob processes each envelope as it is
  pushed (one checkpoint per send and one per processed envelope), with the
  memory blob store and with the encrypted SQLite blob store (synchronous=FULL,
  the durable default, and NORMAL); plus bob receiving by ``sync_conversations``
  (one checkpoint per page of 256).
* bytes written per send checkpoint (steady state, value bytes before
  encryption) in a 2-member and in a 1000-member conversation.
* cold ``MessagingClient.init`` with 100 stored conversations (memory and
  SQLite), then ``list_conversations``, and the first send (which parses that
  one group).
* the durable inbox's cost: bytes and blob-store commits per message received
  by sync, acknowledged on return (default) and with ``explicit_ack`` plus one
  ``ack_messages`` per sync.

Goals on CPython: >= 1,000 send+process/s in memory, >= 300/s with SQLite,
the same checkpoint bytes per send for 2 and 1000 members, cold init with 100
conversations <= 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ping_core import ClientConfig, MessagingClient  # noqa: E402
from ping_core.device import LocalDevice  # noqa: E402
from ping_core.identity import Identity, credential_identity  # noqa: E402
from ping_core.ids import ConversationId, DeviceId  # noqa: E402
from ping_core.message import MessageEnvelope  # noqa: E402
from ping_core.mls.crypto import default_provider  # noqa: E402
from ping_core.mls.group import Signer, generate_key_package  # noqa: E402
from ping_core.conversation_name import PING_CAPABILITIES  # noqa: E402
from ping_core.mls.structs import Credential  # noqa: E402
from ping_core.storage import MemoryBlobStore, MemoryStorage, SqliteBlobStore, StorageBackend  # noqa: E402
from ping_core.testing.memory import MemoryDeliveryService  # noqa: E402

NOW = 1_700_000_000_000
KEY = os.urandom(32)


class _Dev:
    def __init__(self, client: MessagingClient, blobs: Any, storage: MemoryStorage, cfg: ClientConfig) -> None:
        self.client, self.blobs, self.storage, self.cfg = client, blobs, storage, cfg


async def _device(
    service: MemoryDeliveryService, label: str, blobs: Any, identity: Identity | None = None, *, explicit_ack: bool = False
) -> _Dev:
    identity = identity or Identity.generate()
    secret = os.urandom(32)
    local = LocalDevice.from_signing_secret(identity.user_id, label, NOW, secret)
    transport = await service.connect(identity, local, NOW)
    storage = MemoryStorage()
    cfg = ClientConfig(
        identity, label, storage, transport, NOW, StorageBackend.Custom(blobs), device_signing_secret_key=secret, explicit_ack=explicit_ack
    )
    return _Dev(await MessagingClient.init(cfg), blobs, storage, cfg)


async def _pair(service: MemoryDeliveryService, a: _Dev, b: _Dev) -> ConversationId:
    conv = await a.client.create_conversation("bench", NOW)
    kp = await b.client.fresh_key_package()
    await a.client.add_members(conv, [(b.client.device_id(), kp)], NOW)
    transport = b.cfg.transport
    (welcome,) = await transport.fetch_welcomes()
    await b.client.join_conversation(welcome, NOW)
    await transport.ack_welcomes(welcome.seq)
    await b.client.sync_conversations(NOW)
    return conv


def _sqlite(directory: str, name: str, sync: str) -> SqliteBlobStore:
    return SqliteBlobStore.open(os.path.join(directory, name), KEY, synchronous=sync)


async def bench_throughput(n: int, make_blobs: Any, label: str) -> None:
    service = MemoryDeliveryService()
    a = await _device(service, "alice", make_blobs("a"))
    b = await _device(service, "bob", make_blobs("b"))
    conv = await _pair(service, a, b)
    payload = b"x" * 64
    for _ in range(50):  # warm up (first sends of the epoch derive the ratchets; caches fill)
        await b.client.process_envelope(await a.client.send(conv, payload, NOW), NOW)
    # push: send, then process that envelope
    t0 = time.perf_counter()
    for _ in range(n):
        env = await a.client.send(conv, payload, NOW)
        msg = await b.client.process_envelope(env, NOW)
        assert msg is not None
    dt = time.perf_counter() - t0
    print(f"  {label:34s} send+process (push): {n / dt:8.0f} msg/s   ({dt / n * 1e3:.2f} ms each)")
    # sync: n sends, then one sync (pages of 256)
    t0 = time.perf_counter()
    for _ in range(n):
        await a.client.send(conv, payload, NOW)
    t1 = time.perf_counter()
    got = await b.client.sync_conversations(NOW)
    t2 = time.perf_counter()
    assert len(got) == n
    print(
        f"  {label:34s} send: {n / (t1 - t0):8.0f}/s   receive by sync: {n / (t2 - t1):8.0f}/s   "
        f"send+sync: {n / (t2 - t0):8.0f} msg/s"
    )


class _AcceptAll:
    """A benchmark transport that accepts every envelope (no directory): for the 1000-member group."""

    async def send(self, envelope: MessageEnvelope) -> int:
        return 1

    async def fetch_since(self, *args: Any, **kw: Any) -> list[MessageEnvelope]:
        return []

    async def set_next_welcome_recipients(self, *args: Any) -> None:
        return None

    async def set_next_commit_removals(self, *args: Any) -> None:
        return None

    async def set_next_commit_group_info(self, *args: Any) -> None:
        return None

    async def fetch_group_info(self, *args: Any) -> None:
        return None


async def bench_checkpoint_bytes(members: int, sends: int = 50) -> float:
    crypto = default_provider()
    blobs = MemoryBlobStore()
    identity = Identity.generate()
    cfg = ClientConfig(identity, "alice", MemoryStorage(), _AcceptAll(), NOW, StorageBackend.Custom(blobs))  # type: ignore[arg-type]
    client = await MessagingClient.init(cfg)
    conv = await client.create_conversation("big", NOW)
    entries = []
    for _ in range(members - 1):
        # A device of the account: its leaf carries the account's binding (members check it).
        private, public = crypto.sign_keygen()
        binding = identity.device_binding(DeviceId.from_public_key(public))
        signer = Signer(Credential.basic(credential_identity(binding)), private, public)
        kp = generate_key_package(crypto, signer, now=int(time.time()), capabilities=PING_CAPABILITIES).message()
        entries.append((DeviceId.from_public_key(signer.public_key), kp))
    t0 = time.perf_counter()
    if entries:
        await client.add_members(conv, entries, NOW)
    t_add = time.perf_counter() - t0
    await client.send(conv, b"warm up", NOW)  # the first send of an epoch derives the sender's path
    before_bytes, before_commits = blobs.bytes_written, blobs.commits
    t0 = time.perf_counter()
    for _ in range(sends):
        await client.send(conv, b"x" * 64, NOW)
    dt = time.perf_counter() - t0
    per = (blobs.bytes_written - before_bytes) / sends
    commits = (blobs.commits - before_commits) / sends
    print(
        f"  {members:5d} members: {per:6.0f} bytes/send checkpoint ({commits:.0f} commit per send; "
        f"{dt / sends * 1e3:.2f} ms per send; adding {members - 1} took {t_add:.1f} s)"
    )
    return per


async def bench_cold_init(n_convs: int, make_blobs: Any, label: str, runs: int = 5) -> None:
    service = MemoryDeliveryService()
    blobs = make_blobs("cold")
    a = await _device(service, "alice", blobs)
    b = await _device(service, "bob", make_blobs("cold-b"))
    convs = [await _pair(service, a, b) for _ in range(n_convs)]
    for conv in convs:
        await a.client.send(conv, b"hello", NOW)
    times, lists, first_send = [], [], []
    for _ in range(runs):
        if isinstance(blobs, SqliteBlobStore):
            cfg_backend: Any = StorageBackend.Sqlite(blobs.path, KEY)  # reopen the file: a real cold start
        else:
            cfg_backend = StorageBackend.Custom(blobs)
        cfg = ClientConfig(a.cfg.identity, "alice", a.storage, a.cfg.transport, NOW, cfg_backend)
        t0 = time.perf_counter()
        client = await MessagingClient.init(cfg)
        t1 = time.perf_counter()
        metas = client.list_conversations()
        t2 = time.perf_counter()
        await client.send(convs[0], b"after cold start", NOW)
        t3 = time.perf_counter()
        assert len(metas) == n_convs + 1
        close = getattr(client._state.store.blob_store, "close", None)
        if close is not None and client._state.store.blob_store is not blobs:
            close()
        times.append(t1 - t0)
        lists.append(t2 - t1)
        first_send.append(t3 - t2)
    print(
        f"  {label:34s} init with {n_convs} conversations: {statistics.median(times) * 1e3:6.1f} ms "
        f"(median of {runs}); list_conversations {statistics.median(lists) * 1e3:.2f} ms; "
        f"first send (parses one group) {statistics.median(first_send) * 1e3:.1f} ms"
    )


async def bench_inbox(n: int, explicit_ack: bool) -> None:
    service = MemoryDeliveryService()
    a = await _device(service, "alice", MemoryBlobStore())
    blobs = MemoryBlobStore()
    b = await _device(service, "bob", blobs, explicit_ack=explicit_ack)
    conv = await _pair(service, a, b)
    await b.client.ack_messages(await b.client.sync_conversations(NOW))
    for _ in range(n):
        await a.client.send(conv, b"x" * 64, NOW)
    before_bytes, before_commits = blobs.bytes_written, blobs.commits
    t0 = time.perf_counter()
    got = await b.client.sync_conversations(NOW)
    if explicit_ack:
        await b.client.ack_messages(got)
    dt = time.perf_counter() - t0
    assert len(got) == n
    label = "explicit_ack + ack_messages" if explicit_ack else "acknowledged on return"
    print(
        f"  {label:34s} receive by sync: {n / dt:8.0f}/s   {(blobs.bytes_written - before_bytes) / n:6.0f} bytes and "
        f"{blobs.commits - before_commits} blob commits for {n} messages"
    )


async def main(args: argparse.Namespace) -> None:
    n = args.messages
    directory = args.dir or tempfile.mkdtemp(prefix="ping-sdk-bench-")
    counter = iter(range(10_000))
    print(f"send + process, {n} messages of 64 bytes, 2-member conversation")
    await bench_throughput(n, lambda _: MemoryBlobStore(), "memory blob store")
    await bench_throughput(n, lambda name: _sqlite(directory, f"{name}-{next(counter)}.db", "FULL"), "encrypted SQLite (synchronous=FULL)")
    await bench_throughput(n, lambda name: _sqlite(directory, f"{name}-{next(counter)}.db", "NORMAL"), "encrypted SQLite (synchronous=NORMAL)")
    print("bytes written per send checkpoint (steady state)")
    small = await bench_checkpoint_bytes(2)
    big = await bench_checkpoint_bytes(1000)
    print(f"  same for 2 and 1000 members: {'yes' if small == big else 'NO'} ({small:.0f} vs {big:.0f})")
    print("cold init")
    await bench_cold_init(100, lambda _: MemoryBlobStore(), "memory blob store")
    await bench_cold_init(100, lambda name: _sqlite(directory, f"{name}-{next(counter)}.db", "FULL"), "encrypted SQLite")
    print(f"durable inbox, {n} messages of 64 bytes received by one sync (memory blob store)")
    await bench_inbox(n, explicit_ack=False)
    await bench_inbox(n, explicit_ack=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--profile", action="store_true", help="profile the in-memory send+process loop")
    ns = parser.parse_args()
    if ns.profile:
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(bench_throughput(ns.messages, lambda _: MemoryBlobStore(), "memory blob store"))
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    else:
        asyncio.run(main(ns))
