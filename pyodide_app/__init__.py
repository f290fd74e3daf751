"""Ping's host layer for Pyodide (browser worker, service worker, Node).

Only this package imports ``js`` / ``pyodide``, and only inside the calls that
need them, so every module here also imports on CPython (the pure parts, such
as RPC dispatch and HTTP error parsing, are tested there too).

- :mod:`pyodide_app.crypto`  ``NobleProvider``: cipher suite 1 over the bundled noble JS module
- :mod:`pyodide_app.webcrypto` ``WebCryptoProvider``: WebCrypto through JSPI (Chromium), noble where faster
- :mod:`pyodide_app.crypto_select` the boot-time choice between them (never fails)
- :mod:`pyodide_app.idb`     ``IndexedDbBlobStore``: bytes by key, atomic multi-record writes
- :mod:`pyodide_app.fetch`   ``request``: JS fetch with ``TransportError`` for failures
- :mod:`pyodide_app.transport` ``FetchTransport``: the SDK's Transport to ping_server over fetch
- :mod:`pyodide_app.rpc`     the RPC method table, ``@rpc`` declarations and dispatch (imports no feature)
- :mod:`pyodide_app.worker`  the composition root: ``boot`` registers the features' methods
- :mod:`pyodide_app.info`    the ``ping`` and ``info`` methods
- :mod:`pyodide_app.sdk`     the SDK's RPC methods, one handler group per job over ``core.BrowserSdk`` (registered at boot)
- :mod:`pyodide_app.session` ``AccountSession``: one account's client, one writer per database (Web Lock)
- :mod:`pyodide_app.accountdb` the account's IndexedDB database (state, host, app stores; generation tag)
- :mod:`pyodide_app.inbox`   decrypted messages as stored for the page
- :mod:`pyodide_app.live`    ``LiveSync``: sync rounds and a long poll, events to the page
- :mod:`pyodide_app.locks`   ``WebLock`` (navigator.locks)
"""

from __future__ import annotations

from .crypto import NobleProvider
from .fetch import HttpResponse, error_from_response, request
from .idb import IndexedDbBlobStore
from .transport import FetchTransport
from .webcrypto import WebCryptoProvider
from .rpc import dispatch, method, register_method

__all__ = [
    "NobleProvider",
    "WebCryptoProvider",
    "IndexedDbBlobStore",
    "FetchTransport",
    "HttpResponse",
    "request",
    "error_from_response",
    "dispatch",
    "method",
    "register_method",
]
