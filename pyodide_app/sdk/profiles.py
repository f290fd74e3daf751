"""The origin's registry of local profiles: which account each profile holds, and its settings.

Registry database ``ping-accounts``, store ``kv``; keys ``profile/<name>/<key>``
for each local profile: ``current`` (the account's user id in hex),
``link-pending`` (a new device's linking secrets, :class:`~ping_core.link.PendingLink`),
``auto-join`` (b"1": every invitation is joined without asking), ``notify``
(what a push-woken service worker shows, :data:`NOTIFY_MODES`) and ``ack``
(b"manual": the page acknowledges messages itself, ``message.ack``). A registry
from before profiles has the bare keys: they become profile "default"'s on
first open (:func:`migrate_registry`).

The registry is read without opening any account database, so it answers
while an account's database is locked by a passphrase (``vault.*``).
"""

from __future__ import annotations

from ping_core.errors import InvalidInput
from ping_core.link import PendingLink

from ..idb import IndexedDbBlobStore
from ..locks import WebLock

__all__ = [
    "REGISTRY_DB",
    "DEFAULT_PROFILE",
    "NOTIFY_MODES",
    "ACK_MODES",
    "check_profile",
    "profile_key",
    "migrate_registry",
    "Registry",
    "ProfileRecords",
]

REGISTRY_DB = "ping-accounts"
REGISTRY_STORE = "kv"
CURRENT = "current"
PENDING_LINK = "link-pending"
AUTO_JOIN = "auto-join"
NOTIFY = "notify"
NOTIFY_MODES = ("text", "generic", "off")
ACK = "ack"
ACK_MODES = ("auto", "manual")

DEFAULT_PROFILE = "default"
_PROFILE_PREFIX = "profile/"
_MAX_PROFILE = 64


def check_profile(name: object) -> str:
    """A profile name: 1..64 characters of [A-Za-z0-9_.-]; InvalidInput otherwise."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= _MAX_PROFILE
        or not all(ch.isascii() and (ch.isalnum() or ch in "_.-") for ch in name)
    ):
        raise InvalidInput("a profile name is 1..64 characters of A-Z a-z 0-9 _ . -")
    return name


def profile_key(profile: str, name: str) -> str:
    """The registry key of ``profile``'s record ``name`` (the profile name checked)."""
    return f"{_PROFILE_PREFIX}{check_profile(profile)}/{name}"


async def migrate_registry(registry: IndexedDbBlobStore) -> bool:
    """Move the bare keys of a registry from before profiles to profile "default" (one transaction;
    a key profile "default" already has is kept). True when something moved."""
    old = [k for k in (CURRENT, PENDING_LINK, AUTO_JOIN, NOTIFY) if await registry.get(k) is not None]
    if not old:
        return False
    async with WebLock(REGISTRY_DB):  # two contexts opening at once migrate once
        puts: dict[str, bytes] = {}
        for key in old:
            value = await registry.get(key)
            target = profile_key(DEFAULT_PROFILE, key)
            if value is not None and await registry.get(target) is None:
                puts[target] = value
        await registry.commit(puts, old)
    return True


class Registry:
    """The origin's registry database, opened (and migrated) on first use; one per context,
    shared by the profiles that context serves."""

    def __init__(self) -> None:
        self._store: IndexedDbBlobStore | None = None

    async def store(self) -> IndexedDbBlobStore:
        """The opened registry (its ``default`` profile migrated on first open)."""
        if self._store is None:
            store = await IndexedDbBlobStore.open(REGISTRY_DB, REGISTRY_STORE)
            await migrate_registry(store)
            self._store = store
        return self._store

    async def profiles(self) -> dict[str, str]:
        """``{profile: account user id hex}`` of every profile that has an account."""
        out = {}
        for key, value in await (await self.store()).items(_PROFILE_PREFIX):
            profile, _, name = key[len(_PROFILE_PREFIX) :].partition("/")
            if name == CURRENT:
                out[profile] = value.decode("ascii")
        return out


class ProfileRecords:
    """One profile's records in the registry, and its settings read with their defaults."""

    def __init__(self, profile: str, registry: Registry) -> None:
        self.profile = check_profile(profile)
        self.registry = registry

    async def get(self, name: str) -> bytes | None:
        return await (await self.registry.store()).get(profile_key(self.profile, name))

    async def put(self, name: str, value: bytes) -> None:
        await (await self.registry.store()).put(profile_key(self.profile, name), value)

    async def delete(self, name: str) -> None:
        await (await self.registry.store()).delete(profile_key(self.profile, name))

    async def account_hex(self) -> str | None:
        """The user id (hex) of the profile's account, None before it has one."""
        raw = await self.get(CURRENT)
        return raw.decode("ascii") if raw is not None else None

    async def pending_link(self) -> PendingLink | None:
        """The secrets of this profile's link request as a new device, None when none is pending."""
        raw = await self.get(PENDING_LINK)
        return PendingLink.decode(raw) if raw is not None else None

    async def auto_join(self) -> bool:
        """Every invitation joined without asking (off by default)."""
        return (await self.get(AUTO_JOIN)) == b"1"

    async def notify(self) -> str:
        """What a push-woken service worker shows: one of :data:`NOTIFY_MODES` ("text" by default)."""
        raw = await self.get(NOTIFY)
        mode = raw.decode("ascii", "replace") if raw is not None else NOTIFY_MODES[0]
        return mode if mode in NOTIFY_MODES else NOTIFY_MODES[0]

    async def ack_mode(self) -> str:
        """The acknowledgement mode: "manual" when the page acknowledges messages itself (``message.ack``), else "auto"."""
        return "manual" if (await self.get(ACK)) == b"manual" else "auto"
