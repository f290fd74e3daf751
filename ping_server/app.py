"""The ping_server ASGI app: the built web client (dist/) and the JSON API.

:func:`create_app` is the one factory. Its layout:

- ``/api/...`` (and ``/v1/...``): JSON API routes. ``GET /api/health`` is here
  from the start; the delivery service adds its routes by passing them in
  ``api_routes`` (see :func:`create_app`), defined in modules of their own.
- every error under an API prefix is JSON ``{"code": str, "message": str}``
  (unknown route: 404 ``not_found``; wrong method: 405 ``method_not_allowed``;
  an unexpected failure: 500 ``server_error``);
  handlers raise :class:`ApiError` to answer with any status and code.
- everything else: the static files of dist/ (``python build.py`` makes it),
  with the right MIME types for ``.mjs`` and ``.wasm`` and ``Cache-Control:
  no-cache`` so a rebuilt client is picked up (ETag revalidation keeps it cheap).
- security headers (:class:`SecurityHeaders`): every answer of the web client's
  pages and files carries :data:`PAGE_HEADERS` (a Content-Security-Policy that
  allows the app's own scripts, WebAssembly compilation for Pyodide, its own
  workers and its own origin's API, nothing inline and no framing;
  ``nosniff``; no referrer); API answers carry ``nosniff``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send

__all__ = [
    "create_app", "ApiError", "error_response", "API_PREFIXES", "DEFAULT_DIST", "VERSION",
    "CONTENT_SECURITY_POLICY", "PAGE_HEADERS", "API_HEADERS", "SecurityHeaders",
]  # fmt: skip

VERSION = "0.1.0"
DEFAULT_DIST = Path(__file__).resolve().parent.parent / "dist"
API_PREFIXES = ("/api", "/v1")

# Explicit, whatever /etc/mime.types says: module workers refuse a script
# served as anything but JavaScript, and streaming compilation wants application/wasm.
MEDIA_TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
}

# What the web client needs and no more: its own scripts and module workers (page, worker,
# service worker), WebAssembly compilation for Pyodide ('wasm-unsafe-eval', not 'unsafe-eval':
# Pyodide 0.22+ runs without JS eval), fetch to its own origin (the API, Pyodide's files and the
# wheels), its stylesheet, the data: favicon. No inline script or style, no plugins, no <base>,
# forms only to itself, never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
API_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeaders:
    """ASGI middleware: :data:`PAGE_HEADERS` on every answer outside the API prefixes,
    :data:`API_HEADERS` on the API's (a header the app set itself is kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = API_HEADERS if _is_api(scope["path"]) else PAGE_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in extra if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    408: "request_timeout",
}


class ApiError(Exception):
    """Raise in an API handler to answer ``status`` with ``{"code", "message"}`` (and ``headers``)."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The API's error body: ``{"code": ..., "message": ...}``."""
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


class DistFiles(StaticFiles):
    """dist/ with fixed MIME types and revalidation on every load."""

    def file_response(
        self, full_path: Any, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = MEDIA_TYPES.get(Path(str(full_path)).suffix)
        if media_type is not None and isinstance(response, FileResponse):
            response.media_type = media_type
            response.headers["content-type"] = media_type
        response.headers["cache-control"] = "no-cache"
        return response


def _is_api(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not _is_api(request.url.path):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    code = _STATUS_CODES.get(exc.status_code, "error")
    if exc.status_code == 404:
        message = f"no API route {request.method} {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # A bug or an unexpected failure: never echo the exception (it may carry data).
    if not _is_api(request.url.path):
        return PlainTextResponse("Internal Server Error", status_code=500)
    return error_response(500, "server_error", "internal server error")


async def health(request: Request) -> JSONResponse:
    """``GET /api/health``: the server is up; names what it serves."""
    app: Starlette = request.app
    return JSONResponse(
        {
            "status": "ok",
            "version": VERSION,
            "client": app.state.dist_ready,
            "db": app.state.db_kind,
        }
    )


def create_app(
    *,
    dist: Path | str | None = None,
    db: str | None = None,
    api_routes: Sequence[BaseRoute] = (),
    state: dict[str, Any] | None = None,
    lifespan: Lifespan[Starlette] | None = None,
) -> Starlette:
    """The server app.

    ``dist``: the built client (default: the repository's dist/); served at
    ``/`` when it exists. ``db``: the database path or URL, kept on
    ``app.state.db`` for the delivery service (None: in memory).
    ``api_routes``: more routes, mounted under every prefix of
    ``API_PREFIXES`` (write them relative to it, e.g. ``Route("/groups", ...)``).
    ``state``: extra values for ``app.state`` (storage backends, clocks...).
    ``lifespan``: Starlette's startup/shutdown context (opens and closes the database).
    """
    dist_path = Path(dist) if dist is not None else DEFAULT_DIST
    api = Router(routes=[Route("/health", health, methods=["GET"]), *api_routes])
    routes: list[BaseRoute] = [Mount(prefix, app=api) for prefix in API_PREFIXES]
    dist_ready = (dist_path / "index.html").is_file()
    if dist_ready:
        routes.append(Mount("/", app=DistFiles(directory=dist_path, html=True), name="client"))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: _http_error, ApiError: _api_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.dist = dist_path
    app.state.dist_ready = dist_ready
    app.state.db = db
    app.state.db_kind = "memory" if db is None else ("postgres" if db.startswith("postgres") else "sqlite")
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    return app
