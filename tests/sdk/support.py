"""Helpers of the SDK tests: devices on the in-memory delivery service, and fault injectors.

Plain Python (no sqlite, no threads), so the tests that use it also run inside Pyodide.

* :class:`World` — a ``MemoryDeliveryService`` (the reference semantics) and the devices on it.
* :class:`Device` — one device: its account identity, host ``MemoryStorage``, MLS blob store
  and transport, and its current ``MessagingClient``; :meth:`Device.restart` re-initialises
  a new client over the same stores (what a process restart leaves).
* :class:`Crash` / :class:`CrashPlan` / :class:`CrashingBlobStore` / :class:`CrashingTransport` —
  fault injectors: the plan counts every blob-store commit and transport call and raises
  ``Crash`` (a ``BaseException``, so no SDK ``except Exception`` can swallow it) just before
  or just after the Nth one, which is how a process dying at that step boundary looks.
"""

from __future__ import annotations

import builtins
import os
from typing import Any, Awaitable, Callable, Iterable, Mapping

from ping_core import ClientConfig, MessagingClient
from ping_core.device import LocalDevice
from ping_core.identity import Identity
from ping_core.ids import ConversationId, DeviceId
from ping_core.message import IncomingMessage, MessageEnvelope
from ping_core.storage import MemoryBlobStore, MemoryStorage, StorageBackend
from ping_core.sync import SyncCursor
from ping_core.testing.memory import MemoryDeliveryService, MemoryTransport

NOW = 1_700_000_000_000


class Crash(BaseException):
    """The process died here (raised by a fault injector)."""


class CrashPlan:
    """Counts step boundaries (blob-store commits, transport calls) and crashes at one of them.

    ``arm(index, "before" | "after")``: raise :class:`Crash` just before the
    call numbered ``index`` (counting from when the plan was armed) runs, or
    just after it returned (its effect applied).
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._target: tuple[int, str] | None = None
        self._base = 0
        self.crashed: str | None = None

    def arm(self, index: int, when: str) -> None:
        assert when in ("before", "after")
        self._base = len(self.calls)
        self._target = (index, when)

    def disarm(self) -> None:
        self._target = None

    def mark(self) -> int:
        """Start counting afresh (returns the absolute position)."""
        self._base = len(self.calls)
        return self._base

    def since_mark(self) -> list[str]:
        return self.calls[self._base :]

    async def around(self, name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        index = len(self.calls) - self._base
        self.calls.append(name)
        target = self._target
        if target == (index, "before"):
            self._target = None
            self.crashed = f"before {name}"
            raise Crash(self.crashed)
        result = await call()
        if target == (index, "after"):
            self._target = None
            self.crashed = f"after {name}"
            raise Crash(self.crashed)
        return result


class CrashingBlobStore:
    """A fault injector around a ``MemoryBlobStore``: every ``commit`` is a step boundary."""

    def __init__(self, inner: MemoryBlobStore, plan: CrashPlan) -> None:
        self.inner = inner
        self.plan = plan

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def list(self, prefix: str) -> list[str]:
        return await self.inner.list(prefix)

    async def items(self, prefix: str) -> "builtins.list[tuple[str, bytes]]":
        return await self.inner.items(prefix)

    async def commit(self, puts: Mapping[str, bytes], deletes: Iterable[str]) -> None:
        puts, deletes = dict(puts), list(deletes)
        await self.plan.around("blob.commit", lambda: self.inner.commit(puts, deletes))


class CrashingTransport:
    """A fault injector around a ``MemoryTransport``: every call that reaches the service is a step boundary."""

    def __init__(self, inner: MemoryTransport, plan: CrashPlan) -> None:
        self.inner = inner
        self.plan = plan

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            label = name
            if name == "send" and args:
                label = f"send.{args[0].kind.name.lower()}"
            return await self.plan.around(label, lambda: attr(*args, **kwargs))

        return call


class Device:
    """One device of an account on a :class:`World`."""

    def __init__(self, world: World, identity: Identity, label: str, plan: CrashPlan | None, explicit_ack: bool = False) -> None:
        self.world = world
        self.explicit_ack = explicit_ack
        self.identity = identity
        self.label = label
        self.secret = os.urandom(32)
        self.local = LocalDevice.from_signing_secret(identity.user_id, label, NOW, self.secret)
        self.storage = MemoryStorage()
        self.blobs = MemoryBlobStore()
        self.plan = plan
        self.raw_transport: MemoryTransport
        self.transport: Any
        self._connect()
        self.blob_store: Any = CrashingBlobStore(self.blobs, plan) if plan is not None else self.blobs
        self.client: MessagingClient = None  # type: ignore[assignment]

    @property
    def device_id(self) -> DeviceId:
        return self.local.device_id

    def config(self) -> ClientConfig:
        return ClientConfig(
            identity=self.identity,
            device_label=self.label,
            storage=self.storage,
            transport=self.transport,
            now_ms=NOW,
            storage_backend=StorageBackend.Custom(self.blob_store),
            device_signing_secret_key=self.secret,
            explicit_ack=self.explicit_ack,
        )

    async def start(self) -> MessagingClient:
        self.client = await MessagingClient.init(self.config())
        assert self.client.device_id() == self.device_id
        return self.client

    async def restart(self) -> MessagingClient:
        """A new client over the same host storage, blob store and transport (a process restart)."""
        if self.plan is not None:
            self.plan.disarm()
        # A restarted process has lost the transport's in-memory state too: a new transport.
        self._connect()
        return await self.start()

    def _connect(self) -> None:
        raw = self.world.service.transport(self.local.device_id)
        self.raw_transport = raw
        self.transport = CrashingTransport(raw, self.plan) if self.plan is not None else raw

    async def publish(self, n: int = 1) -> list[bytes]:
        kps = [await self.client.fresh_key_package() for _ in range(n)]
        await self.raw_transport.publish_key_packages(kps)
        return kps

    async def claim(self) -> bytes:
        """One KeyPackage of this device, claimed from the directory (published first)."""
        await self.publish(1)
        kps = await self.raw_transport.claim_device_key_packages(self.device_id, 1)
        assert kps
        return kps[0]

    async def join_welcomes(self) -> list[ConversationId]:
        """Join every Welcome in this device's inbox (duplicates ignored), then acknowledge them."""
        joined = []
        welcomes = await self.raw_transport.fetch_welcomes()
        for w in welcomes:
            try:
                joined.append(await self.client.join_conversation(w, NOW))
            except Exception as exc:  # a second Welcome for the same join, after a re-send
                self.world.skipped_welcomes.append((self.label, type(exc).__name__))
        if welcomes:
            await self.raw_transport.ack_welcomes(welcomes[-1].seq)
        return joined

    async def sync(self) -> list[IncomingMessage]:
        return await self.client.sync_conversations(NOW)

    def epoch_authenticator(self, conv: ConversationId) -> bytes:
        group = self.client._state.convs[conv].group
        assert group is not None
        return group.epoch_authenticator

    def __repr__(self) -> str:
        return f"Device({self.label})"


class World:
    """A delivery service and the devices on it."""

    def __init__(self) -> None:
        self.service = MemoryDeliveryService()
        self.skipped_welcomes: list[tuple[str, str]] = []

    async def device(
        self, label: str, identity: Identity | None = None, *, crashable: bool = False, explicit_ack: bool = False
    ) -> Device:
        dev = Device(self, identity or Identity.generate(), label, CrashPlan() if crashable else None, explicit_ack)
        await self.service.connect(dev.identity, dev.local, NOW)
        await dev.start()
        return dev


async def pair(world: World, a: Device, b: Device, name: str | None = "chat") -> ConversationId:
    """A conversation created by ``a`` with ``b`` added and joined."""
    conv = await a.client.create_conversation(name, NOW)
    await a.client.add_members(conv, [(b.device_id, await b.claim())], NOW)
    assert await b.join_welcomes() == [conv]
    return conv


async def converse(conv: ConversationId, devices: list[Device], text: bytes = b"hi") -> None:
    """Each device sends one message; every other device must receive all of them (in one sync)."""
    sent = {}
    for d in devices:
        await d.client.send(conv, text + b" from " + d.label.encode(), NOW)
        sent[d.label] = text + b" from " + d.label.encode()
    for d in devices:
        got = [m.plaintext for m in await d.sync() if m.conversation_id == conv]
        want = [v for k, v in sent.items() if k != d.label]
        assert got == want, (d.label, got, want)


def assert_agree(conv: ConversationId, devices: list[Device]) -> None:
    """Every device is at the same epoch with the same epoch authenticator (no fork)."""
    auths = {d.label: d.epoch_authenticator(conv) for d in devices}
    epochs = {d.label: d.client._state.convs[conv].group.epoch for d in devices}  # type: ignore[union-attr]
    assert len(set(auths.values())) == 1, (epochs, {k: v.hex()[:8] for k, v in auths.items()})


def log_of(world: World, conv: ConversationId) -> list[MessageEnvelope]:
    return world.service.log(conv)


__all__ = [
    "NOW",
    "Crash",
    "CrashPlan",
    "CrashingBlobStore",
    "CrashingTransport",
    "Device",
    "World",
    "pair",
    "converse",
    "assert_agree",
    "log_of",
    "SyncCursor",
]
