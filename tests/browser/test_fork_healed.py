"""A commit spoiled on its way to one browser: the page SDK reports it (``problems``), the
worker rejoins by an external commit (``fork-healed``), and both sides converse again.

Real Chromium, a real ping_server. Alice's page (one browser context) talks to the server
directly; Bob's page (another context) is loaded from a :class:`~tamper_proxy.TamperProxy` on
127.0.0.1 (fault injection, the only fake here), so every request of his worker goes through
it. Armed with the conversation, the proxy flips one bit of the payload of the first Commit
it passes to Bob (RFC 9420 §6: the MLS message is the envelope's payload), as an on-path
attacker would. Bob's worker cannot process that commit: his next sync reports it
(``unreadable``, ``desynced``: the group moved on without him; the message of the epoch it
opened ``held``) and, once that round's state is durable, rejoins from the GroupInfo the server
keeps (an external commit, RFC 9420 §12.4.3.2, replacing his old leaf); the round after reports
``healed``, with ``unreadable`` for the message he missed. The page gets those as ``problems``
events and the rejoin as ``fork-healed``. Afterwards a message goes each way and both are in
one epoch with one exporter secret (RFC 9420 §8.5).

App actions go through the page API only (``api(target, name, ...)`` in the page, each result
and event checked against static/ping.d.ts, tests/browser/dts.py), as in test_page_api.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tamper_proxy import TamperProxy
from test_page_api import DTS, World

HEALED_EVENTS = {"problems", "fork-healed"}


def page_at(w: World, who: str, origin: str) -> Any:
    """:meth:`World.other_page` of ``origin`` (a new browser context whose pages, scripts and API
    calls all go to ``origin``)."""
    server_url, w.server_url = w.server_url, origin
    try:
        return w.other_page(who)
    finally:
        w.server_url = server_url


def start(w: World, who: str, page: Any) -> dict[str, Any]:
    """``Ping.open`` of profile ``who`` in ``page`` (server: the page's origin), listened to, with a
    new account; its ``whoami``."""
    assert w.call("Ping", "open", "{server: location.origin, account: profile, dev: true}", _page=page, profile=who) == {
        "$class": "Ping"
    }
    w.js(f"window.{who} = window.last; listen({who}, '{who}');", page)
    created = w.call(who, "createAccount", "profile", profile=who)
    assert created["error"] is None and created["registered"] is True, created
    return {k: v for k, v in created.items() if k != "error"}


def texts(w: World, who: str, conv: str) -> list[str]:
    """What one ``sync`` of ``who`` returned for ``conv``, as text."""
    return [m["text"] for m in w.call(who, "sync")["messages"] if m["conv"] == conv]


def in_step(w: World, conv: str) -> int:
    """Alice and Bob are in one epoch of ``conv`` with one exporter secret; that epoch."""
    epochs = {who: [c["epoch"] for c in w.call(who, "conversations") if c["id"] == conv] for who in ("alice", "bob")}
    assert epochs["alice"] == epochs["bob"] and len(epochs["alice"]) == 1, epochs
    secrets = {w.call(who, "exportConversationSecret", "c", "'in step'", "unhex('00')", "32", c=conv)
               for who in ("alice", "bob")}
    assert len(secrets) == 1, "one epoch number, two different groups"
    epoch: int = epochs["alice"][0]
    return epoch


@pytest.fixture
def world(browser: Any, server_url: str) -> Iterator[tuple[World, TamperProxy]]:
    with TamperProxy(server_url) as proxy:
        w = World(browser, browser.new_context(), server_url)
        w.pages.clear()  # each of Alice and Bob gets a context of their own (page_at)
        try:
            yield w, proxy
        finally:
            for context in w.contexts:
                context.close()


def test_a_commit_spoiled_on_its_way_to_a_browser_is_healed(world: tuple[World, TamperProxy]) -> None:
    w, proxy = world
    alice_page = page_at(w, "alice", w.server_url)
    bob_page = page_at(w, "bob", proxy.url)
    alice, bob = start(w, "alice", alice_page), start(w, "bob", bob_page)
    conv = w.call("alice", "createConversation", "'heal'")["id"]
    assert w.call("alice", "invite", "c", "b", c=conv, b=bob["user_id"]) == {"added": 1}
    w.call("bob", "sync")
    assert w.call("bob", "acceptInvitation", "c", c=conv)["member_count"] == 2
    w.call("alice", "send", "c", "'before'", c=conv)
    assert texts(w, "bob", conv) == ["before"]
    before = in_step(w, conv)
    assert proxy.spoiled == []

    # Alice's rename is a Commit; the proxy spoils it on its way to Bob. Her next message is of
    # the epoch that commit opens, which Bob never reaches.
    proxy.spoil_next_commit(conv)
    assert w.call("alice", "rename", "c", "'renamed'", c=conv)["epoch"] == before + 1
    missed = w.call("alice", "send", "c", "'missed'", c=conv)
    assert missed["epoch"] == before + 1
    assert texts(w, "bob", conv) == []
    assert proxy.spoiled, "the proxy passed no Commit of the conversation to Bob"
    (commit_seq,) = {seq for _, seq in proxy.spoiled}
    assert commit_seq < missed["seq"]

    # Bob's page is told, in the declared shapes and within that one sync: what could not be
    # read and that he fell out of step, then that he is back (the rejoin his worker makes after
    # flushing the round's deferred checkpoints is collected in the same round).
    w.check_events()
    assert w.seen_events >= HEALED_EVENTS and DTS.event_types() >= HEALED_EVENTS
    assert [e["conv"] for e in w.events("bob", "fork-healed")] == [conv]
    problems = [p for e in w.events("bob", "problems") for p in e["problems"]]
    assert {p["conv"] for p in problems} == {conv}
    # The spoiled commit (unreadable: his group refuses it; desynced: the group moved on without
    # him), Alice's message of the epoch it opened (held for that epoch, then unreadable once he
    # rejoined past it), and the rejoin.
    assert {(p["kind"], p["seq"]) for p in problems} == {
        ("unreadable", commit_seq), ("desynced", commit_seq),
        ("held", missed["seq"]), ("unreadable", missed["seq"]),
        ("healed", None),
    }, problems
    assert w.events("alice", "problems") == [] and w.events("alice", "fork-healed") == []

    # Back in step: Alice takes in Bob's external commit; a message goes each way.
    assert texts(w, "alice", conv) == []
    after = in_step(w, conv)
    assert after == before + 2  # her rename, then his rejoin
    for who in ("alice", "bob"):  # his old leaf was replaced, not kept beside the new one
        roster = w.call(who, "members", "c", c=conv)
        assert sorted(m["user_id"] for m in roster) == sorted([alice["user_id"], bob["user_id"]]), (who, roster)
    w.call("alice", "send", "c", "'after the heal'", c=conv)
    assert texts(w, "bob", conv) == ["after the heal"]
    w.call("bob", "send", "c", "'heard you'", c=conv)
    assert texts(w, "alice", conv) == ["heard you"]
    assert in_step(w, conv) == after
    assert [c["name"] for c in w.call("bob", "conversations") if c["id"] == conv] == ["renamed"]
    w.check_events()
