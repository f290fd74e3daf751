"""Security headers of a real ``ping_server`` process (attack review item 7): every answer of the
web client's pages and files carries a strict Content-Security-Policy, ``nosniff``,
``Referrer-Policy: no-referrer`` and ``X-Frame-Options: DENY``; API answers carry ``nosniff``.
The page itself has nothing inline that the policy would block."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from .support import Server

REPO = Path(__file__).resolve().parents[2]

REQUIRED = {
    "default-src": {"'self'"},
    "script-src": {"'self'", "'wasm-unsafe-eval'"},
    "worker-src": {"'self'"},
    "connect-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "style-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'none'"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'none'"},
}


def _policy(header: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for directive in header.split(";"):
        name, *sources = directive.split()
        out[name] = set(sources)
    return out


@pytest.fixture
def web_server(server_factory: Callable[..., Server], tmp_path: Path) -> Server:
    """A server with a (small) web client in --dist: the repository's static page and files."""
    dist = tmp_path / "dist"
    (dist / "pyodide").mkdir(parents=True)
    for name in ("index.html", "app.mjs", "app.css", "ping.js", "worker.mjs", "sw.mjs"):
        (dist / name).write_bytes((REPO / "static" / name).read_bytes())
    (dist / "pyodide" / "pyodide.asm.wasm").write_bytes(b"\0asm\1\0\0\0")
    return server_factory("--dist", str(dist))


def test_pages_and_files_carry_the_security_headers(web_server: Server) -> None:
    with httpx.Client(base_url=web_server.url) as client:
        for path in ("/", "/index.html", "/app.mjs", "/app.css", "/worker.mjs", "/sw.mjs", "/pyodide/pyodide.asm.wasm", "/missing.js"):
            resp = client.get(path)
            assert resp.status_code == (404 if path == "/missing.js" else 200), path
            policy = _policy(resp.headers["content-security-policy"])
            assert policy == REQUIRED, (path, policy)
            assert not any(s in ("'unsafe-inline'", "'unsafe-eval'") for sources in policy.values() for s in sources)
            assert resp.headers["x-content-type-options"] == "nosniff", path
            assert resp.headers["referrer-policy"] == "no-referrer", path
            assert resp.headers["x-frame-options"] == "DENY", path


def test_api_answers_carry_nosniff(web_server: Server) -> None:
    with httpx.Client(base_url=web_server.url) as client:
        for method, path in (("GET", "/api/health"), ("GET", "/v1/welcomes?after=0"), ("GET", "/v1/nope"), ("PUT", "/v1/devices")):
            resp = client.request(method, path)
            assert resp.headers["x-content-type-options"] == "nosniff", (method, path, resp.status_code)
            assert "content-security-policy" not in resp.headers  # an API answer is no page


class _Inline(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block: inline scripts, style elements
    and attributes, event-handler attributes, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name == "style" or name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=...>")


def test_the_page_needs_nothing_inline() -> None:
    parser = _Inline()
    parser.feed((REPO / "static" / "index.html").read_text())
    assert parser.found == []
    for module in ("app.mjs", "ping.js", "worker.mjs", "sw.mjs", "pyboot.mjs"):
        source = (REPO / "static" / module).read_text()
        assert not re.search(r"\beval\s*\(|new\s+Function\s*\(|\.innerHTML\s*=|setAttribute\(\s*['\"]style", source), module
