"""The HTTP API against hostile or broken requests, on a real server process over SQLite and
over PostgreSQL: each refusal has its status and JSON code, and stores nothing.

"Nothing stored" is checked by counting the rows of every data table in the server's
database before and after. A request that authenticated (good signature, fresh nonce) and
was then refused by the delivery rules keeps its nonce row, on purpose: the same signed
request must never be replayable later, when the state might let it through.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from urllib.parse import urlsplit
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from serverproc import Inspector, ServerProcess

from ping_core.clock import Hlc
from ping_core.cbor import dumps
from ping_core.device import LocalDevice
from ping_core.errors import TransportError
from ping_core.identity import Identity
from ping_core.ids import ConversationId, DeviceId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor
from ping_core.transport import WatchResult, wire
from ping_core.transport.http import HttpTransport


def _now() -> int:
    return time.time_ns() // 1_000_000


class Raw:
    """Hand-made requests as one device (signed correctly unless told otherwise)."""

    def __init__(self, url: str, device: LocalDevice) -> None:
        self.device = device
        self.signer = wire.RequestSigner(device.signing_secret)
        self.client = httpx.AsyncClient(base_url=url)

    def headers(self, method: str, target: str, body: bytes = b"", *, ts: int | None = None) -> dict[str, str]:
        return self.signer.headers(method, target, body, _now() if ts is None else ts)

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        h = self.headers(method, target, body) if headers is None else headers
        return await self.client.request(method, target, content=body or None, headers=h, **kw)

    async def aclose(self) -> None:
        await self.client.aclose()


class World:
    """Two registered users with a conversation ``conv`` alice created; ``eve`` is registered but no member."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.alice, self.eve = Identity.generate(), Identity.generate()
        self.a = LocalDevice.generate(self.alice.user_id, "a", 1)
        self.e = LocalDevice.generate(self.eve.user_id, "e", 1)
        self.ta = HttpTransport.for_device(url, self.a)
        self.te = HttpTransport.for_device(url, self.e)
        self.ra = Raw(url, self.a)
        self.re = Raw(url, self.e)
        self.conv = ConversationId.new()

    async def setup(self) -> "World":
        await self.ta.register_device(self.a.info(1), self.alice.device_binding(self.a.device_id))
        await self.te.register_device(self.e.info(1), self.eve.device_binding(self.e.device_id))
        await self.ta.send(self.env(self.a.device_id))
        return self

    def env(self, sender: DeviceId, kind: MessageKind = MessageKind.APPLICATION, epoch: int = 0) -> MessageEnvelope:
        return MessageEnvelope(self.conv, epoch, kind, sender, 0, Hlc(1, 0), b"payload")

    def post_target(self) -> str:
        return f"/v1/conversations/{self.conv.as_hex()}/messages"

    def post_body(self, sender: DeviceId | None = None) -> bytes:
        return wire.post_message_request(self.env(sender or self.a.device_id), []).body

    async def aclose(self) -> None:
        for c in (self.ta, self.te, self.ra, self.re):
            await c.aclose()


@pytest.fixture
async def world(server: ServerProcess) -> AsyncIterator[World]:
    w = await World(server.url).setup()
    yield w
    await w.aclose()


def _error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]
    return str(body["message"])


# ---------------------------------------------------------------------------
# Authentication


@pytest.mark.parametrize("drop", [wire.HEADER_DEVICE, wire.HEADER_TIMESTAMP, wire.HEADER_NONCE, wire.HEADER_SIGNATURE, "all"])
async def test_missing_auth_header(world: World, inspector: Inspector, drop: str) -> None:
    before, nonces = inspector.counts(), inspector.nonces()
    body = world.post_body()
    headers = world.ra.headers("POST", world.post_target(), body)
    if drop == "all":
        headers = {}
    else:
        del headers[drop]
    _error(await world.ra.request("POST", world.post_target(), body, headers), 401, "unauthorized")
    assert inspector.counts() == before and inspector.nonces() == nonces


@pytest.mark.parametrize(
    "field,value",
    [
        (wire.HEADER_DEVICE, "AB" * 32),  # upper-case hex is not the canonical form
        (wire.HEADER_DEVICE, "ab" * 31),
        (wire.HEADER_TIMESTAMP, "01700000000000"),
        (wire.HEADER_TIMESTAMP, "-5"),
        (wire.HEADER_NONCE, "00" * 15),
        (wire.HEADER_SIGNATURE, "zz" * 64),
    ],
)
async def test_malformed_auth_header(world: World, inspector: Inspector, field: str, value: str) -> None:
    before, nonces = inspector.counts(), inspector.nonces()
    body = world.post_body()
    headers = world.ra.headers("POST", world.post_target(), body)
    headers[field] = value
    _error(await world.ra.request("POST", world.post_target(), body, headers), 401, "unauthorized")
    assert inspector.counts() == before and inspector.nonces() == nonces


async def test_wrong_signature(world: World, inspector: Inspector) -> None:
    before, nonces = inspector.counts(), inspector.nonces()
    target, body = world.post_target(), world.post_body()
    good = world.ra.headers("POST", target, body)
    cases = []
    # Another device's key signing for alice's device id.
    forged = world.re.headers("POST", target, body)
    forged[wire.HEADER_DEVICE] = world.a.device_id.as_hex()
    cases.append(forged)
    # Signed over another body, another target, another method.
    cases.append(world.ra.headers("POST", target, body + b"\x00"))
    cases.append(world.ra.headers("POST", target + "x", body))
    cases.append(world.ra.headers("PUT", target, body))
    # One flipped bit, and a nonce/timestamp changed after signing.
    flipped = dict(good)
    sig = bytearray(bytes.fromhex(flipped[wire.HEADER_SIGNATURE]))
    sig[10] ^= 1
    flipped[wire.HEADER_SIGNATURE] = sig.hex()
    cases.append(flipped)
    renonced = dict(good)
    renonced[wire.HEADER_NONCE] = "00" * 16
    cases.append(renonced)
    retimed = dict(good)
    retimed[wire.HEADER_TIMESTAMP] = str(int(good[wire.HEADER_TIMESTAMP]) + 1)
    cases.append(retimed)
    for headers in cases:
        _error(await world.ra.request("POST", target, body, headers), 401, "unauthorized")
    # Signed for the query-less target, sent with a query.
    h = world.ra.headers("GET", f"/v1/conversations/{world.conv.as_hex()}/messages?after=0&limit=10")
    resp = await world.ra.client.get(f"/v1/conversations/{world.conv.as_hex()}/messages?after=0&limit=11", headers=h)
    _error(resp, 401, "unauthorized")
    assert inspector.counts() == before and inspector.nonces() == nonces
    # The good headers still work once.
    assert (await world.ra.request("POST", target, body, good)).status_code == 200


async def test_replayed_request(world: World, inspector: Inspector) -> None:
    target, body = world.post_target(), world.post_body()
    headers = world.ra.headers("POST", target, body)
    first = await world.ra.request("POST", target, body, headers)
    assert first.status_code == 200 and first.headers["content-type"] == "application/cbor"
    assert wire.decode_seq(first.content) == 2
    after_first, nonces = inspector.counts(), inspector.nonces()
    assert "replay" in _error(await world.ra.request("POST", target, body, headers), 401, "unauthorized")
    assert inspector.counts() == after_first and inspector.nonces() == nonces
    # A replayed read is refused too.
    get = f"/v1/conversations/{world.conv.as_hex()}/messages?after=0&limit=10"
    h = world.ra.headers("GET", get)
    assert (await world.ra.request("GET", get, headers=h)).status_code == 200
    _error(await world.ra.request("GET", get, headers=h), 401, "unauthorized")
    # So is the replay of a request the rules refused (its nonce is kept).
    bad_target, bad_body = target, wire.post_message_request(world.env(world.a.device_id, MessageKind.COMMIT, epoch=5), []).body
    h = world.ra.headers("POST", bad_target, bad_body)
    assert (await world.ra.request("POST", bad_target, bad_body, h)).status_code == 200  # first Commit: sets epoch 6
    h = world.ra.headers("POST", bad_target, bad_body)
    _error(await world.ra.request("POST", bad_target, bad_body, h), 409, "epoch_advanced")
    _error(await world.ra.request("POST", bad_target, bad_body, h), 401, "unauthorized")


@pytest.mark.parametrize("skew_ms", [-wire.MAX_CLOCK_SKEW_MS - 60_000, wire.MAX_CLOCK_SKEW_MS + 60_000])
async def test_stale_timestamp(world: World, inspector: Inspector, skew_ms: int) -> None:
    before, nonces = inspector.counts(), inspector.nonces()
    target, body = world.post_target(), world.post_body()
    headers = world.ra.headers("POST", target, body, ts=_now() + skew_ms)
    resp = await world.ra.request("POST", target, body, headers)
    assert "stale" in _error(resp, 401, "unauthorized")
    assert abs(int(resp.headers[wire.HEADER_SERVER_TIME]) - _now()) < 60_000
    assert inspector.counts() == before and inspector.nonces() == nonces
    # A transport whose clock is off learns the server's time from that answer and carries on.
    skewed = HttpTransport.for_device(world.url, world.a, clock_ms=lambda: _now() + skew_ms)
    try:
        assert await skewed.send(world.env(world.a.device_id)) == 2
        assert len(await skewed.fetch_since(world.conv, SyncCursor(), 10)) == 2
    finally:
        await skewed.aclose()


async def test_unregistered_device(world: World, inspector: Inspector, server: ServerProcess) -> None:
    stranger = LocalDevice.generate(world.eve.user_id, "s", 1)
    raw = Raw(server.url, stranger)
    try:
        before, nonces = inspector.counts(), inspector.nonces()
        body = wire.post_message_request(world.env(stranger.device_id), []).body
        _error(await raw.request("POST", world.post_target(), body), 401, "unauthorized")
        _error(await raw.request("GET", "/v1/welcomes?after=0"), 401, "unauthorized")
        assert inspector.counts() == before and inspector.nonces() == nonces
    finally:
        await raw.aclose()


async def test_registration_proves_key_possession(world: World, inspector: Inspector, server: ServerProcess) -> None:
    bob = Identity.generate()
    dev = LocalDevice.generate(bob.user_id, "b", 1)
    body = wire.register_request(dev.info(1), bob.device_binding(dev.device_id)).body
    before, nonces = inspector.counts(), inspector.nonces()
    # Signed by eve's key but claiming dev's id: the key in the body does not verify the signature.
    headers = world.re.headers("POST", "/v1/devices", body)
    headers[wire.HEADER_DEVICE] = dev.device_id.as_hex()
    _error(await world.re.request("POST", "/v1/devices", body, headers), 401, "unauthorized")
    # Eve registering dev under her own headers: a device registers itself only.
    _error(await world.re.request("POST", "/v1/devices", body), 403, "forbidden")
    assert inspector.counts() == before and inspector.nonces() == nonces
    raw = Raw(server.url, dev)
    try:
        resp = await raw.request("POST", "/v1/devices", body)
        assert resp.status_code == 204 and resp.content == b""
        assert inspector.counts()["devices"] == before["devices"] + 1
    finally:
        await raw.aclose()


# ---------------------------------------------------------------------------
# The delivery rules


async def test_sender_device_of_another_device(world: World, inspector: Inspector) -> None:
    before = inspector.counts()
    body = world.post_body(sender=world.e.device_id)
    _error(await world.ra.request("POST", world.post_target(), body), 403, "forbidden")
    # Eve posing as alice in a conversation eve is not in, and in a new one.
    _error(await world.re.request("POST", world.post_target(), world.post_body()), 403, "forbidden")
    new = ConversationId.new()
    env = MessageEnvelope(new, 0, MessageKind.APPLICATION, world.a.device_id, 0, Hlc(1, 0), b"x")
    req = wire.post_message_request(env, [])
    _error(await world.re.request("POST", req.target, req.body), 403, "forbidden")
    # A Welcome posing as alice.
    wel = MessageEnvelope(world.conv, 0, MessageKind.WELCOME, world.a.device_id, 0, Hlc(1, 0), b"w")
    req = wire.post_welcome_request(wel, [world.e.device_id])
    _error(await world.re.request("POST", req.target, req.body), 403, "forbidden")
    assert inspector.counts() == before


async def test_non_member_reads_and_posts(world: World, inspector: Inspector) -> None:
    before, nonces = inspector.counts(), inspector.nonces()
    get = f"/v1/conversations/{world.conv.as_hex()}/messages?after=0&limit=10"
    _error(await world.re.request("GET", get), 403, "forbidden")
    _error(await world.re.request("GET", get + "&wait_ms=100"), 403, "forbidden")
    body = wire.post_message_request(world.env(world.e.device_id), []).body
    _error(await world.re.request("POST", world.post_target(), body), 403, "forbidden")
    assert inspector.counts() == before
    assert inspector.nonces() == nonces + 3  # authenticated, then refused: the nonces stay used
    with pytest.raises(TransportError) as err:
        await world.te.fetch_since(world.conv, SyncCursor(), 10)
    assert (err.value.status, err.value.code) == (403, "forbidden")


def _bad_bodies(world: World) -> list[bytes]:
    good = world.post_body()
    env = world.env(world.a.device_id).to_value()
    out = [
        b"",
        b"\xff",
        b"not cbor at all",
        good + b"\x00",  # trailing byte
        good[:-1],  # truncated
        b"\xa4" + good[1:],  # wrong map length
        dumps({"v": 2, "envelope": env, "removes": []}),  # unknown version
        dumps({"v": 1, "envelope": env}),  # missing key
        dumps({"v": 1, "envelope": env, "removes": [], "x": 1}),  # extra key
        dumps({"v": 1, "envelope": {**env, "conversation_id": b"\x00" * 15}, "removes": []}),
        dumps({"v": 1, "envelope": {**env, "kind": 9}, "removes": []}),
        dumps({"v": 1, "envelope": env, "removes": [b"\x00" * 31]}),
        dumps([1, 2, 3]),
    ]
    # Non-canonical: the same map with its keys out of order (cbor2 without canonical=True keeps insertion order).
    import cbor2

    out.append(cbor2.dumps({"removes": [], "envelope": env, "v": 1}))
    out.append(cbor2.dumps({"v": 1, "envelope": env, "removes": []}, canonical=False).replace(b"\x01", b"\x18\x01", 1))
    return out


async def test_malformed_cbor(world: World, inspector: Inspector) -> None:
    before = inspector.counts()
    for body in _bad_bodies(world):
        _error(await world.ra.request("POST", world.post_target(), body), 400, "invalid_request")
    for target in ("/v1/key-packages", "/v1/welcomes/ack", f"/v1/conversations/{world.conv.as_hex()}/welcomes", "/v1/devices"):
        _error(await world.ra.request("POST", target, b"\x82\x01"), 400, "invalid_request")
    assert inspector.counts() == before


async def test_bad_paths_and_queries(world: World, inspector: Inspector) -> None:
    before = inspector.counts()
    base = f"/v1/conversations/{world.conv.as_hex()}/messages"
    for query in ("", "?after=0", "?limit=1", "?after=0&limit=1&x=1", "?after=0&after=0&limit=1", "?after=00&limit=1",
                  "?after=-1&limit=1", "?after=0&limit=1&wait_ms=", "?after=9223372036854775808&limit=1"):  # fmt: skip
        _error(await world.ra.request("GET", base + query), 400, "invalid_request")
    for cid in ("00", "ZZ" * 16, world.conv.as_hex().upper()):
        _error(await world.ra.request("GET", f"/v1/conversations/{cid}/messages?after=0&limit=1"), 400, "invalid_request")
    other = ConversationId.new()
    _error(await world.ra.request("POST", f"/v1/conversations/{other.as_hex()}/messages", world.post_body()), 400, "invalid_request")
    _error(await world.ra.request("GET", "/v1/accounts/xyz/devices"), 400, "invalid_request")
    _error(await world.ra.request("POST", f"/v1/devices/{world.e.device_id.as_hex()}/key-packages/claim"), 400, "invalid_request")
    assert inspector.counts() == before


async def raw_exchange(url: str, head: list[str], body: bytes = b"", *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes, bool]:
    """One request written by hand on a fresh connection (``head``: the request line and headers),
    then ``body``; the answer's status, headers, body, and whether the server closed the connection."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(("\r\n".join([*head, f"host: {parts.netloc}", "", ""])).encode("latin-1") + body)
        await writer.drain()
        async with asyncio.timeout(timeout):
            status_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            content = await reader.readexactly(int(headers.get("content-length", "0")))
            closed = await reader.read(1) == b""
    finally:
        writer.close()
    return int(status_line.split()[1]), headers, content, closed


async def test_oversized_body(world: World, inspector: Inspector) -> None:
    """Bodies over a route's limit are refused 413 and the connection closed (the rest is never read)."""
    before, nonces = inspector.counts(), inspector.nonces()
    target = world.post_target()

    def head(method: str, path: str, body: bytes, extra: str) -> list[str]:
        h = world.ra.headers(method, path, body)
        return [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in h.items()), extra]

    # Refused from the Content-Length alone, before reading (nothing of the body is sent here).
    for method, path, limit in (
        ("POST", target, wire.MAX_MESSAGE_POST_BODY),
        ("POST", f"/v1/conversations/{world.conv.as_hex()}/welcomes", wire.MAX_POST_BODY),
        ("GET", "/v1/welcomes?after=0", 0),
        ("POST", "/v1/welcomes/ack", 64),
        ("POST", "/v1/devices", 4096),
        ("POST", "/v1/key-packages", wire.MAX_PUBLISH_BODY),
    ):
        status, headers, content, closed = await raw_exchange(world.url, head(method, path, b"", f"content-length: {limit + 1}"))
        assert (status, json.loads(content)["code"], headers["connection"], closed) == (413, "too_large", "close", True), path
    # Chunked (no Content-Length): refused while reading, once past the limit, and the connection
    # closed with the rest of the body unread (so the kernel may reset it before the answer is read).
    chunk = b"\x00" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(wire.MAX_MESSAGE_POST_BODY // 65536 + 1))
    try:
        status, headers, content, closed = await raw_exchange(world.url, head("POST", target, b"", "transfer-encoding: chunked"), chunks)
    except (ConnectionResetError, asyncio.IncompleteReadError, BrokenPipeError):
        pass
    else:
        assert (status, json.loads(content)["code"], closed) == (413, "too_large", True)
    # Small bodies over small limits, sent whole.
    _error(await world.ra.request("GET", "/v1/welcomes?after=0", b"x"), 413, "too_large")
    _error(await world.ra.request("POST", "/v1/welcomes/ack", b"\x00" * 65), 413, "too_large")
    assert inspector.counts() == before and inspector.nonces() == nonces


async def test_too_many_items(world: World, inspector: Inspector) -> None:
    before = inspector.counts()
    removes = [DeviceId(i.to_bytes(32, "big")) for i in range(1001)]
    req = wire.post_message_request(world.env(world.a.device_id, MessageKind.COMMIT), removes)
    _error(await world.ra.request("POST", req.target, req.body), 413, "too_large")
    wel = MessageEnvelope(world.conv, 0, MessageKind.WELCOME, world.a.device_id, 0, Hlc(1, 0), b"w")
    req = wire.post_welcome_request(wel, removes)
    _error(await world.ra.request("POST", req.target, req.body), 413, "too_large")
    req = wire.publish_request([b"k"] * 201, None)
    _error(await world.ra.request("POST", req.target, req.body), 413, "too_large")
    assert inspector.counts() == before


async def test_unknown_routes_and_methods(world: World, inspector: Inspector) -> None:
    before = inspector.counts()
    for path in ("/v1/nope", "/api/nope", "/v1/conversations", "/v1/devices/x/y/z", "/v2/devices"):
        resp = await world.ra.request("GET", path)
        if path.startswith("/v2"):
            assert resp.status_code == 404  # outside the API: not JSON
        else:
            _error(resp, 404, "not_found")
    _error(await world.ra.request("PUT", "/v1/devices"), 405, "method_not_allowed")
    _error(await world.ra.request("DELETE", f"/v1/conversations/{world.conv.as_hex()}/messages"), 405, "method_not_allowed")
    assert inspector.counts() == before


async def test_api_prefix_alias(world: World) -> None:
    """/api/... is the same API; the signature covers the prefix actually used."""
    target = f"/api/conversations/{world.conv.as_hex()}/messages?after=0&limit=5"
    resp = await world.ra.request("GET", target)
    assert resp.status_code == 200
    page = wire.decode_page(resp.content, 5)
    assert [e.seq for e in page.envelopes] == [1] and page.more is False
    h = world.ra.headers("GET", target)
    resp = await world.ra.client.get(target.replace("/api/", "/v1/"), headers=h)
    _error(resp, 401, "unauthorized")


async def test_health_names_the_database(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.get(server.url + "/api/health")
    assert resp.json()["db"] == ("postgres" if server.db and server.db.startswith("postgresql") else "sqlite")


async def test_no_answer_is_ambiguous() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    dev = LocalDevice.generate(Identity.generate().user_id, "d", 1)
    t = HttpTransport(f"http://127.0.0.1:{port}", dev.signing_secret, timeout=2)
    try:
        with pytest.raises(TransportError) as err:
            await t.fetch_welcomes()
        assert err.value.status is None and err.value.code == "network" and not err.value.is_definite_rejection
    finally:
        await t.aclose()


async def test_timeout_is_ambiguous(world: World) -> None:
    t = HttpTransport.for_device(world.url, world.a, timeout=0.2)
    try:
        # A long poll the server holds for 5 s, while the request is given 0.3 s in all.
        req = wire.fetch_request(world.conv, SyncCursor(1), 10, 5000)
        with pytest.raises(TransportError) as err:
            await t._request(req, extra_timeout=0.1)
        assert err.value.status is None and err.value.code == "timeout" and not err.value.is_definite_rejection
    finally:
        await t.aclose()


@pytest.fixture(scope="module")
def limited_server(server_logs: Any) -> Any:
    server = ServerProcess(None, "--rate-limit", "2", "--rate-burst", "3", log_dir=server_logs)
    yield server
    server.stop()


async def test_rate_limit(limited_server: ServerProcess) -> None:
    alice = Identity.generate()
    dev = LocalDevice.generate(alice.user_id, "a", 1)
    strict = HttpTransport.for_device(limited_server.url, dev, rate_limit_retries=0)
    patient = HttpTransport.for_device(limited_server.url, dev, max_retry_wait=1.5)
    other = LocalDevice.generate(alice.user_id, "b", 1)
    t_other = HttpTransport.for_device(limited_server.url, other, rate_limit_retries=0)
    try:
        await strict.register_device(dev.info(1), alice.device_binding(dev.device_id))  # 1 of the burst of 3
        await strict.fetch_welcomes()
        await strict.fetch_welcomes()
        with pytest.raises(TransportError) as err:
            await strict.fetch_welcomes()
        assert (err.value.status, err.value.code, err.value.is_definite_rejection) == (429, "rate_limited", True)
        # The limit is per device: another device is unaffected.
        await t_other.register_device(other.info(1), alice.device_binding(other.device_id))
        # A transport that waits for Retry-After gets through.
        assert await patient.fetch_welcomes() == []
        raw = Raw(limited_server.url, dev)
        try:
            for _ in range(3):
                resp = await raw.request("GET", "/v1/welcomes?after=0")
            _error(resp, 429, "rate_limited")
            assert int(resp.headers["retry-after"]) >= 1
        finally:
            await raw.aclose()
    finally:
        for t in (strict, patient, t_other):
            await t.aclose()


async def test_address_limit_on_unauthenticated_requests(server_logs: Any) -> None:
    """Requests that fail before they are authenticated (whatever their status), and registrations
    of new devices, spend the client address's budget (burst 3, then 1/s here); while it is spent,
    such requests get 429 and new devices cannot register. A request with a good signature of a
    registered device never spends it and is never refused by it."""
    server = ServerProcess(None, "--rate-limit", "0", "--address-rate-limit", "1", "--address-rate-burst", "3", log_dir=server_logs)
    alice = Identity.generate()
    devs = [LocalDevice.generate(alice.user_id, f"d{i}", 1) for i in range(3)]
    ts = [HttpTransport.for_device(server.url, d, rate_limit_retries=0) for d in devs]
    raw = Raw(server.url, devs[0])
    try:
        await ts[0].register_device(devs[0].info(1), alice.device_binding(devs[0].device_id))  # new: 1 of 3
        for _ in range(30):  # authenticated requests: free
            assert await ts[0].fetch_welcomes() == []
        await ts[0].register_device(devs[0].info(2), alice.device_binding(devs[0].device_id))  # known device: free
        target = "/v1/welcomes?after=0"
        bad = dict(raw.headers("GET", target), **{wire.HEADER_SIGNATURE: "00" * 64})
        _error(await raw.request("GET", target, headers=bad), 401, "unauthorized")  # 2 of 3
        unregistered = Raw(server.url, devs[2])
        try:
            _error(await unregistered.request("GET", target), 401, "unauthorized")  # 3 of 3
            resp = await unregistered.request("GET", target)
            _error(resp, 429, "rate_limited")
            assert int(resp.headers["retry-after"]) >= 1
            _error(await raw.request("GET", target, headers=bad), 429, "rate_limited")
        finally:
            await unregistered.aclose()
        # A good signature of a registered device goes through, on the API and when re-registering.
        assert (await raw.request("GET", target)).status_code == 200
        assert await ts[0].fetch_welcomes() == []
        await ts[0].register_device(devs[0].info(3), alice.device_binding(devs[0].device_id))
        # Its own failures (here a 400) are its own: they do not spend the address's budget either.
        _error(await raw.request("POST", "/v1/welcomes/ack", b"\x82\x01"), 400, "invalid_request")
        # A new device's registration is the unauthenticated way in: refused while the budget is spent.
        with pytest.raises(TransportError) as err:
            await ts[1].register_device(devs[1].info(1), alice.device_binding(devs[1].device_id))
        assert (err.value.status, err.value.code) == (429, "rate_limited")
        await asyncio.sleep(1.1)  # one token back
        await ts[1].register_device(devs[1].info(1), alice.device_binding(devs[1].device_id))
        with pytest.raises(TransportError) as err:
            await ts[2].register_device(devs[2].info(1), alice.device_binding(devs[2].device_id))
        assert err.value.status == 429
        assert [d.label for d in await ts[0].list_devices(alice.user_id)] == ["d0", "d1"]
    finally:
        await raw.aclose()
        for t in ts:
            await t.aclose()
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_shutdown_answers_open_long_polls_and_is_quiet(server_logs: Any, sig: signal.Signals) -> None:
    """Ctrl-C (or SIGTERM) with a long poll and a watch open: they answer at once (nothing new), the
    server exits well within its graceful shutdown time, and its log has no error."""
    server = ServerProcess(None, "--rate-limit", "0", log_dir=server_logs)
    world = await World(server.url).setup()
    try:
        poll = asyncio.create_task(world.ta.fetch_since(world.conv, SyncCursor(1), 10, wait_ms=30_000))
        watch = asyncio.create_task(world.te.watch({}, wait_ms=30_000))
        await asyncio.sleep(0.5)
        assert not poll.done() and not watch.done()
        start = time.monotonic()
        server.proc.send_signal(sig)
        assert await poll == []
        assert await watch == WatchResult()
        status = await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 20)
        assert time.monotonic() - start < 2.5  # not held for the 3 s graceful shutdown time
        assert status == (130 if sig == signal.SIGINT else -signal.SIGTERM)
        log = server.log_path.read_text(errors="replace")
        assert "Traceback" not in log and "ERROR" not in log, log
    finally:
        server.stop()
        await world.aclose()


async def test_watch_route_refuses_malformed_bodies(world: World) -> None:
    """``POST /v1/watch`` bodies the transport cannot produce: each refused 400 (too many: 413)."""
    target = "/v1/watch"
    c = world.conv.value

    async def post(value: Any) -> httpx.Response:
        body = dumps(value)
        return await world.ra.request("POST", target, body, headers={**world.ra.headers("POST", target, body), "content-type": "application/cbor"})

    for bad in (
        {"v": 1, "positions": [[c, 0], [c, 1]], "wait_ms": 0},  # a conversation twice
        {"v": 1, "positions": [[c[:15], 0]], "wait_ms": 0},  # not a conversation id
        {"v": 1, "positions": [[c, 0, 0]], "wait_ms": 0},
        {"v": 1, "positions": [[c, 0]]},  # no wait_ms
        {"v": 1, "positions": [[c, 0]], "wait_ms": 0, "extra": 1},
        {"v": 2, "positions": [], "wait_ms": 0},
    ):
        _error(await post(bad), 400, "invalid_request")
    many = [[i.to_bytes(16, "big"), 0] for i in range(1, 1002)]
    _error(await post({"v": 1, "positions": many, "wait_ms": 0}), 413, "too_large")
    ok = await post({"v": 1, "positions": [[c, 0]], "wait_ms": 0})
    assert ok.status_code == 200 and wire.decode_watch_result(ok.content, {world.conv: 0}).heads == {world.conv: 1}
    _error(await world.ra.request("POST", target + "?x=1", b""), 400, "invalid_request")


async def test_revocation_routes_refuse_and_store_nothing(world: World, inspector: Inspector) -> None:
    """``DELETE /devices/{id}`` (a revocation without the account's statement, what clients did
    before) is refused 403; ``POST /devices/{id}/revoke`` refuses a malformed body or a statement
    for another device (400), a forged one (403); none stores anything (no statement kept, the
    device not revoked)."""
    laptop = LocalDevice.generate(world.alice.user_id, "laptop", 1)
    tl = HttpTransport.for_device(world.url, laptop)
    try:
        await tl.register_device(laptop.info(1), world.alice.device_binding(laptop.device_id))
        before = inspector.counts()
        laptop_hex = laptop.device_id.as_hex()
        match = f"device_id = X'{laptop_hex}'" if not inspector.db.startswith("postgresql://") else f"device_id = '\\x{laptop_hex}'::bytea"
        kept = f"SELECT COUNT(*) FROM devices WHERE (revoked = 1 OR revocation IS NOT NULL) AND {match}"
        _error(await world.ra.request("DELETE", f"/v1/devices/{laptop.device_id.as_hex()}"), 403, "forbidden")
        target = f"/v1/devices/{laptop.device_id.as_hex()}/revoke"
        good = world.alice.revoke(laptop.device_id)
        for body in (b"", b"\x82\x01", dumps({"v": 1}), dumps({"v": 1, "revocation": {"v": 1}}),
                     dumps({"v": 1, "revocation": dumps(good.encode())}),
                     wire.revoke_request(laptop.device_id, world.alice.revoke(world.a.device_id)).body):  # fmt: skip
            _error(await world.ra.request("POST", target, body), 400, "invalid_request")
        forged = wire.revoke_request(laptop.device_id, type(good)(good.user_id, good.user_public_key, good.device_id, bytes(64)))
        _error(await world.ra.request("POST", forged.target, forged.body), 403, "forbidden")
        _error(await world.re.request("POST", target, wire.revoke_request(laptop.device_id, good).body), 403, "forbidden")
        _error(await world.ra.request("POST", target + "?x=1", wire.revoke_request(laptop.device_id, good).body), 400, "invalid_request")
        assert inspector.counts() == before and inspector.scalar(kept) == 0
        assert await tl.key_package_count() is not None  # still a working device
        ok = wire.revoke_request(laptop.device_id, good)
        assert (await world.ra.request("POST", ok.target, ok.body)).status_code == 204
        assert inspector.scalar(kept) == 1
        with pytest.raises(TransportError) as err:
            await tl.key_package_count()
        assert (err.value.status, err.value.code) == (403, "device_revoked")
    finally:
        await tl.aclose()


async def test_publish_record_with_and_without_replace(world: World, inspector: Inspector) -> None:
    """The publish record of clients before ``replace`` (no such key) is accepted as before; an
    explicit ``"replace": false`` too; ``"replace"`` that is not a bool, or an unknown key: 400."""
    target = "/v1/key-packages"
    old = dumps({"v": 1, "key_packages": [b"k1"], "last_resort": None})
    assert (await world.ra.request("POST", target, old)).status_code == 204
    explicit = dumps({"v": 1, "key_packages": [b"k2"], "last_resort": None, "replace": False})
    assert (await world.ra.request("POST", target, explicit)).status_code == 204
    assert (await world.ta.key_package_count()).unclaimed == 2
    before = inspector.counts()
    for body in (dumps({"v": 1, "key_packages": [b"k3"], "last_resort": None, "replace": 1}),
                 dumps({"v": 1, "key_packages": [b"k3"], "last_resort": None, "replace": True, "more": 1})):  # fmt: skip
        _error(await world.ra.request("POST", target, body), 400, "invalid_request")
    assert inspector.counts() == before
    replacing = wire.publish_request([b"k4"], None, True)
    assert replacing.body == dumps({"v": 1, "key_packages": [b"k4"], "last_resort": None, "replace": True})
    assert wire.publish_request([b"k4"], None).body == dumps({"v": 1, "key_packages": [b"k4"], "last_resort": None})
    assert (await world.ra.request("POST", target, replacing.body)).status_code == 204
    assert (await world.ta.key_package_count()).unclaimed == 1
