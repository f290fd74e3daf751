"""Web Push: the server wakes a device's browser when its logs or Welcome inbox have news.

Delivery is RFC 8030 (an HTTP POST to the subscription's endpoint at the browser vendor's push
service) authenticated with VAPID (RFC 8292, ``py_vapid``: an ES256 JWT for the endpoint's
origin and the server's public key in ``Authorization: vapid t=..., k=...``), its payload
encrypted for the subscription with RFC 8291's ``aes128gcm`` (``http_ece``, a fresh ephemeral
P-256 key and salt per message). No crypto is written here.

What a push says: ``{"v": 1, "device": "<device id hex>"}`` and nothing else (no conversation,
no sender, no count, no text); the service worker then syncs and decrypts itself. Even that is
encrypted for the browser, so the push service sees only its size and time.

Guarantees of :class:`PushDispatcher`:

* news never waits for a push: the API calls :meth:`~PushDispatcher.conversation_news` /
  :meth:`~PushDispatcher.inbox_news` after its transaction committed; they only schedule work
  (a failing push service or database costs the POST nothing);
* coalescing: at most one push per device per ``interval`` seconds; news within the interval
  is carried by one push at its end (and RFC 8030 §5.4 ``Topic: ping`` lets the push service
  replace a push still waiting there);
* the sender's device is never woken by its own post; revoked devices never (their rows are
  deleted at revocation and only non-revoked devices are read);
* a 404 or 410 answer deletes the subscription (RFC 8030 §7.3, §6.2);
* the private key never reaches a log, exception or ``repr``; endpoints are capability URLs,
  so logs name only their host.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import http_ece  # type: ignore[import-untyped]
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02  # type: ignore[import-untyped]

from ping_core.ids import ConversationId, DeviceId
from ping_core.transport.pushwire import PushSubscription

from . import pushstore
from .app import ApiError
from .db import Database, DatabaseUnavailable

__all__ = ["PushConfig", "VapidKeys", "PushDispatcher", "check_subscription", "b64url"]

log = logging.getLogger("ping_server.push")

_KEY_NAME = "vapid"
_JWT_LIFETIME = 12 * 3600  # RFC 8292 §2: "exp" no more than 24 hours ahead
_JWT_REUSE = 3600  # a token is reused for an hour (one signature per push service per hour)


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5), how Web Push spells keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class PushConfig:
    """Web Push settings (``python -m ping_server --help``: the ``--push-*`` and ``--vapid-*`` options)."""

    enabled: bool = True
    key_file: str | None = None  # a PEM file for the VAPID key (created 0600 when missing); None: in the database
    subject: str = "mailto:ping@localhost"  # RFC 8292 §2.1 "sub": how the push service reaches the operator
    interval: float = 2.0  # at most one push per device per this many seconds
    ttl: int = 3600  # RFC 8030 §5.2: how long the push service keeps a push for an offline browser
    timeout: float = 10.0  # per POST to a push service
    concurrency: int = 16  # POSTs in flight at once
    max_scheduled: int = 10_000  # devices with a push due at once (beyond: dropped; the device syncs on its own)
    # Tests and development only: accept http://127.0.0.1:<port>/... endpoints (a local fake push service).
    allow_http_loopback: bool = False


class VapidKeys:
    """The server's VAPID key pair (P-256). ``public_key``: 65 bytes, uncompressed."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._vapid = Vapid02(private_key)
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self._tokens: dict[tuple[str, str], tuple[float, str]] = {}

    def __repr__(self) -> str:
        return f"VapidKeys(public={b64url(self.public_key)[:12]}...)"

    @staticmethod
    def generate() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    @classmethod
    def from_der(cls, der: bytes) -> "VapidKeys":
        key = serialization.load_der_private_key(der, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("the VAPID key is not a P-256 private key")
        return cls(key)

    @staticmethod
    def to_der(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    @classmethod
    def from_file(cls, path: Path) -> "VapidKeys":
        """The key in the PEM file ``path``, generated and written (mode 0600, never replaced)
        when the file does not exist."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
                raise ValueError(f"{path}: not a P-256 private key") from None
            return cls(key)
        fresh = cls.generate()
        with os.fdopen(fd, "wb") as f:
            f.write(fresh.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return cls(fresh)

    def authorization(self, endpoint: str, subject: str, now: float) -> str:
        """The ``Authorization`` header for a POST to ``endpoint`` (RFC 8292 §3: the JWT's ``aud``
        is the endpoint's origin)."""
        parts = urlsplit(endpoint)
        aud = f"{parts.scheme}://{parts.netloc}"
        cached = self._tokens.get((aud, subject))
        if cached is not None and now - cached[0] < _JWT_REUSE:
            return cached[1]
        if len(self._tokens) > 1000:
            self._tokens.clear()
        header: str = self._vapid.sign({"aud": aud, "sub": subject, "exp": int(now) + _JWT_LIFETIME})["Authorization"]
        self._tokens[(aud, subject)] = (now, header)
        return header


def check_subscription(sub: PushSubscription, *, allow_http_loopback: bool) -> None:
    """400 ``invalid_request`` unless the endpoint is an https URL of a named host (no user info,
    no fragment, no IP literal, not localhost: the server POSTs there, so it must not be turned
    against the server's own network), or with ``allow_http_loopback`` an
    ``http://127.0.0.1:<port>`` URL; and ``p256dh`` is a point of P-256 (RFC 8291 §3.1)."""
    try:
        parts = urlsplit(sub.endpoint)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise ApiError(400, "invalid_request", "the push endpoint is not a URL") from None
    if parts.username is not None or parts.password is not None or parts.fragment or not host:
        raise ApiError(400, "invalid_request", "the push endpoint must be a plain https URL")
    if parts.scheme == "http":
        if not (allow_http_loopback and host == "127.0.0.1" and port is not None):
            raise ApiError(400, "invalid_request", "the push endpoint must be https")
    elif parts.scheme == "https":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            raise ApiError(400, "invalid_request", "the push endpoint must name a host, not an address")
        if host == "localhost" or host.endswith(".localhost") or "." not in host:
            raise ApiError(400, "invalid_request", "the push endpoint must be a public host")
    else:
        raise ApiError(400, "invalid_request", "the push endpoint must be https")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sub.p256dh)
    except ValueError:
        raise ApiError(400, "invalid_request", "p256dh is not a P-256 public key") from None


def encrypt(plaintext: bytes, p256dh: bytes, auth: bytes) -> bytes:
    """RFC 8291 §3-4: ``aes128gcm`` content coding with a fresh ephemeral ECDH key and salt; the
    header's keyid is that key (http_ece puts it there)."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        plaintext, salt=os.urandom(16), private_key=ephemeral, dh=p256dh, auth_secret=auth, version="aes128gcm"
    )
    return body


class PushDispatcher:
    """Sends the pushes (see the module docstring). :meth:`start` loads or makes the key (in the
    lifespan), :meth:`close` cancels what is still due. ``stats`` counts outcomes."""

    def __init__(
        self,
        db: Database,
        config: PushConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.config = config or PushConfig()
        self.keys: VapidKeys | None = None
        self._clock = clock
        self._client = client
        self._own_client = client is None
        self._last: dict[DeviceId, float] = {}
        self._scheduled: set[DeviceId] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(max(1, self.config.concurrency))
        self.stats = {"sent": 0, "gone": 0, "failed": 0, "coalesced": 0, "dropped": 0}

    async def start(self) -> None:
        if not self.config.enabled or self.keys is not None:
            return
        if self.config.key_file is not None:
            self.keys = VapidKeys.from_file(Path(self.config.key_file))
        else:
            fresh = VapidKeys.to_der(VapidKeys.generate())
            self.keys = VapidKeys.from_der(await self.db.run(lambda tx: pushstore.load_or_store_key(tx, _KEY_NAME, fresh)))
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False, timeout=self.config.timeout, limits=httpx.Limits(max_connections=self.config.concurrency)
            )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def ready(self) -> bool:
        return self.keys is not None and self._client is not None

    # -- news (called by the API after its transaction committed; never blocks) ----------

    def conversation_news(self, conversation_id: ConversationId, seq: int, sender: DeviceId) -> None:
        """Envelope ``seq`` was appended to the conversation by ``sender``: wake its other readers."""
        if self.ready:
            self._spawn(self._conversation(conversation_id, seq, sender))

    def inbox_news(self, devices: list[DeviceId], sender: DeviceId) -> None:
        """A Welcome reached the inboxes of ``devices``."""
        if self.ready:
            for device in devices:
                if device != sender:
                    self._wake(device)

    async def _conversation(self, conversation_id: ConversationId, seq: int, sender: DeviceId) -> None:
        try:
            devices = await self.db.run(lambda tx: pushstore.conversation_targets(tx, conversation_id, seq, sender))
        except DatabaseUnavailable:
            self.stats["failed"] += 1
            return
        for device in devices:
            self._wake(device)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wake(self, device: DeviceId) -> None:
        if device in self._scheduled:
            self.stats["coalesced"] += 1  # the push already due carries this news too
            return
        if len(self._scheduled) >= self.config.max_scheduled:
            self.stats["dropped"] += 1
            return
        now = self._clock()
        last = self._last.get(device)
        delay = 0.0 if last is None else max(0.0, last + self.config.interval - now)
        self._scheduled.add(device)
        self._spawn(self._push(device, delay))

    async def _push(self, device: DeviceId, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
        finally:
            self._scheduled.discard(device)  # news from now on needs a push of its own
        now = self._clock()
        self._last[device] = now
        if len(self._last) > 4 * self.config.max_scheduled:  # forget devices past their interval
            self._last = {d: t for d, t in self._last.items() if now - t < self.config.interval}
        try:
            subs = await self.db.run(lambda tx: pushstore.subscriptions_of(tx, device))
        except DatabaseUnavailable:
            self.stats["failed"] += 1
            return
        payload = json.dumps({"v": 1, "device": device.as_hex()}, separators=(",", ":")).encode("ascii")
        await asyncio.gather(*(self._send(sub, payload) for sub in subs))

    async def _send(self, sub: pushstore.StoredSubscription, payload: bytes) -> None:
        assert self.keys is not None and self._client is not None
        host = urlsplit(sub.endpoint).hostname
        async with self._sem:
            try:
                headers = {
                    "authorization": self.keys.authorization(sub.endpoint, self.config.subject, time.time()),
                    "content-encoding": "aes128gcm",  # RFC 8291 §4
                    "content-type": "application/octet-stream",
                    "ttl": str(self.config.ttl),  # RFC 8030 §5.2
                    "urgency": "high",  # RFC 8030 §5.3: a message for the user
                    "topic": "ping",  # RFC 8030 §5.4: a newer push replaces one still queued
                }
                body = encrypt(payload, sub.p256dh, sub.auth)
                async with self._client.stream("POST", sub.endpoint, content=body, headers=headers) as resp:
                    status = resp.status_code  # the body is never read: nothing in it matters
            except (httpx.HTTPError, OSError, ValueError) as exc:
                self.stats["failed"] += 1
                log.warning("push to %s failed: %s", host, type(exc).__name__)
                return
        if status in (404, 410):  # RFC 8030 §7.3: the subscription expired or was removed
            self.stats["gone"] += 1
            for attempt in range(3):  # a busy database (PostgreSQL pool, lock timeout) gets a second try
                try:
                    await self.db.run(lambda tx: pushstore.delete_subscription(tx, sub.device_id, sub.endpoint))
                    break
                except DatabaseUnavailable:
                    log.info("deleting a gone push subscription failed (attempt %d)", attempt + 1)
                    await asyncio.sleep(0.2 * (attempt + 1))
            # Still there: the next push finds it gone again.
        elif 200 <= status < 300:
            self.stats["sent"] += 1
        else:
            self.stats["failed"] += 1
            log.warning("push to %s refused: HTTP %d", host, status)
