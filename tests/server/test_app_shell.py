"""ping_server's shell: static client files, health, JSON errors under the API prefixes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from ping_server.app import ApiError, create_app
from ping_server.asgi import PingApp, Reply, Request, Router


class TestClient:
    """Requests to an ASGI app in-process through httpx's ASGITransport (one event loop per call)."""

    __test__ = False  # not a test class

    def __init__(self, app: Any) -> None:
        self._app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                response = await client.request(method, path, **kwargs)
                await response.aread()
                return response

        return asyncio.run(go())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<!doctype html><p id=boot-status>starting</p>")
    (tmp_path / "worker.mjs").write_text("export {};")
    (tmp_path / "pyodide").mkdir()
    (tmp_path / "pyodide" / "pyodide.asm.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "pyodide" / "pyodide-lock.json").write_text("{}")
    return tmp_path


def test_health(dist: Path) -> None:
    client = TestClient(create_app(dist=dist))
    for prefix in ("/api", "/v1"):
        resp = client.get(prefix + "/health")
        assert resp.status_code == 200
        assert resp.json() == {"status": "ok", "version": "0.1.0", "client": True, "db": "memory"}


def test_db_kind() -> None:
    assert TestClient(create_app(dist="/nonexistent", db="x.sqlite")).get("/api/health").json()["db"] == "sqlite"


@pytest.mark.parametrize("path", ["/api/nope", "/api/", "/api", "/v1/groups/1/messages", "/api/health/extra"])
def test_unknown_api_routes_are_json_404(dist: Path, path: str) -> None:
    resp = TestClient(create_app(dist=dist)).get(path)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["code"] == "not_found" and isinstance(body["message"], str)


def test_wrong_method_is_json_405(dist: Path) -> None:
    resp = TestClient(create_app(dist=dist)).post("/api/health")
    assert resp.status_code == 405
    assert resp.json()["code"] == "method_not_allowed"


def test_static_files_and_mime_types(dist: Path) -> None:
    client = TestClient(create_app(dist=dist))
    index = client.get("/")
    assert index.status_code == 200 and "boot-status" in index.text
    assert index.headers["content-type"].startswith("text/html")
    worker = client.get("/worker.mjs")
    assert worker.headers["content-type"] == "text/javascript"
    assert worker.headers["cache-control"] == "no-cache"
    wasm = client.get("/pyodide/pyodide.asm.wasm")
    assert wasm.headers["content-type"] == "application/wasm" and wasm.content.startswith(b"\0asm")
    assert client.get("/pyodide/pyodide-lock.json").headers["content-type"] == "application/json"
    # Revalidation: the ETag gives a 304.
    again = client.get("/worker.mjs", headers={"if-none-match": worker.headers["etag"]})
    assert again.status_code == 304
    # Outside the API, a missing file is a plain 404, not the API's JSON.
    missing = client.get("/nope.js")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/plain")


def test_api_only_without_dist(tmp_path: Path) -> None:
    client = TestClient(create_app(dist=tmp_path / "missing"))
    assert client.get("/api/health").json()["client"] is False
    assert client.get("/").status_code == 404


def test_extra_api_routes_and_api_errors(dist: Path) -> None:
    async def conflict(request):  # type: ignore[no-untyped-def]
        raise ApiError(409, "epoch_advanced", "the group is at epoch 4")

    async def echo(request):  # type: ignore[no-untyped-def]
        from starlette.responses import JSONResponse

        return JSONResponse({"n": request.path_params["n"]})

    app = create_app(dist=dist, api_routes=[Route("/conflict", conflict), Route("/echo/{n:int}", echo)])
    client = TestClient(app)
    resp = client.get("/v1/conflict")
    assert resp.status_code == 409
    assert resp.json() == {"code": "epoch_advanced", "message": "the group is at epoch 4"}
    assert client.get("/api/echo/5").json() == {"n": 5}
    assert client.get("/api/echo/x").json()["code"] == "not_found"


async def test_a_cancelled_api_request_answers_503_not_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn cancels requests still running when its graceful shutdown time is over: the
    answer is 503 ``shutting_down`` (a 5xx: the client cannot rule out that it was applied)."""
    started = asyncio.Event()

    async def stuck(request: Request) -> Reply:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    router = Router()
    router.add("GET", "/stuck", stuck)
    app = PingApp(router, create_app(dist="/nonexistent"), None)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/v1/stuck", "headers": [], "query_string": b""}
    task = asyncio.create_task(app(scope, receive, send))
    await started.wait()
    task.cancel()
    await task  # the app returns: nothing for the server to log
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 503
    assert json.loads(sent[1]["body"]) == {"code": "shutting_down", "message": "the server is shutting down"}
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
