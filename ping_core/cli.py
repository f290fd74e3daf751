"""``ping``: the command line (console script ``ping`` and ``python -m ping_core``).

::

    ping --server URL --state DIR init --label NAME      prints "user <hex>" and "device <hex>"
    ping ... whoami | list | devices
    ping ... create NAME                                 prints the conversation id
    ping ... invite CONV USER_ID                         adds every device of that user
    ping ... send CONV TEXT
    ping ... sync [--auto-join]                          prints "CONV_ID SENDER_USER_ID: TEXT" per new message
    ping ... invitations | accept CONV | decline CONV    invitations wait for the user (unless --auto-join)
    ping ... watch [--interval S] [--topup-interval S]   sync on news until interrupted (and keep KeyPackages topped up)
    ping ... members CONV | rename CONV NAME | remove CONV USER_ID | revoke DEVICE_ID
    ping ... link-new --label NAME                       (new device) prints a request code
    ping ... link-accept REQUEST [--with-account-key]    (device with the account key) prints a grant code, waits, admits
    ping ... link-new --grant GRANT                      (new device) joins the account and its chats

``--server`` and ``--state`` default to ``$PING_SERVER`` and ``$PING_STATE``.
Each command opens the state folder with :func:`ping_core.connect` and closes
it again. Exit status 0 on success; any failure is one line on stderr
(``ping: error: ...``) and status 1 (2 for a usage error).

Linking a device (the account key moves sealed, never in a code in clear):

1. the new device: ``link-new --label L`` makes its device key and a one-time
   X25519 link key pair (kept in the state folder, owner-only) and prints the
   request code (device id and link public key, nothing secret);
2. a device holding the account key: ``link-accept REQUEST`` prints the
   grant code (the account's binding of the new device, and with
   ``--with-account-key`` the account key too, sealed with HPKE to the link
   key), then waits for
   the new device to register, adds it to the DeviceGroup (its linking ticket,
   sealed to the same key, travels through the new device's Welcome inbox)
   and to every chat, and prints ``linked <device>``;
3. the new device: ``link-new --grant GRANT`` opens the grant, registers,
   waits for the ticket, joins the DeviceGroup, imports the history snapshot
   and joins the chats whose Welcomes have arrived (``sync`` joins later ones).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

from ping_core.account import admit_new_device, claim_new_device, invite_user, list_devices, take_welcomes, top_up_key_packages
from ping_core.client import MessagingClient
from ping_core.invitation import Invitation
from ping_core.errors import InvalidInput, PingError, TransportError
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.link import LinkKeyPair, LinkRequestCode, PendingLink, open_grant, seal_grant
from ping_core.transport.base import MAX_FETCH_WAIT_MS

__all__ = ["main"]

_PENDING_LINK = "link-pending"
_WAIT_SECONDS = 300.0


class CliError(Exception):
    """A failure to report as one line (the message is for the user)."""


def _now() -> int:
    return time.time_ns() // 1_000_000


def _out(line: str) -> None:
    print(line, flush=True)


def _conv(text: str) -> ConversationId:
    return ConversationId.from_hex(text)


# Unicode categories that must never reach a terminal from a peer: controls (ESC sequences,
# CR, newlines that would let a member print a fake line), format characters (bidi overrides
# that reorder what follows), line/paragraph separators, surrogates and private use.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _printable(text: str) -> str:
    """``text`` with every character a peer could use to forge or hide output replaced by U+FFFD."""
    return "".join("\ufffd" if unicodedata.category(ch) in _UNPRINTABLE else ch for ch in text)


def _display(text: bytes) -> str:
    """A message's bytes as one line of printable text."""
    return _printable(text.decode("utf-8", errors="replace"))


# ---------------------------------------------------------------------------
# Commands that need an initialized client


async def _open(args: argparse.Namespace, *, label: str = "device", **kwargs: Any) -> MessagingClient:
    from ping_core.connect import HOST_DB, connect

    if not args.server:
        raise CliError("no server: give --server URL (or set PING_SERVER)")
    if not kwargs and not (Path(args.state) / HOST_DB).exists():
        raise CliError(f"{args.state} is not initialized: run `ping init --label NAME` first")
    return await connect(args.server, args.state, label, **kwargs)


async def _close(client: MessagingClient) -> None:
    close = getattr(client.transport, "aclose", None)
    if close is not None:
        await close()


async def _with_client(args: argparse.Namespace, run: Callable[[MessagingClient], Awaitable[None]]) -> None:
    client = await _open(args)
    try:
        await run(client)
    finally:
        await _close(client)


async def cmd_init(args: argparse.Namespace) -> None:
    client = await _open(args, label=args.label, identity=None)
    try:
        _out(f"user {client.user_id().as_hex()}")
        _out(f"device {client.device_id().as_hex()}")
    finally:
        await _close(client)


async def cmd_whoami(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        info = c.device_info(_now())
        _out(f"user {c.user_id().as_hex()}")
        _out(f"device {c.device_id().as_hex()} {_printable(info.label)}")

    await _with_client(args, run)


async def cmd_create(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        _out((await c.create_conversation(args.name, _now())).as_hex())

    await _with_client(args, run)


async def cmd_invite(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        conv = _conv(args.conv)
        user = UserId.from_hex(args.user_id)
        added = await invite_user(c, conv, user, _now(), required=False)
        if not added:
            raise CliError("that user has no device to add (none registered, or all already members)")
        _out(f"invited {added} device{'s' if added != 1 else ''}")

    await _with_client(args, run)


async def cmd_send(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        await c.send(_conv(args.conv), args.text.encode("utf-8"), _now())

    await _with_client(args, run)


async def _join_inbox(c: MessagingClient, link_keys: LinkKeyPair | None = None, *, auto_join: bool = False) -> bool:
    """Take the Welcome inbox (``ping_core.account.take_welcomes``); True when a linking ticket
    was consumed. New invitations that wait for the user are listed on stderr."""
    done = await take_welcomes(c, _now(), auto_join=auto_join, link_keys=link_keys)
    for conv in done.joined:
        print(f"ping: joined {conv.as_hex()}", file=sys.stderr, flush=True)
    for inv in done.new:
        print(f"ping: {_invitation_line(inv)} (ping accept / decline {inv.conversation_id.as_hex()})", file=sys.stderr, flush=True)
    return done.linked


def _invitation_line(inv: Invitation) -> str:
    who = inv.inviter_user_id.as_hex() if inv.inviter_user_id is not None else "an unverified member"
    return f"invitation to {inv.conversation_id.as_hex()} {_printable(inv.name or '-')} from {who} ({inv.member_count} members)"


async def _sync_once(c: MessagingClient, auto_join: bool = False) -> None:
    await _join_inbox(c, auto_join=auto_join)
    for m in await c.sync_conversations(_now()):
        _out(f"{m.conversation_id.as_hex()} {m.sender_user_id.as_hex()}: {_display(m.plaintext)}")


async def cmd_sync(args: argparse.Namespace) -> None:
    await _with_client(args, lambda c: _sync_once(c, args.auto_join))


async def cmd_invitations(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        await _join_inbox(c)  # fetch new ones first (prints nothing on stdout)
        for inv in c.invitations():
            _out(_invitation_line(inv))

    await _with_client(args, run)


async def cmd_accept(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        _out(f"joined {(await c.accept_invitation(_conv(args.conv), _now())).as_hex()}")

    await _with_client(args, run)


async def cmd_decline(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        await c.decline_invitation(_conv(args.conv))
        _out("declined")

    await _with_client(args, run)


async def cmd_watch(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        checked = time.monotonic()  # connect() has just topped up
        print("ping: watching (interrupt to stop)", file=sys.stderr, flush=True)
        while True:
            await _sync_once(c, args.auto_join)
            if time.monotonic() - checked >= args.topup_interval:
                checked = time.monotonic()
                try:
                    published = await top_up_key_packages(c)
                except TransportError as exc:  # not fatal: the next round tries again
                    print(f"ping: KeyPackage top-up failed ({exc})", file=sys.stderr, flush=True)
                else:
                    if published:
                        print(f"ping: published {published} KeyPackages", file=sys.stderr, flush=True)
            # One long poll over every conversation and the Welcome inbox: news ends it at once,
            # else it ends after --interval (or at the next KeyPackage check) and we sync anyway.
            until_topup = checked + args.topup_interval - time.monotonic()
            wait_ms = int(max(0.0, min(args.interval, until_topup)) * 1000)
            try:
                await c.wait_for_news(min(wait_ms, MAX_FETCH_WAIT_MS))
            except TransportError as exc:  # offline or refused: wait, then the sync says what is wrong
                print(f"ping: waiting for news failed ({exc})", file=sys.stderr, flush=True)
                await asyncio.sleep(min(args.interval, 5.0))

    await _with_client(args, run)


async def cmd_list(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        for meta in sorted(c.list_conversations(), key=lambda m: m.id.value):
            kind = " (device group)" if meta.is_device_group else ""
            _out(f"{meta.id.as_hex()} {_printable(meta.name or '-')}{kind} members={meta.member_count} epoch={meta.epoch}")

    await _with_client(args, run)


async def cmd_members(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        members = c.members(_conv(args.conv))
        if not members:
            raise CliError("no such conversation here")
        for m in members:
            # An unverified member (a leaf without its account's binding) is never shown as anybody.
            _out(f"{m.user_id.as_hex() if m.user_id is not None else 'unverified'} {m.device_id.as_hex()}")

    await _with_client(args, run)


async def cmd_rename(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        await c.set_conversation_name(_conv(args.conv), args.name, _now())

    await _with_client(args, run)


async def cmd_remove(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        conv = _conv(args.conv)
        user = UserId.from_hex(args.user_id)
        leaves = [m.leaf_index for m in c.members(conv) if m.user_id == user and m.device_id != c.device_id()]
        if not leaves:
            raise CliError("that user has no device in this conversation")
        await c.remove_members(conv, leaves, _now())
        _out(f"removed {len(leaves)} device{'s' if len(leaves) != 1 else ''}")

    await _with_client(args, run)


async def cmd_devices(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        for info in await list_devices(c):
            this = " (this device)" if info.device_id == c.device_id() else ""
            _out(f"{info.device_id.as_hex()} {_printable(info.label)}{this}")

    await _with_client(args, run)


async def cmd_revoke(args: argparse.Namespace) -> None:
    async def run(c: MessagingClient) -> None:
        envelopes = await c.revoke_device(DeviceId.from_hex(args.device_id), _now())
        _out(f"revoked (removed from {len(envelopes)} conversation{'s' if len(envelopes) != 1 else ''})")

    await _with_client(args, run)


# ---------------------------------------------------------------------------
# Linking


def _pending_path(state: str) -> Path:
    return Path(state) / _PENDING_LINK


async def cmd_link_new(args: argparse.Namespace) -> None:
    if args.grant is None:
        _link_request(args)
    else:
        await _link_finish(args)


def _link_request(args: argparse.Namespace) -> None:
    from ping_core.connect import HOST_DB

    folder = Path(args.state).expanduser()
    if (folder / HOST_DB).exists():
        raise CliError(f"{args.state} already holds a device; link a new state folder")
    pending = PendingLink.new(args.label or "device")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(_pending_path(args.state), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pending.encode())
    finally:
        os.close(fd)
    _out(pending.request().encode())


def _read_pending(state: str) -> PendingLink:
    try:
        raw = _pending_path(state).read_bytes()
    except FileNotFoundError:
        raise CliError("no pending link here: run `ping link-new --label NAME` first") from None
    return PendingLink.decode(raw)


async def _wait(what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise CliError(f"gave up waiting for {what} after {timeout:.0f} s")
        await asyncio.sleep(0.5)


async def _link_finish(args: argparse.Namespace) -> None:
    pending = _read_pending(args.state)
    grant = open_grant(args.grant, pending.keys, pending.device_id)
    client = await _open(args, label=pending.label, identity=grant.account, device_secret=pending.device_secret)
    try:
        linked = False

        async def ticket_arrived() -> bool:
            nonlocal linked
            linked = await _join_inbox(client, pending.keys)
            return linked

        await _wait("the linking ticket", ticket_arrived, args.timeout)
        _pending_path(args.state).unlink(missing_ok=True)
        _out(f"user {client.user_id().as_hex()}")
        _out(f"device {client.device_id().as_hex()}")
    finally:
        await _close(client)


async def cmd_link_accept(args: argparse.Namespace) -> None:
    request = LinkRequestCode.decode(args.request)
    new_device = request.device_id

    async def run(c: MessagingClient) -> None:
        _out(seal_grant(c.grant_device(new_device, with_account_key=args.with_account_key), request))

        chats = [m.id for m in c.list_conversations() if not m.is_device_group]
        kps = await claim_new_device(c.transport, c.user_id(), new_device, 1 + len(chats), args.timeout)
        admission = await admit_new_device(c, request, kps, _now())
        for outcome in admission.failed:
            print(f"ping: {outcome.conversation_id.as_hex()}: not admitted ({outcome.status})", file=sys.stderr, flush=True)
        _out(f"linked {new_device.as_hex()}")

    await _with_client(args, run)


# ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ping", description="Ping: end-to-end encrypted messaging on the command line.")
    parser.add_argument("--server", default=os.environ.get("PING_SERVER"), help="delivery service URL ($PING_SERVER)")
    parser.add_argument("--state", default=os.environ.get("PING_STATE", "~/.ping"), help="state folder ($PING_STATE, ~/.ping)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], Awaitable[None]], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=fn)
        return p

    add("init", cmd_init, "create this device (and a new account), register it").add_argument("--label", required=True)
    add("whoami", cmd_whoami, "print this account's user id and this device")
    add("create", cmd_create, "create a conversation; prints its id").add_argument("name")
    p = add("invite", cmd_invite, "add every device of a user to a conversation")
    p.add_argument("conv")
    p.add_argument("user_id")
    p = add("send", cmd_send, "send a message")
    p.add_argument("conv")
    p.add_argument("text")
    auto_help = "join every conversation this device is invited to (default: only those of this account's devices; the others wait for `accept`)"
    add("sync", cmd_sync, "print new messages as CONV_ID SENDER_USER_ID: TEXT; list new invitations").add_argument(
        "--auto-join", action="store_true", help=auto_help
    )
    add("invitations", cmd_invitations, "list the conversations this device is invited to")
    add("accept", cmd_accept, "join a conversation this device is invited to").add_argument("conv")
    add("decline", cmd_decline, "decline an invitation (the server ends that membership)").add_argument("conv")
    watch = add("watch", cmd_watch, "sync until interrupted")
    watch.add_argument("--auto-join", action="store_true", help=auto_help)
    watch.add_argument(
        "--interval", type=float, default=25.0,
        help="longest wait for news between syncs, in seconds (default 25, at most 30); news from the server ends it at once",
    )  # fmt: skip
    watch.add_argument(
        "--topup-interval", type=float, default=60.0, help="seconds between KeyPackage stock checks (default 60)"
    )
    add("list", cmd_list, "list this device's conversations")
    add("members", cmd_members, "list a conversation's members (user id, device id)").add_argument("conv")
    p = add("rename", cmd_rename, "rename a conversation")
    p.add_argument("conv")
    p.add_argument("name")
    p = add("remove", cmd_remove, "remove every device of a user from a conversation")
    p.add_argument("conv")
    p.add_argument("user_id")
    add("devices", cmd_devices, "list this account's devices")
    add("revoke", cmd_revoke, "revoke a device of this account").add_argument("device_id")
    p = add("link-new", cmd_link_new, "on a new device: make a link request, or finish with --grant")
    p.add_argument("--label", default=None)
    p.add_argument("--grant", default=None)
    p.add_argument("--timeout", type=float, default=_WAIT_SECONDS)
    p = add("link-accept", cmd_link_accept, "on a linked device: grant a link request and admit the new device")
    p.add_argument("request")
    p.add_argument("--timeout", type=float, default=_WAIT_SECONDS)
    p.add_argument(
        "--with-account-key", action="store_true",
        help="also give the new device the account key (it can then link and revoke devices itself)",
    )  # fmt: skip
    return parser


def _fail(message: str) -> NoReturn:
    print(f"ping: error: {_printable(message)}", file=sys.stderr, flush=True)  # may quote a server
    sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    """Run one command; see the module docstring."""
    args = _parser().parse_args(argv)
    args.state = str(Path(args.state).expanduser())
    try:
        asyncio.run(args.run(args))
    except KeyboardInterrupt:
        return 0
    except CliError as exc:
        _fail(str(exc))
    except TransportError as exc:
        where = f"HTTP {exc.status}" if exc.status is not None else "no answer"
        _fail(f"the server refused or failed ({where}, {exc.code or 'no code'}): {exc}")
    except (PingError, InvalidInput) as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    return 0
