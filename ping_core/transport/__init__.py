"""Transports: how the SDK reaches the delivery service.

:class:`Transport` is the protocol (see ``ping_core.transport.base`` for the
full contract). Implementations: the in-memory delivery service for tests
(``ping_core.transport.memory``), the HTTP client, and in the browser the
``fetch`` bridge in ``pyodide_app``.
"""

from __future__ import annotations

from .base import ERROR_CODES, MAX_FETCH_LIMIT, MAX_KEY_PACKAGES_PER_PUBLISH, Transport
from .memory import Fault, MemoryDeliveryService, MemoryTransport

__all__ = [
    "Transport",
    "ERROR_CODES",
    "MAX_FETCH_LIMIT",
    "MAX_KEY_PACKAGES_PER_PUBLISH",
    "MemoryDeliveryService",
    "MemoryTransport",
    "Fault",
]
