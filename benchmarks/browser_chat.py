"""The web chat in Chromium, measured: boot, send-to-display latency, service-worker cold start.

    python benchmarks/browser_chat.py                 # defaults below
    python benchmarks/browser_chat.py --messages 50 --boots 5

Builds dist/, starts ``ping_server`` on a free loopback port (in-memory SQLite)
and Debian's Chromium (``PING_CHROMIUM`` overrides) through Playwright. Prints:

* **cold boot to ready**: a new browser profile opens the page; the worker's
  own figure (runtime + wheels + Python start) and the wall time from
  navigation until ``#boot-status`` says ``ready``;
* **warm boot**: the same profile reloads (the service worker serves dist/
  from its cache);
* **send to display** between two browsers (two profiles): from just before
  Alice's page calls ``send`` until Bob's page receives the message event
  (decrypted and stored), with Bob's conversation on screen and with another
  conversation on screen (both found by the long poll over all his
  conversations, ``POST /v1/watch``, which wakes the sync round);
* **send round trip**: Alice's ``send`` call (encrypt, checkpoint, POST,
  store), alone and right after a second tab of hers wrote (so it reloads
  the state from IndexedDB first);
* **service-worker cold start**: Bob's page closed, a message waiting; the
  service worker boots Python and syncs (its own figures: boot, sync, total).

Times are wall clock on this machine (2 cores); nothing here asserts a goal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def line(name: str, values: list[float], unit: str = "ms") -> None:
    print(
        f"  {name:<44} n={len(values):<3} p50 {pct(values, 0.5):8.1f} {unit}   p95 {pct(values, 0.95):8.1f} {unit}"
        f"   max {max(values):8.1f} {unit}"
    )


RECORD_ARRIVALS = """() => {
    window._arrived = new Map();
    window.ping.on('messages', (e) => { for (const m of e.messages) if (!window._arrived.has(m.text)) window._arrived.set(m.text, Date.now()); });
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=30, help="messages per latency series")
    parser.add_argument("--boots", type=int, default=3, help="cold boots (new profiles)")
    args = parser.parse_args()

    import build
    from chatui import ChatUser
    from playwright.sync_api import sync_playwright

    from ping_server.process import spawn

    build.build()
    proc, url = spawn("--dist", str(ROOT / "dist"))
    chromium = os.environ.get("PING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            print(f"browser chat benchmark: Chromium {browser.version}, server {url}")

            # -- boots ---------------------------------------------------------------
            cold_worker, cold_wall, warm_worker, warm_wall = [], [], [], []
            for _ in range(args.boots):
                context = browser.new_context()
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(url + "/")
                page.wait_for_function(
                    "document.getElementById('boot-status').textContent === 'ready'", timeout=120_000
                )
                cold_wall.append((time.perf_counter() - t0) * 1000)
                cold_worker.append(page.evaluate("window.ping.ready.then((r) => r.ms)"))
                page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=60_000)
                page.wait_for_timeout(1500)  # let the service worker finish caching dist/
                t0 = time.perf_counter()
                page.reload()
                page.wait_for_function(
                    "document.getElementById('boot-status').textContent === 'ready'", timeout=120_000
                )
                warm_wall.append((time.perf_counter() - t0) * 1000)
                warm_worker.append(page.evaluate("window.ping.ready.then((r) => r.ms)"))
                context.close()
            print("page boot (navigation -> #boot-status 'ready'):")
            line("cold, new profile: worker's own figure", cold_worker)
            line("cold, new profile: wall clock", cold_wall)
            line("reload, service worker cache: worker's figure", warm_worker)
            line("reload, service worker cache: wall clock", warm_wall)

            # -- two users -----------------------------------------------------------
            ctx_a, ctx_b = browser.new_context(), browser.new_context()
            alice, bob = ChatUser.open(ctx_a, url), ChatUser.open(ctx_b, url)
            alice.create_account("alice")
            bob.create_account("bob")
            other = alice.create_conversation("elsewhere")
            alice.invite(bob.user_id)
            conv = alice.create_conversation("bench")
            alice.invite(bob.user_id)
            bob.wait_conversation(conv)
            bob.select(conv)
            bob.page.evaluate(RECORD_ARRIVALS)

            def series(tag: str) -> list[float]:
                out = []
                for i in range(args.messages):
                    text = f"{tag} {i}"
                    t0 = alice.page.evaluate(
                        "([c, t]) => { const t0 = Date.now(); window.ping.send(c, t); return t0; }", [conv, text]
                    )
                    bob.page.wait_for_function("(t) => window._arrived.has(t)", arg=text, timeout=60_000)
                    out.append(bob.page.evaluate("(t) => window._arrived.get(t)", text) - t0)
                return out

            print(f"send to display, Alice's page -> Bob's page ({args.messages} messages each):")
            line("Bob has the conversation open (watch)", series("focused"))
            bob.page.evaluate("(c) => window.ping.focus(c)", other)  # the on-screen chat no longer matters
            line("Bob looks elsewhere (watch)", series("unfocused"))

            sends_alone = []
            for i in range(args.messages):
                t0 = time.perf_counter()
                alice.call("send", {"conv": conv, "text": f"alone {i}"})
                sends_alone.append((time.perf_counter() - t0) * 1000)
            tab2 = ChatUser.open(ctx_a, url)
            sends_after_other_tab = []
            for i in range(min(args.messages, 15)):
                tab2.call("send", {"conv": conv, "text": f"tab2 {i}"})
                t0 = time.perf_counter()
                alice.call("send", {"conv": conv, "text": f"tab1 {i}"})
                sends_after_other_tab.append((time.perf_counter() - t0) * 1000)
            print("send round trip (page -> worker -> server -> stored -> page):")
            line("alone", sends_alone)
            line("right after another tab wrote (reload)", sends_after_other_tab)
            print(f"  (tab 1 reloaded the state {alice.state()['reloads']} times)")
            tab2.page.close()

            # -- service worker cold start --------------------------------------------
            bob.page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=60_000)
            bob.page.wait_for_timeout(1500)
            sw = ctx_b.service_workers[0]
            bob.page.close()
            alice.call("send", {"conv": conv, "text": "while bob is away"})
            result: dict[str, Any] = sw.evaluate("self.pingColdSync('benchmark')")
            assert result["messages"] == 1, result
            print("service worker cold start (no page open, 1 message waiting):")
            print(f"  boot Python {result['boot_ms']} ms + sync {result['ms']} ms = {result['total_ms']} ms")
            alice.call("send", {"conv": conv, "text": "again"})
            warm: dict[str, Any] = sw.evaluate("self.pingColdSync('benchmark')")
            print(f"  warm (Python already up): sync {warm['ms']} ms, total {warm['total_ms']} ms")
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
