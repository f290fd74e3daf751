"""``HttpTransport``: the :class:`~ping_core.transport.base.Transport` to ping_server over httpx.

Everything but the bytes on the socket is :class:`~ping_core.transport.remote.RemoteTransport`
(request signing, routes, decoding, retries of safe refusals). This module is
CPython-only: httpx is not in Pyodide, where ``pyodide_app.transport`` plays
the same part with ``fetch``; nothing in ``ping_core`` imports it.

Errors: an answer with a non-2xx status is ``TransportError(status, code)``;
no answer is ``TransportError(status=None)`` with code ``timeout`` (the
deadline passed) or ``network`` (refused, reset, DNS, TLS ...), which are
ambiguous: the server may have applied the request.

By default the httpx client runs on :class:`KeepAliveTransport`, a small
HTTP/1.1 keep-alive connection pool on asyncio streams that writes each
request in one piece. It replaces httpx's default transport (httpcore over
anyio), which costs more than twice the client CPU per request
(benchmarks/server_load.py); it does not do proxies or HTTP/2. Pass your own
``httpx.AsyncClient`` (``client=``) to use httpx's transports instead.

::

    async with HttpTransport.for_device("http://127.0.0.1:8080", device) as transport:
        await transport.register_device(device.info(now_ms), identity.device_binding(device.device_id))
"""

from __future__ import annotations

import asyncio
import ssl
import time
from types import TracebackType
from typing import TYPE_CHECKING, Callable

import httpx

from ping_core.errors import InvalidInput, TransportError
from ping_core.mls.crypto import CryptoProvider

from .remote import RawResponse, RemoteTransport
from .wire import RequestSigner

if TYPE_CHECKING:
    from ping_core.device import LocalDevice

__all__ = ["HttpTransport", "KeepAliveTransport"]

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
            client = httpx.AsyncClient(transport=KeepAliveTransport(), follow_redirects=False, trust_env=False)
        self._client = client

    @classmethod
    def for_device(cls, server_url: str, device: "LocalDevice", **kwargs: object) -> "HttpTransport":
        """A transport authenticated as ``device`` (its signing key signs every request)."""
        return cls(server_url, device.signing_secret, **kwargs)  # type: ignore[arg-type]

    async def _exchange(
        self, method: str, target: str, body: bytes, headers: dict[str, str], timeout: float, max_response: int
    ) -> RawResponse:
        url = self._origin.copy_with(raw_path=target.encode("ascii"))
        headers["accept-encoding"] = "identity"  # bodies are CBOR; never ask for compression
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


# ---------------------------------------------------------------------------
# A lean HTTP/1.1 transport for httpx


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, max_idle: float) -> bool:
        # A server that closed an idle connection has fed EOF long before we reuse it.
        return not self.reader.at_eof() and not self.writer.is_closing() and time.monotonic() - self.idle_since < max_idle

    def close(self) -> None:
        self.writer.close()


_MAX_HEADER_BYTES = 64 * 1024
_NO_BODY_STATUS = {204, 304}
_DEFAULT_TLS: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _DEFAULT_TLS
    if _DEFAULT_TLS is None:
        _DEFAULT_TLS = ssl.create_default_context()
    return _DEFAULT_TLS


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 for httpx over asyncio streams: one request at a time per connection, idle
    connections kept (at most ``max_idle_per_host``, for ``keepalive_expiry`` seconds, below
    uvicorn's 5 s) and reused, each request written with one ``write``.

    Answers with ``Content-Length``, chunked bodies or a body up to the connection's close; no
    body for HEAD, 1xx, 204 and 304. A body over ``max_body`` bytes, a malformed answer or a
    dropped connection raise ``httpx.RemoteProtocolError`` / ``httpx.ReadError`` (ambiguous);
    deadlines raise httpx's timeout exceptions. A request is never retried here: a signed request
    sent twice would be refused as a replay although the first one may have been applied.
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, max_idle_per_host: int = 16, keepalive_expiry: float = 4.0,
        max_body: int = 64 * 1024 * 1024,
    ) -> None:  # fmt: skip
        self._ssl = ssl_context
        self._max_idle = max_idle_per_host
        self._expiry = keepalive_expiry
        self._max_body = max_body
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("transport is closed")
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, url.host, port)
        timeouts = request.extensions.get("timeout", {})
        connect_timeout, read_timeout, write_timeout = (timeouts.get(k) for k in ("connect", "read", "write"))
        conn = self._take_idle(key)
        if conn is None:
            conn = await self._connect(key, connect_timeout)
        body = await request.aread()
        head = [f"{request.method} {url.raw_path.decode('ascii')} HTTP/1.1\r\n".encode("ascii")]
        head.extend(name + b": " + value + b"\r\n" for name, value in request.headers.raw)
        head.append(b"\r\n")
        head.append(body)
        reusable = False
        try:
            conn.writer.write(b"".join(head))
            try:
                await asyncio.wait_for(conn.writer.drain(), write_timeout)
            except asyncio.TimeoutError:
                raise httpx.WriteTimeout("timed out sending the request") from None
            try:
                status, headers, content, reusable = await asyncio.wait_for(
                    self._read_response(conn.reader, request.method), read_timeout
                )
            except asyncio.TimeoutError:
                raise httpx.ReadTimeout("timed out waiting for the answer") from None
        except (ConnectionError, OSError) as exc:
            raise httpx.ReadError(f"connection failed: {type(exc).__name__}") from None
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError("the server closed the connection mid-answer") from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError("answer headers too long") from None
        finally:
            # Anything unfinished (an error, a cancelled task) leaves the connection in an unknown state.
            if reusable and not self._closed and len(self._idle.get(key, ())) < self._max_idle:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(key, []).append(conn)
            else:
                conn.close()
        return httpx.Response(status, headers=headers, content=content, request=request)

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable(self._expiry):
                return conn
            conn.close()
        return None

    async def _connect(self, key: tuple[str, str, int], timeout: float | None) -> _Connection:
        scheme, host, port = key
        tls = (self._ssl or _tls_context()) if scheme == "https" else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls, limit=_MAX_HEADER_BYTES), timeout
            )
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {type(exc).__name__}") from None
        return _Connection(reader, writer)

    async def _read_response(self, reader: asyncio.StreamReader, method: str) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        while True:
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw[:-4].split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit() or len(parts[1]) != 3:
                raise httpx.RemoteProtocolError("malformed status line")
            status = int(parts[1])
            if status >= 200 or status == 101:
                break  # 1xx informational answers precede the real one
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise httpx.RemoteProtocolError("malformed header line")
            value = value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise httpx.RemoteProtocolError("malformed content-length")
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif lower == b"connection":
                close = close or b"close" in value.lower()
        if method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
            return status, headers, b"", not close
        if chunked:
            return status, _strip_framing(headers), await self._read_chunked(reader), not close
        if length is not None:
            if length > self._max_body:
                raise httpx.RemoteProtocolError(f"answer of {length} bytes exceeds {self._max_body}")
            return status, headers, await reader.readexactly(length), not close
        # Delimited by the connection's close.
        chunks = []
        size = 0
        while chunk := await reader.read(65536):
            size += len(chunk)
            if size > self._max_body:
                raise httpx.RemoteProtocolError(f"answer exceeds {self._max_body} bytes")
            chunks.append(chunk)
        return status, headers, b"".join(chunks), False

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                n = int(line[:-2].split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise httpx.RemoteProtocolError("malformed chunk size") from None
            if n == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(chunks)
            size += n
            if n < 0 or size > self._max_body:
                raise httpx.RemoteProtocolError(f"answer exceeds {self._max_body} bytes")
            chunks.append(await reader.readexactly(n))
            if await reader.readexactly(2) != b"\r\n":
                raise httpx.RemoteProtocolError("malformed chunk")

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def _strip_framing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # The body handed to httpx is already de-chunked.
    return [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
