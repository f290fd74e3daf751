"""``HttpTransport``: the :class:`~ping_core.transport.base.Transport` to ping_server over httpx.

Everything but the bytes on the socket is :class:`~ping_core.transport.remote.RemoteTransport`
(request signing, routes, decoding, retries of safe refusals). This module is
CPython-only: httpx is not in Pyodide, where ``pyodide_app.transport`` plays
the same part with ``fetch``; nothing in ``ping_core`` imports it.

Errors: an answer with a non-2xx status is ``TransportError(status, code)``;
no answer is ``TransportError(status=None)`` with code ``timeout`` (the
deadline passed) or ``network`` (refused, reset, DNS, TLS ...), which are
ambiguous: the server may have applied the request.

::

    async with HttpTransport.for_device("http://127.0.0.1:8080", device) as transport:
        await transport.register_device(device.info(now_ms), identity.device_binding(device.device_id))
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Callable

import httpx

from ping_core.errors import InvalidInput, TransportError
from ping_core.mls.crypto import CryptoProvider

from .remote import RawResponse, RemoteTransport
from .wire import RequestSigner

if TYPE_CHECKING:
    from ping_core.device import LocalDevice

__all__ = ["HttpTransport"]

# Connecting should never take long on a working network; the rest of the
# budget is for the server's answer.
_CONNECT_TIMEOUT = 10.0


class HttpTransport(RemoteTransport):
    """A device's transport to ping_server at ``server_url`` (e.g. ``http://127.0.0.1:8080``).

    ``signing_secret`` is the device's 32-byte Ed25519 seed
    (``LocalDevice.signing_secret``); :meth:`for_device` takes the device.
    ``timeout`` bounds each request (long polls get ``wait_ms`` more).
    ``client`` lets the caller share an ``httpx.AsyncClient`` (it is then not
    closed by :meth:`aclose`).
    """

    def __init__(
        self,
        server_url: str,
        signing_secret: bytes,
        *,
        timeout: float = 30.0,
        crypto: CryptoProvider | None = None,
        client: httpx.AsyncClient | None = None,
        clock_ms: Callable[[], int] | None = None,
        rate_limit_retries: int = 2,
        max_retry_wait: float = 2.0,
    ) -> None:
        if not isinstance(server_url, str) or not server_url.startswith(("http://", "https://")):
            raise InvalidInput("server_url must be an http:// or https:// URL")
        super().__init__(
            server_url,
            RequestSigner(signing_secret, crypto),
            timeout=timeout,
            clock_ms=clock_ms,
            rate_limit_retries=rate_limit_retries,
            max_retry_wait=max_retry_wait,
        )
        self._origin = httpx.URL(self.server_url).copy_with(path="/", query=None, fragment=None)
        self._owns_client = client is None
        if client is None:
            # An http:// server needs no TLS context; building the default one costs ~15 ms.
            verify = True if self.server_url.startswith("https://") else False
            client = httpx.AsyncClient(verify=verify, follow_redirects=False)
        self._client = client

    @classmethod
    def for_device(cls, server_url: str, device: "LocalDevice", **kwargs: object) -> "HttpTransport":
        """A transport authenticated as ``device`` (its signing key signs every request)."""
        return cls(server_url, device.signing_secret, **kwargs)  # type: ignore[arg-type]

    async def _exchange(
        self, method: str, target: str, body: bytes, headers: dict[str, str], timeout: float, max_response: int
    ) -> RawResponse:
        url = self._origin.copy_with(raw_path=target.encode("ascii"))
        request = self._client.build_request(
            method,
            url,
            content=body if body else None,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT)),
        )
        try:
            response = await self._client.send(request, stream=True)
            try:
                length = response.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > max_response:
                    raise TransportError(f"response of {length} bytes exceeds {max_response}", status=response.status_code)
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_response:
                        raise TransportError(f"response exceeds {max_response} bytes", status=response.status_code)
                    chunks.append(chunk)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise TransportError(f"{method} {target.split('?', 1)[0]}: timed out", status=None, code="timeout") from None
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{method} {target.split('?', 1)[0]}: no answer ({type(exc).__name__})", status=None, code="network"
            ) from None
        return RawResponse(response.status_code, response.headers, b"".join(chunks))

    async def aclose(self) -> None:
        """Close the connections (only those of a client this transport created)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> "HttpTransport":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
