"""FakePushService: a local stand-in for a browser vendor's push service (RFC 8030), for tests.

The only fake of the push tests. It is a small HTTP server on 127.0.0.1 that accepts the push
POSTs ping_server sends to a subscription's endpoint (``http://127.0.0.1:<port>/push/<name>``,
which ping_server accepts only with ``--push-allow-http-loopback``), records them, and answers
201 (RFC 8030 §5) or whatever status a test set for an endpoint (410 to say "gone").

:class:`FakeSubscriber` is the user agent's side of a subscription: its P-256 key pair and auth
secret (RFC 8291 §3), made by the test, with :meth:`FakeSubscriber.decrypt` to open a push
exactly as the browser would. :func:`vapid_claims` checks a push's ``Authorization: vapid``
header (RFC 8292 §3) against the server's public key.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02  # type: ignore[import-untyped]

__all__ = ["FakePushService", "FakeSubscriber", "ReceivedPush", "vapid_claims", "b64url"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ReceivedPush:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


@dataclass
class FakeSubscriber:
    """A subscription's keys as a browser holds them, for the endpoint ``endpoint``."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)

    def as_json(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives a page."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64url(self.p256dh), "auth": b64url(self.auth)}}

    def decrypt(self, push: ReceivedPush) -> bytes:
        """Open an RFC 8291 ``aes128gcm`` push (the sender's key is the header's keyid)."""
        assert push.headers.get("content-encoding") == "aes128gcm"
        out: bytes = http_ece.decrypt(push.body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm")
        return out


def vapid_claims(push: ReceivedPush, server_key: bytes) -> dict[str, Any]:
    """The JWT claims of a push's VAPID ``Authorization`` header, after checking that its ``k`` is
    ``server_key`` and its ES256 signature verifies (AssertionError otherwise)."""
    header = push.headers["authorization"]
    scheme, _, params = header.partition(" ")
    assert scheme == "vapid", header[:16]
    parts = dict(p.split("=", 1) for p in params.split(","))
    assert _unb64url(parts["k"]) == server_key
    assert Vapid02.verify(header), "VAPID signature does not verify"
    payload = parts["t"].split(".")[1]
    claims: dict[str, Any] = json.loads(_unb64url(payload))
    return claims


class FakePushService:
    """The fake push service; ``with FakePushService() as push: push.endpoint("a")``."""

    def __init__(self) -> None:
        self.received: list[ReceivedPush] = []
        self.status: dict[str, int] = {}  # path -> status to answer (default 201)
        self.before_answer: dict[str, Callable[[], None]] = {}  # path -> called before its answer (to hold one)
        self._cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                size = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(min(size, 8192))
                push = ReceivedPush(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                hook = fake.before_answer.get(self.path)
                if hook is not None:
                    hook()
                status = fake.status.get(self.path, 201)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                with fake._cond:
                    fake.received.append(push)
                    fake._cond.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-push", daemon=True)
        self._thread.start()

    def endpoint(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/push/{name}"

    def subscriber(self, name: str) -> FakeSubscriber:
        return FakeSubscriber(self.endpoint(name))

    def pushes(self, name: str) -> list[ReceivedPush]:
        with self._cond:
            return [p for p in self.received if p.path == f"/push/{name}"]

    def wait_for(self, name: str, count: int = 1, timeout: float = 15.0) -> list[ReceivedPush]:
        """The pushes to ``name`` once there are at least ``count`` (AssertionError at ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [p for p in self.received if p.path == f"/push/{name}"]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                assert left > 0, f"{len(got)} pushes to {name}, expected {count}"
                self._cond.wait(left)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakePushService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
