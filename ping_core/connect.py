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
  watch``) call :func:`top_up_key_packages` now and then (both are the shared host flows of
  ``ping_core.account``, which the browser uses too).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ping_core.account import KEY_PACKAGE_TARGET, register_device, stored_account, top_up_key_packages
from ping_core.client import ClientConfig, MessagingClient
from ping_core.device import LocalDevice
from ping_core.errors import InvalidInput, StorageError
from ping_core.identity import DeviceBinding, Identity
from ping_core.storage import BlobStorage, SqliteBlobStore, StorageBackend
from ping_core.transport.base import MAX_KEY_PACKAGES_PER_PUBLISH

__all__ = ["connect", "top_up_key_packages", "KEY_PACKAGE_TARGET", "KEY_FILE", "HOST_DB", "STATE_DB"]

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
        await register_device(client, now)
        if key_packages:
            await top_up_key_packages(client, key_packages)
    except BaseException:
        await transport.aclose()
        raise
    return client
