"""Playwright in Chromium against a running ping_server.

Chromium: Debian's package (``apt-get install -y chromium``); another Chrome
or Chromium is used when ``PING_CHROMIUM`` names its executable. Playwright's
own browser downloads are not needed.

``server_url``: ``python build.py`` then ``python -m ping_server`` on a free
loopback port for the whole session. ``ping_page``: a page of that server
whose worker (with the dev.* RPC methods) has reached ``ready``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pingpage import PAGE_HELPERS, wait_ready

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container: no sandbox; no GPU; and no background connections
# (this machine's network refuses them, and they slow the start).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last.

    Playwright's sync API keeps an asyncio loop running in the main thread
    from the first browser test to the end of the session; any asyncio.run()
    or pytest-asyncio test after it would fail with "cannot be called from a
    running event loop".
    """
    here = Path(__file__).resolve().parent
    items.sort(key=lambda item: here in Path(str(item.path)).resolve().parents)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium, or set PING_CHROMIUM")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    sys.path.insert(0, str(ROOT))
    try:
        import build
    finally:
        sys.path.pop(0)
    build.build()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ping_server", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--push-allow-http-loopback"],  # tests/browser/test_push_wake.py: the FakePushService is http://127.0.0.1
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/api/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ping_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def ping_page(page, server_url: str):  # type: ignore[no-untyped-def]
    page.goto(server_url + "/?dev=1")
    wait_ready(page)
    page.evaluate(PAGE_HELPERS)
    return page
