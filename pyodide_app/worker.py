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
"""

from __future__ import annotations

import sys
from typing import Any

from ping_core.errors import InvalidInput

from . import info, rpc

__all__ = ["boot"]


def _server_option(value: Any) -> str:
    """The ``server`` boot option: "" (this origin) or an http(s) origin; InvalidInput otherwise."""
    if value in (None, ""):
        return ""
    from urllib.parse import urlsplit

    parts = urlsplit(value) if isinstance(value, str) and len(value) <= 2048 else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise InvalidInput("server must be an http(s) origin")
    return f"{parts.scheme}://{parts.netloc}"


def _register_optional(*modules: str) -> None:
    """Register the declared methods of each ``pyodide_app.<module>`` that exists (vault.*, push.*)."""
    import importlib

    for name in modules:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ImportError as exc:
            if exc.name != f"{__package__}.{name}":
                raise  # the module exists but is broken: say so
            continue
        rpc.register_functions(module)


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
    and :mod:`pyodide_app.push` when present.
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
        from . import devtools

        rpc.register_functions(devtools, dev=True)
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
        _register_optional("vault", "push")
    return {
        "crypto": default_provider().name,
        "crypto_reason": choice.reason,
        "python": sys.version.split()[0],
    }
