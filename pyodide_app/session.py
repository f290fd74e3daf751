"""One account's ``MessagingClient`` in a browser context, with exactly one writer per database.

Several contexts may open the same account at once: two tabs (each with its
own worker) and the service worker. Each has its own ``MessagingClient`` with
an in-memory working set of the MLS state. Two of them writing independently
would fork the state (a ratchet generation used twice, two different commits
for one epoch). :meth:`AccountSession.use` prevents it:

1. an ``asyncio.Lock`` serialises this context's own operations;
2. the account's Web Lock (:class:`pyodide_app.locks.WebLock`, one name per
   database) admits one context at a time, across tabs and the service
   worker; it is held only for the operation, never while idle;
3. under the lock, the generation tag on disk is compared with the one this
   context last wrote or loaded (:mod:`pyodide_app.accountdb`); when another
   context wrote since, the client is rebuilt from IndexedDB
   (``MessagingClient.init``) before the operation runs.

So every operation starts from the latest durable state and its checkpoints
are the only writes until it ends. A second tab waits for the lock (an
operation takes milliseconds to a network round trip), then reloads and goes
on: both tabs work, nothing forks.

The client is built the way ``ping_core.connect`` builds one on CPython:
identity and device record in the host store, MLS state through
``StorageBackend.IndexedDb(<account database>)``, a ``FetchTransport`` to the
page's origin signing as the device.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from ping_core.client import ClientConfig, MessagingClient
from ping_core.device import LocalDevice
from ping_core.errors import IdentityError, StorageError, UnknownConversation
from ping_core.account import Account, stored_account
from ping_core.ids import ConversationId
from ping_core.storage import BlobStore, StorageBackend, register_indexeddb_opener
from ping_core.sync import News

from .accountdb import AccountDb, account_db_name
from .locks import WebLock
from .transport import FetchTransport

__all__ = ["AccountSession", "now_ms", "HOST_NS"]

HOST_NS = "ping"  # host-store namespace of this host's records (as ping_core.connect)

_open_dbs: dict[str, AccountDb] = {}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _open_db(name: str) -> AccountDb:
    db = _open_dbs.get(name)
    if db is None:
        db = await AccountDb.open(name)
        _open_dbs[name] = db
    return db


async def _indexeddb_opener(name: str) -> BlobStore:
    # StorageBackend.IndexedDb(name) -> the state store of that account database
    # (the one whose generation this context tracks).
    return (await _open_db(name)).state


class AccountSession:
    """An account opened in this context. Create with :meth:`open`; operate inside :meth:`use`."""

    def __init__(self, db: AccountDb, identity: Account, device_secret: bytes, label: str, server_url: str) -> None:
        self.db = db
        self.identity = identity
        self.label = label
        self.transport = FetchTransport(server_url, device_secret)
        self._client: MessagingClient | None = None
        self._local = asyncio.Lock()
        self.reloads = 0  # how often another context's writes made this one reload (diagnostics)

    def __repr__(self) -> str:
        return f"AccountSession(user_id={self.identity.user_id.as_hex()[:16]}..., db={self.db.name!r})"

    @property
    def user_hex(self) -> str:
        return self.identity.user_id.as_hex()

    @classmethod
    async def open(
        cls,
        user_hex: str,
        *,
        identity: Account | None = None,
        device_secret: bytes | None = None,
        label: str = "browser",
        server_url: str = "",
    ) -> AccountSession:
        """Open the account ``user_hex``; with ``identity`` (a new or linked account) create its records.

        The identity and the device record are written under the account's
        Web Lock, so two contexts creating the same account agree on one
        device. ``device_secret`` fixes the device key of a new device (a
        linking request announced it). Raises ``StorageError`` when the
        account has no identity here and none was given, ``IdentityError``
        when the given one is another account's.
        """
        # Registered here, not at import: importing this module changes nothing global.
        register_indexeddb_opener(_indexeddb_opener)
        db = await _open_db(account_db_name(user_hex))
        async with WebLock(db.lock_name):
            if identity is not None and identity.user_id.as_hex() != user_hex:
                raise IdentityError("the identity is not the account being opened")
            account = await stored_account(db.host, HOST_NS, identity, create=False)
            if account is None:
                raise StorageError(f"no account {user_hex[:16]}... in this browser")
            raw_device = await db.host.get("device", "local")
            if raw_device is not None:
                device = LocalDevice.decode(raw_device, account.user_id)
            else:
                # Written here (as MessagingClient.init would) so the transport signs as the
                # device every later init loads, whichever context created it.
                if device_secret is not None:
                    device = LocalDevice.from_signing_secret(account.user_id, label, now_ms(), device_secret)
                else:
                    device = LocalDevice.generate(account.user_id, label, now_ms())
                await db.host.put("device", "local", device.encode())
        return cls(db, account, device.signing_secret, device.label, server_url)

    def _config(self) -> ClientConfig:
        return ClientConfig(
            self.identity,
            self.label,
            self.db.host,
            self.transport,
            now_ms(),
            StorageBackend.IndexedDb(self.db.name),
        )

    @asynccontextmanager
    async def use(self) -> AsyncIterator[MessagingClient]:
        """Hold the account (this context's lock, then the Web Lock) and yield an up-to-date client.

        Not re-entrant: an operation never calls :meth:`use` inside :meth:`use`.
        """
        async with self._local, WebLock(self.db.lock_name):
            on_disk = await self.db.generation()
            if self._client is None or on_disk != self.db.state.generation:
                if self._client is not None:
                    self.reloads += 1
                self._client = None
                # Set before init: init's own writes (first DeviceGroup) move it on.
                self.db.state.generation = on_disk
                self._client = await MessagingClient.init(self._config())
            yield self._client

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """Inside :meth:`use`: buffer checkpoints until ``db.state.flush`` (see ``StateBlobStore.deferred``).

        If the block ends without a flush (an error), the in-memory client is
        ahead of the disk: it is dropped, and the next :meth:`use` reloads.
        """
        flushed = False
        try:
            with self.db.state.deferred():
                yield
                flushed = True
        finally:
            if not flushed:
                self._client = None

    def cursor_hint(self, conv: ConversationId) -> int:
        """This context's last known log position of ``conv`` (0 if unknown): where a long poll waits.

        Read without the lock (it is only a hint: a stale one makes the long
        poll return at once, and the sync that follows reloads).
        """
        client = self._client
        if client is None:
            return 0
        try:
            return client.sync_position(conv)
        except UnknownConversation:  # not joined here (yet): the long poll returns at once
            return 0

    async def wait_for_news(self, wait_ms: int) -> News | None:
        """This context's client's ``wait_for_news`` (None while no client is loaded): the live
        watch. Without the lock, like :meth:`cursor_hint` (it changes nothing; a stale client
        waits at stale positions, so it answers at once and the round that follows reloads)."""
        client = self._client
        if client is None:
            return None
        return await client.wait_for_news(wait_ms)
