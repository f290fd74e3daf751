"""SDK events to the JS host: ``pinghost.emit`` hands them to the pages (a worker's: its page and
the other tabs; the service worker's: its clients), whichever context produced them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..rpc import to_page

__all__ = ["emit", "message_events"]

#: Events made where no JS host is registered (CPython, Node): kept for tests.
unsent: list[dict[str, Any]] = []


def emit(event: dict[str, Any]) -> None:
    """Hand ``event`` (plain data) to the JS host."""
    try:
        import pinghost  # type: ignore[import-not-found]  # registered by worker.mjs / sw.mjs
    except ImportError:
        unsent.append(event)
        return
    pinghost.emit(to_page(event))


def message_events(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{type: "messages", conv, messages}`` per conversation, its messages in the given order."""
    by_conv: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        by_conv.setdefault(m["conv"], []).append(m)
    return [{"type": "messages", "conv": conv, "messages": items} for conv, items in by_conv.items()]
