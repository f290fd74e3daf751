"""The API's tunables (``python -m ping_server --help`` sets them)."""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.transport import wire
from ping_core.transport.base import DeliveryLimits

from .push import PushConfig

__all__ = ["ApiConfig"]


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Tunables of the API (``python -m ping_server --help`` sets them)."""

    rate_limit: float = 100.0  # requests per second per device (<= 0: off)
    rate_burst: float = 200.0
    # Unauthenticated requests (failures before or of authentication, first registrations) per
    # second per client address.
    address_rate_limit: float = 10.0  # <= 0: off
    address_rate_burst: float = 100.0
    limits: DeliveryLimits = DeliveryLimits()  # inbox, strangers' Welcomes, quotas, KeyPackage claims
    body_timeout: float = 30.0  # a request body must arrive whole within this (408 beyond)
    max_pending: int = 256  # requests not authenticated yet (reading their body, verifying) at once ...
    max_pending_per_address: int = 32  # ... and from one client address (0: no bound)
    max_clock_skew_ms: int = wire.MAX_CLOCK_SKEW_MS
    poll_interval: float = 0.5  # long polls re-read this often (appends by other processes)
    nonce_prune_interval: float = 60.0
    push: PushConfig = PushConfig()  # Web Push (ping_server.push)
