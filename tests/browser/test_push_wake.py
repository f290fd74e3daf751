"""Push-woken service worker (static/sw.mjs + ping_server/push.py), in Chromium through a real server.

The FakePushService (tests/browser/fakepush.py, the only fake) stands in for the browser
vendor's push service: Bob's page registers, through the real ``push.subscribe`` RPC, a
subscription whose endpoint is the fake and whose keys the test made. When Alice sends, the
server POSTs an encrypted push there; the test checks its VAPID token and decrypts it (only the
{v, device} hint), then hands exactly that payload to Bob's STOPPED service worker through
Chromium's DevTools protocol (ServiceWorker.deliverPushMessage), which must cold-start Python,
sync and show a notification with the text Alice sent. The same for the real ``sync`` and
``periodicsync`` events (ServiceWorker.dispatchSyncEvent / dispatchPeriodicSyncEvent). With a
page of the app open and visible, the notification is the generic one.

``registration.pushManager.subscribe`` itself needs the vendor's push service (offline here):
``enablePush`` is run against a stand-in registration (FakePushManager, fault-injection style)
to check what it asks the browser for and what it registers with the server.
"""

from __future__ import annotations

import json
import time
from typing import Any

from chatui import UI_TIMEOUT_MS, ChatUser
from fakepush import FakePushService, vapid_claims
from test_sw import _wait_controlled

# What the woken service worker finished and showed so far (sw.mjs's test-visible records).
_STATE = "() => ({ wakes: self.pingWakes || [], shown: self.pingShown || [] })"
# The DevTools commands of the sync wake-ups: (method, tag, extra params, sw.mjs's reason).
SYNC_WAKES: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("ServiceWorker.dispatchSyncEvent", "ping-sync", {"lastChance": False}, "sync"),
    ("ServiceWorker.dispatchPeriodicSyncEvent", "ping-periodic", {}, "periodicsync"),
)
_NOTIFICATIONS = "self.registration.getNotifications().then((ns) => ns.map((n) => ({title: n.title, body: n.body, tag: n.tag})))"

# enablePush against a stand-in for the browser's pushManager (the vendor's service is offline).
_ENABLE_WITH_FAKE_PUSH_MANAGER = """async (sub) => {
    const { enablePush, disablePush } = await import('./pingpush.mjs');
    const asked = [];
    let current = null;
    const b64 = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4)), (c) => c.charCodeAt(0));
    const FakePushManager = {
        async getSubscription() { return current; },
        async subscribe(options) {
            asked.push({ userVisibleOnly: options.userVisibleOnly, key: Array.from(new Uint8Array(options.applicationServerKey)) });
            current = { endpoint: sub.endpoint, options, toJSON: () => sub, unsubscribe: async () => { current = null; return true; } };
            return current;
        },
    };
    const registration = { pushManager: FakePushManager };
    const enabled = await enablePush(window.ping, { registration, askPermission: false });
    const again = await enablePush(window.ping, { registration, askPermission: false });  // reuses the subscription
    const key = Array.from(b64(await window.ping.call('push.vapid_key')));
    const disabled = await disablePush(window.ping, { registration });
    return { asked, key, enabled, again, disabled };
}"""


class SwDriver:
    """Bob's service worker through a DevTools session (ServiceWorker domain) on one of his pages."""

    def __init__(self, context: Any, page: Any, origin: str) -> None:
        self.context, self.origin = context, origin
        self.cdp = context.new_cdp_session(page)
        self.registrations: dict[str, dict[str, Any]] = {}
        self.cdp.on("ServiceWorker.workerRegistrationUpdated", self._registrations)
        self.cdp.send("ServiceWorker.enable")
        deadline = time.monotonic() + 10
        while not self.registration_id:
            assert time.monotonic() < deadline, self.registrations
            page.wait_for_timeout(50)  # lets Playwright dispatch the CDP events

    def _registrations(self, event: dict[str, Any]) -> None:
        for reg in event["registrations"]:
            self.registrations[reg["registrationId"]] = reg

    @property
    def registration_id(self) -> str | None:
        for rid, reg in self.registrations.items():
            if reg["scopeURL"] == self.origin + "/" and not reg["isDeleted"]:
                return rid
        return None

    def stop(self) -> None:
        self.cdp.send("ServiceWorker.stopAllWorkers")

    def wake(self, method: str, **params: Any) -> tuple[Any, list[dict[str, Any]], float]:
        """Send the DevTools command that dispatches an event to the stopped worker; the worker
        (Playwright keeps one Worker object per registration: after the restart it evaluates in
        the new instance), what it showed (at least one notification), and the seconds from the
        command to the first notification (its ``at``, Date.now() in the worker: the same clock
        as time.time() here)."""
        t0 = time.time()
        sw, _, shown = self.wake_finished(method, **params)
        assert shown, "the wake-up showed no notification"
        return sw, shown, shown[0]["at"] / 1000 - t0

    def wake_finished(self, method: str, **params: Any) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
        """Dispatch the event (as :meth:`wake`) and wait until the woken worker has FINISHED the
        wake-up (sw.mjs records it in ``self.pingWakes`` after its notifications, if any, are
        shown): the worker, its finished wake-ups since the command, and what it showed."""
        t0_ms = time.time() * 1000
        self.cdp.send(method, {"origin": self.origin, "registrationId": self.registration_id, **params})
        deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
        while True:
            workers = self.context.service_workers
            try:
                assert workers, "no service worker"
                state = workers[0].evaluate(_STATE)
                wakes = [w for w in state["wakes"] if w["at"] >= t0_ms]
                assert wakes, "the wake-up has not finished"
                return workers[0], wakes, [s for s in state["shown"] if s["at"] >= t0_ms]
            except Exception:  # the instance that was stopped, one still starting or still waking
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def clear_notifications(self, sw: Any) -> None:
        """Close every notification the (running) worker's registration shows."""
        sw.evaluate("self.registration.getNotifications().then((ns) => ns.forEach((n) => n.close()))")


def _setup(browser: Any, server_url: str, bob_query: str = "dev=1") -> tuple[list[Any], ChatUser, ChatUser, str]:
    """Alice and Bob (his page opened with ``bob_query``, e.g. another profile) in a conversation,
    Bob's page controlled by the service worker and allowed to show notifications."""
    contexts = [browser.new_context(), browser.new_context()]
    contexts[1].grant_permissions(["notifications"], origin=server_url)
    alice = ChatUser.open(contexts[0], server_url)
    bob = ChatUser.open(contexts[1], server_url, query=bob_query)
    alice.create_account("alice")
    bob.create_account("bob")
    conv = alice.create_conversation("pushed")
    alice.invite(bob.user_id)
    bob.select(conv)
    alice.send("before the push")
    bob.wait_message("before the push")
    _wait_controlled(bob.page)
    return contexts, alice, bob, conv


def test_push_sync_and_periodic_sync_wake_a_stopped_service_worker(browser: Any, server_url: str) -> None:
    contexts: list[Any] = []
    with FakePushService() as fake:
        try:
            contexts, alice, bob, conv = _setup(browser, server_url)
            sub = fake.subscriber("bob")

            # enablePush up to the vendor's push service: what it asks for, what it registers.
            checked = bob.page.evaluate(_ENABLE_WITH_FAKE_PUSH_MANAGER, sub.as_json())
            assert checked["asked"] == [{"userVisibleOnly": True, "key": checked["key"]}]  # subscribed once, reused once
            assert len(checked["key"]) == 65 and checked["key"][0] == 4
            assert [s["endpoint"] for s in checked["enabled"]["status"]["subscriptions"]] == [sub.endpoint]
            assert checked["disabled"] == {"subscriptions": []}

            # The subscription registered through the page's RPC, signed as Bob's device.
            status = bob.call("push.subscribe", sub.as_json())
            assert [s["endpoint"] for s in status["subscriptions"]] == [sub.endpoint]
            vapid_key = bytes(checked["key"])
            device_id = bob.call("account.status")["device_id"]

            driver = SwDriver(contexts[1], bob.page, server_url)
            bob.page.goto("about:blank")  # no page of the app open: the notification shows the text
            driver.stop()

            alice.send("pushed to a stopped worker")
            push = fake.wait_for("bob", 1)[-1]
            claims = vapid_claims(push, vapid_key)
            assert claims["aud"] == f"http://127.0.0.1:{fake.port}"
            hint = sub.decrypt(push)
            assert json.loads(hint) == {"v": 1, "device": device_id}  # the whole push: no text, no conversation
            assert b"pushed to a stopped worker" not in push.body and b"pushed" not in hint

            sw, shown, push_s = driver.wake("ServiceWorker.deliverPushMessage", data=hint.decode())
            assert [(s["body"], s["reason"]) for s in shown] == [("pushed to a stopped worker", "push")]
            assert shown[0]["title"] != "New message" and shown[0]["tag"] == f"ping-{conv}"
            notes = sw.evaluate(_NOTIFICATIONS)
            assert {"title": shown[0]["title"], "body": "pushed to a stopped worker", "tag": f"ping-{conv}"} in notes

            for method, tag, extra, reason in SYNC_WAKES:
                driver.stop()
                alice.send(f"fetched by {reason}")
                sw, shown, _ = driver.wake(method, tag=tag, **extra)
                assert [(s["body"], s["reason"]) for s in shown] == [(f"fetched by {reason}", reason)]

            # A page of the app open and visible: the generic notification, never the text.
            driver.stop()
            bob = ChatUser.open(contexts[1], server_url, query="dev=1&live=0")
            alice.send("while the app is open")
            sw, shown, _ = driver.wake("ServiceWorker.deliverPushMessage", data=hint.decode())
            assert [(s["title"], s["body"]) for s in shown] == [("New message", "")]
            bob.select(conv)
            bob.wait_message("while the app is open")  # decrypted by the service worker, shown by the page
            print(f"\npush to notification, stopped service worker: {push_s * 1000:.0f} ms")
        finally:
            for context in contexts:
                context.close()
