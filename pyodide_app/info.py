"""The worker's own RPC methods: ``ping`` (liveness) and ``info`` (what this worker runs)."""

from __future__ import annotations

import sys
from typing import Any

from .rpc import methods, rpc

__all__ = ["ping", "info"]


@rpc("ping")
def ping(params: dict[str, Any]) -> dict[str, Any]:
    """Liveness: echoes ``params`` back with the Python version."""
    return {"pong": True, "echo": params, "python": sys.version.split()[0]}


@rpc("info")
def info(params: dict[str, Any]) -> dict[str, Any]:
    """What this worker runs: Python, crypto backends, RPC methods."""
    from ping_core.mls.crypto import available_backends, default_provider

    return {
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "crypto": default_provider().name,
        "crypto_backends": available_backends(),
        "crypto_selection": _selection(),
        "methods": methods(),
    }


def _selection() -> dict[str, Any] | None:
    from .crypto_select import last_selection

    choice = last_selection()
    return choice.as_dict() if choice is not None else None
