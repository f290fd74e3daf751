"""The web chat end to end: real Chromium, a real ping_server process, real IndexedDB.

Users act through the page (forms, buttons, the composer) as a person would;
RPC calls only read state for the checks (``dev.sdk.state``: per conversation
the epoch and an exported secret, equal on every member exactly when nobody
forked). Alice and Bob live in two browser contexts (two profiles) shared by
the tests of this module; each test makes its own conversations.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatui import ROOT, UI_TIMEOUT_MS, ChatUser, cli, cli_run, cli_wait
from pingpage import wait_ready


@pytest.fixture(scope="module")
def pair(browser: Any, server_url: str) -> Iterator[tuple[ChatUser, ChatUser]]:
    """Alice and Bob, each with an account in a browser context of their own."""
    contexts = [browser.new_context(), browser.new_context()]
    try:
        alice = ChatUser.open(contexts[0], server_url)
        bob = ChatUser.open(contexts[1], server_url)
        alice.create_account("alice")
        bob.create_account("bob")
        yield alice, bob
    finally:
        for context in contexts:
            context.close()


def _same_group(users: list[ChatUser], conv: str) -> dict[str, Any]:
    """Every user's view of ``conv`` (epoch, exported secret); asserts they agree."""
    views: list[dict[str, Any]] = [u.state()["conversations"][conv] for u in users]
    assert all(v == views[0] for v in views), views
    return views[0]


def test_two_users_chat_rename_and_remove(pair: tuple[ChatUser, ChatUser]) -> None:
    alice, bob = pair
    conv = alice.create_conversation("lunch")
    alice.invite(bob.user_id)
    assert alice.member_ids() == {alice.user_id, bob.user_id}

    # Bob's live sync joins from his Welcome inbox; the list shows the name.
    bob.wait_conversation(conv)
    assert bob.page.text_content(f'#conv-list li[data-id="{conv}"] .name') == "lunch"
    bob.select(conv)
    assert bob.member_ids() == {alice.user_id, bob.user_id}

    alice.send("hello bob")
    got = bob.wait_message("hello bob")
    assert got["sender"] == "alice" and not got["own"] and got["user"] == alice.user_id
    assert got["account"] == alice.user_id[:8] + "…"  # the label is shown beside the verified account
    assert got["time"]  # a clock time is shown
    bob.send("hi alice, what time?")
    assert alice.wait_message("hi alice, what time?")["sender"] == "bob"
    alice.send("12:30")
    bob.wait_message("12:30")
    assert bob.shown_texts() == alice.shown_texts() == ["hello bob", "hi alice, what time?", "12:30"]

    # Bob renames; Alice sees it in the title and the list.
    bob.rename("team lunch")
    alice.wait_title("team lunch")
    alice.page.wait_for_selector(f'#conv-list li[data-id="{conv}"] .name:text-is("team lunch")', timeout=UI_TIMEOUT_MS)
    view = _same_group([alice, bob], conv)
    assert view["epoch"] == 2  # add bob, rename

    # Alice removes Bob: he sees it, cannot send, and reads nothing new.
    alice.remove(bob.user_id)
    assert alice.member_ids() == {alice.user_id}
    bob.page.wait_for_selector("#not-member:not([hidden])", timeout=UI_TIMEOUT_MS)
    assert bob.page.is_disabled("#composer-text")
    alice.send("bob cannot read this")
    bob.call("sync.run")
    texts = [m["text"] for m in bob.call("conversation.messages", {"conv": conv})]
    assert "bob cannot read this" not in texts and "12:30" in texts
    assert alice.state()["conversations"][conv]["epoch"] == 3


def test_reload_keeps_conversations_and_history(pair: tuple[ChatUser, ChatUser]) -> None:
    alice, bob = pair
    conv = alice.create_conversation("reload")
    alice.invite(bob.user_id)
    bob.select(conv)
    alice.send("before reload 1")
    bob.wait_message("before reload 1")
    bob.send("before reload 2")
    alice.wait_message("before reload 2")

    alice.page.reload()
    wait_ready(alice.page)
    alice.page.wait_for_selector("#app:not([hidden])", timeout=UI_TIMEOUT_MS)
    assert alice.call("account.whoami")["user_id"] == alice.user_id
    alice.select(conv)  # the page also reopens it by itself (sessionStorage); be explicit
    alice.wait_message("before reload 2")
    assert alice.shown_texts() == ["before reload 1", "before reload 2"]

    # Sending goes on after the reload without reusing a ratchet generation: Bob decrypts.
    alice.send("after reload")
    bob.wait_message("after reload")
    bob.send("welcome back")
    alice.wait_message("welcome back")
    _same_group([alice, bob], conv)


def test_browser_restart_keeps_state(
    browser_type: Any,
    browser_type_launch_args: dict[str, Any],
    server_url: str,
    pair: tuple[ChatUser, ChatUser],
    tmp_path: Path,
) -> None:
    _, bob = pair
    profile = tmp_path / "carol-profile"

    def launch() -> tuple[Any, ChatUser]:
        context = browser_type.launch_persistent_context(str(profile), **browser_type_launch_args)
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(server_url + "/?dev=1")
        wait_ready(page)
        user = ChatUser(page)
        user._read_identity()
        return context, user

    context, carol = launch()
    try:
        carol.create_account("carol")
        conv = carol.create_conversation("restart")
        carol.invite(bob.user_id)
        bob.select(conv)
        for i in range(3):
            carol.send(f"carol {i}")
        bob.wait_message("carol 2")
        bob.send("bob 0")
        carol.wait_message("bob 0")
        user_id = carol.user_id
    finally:
        context.close()  # the browser exits: only the profile folder remains

    context, carol = launch()
    try:
        assert carol.user_id == user_id
        carol.select(conv)
        carol.wait_message("bob 0")
        assert carol.shown_texts() == ["carol 0", "carol 1", "carol 2", "bob 0"]
        carol.send("carol after restart")  # a reused generation would not decrypt at Bob
        bob.wait_message("carol after restart")
        bob.send("bob after restart")
        carol.wait_message("bob after restart")
        _same_group([carol, bob], conv)
    finally:
        context.close()


def test_cli_user_and_browser_user_converse(pair: tuple[ChatUser, ChatUser], server_url: str, tmp_path: Path) -> None:
    alice, _ = pair
    dave = tmp_path / "dave"
    out = cli(server_url, dave, "init", "--label", "dave-cli")
    dave_id = out.split()[1]

    # Browser creates and invites the CLI user.
    conv = alice.create_conversation("browser+cli")
    alice.invite(dave_id)
    alice.send("hi dave")
    lines = cli_wait(server_url, dave, "hi dave")
    assert f"{conv} {alice.user_id}: hi dave" in lines

    # The CLI user answers and renames; the page shows both.
    cli(server_url, dave, "send", conv, "hi alice, from the terminal")
    got = alice.wait_message("hi alice, from the terminal")
    assert got["sender"] == "dave-cli" and got["user"] == dave_id
    cli(server_url, dave, "rename", conv, "mixed")
    alice.wait_title("mixed")
    assert cli(server_url, dave, "members", conv).count("\n") == 2

    # The CLI creates a conversation and invites the browser user.
    conv2 = cli(server_url, dave, "create", "from the cli").strip()
    cli(server_url, dave, "invite", conv2, alice.user_id)
    cli(server_url, dave, "send", conv2, "welcome to my chat")
    alice.select(conv2)
    alice.wait_message("welcome to my chat")
    alice.send("thanks")
    cli_wait(server_url, dave, f"{conv2} {alice.user_id}: thanks")
    listing = cli(server_url, dave, "list")
    epochs = {line.split()[0]: line.rsplit("epoch=", 1)[1] for line in listing.splitlines()}
    state = alice.state()["conversations"]
    assert epochs[conv] == str(state[conv]["epoch"]) and epochs[conv2] == str(state[conv2]["epoch"])


def test_two_tabs_of_one_user_do_not_fork(browser: Any, server_url: str, pair: tuple[ChatUser, ChatUser]) -> None:
    _, bob = pair
    context = browser.new_context()
    try:
        tab1 = ChatUser.open(context, server_url)
        tab1.create_account("erin")
        tab2 = ChatUser.open(context, server_url)  # same profile: same IndexedDB, same account
        assert (tab2.user_id, tab2.device_id) == (tab1.user_id, tab1.device_id)

        conv = tab1.create_conversation("two tabs")
        tab1.invite(bob.user_id)
        tab2.select(conv)
        bob.select(conv)

        # Both tabs send at the same time, interleaved, while tab 2 also renames:
        # every operation takes the account's Web Lock and reloads what the
        # other tab wrote, so no ratchet generation or epoch is used twice.
        n = 6
        start = """(args) => { const [conv, prefix, n] = args;
            window._sent = (async () => { for (let i = 0; i < n; i++) await window.ping.send(conv, `${prefix} ${i}`); })(); }"""
        tab1.page.evaluate(start, [conv, "tab1", n])
        tab2.page.evaluate(start, [conv, "tab2", n])
        tab2.call("conversation.rename", {"conv": conv, "name": "renamed by tab 2"})
        tab1.page.evaluate("() => window._sent")
        tab2.page.evaluate("() => window._sent")

        expected = {f"tab{t} {i}" for t in (1, 2) for i in range(n)}
        for i in range(n):
            bob.wait_message(f"tab1 {i}")
            bob.wait_message(f"tab2 {i}")
        bob.wait_title("renamed by tab 2")
        assert expected <= set(bob.shown_texts())
        # Each tab shows the other's messages too (events between tabs).
        for tab in (tab1, tab2):
            tab.wait_message("tab1 5")
            tab.wait_message("tab2 5")
        view = _same_group([tab1, tab2, bob], conv)
        assert view["epoch"] == 2  # add bob, one rename
        stored = tab1.call("conversation.messages", {"conv": conv})
        assert len({m["seq"] for m in stored}) == len(stored) >= 2 * n
        assert tab1.state()["reloads"] + tab2.state()["reloads"] > 0  # they did take turns
    finally:
        context.close()


def test_link_a_cli_device_then_revoke_it(pair: tuple[ChatUser, ChatUser], server_url: str, tmp_path: Path) -> None:
    alice, bob = pair
    conv = alice.create_conversation("linked")
    alice.invite(bob.user_id)
    alice.send("history before the link")

    # The new device (command line) asks; the browser grants and admits it.
    laptop = tmp_path / "alice-laptop"
    request = cli(server_url, laptop, "link-new", "--label", "alice-cli").strip()
    page = alice.page
    grant = alice.grant_link(request)
    finish = cli_run(server_url, laptop, "link-new", "--grant", grant, "--timeout", "60")
    assert finish.returncode == 0, finish.stderr
    assert finish.stdout.split()[1] == alice.user_id
    laptop_device = finish.stdout.split()[3]
    alice.wait_linked()
    page.wait_for_selector(f'#devices li.device[data-device="{laptop_device}"]', timeout=UI_TIMEOUT_MS)

    # The laptop is in the chat: it reads new messages from Alice's browser and Bob.
    bob.select(conv)
    alice.send("to both of my devices")
    bob.send("bob says hi to all of alice")
    lines = cli_wait(server_url, laptop, "bob says hi to all of alice")
    assert f"{conv} {alice.user_id}: to both of my devices" in lines
    cli(server_url, laptop, "send", conv, "alice from the terminal")
    bob.wait_message("alice from the terminal")
    got = alice.wait_message("alice from the terminal")
    assert got["sender"] == "alice-cli" and got["sender_line"].endswith("(you, other device)")

    # Revoked from the browser: out of the chat, refused by the server.
    page.click(f'#devices li.device[data-device="{laptop_device}"] button.revoke-device')
    page.wait_for_selector(
        f'#devices li.device[data-device="{laptop_device}"]', state="detached", timeout=UI_TIMEOUT_MS
    )
    alice.send("after the revocation")
    bob.wait_message("after the revocation")
    proc = cli_run(server_url, laptop, "sync")
    assert "after the revocation" not in proc.stdout
    _same_group([alice, bob], conv)


def test_link_this_browser_to_a_cli_account(browser: Any, server_url: str, tmp_path: Path) -> None:
    phone = tmp_path / "frank-phone"
    frank_id = cli(server_url, phone, "init", "--label", "frank-cli").split()[1]
    conv = cli(server_url, phone, "create", "frank's chat").strip()
    cli(server_url, phone, "send", conv, "from before the browser")

    context = browser.new_context()
    try:
        page, request = ChatUser.request_link(context, server_url, "frank-browser")
        accept = subprocess.Popen(
            [sys.executable, "-m", "ping_core", "--server", server_url, "--state", str(phone), "link-accept", request, "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert accept.stdout is not None
            grant = accept.stdout.readline().strip()
            page.fill("#link-grant", grant)
            page.click("#link-finish")
            page.wait_for_selector("#app:not([hidden])", timeout=60_000)
            out, err = accept.communicate(timeout=60)
            assert accept.returncode == 0, err
            assert "linked" in out
        finally:
            if accept.poll() is None:
                accept.kill()
                accept.wait()
        browser_user = ChatUser(page)
        browser_user._read_identity()
        assert browser_user.user_id == frank_id
        browser_user.select(conv)
        cli(server_url, phone, "send", conv, "to my new browser")
        browser_user.wait_message("to my new browser")
        browser_user.send("browser to phone")
        cli_wait(server_url, phone, "browser to phone")
    finally:
        context.close()


def test_link_a_second_browser_which_gets_the_history(
    browser: Any, server_url: str, pair: tuple[ChatUser, ChatUser]
) -> None:
    alice, bob = pair
    conv = alice.create_conversation("history")
    alice.invite(bob.user_id)
    bob.select(conv)
    alice.send("said before the laptop existed")
    bob.send("bob too")
    alice.wait_message("bob too")

    context = browser.new_context()
    try:
        page, request = ChatUser.request_link(context, server_url, "alice-laptop")
        page.fill("#link-grant", alice.grant_link(request))
        page.click("#link-finish")
        page.wait_for_selector("#app:not([hidden])", timeout=60_000)
        alice.wait_linked()
        laptop = ChatUser(page)
        laptop._read_identity()
        assert laptop.user_id == alice.user_id and laptop.device_id != alice.device_id

        # What was said before the link: from the ticket (MLS cannot decrypt the past).
        laptop.select(conv)
        laptop.wait_message("bob too")
        assert laptop.shown_texts() == ["said before the laptop existed", "bob too"]
        got = laptop.wait_message("said before the laptop existed")
        assert got["sender"] == "alice" and got["sender_line"].endswith("(you, other device)")
        # And it is a full member now.
        bob.send("hello laptop")
        laptop.wait_message("hello laptop")
        laptop.send("typed on the laptop")
        bob.wait_message("typed on the laptop")
        alice.wait_message("typed on the laptop")
        _same_group([alice, laptop, bob], conv)
    finally:
        context.close()


def test_news_in_a_conversation_not_on_screen_shows_within_a_round_trip(pair: tuple[ChatUser, ChatUser]) -> None:
    """Bob's worker long-polls ALL his conversations and his Welcome inbox (one ``POST /v1/watch``).
    His sync rounds are set 10 minutes apart here, so only that long poll can bring a new chat
    (its Welcome) and a message in a chat he is not looking at within a couple of seconds."""
    alice, bob = pair
    bob.call("live.start", {"interval_ms": 600_000})
    bob.page.wait_for_timeout(300)  # the round live.start may have woken is over
    try:
        on_screen = alice.create_conversation("on screen")
        alice.invite(bob.user_id)
        bob.wait_conversation(on_screen, timeout_ms=5000)  # the Welcome woke the round
        elsewhere = alice.create_conversation("elsewhere")
        alice.invite(bob.user_id)
        bob.wait_conversation(elsewhere, timeout_ms=5000)
        bob.select(on_screen)
        bob.page.wait_for_timeout(300)
        for i in range(3):
            text = f"psst {i}, over here"
            alice.send(text)
            # 5 s against rounds 600 s apart: only the watch can have brought it (speed: benchmarks/).
            preview = f'#conv-list li[data-id="{elsewhere}"] .preview'
            bob.page.wait_for_selector(f'{preview}:has-text("{text}")', timeout=5000)
            # The sender is its verified account, with its label beside it once known.
            assert bob.page.text_content(preview).endswith(f"{alice.user_id[:8]}…: {text}")
        assert bob.page.get_attribute("#conv-list li.selected", "data-id") == on_screen
    finally:
        bob.call("live.start", {"interval_ms": 2000})
