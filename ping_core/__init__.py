"""Ping: an end-to-end encrypted, multi-device messaging SDK built on MLS (RFC 9420).

The public API: :class:`MessagingClient` (``await MessagingClient.init(ClientConfig(...))``)
and the models it takes and returns. Errors are the classes of :mod:`ping_core.errors`; an
``MlsError``'s ``reason`` is an :class:`MlsReason` (re-exported here with :class:`MlsOrigin`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from ping_core.client import AdmitChatOutcome, AdmitChatStatus, ClientConfig, MessagingClient
from ping_core.connect import connect
from ping_core.clock import Hlc
from ping_core.conversation import MemberInfo
from ping_core.errors import MlsOrigin, MlsReason
from ping_core.device import (
    CatchupAppEventEntry,
    CatchupConversationEntry,
    CatchupSnapshot,
    DeviceInfo,
    GroupStateSnapshot,
    LinkingTicket,
    LocalDevice,
)
from ping_core.identity import DeviceBinding, DeviceRevocation, Identity
from ping_core.invitation import Invitation
from ping_core.link import AccountGrant
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import IncomingMessage, MessageEnvelope, MessageKind
from ping_core.meta import ConversationMeta
from ping_core.storage import StorageBackend
from ping_core.sync import News, SyncCursor, SyncProblem, SyncProblemKind, SyncResult

__all__ = [
    "__version__",
    "MessagingClient",
    "ClientConfig",
    "connect",
    "AdmitChatOutcome",
    "AdmitChatStatus",
    "Identity",
    "DeviceBinding",
    "DeviceRevocation",
    "AccountGrant",
    "UserId",
    "DeviceId",
    "ConversationId",
    "LocalDevice",
    "DeviceInfo",
    "LinkingTicket",
    "CatchupSnapshot",
    "CatchupConversationEntry",
    "CatchupAppEventEntry",
    "GroupStateSnapshot",
    "MessageEnvelope",
    "MessageKind",
    "IncomingMessage",
    "ConversationMeta",
    "MemberInfo",
    "Hlc",
    "SyncCursor",
    "SyncResult",
    "SyncProblem",
    "SyncProblemKind",
    "Invitation",
    "News",
    "StorageBackend",
    "MlsReason",
    "MlsOrigin",
]
