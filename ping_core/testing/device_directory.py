"""The in-memory delivery service's device directory and KeyPackage pools, and what every request shares.

:class:`DeviceDirectory` is the base of
:class:`~ping_core.testing.memory.MemoryDeliveryService`: the registered devices
and account keys (registration checked against the account binding, trust on
first use of the account key), the signed revocations, the KeyPackage pools with
their claim limits, the storage quota of each account, the scheduled faults
(:mod:`ping_core.testing.faults`) and the authentication every request starts
with (:meth:`DeviceDirectory._enter`). The service adds the conversation logs and
Welcome inboxes on top.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from ping_core.device import DeviceInfo
from ping_core.errors import IdentityError, InvalidInput, TransportError
from ping_core.identity import DeviceBinding
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MessageKind
from ping_core.testing.faults import Fault, FaultPlan
from ping_core.testing.stored import Device, revoked_error
from ping_core.transport.base import (
    MAX_CLAIM_COUNT,
    MAX_KEY_PACKAGE_LEN,
    MAX_KEY_PACKAGES_PER_PUBLISH,
    MAX_REVOCATION_LIST,
    DeliveryLimits,
    KeyPackageCount,
    within,
)

__all__ = ["DeviceDirectory"]


class DeviceDirectory:
    """The devices, accounts, KeyPackage pools, quotas and faults of the in-memory service.

    ``require_registration`` refuses every call but ``register_device`` from a
    device that has not registered (401 ``unauthorized``), like the real server;
    ``limits`` are the server's abuse limits; ``clock_ms`` gives the time of the
    KeyPackage claim windows (default: the wall clock).
    """

    def __init__(self, *, require_registration: bool, limits: DeliveryLimits, clock_ms: Callable[[], int] | None) -> None:
        self.require_registration = require_registration
        self.limits = limits
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._stored: dict[UserId, int] = {}  # bytes each account stores (DeliveryLimits.account_bytes)
        self._claims: dict[tuple[DeviceId, UserId], tuple[int, int]] = {}  # (device, claimer) -> (window, claimed)
        # Set and replaced on every change a ``watch`` may report (append, Welcome, revocation).
        self._changed = asyncio.Event()
        self._devices: dict[DeviceId, Device] = {}
        self._accounts: dict[UserId, bytes] = {}
        self._revocations = 0  # revocations kept so far (their order)
        self._faults = FaultPlan()
        # ``inject(method, fault, *, kind, device, conversation, count, status, code)`` schedules a
        # fault for the next matching calls, ``clear_faults()`` drops them (FaultPlan.inject, .clear).
        self.inject = self._faults.inject
        self.clear_faults = self._faults.clear
        self.calls: list[tuple[str, DeviceId]] = []  # (method, caller), for assertions

    # -- inspection (tests) ------------------------------------------------

    def stored_bytes(self, user_id: UserId) -> int:
        """What the account stores as the server counts it (``DeliveryLimits.account_bytes``)."""
        return self._stored.get(user_id, 0)

    def key_package_count(self, device_id: DeviceId) -> int:
        dev = self._devices.get(device_id)
        return len(dev.key_packages) if dev else 0

    def is_revoked(self, device_id: DeviceId) -> bool:
        dev = self._devices.get(device_id)
        return bool(dev and dev.revoked)

    # -- what every request shares ---------------------------------------

    async def _enter(
        self,
        method: str,
        caller: DeviceId,
        *,
        kind: MessageKind | None = None,
        conversation: ConversationId | None = None,
        registration: bool = False,
        revoked_ok: bool = False,
    ) -> Fault | None:
        """Yield once, authenticate the caller, and pick the fault (if any) for this call.

        A fault that does not apply the request raises here.
        """
        await asyncio.sleep(0)
        self.calls.append((method, caller))
        fault = self._faults.take(method, caller, kind, conversation)
        if not registration:
            dev = self._devices.get(caller)
            if dev is None and self.require_registration:
                raise TransportError("device is not registered", status=401, code="unauthorized")
            if dev is not None and dev.revoked and not revoked_ok:
                raise revoked_error()
        return fault

    _after = staticmethod(FaultPlan.after)

    def _quota(self, message: str) -> TransportError:
        return TransportError(message, status=413, code="quota_exceeded")

    def _account_room(self, user_id: UserId, size: int) -> None:
        limit = self.limits.account_bytes
        if size > 0 and not within(limit, self._stored.get(user_id, 0) + size):
            raise self._quota("over the account's storage quota")

    def _charge(self, user_id: UserId, delta: int) -> None:
        self._stored[user_id] = self._stored.get(user_id, 0) + delta

    def _announce(self) -> None:
        """Wake every ``watch`` waiting: something it may report changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    # -- directory ---------------------------------------------------------

    async def _register(self, caller: DeviceId, info: DeviceInfo, binding: DeviceBinding) -> None:
        fault = await self._enter("register_device", caller, registration=True)
        if info.device_id != caller:
            raise TransportError("a device registers itself only", status=403, code="forbidden")
        try:
            info.verify()
            binding.verify()
        except IdentityError as exc:
            raise TransportError(f"registration refused: {exc}", status=400, code="invalid_request") from None
        if binding.device_id != info.device_id or binding.user_id != info.user_id:
            raise TransportError("binding is for another device or account", status=400, code="invalid_request")
        known_key = self._accounts.get(info.user_id)
        if known_key is not None and known_key != binding.user_public_key:
            raise TransportError("account key differs from the registered one", status=403, code="forbidden")
        dev = self._devices.get(info.device_id)
        if dev is not None and dev.revoked:
            raise revoked_error()
        self._accounts[info.user_id] = binding.user_public_key
        if dev is None:
            self._devices[info.device_id] = Device(info)
        else:
            dev.info = info
        self._after(fault)

    def _active(self, user_id: UserId) -> list[Device]:
        return [d for d in self._devices.values() if d.info.user_id == user_id and not d.revoked]

    async def _list_devices(self, caller: DeviceId, user_id: UserId) -> list[bytes]:
        fault = await self._enter("list_devices", caller)
        out = [d.info.encode() for d in self._active(user_id)]
        self._after(fault)
        return out

    async def _list_revocations(self, caller: DeviceId, user_id: UserId) -> list[bytes]:
        me = self._devices.get(caller)
        if me is not None and me.revoked:
            # A revoked device gets its own statement, from its own account only (ping_server's rule).
            await self._enter("list_revocations", caller, revoked_ok=True)
            if me.info.user_id != user_id:
                raise revoked_error()
            return [me.revocation] if me.revocation is not None else []
        fault = await self._enter("list_revocations", caller)
        kept = sorted(
            (d for d in self._devices.values() if d.info.user_id == user_id and d.revocation is not None),
            key=lambda d: -d.revocation_order,
        )
        out = [d.revocation for d in kept[:MAX_REVOCATION_LIST] if d.revocation is not None]
        self._after(fault)
        return out

    # -- KeyPackage pools ---------------------------------------------------

    async def _publish(self, caller: DeviceId, key_packages: list[bytes], last_resort: bytes | None, replace: bool) -> None:
        if len(key_packages) > MAX_KEY_PACKAGES_PER_PUBLISH:
            raise TransportError("too many KeyPackages in one call", status=413, code="too_large")
        for kp in [*key_packages, *([last_resort] if last_resort is not None else [])]:
            if not isinstance(kp, bytes) or not kp or len(kp) > MAX_KEY_PACKAGE_LEN:
                raise TransportError("malformed KeyPackage", status=400, code="invalid_request")
        if type(replace) is not bool:
            raise InvalidInput("replace must be a bool")  # as the wire client does
        fault = await self._enter("publish_key_packages", caller)
        dev = self._devices.get(caller)
        if dev is None:
            raise TransportError("device is not registered", status=401, code="unauthorized")
        delta = sum(map(len, key_packages)) - (sum(map(len, dev.key_packages)) if replace else 0)
        if last_resort is not None:
            delta += len(last_resort) - len(dev.last_resort or b"")
        self._account_room(dev.info.user_id, delta)
        if replace:
            dev.key_packages.clear()
        dev.key_packages.extend(key_packages)
        if last_resort is not None:
            dev.last_resort = last_resort
        self._charge(dev.info.user_id, delta)
        self._after(fault)

    async def _key_package_count(self, caller: DeviceId) -> KeyPackageCount:
        fault = await self._enter("key_package_count", caller)
        dev = self._devices.get(caller)
        if dev is None:
            raise TransportError("device is not registered", status=401, code="unauthorized")
        count = KeyPackageCount(len(dev.key_packages), dev.last_resort is not None)
        self._after(fault)
        return count

    def _take(self, caller: DeviceId, dev: Device, want: int) -> list[bytes]:
        """Up to ``want`` one-time KeyPackages of ``dev``, as far as the claim limits allow (see
        ``DeliveryLimits``); counted in the window's claim counters."""
        limits = self.limits
        claimer = self._devices[caller].info.user_id
        owner = dev.info.user_id
        limited = claimer != owner and bool(limits.claims_per_claimer or limits.claims_per_device)
        allowed = want
        if limited:
            window = self._clock_ms() // limits.claim_window_ms
            device_used = dev.window_claims if dev.claim_window == window else 0
            win, n = self._claims.get((dev.info.device_id, claimer), (window, 0))
            pair_used = n if win == window else 0
            if limits.claims_per_claimer:
                allowed = min(allowed, max(0, limits.claims_per_claimer - pair_used))
            if limits.claims_per_device:
                allowed = min(allowed, max(0, limits.claims_per_device - device_used))
        out = [dev.key_packages.popleft() for _ in range(min(allowed, len(dev.key_packages)))]
        if out:
            self._charge(owner, -sum(map(len, out)))
            if limited:
                self._claims[(dev.info.device_id, claimer)] = (window, pair_used + len(out))
                dev.claim_window, dev.window_claims = window, device_used + len(out)
        return out

    async def _claim(self, caller: DeviceId, user_id: UserId) -> list[tuple[DeviceId, bytes]]:
        fault = await self._enter("claim_key_packages", caller)
        out = []
        for dev in self._active(user_id):
            if dev.info.device_id == caller:
                continue
            taken = self._take(caller, dev, 1)
            kp = taken[0] if taken else dev.last_resort
            if kp is not None:
                out.append((dev.info.device_id, kp))
        self._after(fault)
        return out

    async def _claim_device(self, caller: DeviceId, device_id: DeviceId, count: int) -> list[bytes]:
        if type(count) is not int or not 1 <= count <= MAX_CLAIM_COUNT:
            raise TransportError(f"count must be 1..{MAX_CLAIM_COUNT}", status=400, code="invalid_request")
        fault = await self._enter("claim_device_key_packages", caller)
        dev = self._devices.get(device_id)
        if dev is None or dev.revoked:
            raise TransportError("unknown or revoked device", status=404, code="not_found")
        out = self._take(caller, dev, count)
        if dev.last_resort is not None:
            out.extend([dev.last_resort] * (count - len(out)))
        self._after(fault)
        return out
