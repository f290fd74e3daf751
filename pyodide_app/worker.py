"""The worker's composition root: :func:`boot` puts the RPC table together.

static/pyboot.mjs calls :func:`boot` once per context (page worker, service
worker, the Node test host) and then answers every request with
:func:`pyodide_app.rpc.handle_message`. The table and dispatch live in
:mod:`pyodide_app.rpc`, which imports no feature; each feature module declares
its methods there with ``@rpc("noun.verb")``: :mod:`pyodide_app.info` (``ping``,
``info``), :mod:`pyodide_app.sdk` (the SDK), :mod:`pyodide_app.vault`,
:mod:`pyodide_app.push`, :mod:`pyodide_app.devtools` (``dev.*``, dev boots only).
Only this module imports the features to register them, and no module imports
this one, so the package has no import cycle (the ``pyodide-app-acyclic``
contract of pyproject.toml, checked by tests/test_layers.py).

Features the first screen does not use (vault, push, the dev tools) are
registered on demand (:func:`pyodide_app.rpc.register_lazy`): their names are
in the table from boot, their modules are compiled and run on the first call.
A boot that takes the memory snapshot imports them first
(:func:`import_on_demand`, called by pyboot.mjs), so a restored runtime has
them too; a boot without the snapshot (``worker.mjs?snapshot=0``, the service
worker's first wake) skips that work on its way to ready.
"""

from __future__ import annotations

import sys
from typing import Any

from ping_core.errors import InvalidInput

from . import info, rpc

__all__ = ["boot", "import_on_demand", "ON_DEMAND", "DEV_ON_DEMAND"]

# Features registered on demand: module -> exactly the RPC names it declares with @rpc
# (checked at its first call by rpc.register_lazy, and by tests/core/test_worker_rpc.py).
ON_DEMAND: dict[str, tuple[str, ...]] = {
    "pyodide_app.vault": ("vault.lock", "vault.set_passphrase", "vault.status", "vault.unlock"),
    "pyodide_app.push": ("push.status", "push.subscribe", "push.unsubscribe", "push.vapid_key"),
}
# The same for dev boots only (the dev.* methods).
DEV_ON_DEMAND: dict[str, tuple[str, ...]] = {
    "pyodide_app.devtools": (
        "dev.blob.commit",
        "dev.blob.delete",
        "dev.blob.get",
        "dev.blob.items",
        "dev.blob.list",
        "dev.blob.put",
        "dev.cbor_roundtrip",
        "dev.crypto",
        "dev.crypto_counts",
        "dev.exec",
        "dev.fetch",
        "dev.provider",
    ),
}
# Imported on first use anyway (pyodide_app.fetch, pyodide_app.transport), not by boot.
_LATER = ("pyodide.http",)


def import_on_demand() -> None:
    """Import every module that is otherwise imported on first use, without registering anything.

    Called by pyboot.mjs before it takes the memory snapshot: a runtime restored from it
    then finds them in ``sys.modules`` (no compile on any first call)."""
    import importlib

    for module in (*ON_DEMAND, *DEV_ON_DEMAND, *_LATER):
        importlib.import_module(module)


def _server_option(value: Any) -> str:
    """The ``server`` boot option: "" (this origin) or an http(s) origin; InvalidInput otherwise."""
    if value in (None, ""):
        return ""
    from urllib.parse import urlsplit

    parts = urlsplit(value) if isinstance(value, str) and len(value) <= 2048 else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise InvalidInput("server must be an http(s) origin")
    return f"{parts.scheme}://{parts.netloc}"


def boot(options: Any = None) -> dict[str, Any]:
    """Called once by worker.mjs after the JS modules are registered.

    Chooses the crypto backend (:mod:`pyodide_app.crypto_select`): noble
    always, WebCrypto above it when JSPI and WebCrypto's Ed25519/X25519 work
    (pyca keeps priority when importable). Enter it the way later calls will
    be entered: worker.mjs uses ``callPromising`` when the runtime has JSPI; a
    synchronous call (the Node test harness, Safari) keeps noble. Never fails
    over crypto.

    Options: ``dev`` (bool) adds the ``dev.*`` methods the browser tests use;
    ``crypto`` is "auto" (default) or "noble" (never WebCrypto); ``sdk``
    (default true) adds the SDK's methods (:mod:`pyodide_app.sdk`), for the
    context named by ``context`` ("worker" or "sw") and the local profile
    ``profile`` (default "default") with the server ``server`` (an origin;
    default this one), then those of :mod:`pyodide_app.vault`
    and :mod:`pyodide_app.push` (on demand, like the ``dev.*`` ones).
    Returns what the worker reports in its ``ready`` message.
    """
    from ping_core.mls.crypto import default_provider

    from . import crypto_select

    opts = rpc.from_js(options) if options is not None else {}
    if not isinstance(opts, dict):
        opts = {}
    choice = crypto_select.select(opts.get("crypto", "auto"))
    rpc.register_functions(info)
    if opts.get("dev"):
        for module, names in DEV_ON_DEMAND.items():
            rpc.register_lazy(module, names, dev=True)
    if opts.get("sdk", True):
        from . import sdk

        context = opts.get("context", "worker")
        profile = opts.get("profile", sdk.DEFAULT_PROFILE)
        sdk.register(
            context=context if context in ("worker", "sw") else "worker",
            dev=bool(opts.get("dev")),
            profile=profile if isinstance(profile, str) else sdk.DEFAULT_PROFILE,
            server_url=_server_option(opts.get("server")),
        )
        for module, names in ON_DEMAND.items():
            rpc.register_lazy(module, names)
    return {
        "crypto": default_provider().name,
        "crypto_reason": choice.reason,
        "python": sys.version.split()[0],
    }
