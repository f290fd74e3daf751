"""The ``ping`` command line end to end: three users (and a linked second device) chat through a real
server process using only ``python -m ping_core`` commands, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from serverproc import ServerProcess

from ping_core.connect import KEY_PACKAGE_TARGET, connect
from ping_core.ids import DeviceId

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: list[str]
    err: str


class User:
    def __init__(self, server: str, state: Path) -> None:
        self.server = server
        self.state = state
        self.user = ""
        self.device = ""

    def args(self, *cmd: str) -> list[str]:
        return [sys.executable, "-m", "ping_core", "--server", self.server, "--state", str(self.state), *cmd]

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(ROOT))

    def run(self, *cmd: str, ok: bool = True) -> Run:
        proc = subprocess.run(self.args(*cmd), cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=120)
        run = Run(proc.returncode, proc.stdout.splitlines(), proc.stderr)
        if ok:
            assert run.code == 0, f"ping {' '.join(cmd)} failed ({run.code}): {run.err}"
        return run

    def init(self, label: str) -> "User":
        out = self.run("init", "--label", label).out
        assert out[0].startswith("user ") and out[1].startswith("device ")
        self.user, self.device = out[0].split()[1], out[1].split()[1]
        return self

    def sync(self) -> list[str]:
        return self.run("sync").out


def test_three_users_and_a_linked_device(server: ServerProcess, tmp_path: Path) -> None:
    alice = User(server.url, tmp_path / "alice").init("alice-phone")
    bob = User(server.url, tmp_path / "bob").init("bob-phone")
    carol = User(server.url, tmp_path / "carol").init("carol-phone")
    assert alice.run("whoami").out == [f"user {alice.user}", f"device {alice.device} alice-phone"]
    assert alice.run("init", "--label", "again").out[0] == f"user {alice.user}"  # idempotent

    # Two users: create, invite, send, sync.
    (chat,) = alice.run("create", "lunch").out
    assert len(chat) == 32
    assert alice.run("invite", chat, bob.user).out == ["invited 1 device"]
    # Joining is bob's decision: the invitation waits, shown with alice's verified account.
    first = bob.run("sync")
    assert first.out == [] and f"invitation to {chat} lunch from {alice.user} (2 members)" in first.err
    assert bob.run("invitations").out == [f"invitation to {chat} lunch from {alice.user} (2 members)"]
    assert bob.run("accept", chat).out == [f"joined {chat}"]
    assert bob.run("invitations").out == []
    alice.run("send", chat, "hi bob")
    assert bob.sync() == [f"{chat} {alice.user}: hi bob"]
    bob.run("send", chat, "hi alice")
    assert alice.sync() == [f"{chat} {bob.user}: hi alice"]
    alice.run("rename", chat, "dinner")
    bob.sync()
    assert any(line.startswith(f"{chat} dinner ") and "members=2" in line for line in bob.run("list").out)

    # Three users.
    alice.run("invite", chat, carol.user)
    carol.run("sync", "--auto-join")
    carol.run("send", chat, "hello all")
    assert alice.sync() == [f"{chat} {carol.user}: hello all"]
    assert bob.sync() == [f"{chat} {carol.user}: hello all"]
    members = alice.run("members", chat).out
    assert sorted(line.split()[0] for line in members) == sorted([alice.user, bob.user, carol.user])

    # Remove bob: he reads nothing after that.
    assert alice.run("remove", chat, bob.user).out == ["removed 1 device"]
    alice.run("send", chat, "bob is gone")
    assert carol.sync() == [f"{chat} {alice.user}: bob is gone"]
    assert bob.sync() == []
    failed = bob.run("send", chat, "am I?", ok=False)
    assert failed.code == 1 and failed.err.startswith("ping: error:") and len(failed.err.strip().splitlines()) == 1

    # Link a second device of alice's account.
    laptop = User(server.url, tmp_path / "alice-laptop")
    (request,) = laptop.run("link-new", "--label", "alice-laptop").out
    accept = subprocess.Popen(
        alice.args("link-accept", request, "--timeout", "60"), cwd=ROOT, env=alice.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert accept.stdout is not None
        grant = accept.stdout.readline().strip()
        finished = laptop.run("link-new", "--grant", grant, "--timeout", "60").out
        rest, err = accept.communicate(timeout=60)
    finally:
        if accept.poll() is None:
            accept.kill()
    assert accept.returncode == 0, err
    assert finished[0] == f"user {alice.user}"
    laptop.device = finished[1].split()[1]
    assert rest.strip() == f"linked {laptop.device}"
    laptop.sync()  # joins the chats whose Welcomes came after the ticket
    assert chat in " ".join(laptop.run("list").out)
    devices = alice.run("devices").out
    assert sorted(devices) == sorted([f"{alice.device} alice-phone (this device)", f"{laptop.device} alice-laptop"])
    alice.run("send", chat, "to my laptop too")
    assert laptop.sync() == [f"{chat} {alice.user}: to my laptop too"]
    laptop.run("send", chat, "from the laptop")
    assert carol.sync() == [f"{chat} {alice.user}: to my laptop too", f"{chat} {alice.user}: from the laptop"]

    # Revoke the laptop: it is refused from then on.
    assert alice.run("revoke", laptop.device).out[0].startswith("revoked")
    assert alice.run("devices").out == [f"{alice.device} alice-phone (this device)"]
    refused = laptop.run("send", chat, "still here?", ok=False)
    assert refused.code == 1 and ("403" in refused.err or "DeviceRevoked" in refused.err)
    carol.run("send", chat, "after the revocation")
    assert alice.sync() == [f"{chat} {carol.user}: after the revocation"]

    # A declined invitation ends the membership the Welcome opened on the server.
    dave = User(server.url, tmp_path / "dave").init("dave-phone")
    (other,) = carol.run("create", "carol's").out
    carol.run("invite", other, dave.user)
    assert [line.split()[2] for line in dave.run("invitations").out] == [other]
    assert dave.run("decline", other).out == ["declined"]
    assert dave.run("invitations").out == [] and dave.run("list").out == [
        line for line in dave.run("list").out if "(device group)" in line
    ]
    assert dave.run("send", other, "let me in", ok=False).code == 1


def test_errors_are_one_line(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    nobody = User(sqlite_server.url, tmp_path / "nobody")
    run = nobody.run("sync", ok=False)
    assert run.code == 1 and run.err.strip().splitlines() == [f"ping: error: {nobody.state} is not initialized: run `ping init --label NAME` first"]
    me = User(sqlite_server.url, tmp_path / "me").init("me")
    for cmd in (("send", "00" * 16, "x"), ("invite", "zz", me.user), ("members", "11" * 16), ("revoke", "00" * 32)):
        run = me.run(*cmd, ok=False)
        assert run.code == 1 and len(run.err.strip().splitlines()) == 1 and run.err.startswith("ping: error:"), (cmd, run.err)
    usage = me.run("send", ok=False)
    assert usage.code == 2
    offline = User("http://127.0.0.1:9", tmp_path / "me")
    run = offline.run("sync", ok=False)
    assert run.code == 1 and "no answer" in run.err


def test_watch_tops_up_key_packages(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    """``ping watch`` checks the device's KeyPackage stock (here every 0.3 s) and refills it when
    others have claimed it low; the last-resort KeyPackage stays the same."""
    alice = User(sqlite_server.url, tmp_path / "alice").init("alice")
    bob = User(sqlite_server.url, tmp_path / "bob").init("bob")

    async def claim(count: int) -> list[bytes]:
        client = await connect(sqlite_server.url, bob.state, key_packages=0)
        try:
            return await client.transport.claim_device_key_packages(DeviceId.from_hex(alice.device), count)
        finally:
            await client.transport.aclose()  # type: ignore[attr-defined]

    watch = subprocess.Popen(
        alice.args("watch", "--interval", "0.1", "--topup-interval", "0.3"), cwd=ROOT, env=alice.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert watch.stderr is not None
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in watch.stderr], daemon=True).start()  # type: ignore[union-attr]
    try:
        assert lines.get(timeout=60).startswith("ping: watching")  # connected (its stock was full: nothing published)
        first = asyncio.run(claim(KEY_PACKAGE_TARGET + 1))  # every one-time KeyPackage, then the last resort
        assert len(set(first)) == KEY_PACKAGE_TARGET + 1
        assert lines.get(timeout=60) == f"ping: published {KEY_PACKAGE_TARGET} KeyPackages"
        again = asyncio.run(claim(KEY_PACKAGE_TARGET + 1))
        assert not set(again[:-1]) & set(first) and again[-1] == first[-1]  # fresh ones; the same last resort
        assert lines.get(timeout=60) == f"ping: published {KEY_PACKAGE_TARGET} KeyPackages"
        assert watch.poll() is None
    finally:
        watch.terminate()
        watch.communicate(timeout=30)


def test_watch_prints_news_at_once_not_at_its_interval(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    """``ping watch`` waits on the server's watch (all conversations and the Welcome inbox): with
    30 s between syncs, a new chat and a message in it are printed within seconds."""
    alice = User(sqlite_server.url, tmp_path / "alice").init("alice")
    bob = User(sqlite_server.url, tmp_path / "bob").init("bob")
    watch = subprocess.Popen(
        bob.args("watch", "--interval", "30", "--auto-join"), cwd=ROOT, env=bob.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out: queue.Queue[str] = queue.Queue()
    err: queue.Queue[str] = queue.Queue()

    def pump(stream: Iterable[str] | None, lines: queue.Queue[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.put(line.strip())

    threading.Thread(target=pump, args=(watch.stdout, out), daemon=True).start()
    threading.Thread(target=pump, args=(watch.stderr, err), daemon=True).start()
    try:
        assert err.get(timeout=60).startswith("ping: watching")
        time.sleep(0.5)  # in its wait for news
        (chat,) = alice.run("create", "lunch").out
        alice.run("invite", chat, bob.user)
        assert err.get(timeout=10) == f"ping: joined {chat}"  # the Welcome ended the wait
        time.sleep(0.5)
        alice.run("send", chat, "hi bob")
        assert out.get(timeout=10) == f"{chat} {alice.user}: hi bob"  # within seconds, not 30
        assert watch.poll() is None
    finally:
        watch.terminate()
        watch.communicate(timeout=30)
