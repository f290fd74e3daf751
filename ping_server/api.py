"""The delivery service's HTTP API (routes under ``/v1`` and ``/api``; see ``docs/server.md``).

Every request goes through the same steps, each refusing with its own code
and none storing anything before the transaction:

0. admission: at most ``max_pending`` requests with a body
   (``max_pending_per_address`` per client address) may be unauthenticated at
   once, i.e. reading their body or not yet verified (429 ``rate_limited``
   beyond, with ``Retry-After``);
1. authentication headers parsed, timestamp within ``MAX_CLOCK_SKEW_MS``
   (401 ``unauthorized``, a stale one answered with ``Ping-Server-Time``);
2. body read with the route's size limit (413 ``too_large``) within
   ``body_timeout`` seconds (408 ``request_timeout``; both close the connection);
3. signature verified with the device's registered key (401); from here on
   the request is authenticated (registration: see :meth:`Api.register_device`);
4. per-device rate limit (429 ``rate_limited`` with ``Retry-After``);
5. path, query and CBOR body parsed and checked (400 ``invalid_request`` /
   413 ``too_large``);
6. ONE database transaction: the caller is registered (401) and not revoked
   (403), its nonce is new (401 replay) and recorded, then the operation runs.
   An operation that refuses (its ApiError) has written nothing, so only the
   nonce is kept (so that the same signed request can never be replayed later,
   when the state may let it through).

A request that fails before it is authenticated (steps 0-3, the caller check
of step 6), whatever its status, and the registration of a device the server
does not know, are "unauthenticated": each takes a token from its client
address's bucket, and while that bucket is empty they are answered 429. A
request with a valid signature of a registered, non-revoked device never
touches that bucket (it has the per-device limit, which its failures spend
like any of its requests): junk from an address never locks out the honest
devices behind it.

Steps 0-4 and the transaction of step 6 are :class:`ping_server.gate.Gate`'s; the handlers here
parse (step 5) and call the operations of :mod:`ping_server.delivery`. They run on
:mod:`ping_server.asgi` (no web framework on this path).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable
from typing import TypeVar

from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.transport import pushwire, wire
from ping_core.transport.base import (
    MAX_CLAIM_COUNT,
    MAX_DEVICE_LIST,
    MAX_FETCH_LIMIT,
    MAX_FETCH_WAIT_MS,
    MAX_KEY_PACKAGE_LEN,
    MAX_KEY_PACKAGES_PER_PUBLISH,
    MAX_WATCH_CONVERSATIONS,
)

from . import delivery, pushstore
from .app import ApiError
from .asgi import Reply, Request, Router
from .db import Database, DatabaseUnavailable, Tx
from .delivery import Caller, CallerRefused
from .limits import Notifier, RateLimiter, Subscription
from .config import ApiConfig
from .gate import Done, Gate, Refused, guarded, settle
from .push import PushDispatcher, check_subscription

__all__ = ["Api", "ApiConfig"]

_T = TypeVar("_T")

_MAX_SEQ = (1 << 63) - 1
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_UINT = re.compile(r"0|[1-9][0-9]{0,18}")
_MAX_REGISTER_BODY = 4096
_MAX_ACK_BODY = 64
_NO_CONTENT = Reply(204)






def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)




def _cbor(data: bytes) -> Reply:
    return Reply(200, data, wire.CBOR_MEDIA_TYPE)


def _query(request: Request, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, int]:
    """Strict ``name=uint&...`` query: each name at most once, only the given ones, canonical decimals."""
    raw = request.query_string
    out: dict[str, int] = {}
    for part in raw.split("&") if raw else []:
        name, sep, value = part.partition("=")
        if not sep or name in out or name not in required + optional or not _UINT.fullmatch(value):
            raise _invalid(f"malformed query parameter {name[:32]!r}")
        out[name] = int(value)
    missing = [n for n in required if n not in out]
    if missing:
        raise _invalid(f"missing query parameter {missing[0]}")
    return out


def _no_query(request: Request) -> None:
    if request.query_string:
        raise _invalid("this route takes no query parameters")


def _conversation_id(value: str) -> ConversationId:
    if not _HEX32.fullmatch(value):
        raise _invalid("malformed conversation id in path (32 lower-case hex digits)")
    return ConversationId(bytes.fromhex(value))


def _device_id(value: str) -> DeviceId:
    if not _HEX64.fullmatch(value):
        raise _invalid("malformed device id in path (64 lower-case hex digits)")
    return DeviceId(bytes.fromhex(value))


def _user_id(value: str) -> UserId:
    if not _HEX64.fullmatch(value):
        raise _invalid("malformed user id in path (64 lower-case hex digits)")
    return UserId(bytes.fromhex(value))


def _parse(decode: Callable[[bytes], _T], body: bytes) -> _T:
    try:
        return decode(body)
    except InvalidInput as exc:
        raise _invalid(str(exc)) from None


class Api:
    """The API's handlers over one :class:`~ping_server.db.Database`."""

    def __init__(self, db: Database, config: ApiConfig | None = None, *, clock_ms: Callable[[], int] | None = None) -> None:
        self.db = db
        self.config = config or ApiConfig()
        self.limits = self.config.limits
        self.notifier = Notifier()
        self.push = PushDispatcher(db, self.config.push)
        self.closing = False  # see begin_shutdown
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.gate = Gate(self.config, self.run, self._clock_ms)  # steps 0-4 and 6 of the module docstring

    def begin_shutdown(self) -> None:
        """The server stops: open long polls answer now with what they have (an empty page),
        later ones do not wait. Nothing else changes (requests in progress finish)."""
        self.closing = True
        self.notifier.notify_all()

    def router(self) -> Router:
        """The routes, relative to the API prefixes (``PingApp`` serves them under each)."""
        r = Router()
        r.add("POST", "/devices", self.register_device)
        r.add("POST", "/devices/{device}/revoke", self.revoke_device)
        r.add("DELETE", "/devices/{device}", self.revoke_device_unsigned)
        r.add("POST", "/devices/{device}/key-packages/claim", self.claim_device_key_packages)
        r.add("GET", "/accounts/{user}/devices", self.list_devices)
        r.add("GET", "/accounts/{user}/revocations", self.list_revocations)
        r.add("POST", "/accounts/{user}/key-packages/claim", self.claim_key_packages)
        r.add("POST", "/key-packages", self.publish_key_packages)
        r.add("GET", "/key-packages", self.count_key_packages)
        r.add("POST", "/conversations/{cid}/messages", self.post_message)
        r.add("GET", "/conversations/{cid}/messages", self.fetch_messages)
        r.add("POST", "/conversations/{cid}/welcomes", self.post_welcome)
        r.add("POST", "/conversations/{cid}/leave", self.leave_conversation)
        r.add("GET", "/conversations/{cid}/group-info", self.fetch_group_info)
        r.add("GET", "/welcomes", self.fetch_welcomes)
        r.add("POST", "/welcomes/ack", self.ack_welcomes)
        r.add("POST", "/watch", self.watch)
        r.add("GET", "/push/vapid-key", self.push_vapid_key)
        r.add("POST", "/push/subscriptions", self.push_subscribe)
        r.add("GET", "/push/subscriptions", self.push_subscriptions)
        r.add("POST", "/push/unsubscribe", self.push_unsubscribe)
        return r

    # -- plumbing -------------------------------------------------------------

    async def run(self, fn: Callable[[Tx], _T]) -> _T:
        """``db.run``, with an unreachable or failing database answered 503 ``server_error``."""
        try:
            return await self.db.run(fn)
        except DatabaseUnavailable as exc:
            raise ApiError(503, "server_error", f"database unavailable: {exc}") from None


    # -- devices ---------------------------------------------------------------

    async def register_device(self, request: Request) -> Reply:
        """``POST /devices``. A device the server knows proves itself with its registered key, as on
        every route (then only its own limit applies). A new device is the unauthenticated way in:
        it takes a token of its address's budget before its body is parsed (429 while spent), and
        its request must be signed with the key in the body."""
        address = self.gate.admit(request)
        charged = authenticated = False
        try:
            auth = self.gate.headers(request)
            body = await request.body(_MAX_REGISTER_BODY, self.config.body_timeout)
            known = await self.gate.key(auth.device_id)
            if known is not None:
                self.gate.verify(request, auth, body, known, key_checked=True)
                authenticated = True
            else:
                charged = True
                retry = self.gate.address_limiter.take(request.client_host, time.monotonic())
                if retry is not None:
                    raise ApiError(
                        429, "rate_limited", "too many unauthenticated requests from this address",
                        {"retry-after": RateLimiter.retry_after_header(retry)},
                    )  # fmt: skip
            _no_query(request)
            info, binding = _parse(wire.decode_register, body)
            if info.device_id != auth.device_id:
                raise ApiError(403, "forbidden", "a device registers itself only")
            delivery.verify_registration(info, binding)
            if known is None:
                self.gate.verify(request, auth, body, info.signing_public_key)
        except ApiError as exc:
            if authenticated or charged:
                raise
            raise self.gate.unauthenticated(request, exc) from None
        finally:
            if address is not None:
                self.gate.admission.leave(address)
        self.gate.device_rate(auth)

        def txn(tx: Tx) -> Done[None] | Refused:
            delivery.record_nonce(tx, auth.device_id, auth.nonce, auth.timestamp_ms)
            return guarded(tx, lambda: delivery.register(tx, info, binding))

        try:
            result = await self.run(txn)
        except CallerRefused as exc:
            raise (exc if charged else self.gate.unauthenticated(request, exc)) from None
        if isinstance(result, Refused) and result.error.status == 403 and not charged:
            raise self.gate.unauthenticated(request, result.error)  # a revoked device or a foreign account key
        settle(result)
        self.gate.remember_key(info.device_id, info.signing_public_key)
        return _NO_CONTENT

    async def _account_listing(
        self,
        request: Request,
        read: Callable[[Tx, Caller, UserId], list[bytes]],
        encode: Callable[[list[bytes]], bytes],
        *,
        revoked_ok: bool = False,
    ) -> Reply:
        """``GET /accounts/{user}/...``: ``read`` the account's stored records, answer them ``encode``d."""
        auth, _ = await self.gate.authenticate(request, 0)
        user_id = _user_id(request.params[0])
        _no_query(request)
        stored = await self.gate.call(request, auth, lambda tx, caller: read(tx, caller, user_id), revoked_ok=revoked_ok)
        return _cbor(encode(stored))

    async def list_devices(self, request: Request) -> Reply:
        """``GET /accounts/{user}/devices``: the account's non-revoked devices."""
        return await self._account_listing(request, delivery.list_devices, wire.encode_device_list)

    async def revoke_device(self, request: Request) -> Reply:
        """``POST /devices/{device}/revoke``: body ``{"v": 1, "revocation": DeviceRevocation}``, the
        account's signed statement, delivered by a device of that account (``delivery.revoke``).
        A statement for another device than the path's: 400."""
        auth, body = await self.gate.authenticate(request, wire.MAX_REVOKE_BODY)
        device_id = _device_id(request.params[0])
        _no_query(request)
        revocation = _parse(wire.decode_revoke, body)
        if revocation.device_id != device_id:
            raise _invalid("the revocation is for another device than the path's")
        await self.gate.call(request, auth, lambda tx, caller: delivery.revoke(tx, caller, device_id, revocation))
        self.notifier.notify(delivery.inbox_key(device_id))
        return _NO_CONTENT

    async def revoke_device_unsigned(self, request: Request) -> Reply:
        """``DELETE /devices/{device}`` (clients before signed revocations): always 403 ``forbidden``,
        nothing stored: a revocation needs the account's statement (``POST /devices/{device}/revoke``)."""
        auth, _ = await self.gate.authenticate(request, 0)
        _device_id(request.params[0])
        _no_query(request)

        def refuse(tx: Tx, caller: Caller) -> None:
            raise ApiError(403, "forbidden", "a revocation needs the account's signed statement: POST /devices/{id}/revoke")

        await self.gate.call(request, auth, refuse)
        return _NO_CONTENT

    async def list_revocations(self, request: Request) -> Reply:
        """``GET /accounts/{user}/revocations``: the account's kept revocation statements, newest first."""
        return await self._account_listing(request, delivery.list_revocations, wire.encode_revocation_list, revoked_ok=True)

    # -- KeyPackages --------------------------------------------------------------

    async def publish_key_packages(self, request: Request) -> Reply:
        auth, body = await self.gate.authenticate(request, wire.MAX_PUBLISH_BODY)
        _no_query(request)
        kps, last_resort, replace = _parse(wire.decode_publish, body)
        if len(kps) > MAX_KEY_PACKAGES_PER_PUBLISH:
            raise ApiError(413, "too_large", "too many KeyPackages in one call")
        for kp in [*kps, *([last_resort] if last_resort is not None else [])]:
            if not kp or len(kp) > MAX_KEY_PACKAGE_LEN:
                raise _invalid("malformed KeyPackage")
        limits = self.limits
        await self.gate.call(request, auth, lambda tx, caller: delivery.publish(tx, caller, kps, last_resort, limits, replace))
        return _NO_CONTENT

    async def count_key_packages(self, request: Request) -> Reply:
        auth, _ = await self.gate.authenticate(request, 0)
        _no_query(request)
        count = await self.gate.call(request, auth, delivery.key_package_count)
        return _cbor(wire.encode_key_package_count(count))

    async def claim_key_packages(self, request: Request) -> Reply:
        auth, _ = await self.gate.authenticate(request, 0)
        user_id = _user_id(request.params[0])
        _no_query(request)
        limits, now = self.limits, self._clock_ms()
        claimed = await self.gate.call(request, auth, lambda tx, caller: delivery.claim(tx, caller, user_id, limits, now))
        return _cbor(wire.encode_claim(claimed))

    async def claim_device_key_packages(self, request: Request) -> Reply:
        auth, _ = await self.gate.authenticate(request, 0)
        device_id = _device_id(request.params[0])
        count = _query(request, ("count",))["count"]
        if not 1 <= count <= MAX_CLAIM_COUNT:
            raise _invalid(f"count must be 1..{MAX_CLAIM_COUNT}")
        limits, now = self.limits, self._clock_ms()
        kps = await self.gate.call(request, auth, lambda tx, caller: delivery.claim_device(tx, caller, device_id, count, limits, now))
        return _cbor(wire.encode_claim_device(kps))

    # -- conversation logs ----------------------------------------------------------

    async def post_message(self, request: Request) -> Reply:
        auth, body = await self.gate.authenticate(request, wire.MAX_MESSAGE_POST_BODY)
        cid = _conversation_id(request.params[0])
        _no_query(request)
        posted = _parse(wire.decode_post_message, body)
        if posted.envelope.conversation_id != cid:
            raise _invalid("the envelope is for another conversation than the path's")
        if len(posted.removes) > MAX_DEVICE_LIST:
            raise ApiError(413, "too_large", f"more than {MAX_DEVICE_LIST} removed devices")
        removes = list(dict.fromkeys(posted.removes))
        now, limits = self._clock_ms(), self.limits
        seq = await self.gate.call(
            request,
            auth,
            lambda tx, caller: delivery.append(tx, caller, posted.envelope, removes, now, limits, posted.stored, posted.group_info),
        )
        self.notifier.notify(cid.value)
        self.push.conversation_news(cid, seq, auth.device_id)
        return _cbor(wire.encode_seq(seq))

    async def fetch_messages(self, request: Request) -> Reply:
        auth, _ = await self.gate.authenticate(request, 0)
        cid = _conversation_id(request.params[0])
        q = _query(request, ("after", "limit"), ("wait_ms",))
        after, limit, wait_ms = q["after"], q["limit"], q.get("wait_ms", 0)
        if after > _MAX_SEQ:
            raise _invalid("after out of range")
        if not 1 <= limit <= MAX_FETCH_LIMIT:
            raise _invalid(f"limit must be 1..{MAX_FETCH_LIMIT}")
        if not 0 <= wait_ms <= MAX_FETCH_WAIT_MS:
            raise _invalid(f"wait_ms must be 0..{MAX_FETCH_WAIT_MS}")

        def read(tx: Tx, caller: Caller) -> tuple[list[bytes], bool]:
            return delivery.fetch(tx, caller, cid, after, limit)

        if not wait_ms or self.closing:
            stored, more = await self.gate.call(request, auth, read)
            return _cbor(wire.encode_page(stored, more))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        sub = self.notifier.subscribe([cid.value])
        try:
            caller, (stored, more) = await self.gate.call(request, auth, lambda tx, caller: (caller, read(tx, caller)))
            while not stored and await self._wait(sub, deadline):

                def again(tx: Tx) -> tuple[list[bytes], bool]:
                    delivery.check_caller(tx, caller)
                    page = delivery.as_caller(tx, caller, read)
                    # Checked again after the read: on PostgreSQL each statement has its own
                    # snapshot, so an envelope posted after a revocation may be visible to the
                    # read when the first check ran before the revocation committed.
                    if page[0]:
                        delivery.check_caller(tx, caller)
                    return page

                stored, more = await self.run(again)
        finally:
            self.notifier.unsubscribe(sub)
        return _cbor(wire.encode_page(stored, more))

    async def _wait(self, sub: Subscription, deadline: float) -> bool:
        """A long poll's wait: until a notification of the subscription, the ``poll_interval``
        (changes made by processes that cannot notify us) or ``deadline``. False when the poll
        is over (deadline, or the server is closing: answer now). The subscription's fired keys
        are left for the caller, the event cleared (subscribed BEFORE the first read and cleared
        before each re-read, so nothing that commits in between is missed)."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0 or self.closing:
            return False
        try:
            await asyncio.wait_for(sub.event.wait(), min(remaining, self.config.poll_interval))
        except TimeoutError:
            pass
        sub.event.clear()
        return not self.closing

    async def post_welcome(self, request: Request) -> Reply:
        auth, body = await self.gate.authenticate(request, wire.MAX_POST_BODY)
        cid = _conversation_id(request.params[0])
        _no_query(request)
        env, recipients = _parse(wire.decode_post_welcome, body)
        if env.conversation_id != cid:
            raise _invalid("the envelope is for another conversation than the path's")
        if len(recipients) > MAX_DEVICE_LIST:
            raise ApiError(413, "too_large", f"more than {MAX_DEVICE_LIST} Welcome recipients")
        recipients = list(dict.fromkeys(recipients))
        now, limits = self._clock_ms(), self.limits
        await self.gate.call(request, auth, lambda tx, caller: delivery.post_welcome(tx, caller, env, recipients, now, limits))
        for device_id in recipients:
            self.notifier.notify(delivery.inbox_key(device_id))
        self.push.inbox_news(recipients, auth.device_id)
        return _NO_CONTENT

    async def leave_conversation(self, request: Request) -> Reply:
        """``POST /conversations/{cid}/leave``: end the caller's membership, drop its pending Welcomes there."""
        auth, _ = await self.gate.authenticate(request, 0)
        cid = _conversation_id(request.params[0])
        _no_query(request)
        if cid.is_device_group_id:
            raise _invalid("a device group's members are its owner's devices (revoke a device instead)")
        await self.gate.call(request, auth, lambda tx, caller: delivery.leave(tx, caller, cid))
        self.notifier.notify(cid.value)
        self.notifier.notify(delivery.inbox_key(auth.device_id))
        return _NO_CONTENT

    async def fetch_group_info(self, request: Request) -> Reply:
        """``GET /conversations/{cid}/group-info``: the verified conversation's latest GroupInfo
        (members only, 403); 404 ``not_found`` when it is not verified."""
        auth, _ = await self.gate.authenticate(request, 0)
        cid = _conversation_id(request.params[0])
        _no_query(request)
        info = await self.gate.call(request, auth, lambda tx, caller: delivery.group_info(tx, caller, cid))
        if info is None:
            raise ApiError(404, "not_found", "the conversation is not verified (no GroupInfo was uploaded)")
        return _cbor(wire.encode_group_info(info))

    async def fetch_welcomes(self, request: Request) -> Reply:
        auth, _ = await self.gate.authenticate(request, 0)
        after = _query(request, ("after",))["after"]
        if after > _MAX_SEQ:
            raise _invalid("after out of range")
        stored, more = await self.gate.call(request, auth, lambda tx, caller: delivery.fetch_welcomes(tx, caller, after))
        return _cbor(wire.encode_page(stored, more))

    async def ack_welcomes(self, request: Request) -> Reply:
        auth, body = await self.gate.authenticate(request, _MAX_ACK_BODY)
        _no_query(request)
        up_to = _parse(wire.decode_ack, body)
        await self.gate.call(request, auth, lambda tx, caller: delivery.ack_welcomes(tx, caller, up_to))
        return _NO_CONTENT

    async def watch(self, request: Request) -> Reply:
        """``POST /watch``: long-poll several conversations and the caller's Welcome inbox
        (``Transport.watch``). Checks after authentication: body structure (400), more than
        ``MAX_WATCH_CONVERSATIONS`` positions (413), a repeated conversation or ``wait_ms`` out of
        range (400); then in the transaction the caller (401/403).

        Each (re-)read is two queries whatever the number of conversations
        (:func:`delivery.watch`). Conversations that do not exist are left out of the periodic
        re-reads: only a wake-up naming them (an append to them, in this process or announced by
        another through PostgreSQL) brings them back; forbidden ones answer at once anyway."""
        auth, body = await self.gate.authenticate(request, wire.MAX_WATCH_BODY)
        _no_query(request)
        positions, wait_ms = _parse(wire.decode_watch, body)
        if len(positions) > MAX_WATCH_CONVERSATIONS:
            raise ApiError(413, "too_large", f"more than {MAX_WATCH_CONVERSATIONS} conversations in one watch")
        if len({cid for cid, _ in positions}) != len(positions):
            raise _invalid("a conversation is named twice")
        if not 0 <= wait_ms <= MAX_FETCH_WAIT_MS:
            raise _invalid(f"wait_ms must be 0..{MAX_FETCH_WAIT_MS}")
        if not wait_ms or self.closing:
            result, _ = await self.gate.call(request, auth, lambda tx, caller: delivery.watch(tx, caller, positions))
            return _cbor(wire.encode_watch_result(result))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        keys = [cid.value for cid, _ in positions] + [delivery.inbox_key(auth.device_id)]
        sub = self.notifier.subscribe(keys)
        try:
            caller, (result, absent) = await self.gate.call(
                request, auth, lambda tx, caller: (caller, delivery.watch(tx, caller, positions))
            )
            dormant = {cid.value for cid in absent}  # not re-read until a wake-up names them
            live = [(cid, seq) for cid, seq in positions if cid.value not in dormant]
            while not result.news and await self._wait(sub, deadline):
                woken = dormant.intersection(sub.take_fired())
                if woken:
                    dormant -= woken
                    live = [(cid, seq) for cid, seq in positions if cid.value not in dormant]
                result, absent = await self.run(functools.partial(delivery.watch, caller=caller, positions=live))
                if absent:
                    dormant |= {cid.value for cid in absent}
                    live = [(cid, seq) for cid, seq in live if cid not in absent]
        finally:
            self.notifier.unsubscribe(sub)
        return _cbor(wire.encode_watch_result(result))

    # -- Web Push (ping_core.transport.pushwire, ping_server.push) --------------------------

    def _push_keys(self) -> bytes:
        if self.push.keys is None:
            raise ApiError(404, "not_found", "Web Push is not enabled on this server")
        return self.push.keys.public_key

    async def push_vapid_key(self, request: Request) -> Reply:
        """``GET /push/vapid-key``: the VAPID public key (404 when push is off)."""
        auth, _ = await self.gate.authenticate(request, 0)
        _no_query(request)
        key = self._push_keys()
        await self.gate.call(request, auth, lambda tx, caller: None)
        return _cbor(pushwire.encode_vapid_key(key))

    async def push_subscribe(self, request: Request) -> Reply:
        """``POST /push/subscriptions``: add or refresh one of the caller's subscriptions. Refusals:
        400 malformed (structure, endpoint scheme or host, p256dh not on P-256, auth not 16
        bytes), 409 ``push_limit`` (``MAX_SUBSCRIPTIONS_PER_DEVICE``), 404 push off."""
        auth, body = await self.gate.authenticate(request, pushwire.MAX_PUSH_BODY)
        _no_query(request)
        self._push_keys()
        sub = _parse(pushwire.decode_subscribe, body)
        check_subscription(sub, allow_http_loopback=self.config.push.allow_http_loopback)
        now = self._clock_ms()
        await self.gate.call(request, auth, lambda tx, caller: pushstore.subscribe(tx, caller.device_id, sub, now))
        return _NO_CONTENT

    async def push_unsubscribe(self, request: Request) -> Reply:
        """``POST /push/unsubscribe``: drop one (``endpoint``) or all of the caller's subscriptions."""
        auth, body = await self.gate.authenticate(request, pushwire.MAX_PUSH_BODY)
        _no_query(request)
        endpoint = _parse(pushwire.decode_unsubscribe, body)
        await self.gate.call(request, auth, lambda tx, caller: pushstore.unsubscribe(tx, caller.device_id, endpoint))
        return _NO_CONTENT

    async def push_subscriptions(self, request: Request) -> Reply:
        """``GET /push/subscriptions``: the caller's subscriptions (endpoint, created_ms)."""
        auth, _ = await self.gate.authenticate(request, 0)
        _no_query(request)
        subs = await self.gate.call(request, auth, lambda tx, caller: pushstore.list_subscriptions(tx, caller.device_id))
        return _cbor(pushwire.encode_subscriptions(subs))

    # -- housekeeping ---------------------------------------------------------------

    async def prune_nonces_forever(self) -> None:
        """Every ``nonce_prune_interval`` seconds, forget nonces too old to be accepted again and
        KeyPackage claim counters of past windows."""
        while True:
            await asyncio.sleep(self.config.nonce_prune_interval)
            def prune(tx: Tx, now: int = self._clock_ms()) -> None:
                delivery.prune_nonces(tx, older_than_ms=now - self.config.max_clock_skew_ms - 60_000)
                delivery.prune_claims(tx, now, self.limits)

            try:
                await self.db.run(prune)
            except DatabaseUnavailable:
                pass  # try again next round


