"""ping_core.transport.http: the HTTP/1.1 connection pool (under httpx as KeepAliveTransport) and
HttpTransport on each of its paths (its own httpx client, a caller's pool, a caller's client):
framing, connection reuse, deadlines and failures, against tiny asyncio servers that give canned
answers. tests/server/test_tls.py covers TLS on both paths."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.errors import InvalidInput, TransportError
from ping_core.identity import Identity
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.transport import wire
from ping_core.transport.http import ConnectionPool, HttpTransport, KeepAliveTransport

Handler = Callable[[bytes], bytes | None]  # request head -> raw answer (None: close without answering)


class Canned:
    """Answers each request with ``handler(request head)``; counts connections and requests."""

    def __init__(self, handler: Handler, close_after: bool = False) -> None:
        self.handler = handler
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.bodies: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.bodies.append(await reader.readexactly(length))
                self.requests.append(head)
                if b" /slow " in head:
                    await asyncio.sleep(0.3)
                answer = self.handler(head)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.server is not None
        for w in self.writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()


def _ok(body: bytes = b"hello", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    c = httpx.AsyncClient(transport=KeepAliveTransport(max_body=1000))
    yield c
    await c.aclose()


async def _with(handler: Handler, fn: Callable[[str], Any], close_after: bool = False) -> Canned:
    canned = Canned(handler, close_after)
    url = await canned.start()
    try:
        await fn(url)
    finally:
        await canned.stop()
    return canned


async def test_content_length_and_reuse(client: httpx.AsyncClient) -> None:
    async def go(url: str) -> None:
        for i in range(5):
            r = await client.post(url + f"/x?i={i}", content=b"body-%d" % i, headers={"ping-a": "b"})
            assert (r.status_code, r.content) == (200, b"hello")

    canned = await _with(lambda head: _ok(), go)
    assert canned.connections == 1  # kept alive and reused
    assert canned.requests[0].startswith(b"POST /x?i=0 HTTP/1.1\r\n") and b"ping-a: b" in canned.requests[0]
    assert canned.bodies == [b"body-%d" % i for i in range(5)]


async def test_chunked_and_informational_answers(client: httpx.AsyncClient) -> None:
    chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nx: y\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\ntrailer: t\r\n\r\n"

    async def go(url: str) -> None:
        r = await client.get(url)
        assert (r.status_code, r.content, r.headers["x"]) == (201, b"abcde", "y")
        assert "transfer-encoding" not in r.headers
        r = await client.get(url)  # the connection is still in sync
        assert r.content == b"abcde"

    canned = await _with(lambda head: chunked, go)
    assert canned.connections == 1


async def test_no_body_answers_and_connection_close(client: httpx.AsyncClient) -> None:
    answers = iter(
        [
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            _ok(b"again"),
        ]
    )

    async def go(url: str) -> None:
        assert (await client.delete(url)).status_code == 204
        assert (await client.get(url)).content == b"ok"
        assert (await client.get(url)).content == b"again"  # a new connection after "close"

    canned = await _with(lambda head: next(answers), go)
    assert canned.connections == 2


async def test_body_until_close(client: httpx.AsyncClient) -> None:
    async def go(url: str) -> None:
        r = await client.get(url)
        assert r.content == b"all of it"

    await _with(lambda head: b"HTTP/1.0 200 OK\r\n\r\nall of it", go, close_after=True)


async def test_server_closing_idle_connections(client: httpx.AsyncClient) -> None:
    async def go(url: str) -> None:
        for _ in range(3):
            assert (await client.get(url)).content == b"hello"
            await asyncio.sleep(0.05)  # the EOF of the closed connection arrives

    canned = await _with(lambda head: _ok(), go, close_after=True)
    assert canned.connections == 3  # a closed idle connection is never reused


@pytest.mark.parametrize(
    "answer,error",
    [
        (None, httpx.RemoteProtocolError),  # closed without an answer
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", httpx.RemoteProtocolError),
        (b"garbage\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 2000 OK\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n", httpx.RemoteProtocolError),  # over max_body
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n", httpx.RemoteProtocolError),
    ],
)
async def test_broken_answers(client: httpx.AsyncClient, answer: bytes | None, error: type[Exception]) -> None:
    async def go(url: str) -> None:
        with pytest.raises(error):
            await client.get(url)

    await _with(lambda head: answer, go, close_after=True)


async def test_timeouts_and_refused() -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    async with httpx.AsyncClient(transport=KeepAliveTransport()) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"http://127.0.0.1:{port}/", timeout=0.2)
    silent.close()
    await silent.wait_closed()
    async with httpx.AsyncClient(transport=KeepAliveTransport()) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{port}/")
        with pytest.raises(httpx.UnsupportedProtocol):
            await c.get("ftp://127.0.0.1/")


async def test_cancelled_request_does_not_poison_the_pool(client: httpx.AsyncClient) -> None:
    canned = Canned(lambda head: _ok(b"late" if b" /slow " in head else b"fresh"))
    url = await canned.start()
    try:
        task = asyncio.create_task(client.get(url + "/slow"))
        await asyncio.sleep(0.1)  # sent; the answer comes at 0.3 s
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The next request must not read the cancelled request's answer off a reused connection.
        assert (await client.get(url + "/next")).content == b"fresh"
        assert canned.connections == 2
    finally:
        await canned.stop()


# ---------------------------------------------------------------------------
# HttpTransport on each path: its own httpx client (the default), a caller's pool, a caller's client

PATHS = ["httpx", "pool"]


def _transport(url: str, dev: LocalDevice, path: str, **kwargs: Any) -> tuple[HttpTransport, ConnectionPool | None]:
    """HttpTransport on ``path`` ("httpx": the default, its own client; "pool": a ConnectionPool of
    the caller's), and that pool, for the test to close."""
    pool = ConnectionPool() if path == "pool" else None
    return HttpTransport.for_device(url, dev, pool=pool, **kwargs), pool


async def _close(t: HttpTransport, pool: ConnectionPool | None) -> None:
    await t.aclose()
    if pool is not None:
        await pool.aclose()


@pytest.mark.parametrize("path", PATHS)
async def test_http_transport_requests_and_errors(path: str) -> None:
    """What HttpTransport writes (the signed request and its body's length, on a kept-alive
    connection) and how answers map to TransportError, the same on both paths: status and code
    kept; an oversized body keeps its status (no code: ambiguous); a broken answer is a network
    error without status."""
    dev = LocalDevice.generate(Identity.generate().user_id, "d", 1)
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\ncontent-type: application/cbor\r\ncontent-length: %d\r\n\r\n%s"
            % (len(wire.encode_seq(7)), wire.encode_seq(7)),
            b'HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: 41\r\n\r\n{"code":"epoch_advanced","message":"no!"}',
            b"HTTP/1.1 200 OK\r\ncontent-length: 999999999\r\n\r\n",
            b"garbage\r\n\r\n",
        ]
    )
    canned = Canned(lambda head: next(answers))
    url = await canned.start()
    t, pool = _transport(url, dev, path, rate_limit_retries=0)
    try:
        env = MessageEnvelope(ConversationId.new(), 0, MessageKind.APPLICATION, dev.device_id, 0, Hlc(1, 0), b"x")
        assert await t.send(env) == 7
        head = canned.requests[0].decode().lower()
        assert head.startswith(f"post /v1/conversations/{env.conversation_id.as_hex()}/messages http/1.1\r\n")
        assert f"host: 127.0.0.1:{url.rsplit(':', 1)[1]}\r\n" in head and f"ping-device: {dev.device_id.as_hex()}\r\n" in head
        assert f"content-length: {len(canned.bodies[0])}\r\n" in head and "content-type: application/cbor\r\n" in head
        with pytest.raises(TransportError) as err:
            await t.send(env)
        assert (err.value.status, err.value.code) == (409, "epoch_advanced")
        with pytest.raises(TransportError) as err:
            await t.fetch_welcomes()
        assert (err.value.status, err.value.code, err.value.is_definite_rejection) == (200, None, False)
        with pytest.raises(TransportError) as err:
            await t.fetch_welcomes()
        assert (err.value.status, err.value.code) == (None, "network")
        assert canned.connections == 2  # kept alive; the oversized answer closed its connection
    finally:
        await _close(t, pool)
        await canned.stop()


@pytest.mark.parametrize("path", PATHS)
async def test_http_transport_oversized_chunked_answer(path: str) -> None:
    """A body without Content-Length that grows past the limit is refused while it streams."""
    dev = LocalDevice.generate(Identity.generate().user_id, "d", 1)
    chunk = b"x" * 65536
    big = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(wire.MAX_RESPONSE_BYTES // len(chunk) + 2))
    canned = Canned(lambda head: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + big + b"0\r\n\r\n")
    url = await canned.start()
    t, pool = _transport(url, dev, path)
    try:
        with pytest.raises(TransportError) as err:
            await t.fetch_welcomes()
        assert (err.value.status, err.value.code) == (200, None)
    finally:
        await _close(t, pool)
        await canned.stop()


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers with a 100-byte body, one byte every 0.1 s: each read is quick, the whole is not."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        for _ in range(100):
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(b"x")
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("behaviour", ["silent", "trickle"])
async def test_http_transport_deadline(path: str, behaviour: str) -> None:
    """No whole answer within the deadline is TransportError "timeout" on both paths, also when
    the server keeps every single read quick (the deadline bounds the whole answer)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers
        writer.close()

    server = await asyncio.start_server(silent if behaviour == "silent" else _trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dev = LocalDevice.generate(Identity.generate().user_id, "d", 1)
    t, pool = _transport(f"http://127.0.0.1:{port}", dev, path, timeout=0.3)
    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises(TransportError) as err:
            await t.fetch_welcomes()
        assert (err.value.status, err.value.code) == (None, "timeout")
        assert asyncio.get_running_loop().time() - started < 3  # not the trickle's 10 s
    finally:
        await _close(t, pool)
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("path", PATHS)
async def test_http_transport_refused_and_closed(path: str) -> None:
    """Nothing listening is "network"; after aclose the transport's own client is closed (its
    requests are "network" too), while a caller's pool stays usable."""
    dev = LocalDevice.generate(Identity.generate().user_id, "d", 1)
    canned = Canned(lambda head: b"HTTP/1.1 204 No Content\r\n\r\n")
    url = await canned.start()
    t, pool = _transport(url, dev, path)
    try:
        await t.ack_welcomes(1)
        await t.aclose()
        if pool is None:
            with pytest.raises(TransportError) as err:
                await t.ack_welcomes(2)
            assert (err.value.status, err.value.code) == (None, "network")
        else:
            await t.ack_welcomes(2)  # the caller's pool is the caller's to close
    finally:
        await _close(t, pool)
        await canned.stop()
    t, pool = _transport(url, dev, path)  # nothing listens there now
    try:
        with pytest.raises(TransportError) as err:
            await t.ack_welcomes(3)
        assert (err.value.status, err.value.code) == (None, "network")
    finally:
        await _close(t, pool)


async def test_http_transport_on_a_callers_httpx_client() -> None:
    dev = LocalDevice.generate(Identity.generate().user_id, "d", 1)
    canned = Canned(lambda head: b"HTTP/1.1 204 No Content\r\n\r\n")
    url = await canned.start()
    async with httpx.AsyncClient() as client:
        t = HttpTransport.for_device(url, dev, client=client)
        await t.ack_welcomes(3)
        await t.aclose()  # the caller's client stays open
        await t.ack_welcomes(4)
    await canned.stop()
    assert len(canned.requests) == 2 and canned.requests[0].startswith(b"POST /v1/welcomes/ack HTTP/1.1\r\n")
    assert canned.bodies[0] == wire.ack_welcomes_request(3).body


async def test_http_transport_options_are_checked() -> None:
    dev = LocalDevice.generate(Identity.generate().user_id, "d", 1)
    ctx = ssl.create_default_context()
    async with httpx.AsyncClient() as client:
        pool = ConnectionPool()
        for kwargs in ({"client": client, "pool": pool}, {"client": client, "verify": ctx}, {"pool": pool, "verify": ctx},
                       {"verify": "/etc/ssl/certs"}):  # fmt: skip
            with pytest.raises(InvalidInput):
                HttpTransport.for_device("http://127.0.0.1:1", dev, **kwargs)
        await pool.aclose()
    with pytest.raises(InvalidInput):
        HttpTransport.for_device("ftp://127.0.0.1:1", dev)
    t = HttpTransport.for_device("https://127.0.0.1:1", dev, verify=ctx)
    await t.aclose()
