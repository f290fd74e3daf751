"""The delivery service's rules, as functions over one database transaction.

Each public function here is one API operation, run by
:meth:`ping_server.db.Database.run` inside one transaction; it raises
:class:`~ping_server.app.ApiError` to refuse (the transaction then changes
nothing of the service's data). Each makes all its checks before its first
write, so a refusal has nothing to undo (``ping_server.api`` relies on it,
and refuses, 500, a refusal that comes after a write). The semantics are those of the reference
``ping_core.transport.memory.MemoryDeliveryService`` (the conformance suite
``tests/server/test_transport_conformance.py`` runs both), in the order of
checks ``ping_core.transport.base`` documents.

Rows are locked (``tx.dialect.for_update``) before the transaction changes
what it read, so concurrent requests on PostgreSQL serialize per
conversation and per device exactly as SQLite's single writer does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ping_core.device import DeviceInfo
from ping_core.errors import IdentityError
from ping_core.identity import DeviceBinding
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.transport.base import MAX_EPOCH, KeyPackageCount, WatchResult
from ping_core.transport.wire import MAX_PAGE_BYTES, MAX_WELCOME_PAGE

from .app import ApiError
from .db import Tx

__all__ = [
    "Caller",
    "authenticate",
    "record_nonce",
    "register",
    "list_devices",
    "revoke",
    "publish",
    "claim",
    "claim_device",
    "key_package_count",
    "InboxLimit",
    "append",
    "fetch",
    "post_welcome",
    "fetch_welcomes",
    "ack_welcomes",
    "watch",
    "inbox_key",
    "device_key",
    "prune_nonces",
]


@dataclass(frozen=True, slots=True)
class InboxLimit:
    """What one device's Welcome inbox may hold (entries not yet acknowledged)."""

    entries: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated, registered, non-revoked device making the request."""

    device_id: DeviceId
    user_id: UserId


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


# --------------------------------------------------------------------------
# Authentication bookkeeping


def device_key(tx: Tx, device_id: DeviceId) -> bytes | None:
    """The device's signing public key, or None when it never registered."""
    row = tx.one("SELECT signing_key FROM devices WHERE device_id = ?", (device_id.value,))
    return None if row is None else bytes(row[0])


def record_nonce(tx: Tx, device_id: DeviceId, nonce: bytes, timestamp_ms: int) -> None:
    """Remember (timestamp, device, nonce); 401 when it was seen before (a replayed request).

    The timestamp is part of the key: a replay repeats the signed timestamp
    exactly, and another timestamp is another signed message that only the
    device can make. Keyed by time first, old rows are pruned as one range."""
    if tx.execute(
        "INSERT INTO nonces (ts_ms, device_id, nonce) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (timestamp_ms, device_id.value, nonce),
    ) != 1:
        raise ApiError(401, "unauthorized", "replayed request (nonce already used)")


def authenticate(tx: Tx, device_id: DeviceId, nonce: bytes, timestamp_ms: int) -> Caller:
    """The caller of a request whose signature has been verified: 401 when the device is not
    registered, 403 when it is revoked, 401 when the nonce was used before."""
    row = tx.one("SELECT user_id, revoked FROM devices WHERE device_id = ?", (device_id.value,))
    if row is None:
        raise ApiError(401, "unauthorized", "device is not registered")
    if row[1]:
        raise _forbidden("device is revoked")
    record_nonce(tx, device_id, nonce, timestamp_ms)
    return Caller(device_id, UserId(bytes(row[0])))


def prune_nonces(tx: Tx, older_than_ms: int) -> int:
    """Forget nonces of requests whose timestamps are too old to be accepted again anyway."""
    return tx.execute("DELETE FROM nonces WHERE ts_ms < ?", (older_than_ms,))


# --------------------------------------------------------------------------
# Devices


def register(tx: Tx, info: DeviceInfo, binding: DeviceBinding) -> None:
    """Register (or re-register) ``info``'s device. The caller has shown it holds the device key
    (the request is signed with ``info.signing_public_key``) and ``binding`` verifies. Every check
    comes before the first write (a refusal then has nothing to undo)."""
    if binding.device_id != info.device_id or binding.user_id != info.user_id:
        raise _invalid("binding is for another device or account")
    lock = tx.dialect.for_update
    account = tx.one("SELECT public_key FROM accounts WHERE user_id = ?" + lock, (info.user_id.value,))
    if account is not None and bytes(account[0]) != binding.user_public_key:
        raise _forbidden("account key differs from the registered one")
    dev = tx.one("SELECT revoked FROM devices WHERE device_id = ?" + lock, (info.device_id.value,))
    if dev is not None and dev[0]:
        raise _forbidden("device is revoked")
    if account is None and tx.execute(
        "INSERT INTO accounts (user_id, public_key) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (info.user_id.value, binding.user_public_key),
    ) == 0:
        # Registered concurrently by another request (PostgreSQL): nothing was written here.
        account = tx.one("SELECT public_key FROM accounts WHERE user_id = ?" + lock, (info.user_id.value,))
        if account is None or bytes(account[0]) != binding.user_public_key:
            raise _forbidden("account key differs from the registered one")
    if dev is None:
        counter = tx.one("UPDATE counters SET value = value + 1 WHERE name = 'device' RETURNING value")
        assert counter is not None
        tx.execute(
            "INSERT INTO devices (device_id, user_id, reg_seq, signing_key, info) VALUES (?, ?, ?, ?, ?)",
            (info.device_id.value, info.user_id.value, counter[0], info.signing_public_key, info.encode()),
        )
    else:
        tx.execute(
            "UPDATE devices SET user_id = ?, info = ? WHERE device_id = ?",
            (info.user_id.value, info.encode(), info.device_id.value),
        )


def list_devices(tx: Tx, caller: Caller, user_id: UserId) -> list[bytes]:
    """Encoded ``DeviceInfo`` of the account's non-revoked devices, in registration order."""
    rows = tx.query("SELECT info FROM devices WHERE user_id = ? AND revoked = 0 ORDER BY reg_seq", (user_id.value,))
    return [bytes(r[0]) for r in rows]


def revoke(tx: Tx, caller: Caller, device_id: DeviceId) -> None:
    """Revoke a device of the caller's account: purge its KeyPackages, inbox and memberships."""
    row = tx.one("SELECT user_id FROM devices WHERE device_id = ?" + tx.dialect.for_update, (device_id.value,))
    if row is None:
        raise ApiError(404, "not_found", "unknown device")
    if bytes(row[0]) != caller.user_id.value:
        raise _forbidden("only a device of the same account may revoke")
    key = (device_id.value,)
    tx.execute("UPDATE devices SET revoked = 1, last_resort = NULL WHERE device_id = ?", key)
    tx.execute("DELETE FROM key_packages WHERE device_id = ?", key)
    tx.execute("DELETE FROM welcomes WHERE device_id = ?", key)
    tx.execute("DELETE FROM members WHERE device_id = ?", key)


# --------------------------------------------------------------------------
# KeyPackages


def publish(tx: Tx, caller: Caller, key_packages: list[bytes], last_resort: bytes | None) -> None:
    """Append one-time KeyPackages to the caller's pool; replace its last-resort one when given.
    (Counts and sizes were checked before the transaction.)"""
    row = tx.one("SELECT kp_next FROM devices WHERE device_id = ?" + tx.dialect.for_update, (caller.device_id.value,))
    assert row is not None  # authenticate() found it in this transaction
    first = int(row[0])
    if key_packages:
        tx.executemany(
            "INSERT INTO key_packages (device_id, n, data) VALUES (?, ?, ?)",
            [(caller.device_id.value, first + i, kp) for i, kp in enumerate(key_packages)],
        )
    if last_resort is not None:
        tx.execute(
            "UPDATE devices SET kp_next = ?, last_resort = ? WHERE device_id = ?",
            (first + len(key_packages), last_resort, caller.device_id.value),
        )
    elif key_packages:
        tx.execute("UPDATE devices SET kp_next = ? WHERE device_id = ?", (first + len(key_packages), caller.device_id.value))


def _take(tx: Tx, device_id: bytes, count: int) -> list[bytes]:
    """Remove and return up to ``count`` one-time KeyPackages of a (locked) device, oldest first."""
    rows = tx.query("SELECT n, data FROM key_packages WHERE device_id = ? ORDER BY n LIMIT ?", (device_id, count))
    if rows:
        tx.execute("DELETE FROM key_packages WHERE device_id = ? AND n <= ?", (device_id, rows[-1][0]))
    return [bytes(r[1]) for r in rows]


def claim(tx: Tx, caller: Caller, user_id: UserId) -> list[tuple[DeviceId, bytes]]:
    """One KeyPackage per non-revoked device of ``user_id`` but the caller's (last resort when the
    pool is empty; devices with neither are left out)."""
    rows = tx.query(
        "SELECT device_id, last_resort FROM devices WHERE user_id = ? AND revoked = 0 AND device_id <> ? ORDER BY reg_seq"
        + tx.dialect.for_update,
        (user_id.value, caller.device_id.value),
    )
    out = []
    for device_id, last_resort in rows:
        taken = _take(tx, bytes(device_id), 1)
        if taken:
            out.append((DeviceId(bytes(device_id)), taken[0]))
        elif last_resort is not None:
            out.append((DeviceId(bytes(device_id)), bytes(last_resort)))
    return out


def claim_device(tx: Tx, caller: Caller, device_id: DeviceId, count: int) -> list[bytes]:
    """Up to ``count`` KeyPackages of one device: one-time ones first, then the last-resort one repeated."""
    row = tx.one("SELECT revoked, last_resort FROM devices WHERE device_id = ?" + tx.dialect.for_update, (device_id.value,))
    if row is None or row[0]:
        raise ApiError(404, "not_found", "unknown or revoked device")
    out = _take(tx, device_id.value, count)
    if row[1] is not None:
        out.extend([bytes(row[1])] * (count - len(out)))
    return out


def key_package_count(tx: Tx, caller: Caller) -> KeyPackageCount:
    """The caller's unclaimed one-time KeyPackages, and whether it has a last-resort one."""
    n = tx.one("SELECT COUNT(*) FROM key_packages WHERE device_id = ?", (caller.device_id.value,))
    row = tx.one("SELECT last_resort IS NOT NULL FROM devices WHERE device_id = ?", (caller.device_id.value,))
    assert n is not None and row is not None  # authenticate() found the device in this transaction
    return KeyPackageCount(int(n[0]), bool(row[0]))


# --------------------------------------------------------------------------
# Conversations and membership


def _conversation(tx: Tx, conversation_id: ConversationId) -> tuple[int, int | None] | None:
    """(next_seq, epoch) of a conversation, locked; None when it does not exist."""
    row = tx.one(
        "SELECT next_seq, epoch FROM conversations WHERE conversation_id = ?" + tx.dialect.for_update,
        (conversation_id.value,),
    )
    return None if row is None else (int(row[0]), None if row[1] is None else int(row[1]))


def _check_member(tx: Tx, caller: Caller, conversation_id: ConversationId, exists: bool) -> None:
    """403 unless the caller may post to the conversation: its owner's device for a DeviceGroup,
    else a current member (anyone may create a conversation that does not exist yet)."""
    if conversation_id.is_device_group_id:
        if ConversationId.device_group(caller.user_id) != conversation_id:
            raise _forbidden("another user's device group")
        return
    if not exists:
        return
    row = tx.one(
        "SELECT end_seq FROM members WHERE conversation_id = ? AND device_id = ?",
        (conversation_id.value, caller.device_id.value),
    )
    if row is None:
        raise _forbidden("not a member of this conversation")
    if row[0] is not None:
        raise _forbidden(f"removed from this conversation by the Commit at seq {row[0]}")


def _readable_until(tx: Tx, caller: Caller, conversation_id: ConversationId) -> int | None:
    """How far the caller may read an existing conversation: None for all of it (a member), the
    seq of the Commit that removed it for a removed device; 403 for anybody else."""
    if conversation_id.is_device_group_id:
        if ConversationId.device_group(caller.user_id) != conversation_id:
            raise _forbidden("another user's device group")
        return None
    row = tx.one(
        "SELECT end_seq FROM members WHERE conversation_id = ? AND device_id = ?",
        (conversation_id.value, caller.device_id.value),
    )
    if row is None:
        raise _forbidden("not a member of this conversation")
    return None if row[0] is None else int(row[0])


def _open_conversation(tx: Tx, caller: Caller, conversation_id: ConversationId, now_ms: int) -> tuple[int, int | None] | None:
    """The locked conversation the caller may post to, or None when it does not exist yet (403 for a non-member)."""
    conv = _conversation(tx, conversation_id)
    _check_member(tx, caller, conversation_id, conv is not None)
    return conv


def _create(tx: Tx, caller: Caller, conversation_id: ConversationId, now_ms: int) -> tuple[int, int | None]:
    """Create the conversation with the caller as its first member. When another request created it
    concurrently (PostgreSQL), re-check the caller against that one instead."""
    created = tx.execute(
        "INSERT INTO conversations (conversation_id, next_seq, epoch, created_by, created_ms) VALUES (?, 1, NULL, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (conversation_id.value, caller.device_id.value, now_ms),
    )
    if created == 1:
        if not conversation_id.is_device_group_id:
            tx.execute(
                "INSERT INTO members (conversation_id, device_id) VALUES (?, ?)",
                (conversation_id.value, caller.device_id.value),
            )
        return (1, None)
    conv = _open_conversation(tx, caller, conversation_id, now_ms)
    assert conv is not None
    return conv


def append(
    tx: Tx,
    caller: Caller,
    env: MessageEnvelope,
    removes: list[DeviceId],
    now_ms: int,
    encode: Callable[[int], bytes] | None = None,
) -> int:
    """Append an Application, Commit or Proposal envelope; the server-assigned seq. The removed
    devices' memberships end at this Commit (they may still read up to it). ``encode(seq)`` gives
    the envelope's encoding with that seq (default ``env.with_seq(seq).encode()``)."""
    if env.sender_device != caller.device_id:
        raise _forbidden("sender_device is not the authenticated device")
    if env.kind is MessageKind.WELCOME:
        raise _invalid("a Welcome goes to /conversations/{id}/welcomes")
    if removes and env.kind is not MessageKind.COMMIT:
        raise _invalid("removals ride only on a Commit")
    cid = env.conversation_id
    conv = _open_conversation(tx, caller, cid, now_ms)
    epoch = None if conv is None else conv[1]
    if env.kind is MessageKind.COMMIT:
        if epoch is not None and env.epoch != epoch:
            raise ApiError(409, "epoch_advanced", f"commit for epoch {env.epoch}, conversation is at {epoch}")
        if env.epoch > MAX_EPOCH:
            raise _invalid("epoch out of range")
    if conv is None:
        conv = _create(tx, caller, cid, now_ms)
        if env.kind is MessageKind.COMMIT and conv[1] is not None and env.epoch != conv[1]:
            raise ApiError(409, "epoch_advanced", f"commit for epoch {env.epoch}, conversation is at {conv[1]}")
    seq = conv[0]
    new_epoch = env.epoch + 1 if env.kind is MessageKind.COMMIT else conv[1]
    tx.execute(
        "UPDATE conversations SET next_seq = ?, epoch = ? WHERE conversation_id = ?", (seq + 1, new_epoch, cid.value)
    )
    data = env.with_seq(seq).encode() if encode is None else encode(seq)
    tx.execute(
        "INSERT INTO messages (conversation_id, seq, size, envelope) VALUES (?, ?, ?, ?)", (cid.value, seq, len(data), data)
    )
    if removes and not cid.is_device_group_id:
        tx.executemany(
            "UPDATE members SET end_seq = ? WHERE conversation_id = ? AND device_id = ? AND end_seq IS NULL",
            [(seq, cid.value, d.value) for d in removes],
        )
    tx.appended(cid.value)
    return seq


def _page(tx: Tx, table: str, key_column: str, key: bytes, after: int, limit: int) -> tuple[list[bytes], bool]:
    """Stored envelopes with seq > after, at most ``limit`` and ``MAX_PAGE_BYTES`` (but at least one);
    and whether the byte budget cut the page short."""
    sizes = tx.query(
        f"SELECT seq, size FROM {table} WHERE {key_column} = ? AND seq > ? ORDER BY seq LIMIT ?", (key, after, limit)
    )
    if not sizes:
        return [], False
    total = 0
    last = sizes[0][0]
    for seq, size in sizes:
        if total and total + size > MAX_PAGE_BYTES:
            break
        total += size
        last = seq
    more = last != sizes[-1][0]
    rows = tx.query(
        f"SELECT envelope FROM {table} WHERE {key_column} = ? AND seq > ? AND seq <= ? ORDER BY seq", (key, after, last)
    )
    return [bytes(r[0]) for r in rows], more


def fetch(tx: Tx, caller: Caller, conversation_id: ConversationId, after: int, limit: int) -> tuple[list[bytes], bool]:
    """A page of the log after ``after`` (``[]`` for a conversation that does not exist; 403 for a
    non-member). A device removed by a Commit reads up to that Commit (so it learns it was
    removed), and is refused (403) once its cursor is there."""
    exists = tx.one("SELECT 1 FROM conversations WHERE conversation_id = ?", (conversation_id.value,)) is not None
    if not exists:
        return [], False
    end = _readable_until(tx, caller, conversation_id)
    if end is not None:
        if after >= end:
            raise _forbidden(f"removed from this conversation by the Commit at seq {end}")
        limit = min(limit, end - after)  # seqs have no gaps: exactly the entries up to the Commit
    return _page(tx, "messages", "conversation_id", conversation_id.value, after, limit)


def check_caller(tx: Tx, caller: Caller) -> None:
    """403 when the caller was revoked since its request was authenticated (long polls re-check)."""
    row = tx.one("SELECT revoked FROM devices WHERE device_id = ?", (caller.device_id.value,))
    if row is None or row[0]:
        raise _forbidden("device is revoked")


def post_welcome(
    tx: Tx, caller: Caller, env: MessageEnvelope, recipients: list[DeviceId], now_ms: int, inbox: InboxLimit
) -> None:
    """Deliver a Welcome to each recipient's inbox and make them members (all or nothing); 409
    ``inbox_full`` when a recipient's inbox would exceed ``inbox``."""
    if env.sender_device != caller.device_id:
        raise _forbidden("sender_device is not the authenticated device")
    if env.kind is not MessageKind.WELCOME:
        raise _invalid("only a Welcome goes to /welcomes")
    if not recipients:
        raise _invalid("a Welcome needs recipients")
    cid = env.conversation_id
    conv = _open_conversation(tx, caller, cid, now_ms)
    # Lock recipients in one global order (no deadlock between concurrent Welcomes), check in the given order.
    found: dict[DeviceId, tuple[UserId, bool, int]] = {}
    for device_id in sorted(set(recipients)):
        row = tx.one(
            "SELECT user_id, revoked, inbox_next FROM devices WHERE device_id = ?" + tx.dialect.for_update,
            (device_id.value,),
        )
        if row is not None:
            found[device_id] = (UserId(bytes(row[0])), bool(row[1]), int(row[2]))
    entries: list[tuple[DeviceId, int, bytes]] = []
    for device_id in recipients:
        entry = found.get(device_id)
        if entry is None or entry[1]:
            raise ApiError(404, "not_found", "unknown or revoked Welcome recipient")
        if cid.is_device_group_id and ConversationId.device_group(entry[0]) != cid:
            raise _forbidden("a device group admits its owner's devices only")
        seq = entry[2]
        data = env.with_seq(seq).encode()
        held = tx.one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM welcomes WHERE device_id = ?", (device_id.value,))
        assert held is not None
        if int(held[0]) >= inbox.entries or int(held[1]) + len(data) > inbox.bytes:
            raise ApiError(409, "inbox_full", "a recipient's Welcome inbox is full (it must acknowledge its Welcomes)")
        entries.append((device_id, seq, data))
    if conv is None:
        _create(tx, caller, cid, now_ms)
    for device_id, seq, data in entries:
        tx.execute(
            "INSERT INTO welcomes (device_id, seq, size, envelope) VALUES (?, ?, ?, ?)", (device_id.value, seq, len(data), data)
        )
        tx.execute("UPDATE devices SET inbox_next = ? WHERE device_id = ?", (seq + 1, device_id.value))
        if not cid.is_device_group_id:
            # A member again (also after a removal: it was welcomed back).
            tx.execute(
                "INSERT INTO members (conversation_id, device_id, end_seq) VALUES (?, ?, NULL)"
                " ON CONFLICT (conversation_id, device_id) DO UPDATE SET end_seq = NULL",
                (cid.value, device_id.value),
            )
        tx.appended(inbox_key(device_id))  # wakes the recipient's watches in other processes


def inbox_key(device_id: DeviceId) -> bytes:
    """The wake-up key of a device's Welcome inbox (``Notifier``, ``Tx.appended``). Conversation
    keys are 16-byte ids, so this 33-byte key never collides with one."""
    return b"W" + device_id.value


def watch(tx: Tx, caller: Caller, positions: list[tuple[ConversationId, int]]) -> WatchResult:
    """What the caller's watch reports now (see ``Transport.watch``): the conversations whose
    readable log goes beyond the given seq, with their heads; those it may not read from there
    (``fetch`` would refuse them 403); whether its Welcome inbox is non-empty. Reads only.

    One query gives all the caller's memberships with their heads; only the ids it is not a
    member of cost one more lookup each (to tell "may not read" from "does not exist yet")."""
    rows = tx.query(
        "SELECT m.conversation_id, m.end_seq, c.next_seq FROM members m"
        " JOIN conversations c ON c.conversation_id = m.conversation_id WHERE m.device_id = ?",
        (caller.device_id.value,),
    )
    member: dict[bytes, tuple[int | None, int]] = {
        bytes(r[0]): (None if r[1] is None else int(r[1]), int(r[2]) - 1) for r in rows
    }
    own_group = ConversationId.device_group(caller.user_id)
    heads: dict[ConversationId, int] = {}
    forbidden: set[ConversationId] = set()
    for cid, after in positions:
        entry = member.get(cid.value)
        if entry is None:
            row = tx.one("SELECT next_seq FROM conversations WHERE conversation_id = ?", (cid.value,))
            if row is None:
                continue  # nobody posted yet: nothing to read, as fetch says with []
            if cid != own_group:
                forbidden.add(cid)
                continue
            entry = (None, int(row[0]) - 1)
        end, head = entry
        if end is not None:
            if after >= end:
                forbidden.add(cid)
                continue
            head = end  # a removed device reads up to the Commit that removed it
        if head > after:
            heads[cid] = head
    inbox = tx.one("SELECT 1 FROM welcomes WHERE device_id = ? LIMIT 1", (caller.device_id.value,))
    return WatchResult(heads, frozenset(forbidden), inbox is not None)


def fetch_welcomes(tx: Tx, caller: Caller, after: int) -> tuple[list[bytes], bool]:
    """A page of the caller's inbox after ``after``; ``more`` when the page is full or was cut short."""
    stored, more = _page(tx, "welcomes", "device_id", caller.device_id.value, after, MAX_WELCOME_PAGE)
    return stored, more or len(stored) == MAX_WELCOME_PAGE


def ack_welcomes(tx: Tx, caller: Caller, up_to_seq: int) -> None:
    tx.execute("DELETE FROM welcomes WHERE device_id = ? AND seq <= ?", (caller.device_id.value, up_to_seq))


def verify_registration(info: DeviceInfo, binding: DeviceBinding) -> None:
    """400 unless ``info`` and ``binding`` verify (pure CPU; run before the transaction)."""
    try:
        info.verify()
        binding.verify()
    except IdentityError as exc:
        raise _invalid(f"registration refused: {exc}") from None
