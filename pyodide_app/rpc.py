"""The worker's RPC table and dispatch: the leaf every feature module declares its methods with.

It imports no feature module (and nothing else of pyodide_app): feature modules
(pyodide_app.sdk, info, push, vault, devtools) import it, declare their method
names with :func:`rpc`, and the composition root (pyodide_app.worker's
``boot``) registers them. The import contract ``pyodide-rpc-leaf``
(pyproject.toml, checked by tests/test_layers.py) keeps it so.

The page sends ``{id, method, params}``; the worker answers ``{id, result}`` or
``{id, error: {name, message[, status, code][, reason, peer_fault]}}``. :func:`dispatch` never
raises: every exception becomes an error reply whose ``name`` is the Python
class name (``TransportError``, ``InvalidInput``...), so no page promise is
left hanging. ``TransportError`` also carries ``status`` and ``code``; an
``MlsError`` its ``reason`` (the ``MlsReason`` value, e.g. ``"bad_signature"``)
and ``peer_fault`` (whether a peer's message, not the call, was bad).

Methods live in one table. A handler receives the ``params`` object (a dict)
and may be sync or async. Values cross as structured-clone data: dict, list,
str, int, float, bool, None and bytes (Uint8Array in JS).

``dispatch`` is pure Python (testable on CPython); only :func:`handle_message`
touches Pyodide.

How Python is entered (this decides which crypto backend can run):
``handle_message`` is an ``async def``, so each request runs as an asyncio
task on Pyodide's WebLoop, and Pyodide runs every task step with stack
switching allowed (JSPI). Any handler, sync or async, may therefore call code
that blocks on a JS promise with ``pyodide.ffi.run_sync``, as the WebCrypto
provider does under the synchronous MLS engine. worker.mjs enters ``pyodide_app.worker.boot``
the same way (``callPromising``) when the runtime has JSPI. Keep both entries
asynchronous: a handler reached from a synchronous JS callback cannot switch
stacks (the WebCrypto provider then quietly uses noble for that call).
While one request waits in ``run_sync``, other tasks may run: treat a crypto
call like an ``await`` and hold the conversation's lock across MLS work.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from ping_core.errors import InvalidInput, MlsError, PingError, TransportError

__all__ = [
    "Handler",
    "method",
    "rpc",
    "rpc_name",
    "declared",
    "register_object",
    "register_functions",
    "register_lazy",
    "register_method",
    "unregister_method",
    "methods",
    "dispatch",
    "error_reply",
    "from_js",
    "handle_message",
    "to_page",
]

Handler = Callable[[dict[str, Any]], Any | Awaitable[Any]]

_methods: dict[str, Handler] = {}


def register_method(name: str, handler: Handler, *, replace: bool = False) -> None:
    """Make ``handler`` answer RPC requests for ``name``.

    Registering a taken name is a ``ValueError`` unless ``replace`` is set,
    so two parts cannot silently shadow each other.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("RPC method names are non-empty strings")
    if name in _methods and not replace:
        raise ValueError(f"RPC method {name!r} is already registered")
    _methods[name] = handler


def unregister_method(name: str) -> None:
    """Remove ``name`` from the table (no error when it is absent)."""
    _methods.pop(name, None)


def method(name: str, *, replace: bool = False) -> Callable[[Handler], Handler]:
    """Decorator form of :func:`register_method` (registers at once, for ad-hoc methods and
    tests; feature modules declare theirs with :func:`rpc`)."""

    def deco(fn: Handler) -> Handler:
        register_method(name, fn, replace=replace)
        return fn

    return deco


def rpc(name: str, *, dev: bool = False) -> Callable[[Any], Any]:
    """Declare the RPC name of a handler (a method, bound later by :func:`register_object`, or a
    module-level function, registered by :func:`register_functions`).

    The declared names are the ONE source of the RPC table: ping.js,
    ping.d.ts and docs/browser-sdk.md are checked against them
    (tests/browser/test_types.py). ``dev``: only registered with the dev.* methods.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("RPC method names are non-empty strings")

    def deco(fn: Any) -> Any:
        fn.__ping_rpc__ = (name, dev)
        return fn

    return deco


def rpc_name(fn: Any) -> tuple[str, bool] | None:
    """The ``(name, dev)`` declared with :func:`rpc`, None for other functions."""
    value = getattr(fn, "__ping_rpc__", None)
    return value if isinstance(value, tuple) else None


def declared(owner: type | ModuleType, *, dev: bool = False) -> list[tuple[str, str]]:
    """``(rpc name, attribute)`` of every function of ``owner`` (a class or a module) declared
    with :func:`rpc`, sorted by attribute; dev ones only with ``dev``."""
    module = owner.__name__ if isinstance(owner, ModuleType) else None
    found = []
    for attr in sorted(vars(owner) if module is not None else dir(owner)):
        fn = getattr(owner, attr, None)
        name = rpc_name(fn)
        if name is None or (name[1] and not dev):
            continue
        if module is not None and getattr(fn, "__module__", None) != module:
            continue  # imported from another module: that one declares it
        found.append((name[0], attr))
    return found


def register_object(obj: Any, *, dev: bool = False) -> list[str]:
    """Register every method of ``obj`` declared with :func:`rpc` (dev ones only with ``dev``)."""
    names = []
    for name, attr in declared(type(obj), dev=dev):
        register_method(name, getattr(obj, attr))
        names.append(name)
    return names


def register_functions(module: ModuleType, *, dev: bool = False) -> list[str]:
    """Register every module-level function of ``module`` declared with :func:`rpc`
    (dev ones only with ``dev``). Idempotent: registering the same module again replaces."""
    names = []
    for name, attr in declared(module, dev=dev):
        register_method(name, getattr(module, attr), replace=True)
        names.append(name)
    return names


def register_lazy(module: str, names: Sequence[str], *, dev: bool = False) -> None:
    """Put ``names`` in the table now and import ``module`` (a dotted name) on the first call of any.

    For features used on demand: the table is complete at boot (dispatch and ``info`` list the
    names) while the module's code is compiled and run only when first needed. That call imports
    the module, replaces every stub by the module's own declared handler
    (:func:`register_functions`) and runs it. ``names`` must be exactly what ``module``
    declares with :func:`rpc` (dev ones with ``dev``): a mismatch is a ``RuntimeError`` at that
    first call, so the announced table cannot drift from the declarations unnoticed.
    """
    announced = sorted(names)

    def load() -> None:
        found = sorted(name for name, _ in declared(importlib.import_module(module), dev=dev))
        if found != announced:
            raise RuntimeError(f"{module} declares {found}, announced as {announced}")
        register_functions(importlib.import_module(module), dev=dev)

    def stub_for(name: str) -> Handler:
        def stub(params: dict[str, Any]) -> Any:
            if _methods.get(name) is stub:
                load()
            return _methods[name](params)

        return stub

    for name in announced:
        register_method(name, stub_for(name), replace=True)


def methods() -> list[str]:
    """The registered method names, sorted."""
    return sorted(_methods)


def error_reply(request_id: Any, exc: BaseException) -> dict[str, Any]:
    """The error reply for ``exc``; messages of non-Ping errors are kept short."""
    error: dict[str, Any] = {"name": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, TransportError):
        error["status"] = exc.status
        error["code"] = exc.code
    elif isinstance(exc, MlsError):
        error["reason"] = exc.reason.value
        error["peer_fault"] = exc.is_peer_fault
    elif not isinstance(exc, PingError):
        # An unexpected exception is a bug; say where without dumping locals.
        error["message"] = f"{type(exc).__name__}: {exc}"
    return {"id": request_id, "error": error}


async def dispatch(request: Mapping[str, Any]) -> dict[str, Any]:
    """Run one request and return its reply; never raises."""
    request_id = request.get("id") if isinstance(request, Mapping) else None
    try:
        if not isinstance(request, Mapping):
            raise InvalidInput("an RPC request is an object {id, method, params}")
        name = request.get("method")
        params = request.get("params")
        if params is None:
            params = {}
        if not isinstance(name, str):
            raise InvalidInput("RPC request without a method name")
        if not isinstance(params, dict):
            raise InvalidInput("RPC params must be an object")
        handler = _methods.get(name)
        if handler is None:
            raise InvalidInput(f"unknown RPC method {name!r}")
        result = handler(params)
        if inspect.isawaitable(result):
            result = await result
        return {"id": request_id, "result": result}
    except Exception as exc:  # the RPC boundary: every failure becomes a reply
        return error_reply(request_id, exc)


# -- the Pyodide side ----------------------------------------------------------------


def from_js(value: Any) -> Any:
    """A JS structured-clone value as plain Python (bytes for typed arrays, None for null)."""
    try:
        from pyodide.ffi import jsnull  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # CPython: nothing to map
        jsnull = None
    to_py = getattr(value, "to_py", None)
    if to_py is not None:
        value = to_py()
    return _normalize(value, jsnull)


def _normalize(value: Any, jsnull: Any = None) -> Any:
    if value is None or (jsnull is not None and value is jsnull):
        return None
    if isinstance(value, dict):
        return {str(k): _normalize(v, jsnull) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(v, jsnull) for v in value]
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    to_bytes = getattr(value, "to_bytes", None)  # an ArrayBuffer/TypedArray proxy
    if callable(to_bytes) and not isinstance(value, int):
        return to_bytes()
    return value


def _to_plain(value: Any, null: Any = None) -> Any:
    """Check that ``value`` is structured-clone data; tuples become lists, None becomes ``null``."""
    if value is None:
        return null
    if isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(v, null) for v in value]
    if isinstance(value, dict):
        return {_key(k): _to_plain(v, null) for k, v in value.items()}
    raise InvalidInput(f"an RPC result cannot carry a {type(value).__name__}")


def to_page(value: Any) -> Any:
    """Plain data (see :func:`_to_plain`) as the JS value the page gets: plain Objects, and None as
    ``null`` (``to_js`` alone makes None ``undefined``, while ping.d.ts declares ``null``:
    ``text: string | null``...). InvalidInput when ``value`` is not plain data. Pyodide only."""
    from js import Object  # type: ignore[attr-defined]
    from pyodide.ffi import jsnull, to_js  # type: ignore[import-not-found,unused-ignore]

    return to_js(_to_plain(value, jsnull), dict_converter=Object.fromEntries)


def _key(k: Any) -> str:
    if not isinstance(k, str):
        raise InvalidInput("RPC result objects have string keys")
    return k


async def handle_message(message: Any) -> Any:
    """The worker's entry point: a JS request object in, a JS reply object out."""
    try:
        request = from_js(message)
    except Exception as exc:
        reply = error_reply(None, exc)
    else:
        reply = await dispatch(request)
    try:
        return to_page(reply)
    except InvalidInput as exc:
        return to_page(error_reply(reply.get("id"), exc))
