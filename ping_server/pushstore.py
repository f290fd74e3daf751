"""Web Push rows of the delivery service's database (tables ``push_subscriptions``, ``push_keys``).

Functions over one transaction, like :mod:`ping_server.delivery`: every check comes before the
first write (a refusal has nothing to undo). Who hears of news: :func:`conversation_targets` and
:func:`subscriptions_of` read only non-revoked devices, and revocation deletes a device's
subscriptions (``delivery.revoke`` calls :func:`drop_device`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ping_core.ids import ConversationId, DeviceId
from ping_core.transport.pushwire import MAX_SUBSCRIPTIONS_PER_DEVICE, PushSubscription, SubscriptionInfo

from .app import ApiError
from .db import Tx

__all__ = [
    "StoredSubscription",
    "subscribe",
    "unsubscribe",
    "list_subscriptions",
    "subscriptions_of",
    "conversation_targets",
    "delete_subscription",
    "drop_device",
    "load_or_store_key",
]


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    """A subscription to push to (``auth`` is a secret: kept out of ``repr``)."""

    device_id: DeviceId
    endpoint: str
    p256dh: bytes
    auth: bytes

    def __repr__(self) -> str:
        return f"StoredSubscription(device={self.device_id.as_hex()[:16]}...)"


def subscribe(tx: Tx, device_id: DeviceId, sub: PushSubscription, now_ms: int, max_per_device: int = MAX_SUBSCRIPTIONS_PER_DEVICE) -> None:
    """Add ``sub`` for the (authenticated, non-revoked) device, or refresh its keys when the
    endpoint is known. 409 ``push_limit`` when the device already has ``max_per_device`` others."""
    key = device_id.value
    rows = tx.query("SELECT endpoint FROM push_subscriptions WHERE device_id = ?" + tx.dialect.for_update, (key,))
    known = {str(r[0]) for r in rows}
    if sub.endpoint not in known and len(known) >= max_per_device:
        raise ApiError(409, "push_limit", f"a device keeps at most {max_per_device} push subscriptions (unsubscribe one first)")
    tx.execute(
        "INSERT INTO push_subscriptions (device_id, endpoint, p256dh, auth, created_ms) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (device_id, endpoint) DO UPDATE SET p256dh = excluded.p256dh, auth = excluded.auth,"
        " created_ms = excluded.created_ms",
        (key, sub.endpoint, sub.p256dh, sub.auth, now_ms),
    )


def unsubscribe(tx: Tx, device_id: DeviceId, endpoint: str | None) -> int:
    """Drop the device's subscription at ``endpoint`` (all of them for None); how many went."""
    if endpoint is None:
        return tx.execute("DELETE FROM push_subscriptions WHERE device_id = ?", (device_id.value,))
    return tx.execute("DELETE FROM push_subscriptions WHERE device_id = ? AND endpoint = ?", (device_id.value, endpoint))


def list_subscriptions(tx: Tx, device_id: DeviceId) -> list[SubscriptionInfo]:
    rows = tx.query("SELECT endpoint, created_ms FROM push_subscriptions WHERE device_id = ? ORDER BY created_ms, endpoint", (device_id.value,))
    return [SubscriptionInfo(str(r[0]), int(r[1])) for r in rows]


def subscriptions_of(tx: Tx, device_id: DeviceId) -> list[StoredSubscription]:
    """The subscriptions to wake ``device_id`` at: none once it is revoked."""
    rows = tx.query(
        "SELECT s.endpoint, s.p256dh, s.auth FROM push_subscriptions s JOIN devices d ON d.device_id = s.device_id"
        " WHERE s.device_id = ? AND d.revoked = 0",
        (device_id.value,),
    )
    return [StoredSubscription(device_id, str(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]


def conversation_targets(tx: Tx, conversation_id: ConversationId, seq: int, sender: DeviceId) -> list[DeviceId]:
    """The devices that may read envelope ``seq`` of the conversation (current members, and those
    whose membership ends at or after it), have a subscription, and did not send it. A device
    group has no member rows: its members are the owner's (the sender's account's) non-revoked devices."""
    if conversation_id.is_device_group_id:  # only the owner's devices post there: the sender's account
        rows = tx.query(
            "SELECT DISTINCT d.device_id FROM devices d JOIN devices o ON o.user_id = d.user_id"
            " JOIN push_subscriptions s ON s.device_id = d.device_id"
            " WHERE o.device_id = ? AND d.revoked = 0 AND d.device_id <> ?",
            (sender.value, sender.value),
        )
    else:
        rows = tx.query(
            "SELECT DISTINCT m.device_id FROM members m JOIN push_subscriptions s ON s.device_id = m.device_id"
            " WHERE m.conversation_id = ? AND (m.end_seq IS NULL OR m.end_seq >= ?) AND m.device_id <> ?",
            (conversation_id.value, seq, sender.value),
        )
    return [DeviceId(bytes(r[0])) for r in rows]


def delete_subscription(tx: Tx, device_id: DeviceId, endpoint: str) -> None:
    """The push service said the subscription is gone (RFC 8030 §7.3: 404 or 410)."""
    tx.execute("DELETE FROM push_subscriptions WHERE device_id = ? AND endpoint = ?", (device_id.value, endpoint))


def drop_device(tx: Tx, device_id: bytes) -> None:
    """A revoked device is never woken again."""
    tx.execute("DELETE FROM push_subscriptions WHERE device_id = ?", (device_id,))


def load_or_store_key(tx: Tx, name: str, fresh: bytes) -> bytes:
    """The key kept under ``name``; ``fresh`` is stored and returned when there is none yet (the
    first of concurrent starts wins: every process then signs with the same key)."""
    tx.execute("INSERT INTO push_keys (name, private_key) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, fresh))
    row = tx.one("SELECT private_key FROM push_keys WHERE name = ?", (name,))
    assert row is not None
    return bytes(row[0])
