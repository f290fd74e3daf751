"""The page SDK (static/ping.js) as a web developer uses it, checked against static/ping.d.ts.

Real Chromium, a real ping_server, the example page (/example.html: not the
demo) of one browser context. The example opens profile "alice"; the tests
open "bob" with ``Ping.open`` in the same page: two accounts of one origin.
Alice's second device ("laptop", ``Ping.start``) lives in a second browser
context (another browser, as a linked device is), on a page of the origin that
holds nothing but the SDK.

Every call goes through ``api(target, name, ...args)`` in the page, which
records the method's name (in sessionStorage: it survives reloads); each
result is checked against the method's declared return type, read from
ping.d.ts by tests/browser/dts.py (field names, JS types, nested records;
an undeclared field fails). The last test asserts that the names called are
exactly the methods ping.d.ts declares, so a method added without a test
fails here. Every event received is checked against its ``PingEventMap``
entry; an event type not declared there fails.

Raw envelopes for ``joinConversation``/``processEnvelope`` come from the
server through Bob's worker (``dev.exec``: the transport's read-only
``fetch_welcomes``/``fetch_since``, nothing acknowledged), standing in for an
app that carries envelopes itself. ``enablePush`` runs against a stand-in
``pushManager`` whose subscription keys come from tests/browser/fakepush.py
(the vendor's push service is offline here), as in test_push_wake.py.

Not provoked here: ``fork-healed`` and ``problems`` (they need a commit spoiled on
its way to one device, which needs that device's page behind a tampering proxy:
tests/browser/test_fork_healed.py provokes both and checks them against ping.d.ts);
their declared shapes are checked here too whenever they do arrive.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dts import TAG_JS, Dts, untag
from fakepush import FakePushService
from pingpage import BOOT_TIMEOUT_MS

ROOT = Path(__file__).resolve().parents[2]
DTS_TEXT = (ROOT / "static" / "ping.d.ts").read_text()
DTS = Dts(DTS_TEXT)
# The documented payload limit (ping.d.ts on send(): "payload: 1..N bytes").
_LIMIT = re.search(r"payload: 1\.\.(\d+) bytes", DTS_TEXT)
assert _LIMIT is not None, "ping.d.ts documents send()'s payload limit"
LIMIT = int(_LIMIT.group(1))
REFUSED = f"payload must be 1..{LIMIT} bytes"  # the documented refusal (docs/browser-sdk.md)
WAIT_MS = 60_000

# In the page: every call of the test goes through api() (which records the name); events to window.events.
API_JS = """
window.calledNames = () => JSON.parse(sessionStorage.getItem('ping-called') || '[]');
window.api = (target, name, ...args) => {
  sessionStorage.setItem('ping-called', JSON.stringify([...calledNames(), name]));
  return target[name](...args);
};
window.events = {};
window.listen = (ping, who) => {
  events[who] = [];
  return api(ping, 'on', '*', (e) => events[who].push(tag(e)));
};
window.attempt = async (promise) => {
  try { return { ok: tag(await promise) }; }
  catch (e) { return { error: { name: e.name, message: e.message, status: e.status ?? null, code: e.code ?? null, pingError: e instanceof PingError } }; }
};
"""

# Bob's worker reads envelopes from the server as they are (no state touched, nothing acknowledged).
RAW_ENVELOPES = """
from pyodide.ffi import run_sync
from ping_core.ids import ConversationId
from ping_core.sync import SyncCursor
from pyodide_app.sdk import sdk

async def raw():
    s = await sdk().require()
    if AFTER is None:
        return [e.encode() for e in await s.transport.fetch_welcomes() if e.conversation_id.as_hex() == CONV]
    return [e.encode() for e in await s.transport.fetch_since(ConversationId.from_hex(CONV), SyncCursor(AFTER), 1)]

result = run_sync(raw())
"""


def text_of(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


BLANK = "<!doctype html><meta charset=utf-8><title>only the SDK</title>"


class World:
    """The example page of one browser context, with the Pings ``alice`` and ``bob`` in it;
    :meth:`other_page` is a second context's page (``laptop``)."""

    def __init__(self, browser: Any, context: Any, server_url: str) -> None:
        self.browser = browser
        self.contexts = [context]
        self.server_url = server_url
        self.page = context.new_page()
        self.pages: dict[str, Any] = {"alice": self.page, "bob": self.page, "Ping": self.page}
        self.ids: dict[str, dict[str, Any]] = {}
        self.shared: dict[str, Any] = {}
        self.seen_events: set[str] = set()

    # -- the page -------------------------------------------------------------------

    def open(self, *, first: bool = False) -> None:
        """(Re)load the example page (it opens "alice"), then open "bob" with Ping.open."""
        if first:
            self.page.goto(f"{self.server_url}/example.html?accounts=alice&dev=1")
        else:
            self.page.reload()
        self.page.wait_for_function(
            "() => ['ready', 'failed'].includes(document.getElementById('status')?.value)", timeout=BOOT_TIMEOUT_MS
        )
        assert self.page.evaluate("document.getElementById('status').value") == "ready"
        self.page.evaluate(TAG_JS + API_JS)
        self.js("const m = await import('/ping.js'); window.Ping = m.Ping; window.PingError = m.PingError;"
                " window.alice = window.pings.alice; listen(alice, 'alice');")
        opened = self.call("Ping", "open", "{server: location.origin, account: 'bob', ack: 'manual', dev: true}")
        assert opened == {"$class": "Ping"}
        self.js("window.bob = window.last; listen(bob, 'bob');")

    def other_page(self, who: str) -> Any:
        """A page of the origin in a new browser context, with only the SDK imported; ``who``'s calls run there."""
        context = self.browser.new_context()
        self.contexts.append(context)
        page = context.new_page()
        page.route(f"{self.server_url}/blank.html", lambda route: route.fulfill(content_type="text/html", body=BLANK))
        page.goto(f"{self.server_url}/blank.html")
        page.evaluate(TAG_JS + API_JS)
        self.pages[who] = page
        self.js("const m = await import('/ping.js'); window.Ping = m.Ping; window.PingError = m.PingError;", _page=page)
        return page

    def reload(self) -> None:
        self.check_events()
        self.open()

    def js(self, body: str, _page: Any = None, **v: Any) -> Any:
        """Run ``body`` (an async function body; ``v``'s names are its variables) in the page."""
        names = ", ".join(v)
        return (_page or self.page).evaluate(f"async ({{{names}}}) => {{ {body} }}", v)

    def raw_call(self, who: str, name: str, *args: str, _page: Any = None, **v: Any) -> Any:
        """``api(who, name, ...args)`` awaited (args: JS expressions) in ``who``'s page, tagged; also ``window.last``."""
        body = f"const r = await api({who}, '{name}', {', '.join(args)}); window.last = r; return tag(r);"
        return self.js(body, _page or self.pages[who], **v)

    def call(self, who: str, name: str, *args: str, _page: Any = None, **v: Any) -> Any:
        """:meth:`raw_call` with the result checked against ping.d.ts's return type; plain Python."""
        result = self.raw_call(who, name, *args, _page=_page, **v)
        self.conforms(result, DTS.returns("Ping", name), f"{who}.{name}")
        return untag(result)

    def fails(self, who: str, name: str, *args: str, **v: Any) -> dict[str, Any]:
        """The PingError a call rejects with, as ``{name, message, pingError}``."""
        got = self.js(f"return await attempt(api({who}, '{name}', {', '.join(args)}));", self.pages[who], **v)
        assert "error" in got, f"{who}.{name} should have failed: {got}"
        assert got["error"]["pingError"] is True, got
        error: dict[str, Any] = got["error"]
        return error

    @staticmethod
    def conforms(value: Any, declared: Any, what: str) -> None:
        problems = DTS.check(value, declared)
        assert problems == [], f"{what} does not match ping.d.ts: {problems}"

    def dev_raw(self, conv: str, after: int | None) -> list[bytes]:
        code = RAW_ENVELOPES.replace("CONV", repr(conv)).replace("AFTER", repr(after))
        got = self.js("return tag(await bob.call('dev.exec', {code}));", code=code)
        return [bytes.fromhex(e["$bytes"]) for e in got]

    # -- events ---------------------------------------------------------------------

    def events(self, who: str, type_name: str | None = None) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = self.js("return events[who] || [];", self.pages[who], who=who)
        return [e for e in got if type_name is None or e.get("type") == type_name]

    def check_events(self) -> None:
        """Every event received so far has a declared type and that type's declared shape."""
        for who in {w for page in set(self.pages.values()) for w in self.js("return Object.keys(events);", page)}:
            for event in self.events(who):
                assert event.get("type") in DTS.event_types(), f"{who} got an undeclared event {event}"
                self.conforms(event, DTS.event(event["type"]), f"{who}'s {event['type']} event")
                self.seen_events.add(event["type"])

    def delivered(self, who: str, conv: str) -> dict[int, dict[str, Any]]:
        """The messages of ``conv`` that ``who``'s "messages" events carried, by seq."""
        out = {}
        for event in self.events(who, "messages"):
            if event["conv"] == conv:
                for m in untag(event["messages"]):
                    out[m["seq"]] = m
        return out

    def called(self) -> set[str]:
        return {n for page in set(self.pages.values()) for n in self.js("return calledNames();", page)}


@pytest.fixture(scope="module")
def world(browser: Any, server_url: str) -> Iterator[World]:
    w = World(browser, browser.new_context(), server_url)
    try:
        w.open(first=True)
        yield w
    finally:
        for context in w.contexts:
            context.close()


def test_the_shape_checker_bites() -> None:
    """The checker the other tests rely on refuses what ping.d.ts does not declare."""
    message = {"conv": "c", "seq": 1, "user": "u", "device": "d", "bytes": {"$bytes": "00ff"}, "text": None,
               "time": 1, "epoch": 2}
    assert DTS.check(message, DTS.returns("Ping", "send")) == []
    assert DTS.check({**message, "text": 1}, DTS.returns("Ping", "send")) != []
    assert DTS.check({**message, "bytes": "00ff"}, DTS.returns("Ping", "send")) != []
    assert DTS.check({**message, "extra": 1}, DTS.returns("Ping", "send")) != []
    assert DTS.check({k: v for k, v in message.items() if k != "epoch"}, DTS.returns("Ping", "send")) != []
    conv = {"id": "c", "name": None, "epoch": 1, "member_count": 1, "created_at": 1, "last": message, "removed": False}
    assert DTS.check([conv], DTS.returns("Ping", "conversations")) == []
    assert DTS.check([{**conv, "last": {**message, "seq": "1"}}], DTS.returns("Ping", "conversations")) != []
    assert DTS.check({"state": "none"}, DTS.returns("Ping", "status")) == []
    assert DTS.check({"state": "ready"}, DTS.returns("Ping", "status")) != []
    assert DTS.check({"$function": True}, DTS.returns("Ping", "on")) == []
    assert DTS.check({"$class": "Ping"}, DTS.returns("Ping", "open")) == []
    assert DTS.check(None, DTS.returns("Ping", "registerServiceWorker")) == []
    assert DTS.check({"type": "revoked", "message": "x", "profile": "p"}, DTS.event("revoked")) == []
    assert DTS.check({"type": "revoked"}, DTS.event("revoked")) != []
    assert {"open", "send", "on", "swSync", "terminate"} <= DTS.public_methods()


def test_two_accounts_in_one_origin(world: World) -> None:
    w = world
    assert w.call("bob", "status") == {"state": "none"}
    created = w.call("bob", "createAccount", "'bob'")
    assert created["error"] is None and created["registered"] is True and created["label"] == "bob"
    alice, bob = w.call("alice", "whoami"), w.call("bob", "whoami")
    assert bob == {k: v for k, v in created.items() if k != "error"}
    assert alice["user_id"] != bob["user_id"] and alice["device_id"] != bob["device_id"]
    w.ids = {"alice": alice, "bob": bob}
    a, b = alice["user_id"], bob["user_id"]
    assert w.call("alice", "status") == {"state": "ready", **alice}
    assert w.call("alice", "profiles") == {"profile": "alice", "profiles": {"alice": a, "bob": b}}
    assert w.call("bob", "profiles") == {"profile": "bob", "profiles": {"alice": a, "bob": b}}
    assert w.call("bob", "call", "'account.profiles'") == {"profile": "bob", "profiles": {"alice": a, "bob": b}}
    assert w.js("return bob.profile;") == "bob" and w.js("return alice.profile;") == "alice"

    # Separate storage: one IndexedDB database per account.
    names = set(w.js("return (await indexedDB.databases()).map((d) => d.name);"))
    assert {f"ping-account-{a}", f"ping-account-{b}"} <= names

    # Each its own Web Lock: with Alice's held by the page, her call waits for it (the lock manager lists
    # her worker's request) while Bob's is answered; released, hers is answered too.
    locks = w.js(
        """
        const name = `ping-account-${a}/state`;
        let release;
        const held = new Promise((r) => (release = r));
        await new Promise((ok) => navigator.locks.request(name, () => { ok(); return held; }));
        let aliceDone = false;
        const aliceCall = api(alice, 'whoami').then((r) => { aliceDone = true; return r; });
        let asked = false;
        for (let i = 0; i < 3000 && !asked; i++) {  // until her worker asks (bounded: 60 s)
          asked = (await navigator.locks.query()).pending.some((l) => l.name === name);
          if (!asked) await new Promise((r) => setTimeout(r, 20));
        }
        const bobResult = await api(bob, 'whoami');
        const pending = (await navigator.locks.query()).pending.map((l) => l.name);
        const aliceWaited = !aliceDone;
        release();
        return tag({ asked, bobResult, aliceWaited, pending, aliceResult: await aliceCall });
        """,
        a=a,
    )
    assert locks["asked"] is True and locks["aliceWaited"] is True and f"ping-account-{a}/state" in locks["pending"]
    assert f"ping-account-{b}/state" not in locks["pending"]
    assert untag(locks["bobResult"]) == bob and untag(locks["aliceResult"]) == alice

    # Settings are per profile: Bob opened with ack "manual", Alice is in the default mode.
    assert w.call("bob", "settings") == {"auto_join": False, "notify": "text", "ack": "manual"}
    assert w.call("alice", "settings", "{notify: 'generic'}") == {"auto_join": False, "notify": "generic", "ack": "auto"}
    assert w.call("alice", "settings", "{notify: 'text', autoJoin: false}")["notify"] == "text"
    assert w.call("alice", "ping", "{hello: 'x', n: 2}")["echo"] == {"hello": "x", "n": 2}
    info = w.call("bob", "info")
    assert {"conversation.send", "message.ack", "vault.status"} <= set(info["methods"])

    # Alice invites Bob (every device of his), Bob accepts; both see both.
    conv = w.call("alice", "createConversation", "'two profiles'")
    assert (conv["name"], conv["member_count"], conv["last"], conv["removed"]) == ("two profiles", 1, None, False)
    w.shared["conv"] = cid = conv["id"]
    assert w.call("alice", "invite", "cid", "b", cid=cid, b=b) == {"added": 1}
    invitations = w.call("bob", "invitations")
    assert [(i["conv"], i["name"], i["inviter"], i["inviter_device"], i["members"]) for i in invitations] == [
        (cid, "two profiles", a, alice["device_id"], 2)]
    joined = w.call("bob", "acceptInvitation", "cid", cid=cid)
    assert (joined["id"], joined["name"], joined["member_count"]) == (cid, "two profiles", 2)
    for who, me in (("alice", alice), ("bob", bob)):
        members = w.call(who, "members", "cid", cid=cid)
        assert {(m["user_id"], m["device_id"], m["me"]) for m in members} == {
            (a, alice["device_id"], me is alice), (b, bob["device_id"], me is bob)}
        assert [c["id"] for c in w.call(who, "conversations")] == [cid]
    labels = w.call("alice", "labels", "[a, b]", a=a, b=b)
    assert labels == {alice["device_id"]: {"label": "alice", "user_id": a}, bob["device_id"]: {"label": "bob", "user_id": b}}
    assert [e["invitation"]["conv"] for e in w.events("bob", "invitation")] == [cid]
    w.check_events()
    assert {"invitation", "invitations", "account", "conversations"} <= w.seen_events


PAYLOADS = {
    "zero bytes, valid UTF-8": b"\x00\x00a\x00",
    "zero bytes, invalid UTF-8": b"\x00\xff\x00\xfe\x80",
    "a truncated sequence": "café".encode()[:-1],
    "an encoded surrogate": b"\xed\xa0\x80",
    "non-ASCII UTF-8": "héllo — 你好 🎉".encode(),
    "at the documented limit": b"\xff" + os.urandom(LIMIT - 1),
}


def test_binary_payloads_round_trip_byte_for_byte(world: World) -> None:
    w = world
    cid = w.shared["conv"]
    sent: dict[int, bytes] = {}
    for what, data in PAYLOADS.items():
        m = w.call("alice", "send", "cid", "unhex(h)", cid=cid, h=data.hex())
        assert (m["bytes"], m["text"]) == (data, text_of(data)), what
        assert (m["conv"], m["user"], m["device"]) == (cid, w.ids["alice"]["user_id"], w.ids["alice"]["device_id"])
        sent[m["seq"]] = data
    assert text_of(PAYLOADS["non-ASCII UTF-8"]) == "héllo — 你好 🎉" and text_of(PAYLOADS["an encoded surrogate"]) is None
    m = w.call("alice", "send", "cid", "'text: ünïcödé ✓'", cid=cid)  # a string payload: its UTF-8 bytes
    assert (m["bytes"], m["text"]) == ("text: ünïcödé ✓".encode(), "text: ünïcödé ✓")
    sent[m["seq"]] = m["bytes"]

    # Refused as documented, and nothing changes: no message, no epoch moved.
    before = (w.call("alice", "messages", "cid", cid=cid), w.call("alice", "conversations"))
    for payload in ("new Uint8Array(0)", "''", f"new Uint8Array({LIMIT + 1})"):
        error = w.fails("alice", "send", "cid", payload, cid=cid)
        assert (error["name"], error["message"]) == ("InvalidInput", REFUSED), payload
    assert (w.call("alice", "messages", "cid", cid=cid), w.call("alice", "conversations")) == before

    def same(messages: list[dict[str, Any]] | dict[int, dict[str, Any]], where: str) -> None:
        got = {m["seq"]: m for m in (messages.values() if isinstance(messages, dict) else messages) if m["seq"] in sent}
        assert sorted(got) == sorted(sent), where
        for seq, data in sent.items():
            assert (got[seq]["bytes"], got[seq]["text"]) == (data, text_of(data)), f"{where}: seq {seq}"

    synced = w.call("bob", "sync")
    same(synced["messages"], "Bob's sync")
    assert max(sent) == max(m["seq"] for m in synced["messages"])  # the refused sends made nothing
    same(w.delivered("bob", cid), "Bob's messages events")
    same(w.delivered("alice", cid), "Alice's messages events")
    for who in ("alice", "bob"):
        same(w.call(who, "messages", "cid", "100", cid=cid), f"{who}'s history")
    w.reload()
    for who in ("alice", "bob"):
        same(w.call(who, "messages", "cid", cid=cid), f"{who}'s history after a reload")
    w.shared["payload seqs"] = sorted(sent)
    w.check_events()


def key(m: dict[str, Any]) -> tuple[str, int]:
    """A message's identity: (conversation, server seq)."""
    return (m["conv"], m["seq"])


def test_manual_ack_survives_reloads(world: World) -> None:
    w = world
    cid = w.shared["conv"]
    assert w.call("alice", "pendingMessages") == []  # the automatic mode: nothing is ever pending
    earlier = {key(m) for m in w.call("bob", "pendingMessages")}
    assert {(cid, s) for s in w.shared["payload seqs"]} <= earlier  # received in the last test, never acked
    texts = ["ack one", "ack two", "ack three"]
    seqs = [w.call("alice", "send", "cid", "t", cid=cid, t=t)["seq"] for t in texts]
    got = w.call("bob", "sync")
    assert [m["text"] for m in got["messages"]] == texts
    pending = w.call("bob", "pendingMessages")
    assert {key(m) for m in pending} == earlier | {(cid, s) for s in seqs}
    assert {m["seq"]: m["text"] for m in pending if m["seq"] in seqs} == dict(zip(seqs, texts))

    w.reload()
    # The reopened session hands the unacknowledged messages out again, in events and in pendingMessages().
    pending = w.call("bob", "pendingMessages")
    assert {key(m) for m in pending} == earlier | {(cid, s) for s in seqs}
    assert {s: m["text"] for s, m in w.delivered("bob", cid).items() if s in seqs} == dict(zip(seqs, texts))

    acks = [{"conv": c, "seq": s} for c, s in sorted(earlier)] + [{"conv": cid, "seq": s} for s in seqs[:2]]
    assert w.call("bob", "ackMessages", "acks", acks=acks) == {"acked": len(acks)}
    assert w.call("bob", "ackMessages", "acks", acks=acks) == {"acked": 0}  # once only
    assert [key(m) for m in w.call("bob", "pendingMessages")] == [(cid, seqs[2])]
    w.reload()
    assert [key(m) for m in w.call("bob", "pendingMessages")] == [(cid, seqs[2])]
    assert {s for s in w.delivered("bob", cid) if s in seqs} == {seqs[2]}  # the acked ones are not handed out again
    assert w.call("bob", "ackMessages", "[{conv: cid, seq: s}]", cid=cid, s=seqs[2]) == {"acked": 1}
    w.reload()
    assert w.call("bob", "pendingMessages") == []
    assert w.delivered("bob", cid) == {}  # nothing is handed out again
    history = {m["seq"]: m["text"] for m in w.call("bob", "messages", "cid", cid=cid)}
    assert {s: history.get(s) for s in seqs} == dict(zip(seqs, texts))  # history keeps them
    w.check_events()


def test_conversation_operations(world: World) -> None:
    w = world
    cid = w.shared["conv"]
    a, b = w.ids["alice"]["user_id"], w.ids["bob"]["user_id"]

    # Live updates deliver a message as an event.
    assert w.call("bob", "startLive", "{intervalMs: 500}")["running"] is True
    assert w.call("bob", "focus", "cid", cid=cid) == {"focus": cid}
    sent = w.call("alice", "send", "cid", "'while live'", cid=cid)
    w.page.wait_for_function(
        "(seq) => (events.bob || []).some((e) => e.type === 'messages' && e.messages.some((m) => m.seq === seq))",
        arg=sent["seq"], timeout=WAIT_MS,
    )
    assert w.delivered("bob", cid)[sent["seq"]]["text"] == "while live"
    assert w.call("bob", "focus", "null") == {"focus": None}
    assert w.call("bob", "stopLive") == {"running": False}
    w.page.wait_for_function("() => events.bob.some((e) => e.type === 'status')", timeout=WAIT_MS)

    # Rename; both agree on the MLS exporter (RFC 9420 §8.5) of the same epoch.
    renamed = w.call("bob", "rename", "cid", "'renamed'", cid=cid)
    assert (renamed["id"], renamed["name"]) == (cid, "renamed")
    w.call("alice", "sync")
    assert [c["name"] for c in w.call("alice", "conversations") if c["id"] == cid] == ["renamed"]
    secrets = [w.call(who, "exportConversationSecret", "cid", "'page api'", "unhex('0102')", "32", cid=cid)
               for who in ("alice", "bob")]
    assert secrets[0] == secrets[1] and len(secrets[0]) == 32
    other = w.call("alice", "exportConversationSecret", "cid", "'other label'", cid=cid)
    assert other != secrets[0] and len(other) == 32
    assert w.call("alice", "commitPendingProposals") == []

    # A Welcome and a message as raw envelopes: joinConversation, processEnvelope.
    raw_conv = w.call("alice", "createConversation", "'raw'")["id"]
    assert w.call("alice", "invite", "c", "b", c=raw_conv, b=b) == {"added": 1}
    [welcome] = w.dev_raw(raw_conv, None)
    joined = w.call("bob", "joinConversation", "unhex(h)", h=welcome.hex())
    assert (joined["id"], joined["name"], joined["member_count"]) == (raw_conv, "raw", 2)
    m = w.call("alice", "send", "c", "unhex(h)", c=raw_conv, h=b"raw \x00\xff".hex())
    [envelope] = w.dev_raw(raw_conv, m["seq"] - 1)
    got = w.call("bob", "processEnvelope", "unhex(h)", h=envelope.hex())
    assert got is not None
    assert (got["conv"], got["seq"], got["bytes"], got["text"], got["user"]) == (raw_conv, m["seq"], b"raw \x00\xff", None, a)
    assert w.call("bob", "messages", "c", c=raw_conv)[-1]["bytes"] == b"raw \x00\xff"
    assert w.call("alice", "removeUser", "c", "b", c=raw_conv, b=b) == {"removed": 1}
    assert {m["user_id"] for m in w.call("alice", "members", "c", c=raw_conv)} == {a}

    # An unnamed conversation, and an invitation declined.
    unnamed = w.call("alice", "createConversation")
    assert unnamed["name"] is None
    w.call("alice", "invite", "c", "b", c=unnamed["id"], b=b)
    offered = [i for i in w.call("bob", "invitations") if i["conv"] == unnamed["id"]]
    assert [(i["name"], i["inviter"]) for i in offered] == [(None, a)]
    assert w.call("bob", "declineInvitation", "c", c=unnamed["id"]) == {"declined": unnamed["id"]}
    assert unnamed["id"] not in [i["conv"] for i in w.call("bob", "invitations")]
    assert unnamed["id"] not in [c["id"] for c in w.call("bob", "conversations")]
    w.check_events()


def test_a_linked_device(world: World) -> None:
    w = world
    cid = w.shared["conv"]
    a, b = w.ids["alice"]["user_id"], w.ids["bob"]["user_id"]
    alice_device = w.ids["alice"]["device_id"]

    # The same account in a second profile of this origin: refused (it is one database), nothing changed.
    assert w.call("Ping", "start", "{account: 'alice-again'}") == {"$class": "Ping"}
    w.js("window.again = window.last; await again.ready;")
    w.pages["again"] = w.page
    request = w.call("again", "linkRequest", "'alice again'")
    grant = w.call("alice", "linkGrant", "code", code=request["code"])
    refused = w.fails("again", "linkFinish", "grant", "30", grant=grant["grant"])
    assert refused["name"] == "InvalidInput" and "profile 'alice' of this origin" in refused["message"], refused
    assert w.call("again", "status")["state"] == "linking"  # still pending: the page may cancel it
    assert w.call("again", "linkCancel") == {"state": "none"}
    w.raw_call("again", "terminate")
    assert w.call("alice", "whoami") == w.ids["alice"]
    assert w.call("alice", "profiles")["profiles"] == {"alice": a, "bob": b}

    other = w.other_page("laptop")
    assert w.call("Ping", "start", "{account: 'laptop', dev: true}", _page=other) == {"$class": "Ping"}
    w.js("window.laptop = window.last; listen(laptop, 'laptop');", other)
    ready = w.js("return tag(await laptop.ready);", other)
    w.conforms(ready, DTS.property("Ping", "ready")[2][0], "ready")
    assert ready["stage"] == "ready" and w.js("return laptop.profile;", other) == "laptop"

    # Linking: a request cancelled, then one granted and admitted.
    assert w.call("laptop", "status") == {"state": "none"}
    first = w.call("laptop", "linkRequest", "'laptop'")
    assert w.call("laptop", "status") == {"state": "linking", "request": first["code"], "device_id": first["device_id"],
                                          "label": "laptop"}
    assert w.call("laptop", "linkCancel") == {"state": "none"}
    assert w.call("laptop", "status") == {"state": "none"}
    request = w.call("laptop", "linkRequest", "'laptop'")
    grant = w.call("alice", "linkGrant", "code", code=request["code"])
    assert grant["device_id"] == request["device_id"]
    # Alice's page waits for the new device (not awaited here) while the laptop's page finishes.
    w.js("window.admitting = attempt(api(alice, 'linkAdmit', code, 120));", code=request["code"])
    finished = w.call("laptop", "linkFinish", "grant", "120", grant=grant["grant"])
    got = w.js("return await window.admitting;")
    assert "ok" in got, got
    w.conforms(got["ok"], DTS.returns("Ping", "linkAdmit"), "alice.linkAdmit")
    admitted = untag(got["ok"])
    laptop_device = request["device_id"]
    assert (finished["user_id"], finished["device_id"], finished["label"]) == (a, laptop_device, "laptop")
    assert admitted["device_id"] == laptop_device and admitted["failed"] == [] and admitted["admitted"] >= 1
    devices = w.call("alice", "devices")
    assert {(d["device_id"], d["this"]) for d in devices} == {(alice_device, True), (laptop_device, False)}
    assert w.call("laptop", "profiles") == {"profile": "laptop", "profiles": {"laptop": a}}

    # removeMembers by leaf, then admitDeviceToChats with the laptop's own fresh KeyPackage.
    leaf = next(m["leaf"] for m in w.call("alice", "members", "cid", cid=cid) if m["device_id"] == laptop_device)
    assert w.call("alice", "removeMembers", "cid", "{leaves: [leaf]}", cid=cid, leaf=leaf) == {"removed": 1}
    assert laptop_device not in {m["device_id"] for m in w.call("alice", "members", "cid", cid=cid)}
    kp = w.call("laptop", "freshKeyPackage")
    assert isinstance(kp, bytes) and len(kp) > 64
    outcome = w.call("alice", "admitDeviceToChats", "d", "[{conv: cid, keyPackage: unhex(kp)}]",
                     d=laptop_device, cid=cid, kp=kp.hex())
    assert outcome == {"outcomes": [{"conv": cid, "status": "Admitted", "detail": None}]}
    assert laptop_device in {m["device_id"] for m in w.call("alice", "members", "cid", cid=cid)}

    # addMembers with a given KeyPackage (Alice's main device only), then a history-only snapshot for the laptop.
    own = w.call("bob", "createConversation", "'bob and one device'")["id"]
    alice_kp = w.call("alice", "freshKeyPackage", "{lastResort: false}")
    added = w.call("bob", "addMembers", "c", "[{deviceId: d, keyPackage: unhex(kp)}]", "{userId: a}",
                   c=own, d=alice_device, kp=alice_kp.hex(), a=a)
    assert added == {"added": 1}
    assert [i["inviter"] for i in w.call("alice", "invitations") if i["conv"] == own] == [b]
    accepted = w.call("alice", "acceptInvitation", "c", c=own)
    assert (accepted["id"], accepted["member_count"]) == (own, 2)
    snapshot = w.call("alice", "exportStateSnapshot", "c", c=own)
    imported = w.call("laptop", "importStateSnapshot", "unhex(h)", h=snapshot.hex())
    assert (imported["id"], imported["name"], imported["epoch"]) == (own, "bob and one device", accepted["epoch"])
    assert own in [c["id"] for c in w.call("laptop", "conversations")]

    # The vault of the laptop's account in this context.
    assert w.call("laptop", "vaultStatus") == {"sealed": True, "passphrase": False, "locked": False}
    assert w.call("laptop", "setPassphrase", "'correct horse'") == {"sealed": True, "passphrase": True, "locked": False}
    assert w.call("laptop", "lock") == {"sealed": True, "passphrase": True, "locked": True}
    assert w.fails("laptop", "unlock", "'wrong horse'")["name"] == "StorageLocked"
    assert w.call("laptop", "unlock", "'correct horse'") == {"sealed": True, "passphrase": True, "locked": False}
    assert w.call("laptop", "setPassphrase", "null") == {"sealed": True, "passphrase": False, "locked": False}

    # Revoked: the laptop's next sync says so (error and event); terminate ends its worker.
    assert w.call("alice", "revoke", "d", d=laptop_device)["removed_from"] >= 1
    revoked = w.fails("laptop", "sync")
    assert revoked["name"] == "DeviceRevoked", revoked
    assert len(w.events("laptop", "revoked")) == 1
    w.check_events()
    assert "revoked" in w.seen_events
    assert w.raw_call("laptop", "terminate") == {"$undefined": True}
    assert w.fails("laptop", "whoami")["name"] == "WorkerError"
    unsubscribe = w.js("const off = await api(alice, 'on', 'messages', () => {}); return [tag(off), off(), off()];")
    w.conforms(unsubscribe[0], DTS.returns("Ping", "on"), "on")
    assert unsubscribe[1:] == [True, False]


def test_push_and_the_service_worker(world: World) -> None:
    w = world
    cid = w.shared["conv"]
    assert w.call("alice", "pushStatus") == {"subscriptions": []}
    assert w.call("Ping", "registerServiceWorker") == {"$class": "ServiceWorkerRegistration"}
    with FakePushService() as fake:
        sub = fake.subscriber("alice").as_json()
        enabled = w.js(
            """
            let current = null;
            const registration = { pushManager: {
              async getSubscription() { return current; },
              async subscribe(options) {
                current = { endpoint: sub.endpoint, options, toJSON: () => sub, unsubscribe: async () => true };
                return current;
              },
            } };
            return tag(await api(alice, 'enablePush', { registration, askPermission: false }));
            """,
            sub=sub,
        )
        w.conforms(enabled, DTS.returns("Ping", "enablePush"), "enablePush")
        assert enabled["endpoint"] == sub["endpoint"]
        assert [s["endpoint"] for s in enabled["status"]["subscriptions"]] == [sub["endpoint"]]
        # The real registration has no subscription: disablePush drops every one of this device at the server.
        assert w.call("alice", "disablePush") == {"subscriptions": []}

    # The service worker's cold-start sync decrypts what Bob has not fetched yet.
    sent = w.call("alice", "send", "cid", "unhex(h)", cid=cid, h=b"for the service worker \x00".hex())
    result = w.call("Ping", "swSync", "{timeoutMs: 180000}")
    assert {(a["profile"], a["account"], a["error"]) for a in result["accounts"]} == {
        ("alice", w.ids["alice"]["user_id"], None), ("bob", w.ids["bob"]["user_id"], None)}
    mine = [m for m in result["new"] if m["profile"] == "bob" and m["seq"] == sent["seq"]]
    assert [(m["bytes"], m["account"]) for m in mine] == [(b"for the service worker \x00", w.ids["bob"]["user_id"])]
    history = w.call("bob", "messages", "cid", cid=cid)
    assert history[-1]["seq"] == sent["seq"] and history[-1]["bytes"] == b"for the service worker \x00"
    w.check_events()


def test_every_declared_method_was_called(world: World) -> None:
    """Runs last: the methods this module called are exactly those ping.d.ts declares."""
    called = world.called()
    declared = DTS.public_methods()
    assert declared - called == set(), f"declared in ping.d.ts but never called here: {sorted(declared - called)}"
    assert called - declared == set(), f"called but not declared in ping.d.ts: {sorted(called - declared)}"
    world.check_events()
    # fork-healed and problems: tests/browser/test_fork_healed.py (see the module docstring).
    assert world.seen_events >= DTS.event_types() - {"fork-healed", "problems"}, sorted(world.seen_events)
