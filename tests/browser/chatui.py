"""Helpers for the chat tests (test_chat*.py, test_sw*.py): drive the web client like a user.

:class:`ChatUser` wraps a page of the web client: it creates the account
through the onboarding form, clicks through conversations, members and the
composer, and reads what the page shows. ``call`` reaches the worker's RPC
methods directly (state checks: ``dev.sdk.state`` needs ``?dev=1``).
:func:`cli` runs the ``ping`` command line against the same server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pingpage import wait_ready

__all__ = ["ChatUser", "cli", "cli_run", "cli_wait", "UI_TIMEOUT_MS", "ROOT"]

ROOT = Path(__file__).resolve().parents[2]
UI_TIMEOUT_MS = 30_000


class ChatUser:
    """One user's page of the web client."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.user_id = ""
        self.device_id = ""

    @classmethod
    def open(cls, context: Any, server_url: str, *, query: str = "dev=1") -> ChatUser:
        page = context.new_page()
        page.goto(f"{server_url}/?{query}")
        wait_ready(page)
        user = cls(page)
        user._read_identity()
        return user

    def _read_identity(self) -> None:
        status = self.call("account.status")
        if status["state"] == "ready":
            self.user_id, self.device_id = status["user_id"], status["device_id"]
            self.page.wait_for_selector("#app:not([hidden])", timeout=UI_TIMEOUT_MS)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """An RPC call; a failure raises with the worker's error name and message."""
        result = self.page.evaluate(
            """async ([m, p]) => {
                try { return { ok: await window.ping.call(m, p) }; }
                catch (e) { return { error: `${e.name}: ${e.message}` }; }
            }""",
            [method, params or {}],
        )
        if "error" in result:
            raise AssertionError(f"{method}: {result['error']}")
        return result["ok"]

    # -- the UI -----------------------------------------------------------------------

    def create_account(self, label: str) -> None:
        self.page.fill("#label-input", label)
        self.page.click("#create-account")
        self.page.wait_for_selector("#app:not([hidden])", timeout=UI_TIMEOUT_MS)
        self.user_id = self.page.text_content("#me-user-id") or ""
        assert len(self.user_id) == 64, self.user_id
        self.device_id = self.call("account.whoami")["device_id"]

    def create_conversation(self, name: str) -> str:
        self.page.fill("#new-conv-name", name)
        self.page.click("#new-conv")
        self.page.wait_for_function(
            "(name) => document.getElementById('conv-title').textContent === name && !document.getElementById('chat-view').hidden",
            arg=name,
            timeout=UI_TIMEOUT_MS,
        )
        selected = self.page.get_attribute("#conv-list li.selected", "data-id")
        assert isinstance(selected, str) and selected, "the new conversation is not selected"
        return selected

    def wait_conversation(self, conv: str, timeout_ms: int = UI_TIMEOUT_MS) -> None:
        """Wait for ``conv`` in the list; an invitation to it (joining is the user's decision) is
        accepted on the way, as a user would."""
        listed, invited = f'#conv-list li[data-id="{conv}"]', f'#invitations li[data-conv="{conv}"]'
        self.page.wait_for_selector(f"{listed}, {invited}", timeout=timeout_ms)
        if self.page.locator(listed).count() == 0:
            self.page.click(f"{invited} button.accept-invitation")
        self.page.wait_for_selector(listed, timeout=timeout_ms)

    def select(self, conv: str) -> None:
        self.wait_conversation(conv)
        self.page.click(f'#conv-list li[data-id="{conv}"]')
        self.page.wait_for_selector(f'#conv-list li.selected[data-id="{conv}"]', timeout=UI_TIMEOUT_MS)
        self.page.wait_for_selector("#members li.member", timeout=UI_TIMEOUT_MS)

    def invite(self, user_id: str) -> None:
        self.page.fill("#invite-user", user_id)
        self.page.click("#invite-btn")
        self.wait_shown(f'#members li.member[data-user="{user_id}"]')

    def wait_shown(self, selector: str) -> None:
        """Wait for ``selector``; on a timeout, fail with the error the page shows (if any)."""
        try:
            self.page.wait_for_selector(selector, timeout=UI_TIMEOUT_MS)
        except Exception as exc:  # playwright's TimeoutError
            shown = self.page.evaluate(
                "() => [document.getElementById('error').hidden ? null : document.getElementById('error-text').textContent,"
                " document.getElementById('invite-btn').disabled,"
                " [...document.querySelectorAll('#members li.member')].map((li) => li.dataset.user)]"
            )
            worker = self.page.evaluate(  # what the worker holds now: a stale page, or no member at all?
                """async () => {
                    const conv = sessionStorage.getItem('ping.selected');
                    try { return (await window.ping.call('conversation.members', { conv })).map((m) => `leaf ${m.leaf} user ${String(m.user_id).slice(0, 8)} device ${m.device_id.slice(0, 8)}${m.me ? ' (me)' : ''}`); }
                    catch (e) { return `${e.name}: ${e.message}`; }
                }"""
            )
            raise AssertionError(
                f"{selector} did not appear; the page shows the error {shown[0]!r} (an operation still running: {shown[1]};"
                f" members shown: {shown[2]}; the worker's members: {worker})"
            ) from exc

    def remove(self, user_id: str) -> None:
        self.page.click(f'#members li.member[data-user="{user_id}"] button.remove-member')
        self.page.wait_for_selector(
            f'#members li.member[data-user="{user_id}"]', state="detached", timeout=UI_TIMEOUT_MS
        )

    def rename(self, name: str) -> None:
        self.page.fill("#rename-input", name)
        self.page.click("#rename-btn")
        self.wait_title(name)

    def wait_title(self, name: str, timeout_ms: int = UI_TIMEOUT_MS) -> None:
        self.page.wait_for_function(
            "(name) => document.getElementById('conv-title').textContent === name", arg=name, timeout=timeout_ms
        )

    def send(self, text: str) -> None:
        """Type and press Enter; returns once the page shows the message as sent."""
        before = self.page.locator("#messages li.msg.own").count()
        self.page.fill("#composer-text", text)
        self.page.press("#composer-text", "Enter")
        self.page.wait_for_function(
            "(n) => document.querySelectorAll('#messages li.msg.own').length > n", arg=before, timeout=UI_TIMEOUT_MS
        )

    def wait_message(self, text: str, timeout_ms: int = UI_TIMEOUT_MS) -> dict[str, Any]:
        """Wait until the open conversation shows ``text``; its sender line and attributes."""
        self.page.wait_for_function(
            "(t) => [...document.querySelectorAll('#messages li.msg .text')].some((e) => e.textContent === t)",
            arg=text,
            timeout=timeout_ms,
        )
        found: dict[str, Any] = self.page.evaluate(
            """(t) => {
                const li = [...document.querySelectorAll('#messages li.msg')].find((e) => e.querySelector('.text').textContent === t);
                return { sender: li.querySelector('.sender').textContent, time: li.querySelector('time').textContent,
                         own: li.dataset.own === '1', user: li.dataset.user, seq: Number(li.dataset.seq) };
            }""",
            text,
        )
        # The sender line is "label · account" (a device label is free text: shown beside the
        # verified account, never instead of it): "sender" is the label, "account" the short id.
        line = found["sender"]
        found["sender_line"] = line
        if " · " in line:
            found["sender"], found["account"] = line.split(" · ", 1)
            assert found["user"].startswith(found["account"].split("…")[0]), line
        return found

    @classmethod
    def request_link(cls, context: Any, server_url: str, label: str) -> tuple[Any, str]:
        """A new profile's page asks to be linked: (page, request code)."""
        page = context.new_page()
        page.goto(server_url + "/?dev=1")
        wait_ready(page)
        page.fill("#link-label", label)
        page.click("#link-request")
        page.wait_for_function(
            "() => document.getElementById('link-request-code').value.length > 20", timeout=UI_TIMEOUT_MS
        )
        return page, page.input_value("#link-request-code")

    def grant_link(self, request: str) -> str:
        """Devices -> Link a new device: paste ``request``; the grant code shown."""
        self.page.evaluate("() => { document.getElementById('link-accept-box').open = true; }")
        before = self.page.input_value("#link-grant-code")
        self.page.fill("#link-accept-request", request)
        self.page.click("#link-accept")
        self.page.wait_for_function(
            "(old) => { const g = document.getElementById('link-grant-code').value; return g.length > 20 && g !== old; }",
            arg=before,
            timeout=UI_TIMEOUT_MS,
        )
        grant: str = self.page.input_value("#link-grant-code")
        return grant

    def wait_linked(self) -> None:
        self.page.wait_for_function(
            "() => document.getElementById('link-accept-status').textContent.startsWith('Linked')",
            timeout=UI_TIMEOUT_MS,
        )

    def shown_texts(self) -> list[str]:
        texts: list[str] = self.page.eval_on_selector_all(
            "#messages li.msg .text", "(els) => els.map((e) => e.textContent)"
        )
        return texts

    def member_ids(self) -> set[str]:
        return set(self.page.eval_on_selector_all("#members li.member", "(els) => els.map((e) => e.dataset.user)"))

    def state(self) -> dict[str, Any]:
        """Per conversation: epoch and an exported secret (equal on every member iff no fork)."""
        state: dict[str, Any] = self.call("dev.sdk.state")
        return state


def cli_run(server_url: str, state: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ping_core --server URL --state DIR ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "ping_core", "--server", server_url, "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def cli(server_url: str, state: Path, *args: str, timeout: float = 120) -> str:
    """:func:`cli_run`'s stdout; fails on a non-zero status."""
    proc = cli_run(server_url, state, *args, timeout=timeout)
    assert proc.returncode == 0, f"ping {' '.join(args)}: {proc.stderr.strip()}"
    return proc.stdout


def cli_wait(server_url: str, state: Path, expect: str, timeout: float = 60) -> list[str]:
    """Run ``ping sync`` until a line contains ``expect``; all lines seen."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        seen += cli(server_url, state, "sync", "--auto-join").splitlines()  # the CLI user joins what it is invited to
        if any(expect in line for line in seen):
            return seen
        assert time.monotonic() < deadline, f"{expect!r} never came; saw {seen}"
        time.sleep(0.5)
