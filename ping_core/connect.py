"""``connect``: a ready :class:`~ping_core.client.MessagingClient` on ping_server, with its state in a folder.

::

    client = await ping_core.connect("https://ping.example", "~/.ping", "laptop")

What it wires (CPython; the browser worker builds its client itself):

* the state folder (created ``0700``) holds ``storage.key`` (32 random bytes,
  ``0600``, unless the caller passes ``storage_key``), ``host.sqlite`` (the
  host records: the account identity and the device record) and
  ``state.sqlite`` (the MLS state), both encrypted with that key
  (``ping_core.storage.sqlite``);
* the account: the stored one, else ``identity`` (e.g. moved here by linking:
  the account key, or only the account's ``DeviceBinding`` of this device),
  else a new one; a folder never changes account (``IdentityError``); a
  folder holding only a binding takes the account key when it is given;
* the device key: the stored device's, else ``device_secret`` (a 32-byte
  Ed25519 seed the host chose, e.g. announced in a linking request), else a new one;
* :class:`~ping_core.transport.http.HttpTransport` signing as that device;
* registration with the server (every call: it is idempotent and refreshes the
  label), then a KeyPackage top-up (:func:`top_up_key_packages`): when the
  server holds fewer than half of ``key_packages`` unclaimed one-time
  KeyPackages of this device, fresh ones fill it up to ``key_packages``, and a
  last-resort one is published when the server has none (an existing one is
  kept), so others can always add this device. Long-running hosts (``ping
  watch``) call :func:`top_up_key_packages` now and then.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ping_core.account import stored_account
from ping_core.client import ClientConfig, MessagingClient
from ping_core.device import LocalDevice
from ping_core.errors import InvalidInput, StorageError
from ping_core.identity import DeviceBinding, Identity
from ping_core.storage import BlobStorage, SqliteBlobStore, StorageBackend
from ping_core.transport.base import MAX_KEY_PACKAGES_PER_PUBLISH, KeyPackageSupply

__all__ = ["connect", "top_up_key_packages", "KEY_PACKAGE_TARGET", "KEY_FILE", "HOST_DB", "STATE_DB"]

# One-time KeyPackages a device keeps on the server (connect's ``key_packages``).
KEY_PACKAGE_TARGET = 20

KEY_FILE = "storage.key"
HOST_DB = "host.sqlite"
STATE_DB = "state.sqlite"
_NS = "ping"  # host-storage namespace of connect's own records


def _state_dir(path: str | os.PathLike[str]) -> Path:
    folder = Path(path).expanduser()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise StorageError(f"cannot use the state folder {str(folder)!r}: {exc.strerror}") from None
    return folder


def _storage_key(folder: Path) -> bytes:
    """The folder's key file: read it, or create it (owner-only) on first use."""
    path = folder / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
        if len(key) != 32:
            raise StorageError(f"{str(path)!r} is not a 32-byte storage key") from None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # never leave the key readable by others
        return key
    except OSError as exc:
        raise StorageError(f"cannot create {str(path)!r}: {exc.strerror}") from None
    key = os.urandom(32)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


async def connect(
    server_url: str,
    state_dir: str | os.PathLike[str],
    device_label: str = "device",
    *,
    storage_key: bytes | None = None,
    identity: Identity | DeviceBinding | None = None,
    device_secret: bytes | None = None,
    key_packages: int = KEY_PACKAGE_TARGET,
    timeout: float = 30.0,
    now_ms: int | None = None,
) -> MessagingClient:
    """Open (or create) the client whose state is in ``state_dir``, connected to ``server_url``.

    Raises ``StorageError`` (unusable folder, wrong key), ``IdentityError``
    (``identity`` is not the folder's account) and ``TransportError`` (the
    server refused the registration or did not answer; nothing of the local
    state is lost, call again). Close it with ``await client.transport.aclose()``.
    """
    from ping_core.transport.http import HttpTransport  # httpx: CPython only, imported on use

    if not 0 <= key_packages <= MAX_KEY_PACKAGES_PER_PUBLISH:
        raise InvalidInput(f"key_packages must be 0..{MAX_KEY_PACKAGES_PER_PUBLISH}")
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    folder = _state_dir(state_dir)
    key = storage_key if storage_key is not None else _storage_key(folder)
    if not isinstance(key, bytes) or len(key) != 32:
        raise InvalidInput("storage_key must be 32 bytes")
    host = BlobStorage(SqliteBlobStore.open(folder / HOST_DB, key))

    account = await stored_account(host, _NS, identity)
    assert account is not None
    raw_device = await host.get("device", "local")
    if raw_device is not None:
        secret = LocalDevice.decode(raw_device, account.user_id).signing_secret
    elif device_secret is not None:
        if not isinstance(device_secret, bytes) or len(device_secret) != 32:
            raise InvalidInput("device_secret must be a 32-byte Ed25519 seed")
        secret = device_secret
    else:
        secret = os.urandom(32)
    transport = HttpTransport(server_url, secret, timeout=timeout)
    try:
        client = await MessagingClient.init(
            ClientConfig(
                account,
                device_label,
                host,
                transport,
                now,
                StorageBackend.Sqlite(str(folder / STATE_DB), key),
                device_signing_secret_key=secret,
            )
        )
        await transport.register_device(client.device_info(now), client.device_binding())
        if key_packages:
            await top_up_key_packages(client, key_packages)
    except BaseException:
        await transport.aclose()
        raise
    return client


async def top_up_key_packages(client: MessagingClient, target: int = KEY_PACKAGE_TARGET, *, low_water: int | None = None) -> int:
    """Keep this device reachable: ask the server how many of its one-time KeyPackages are still
    unclaimed; below ``low_water`` (default half of ``target``, rounded up, so a busy device does
    not publish one at a time) publish fresh ones up to ``target``; publish a last-resort KeyPackage when the
    server has none (an existing one is kept: peers may hold it). Returns the number of
    one-time KeyPackages published.

    The client's transport must offer ``key_package_count`` (:class:`~ping_core.transport.base.KeyPackageSupply`,
    as ``HttpTransport`` does; ``InvalidInput`` otherwise). Each KeyPackage's private keys are
    durable before it is published (``fresh_key_package``). Raises ``TransportError`` when the
    server refuses or does not answer (nothing is lost: unpublished KeyPackages are only unused).
    """
    if not 0 <= target <= MAX_KEY_PACKAGES_PER_PUBLISH:
        raise InvalidInput(f"target must be 0..{MAX_KEY_PACKAGES_PER_PUBLISH}")
    low = (target + 1) // 2 if low_water is None else low_water
    transport = client.transport
    if not isinstance(transport, KeyPackageSupply):
        raise InvalidInput("the client's transport cannot count KeyPackages (no key_package_count)")
    if await client.retire_outdated_key_packages():
        # KeyPackages made before account bindings: peers refuse them, so the server's pool is
        # replaced at once, the last-resort one too.
        fresh = [await client.fresh_key_package() for _ in range(target)]
        await transport.publish_key_packages(fresh, last_resort=await client.fresh_key_package(last_resort=True), replace=True)
        return len(fresh)
    stock = await transport.key_package_count()
    fresh = [await client.fresh_key_package() for _ in range(target - stock.unclaimed)] if stock.unclaimed < low else []
    last_resort = None if stock.last_resort else await client.fresh_key_package(last_resort=True)
    if fresh or last_resort is not None:
        await transport.publish_key_packages(fresh, last_resort=last_resort)
    return len(fresh)
