"""Transports: how the SDK reaches the delivery service.

:class:`Transport` is the protocol (see ``ping_core.transport.base`` for the
full contract). Implementations: ping_server's HTTP API, whose wire format
(signing, routes, bodies) is the pure ``ping_core.transport.wire`` and whose
client logic is :class:`RemoteTransport` (``remote``), moved by httpx in
``HttpTransport`` (``ping_core.transport.http``, CPython only: import it from
there or as ``ping_core.transport.HttpTransport``, loaded on first use) and by
``fetch`` in ``pyodide_app.transport.FetchTransport``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    DEVICE_REVOKED,
    ERROR_CODES,
    DeliveryLimits,
    MAX_FETCH_LIMIT,
    MAX_KEY_PACKAGES_PER_PUBLISH,
    MAX_REVOCATION_LIST,
    MAX_WATCH_CONVERSATIONS,
    KeyPackageCount,
    KeyPackageSupply,
    Transport,
    WatchResult,
)
from .remote import RawResponse, RemoteTransport

if TYPE_CHECKING:
    from .http import HttpTransport

__all__ = [
    "Transport",
    "KeyPackageSupply",
    "KeyPackageCount",
    "DeliveryLimits",
    "ERROR_CODES",
    "DEVICE_REVOKED",
    "MAX_REVOCATION_LIST",
    "MAX_FETCH_LIMIT",
    "MAX_KEY_PACKAGES_PER_PUBLISH",
    "MAX_WATCH_CONVERSATIONS",
    "WatchResult",
    "RemoteTransport",
    "RawResponse",
    "HttpTransport",
]


def __getattr__(name: str) -> Any:
    # httpx is not in Pyodide: import the httpx transport only when asked for.
    if name == "HttpTransport":
        from .http import HttpTransport

        return HttpTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
