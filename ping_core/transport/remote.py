"""The :class:`Transport` over ping_server's HTTP API, minus the HTTP client.

:class:`RemoteTransport` implements every Transport method with the pure
request builders and decoders of :mod:`ping_core.transport.wire` and signs
each request as its device. A subclass supplies one coroutine,
:meth:`RemoteTransport._exchange`, that sends bytes and returns the answer:
:class:`ping_core.transport.http.HttpTransport` does it with httpx, the
browser's ``pyodide_app.transport`` with ``fetch``. Both therefore behave the
same, including errors:

* a 2xx answer that does not decode is a ``TransportError`` carrying that
  status and no code (ambiguous: the server may have applied the request);
* any other answer is a ``TransportError`` with the status and the server's
  ``code`` (:func:`ping_core.transport.wire.error_from_response`);
* no answer is the subclass's ``TransportError`` with ``status=None`` and code
  ``timeout`` or ``network``.

Two refusals are retried here, both safe because the server certainly did
not apply the request: a 401 that carries ``Ping-Server-Time`` (our clock is
off: adopt the server's offset and re-sign once) and a 429 ``rate_limited``
(wait for ``Retry-After``, at most ``max_retry_wait`` seconds, up to
``rate_limit_retries`` times).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from ping_core.device import DeviceInfo
from ping_core.errors import InvalidInput, TransportError
from ping_core.identity import DeviceBinding, DeviceRevocation
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor

from . import pushwire, wire
from .base import KeyPackageCount, PendingRouting, RoutesNextCommit, WatchResult

__all__ = ["RemoteTransport", "RawResponse"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RawResponse:
    """An HTTP answer: status, headers with lower-case names, and the body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class RemoteTransport(RoutesNextCommit):
    """A device's Transport to ping_server; subclasses implement :meth:`_exchange`.

    ``server_url`` is the server's base URL (``http://host:port``, optionally
    with a path prefix the server is mounted under). ``signer`` holds the
    device key. ``clock_ms`` gives Unix milliseconds (tests pass a fake).
    """

    def __init__(
        self,
        server_url: str,
        signer: wire.RequestSigner,
        *,
        timeout: float = 30.0,
        clock_ms: Callable[[], int] | None = None,
        rate_limit_retries: int = 2,
        max_retry_wait: float = 2.0,
    ) -> None:
        if not isinstance(signer, wire.RequestSigner):
            raise InvalidInput("RemoteTransport needs a RequestSigner")
        if not isinstance(server_url, str):
            raise InvalidInput("server_url must be text")
        parts = urlsplit(server_url)
        if parts.query or parts.fragment:
            raise InvalidInput("server_url must not have a query or fragment")
        self.server_url = server_url.rstrip("/")
        self._base_path = parts.path.rstrip("/")
        self._signer = signer
        self.timeout = timeout
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._clock_offset_ms = 0  # server time minus ours, learnt from a stale-timestamp refusal
        self._rate_limit_retries = rate_limit_retries
        self._max_retry_wait = max_retry_wait
        self._pending = PendingRouting()

    @property
    def device_id(self) -> DeviceId:
        """The device this transport authenticates as."""
        return self._signer.device_id

    # -- the one thing a subclass provides ---------------------------------

    async def _exchange(
        self, method: str, target: str, body: bytes, headers: dict[str, str], timeout: float, max_response: int
    ) -> RawResponse:
        """Send one request to ``server_url`` + ``target`` and return the answer, whatever its status.

        Raise ``TransportError(status=None, code="timeout" | "network")`` when no
        complete answer arrives within ``timeout`` seconds, and
        ``TransportError(status=<status>, code=None)`` when the body exceeds
        ``max_response`` bytes.
        """
        raise NotImplementedError

    # -- request plumbing ---------------------------------------------------

    async def _request(self, req: wire.WireRequest, *, extra_timeout: float = 0.0) -> RawResponse:
        """Sign, send, and return a 2xx answer; raise ``TransportError`` for anything else."""
        target = self._base_path + req.target
        clock_fixed = False
        rate_retries = 0
        while True:
            headers = self._signer.headers(req.method, target, req.body, self._clock_ms() + self._clock_offset_ms)
            if req.body:
                headers["content-type"] = wire.CBOR_MEDIA_TYPE
            resp = await self._exchange(
                req.method, target, req.body, headers, self.timeout + extra_timeout, wire.MAX_RESPONSE_BYTES
            )
            if 200 <= resp.status < 300:
                return resp
            err = wire.error_from_response(resp.status, resp.body, resp.headers.get("content-type", ""))
            server_time = resp.headers.get(wire.HEADER_SERVER_TIME, "")
            if resp.status == 401 and not clock_fixed and server_time.isdigit() and len(server_time) < 17:
                self._clock_offset_ms = int(server_time) - self._clock_ms()
                clock_fixed = True
                continue
            if resp.status == 429 and rate_retries < self._rate_limit_retries:
                rate_retries += 1
                await asyncio.sleep(min(_retry_after(resp.headers), self._max_retry_wait))
                continue
            raise err

    @staticmethod
    def _decode(resp: RawResponse, decode: Callable[[bytes], _T], what: str) -> _T:
        try:
            return decode(resp.body)
        except InvalidInput as exc:
            # The server answered 2xx, so it may have applied the request: ambiguous.
            raise TransportError(f"malformed {what} response: {exc}", status=resp.status) from None

    # -- conversation logs ---------------------------------------------------

    async def send(self, envelope: MessageEnvelope) -> int:
        if not isinstance(envelope, MessageEnvelope):
            raise InvalidInput("send needs a MessageEnvelope")
        cid = envelope.conversation_id
        if envelope.kind is MessageKind.WELCOME:
            recipients = self._pending.welcome_recipients(cid) or []
            await self._request(wire.post_welcome_request(envelope, recipients))
            self._pending.welcome_delivered(cid)
            return 0
        removes: list[DeviceId] = []
        group_info = None
        if envelope.kind is MessageKind.COMMIT:
            removes = self._pending.take_commit_removals(cid)
            group_info = self._pending.take_commit_group_info(cid)
        resp = await self._request(wire.post_message_request(envelope, removes, group_info))
        seq = self._decode(resp, wire.decode_seq, "send")
        if seq < 1:
            raise TransportError("malformed send response: seq 0", status=resp.status)
        return seq

    async def fetch_since(
        self, conversation_id: ConversationId, cursor: SyncCursor, limit: int, *, wait_ms: int = 0
    ) -> list[MessageEnvelope]:
        if not isinstance(conversation_id, ConversationId) or not isinstance(cursor, SyncCursor):
            raise InvalidInput("fetch_since needs a ConversationId and a SyncCursor")
        out: list[MessageEnvelope] = []
        after = cursor.seq
        while True:
            req = wire.fetch_request(conversation_id, SyncCursor(after), limit - len(out) if out else limit, wait_ms if not out else 0)
            resp = await self._request(req, extra_timeout=wait_ms / 1000 if not out else 0.0)
            page = self._decode(resp, lambda b: wire.decode_page(b, max(1, limit)), "fetch")
            for env in page.envelopes:
                if env.conversation_id != conversation_id or env.seq <= after:
                    raise TransportError("malformed fetch response: envelope out of order or conversation", status=resp.status)
                after = env.seq
            out.extend(page.envelopes)
            # A page cut short by the server's byte budget: fetch the rest up to ``limit``.
            if not page.more or not page.envelopes or len(out) >= limit:
                if len(out) > limit:
                    raise TransportError("malformed fetch response: more than the limit", status=resp.status)
                return out

    async def watch(self, positions: Mapping[ConversationId, int], *, wait_ms: int = 0) -> WatchResult:
        if not isinstance(positions, Mapping):
            raise InvalidInput("watch needs a mapping ConversationId -> seq")
        asked = dict(positions)
        req = wire.watch_request(asked, wait_ms)
        resp = await self._request(req, extra_timeout=wait_ms / 1000 if wait_ms > 0 else 0.0)
        return self._decode(resp, lambda b: wire.decode_watch_result(b, asked), "watch")

    async def fetch_group_info(self, conversation_id: ConversationId) -> bytes | None:
        if not isinstance(conversation_id, ConversationId):
            raise InvalidInput("fetch_group_info needs a ConversationId")
        try:
            resp = await self._request(wire.group_info_request(conversation_id))
        except TransportError as exc:
            if exc.status == 404:  # not verified (or a server before verified conversations)
                return None
            raise
        return self._decode(resp, wire.decode_group_info, "fetch_group_info")

    # -- directory: devices -------------------------------------------------

    async def register_device(self, info: DeviceInfo, binding: DeviceBinding) -> None:
        if not isinstance(info, DeviceInfo) or not isinstance(binding, DeviceBinding):
            raise InvalidInput("register_device needs a DeviceInfo and a DeviceBinding")
        await self._request(wire.register_request(info, binding))

    async def list_devices(self, user_id: UserId) -> list[DeviceInfo]:
        resp = await self._request(wire.list_devices_request(user_id))
        devices = self._decode(resp, wire.decode_device_list, "list_devices")
        return devices

    async def revoke_device_remote(self, device_id: DeviceId, revocation: DeviceRevocation) -> None:
        if not isinstance(device_id, DeviceId) or not isinstance(revocation, DeviceRevocation):
            raise InvalidInput("revoke_device_remote needs a DeviceId and a DeviceRevocation")
        await self._request(wire.revoke_request(device_id, revocation))

    async def list_revocations(self, user_id: UserId) -> list[DeviceRevocation]:
        if not isinstance(user_id, UserId):
            raise InvalidInput("list_revocations needs a UserId")
        resp = await self._request(wire.list_revocations_request(user_id))
        return self._decode(resp, lambda b: wire.decode_revocation_list(b, user_id), "list_revocations")

    # -- directory: KeyPackages ------------------------------------------------

    async def publish_key_packages(
        self, key_packages: list[bytes], last_resort: bytes | None = None, *, replace: bool = False
    ) -> None:
        kps = list(key_packages)
        for kp in [*kps, *([last_resort] if last_resort is not None else [])]:
            if not isinstance(kp, bytes):
                raise InvalidInput("a KeyPackage is bytes")
        if type(replace) is not bool:
            raise InvalidInput("replace must be a bool")
        await self._request(wire.publish_request(kps, last_resort, replace))

    async def key_package_count(self) -> KeyPackageCount:
        """This device's KeyPackage stock on the server (:class:`~ping_core.transport.base.KeyPackageSupply`)."""
        resp = await self._request(wire.key_package_count_request())
        return self._decode(resp, wire.decode_key_package_count, "key_package_count")

    async def claim_key_packages(self, user_id: UserId) -> list[tuple[DeviceId, bytes]]:
        resp = await self._request(wire.claim_request(user_id))
        claimed = self._decode(resp, wire.decode_claim, "claim_key_packages")
        return claimed

    async def claim_device_key_packages(self, device_id: DeviceId, count: int) -> list[bytes]:
        resp = await self._request(wire.claim_device_request(device_id, count))
        kps = self._decode(resp, wire.decode_claim_device, "claim_device_key_packages")
        if len(kps) > max(count, 0):
            raise TransportError("malformed claim response: more than asked for", status=resp.status)
        return kps

    # -- directory: Welcome inbox ------------------------------------------------

    async def fetch_welcomes(self) -> list[MessageEnvelope]:
        out: list[MessageEnvelope] = []
        after = 0
        while True:
            resp = await self._request(wire.fetch_welcomes_request(after))
            page = self._decode(resp, lambda b: wire.decode_page(b, wire.MAX_WELCOME_PAGE), "fetch_welcomes")
            for env in page.envelopes:
                if env.kind is not MessageKind.WELCOME or env.seq <= after:
                    raise TransportError("malformed fetch_welcomes response", status=resp.status)
                after = env.seq
            out.extend(page.envelopes)
            if not page.more or not page.envelopes:
                return out

    async def ack_welcomes(self, up_to_seq: int) -> None:
        await self._request(wire.ack_welcomes_request(up_to_seq))

    async def leave_conversation(self, conversation_id: ConversationId) -> None:
        if not isinstance(conversation_id, ConversationId):
            raise InvalidInput("leave_conversation needs a ConversationId")
        await self._request(wire.leave_request(conversation_id))

    # -- Web Push (ping_core.transport.pushwire; ping_server only, not part of Transport) ----

    async def push_vapid_key(self) -> bytes:
        """The server's VAPID public key (65 bytes, an uncompressed P-256 point): the
        ``applicationServerKey`` a browser's ``pushManager.subscribe`` needs."""
        resp = await self._request(pushwire.vapid_key_request())
        return self._decode(resp, pushwire.decode_vapid_key, "push_vapid_key")

    async def push_subscribe(self, subscription: pushwire.PushSubscription) -> None:
        """Register (or refresh) this device's push subscription: the server then wakes it there
        when its logs or Welcome inbox have news. ``InvalidInput`` before sending when it is
        malformed; the server refuses (400) what only it can check (scheme, host, key)."""
        if not isinstance(subscription, pushwire.PushSubscription):
            raise InvalidInput("push_subscribe needs a PushSubscription")
        await self._request(pushwire.subscribe_request(subscription))

    async def push_unsubscribe(self, endpoint: str | None = None) -> None:
        """Drop this device's subscription at ``endpoint``, or all of them (None)."""
        await self._request(pushwire.unsubscribe_request(endpoint))

    async def push_subscriptions(self) -> list[pushwire.SubscriptionInfo]:
        """This device's registered push subscriptions."""
        resp = await self._request(pushwire.subscriptions_request())
        return self._decode(resp, pushwire.decode_subscriptions, "push_subscriptions")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.server_url!r}, device_id={self.device_id.as_hex()[:16]}...)"


def _retry_after(headers: Mapping[str, str]) -> float:
    value = headers.get("retry-after", "1")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0
