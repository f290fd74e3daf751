"""The API's own thin ASGI layer: a route table, a request view and a reply, no web framework.

The delivery service's routes are the server's hot path (every message is one
POST and, for each reader, part of one GET). Starlette's routing, ``Request``
/ ``Response`` objects and middleware stack cost about as much CPU per request
as the service's own work, so :class:`PingApp` answers the API routes itself
and hands everything else (``/api/health``, unknown API routes, the web client's
static files, the lifespan) to the Starlette app of :func:`ping_server.app.create_app`.

* :class:`Router`: routes written relative to the API prefixes
  (``"/conversations/{cid}/messages"``), matched segment by segment on the
  decoded path; a route whose path matches but not its method answers 405.
* :class:`Request`: the method, the request target as sent (what the client
  signed), path parameters, headers (first occurrence wins), the client's
  address and the body, read under a size limit (413 ``too_large``).
* :class:`Reply`: status, body, media type and extra headers.

Errors are the API's JSON ``{"code", "message"}``: a handler raises
:class:`~ping_server.app.ApiError`; anything else is logged and answered 500
``server_error`` without echoing the exception. A request the server cancels
(its graceful shutdown time is over) is answered 503 ``shutting_down``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .app import API_HEADERS, API_PREFIXES, ApiError

__all__ = ["Request", "Reply", "Router", "PingApp", "ClientGone", "json_error"]

log = logging.getLogger("ping_server")

Handler = Callable[["Request"], Awaitable["Reply"]]

_CLOSE = {"connection": "close"}


class ClientGone(Exception):
    """The client disconnected before its request body arrived (nothing to answer)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: ``status``, ``body`` (``b""`` for none), its media type and extra headers."""

    status: int
    body: bytes = b""
    media_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def json_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """The API's error answer: JSON ``{"code": ..., "message": ...}`` (as Starlette's JSONResponse writes it)."""
    body = json.dumps({"code": code, "message": message}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Reply(status, body, "application/json", tuple((headers or {}).items()))


class Request:
    """One API request (a view of the ASGI scope; the body is read once with :meth:`body`)."""

    __slots__ = ("scope", "method", "params", "_receive", "_headers")

    def __init__(self, scope: Scope, receive: Receive, params: tuple[str, ...]) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.params = params  # the path's parameter segments, in order
        self._receive = receive
        self._headers: dict[str, str] | None = None

    @property
    def target(self) -> str:
        """The request target as the client sent (and signed) it: raw path, plus ``?query`` when there is one."""
        raw: bytes = self.scope.get("raw_path") or self.scope["path"].encode("utf-8")
        query: bytes = self.scope.get("query_string") or b""
        return raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")

    @property
    def query_string(self) -> str:
        return (self.scope.get("query_string") or b"").decode("latin-1")

    @property
    def client_host(self) -> str:
        """The peer's address ("" when the server does not know it)."""
        client = self.scope.get("client")
        return str(client[0]) if client else ""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), or None."""
        headers = self._headers
        if headers is None:
            headers = {}
            for key, value in self.scope["headers"]:
                k = key.decode("latin-1")
                if k not in headers:
                    headers[k] = value.decode("latin-1")
            self._headers = headers
        return headers.get(name)

    async def body(self, limit: int, timeout: float | None = None) -> bytes:
        """The whole body; 413 ``too_large`` over ``limit`` bytes (before reading when
        ``Content-Length`` says so), 400 for a malformed ``Content-Length``, 408
        ``request_timeout`` when it has not arrived whole within ``timeout`` seconds. A 408 or
        413 answer closes the connection (the rest of the body is never read)."""
        length = self.header("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "invalid_request", "malformed content-length", _CLOSE)
            if int(length) > limit:
                raise ApiError(413, "too_large", f"body of {length} bytes exceeds {limit}", _CLOSE)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await self._receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone()
                    chunk: bytes = message.get("body", b"")
                    if chunk:
                        size += len(chunk)
                        if size > limit:
                            raise ApiError(413, "too_large", f"body exceeds {limit} bytes", _CLOSE)
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise ApiError(408, "request_timeout", f"the request body did not arrive within {timeout} s", _CLOSE) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_Pattern = tuple["str | None", ...]  # literal segments, None for a parameter


class Router:
    """Routes relative to the API prefixes: ``add("POST", "/conversations/{cid}/messages", handler)``."""

    def __init__(self, prefixes: Sequence[str] = API_PREFIXES) -> None:
        self._prefixes = tuple(p.rstrip("/") for p in prefixes)
        # By segment count: (pattern, {method: handler}).
        self._routes: dict[int, list[tuple[_Pattern, dict[str, Handler]]]] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        segments = path.strip("/").split("/")
        pattern: _Pattern = tuple(None if s.startswith("{") and s.endswith("}") else s for s in segments)
        bucket = self._routes.setdefault(len(pattern), [])
        for known, methods in bucket:
            if known == pattern:
                methods[method] = handler
                return
        bucket.append((pattern, {method: handler}))

    def match(self, path: str) -> tuple[dict[str, Handler], tuple[str, ...]] | None:
        """The route's handlers by method and the path parameters, or None (not an API route we know)."""
        for prefix in self._prefixes:
            if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] == "/":
                segments = path[len(prefix) + 1 :].split("/")
                break
        else:
            return None
        for pattern, methods in self._routes.get(len(segments), ()):
            params = []
            for want, got in zip(pattern, segments):
                if want is None:
                    if not got:
                        break
                    params.append(got)
                elif want != got:
                    break
            else:
                return methods, tuple(params)
        return None


class PingApp:
    """The server's ASGI app: the API routes of ``router`` here, everything else to ``fallback``.

    ``state`` is the fallback Starlette app's state (what ``python -m ping_server`` reads).
    """

    def __init__(self, router: Router, fallback: ASGIApp, state: Any) -> None:
        self.router = router
        self.fallback = fallback
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self.router.match(scope["path"])
            if found is not None:
                await self._serve(found[0], found[1], scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    @staticmethod
    async def _serve(methods: dict[str, Handler], params: tuple[str, ...], scope: Scope, receive: Receive, send: Send) -> None:
        handler = methods.get(scope["method"])
        try:
            if handler is None:
                allow = ", ".join(sorted(methods))
                reply = json_error(405, "method_not_allowed", "Method Not Allowed", {"allow": allow})
            else:
                reply = await handler(Request(scope, receive, params))
        except ApiError as exc:
            reply = json_error(exc.status, exc.code, exc.message, exc.headers)
        except ClientGone:
            return
        except asyncio.CancelledError:
            # uvicorn cancels a request only when its graceful shutdown time is over. Answer
            # instead of a logged traceback and uvicorn's 500; a 5xx leaves the client unsure
            # whether the request was applied, which is the truth.
            log.info("ping_server: %s %s cancelled by the shutdown", scope["method"], scope["path"])
            reply = json_error(503, "shutting_down", "the server is shutting down")
        except Exception:  # a bug or an unexpected failure: logged here, never echoed (it may carry data)
            log.exception("ping_server: %s %s failed", scope["method"], scope["path"])
            reply = json_error(500, "server_error", "internal server error")
        headers = [(b"content-length", str(len(reply.body)).encode("latin-1"))] if reply.status not in (204, 304) else []
        if reply.media_type is not None:
            headers.append((b"content-type", reply.media_type.encode("latin-1")))
        for name, value in reply.headers:
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        headers.extend(API_HEADERS)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
