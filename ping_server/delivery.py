"""The delivery service's rules, as functions over one database transaction.

Each public function here is one API operation, run by
:meth:`ping_server.db.Database.run` inside one transaction; it raises
:class:`~ping_server.app.ApiError` to refuse (the transaction then changes
nothing of the service's data). Each makes all its checks before its first
write, so a refusal has nothing to undo (``ping_server.api`` relies on it,
and refuses, 500, a refusal that comes after a write). The semantics are those of the reference
``ping_core.testing.memory.MemoryDeliveryService`` (the conformance suite
``tests/server/test_transport_conformance.py`` runs both), in the order of
checks ``ping_core.transport.base`` documents.

Rows are locked (``tx.dialect.for_update``) before the transaction changes
what it read, so concurrent requests on PostgreSQL serialize per
conversation and per device exactly as SQLite's single writer does.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ping_core.device import DeviceInfo
from ping_core.errors import IdentityError, TransportError
from ping_core.identity import DeviceBinding, DeviceRevocation
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.transport.base import (
    DEVICE_REVOKED,
    MAX_EPOCH,
    MAX_REVOCATION_LIST,
    DeliveryLimits,
    KeyPackageCount,
    WatchResult,
    revocation_refusal,
    within,
)
from ping_core.transport.handshake import CheckedCommit, check_commit, check_proposal, decode_devices, encode_devices
from ping_core.transport.wire import MAX_PAGE_BYTES, MAX_WELCOME_PAGE, restamp_seq

from . import pushstore
from .app import ApiError
from .db import Tx

_V = TypeVar("_V")

__all__ = [
    "Caller",
    "CallerRefused",
    "authenticate",
    "record_nonce",
    "register",
    "list_devices",
    "revoke",
    "list_revocations",
    "publish",
    "claim",
    "claim_device",
    "key_package_count",
    "append",
    "fetch",
    "post_welcome",
    "fetch_welcomes",
    "ack_welcomes",
    "leave",
    "group_info",
    "watch",
    "as_caller",
    "check_caller",
    "inbox_key",
    "device_key",
    "prune_nonces",
    "prune_claims",
]


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated, registered device making the request (non-revoked, unless the route
    takes revoked callers: ``revoked`` then says so)."""

    device_id: DeviceId
    user_id: UserId
    revoked: bool = False


class CallerRefused(ApiError):
    """The caller is not a registered, non-revoked device with a fresh nonce (401 / 403): the
    request counts as unauthenticated (``ping_server.api`` charges its client address)."""


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def _revoked() -> CallerRefused:
    """The refusal of every request of a revoked device (403 ``device_revoked``)."""
    return CallerRefused(403, DEVICE_REVOKED, "device is revoked")


def _quota(message: str) -> ApiError:
    return ApiError(413, "quota_exceeded", message)


def _uint_len(n: int) -> int:
    """Bytes of the canonical CBOR head of the unsigned integer ``n``."""
    return 1 if n < 24 else 2 if n < 1 << 8 else 3 if n < 1 << 16 else 5 if n < 1 << 32 else 9


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
        raise CallerRefused(401, "unauthorized", "replayed request (nonce already used)")


def authenticate(tx: Tx, device_id: DeviceId, nonce: bytes, timestamp_ms: int, *, revoked_ok: bool = False) -> Caller:
    """The caller of a request whose signature has been verified: 401 when the device is not
    registered, 403 ``device_revoked`` when it is revoked (unless ``revoked_ok``: the one route a
    revoked device may use, to fetch its account's statement), 401 when the nonce was used before
    (all CallerRefused)."""
    row = tx.one("SELECT user_id, revoked FROM devices WHERE device_id = ?", (device_id.value,))
    if row is None:
        raise CallerRefused(401, "unauthorized", "device is not registered")
    if row[1] and not revoked_ok:
        raise _revoked()
    record_nonce(tx, device_id, nonce, timestamp_ms)
    return Caller(device_id, UserId(bytes(row[0])), bool(row[1]))


def prune_nonces(tx: Tx, older_than_ms: int) -> int:
    """Forget nonces of requests whose timestamps are too old to be accepted again anyway."""
    return tx.execute("DELETE FROM nonces WHERE ts_ms < ?", (older_than_ms,))


def prune_claims(tx: Tx, now_ms: int, limits: DeliveryLimits) -> int:
    """Forget KeyPackage claim counters of windows that are over."""
    return tx.execute("DELETE FROM kp_claims WHERE win < ?", (now_ms // limits.claim_window_ms,))


# --------------------------------------------------------------------------
# Storage accounting (counters updated in the transaction that changes what they count)


def _account_room(tx: Tx, user_id: bytes, size: int, limits: DeliveryLimits) -> None:
    """413 ``quota_exceeded`` when the account cannot store ``size`` more bytes (reads only; the
    account row is locked, so the later :func:`_charge` cannot race past the quota)."""
    if not limits.account_bytes or size <= 0:
        return
    row = tx.one("SELECT stored_bytes FROM accounts WHERE user_id = ?" + tx.dialect.for_update, (user_id,))
    if row is not None and int(row[0]) + size > limits.account_bytes:
        raise _quota(f"the account stores {int(row[0])} bytes; {size} more exceed its quota of {limits.account_bytes}")


def _charge(tx: Tx, user_id: bytes, delta: int) -> None:
    if delta:
        tx.execute("UPDATE accounts SET stored_bytes = stored_bytes + ? WHERE user_id = ?", (delta, user_id))


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
        raise _revoked()  # for good: a revoked device id never registers again
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


def revoke(tx: Tx, caller: Caller, device_id: DeviceId, revocation: DeviceRevocation) -> None:
    """Revoke a device with its account's signed statement (``revocation``, which names
    ``device_id``: the API checked that), delivered by a device of that account: keep the
    statement, purge the device's KeyPackages, inbox, memberships and push subscriptions (and release what they held
    of the account's quota). Refusals: 404 unknown device, 403 ``forbidden`` when the caller is
    of another account or the statement is not the device's account's (other account or key, or
    a signature that does not verify: one Ed25519 verification, in the transaction so that the
    order of checks is the Transport's). Idempotent: an already revoked device keeps its first
    statement (one revoked before statements were kept gets this one)."""
    row = tx.one(
        "SELECT d.user_id, d.kp_bytes, LENGTH(d.last_resort), d.revoked, d.revocation IS NOT NULL, a.public_key"
        " FROM devices d JOIN accounts a ON a.user_id = d.user_id WHERE d.device_id = ?" + tx.dialect.for_update,
        (device_id.value,),
    )
    if row is None:
        raise ApiError(404, "not_found", "unknown device")
    owner = bytes(row[0])
    if owner != caller.user_id.value:
        raise _forbidden("only a device of the same account may deliver its revocation")
    refusal = revocation_refusal(revocation, UserId(owner), bytes(row[5]))
    if refusal is not None:
        raise _forbidden(refusal)
    key = (device_id.value,)
    if not row[4]:
        counter = tx.one("UPDATE counters SET value = value + 1 WHERE name = 'revocation' RETURNING value")
        assert counter is not None
        tx.execute(
            "UPDATE devices SET revocation = ?, revocation_seq = ? WHERE device_id = ?",
            (revocation.encode(), counter[0], device_id.value),
        )
    if row[3]:
        return  # already revoked: its purge was done then
    tx.execute("UPDATE devices SET revoked = 1, last_resort = NULL, kp_bytes = 0 WHERE device_id = ?", key)
    tx.execute("DELETE FROM key_packages WHERE device_id = ?", key)
    tx.execute("DELETE FROM kp_claims WHERE device_id = ?", key)
    _drop_inbox(tx, device_id.value, "", ())
    tx.execute("DELETE FROM members WHERE device_id = ?", key)
    pushstore.drop_device(tx, device_id.value)  # a revoked device is never woken again
    _charge(tx, owner, -(int(row[1]) + int(row[2] or 0)))


def list_revocations(tx: Tx, caller: Caller, user_id: UserId) -> list[bytes]:
    """The encoded ``DeviceRevocation`` statements kept for the account's devices, newest first, at
    most ``MAX_REVOCATION_LIST`` (one range of the ``devices_revocations`` index). A revoked
    caller gets only its own statement, and only from its own account (how it learns it was
    revoked, and can verify it before it wipes itself); anything else is 403 ``device_revoked``."""
    if caller.revoked:
        if user_id != caller.user_id:
            raise _revoked()
        own = tx.one("SELECT revocation FROM devices WHERE device_id = ? AND revocation IS NOT NULL", (caller.device_id.value,))
        return [] if own is None else [bytes(own[0])]
    rows = tx.query(
        "SELECT revocation FROM devices WHERE user_id = ? AND revocation IS NOT NULL ORDER BY revocation_seq DESC LIMIT ?",
        (user_id.value, MAX_REVOCATION_LIST),
    )
    return [bytes(r[0]) for r in rows]


# --------------------------------------------------------------------------
# KeyPackages


def publish(
    tx: Tx, caller: Caller, key_packages: list[bytes], last_resort: bytes | None, limits: DeliveryLimits, replace: bool = False
) -> None:
    """Append one-time KeyPackages to the caller's pool (after deleting its unclaimed ones when
    ``replace``, in this transaction: a claim sees the old pool or the new one); replace its
    last-resort one when given. (Counts and sizes were checked before the transaction.) 413
    ``quota_exceeded`` when the account cannot store what the pool then holds."""
    row = tx.one(
        "SELECT kp_next, LENGTH(last_resort), kp_bytes FROM devices WHERE device_id = ?" + tx.dialect.for_update,
        (caller.device_id.value,),
    )
    assert row is not None  # authenticate() found it in this transaction
    first = int(row[0])
    dropped = int(row[2]) if replace else 0
    pool_bytes = sum(len(kp) for kp in key_packages)
    delta = pool_bytes - dropped + (len(last_resort) - int(row[1] or 0) if last_resort is not None else 0)
    _account_room(tx, caller.user_id.value, delta, limits)
    if replace:
        tx.execute("DELETE FROM key_packages WHERE device_id = ?", (caller.device_id.value,))
    if key_packages:
        tx.executemany(
            "INSERT INTO key_packages (device_id, n, data) VALUES (?, ?, ?)",
            [(caller.device_id.value, first + i, kp) for i, kp in enumerate(key_packages)],
        )
    if last_resort is not None or key_packages or replace:
        tx.execute(
            "UPDATE devices SET kp_next = ?, kp_bytes = kp_bytes + ?, last_resort = COALESCE(?, last_resort) WHERE device_id = ?",
            (first + len(key_packages), pool_bytes - dropped, last_resort, caller.device_id.value),
        )
    _charge(tx, caller.user_id.value, delta)


def _take(tx: Tx, device_id: bytes, user_id: bytes, count: int) -> list[bytes]:
    """Remove and return up to ``count`` one-time KeyPackages of a (locked) device, oldest first."""
    if count <= 0:
        return []
    rows = tx.query("SELECT n, data FROM key_packages WHERE device_id = ? ORDER BY n LIMIT ?", (device_id, count))
    if not rows:
        return []
    tx.execute("DELETE FROM key_packages WHERE device_id = ? AND n <= ?", (device_id, rows[-1][0]))
    out = [bytes(r[1]) for r in rows]
    size = sum(len(kp) for kp in out)
    tx.execute("UPDATE devices SET kp_bytes = kp_bytes - ? WHERE device_id = ?", (size, device_id))
    _charge(tx, user_id, -size)
    return out


@dataclass(frozen=True, slots=True)
class _Allowance:
    """How many one-time KeyPackages of one device a claim may take (the rest: its last resort)."""

    allowed: int
    window: int | None = None  # None: not limited (the device's own account, or limits off)
    device_used: int = 0
    pair_used: int = 0


def _allowance(
    tx: Tx, caller: Caller, device_id: bytes, owner: bytes, want: int, win: int, win_claims: int, limits: DeliveryLimits, now_ms: int
) -> _Allowance:
    """The claim counters of (this device, the caller's account) and of the device in this window."""
    if owner == caller.user_id.value or not (limits.claims_per_claimer or limits.claims_per_device):
        return _Allowance(want)
    window = now_ms // limits.claim_window_ms
    device_used = win_claims if win == window else 0
    row = tx.one(
        "SELECT win, n FROM kp_claims WHERE device_id = ? AND claimer = ?" + tx.dialect.for_update,
        (device_id, caller.user_id.value),
    )
    pair_used = int(row[1]) if row is not None and int(row[0]) == window else 0
    allowed = want
    if limits.claims_per_claimer:
        allowed = min(allowed, max(0, limits.claims_per_claimer - pair_used))
    if limits.claims_per_device:
        allowed = min(allowed, max(0, limits.claims_per_device - device_used))
    return _Allowance(allowed, window, device_used, pair_used)


def _count_claims(tx: Tx, caller: Caller, device_id: bytes, allowance: _Allowance, taken: int) -> None:
    if allowance.window is None or not taken:
        return
    tx.execute(
        "INSERT INTO kp_claims (device_id, claimer, win, n) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (device_id, claimer) DO UPDATE SET win = excluded.win, n = excluded.n",
        (device_id, caller.user_id.value, allowance.window, allowance.pair_used + taken),
    )
    tx.execute(
        "UPDATE devices SET kp_window = ?, kp_window_claims = ? WHERE device_id = ?",
        (allowance.window, allowance.device_used + taken, device_id),
    )


def claim(tx: Tx, caller: Caller, user_id: UserId, limits: DeliveryLimits, now_ms: int) -> list[tuple[DeviceId, bytes]]:
    """One KeyPackage per non-revoked device of ``user_id`` but the caller's: a one-time one while
    the claim limits allow, else the last-resort one (devices with neither are left out)."""
    rows = tx.query(
        "SELECT device_id, last_resort, kp_window, kp_window_claims FROM devices"
        " WHERE user_id = ? AND revoked = 0 AND device_id <> ? ORDER BY reg_seq" + tx.dialect.for_update,
        (user_id.value, caller.device_id.value),
    )
    out = []
    for device_id, last_resort, win, win_claims in rows:
        dev = bytes(device_id)
        allowance = _allowance(tx, caller, dev, user_id.value, 1, int(win), int(win_claims), limits, now_ms)
        taken = _take(tx, dev, user_id.value, allowance.allowed)
        _count_claims(tx, caller, dev, allowance, len(taken))
        if taken:
            out.append((DeviceId(dev), taken[0]))
        elif last_resort is not None:
            out.append((DeviceId(dev), bytes(last_resort)))
    return out


def claim_device(tx: Tx, caller: Caller, device_id: DeviceId, count: int, limits: DeliveryLimits, now_ms: int) -> list[bytes]:
    """Up to ``count`` KeyPackages of one device: one-time ones first (as far as the claim limits
    allow), then the last-resort one repeated."""
    row = tx.one(
        "SELECT user_id, revoked, last_resort, kp_window, kp_window_claims FROM devices WHERE device_id = ?"
        + tx.dialect.for_update,
        (device_id.value,),
    )
    if row is None or row[1]:
        raise ApiError(404, "not_found", "unknown or revoked device")
    owner = bytes(row[0])
    allowance = _allowance(tx, caller, device_id.value, owner, count, int(row[3]), int(row[4]), limits, now_ms)
    out = _take(tx, device_id.value, owner, allowance.allowed)
    _count_claims(tx, caller, device_id.value, allowance, len(out))
    if row[2] is not None:
        out.extend([bytes(row[2])] * (count - len(out)))
    return out


def key_package_count(tx: Tx, caller: Caller) -> KeyPackageCount:
    """The caller's unclaimed one-time KeyPackages, and whether it has a last-resort one."""
    n = tx.one("SELECT COUNT(*) FROM key_packages WHERE device_id = ?", (caller.device_id.value,))
    row = tx.one("SELECT last_resort IS NOT NULL FROM devices WHERE device_id = ?", (caller.device_id.value,))
    assert n is not None and row is not None  # authenticate() found the device in this transaction
    return KeyPackageCount(int(n[0]), bool(row[0]))


# --------------------------------------------------------------------------
# Conversations and membership


@dataclass(frozen=True, slots=True)
class _Conv:
    next_seq: int
    epoch: int | None
    bytes: int


_NEW_CONV = _Conv(1, None, 0)


def _conversation(tx: Tx, conversation_id: ConversationId) -> _Conv | None:
    """A conversation's row, locked; None when it does not exist."""
    row = tx.one(
        "SELECT next_seq, epoch, bytes FROM conversations WHERE conversation_id = ?" + tx.dialect.for_update,
        (conversation_id.value,),
    )
    return None if row is None else _Conv(int(row[0]), None if row[1] is None else int(row[1]), int(row[2]))


def _check_member(tx: Tx, caller: Caller, conversation_id: ConversationId, exists: bool) -> bool:
    """403 unless the caller may post to the conversation: its owner's device for a DeviceGroup,
    else a current member (anyone may create a conversation that does not exist yet). Whether the
    caller's membership is still to be consented to (a stranger's Welcome made it)."""
    if conversation_id.is_device_group_id:
        if ConversationId.device_group(caller.user_id) != conversation_id:
            raise _forbidden("another user's device group")
        return False
    if not exists:
        return False
    row = tx.one(
        "SELECT end_seq, consent FROM members WHERE conversation_id = ? AND device_id = ?",
        (conversation_id.value, caller.device_id.value),
    )
    if row is None:
        raise _forbidden("not a member of this conversation")
    if row[0] is not None:
        raise _forbidden(f"removed from this conversation by the Commit at seq {row[0]}")
    return not row[1]


def _consent(tx: Tx, caller: Caller, conversation_id: ConversationId) -> None:
    """The caller acted in the conversation (read or posted): its pending membership is consented to."""
    tx.execute(
        "UPDATE members SET consent = 1 WHERE conversation_id = ? AND device_id = ? AND consent = 0",
        (conversation_id.value, caller.device_id.value),
    )


def _readable_until(tx: Tx, caller: Caller, conversation_id: ConversationId) -> tuple[int | None, bool]:
    """How far the caller may read an existing conversation: None for all of it (a member), the
    seq of the Commit that removed it for a removed device; 403 for anybody else. And whether the
    caller's (current) membership is still pending consent."""
    if conversation_id.is_device_group_id:
        if ConversationId.device_group(caller.user_id) != conversation_id:
            raise _forbidden("another user's device group")
        return None, False
    row = tx.one(
        "SELECT end_seq, consent FROM members WHERE conversation_id = ? AND device_id = ?",
        (conversation_id.value, caller.device_id.value),
    )
    if row is None:
        raise _forbidden("not a member of this conversation")
    return (None, not row[1]) if row[0] is None else (int(row[0]), False)


def _create(tx: Tx, caller: Caller, conversation_id: ConversationId, now_ms: int) -> tuple[_Conv, bool]:
    """Create the conversation with the caller as its first member. When another request created it
    concurrently (PostgreSQL), re-check the caller against that one instead (nothing written then).
    Returns the conversation and whether the caller's membership there is pending consent."""
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
        return _NEW_CONV, False
    conv = _conversation(tx, conversation_id)
    assert conv is not None
    return conv, _check_member(tx, caller, conversation_id, True)


def _log_room(conv: _Conv, size: int, limits: DeliveryLimits) -> None:
    """413 ``quota_exceeded`` when the conversation's log cannot take one more envelope of ``size``."""
    if not within(limits.conversation_envelopes, conv.next_seq):
        raise _quota(f"the conversation's log holds {conv.next_seq - 1} envelopes, its quota")
    if not within(limits.conversation_bytes, conv.bytes + size):
        raise _quota(f"the conversation's log holds {conv.bytes} bytes; {size} more exceed its quota of {limits.conversation_bytes}")


def _public_group(tx: Tx, conversation_id: ConversationId) -> tuple[bytes, frozenset[DeviceId]] | None:
    """A verified conversation's public group state and the devices its latest Commit added
    (None: not verified). Read under the conversation row's lock."""
    row = tx.one("SELECT state, welcome_to FROM public_groups WHERE conversation_id = ?", (conversation_id.value,))
    return None if row is None else (bytes(row[0]), decode_devices(bytes(row[1])))


def _checked(verify: Callable[[], _V]) -> _V:
    """``verify()``, its ``TransportError`` (``ping_core.transport.handshake``) refused as an ApiError."""
    try:
        return verify()
    except TransportError as exc:
        raise ApiError(exc.status or 400, exc.code or "invalid_request", str(exc)) from None


def _verify(
    caller: Caller, env: MessageEnvelope, epoch: int | None, state: bytes | None, group_info: bytes | None
) -> tuple[CheckedCommit | None, bytes | None]:
    """The epoch check of a Commit (409 ``epoch_advanced``, 400 out of range) or of a verified
    conversation's Proposal, then its handshake check (400, see :func:`append`): the checked Commit
    (None: not verified) and the public state once the envelope is accepted (``state``, the stored
    one, unless a Proposal changed it)."""
    cid = env.conversation_id
    if env.kind is MessageKind.COMMIT:
        if epoch is not None and env.epoch != epoch:
            raise ApiError(409, "epoch_advanced", f"commit for epoch {env.epoch}, conversation is at {epoch}")
        if env.epoch > MAX_EPOCH:
            raise _invalid("epoch out of range")
        return _checked(lambda: check_commit(state, cid, caller.device_id, env.epoch, env.payload, group_info)), state
    if env.kind is MessageKind.PROPOSAL and state is not None:
        if env.epoch != epoch:
            raise ApiError(409, "epoch_advanced", f"proposal for epoch {env.epoch}, conversation is at {epoch}")
        proposed = state
        return None, _checked(lambda: check_proposal(proposed, env.payload))
    return None, state


def _store_public_group(
    tx: Tx, cid: ConversationId, checked: CheckedCommit | None, stored: bytes | None, state: bytes | None
) -> None:
    """Keep an accepted Commit's public state, GroupInfo and added devices, or the state a Proposal
    changed (``stored``: the state read before, None when the conversation is not verified)."""
    if checked is not None:
        tx.execute(
            "INSERT INTO public_groups (conversation_id, epoch, state, group_info, welcome_to) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (conversation_id) DO UPDATE SET epoch = excluded.epoch, state = excluded.state,"
            " group_info = excluded.group_info, welcome_to = excluded.welcome_to",
            (cid.value, checked.epoch, checked.state, checked.group_info, encode_devices(checked.added)),
        )
    elif stored is not None and state is not stored:
        tx.execute("UPDATE public_groups SET state = ? WHERE conversation_id = ?", (state, cid.value))


def append(
    tx: Tx,
    caller: Caller,
    env: MessageEnvelope,
    removes: list[DeviceId],
    now_ms: int,
    limits: DeliveryLimits,
    encode: Callable[[int], bytes] | None = None,
    group_info: bytes | None = None,
) -> int:
    """Append an Application, Commit or Proposal envelope; the server-assigned seq. The removed
    devices' memberships end at this Commit (they may still read up to it). ``encode(seq)`` gives
    the envelope's encoding with that seq (default ``env.with_seq(seq).encode()``).

    A Commit that brings ``group_info``, or any Commit or Proposal of a verified conversation, is
    verified (``ping_core.transport.handshake``, after the epoch check: 400 ``invalid_commit`` /
    ``invalid_proposal``; in the transaction, under the conversation's lock); an accepted one
    stores the new public state, and a Commit's removed leaves end their devices' memberships
    (instead of the declared ``removes``). Quotas (413) come after the membership, epoch and
    handshake checks."""
    if env.sender_device != caller.device_id:
        raise _forbidden("sender_device is not the authenticated device")
    if env.kind is MessageKind.WELCOME:
        raise _invalid("a Welcome goes to /conversations/{id}/welcomes")
    if (removes or group_info is not None) and env.kind is not MessageKind.COMMIT:
        raise _invalid("removals and a GroupInfo ride only on a Commit")
    cid = env.conversation_id
    conv = _conversation(tx, cid)
    pending = _check_member(tx, caller, cid, conv is not None)
    epoch = None if conv is None else conv.epoch
    public = None if conv is None else _public_group(tx, cid)
    checked, state = _verify(caller, env, epoch, None if public is None else public[0], group_info)
    if checked is not None:
        removes = list(checked.removed)
    make = (lambda seq: env.with_seq(seq).encode()) if encode is None else encode
    data = make((conv or _NEW_CONV).next_seq)
    _log_room(conv or _NEW_CONV, len(data), limits)
    _account_room(tx, caller.user_id.value, len(data), limits)
    if conv is None:
        conv, pending = _create(tx, caller, cid, now_ms)
        if env.kind is MessageKind.COMMIT and conv.epoch is not None and env.epoch != conv.epoch:
            raise ApiError(409, "epoch_advanced", f"commit for epoch {env.epoch}, conversation is at {conv.epoch}")
        if conv is not _NEW_CONV:  # created concurrently by another request: nothing written yet
            data = make(conv.next_seq)
            _log_room(conv, len(data), limits)
    seq = conv.next_seq
    new_epoch = env.epoch + 1 if env.kind is MessageKind.COMMIT else conv.epoch
    tx.execute(
        "UPDATE conversations SET next_seq = ?, epoch = ?, bytes = bytes + ? WHERE conversation_id = ?",
        (seq + 1, new_epoch, len(data), cid.value),
    )
    tx.execute(
        "INSERT INTO messages (conversation_id, seq, size, envelope) VALUES (?, ?, ?, ?)", (cid.value, seq, len(data), data)
    )
    _charge(tx, caller.user_id.value, len(data))
    _store_public_group(tx, cid, checked, None if public is None else public[0], state)
    if removes and not cid.is_device_group_id:
        tx.executemany(
            "UPDATE members SET end_seq = ? WHERE conversation_id = ? AND device_id = ? AND end_seq IS NULL",
            [(seq, cid.value, d.value) for d in removes],
        )
    if pending:
        _consent(tx, caller, cid)
    tx.appended(cid.value)
    return seq


def _page(
    tx: Tx, sizes_sql: str, rows_sql: str, key: bytes, after: int, limit: int
) -> tuple[list[tuple[int, bytes]], bool]:
    """(seq, stored bytes) with seq > after, at most ``limit`` and ``MAX_PAGE_BYTES`` (but at least
    one); and whether the byte budget cut the page short. ``sizes_sql`` selects (seq, size) and
    ``rows_sql`` (seq, bytes) for a key and a seq range."""
    sizes = tx.query(sizes_sql, (key, after, limit))
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
    rows = tx.query(rows_sql, (key, after, last))
    return [(int(r[0]), bytes(r[1])) for r in rows], more


_LOG_SIZES = "SELECT seq, size FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
_LOG_ROWS = "SELECT seq, envelope FROM messages WHERE conversation_id = ? AND seq > ? AND seq <= ? ORDER BY seq"
_INBOX_SIZES = "SELECT seq, size FROM welcomes WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?"
_INBOX_ROWS = (
    "SELECT w.seq, p.envelope FROM welcomes w JOIN welcome_payloads p ON p.id = w.payload_id"
    " WHERE w.device_id = ? AND w.seq > ? AND w.seq <= ? ORDER BY w.seq"
)


def fetch(tx: Tx, caller: Caller, conversation_id: ConversationId, after: int, limit: int) -> tuple[list[bytes], bool]:
    """A page of the log after ``after`` (``[]`` for a conversation that does not exist; 403 for a
    non-member). A device removed by a Commit reads up to that Commit (so it learns it was
    removed), and is refused (403) once its cursor is there. Reading consents to a pending membership."""
    exists = tx.one("SELECT 1 FROM conversations WHERE conversation_id = ?", (conversation_id.value,)) is not None
    if not exists:
        return [], False
    end, pending = _readable_until(tx, caller, conversation_id)
    if end is not None:
        if after >= end:
            raise _forbidden(f"removed from this conversation by the Commit at seq {end}")
        limit = min(limit, end - after)  # seqs have no gaps: exactly the entries up to the Commit
    if pending:
        _consent(tx, caller, conversation_id)
    rows, more = _page(tx, _LOG_SIZES, _LOG_ROWS, conversation_id.value, after, limit)
    return [data for _, data in rows], more


def check_caller(tx: Tx, caller: Caller) -> None:
    """403 ``device_revoked`` when the caller was revoked since its request was authenticated (long
    polls re-check)."""
    row = tx.one("SELECT revoked FROM devices WHERE device_id = ?", (caller.device_id.value,))
    if row is None or row[0]:
        raise _revoked()


def as_caller(tx: Tx, caller: Caller, op: Callable[[Tx, Caller], _V]) -> _V:
    """``op(tx, caller)``; when it refuses with a 403, the caller is checked again first, so a
    device revoked while its request ran is refused ``device_revoked``, never ``forbidden`` (on
    PostgreSQL a revocation may commit between the caller check and the operation's reads)."""
    try:
        return op(tx, caller)
    except ApiError as exc:
        if exc.status == 403:
            check_caller(tx, caller)
        raise


def _related(tx: Tx, sender_devices: Sequence[bytes], recipient_user: bytes) -> bool:
    """Whether a device of the recipient's account and one of ``sender_devices`` are both current,
    consented members of one conversation (primary-key probes per membership of the recipient)."""
    if not sender_devices:
        return False
    marks = ", ".join("?" * len(sender_devices))
    row = tx.one(
        "SELECT 1 FROM devices dr JOIN members mr ON mr.device_id = dr.device_id"
        " JOIN members ms ON ms.conversation_id = mr.conversation_id"
        " WHERE dr.user_id = ? AND dr.revoked = 0 AND mr.end_seq IS NULL AND mr.consent = 1"
        f" AND ms.device_id IN ({marks}) AND ms.end_seq IS NULL AND ms.consent = 1 LIMIT 1",
        (recipient_user, *sender_devices),
    )
    return row is not None


@dataclass(frozen=True, slots=True)
class _InboxEntry:
    device_id: DeviceId
    seq: int
    size: int
    stranger: bool


def post_welcome(
    tx: Tx, caller: Caller, env: MessageEnvelope, recipients: list[DeviceId], now_ms: int, limits: DeliveryLimits
) -> None:
    """Deliver a Welcome to each recipient's inbox and make them members (all or nothing). The
    payload is stored once (``welcome_payloads``, charged to the sender's account) and each
    inbox row references it. Refusals, in order, per recipient in the given order: 404 unknown
    or revoked, 403 outside a DeviceGroup's account, 409 ``inbox_full``, 409 ``invite_limit``
    (a stranger's Welcomes, see ``DeliveryLimits``); then 413 ``quota_exceeded`` (the sender's
    account)."""
    if env.sender_device != caller.device_id:
        raise _forbidden("sender_device is not the authenticated device")
    if env.kind is not MessageKind.WELCOME:
        raise _invalid("only a Welcome goes to /welcomes")
    if not recipients:
        raise _invalid("a Welcome needs recipients")
    cid = env.conversation_id
    conv = _conversation(tx, cid)
    pending = _check_member(tx, caller, cid, conv is not None)
    public = None if conv is None else _public_group(tx, cid)
    found = _lock_recipients(tx, recipients)
    stored = env.with_seq(0).encode()  # one copy; each recipient gets it with its inbox seq
    base = len(stored) - 1  # the size without the seq's one-byte head
    related: dict[bytes, bool] = {caller.user_id.value: True}
    sender_devices: list[bytes] | None = None
    entries: list[_InboxEntry] = []
    for device_id in recipients:
        entry = found.get(device_id)
        if entry is None or entry[1]:
            raise ApiError(404, "not_found", "unknown or revoked Welcome recipient")
        user, _, seq, count, held, strangers, stranger_bytes = entry
        if cid.is_device_group_id and ConversationId.device_group(UserId(user)) != cid:
            raise _forbidden("a device group admits its owner's devices only")
        if public is not None and device_id not in public[1]:
            raise _forbidden("a Welcome of a verified conversation goes only to devices the latest Commit added")
        size = base + _uint_len(seq)
        if not within(limits.inbox_entries, count + 1) or not within(limits.inbox_bytes, held + size):
            raise ApiError(409, "inbox_full", "a recipient's Welcome inbox is full (it must acknowledge its Welcomes)")
        known = related.get(user)
        if known is None:
            if sender_devices is None:
                rows = tx.query("SELECT device_id FROM devices WHERE user_id = ? AND revoked = 0", (caller.user_id.value,))
                sender_devices = [bytes(r[0]) for r in rows]
            known = related[user] = _related(tx, sender_devices, user)
        if not known:
            _stranger_room(tx, caller, device_id, strangers + 1, stranger_bytes + size, limits)
        entries.append(_InboxEntry(device_id, seq, size, not known))
    _account_room(tx, caller.user_id.value, len(stored), limits)
    if conv is None:
        _conv, pending = _create(tx, caller, cid, now_ms)
    _store_welcome(tx, caller, cid, stored, entries)
    if pending:
        _consent(tx, caller, cid)


# A recipient's device row: user_id, revoked, inbox_next, inbox_count, inbox_bytes, inbox_strangers, inbox_stranger_bytes.
_Recipient = tuple[bytes, bool, int, int, int, int, int]


def _lock_recipients(tx: Tx, recipients: list[DeviceId]) -> dict[DeviceId, _Recipient]:
    """The recipients' device rows (the unknown ones missing), locked in one global order (no
    deadlock between concurrent Welcomes); the caller checks them in the given order."""
    found: dict[DeviceId, _Recipient] = {}
    for device_id in sorted(set(recipients)):
        row = tx.one(
            "SELECT user_id, revoked, inbox_next, inbox_count, inbox_bytes, inbox_strangers, inbox_stranger_bytes"
            " FROM devices WHERE device_id = ?" + tx.dialect.for_update,
            (device_id.value,),
        )
        if row is not None:
            found[device_id] = (bytes(row[0]), bool(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]), int(row[6]))
    return found


def _stranger_room(tx: Tx, caller: Caller, device_id: DeviceId, strangers: int, stranger_bytes: int, limits: DeliveryLimits) -> None:
    """409 ``invite_limit`` unless the recipient's inbox takes one more Welcome from the caller's
    account, which shares no conversation with it: ``strangers`` entries and ``stranger_bytes``
    from such accounts with it (see ``DeliveryLimits``)."""
    if limits.stranger_per_sender:
        n = tx.one("SELECT COUNT(*) FROM welcomes WHERE device_id = ? AND stranger = ?", (device_id.value, caller.user_id.value))
        if n is not None and int(n[0]) >= limits.stranger_per_sender:
            raise ApiError(
                409, "invite_limit",
                f"a recipient holds {int(n[0])} unacknowledged Welcomes from this account, which shares no"
                " conversation with it: it must accept or decline them first",
            )  # fmt: skip
    if not within(limits.stranger_entries, strangers) or not within(limits.stranger_bytes, stranger_bytes):
        raise ApiError(
            409, "invite_limit",
            "a recipient's inbox holds as many Welcomes from accounts it shares no conversation with as it takes",
        )  # fmt: skip


def _store_welcome(tx: Tx, caller: Caller, cid: ConversationId, stored: bytes, entries: list[_InboxEntry]) -> None:
    """Store the checked Welcome once (charged to the sender's account) and an inbox entry per
    recipient referencing it; make the recipients members (pending consent for a stranger's)."""
    while True:  # a random id: no shared counter row for concurrent Welcomes to queue on
        payload_id = secrets.randbits(62) + 1
        if tx.execute(
            "INSERT INTO welcome_payloads (id, sender_user, conversation_id, refs, size, envelope) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (payload_id, caller.user_id.value, cid.value, len(entries), len(stored), stored),
        ):
            break
    _charge(tx, caller.user_id.value, len(stored))
    for e in entries:
        stranger = caller.user_id.value if e.stranger else None
        tx.execute(
            "INSERT INTO welcomes (device_id, seq, payload_id, size, conversation_id, stranger) VALUES (?, ?, ?, ?, ?, ?)",
            (e.device_id.value, e.seq, payload_id, e.size, cid.value, stranger),
        )
        tx.execute(
            "UPDATE devices SET inbox_next = ?, inbox_count = inbox_count + 1, inbox_bytes = inbox_bytes + ?,"
            " inbox_strangers = inbox_strangers + ?, inbox_stranger_bytes = inbox_stranger_bytes + ? WHERE device_id = ?",
            (e.seq + 1, e.size, int(e.stranger), e.size if e.stranger else 0, e.device_id.value),
        )
        if not cid.is_device_group_id:
            # A member again (also after a removal: it was welcomed back); pending consent when a stranger invited it.
            tx.execute(
                "INSERT INTO members (conversation_id, device_id, end_seq, consent) VALUES (?, ?, NULL, ?)"
                " ON CONFLICT (conversation_id, device_id) DO UPDATE SET"
                " consent = CASE WHEN members.end_seq IS NULL AND members.consent = 1 THEN 1 ELSE excluded.consent END,"
                " end_seq = NULL",
                (cid.value, e.device_id.value, int(not e.stranger)),
            )
        tx.appended(inbox_key(e.device_id))  # wakes the recipient's watches in other processes


def _drop_inbox(tx: Tx, device_id: bytes, where: str, params: tuple[object, ...]) -> int:
    """Delete a (locked) device's inbox entries matching ``where``, update its counters and release
    the payloads nobody references any more (and their bytes of the sender's quota)."""
    rows = tx.query(f"SELECT payload_id, size, stranger FROM welcomes WHERE device_id = ?{where}", (device_id, *params))
    if not rows:
        return 0
    tx.execute(f"DELETE FROM welcomes WHERE device_id = ?{where}", (device_id, *params))
    strangers = [int(r[1]) for r in rows if r[2] is not None]
    tx.execute(
        "UPDATE devices SET inbox_count = inbox_count - ?, inbox_bytes = inbox_bytes - ?,"
        " inbox_strangers = inbox_strangers - ?, inbox_stranger_bytes = inbox_stranger_bytes - ? WHERE device_id = ?",
        (len(rows), sum(int(r[1]) for r in rows), len(strangers), sum(strangers), device_id),
    )
    refs = Counter(int(r[0]) for r in rows)
    for payload_id in sorted(refs):  # one global order of row locks
        left = tx.one(
            "UPDATE welcome_payloads SET refs = refs - ? WHERE id = ? RETURNING refs, size, sender_user",
            (refs[payload_id], payload_id),
        )
        if left is not None and int(left[0]) <= 0:
            tx.execute("DELETE FROM welcome_payloads WHERE id = ?", (payload_id,))
            _charge(tx, bytes(left[2]), -int(left[1]))
    return len(rows)


def inbox_key(device_id: DeviceId) -> bytes:
    """The wake-up key of a device's Welcome inbox (``Notifier``, ``Tx.appended``). Conversation
    keys are 16-byte ids, so this 33-byte key never collides with one."""
    return b"W" + device_id.value


def watch(tx: Tx, caller: Caller, positions: Sequence[tuple[ConversationId, int]]) -> tuple[WatchResult, frozenset[ConversationId]]:
    """What the caller's watch reports now (see ``Transport.watch``): the conversations whose
    readable log goes beyond the given seq, with their heads; those it may not read (``fetch``
    would refuse them 403); whether its Welcome inbox is non-empty. And the named conversations
    that do not exist (yet). Reads only; 403 when the caller was revoked.

    Two queries whatever the number of conversations: the caller's row (revocation, inbox
    count) and one for every named conversation with the caller's membership."""
    dev = tx.one("SELECT revoked, inbox_count FROM devices WHERE device_id = ?", (caller.device_id.value,))
    if dev is None or dev[0]:
        raise _revoked()
    found: dict[bytes, tuple[int, bool, int | None]] = {}
    if positions:
        ids = [cid.value for cid, _ in positions]
        if tx.dialect.name == "postgres":
            match, params = "c.conversation_id = ANY(?)", [caller.device_id.value, ids]
        else:
            match, params = f"c.conversation_id IN ({', '.join('?' * len(ids))})", [caller.device_id.value, *ids]
        for cid_b, next_seq, member, end_seq in tx.query(
            "SELECT c.conversation_id, c.next_seq, m.device_id IS NOT NULL, m.end_seq FROM conversations c"
            " LEFT JOIN members m ON m.conversation_id = c.conversation_id AND m.device_id = ?"
            f" WHERE {match}",
            params,
        ):
            found[bytes(cid_b)] = (int(next_seq) - 1, bool(member), None if end_seq is None else int(end_seq))
    own_group = ConversationId.device_group(caller.user_id)
    heads: dict[ConversationId, int] = {}
    forbidden: set[ConversationId] = set()
    absent: set[ConversationId] = set()
    for cid, after in positions:
        entry = found.get(cid.value)
        if entry is None:
            absent.add(cid)  # nobody posted yet: nothing to read, as fetch says with []
            continue
        head, member, end = entry
        if cid.is_device_group_id:
            if cid != own_group:
                forbidden.add(cid)
                continue
        elif not member:
            forbidden.add(cid)
            continue
        elif end is not None:
            if after >= end:
                forbidden.add(cid)
                continue
            head = end  # a removed device reads up to the Commit that removed it
        if head > after:
            heads[cid] = head
    if heads:
        check_caller(tx, caller)  # after the read (see fetch's long poll): news posted after a revocation
    return WatchResult(heads, frozenset(forbidden), int(dev[1]) > 0), frozenset(absent)


def fetch_welcomes(tx: Tx, caller: Caller, after: int) -> tuple[list[bytes], bool]:
    """A page of the caller's inbox after ``after``; ``more`` when the page is full or was cut short."""
    rows, more = _page(tx, _INBOX_SIZES, _INBOX_ROWS, caller.device_id.value, after, MAX_WELCOME_PAGE)
    return [restamp_seq(data, seq) for seq, data in rows], more or len(rows) == MAX_WELCOME_PAGE


def ack_welcomes(tx: Tx, caller: Caller, up_to_seq: int) -> None:
    tx.one("SELECT 1 FROM devices WHERE device_id = ?" + tx.dialect.for_update, (caller.device_id.value,))
    _drop_inbox(tx, caller.device_id.value, " AND seq <= ?", (up_to_seq,))


def leave(tx: Tx, caller: Caller, conversation_id: ConversationId) -> None:
    """End the caller's membership of a (not DeviceGroup) conversation and drop its pending
    Welcomes for it; nothing to do when it is no member."""
    tx.one("SELECT 1 FROM devices WHERE device_id = ?" + tx.dialect.for_update, (caller.device_id.value,))
    if _drop_inbox(tx, caller.device_id.value, " AND conversation_id = ?", (conversation_id.value,)):
        tx.appended(inbox_key(caller.device_id))
    if tx.execute(
        "DELETE FROM members WHERE conversation_id = ? AND device_id = ?", (conversation_id.value, caller.device_id.value)
    ):
        tx.appended(conversation_id.value)  # its watches of the conversation now see it forbidden


def group_info(tx: Tx, caller: Caller, conversation_id: ConversationId) -> bytes | None:
    """The GroupInfo of a verified conversation's current epoch (None: not verified, or no such
    conversation); 403 unless the caller is a current member (its owner's device for a DeviceGroup)."""
    exists = tx.one("SELECT 1 FROM conversations WHERE conversation_id = ?", (conversation_id.value,)) is not None
    _check_member(tx, caller, conversation_id, exists)
    row = tx.one("SELECT group_info FROM public_groups WHERE conversation_id = ?", (conversation_id.value,))
    return None if row is None else bytes(row[0])


def verify_registration(info: DeviceInfo, binding: DeviceBinding) -> None:
    """400 unless ``info`` and ``binding`` verify (pure CPU; run before the transaction)."""
    try:
        info.verify()
        binding.verify()
    except IdentityError as exc:
        raise _invalid(f"registration refused: {exc}") from None
