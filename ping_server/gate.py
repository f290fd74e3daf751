"""The steps every API request goes through around its operation (see :mod:`ping_server.api`):
admission (step 0), the signed headers (1), the body (2), the signature (3), the per-device rate
limit (4), and the transaction that checks the caller, records its nonce and runs the operation
(6), with the address budget charged for every request that did not authenticate.

:func:`guarded` is the transaction's rule: an operation that refuses has written nothing, so the
nonce recorded before it commits alone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ping_core.errors import CryptoError, InvalidInput
from ping_core.ids import DeviceId
from ping_core.mls.crypto import default_provider
from ping_core.transport import wire

from . import delivery
from .app import ApiError
from .asgi import Request
from .config import ApiConfig
from .db import Tx
from .delivery import Caller, CallerRefused
from .limits import Admission, RateLimiter

__all__ = ["Gate", "Done", "Refused", "RefusedAfterWriting", "guarded", "settle", "unauthorized"]

_T = TypeVar("_T")
_MAX_KEY_CACHE = 100_000


class _Runner(Protocol):
    """Runs ``fn`` in one transaction (``Api.run``)."""

    def __call__(self, fn: Callable[[Tx], _T]) -> Awaitable[_T]: ...


@dataclass(frozen=True, slots=True)
class Done(Generic[_T]):
    """An operation's result, to return once its transaction committed."""

    value: _T


@dataclass(frozen=True, slots=True)
class Refused:
    """An operation's refusal (it wrote nothing), to raise once the nonce's transaction committed."""

    error: ApiError


class RefusedAfterWriting(Exception):
    """A bug: an operation refused (ApiError) after it had written. The whole request is rolled
    back (its nonce too) and answered 500."""


def guarded(tx: Tx, op: Callable[[], _T]) -> Done[_T] | Refused:
    """Run ``op``; its refusal (ApiError) is returned rather than raised, so the transaction (and
    the nonce recorded before) commits.

    Every operation of :mod:`ping_server.delivery` makes all its checks before its first write,
    so a refusal has nothing to undo and needs no savepoint (two statements less per request,
    two round trips on PostgreSQL). That rule is enforced here: a refusal after a write raises
    :class:`RefusedAfterWriting`, which rolls back the whole request."""
    before = tx.writes
    try:
        return Done(op())
    except ApiError as exc:
        if tx.writes != before:
            raise RefusedAfterWriting(f"refused ({exc.status} {exc.code}) after writing") from None
        return Refused(exc)


def settle(result: Done[_T] | Refused) -> _T:
    """The committed operation's result, or its refusal raised."""
    if isinstance(result, Refused):
        raise result.error
    return result.value


def unauthorized(message: str, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(401, "unauthorized", message, headers)


class Gate:
    """Authentication of the requests of one API: its limits, its admission bounds and its cache of
    the devices' keys. ``run`` runs a transaction (the API's, with a failing database answered 503)."""

    def __init__(self, config: ApiConfig, run: _Runner, clock_ms: Callable[[], int]) -> None:
        self.config = config
        self.crypto = default_provider()
        self.limiter = RateLimiter(config.rate_limit, config.rate_burst)
        self.address_limiter = RateLimiter(config.address_rate_limit, config.address_rate_burst)
        self.admission = Admission(config.max_pending, config.max_pending_per_address)
        self._run = run
        self._clock_ms = clock_ms
        # DeviceId -> signing public key. Safe to cache forever: the id is the key's hash.
        self._keys: dict[DeviceId, bytes] = {}

    def remember_key(self, device_id: DeviceId, key: bytes) -> None:
        """Cache the signing key of a device just registered (its id is the key's hash)."""
        self._keys[device_id] = key

    def unauthenticated(self, request: Request, exc: ApiError) -> ApiError:
        """Charge a request that did not authenticate to its address's budget; the error to answer:
        ``exc``, or 429 while the budget is spent (keeping a ``connection: close`` of ``exc``)."""
        retry = self.address_limiter.take(request.client_host, time.monotonic())
        if retry is None:
            return exc
        headers = {"retry-after": RateLimiter.retry_after_header(retry)}
        if "connection" in exc.headers:
            headers["connection"] = exc.headers["connection"]
        return ApiError(429, "rate_limited", "too many unauthenticated requests from this address", headers)

    def admit(self, request: Request) -> str | None:
        """Step 0: count a request that sends a body as pending authentication (429 beyond the
        bounds, charged); the address it is counted under, None for a request without a body (it
        cannot hold a slot: nothing to wait for but its key lookup)."""
        if request.header("transfer-encoding") is None and request.header("content-length") in (None, "0"):
            return None
        address = request.client_host
        if not self.admission.enter(address):
            raise self.unauthenticated(
                request, ApiError(429, "rate_limited", "too many requests waiting to be authenticated", {"retry-after": "1"})
            )
        return address

    def headers(self, request: Request) -> wire.AuthHeaders:
        try:
            auth = wire.parse_auth_headers(request.header)
        except InvalidInput as exc:
            raise unauthorized(str(exc)) from None
        now = self._clock_ms()
        if abs(now - auth.timestamp_ms) > self.config.max_clock_skew_ms:
            raise unauthorized("stale timestamp (check the clock)", {wire.HEADER_SERVER_TIME: str(now)})
        return auth

    async def key(self, device_id: DeviceId) -> bytes | None:
        """The registered signing key of ``device_id`` (cached), or None."""
        key = self._keys.get(device_id)
        if key is None:
            key = await self._run(lambda tx: delivery.device_key(tx, device_id))
            if key is not None:
                if len(self._keys) >= _MAX_KEY_CACHE:
                    self._keys.clear()
                self._keys[device_id] = key
        return key

    def verify(self, request: Request, auth: wire.AuthHeaders, body: bytes, key: bytes, *, key_checked: bool = False) -> None:
        try:
            wire.verify_request(auth, request.method, request.target, body, key, self.crypto, key_checked=key_checked)
        except CryptoError:
            raise unauthorized("bad request signature") from None

    def device_rate(self, auth: wire.AuthHeaders) -> None:
        retry = self.limiter.take(auth.device_id.value, time.monotonic())
        if retry is not None:
            raise ApiError(
                429, "rate_limited", "too many requests from this device", {"retry-after": RateLimiter.retry_after_header(retry)}
            )

    async def authenticate(self, request: Request, max_body: int) -> tuple[wire.AuthHeaders, bytes]:
        """Steps 0-4 of the module docstring for a registered device."""
        address = self.admit(request)
        try:
            auth = self.headers(request)
            body = await request.body(max_body, self.config.body_timeout)
            key = await self.key(auth.device_id)
            if key is None:
                raise unauthorized("device is not registered")
            # The key is the registered one of this id (registration checked id == SHA-256(key)).
            self.verify(request, auth, body, key, key_checked=True)
        except ApiError as exc:
            raise self.unauthenticated(request, exc) from None
        finally:
            if address is not None:
                self.admission.leave(address)
        self.device_rate(auth)
        return auth, body

    async def call(
        self, request: Request, auth: wire.AuthHeaders, op: Callable[[Tx, Caller], _T], *, revoked_ok: bool = False
    ) -> _T:
        """Step 6: authenticate the caller, record the nonce and run ``op`` in one transaction
        (``revoked_ok``: a revoked caller reaches ``op``, which decides)."""

        def txn(tx: Tx) -> Done[_T] | Refused:
            caller = delivery.authenticate(tx, auth.device_id, auth.nonce, auth.timestamp_ms, revoked_ok=revoked_ok)
            return guarded(tx, lambda: delivery.as_caller(tx, caller, op))

        try:
            return settle(await self._run(txn))
        except CallerRefused as exc:  # not a registered, non-revoked device with a fresh nonce
            raise self.unauthenticated(request, exc) from None
