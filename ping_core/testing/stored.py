"""What the in-memory delivery service stores (:mod:`ping_core.testing.memory`): logs, Welcomes, devices."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from ping_core.device import DeviceInfo
from ping_core.errors import TransportError
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.transport.base import DEVICE_REVOKED

__all__ = ["Log", "Payload", "InboxItem", "Device", "revoked_error"]


@dataclass
class Log:
    entries: list[bytes] = field(default_factory=list)  # encoded envelopes, seq = index + 1
    epoch: int | None = None  # the epoch the next Commit must carry; None until the first Commit
    members: set[DeviceId] = field(default_factory=set)  # unused for a DeviceGroup (implicit)
    # Members a stranger's Welcome made that have not consented yet (read, posted, or welcomed by a non-stranger).
    pending: set[DeviceId] = field(default_factory=set)
    size: int = 0  # bytes of the stored entries
    # Devices removed by a Commit -> that Commit's seq (they read up to it); cleared by a new Welcome.
    removed: dict[DeviceId, int] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set and replaced on each append
    # A verified conversation (``handshake``): its public group state, the latest GroupInfo, and
    # the devices the latest Commit added (the only Welcome recipients).
    public: bytes | None = None
    group_info: bytes | None = None
    welcome_to: frozenset[DeviceId] = frozenset()


@dataclass
class Payload:
    """A Welcome as the server stores it: once, charged to its sender, until its last recipient drops it."""

    sender: UserId
    size: int
    refs: int


@dataclass
class InboxItem:
    data: bytes  # the encoded Welcome envelope with its inbox seq
    seq: int
    conversation_id: ConversationId
    payload: Payload
    stranger: UserId | None  # the sender account when it was a stranger to the recipient


@dataclass
class Device:
    info: DeviceInfo
    revoked: bool = False
    revocation: bytes | None = None  # the account's DeviceRevocation, encoded (None: none kept)
    revocation_order: int = 0  # when it was kept (larger: newer)
    key_packages: deque[bytes] = field(default_factory=deque)
    last_resort: bytes | None = None
    inbox: list[InboxItem] = field(default_factory=list)
    inbox_next: int = 1
    claim_window: int = 0  # KeyPackage claims by other accounts in this window
    window_claims: int = 0


def revoked_error() -> TransportError:
    """The refusal of every call of a revoked device (403 ``device_revoked``), as ping_server gives it."""
    return TransportError("device is revoked", status=403, code=DEVICE_REVOKED)
