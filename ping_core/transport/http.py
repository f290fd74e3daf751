"""``HttpTransport``: the :class:`~ping_core.transport.base.Transport` to ping_server over httpx.

Everything but the bytes on the socket is :class:`~ping_core.transport.remote.RemoteTransport`
(request signing, routes, decoding, retries of safe refusals). This module is
CPython-only: httpx is not in Pyodide, where ``pyodide_app.transport`` plays
the same part with ``fetch``; nothing in ``ping_core`` imports it.

Errors: an answer with a non-2xx status is ``TransportError(status, code)``;
no answer is ``TransportError(status=None)`` with code ``timeout`` (the
deadline passed) or ``network`` (refused, reset, DNS, TLS ...), which are
ambiguous: the server may have applied the request.

By default requests go through an ``httpx.AsyncClient`` the transport makes
and owns (HTTP/1.1, TLS verified, proxies and CA bundle from the environment);
``client=`` sends through a caller's client instead. ``pool=`` sends through
:class:`ConnectionPool`, a small HTTP/1.1 keep-alive pool on asyncio streams
that writes each request in one piece and parses the answer itself: no httpx
``Request``/``Response``/URL objects per request, which cost more CPU than
signing it (benchmarks/server_load.py uses it: its clients share the machine
with the server). It does not do proxies or HTTP/2.
:class:`KeepAliveTransport` puts the same pool under an httpx client.

::

    async with HttpTransport.for_device("https://ping.example", device) as transport:
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

__all__ = ["HttpTransport", "ConnectionPool", "KeepAliveTransport", "BodyTooLarge"]

# Connecting should never take long on a working network; the rest of the
# budget is for the server's answer.
_CONNECT_TIMEOUT = 10.0
# Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them
# under a request we are writing.
_KEEPALIVE_EXPIRY = 4.0
_MAX_IDLE_PER_HOST = 16


class HttpTransport(RemoteTransport):
    """A device's transport to ping_server at ``server_url`` (e.g. ``https://ping.example``).

    ``signing_secret`` is the device's 32-byte Ed25519 seed
    (``LocalDevice.signing_secret``); :meth:`for_device` takes the device.
    ``timeout`` bounds each request (long polls get ``wait_ms`` more); connecting
    gets at most 10 s of it on top.

    How requests travel (at most one of ``client`` and ``pool``; ``InvalidInput`` otherwise):

    * default: an ``httpx.AsyncClient`` of the transport's own, closed by
      :meth:`aclose`: HTTP/1.1 with keep-alive (up to 16 idle connections, dropped
      after 4 s idle), no redirects followed, ``trust_env`` (``HTTP(S)_PROXY`` /
      ``NO_PROXY``, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), and the server's
      certificate verified against ``verify`` (an ``ssl.SSLContext``), by default
      httpx's: the environment's CA file or directory, else certifi's bundle.
    * ``client=``: the caller's ``httpx.AsyncClient``, with whatever it was
      configured with; :meth:`aclose` leaves it open.
    * ``pool=``: a caller's :class:`ConnectionPool` (lean HTTP/1.1 on asyncio
      streams, for load generators); TLS verified with its ``ssl_context``
      (default: httpx's default context as above); no proxies; :meth:`aclose`
      leaves it open.

    On every path the errors are the same (see the module docstring), a request
    is never retried on a new connection (a signed request sent twice is refused
    as a replay though the first may have been applied), and an answer bigger
    than the request allows is ``TransportError`` with the answer's status.
    """

    def __init__(
        self,
        server_url: str,
        signing_secret: bytes,
        *,
        timeout: float = 30.0,
        crypto: CryptoProvider | None = None,
        client: httpx.AsyncClient | None = None,
        pool: "ConnectionPool | None" = None,
        verify: ssl.SSLContext | None = None,
        clock_ms: Callable[[], int] | None = None,
        rate_limit_retries: int = 2,
        max_retry_wait: float = 2.0,
    ) -> None:
        if not isinstance(server_url, str) or not server_url.startswith(("http://", "https://")):
            raise InvalidInput("server_url must be an http:// or https:// URL")
        if client is not None and pool is not None:
            raise InvalidInput("pass either client or pool, not both")
        if verify is not None and (client is not None or pool is not None):
            raise InvalidInput(
                "verify is for the transport's own client; configure a client or pool of your own instead"
            )
        if verify is not None and not isinstance(verify, ssl.SSLContext):
            raise InvalidInput("verify must be an ssl.SSLContext")
        super().__init__(
            server_url,
            RequestSigner(signing_secret, crypto),
            timeout=timeout,
            clock_ms=clock_ms,
            rate_limit_retries=rate_limit_retries,
            max_retry_wait=max_retry_wait,
        )
        origin = httpx.URL(self.server_url)
        self._origin = origin.copy_with(path="/", query=None, fragment=None)
        port = origin.port or (443 if origin.scheme == "https" else 80)
        self._key = (origin.scheme, origin.host, port)
        default_port = port == (443 if origin.scheme == "https" else 80)
        host = f"[{origin.host}]" if ":" in origin.host else origin.host
        self._host_header = (host if default_port else f"{host}:{port}").encode("ascii")
        self._pool = pool
        self._owns_client = client is None and pool is None
        if self._owns_client:
            client = httpx.AsyncClient(
                http1=True,
                http2=False,
                verify=verify if verify is not None else _tls_context(),
                trust_env=True,
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=100,
                    max_keepalive_connections=_MAX_IDLE_PER_HOST,
                    keepalive_expiry=_KEEPALIVE_EXPIRY,
                ),
            )
        self._client = client

    @classmethod
    def for_device(cls, server_url: str, device: "LocalDevice", **kwargs: object) -> "HttpTransport":
        """A transport authenticated as ``device`` (its signing key signs every request)."""
        return cls(server_url, device.signing_secret, **kwargs)  # type: ignore[arg-type]

    async def _exchange(
        self, method: str, target: str, body: bytes, headers: dict[str, str], timeout: float, max_response: int
    ) -> RawResponse:
        try:
            if self._pool is not None:
                return await self._exchange_pool(self._pool, method, target, body, headers, timeout, max_response)
            assert self._client is not None
            return await self._exchange_httpx(self._client, method, target, body, headers, timeout, max_response)
        except BodyTooLarge as exc:
            raise TransportError(f"response exceeds {max_response} bytes", status=exc.status) from None
        except (httpx.TimeoutException, TimeoutError):
            raise TransportError(
                f"{method} {target.split('?', 1)[0]}: timed out", status=None, code="timeout"
            ) from None
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{method} {target.split('?', 1)[0]}: no answer ({type(exc).__name__})", status=None, code="network"
            ) from None

    async def _exchange_pool(
        self, pool: "ConnectionPool", method: str, target: str, body: bytes, headers: dict[str, str], timeout: float,
        max_response: int,
    ) -> RawResponse:  # fmt: skip
        head = [(b"host", self._host_header)]
        head += [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append((b"content-length", str(len(body)).encode("ascii")))
        connect = min(timeout, _CONNECT_TIMEOUT)
        status, raw_headers, content = await pool.request(
            self._key, method, target, head, body, connect_timeout=connect, write_timeout=timeout, read_timeout=timeout,
            max_body=max_response,
        )  # fmt: skip
        return RawResponse(status, {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}, content)

    async def _exchange_httpx(
        self, client: httpx.AsyncClient, method: str, target: str, body: bytes, headers: dict[str, str], timeout: float,
        max_response: int,
    ) -> RawResponse:  # fmt: skip
        if client.is_closed:  # httpx would raise RuntimeError; a closed transport has no answer
            raise httpx.ConnectError("the client is closed")
        url = self._origin.copy_with(raw_path=target.encode("ascii"))
        headers["accept-encoding"] = "identity"  # bodies are CBOR; never ask for compression
        connect = min(timeout, _CONNECT_TIMEOUT)
        request = client.build_request(
            method,
            url,
            content=body if body else None,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect),
        )
        # httpx's timeouts bound each step (each read, each write); the deadline bounds the whole
        # answer, as the pool's read timeout does, so a server trickling bytes cannot hold us.
        async with asyncio.timeout(connect + timeout):
            response = await client.send(request, stream=True)
            try:
                length = response.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > max_response:
                    raise BodyTooLarge(response.status_code, max_response)
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_response:
                        raise BodyTooLarge(response.status_code, max_response)
                    chunks.append(chunk)
            finally:
                await response.aclose()
        return RawResponse(response.status_code, response.headers, b"".join(chunks))

    async def aclose(self) -> None:
        """Close the transport's own client; its requests then fail with ``TransportError`` code
        ``network``. A caller's ``client`` or ``pool`` stays open."""
        if self._owns_client and self._client is not None:
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
        return (
            not self.reader.at_eof() and not self.writer.is_closing() and time.monotonic() - self.idle_since < max_idle
        )

    def close(self) -> None:
        self.writer.close()


_MAX_HEADER_BYTES = 64 * 1024
_NO_BODY_STATUS = {204, 304}
_DEFAULT_TLS: ssl.SSLContext | None = None

Origin = tuple[str, str, int]  # (scheme, host, port)


def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, else certifi's
    bundle), made once: building it loads the CA bundle (about 17 ms) and it is shared by every
    transport's own client and every pool without a context of its own."""
    global _DEFAULT_TLS
    if _DEFAULT_TLS is None:
        _DEFAULT_TLS = httpx.create_ssl_context(verify=True, trust_env=True)
    return _DEFAULT_TLS


class BodyTooLarge(httpx.RemoteProtocolError):
    """The answer's body exceeds the request's ``max_body`` (``status`` is the answer's status)."""

    def __init__(self, status: int, limit: int) -> None:
        super().__init__(f"answer exceeds {limit} bytes")
        self.status = status


class ConnectionPool:
    """HTTP/1.1 client connections on asyncio streams: one request at a time per connection, idle
    connections kept (at most ``max_idle_per_host``, for ``keepalive_expiry`` seconds, below
    uvicorn's 5 s) and reused, each request written with one ``write``. ``https`` servers are
    verified (certificate chain and host name) with ``ssl_context``, by default httpx's default
    context (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, else certifi's bundle). No proxies, no HTTP/2.

    Answers with ``Content-Length``, chunked bodies or a body up to the connection's close; no
    body for HEAD, 1xx, 204 and 304. A body over ``max_body`` bytes raises :class:`BodyTooLarge`,
    a malformed answer or a dropped connection ``httpx.RemoteProtocolError`` / ``httpx.ReadError``
    (ambiguous); deadlines raise httpx's timeout exceptions, a failed connect
    ``httpx.ConnectError``. A request is never retried here: a signed request sent twice would be
    refused as a replay although the first one may have been applied. A cancelled request closes
    its connection (its answer may still come).
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, max_idle_per_host: int = _MAX_IDLE_PER_HOST,
        keepalive_expiry: float = _KEEPALIVE_EXPIRY, max_body: int = 64 * 1024 * 1024,
    ) -> None:  # fmt: skip
        self._ssl = ssl_context
        self._max_idle = max_idle_per_host
        self._expiry = keepalive_expiry
        self.max_body = max_body
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False

    async def request(
        self,
        origin: Origin,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        connect_timeout: float | None = None,
        write_timeout: float | None = None,
        read_timeout: float | None = None,
        max_body: int | None = None,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send one request (``headers`` must include ``host`` and the body's framing) and return
        (status, headers, body); ``read_timeout`` bounds the whole answer."""
        if self._closed:
            raise httpx.ConnectError("transport is closed")
        limit = self.max_body if max_body is None else max_body
        conn = self._take_idle(origin)
        if conn is None:
            conn = await self._connect(origin, connect_timeout)
        head = [f"{method} {target} HTTP/1.1\r\n".encode("ascii")]
        head.extend(name + b": " + value + b"\r\n" for name, value in headers)
        head.append(b"\r\n")
        head.append(body)
        reusable = False
        try:
            conn.writer.write(b"".join(head))
            # asyncio.timeout, not wait_for: no extra task per step (it shows in a client's CPU).
            try:
                async with asyncio.timeout(write_timeout):
                    await conn.writer.drain()
            except TimeoutError:
                raise httpx.WriteTimeout("timed out sending the request") from None
            try:
                async with asyncio.timeout(read_timeout):
                    status, answer_headers, content, reusable = await self._read_response(conn.reader, method, limit)
            except TimeoutError:
                raise httpx.ReadTimeout("timed out waiting for the answer") from None
        except (ConnectionError, OSError) as exc:
            raise httpx.ReadError(f"connection failed: {type(exc).__name__}") from None
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError("the server closed the connection mid-answer") from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError("answer headers too long") from None
        finally:
            # Anything unfinished (an error, a cancelled task) leaves the connection in an unknown state.
            if reusable and not self._closed and len(self._idle.get(origin, ())) < self._max_idle:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(origin, []).append(conn)
            else:
                conn.close()
        return status, answer_headers, content

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable(self._expiry):
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        tls = (self._ssl or _tls_context()) if scheme == "https" else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls, limit=_MAX_HEADER_BYTES), timeout
            )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {type(exc).__name__}") from None
        return _Connection(reader, writer)

    async def _read_response(
        self, reader: asyncio.StreamReader, method: str, limit: int
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        while True:
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw[:-4].split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if (
                len(parts) < 2
                or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0")
                or not parts[1].isdigit()
                or len(parts[1]) != 3
            ):
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
            return status, _strip_framing(headers), await self._read_chunked(reader, status, limit), not close
        if length is not None:
            if length > limit:
                raise BodyTooLarge(status, limit)
            return status, headers, await reader.readexactly(length), not close
        # Delimited by the connection's close.
        chunks = []
        size = 0
        while chunk := await reader.read(65536):
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(status, limit)
            chunks.append(chunk)
        return status, headers, b"".join(chunks), False

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader, status: int, limit: int) -> bytes:
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
            if n < 0:
                raise httpx.RemoteProtocolError("malformed chunk size")
            if size > limit:
                raise BodyTooLarge(status, limit)
            chunks.append(await reader.readexactly(n))
            if await reader.readexactly(2) != b"\r\n":
                raise httpx.RemoteProtocolError("malformed chunk")

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """:class:`ConnectionPool` under an ``httpx.AsyncClient`` (``httpx.AsyncClient(transport=KeepAliveTransport())``):
    httpx's API on the lean HTTP/1.1 pool. The arguments are the pool's."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, max_idle_per_host: int = _MAX_IDLE_PER_HOST,
        keepalive_expiry: float = _KEEPALIVE_EXPIRY, max_body: int = 64 * 1024 * 1024,
    ) -> None:  # fmt: skip
        self._pool = ConnectionPool(
            ssl_context=ssl_context,
            max_idle_per_host=max_idle_per_host,
            keepalive_expiry=keepalive_expiry,
            max_body=max_body,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        status, headers, content = await self._pool.request(
            (url.scheme, url.host, port), request.method, url.raw_path.decode("ascii"), list(request.headers.raw), body,
            connect_timeout=timeouts.get("connect"), write_timeout=timeouts.get("write"), read_timeout=timeouts.get("read"),
        )  # fmt: skip
        return httpx.Response(status, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _strip_framing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # The body handed on is already de-chunked.
    return [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
