"""The module service worker (static/sw.mjs): offline app shell and cold-start sync, in Chromium.

Offline: a page is loaded once (the service worker installs and caches
dist/), then the server process is stopped AND the context is set offline:
a reload must still reach ``ready``, and the account's state (IndexedDB) is
there. Cold start: Bob closes his page; Alice sends; Bob's service worker,
woken with no page open, boots Python, syncs under the account's Web Lock and
stores what it decrypted; Bob's next page shows it without decrypting it
itself (its own sync finds nothing new).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chatui import ROOT, UI_TIMEOUT_MS, ChatUser
from pingpage import wait_ready

CACHE = "ping-shell-v1"


def _wait_controlled(page: Any) -> None:
    """Until the service worker is active, controls the page and has the runtime cached."""
    page.wait_for_function(
        """async () => {
            const reg = await navigator.serviceWorker.getRegistration();
            if (!reg || !reg.active || !navigator.serviceWorker.controller) return false;
            const cache = await caches.open('ping-shell-v1');
            return !!(await cache.match(new URL('pyodide/pyodide.asm.wasm', location.href).href));
        }""",
        timeout=UI_TIMEOUT_MS,
        polling=200,
    )


@pytest.fixture
def own_server() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A server of this test only (so it can be stopped), serving the built client."""
    from ping_server.process import spawn

    proc, url = spawn("--dist", str(ROOT / "dist"))
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_shell_is_served_offline(
    browser: Any, server_url: str, own_server: tuple[subprocess.Popen[bytes], str]
) -> None:
    proc, url = own_server
    context = browser.new_context()
    try:
        user = ChatUser.open(context, url)
        user.create_account("offline-olga")
        conv = user.create_conversation("notes")
        user.send("a note to self")
        _wait_controlled(user.page)
        cached = user.page.evaluate(
            f"caches.open('{CACHE}').then((c) => c.keys()).then((ks) => ks.map((r) => new URL(r.url).pathname))"
        )
        for path in ("/", "/app.mjs", "/worker.mjs", "/ping.js", "/manifest.json", "/pyodide/python_stdlib.zip"):
            assert path in cached, cached

        # No server at all, and the browser offline.
        proc.terminate()
        proc.wait(timeout=10)
        context.set_offline(True)
        user.page.reload()
        wait_ready(user.page)
        user.page.wait_for_selector("#app:not([hidden])", timeout=UI_TIMEOUT_MS)
        assert user.call("account.whoami")["user_id"] == user.user_id
        user.select(conv)
        user.wait_message("a note to self")
        # Live sync notices there is no network, and says so.
        user.page.wait_for_selector("#net-status.offline", timeout=UI_TIMEOUT_MS)
    finally:
        context.close()


def test_cold_start_sync_in_the_service_worker(browser: Any, server_url: str) -> None:
    contexts = [browser.new_context(), browser.new_context()]
    try:
        alice = ChatUser.open(contexts[0], server_url)
        bob = ChatUser.open(contexts[1], server_url)
        alice.create_account("alice")
        bob.create_account("bob")
        conv = alice.create_conversation("cold start")
        alice.invite(bob.user_id)
        bob.select(conv)
        alice.send("while you are here")
        bob.wait_message("while you are here")
        _wait_controlled(bob.page)
        workers = contexts[1].service_workers
        assert len(workers) == 1 and workers[0].url.endswith("/sw.mjs")
        sw = workers[0]

        # Bob closes the app; Alice writes to him meanwhile.
        bob.page.close()
        assert contexts[1].pages == []
        alice.send("while you were away")
        alice.send("and a second one")

        # The service worker wakes with no page open: its Python is not booted yet.
        result = sw.evaluate("self.pingColdSync('test')")
        assert result["account"] == bob.user_id
        assert result["messages"] == 2 and not result["warm"]
        assert result["conversations"] == []  # nothing about the group changed
        print(
            f"\nservice worker cold start: boot {result['boot_ms']} ms, sync {result['ms']} ms, total {result['total_ms']} ms"
        )

        # Bob opens the app without live sync: the messages are there, decrypted by the
        # service worker; his worker finds nothing new (MLS cannot decrypt twice).
        bob = ChatUser.open(contexts[1], server_url, query="dev=1&live=0")
        stored = [m["text"] for m in bob.call("conversation.messages", {"conv": conv})]
        assert stored == ["while you are here", "while you were away", "and a second one"]
        bob.select(conv)
        bob.wait_message("and a second one")
        assert bob.call("sync.run")["messages"] == []

        # A page asks the (now warm) service worker to sync: what it decrypts reaches the page as events.
        alice.send("third, fetched by the service worker")
        t0 = time.monotonic()
        answer = bob.page.evaluate("import('./ping.js').then(({ Ping }) => Ping.swSync())")
        assert answer["messages"] == 1 and answer["warm"], answer
        bob.wait_message("third, fetched by the service worker")
        print(
            f"service worker warm sync on request: {answer['total_ms']} ms ({time.monotonic() - t0:.2f} s to the page)"
        )
        assert bob.call("sync.run")["messages"] == []

        # The service worker and Bob's tab at the same time: one writer at a time (the
        # account's Web Lock), the other reloads; Alice decrypts everything Bob sends.
        alice.send("fourth")
        both = bob.page.evaluate(
            """(conv) => import('./ping.js').then(({ Ping }) => Promise.all([
                Ping.swSync(),
                (async () => { for (let i = 0; i < 4; i++) await window.ping.send(conv, `bob ${i}`); })(),
            ]))""",
            conv,
        )
        assert both[0]["messages"] in (0, 1)
        for i in range(4):
            alice.wait_message(f"bob {i}")
        bob.call("sync.run")
        assert "fourth" in [m["text"] for m in bob.call("conversation.messages", {"conv": conv})]
        views = [u.state()["conversations"][conv] for u in (alice, bob)]
        assert views[0] == views[1]
    finally:
        for context in contexts:
            context.close()
