"""``TamperProxy``: fault injection (a fake, the only one of tests/browser/test_fork_healed.py).

An HTTP proxy on 127.0.0.1 in front of a real ping_server: a browser context that loads its
pages from the proxy's origin reaches the server only through it (pages, scripts, API calls),
and sees what the server answers, except for one thing once the proxy is armed with a
conversation (:meth:`TamperProxy.spoil_next_commit`): the first Commit envelope of that
conversation in an answer to ``GET .../conversations/{id}/messages`` (``fetch_since``) gets
the lowest bit of its payload's last byte flipped, and so does that same envelope (by log
position) in every later answer, as a man-in-the-middle or a compromised server on that
client's path would do. Requests reach the server unchanged; nothing else is rewritten.
"""

from __future__ import annotations

import dataclasses
import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from ping_core.message import MessageKind
from ping_core.transport.wire import decode_page, encode_page

__all__ = ["TamperProxy"]

# ``fetch_since`` under either API prefix of ping_server (``/api`` and ``/v1``).
_FETCH = re.compile(r"^/(?:api|v1)/conversations/([0-9a-f]+)/messages(?:\?|$)")
# Headers that describe one hop (RFC 9110 §7.6.1), not the message: never passed on.
_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
_MAX_ITEMS = 1 << 16


class TamperProxy:
    """A loopback HTTP proxy to ``upstream`` (``http://host:port``), serving from :attr:`url`.
    A context manager: listening on entry, stopped on exit."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.scheme == "http" and parts.hostname and parts.port, upstream
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._armed: str | None = None
        self._target: tuple[str, int] | None = None
        #: ``(conversation hex, seq)`` of every envelope this proxy spoiled, once per answer.
        self.spoiled: list[tuple[str, int]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="tamper-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def spoil_next_commit(self, conv: str) -> None:
        """Spoil the first Commit of ``conv`` (hex id) that an answer carries from now on, then
        that envelope in every answer that carries it again."""
        with self._lock:
            self._armed, self._target = conv, None

    def spoil(self, path: str, body: bytes) -> bytes:
        """``body`` as the proxy passes it on for a GET of ``path``."""
        hit = _FETCH.match(path)
        with self._lock:
            conv = self._armed
            if hit is None or conv is None or conv != hit.group(1):
                return body
            page = decode_page(body, _MAX_ITEMS)
            out = []
            for env in page.envelopes:
                if self._target is None and env.kind is MessageKind.COMMIT:
                    self._target = (conv, env.seq)
                if self._target == (conv, env.seq):
                    env = dataclasses.replace(env, payload=env.payload[:-1] + bytes([env.payload[-1] ^ 1]))
                    self.spoiled.append(self._target)
                out.append(env.encode())
            return encode_page(out, page.more)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"accept-encoding"}}
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=300)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    resp = upstream.getresponse()
                    data = resp.read()
                    if self.command == "GET" and resp.status == 200:
                        data = proxy.spoil(self.path, data)
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP | {"content-length"}:
                            self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass  # the server logs what matters

        return Handler

    def __enter__(self) -> TamperProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
