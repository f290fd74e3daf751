"""``FetchTransport``: the SDK's Transport to ping_server from Pyodide, over JS ``fetch``.

Everything but the bytes on the wire is shared with CPython's ``HttpTransport``
(:class:`ping_core.transport.remote.RemoteTransport`: signing with the device
key, routes, CBOR decoding, the clock-skew and rate-limit retries). This module
only moves bytes with ``pyodide.http.pyfetch``:

- an answer, whatever its status, goes back to ``RemoteTransport``, which turns
  a non-2xx one into ``TransportError(status, code)``;
- no answer: ``TransportError(status=None)`` with code ``timeout`` when the
  deadline aborted the request, else ``network``: both ambiguous.

In a worker, ``server_url=""`` talks to the page's own origin (ping_server
serves the client and the API on one port).
"""

from __future__ import annotations

import asyncio

from typing import Any

from ping_core.errors import TransportError
from ping_core.mls.crypto import CryptoProvider
from ping_core.transport.remote import RawResponse, RemoteTransport
from ping_core.transport.wire import RequestSigner

__all__ = ["FetchTransport"]


class FetchTransport(RemoteTransport):
    """A device's transport to ping_server at ``server_url`` ("" = this origin), over ``fetch``.

    ``signing_secret`` is the device's 32-byte Ed25519 seed; ``crypto`` the
    provider that signs (default: the registered default, noble in the browser).
    """

    def __init__(
        self, server_url: str, signing_secret: bytes, *, timeout: float = 30.0, crypto: CryptoProvider | None = None, **kwargs: Any
    ) -> None:
        super().__init__(server_url, RequestSigner(signing_secret, crypto), timeout=timeout, **kwargs)

    async def _exchange(
        self, method: str, target: str, body: bytes, headers: dict[str, str], timeout: float, max_response: int
    ) -> RawResponse:
        from js import AbortController, AbortSignal  # type: ignore[attr-defined]
        from pyodide.ffi import to_js  # type: ignore[import-not-found,unused-ignore]
        from pyodide.http import pyfetch  # type: ignore[import-not-found,unused-ignore]

        # The deadline, and an abort when this call is cancelled (a long poll the live sync
        # restarts): an abandoned fetch would hold one of the origin's few connections.
        deadline = AbortSignal.timeout(max(1, int(timeout * 1000)))
        controller = AbortController.new()
        signal = AbortSignal.any(to_js([deadline, controller.signal])) if hasattr(AbortSignal, "any") else deadline
        options: dict[str, Any] = {
            "method": method,
            "headers": headers,
            "signal": signal,
            "cache": "no-store",
            "redirect": "error",
        }
        if body:
            options["body"] = body
        path = target.split("?", 1)[0]  # never echo a query into an error
        try:
            resp = await pyfetch(self.server_url + target, **options)
            status = int(resp.status)
            resp_headers = {str(k).lower(): str(v) for k, v in dict(resp.headers).items()}
            length = resp_headers.get("content-length", "")
            if length.isdigit() and int(length) > max_response:
                raise TransportError(f"response of {length} bytes exceeds {max_response}", status=status)
            data = bytes(await resp.bytes())
        except TransportError:
            raise
        except asyncio.CancelledError:
            controller.abort()
            raise
        except Exception as exc:  # the fetch boundary: every failure here means "no complete answer"
            name = str(getattr(exc, "name", "") or type(exc).__name__)
            # pyfetch raises AbortError for every failure; only the deadline's abort mentions a timeout
            # ("The operation was aborted due to timeout" under Node, TimeoutError in browsers).
            text = f"{name}: {exc}".lower()
            code = "timeout" if "timeout" in text or "timed out" in text else "network"
            raise TransportError(f"{method} {path}: no answer ({name})", status=None, code=code) from None
        if len(data) > max_response:
            raise TransportError(f"response exceeds {max_response} bytes", status=status)
        return RawResponse(status, resp_headers, data)
