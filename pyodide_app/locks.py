"""Web Locks (``navigator.locks``) for Python in the worker and the service worker.

:class:`WebLock` is an ``async with`` block that holds one exclusive lock of
the origin: every tab's worker and the service worker ask for the same name, so
at most one of them is inside the block at a time (one writer per database:
docs/architecture.md). The browser releases a lock when the context that holds
it ends (tab closed, worker terminated, service worker stopped), so a crash
never leaves it held.

The JS side is ``static/pinglocks.mjs``, registered as the JS module
``pinglocks``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ping_core.errors import StorageError

__all__ = ["WebLock", "JS_MODULE_NAME", "lock_snapshot"]

JS_MODULE_NAME = "pinglocks"


def _module() -> Any:
    try:
        return __import__(JS_MODULE_NAME)
    except ImportError as exc:
        raise StorageError(f"the JS module {JS_MODULE_NAME!r} is not registered") from exc


class WebLock:
    """Hold the exclusive Web Lock ``name`` for the body of ``async with``.

    ``if_available=True`` does not wait: :attr:`held` tells whether the lock
    was taken (the body runs either way; check :attr:`held`).
    Not re-entrant: a context asking again for a lock it holds waits forever,
    so callers serialise their own users first (an ``asyncio.Lock``).
    """

    __slots__ = ("name", "_if_available", "_release", "held")

    def __init__(self, name: str, *, if_available: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a lock name is a non-empty str")
        self.name = name
        self._if_available = if_available
        self._release: Any = None
        self.held = False

    async def __aenter__(self) -> WebLock:
        import asyncio

        from pyodide.ffi import JsException, create_once_callable  # type: ignore[import-not-found,unused-ignore]

        js = _module()
        request = js.tryAcquire(self.name) if self._if_available else js.acquire(self.name)
        try:
            release = await request
        except asyncio.CancelledError:
            # The JS request still stands: release the lock as soon as it is granted,
            # or this context would hold it until it ends.
            request.then(create_once_callable(lambda r: r() if r is not None else None))
            raise
        except JsException as exc:
            raise StorageError(f"Web Lock {self.name!r} could not be taken: {exc}") from None
        if release is None:
            return self
        self._release = release
        self.held = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        release, self._release = self._release, None
        self.held = False
        if release is not None:
            release()
            destroy = getattr(release, "destroy", None)
            if destroy is not None:
                destroy()


async def lock_snapshot() -> dict[str, list[str]]:
    """The origin's held and pending lock names (diagnostics and tests)."""
    state = await _module().snapshot()
    held = [str(n) for n in state.held]
    pending = [str(n) for n in state.pending]
    return {"held": held, "pending": pending}
