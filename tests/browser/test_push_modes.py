"""The notification modes "generic" and "off" (``account.settings({notify})``) of a push-woken
service worker (static/sw.mjs), in Chromium through a real server.

Bob's account lives in the profile "work" (not the service worker's own profile "default"),
and no page of the app is open while his STOPPED service worker is woken through Chromium's
DevTools protocol (ServiceWorker.deliverPushMessage / dispatchSyncEvent /
dispatchPeriodicSyncEvent, the SwDriver of test_push_wake.py). The worker reads the mode of the
profile that decrypted each message from that profile's IndexedDB registry on every wake:

* "generic": a push shows the generic "New message" and never the text;
* "off" (set, then the page reloaded: the setting is stored): a ``sync`` and a ``periodicsync``
  wake decrypt the message and show nothing (sw.mjs's ``self.pingWakes`` says when a wake-up
  finished and what it showed); a push to the userVisibleOnly subscription shows only the
  generic notification (Chromium requires one), without a count.

The pushes themselves come from ping_server through the FakePushService (the only fake).
"""

from __future__ import annotations

from typing import Any

from chatui import ChatUser
from fakepush import FakePushService
from pingpage import wait_ready
from test_push_wake import _NOTIFICATIONS, SYNC_WAKES, SwDriver, _setup

GENERIC = {"title": "New message", "body": "", "tag": "ping-generic"}


def _shown(shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: s[k] for k in ("title", "body", "tag")} for s in shown]


def test_generic_and_off_modes_never_show_the_text(browser: Any, server_url: str) -> None:
    contexts: list[Any] = []
    with FakePushService() as fake:
        try:
            contexts, alice, bob, conv = _setup(browser, server_url, bob_query="dev=1&account=work")
            sub = fake.subscriber("bob")
            bob.call("push.subscribe", sub.as_json())
            assert bob.call("account.settings", {"notify": "generic"})["notify"] == "generic"
            driver = SwDriver(contexts[1], bob.page, server_url)
            bob.page.goto("about:blank")  # no page of the app open

            def push_hint() -> str:
                # Every push is the same hint ({v, device}); how many the server sent depends on
                # its coalescing (news while a push is due rides on it), so none is counted here.
                return sub.decrypt(fake.wait_for("bob", 1)[-1]).decode()

            # "generic": the push shows "New message", never the text.
            driver.stop()
            alice.send("generic secret")
            sw, wakes, shown = driver.wake_finished("ServiceWorker.deliverPushMessage", data=push_hint())
            assert [(w["reason"], w["ok"], w["messages"], w["shown"]) for w in wakes] == [("push", True, 1, 1)]
            assert _shown(shown) == [GENERIC]
            notes = sw.evaluate(_NOTIFICATIONS)
            assert notes == [GENERIC], notes
            driver.clear_notifications(sw)

            # "off", set on a page of the profile, survives a reload of it.
            bob = ChatUser.open(contexts[1], server_url, query="dev=1&account=work&live=0")
            assert bob.call("account.settings", {"notify": "off"})["notify"] == "off"
            bob.page.reload()
            wait_ready(bob.page)
            assert bob.call("account.settings")["notify"] == "off"
            bob.page.goto("about:blank")

            # "off": a sync and a periodic sync decrypt the message and show nothing.
            for method, tag, extra, reason in SYNC_WAKES:
                driver.stop()
                alice.send(f"silent {reason}")
                sw, wakes, shown = driver.wake_finished(method, tag=tag, **extra)
                assert [(w["reason"], w["ok"], w["messages"], w["shown"]) for w in wakes] == [(reason, True, 1, 0)]
                assert shown == [] and sw.evaluate(_NOTIFICATIONS) == []

            # "off": a push must show something (userVisibleOnly): only the generic one.
            driver.stop()
            alice.send("off secret")
            sw, wakes, shown = driver.wake_finished("ServiceWorker.deliverPushMessage", data=push_hint())
            assert [(w["reason"], w["ok"], w["messages"], w["shown"]) for w in wakes] == [("push", True, 1, 1)]
            assert _shown(shown) == [GENERIC]
            assert sw.evaluate(_NOTIFICATIONS) == [GENERIC]

            # Every wake-up did decrypt and store its message: the page shows them all.
            bob = ChatUser.open(contexts[1], server_url, query="dev=1&account=work&live=0")
            bob.select(conv)
            for text in ("generic secret", "silent sync", "silent periodicsync", "off secret"):
                bob.wait_message(text)
        finally:
            for context in contexts:
                context.close()
